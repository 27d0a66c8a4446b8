"""Debian containers made with raw LXC commands, outside benchbed, for ExistingServers runs.

A bridge of its own with dnsmasq for DHCP and an apt-cacher-ng on the bridge address (its
own config: no `Remap-` lines, so requests go to the mirrors the host's apt sources name),
a base container from the `debian` template, and overlay clones of it. No NAT: the
containers reach the host's bridge address and nothing else. Used by the integration
tests and by bench/debian.
"""

import glob
import ipaddress
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from benchbed.hostnet import bridge_name
from benchbed.images.lxc import LxcImageStore, image_name
from benchbed.server import Server

RELEASE = "bookworm"
LOCALHOST = {"type": "ExistingServers", "credentials": [{"host": "localhost", "user": "root"}]}
NOTHING_LEFT: dict[str, list[str]] = {"containers": [], "bridges": [], "processes": []}
_IPV4 = re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}\b")


def lxc_here(network: str, prefix: str) -> dict[str, Any]:
    """An LxcProvider config: containers PREFIX-N on NETWORK's bridge on this machine."""
    return {"type": "LxcProvider", "start_lxc_network": network,
            "container_name_prefix": prefix, "host_provider": LOCALHOST}


def containers_named(prefix: str) -> list[str]:
    """This machine's LXC containers that a provider with `prefix` made."""
    return [name for name in sh("lxc-ls -1").split() if name.startswith(f"{prefix}-")]


def lxc_leftovers(network: str, prefix: str) -> dict[str, list[str]]:
    """What a deployment of `lxc_here(network, prefix)` leaves: containers, the bridge and
    its addresses, and processes (dnsmasq, the mirrors) naming the bridge or an address in
    the network. Empty lists when nothing is left."""
    subnet = ipaddress.IPv4Network(network)
    bridge = bridge_name(subnet)

    def names_it(line: str) -> bool:
        return bridge in line or any(ipaddress.IPv4Address(found) in subnet
                                     for found in _IPV4.findall(line)
                                     if all(int(part) < 256 for part in found.split(".")))

    return {"containers": containers_named(prefix),
            "bridges": [line for line in sh("ip -br addr").splitlines() if names_it(line)],
            "processes": [line for line in sh("ps -eo args").splitlines() if names_it(line)]}


def host_mirrors() -> tuple[str, str]:
    """The Debian and Debian-security mirror URIs the host's own apt sources name."""
    uris: list[str] = []
    for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
        uris += re.findall(r"^URIs:\s*(\S+)", Path(path).read_text(), flags=re.M)
    if Path("/etc/apt/sources.list").exists():
        uris += re.findall(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)", Path("/etc/apt/sources.list")
                           .read_text(), flags=re.M)
    main = next((u for u in uris if not u.rstrip("/").endswith("-security")), None)
    security = next((u for u in uris if u.rstrip("/").endswith("-security")), None)
    if not main or not security:
        raise RuntimeError("the host's apt sources name no Debian and Debian-security mirror")
    return main, security


def sh(command: str, timeout: float = 600, check: bool = True) -> str:
    result = subprocess.run(["/bin/sh", "-c", command], capture_output=True, text=True,
                            timeout=timeout)
    if check and result.returncode != 0:
        raise RuntimeError(f"{command!r} exited {result.returncode}: {result.stderr[-800:]}")
    return result.stdout


class Lab:
    """Bridge, dnsmasq, apt-cacher-ng and a base container; clones on demand."""

    def __init__(self, prefix: str, subnet: str, cache_dir: str) -> None:
        self.prefix = prefix
        self.bridge = f"{prefix}br0"
        self.gateway = f"{subnet}.1"
        self.subnet = subnet
        self.state = Path(f"/run/{prefix}-lab")
        self.cache_dir = Path(cache_dir)
        self.base = f"{prefix}-base"
        self.key = self.state / "id_ed25519"
        self.proxy = f"http://{self.gateway}:3142"

    def start(self) -> "Lab":
        self.stop()
        self.state.mkdir(parents=True, exist_ok=True)
        sh(f"ip link add {self.bridge} type bridge && "
           f"ip addr add {self.gateway}/24 dev {self.bridge} && ip link set {self.bridge} up")
        sh(f"dnsmasq --conf-file=/dev/null --port=0 --bind-interfaces "
           f"--interface={self.bridge} --except-interface=lo --listen-address={self.gateway} "
           f"--dhcp-range={self.subnet}.100,{self.subnet}.250,1h --dhcp-authoritative "
           f"--dhcp-leasefile={self.state}/leases --pid-file={self.state}/dnsmasq.pid")
        self._start_proxy()
        sh(f"ssh-keygen -q -t ed25519 -N '' -f {self.key}")
        self._create_base()
        return self

    def _start_proxy(self) -> None:
        run_dir = self.state / "acng"
        for path in (run_dir, self.cache_dir):
            path.mkdir(parents=True, exist_ok=True)
            shutil.chown(path, "apt-cacher-ng", "apt-cacher-ng")
        (run_dir / "acng.conf").write_text(
            f"CacheDir: {self.cache_dir}\nLogDir: {run_dir}\n"
            f"SupportDir: /usr/lib/apt-cacher-ng\nBindAddress: {self.gateway}\nPort: 3142\n"
            f"PidFile: {run_dir}/pid\nSocketPath: {run_dir}/socket\nForeGround: 0\n"
            f"ExThreshold: 4\n")
        sh(f"setpriv --reuid=apt-cacher-ng --regid=apt-cacher-ng --init-groups "
           f"apt-cacher-ng -c {run_dir} </dev/null >{run_dir}/start.log 2>&1")
        deadline = time.monotonic() + 10
        while not (run_dir / "pid").exists():
            if time.monotonic() > deadline:
                raise RuntimeError("apt-cacher-ng did not start")
            time.sleep(0.05)

    def clear_cache(self) -> None:
        """Empty the apt cache (for cold-cache measurements); restarts the proxy."""
        _stop_daemon(self.state / "acng" / "pid", str(self.state / "acng"))
        shutil.rmtree(self.cache_dir, ignore_errors=True)
        self._start_proxy()

    def _create_base(self) -> None:
        main, security = host_mirrors()
        config = self.state / "lxc.conf"
        config.write_text(f"lxc.net.0.type = veth\nlxc.net.0.link = {self.bridge}\n"
                          "lxc.net.0.flags = up\nlxc.apparmor.profile = unconfined\n")
        sh(f"MIRROR={main} SECURITY_MIRROR={security} lxc-create -n {self.base} -t debian "
           f"-f {config} -- -r {RELEASE} >{self.state}/create.log 2>&1", timeout=900)
        root = Path(f"/var/lib/lxc/{self.base}/rootfs")
        (root / "etc/apt/sources.list").write_text(
            f"deb {main} {RELEASE} main\ndeb {main} {RELEASE}-updates main\n"
            f"deb {security} {RELEASE}-security main\n")
        (root / "etc/apt/apt.conf.d/01proxy").write_text(
            f'Acquire::http::Proxy "{self.proxy}";\n')
        (root / "etc/resolv.conf").write_text("")
        (root / "etc/machine-id").write_text("")
        ssh_dir = root / "root/.ssh"
        ssh_dir.mkdir(mode=0o700, exist_ok=True)
        (ssh_dir / "authorized_keys").write_text(Path(f"{self.key}.pub").read_text())
        os.chmod(ssh_dir / "authorized_keys", 0o600)

    def clone(self, name: str) -> str:
        """Start an overlay clone of the base container; return its address."""
        sh(f"lxc-copy -s -B overlay -n {self.base} -N {name} && lxc-start -n {name}")
        return self.address_once_up(name, 60)

    def address_once_up(self, name: str, timeout: float) -> str:
        """The started container's address on the lab's subnet, once it answers SSH."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            address = sh(f"lxc-info -n {name} -iH", check=False).strip().split("\n")[0]
            if address.startswith(self.subnet):
                self.wait_ssh(address)
                return address
            time.sleep(0.2)
        raise RuntimeError(f"container {name} got no address")

    def wait_ssh(self, address: str) -> None:
        deadline = time.monotonic() + 60
        while self.ssh(address, "true", check=False) is None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{address}: SSH does not answer")
            time.sleep(0.2)

    def ssh(self, address: str, command: str, check: bool = True) -> str | None:
        result = subprocess.run(
            ["ssh", "-i", str(self.key), "-o", "StrictHostKeyChecking=no",
             "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
             "-o", "ConnectTimeout=5", "-o", "BatchMode=yes", f"root@{address}", command],
            capture_output=True, text=True, timeout=600)
        if result.returncode != 0:
            if check:
                raise RuntimeError(f"ssh {address} {command!r}: {result.stderr[-500:]}")
            return None
        return result.stdout

    def credentials(self, address: str) -> dict[str, str]:
        return {"host": address, "user": "root", "key": str(self.key)}

    def destroy(self, name: str) -> None:
        sh(f"lxc-destroy -f -n {name}", check=False)

    def containers(self) -> list[str]:
        return [n for n in sh("lxc-ls -1").split() if n.startswith(f"{self.prefix}-")]

    def stop(self) -> None:
        clones_first = sorted(self.containers(), key=lambda name: name == self.base)
        for name in clones_first:
            self.destroy(name)
        _stop_daemon(self.state / "acng" / "pid", str(self.state / "acng"))
        _stop_daemon(self.state / "dnsmasq.pid", str(self.state / "dnsmasq.pid"))
        sh(f"ip link show {self.bridge} >/dev/null 2>&1 && ip link delete {self.bridge}",
           check=False)
        shutil.rmtree(self.state, ignore_errors=True)


class ImageLab(Lab):
    """The same bridge, dnsmasq and apt proxy; clones of benchbed's cached base image instead of
    a base of its own (saves the template build), still made with raw LXC commands."""

    def _create_base(self) -> None:
        LxcImageStore(Server(host="localhost")).build(image_name("bookworm"), "bookworm",
                                                      rebuild=False)
        self.base = image_name("bookworm")

    def clone(self, name: str) -> str:
        sh(f"lxc-copy -s -B overlay -n {self.base} -N {name}")
        config = Path(f"/var/lib/lxc/{name}/config")
        text = re.sub(r"(?m)^lxc.net.0.link *=.*$", f"lxc.net.0.link = {self.bridge}",
                      config.read_text())
        config.write_text(text)
        upper = Path(re.search(r"(?m)^lxc.rootfs.path *= *overlay:[^:]*:(.*)$", text)[1])
        for folder in ("root/.ssh", "etc/apt/apt.conf.d", "etc/ssh"):
            (upper / folder).mkdir(parents=True, exist_ok=True)
        (upper / "root/.ssh/authorized_keys").write_text(Path(f"{self.key}.pub").read_text())
        os.chmod(upper / "root/.ssh/authorized_keys", 0o600)
        (upper / "etc/apt/apt.conf.d/01proxy").write_text(
            f'Acquire::http::Proxy "{self.proxy}";\n')
        sh(f"ssh-keygen -q -A -f {upper}")
        (upper / "etc/machine-id").write_text(os.urandom(16).hex() + "\n")
        sh(f"lxc-start -n {name}")
        return self.address_once_up(name, 90)


def _stop_daemon(pid_file: Path, marker: str) -> None:
    """Stop the daemon of `pid_file` if its command line names `marker` (ours), by pid."""
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.exists() and marker in cmdline.read_text(errors="replace"):
        os.kill(pid, 15)
        deadline = time.monotonic() + 5
        while cmdline.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    pid_file.unlink(missing_ok=True)
