"""Hosts as network namespaces, for tests of deployments that span several machines.

Each host is an sshd in a network namespace of its own and a mount namespace of its own
(`unshare -m --propagation private`), with private `/run` (a tmpfs) and `/var/lib/lxc` (a
directory of the test's), so that LXC, the host networks' state and their daemons are the
host's own. The hosts sit on an underlay bridge of the test's, each with one address on
it; no NAT, no route out. This machine's LXC base image is bind-mounted read-only into each
host's `/var/lib/lxc` (clones stack on it; nothing writes to it), unless the host is to
start without it. They share the kernel,
the cgroups and both cores with this machine: good for routing and SSH, not for timings.
(benchbed's NetnsProvider gives sshd in a network namespace too, but on this machine's
filesystem, where two hosts' LXC would be one.)
"""

import ipaddress
import os
import shlex
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from benchbed.images.lxc import DEFAULT_RELEASE, image_name
from benchbed.providers.netns import SSHD, sshd_config

LXC_PATH = Path("/var/lib/lxc")
LIBVIRTD_SCRIPT = Path(__file__).parent / "data" / "nshosts" / "libvirtd.sh"
# what each host's private mount namespace is made of, then its sshd (values as arguments)
START = """set -eu
directory=$1 image=$2 config=$3 log=$4
mount -t tmpfs -o mode=755 benchbed-host-run /run
mkdir -p /run/sshd /run/lock /run/cgroup
# a sysfs of the host's network namespace (LXC finds its bridges there), the cgroups kept
mount --rbind /sys/fs/cgroup /run/cgroup
mount -t sysfs benchbed-host-sys /sys
mount --move /run/cgroup /sys/fs/cgroup
if [ -n "$image" ]; then
    mkdir -p "$directory/lxc/$image"
    mount --bind "/var/lib/lxc/$image" "$directory/lxc/$image"
    mount -o remount,bind,ro "$directory/lxc/$image"
fi
mount --rbind "$directory/lxc" /var/lib/lxc
exec "$0" -f "$config" -E "$log"
"""


def run(command: list[str], check: bool = True, timeout: float = 120
        ) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise RuntimeError(f"{shlex.join(command)} exited {result.returncode}: "
                           f"{result.stderr.strip()[-800:]}")
    return result


@dataclass
class NsHost:
    """One namespace host: its namespace, its address on the underlay, its directory."""

    namespace: str
    address: str
    directory: Path

    @property
    def sshd_pid(self) -> int:
        return int((self.directory / "sshd.pid").read_text().split()[0])

    def run(self, command: str, check: bool = True, timeout: float = 120
            ) -> subprocess.CompletedProcess[str]:
        """A shell command on the host: in its network and mount namespaces."""
        return run(["nsenter", "-t", str(self.sshd_pid), "-m", "-n", "sh", "-c", command],
                   check=check, timeout=timeout)

    def popen(self, command: str) -> subprocess.Popen[str]:
        return subprocess.Popen(["nsenter", "-t", str(self.sshd_pid), "-m", "-n", "sh", "-c",
                                 command], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)

    def containers(self) -> list[str]:
        return self.run("lxc-ls -1").stdout.split()

    def links(self) -> list[str]:
        return [line.split()[0].split("@")[0] for line in
                self.run("ip -br link show").stdout.splitlines()]

    def routes(self) -> list[str]:
        return self.run("ip -4 route show").stdout.splitlines()

    def routes_inside(self, supernet: str) -> list[str]:
        """The host's routes to networks inside `supernet` (what a deployment added)."""
        inside = []
        for route in self.routes():
            try:
                network = ipaddress.IPv4Network(route.split()[0])
            except ValueError:  # "default"
                continue
            if network.subnet_of(ipaddress.IPv4Network(supernet)):
                inside.append(route)
        return inside

    def credential(self, key: Path) -> dict[str, str]:
        return {"host": self.address, "user": "root", "key": str(key)}

    def start_libvirtd(self) -> None:
        """A libvirtd of the host's own (tests/data/nshosts/libvirtd.sh), answering on its
        private /run/libvirt; the host's teardown ends it with the rest of its processes."""
        self.run(f"{shlex.quote(str(LIBVIRTD_SCRIPT))} {shlex.quote(str(self.directory))}")
        deadline = time.monotonic() + 30
        while self.run("test -S /run/libvirt/libvirt-sock", check=False).returncode != 0:
            if time.monotonic() > deadline:
                raise RuntimeError(f"libvirtd of {self.namespace} did not start: see "
                                   f"{self.directory}/libvirt-log")
            time.sleep(0.2)

    @property
    def known_hosts(self) -> Path:
        """A known_hosts file with the host's key alone, written when the host is set up."""
        return self.directory / "known_hosts"

    def libvirt_uri(self, key: Path) -> str:
        """The host's libvirt over SSH (libssh2), its host key the one it was given."""
        return (f"qemu+libssh2://root@{self.address}/system?keyfile={key}&known_hosts="
                f"{self.known_hosts}&known_hosts_verify=normal&sshauth=privkey")


@contextmanager
def namespace_hosts(prefix: str, underlay: str, count: int, work: Path,
                    without_image: frozenset[int] = frozenset()
                    ) -> Iterator[tuple[list[NsHost], Path]]:
    """`count` hosts named PREFIX-h0, ... on the bridge PREFIX-ul of network `underlay` (this
    machine has its first address, host i the (10+i)-th), with the SSH key that logs in to
    them. The hosts of `without_image` (indexes) start with an empty LXC store. Everything,
    leftover containers included, is removed on the way out."""
    network = ipaddress.IPv4Network(underlay)
    bridge = f"{prefix}-ul"
    key = work / "hosts_key"
    image = image_name(DEFAULT_RELEASE)
    if not (LXC_PATH / image / "benchbed-image.json").exists():
        raise RuntimeError(f"no LXC base image {image} on this machine: build it first "
                           f"(benchbed image build --provider lxc)")
    hosts: list[NsHost] = []
    try:
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)])
        run(["ip", "link", "add", "name", bridge, "type", "bridge"])
        run(["ip", "addr", "add", f"{network.network_address + 1}/{network.prefixlen}",
             "dev", bridge])
        run(["ip", "link", "set", bridge, "up"])
        for index in range(count):
            host = NsHost(f"{prefix}-h{index}", str(network.network_address + 10 + index),
                          work / f"h{index}")
            hosts.append(host)
            _start(host, bridge, network.prefixlen, key,
                   "" if index in without_image else image)
        yield hosts, key
    finally:
        for host in hosts:
            _stop(host, prefix)
        run(["ip", "link", "delete", bridge], check=False)


def _start(host: NsHost, bridge: str, prefix: int, key: Path, image: str) -> None:
    host.directory.mkdir(mode=0o700)
    (host.directory / "lxc").mkdir()
    veth = f"{host.namespace}v"
    run(["ip", "netns", "add", host.namespace])
    run(["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns",
         host.namespace])
    run(["ip", "link", "set", veth, "master", bridge, "up"])
    inside = ["ip", "-n", host.namespace]
    run([*inside, "addr", "add", f"{host.address}/{prefix}", "dev", "eth0"])
    run([*inside, "link", "set", "eth0", "up"])
    run([*inside, "link", "set", "lo", "up"])
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
         str(host.directory / "ssh_host_ed25519_key")])
    public = (host.directory / "ssh_host_ed25519_key.pub").read_text().split()[:2]
    host.known_hosts.write_text(f"{host.address} {' '.join(public)}\n")
    (host.directory / "authorized_keys").write_text(Path(f"{key}.pub").read_text())
    config = host.directory / "sshd_config"
    config.write_text(sshd_config(host.address, host.directory))
    # nsenter, not `ip netns exec`: that one mounts a new /sys without the cgroups LXC needs
    run(["nsenter", f"--net=/run/netns/{host.namespace}", "unshare", "-m",
         "--propagation", "private", "sh", "-c", START, SSHD, str(host.directory), image,
         str(config), str(host.directory / "sshd.log")])
    # sshd writes its pid file after it went to the background: the host is there with it
    deadline = time.monotonic() + 30
    while not (host.directory / "sshd.pid").exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"sshd of {host.namespace} wrote no pid file: see "
                               f"{host.directory / 'sshd.log'}")
        time.sleep(0.05)


def _stop(host: NsHost, prefix: str) -> None:
    """Remove the host's leftover containers of `prefix`, stop what runs in its namespace
    (by pid), then remove the namespace and its link."""
    if (host.directory / "sshd.pid").exists():
        host.run(f"for name in $(lxc-ls -1); do case $name in {shlex.quote(prefix)}*) "
                 f"lxc-destroy -f -n \"$name\";; esac; done", check=False, timeout=300)
    listed = run(["ip", "netns", "pids", host.namespace], check=False)
    for pid in listed.stdout.split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            continue
    run(["ip", "link", "delete", f"{host.namespace}v"], check=False)
    run(["ip", "netns", "delete", host.namespace], check=False)


@contextmanager
def upstream_apt_cache(address: str, port: int, cache: Path, logs: Path) -> Iterator[str]:
    """apt-cacher-ng on this machine's underlay `address`: the hosts' one way to Debian's
    packages (they have no route out), its URL. Its cache in `cache` (it outlives the run
    where the caller wants it warm), its log in `logs` (a line per file: time|kind|size|
    client|path). DlMaxRetries as benchbed's own proxies (benchbed/scripts/hostnet)."""
    cache.mkdir(parents=True, exist_ok=True)
    logs.mkdir(parents=True, exist_ok=True)
    url = f"http://{address}:{port}"
    with tempfile.TemporaryDirectory(prefix="nshosts-acng-") as conf:
        Path(conf, "acng.conf").write_text(
            f"CacheDir: {cache}\nLogDir: {logs}\nSupportDir: /usr/lib/apt-cacher-ng\n"
            f"BindAddress: {address}\nPort: {port}\nPidFile: {conf}/pid\n"
            f"SocketPath: {conf}/socket\nForeGround: 1\nDlMaxRetries: 10\n")
        process = subprocess.Popen(["apt-cacher-ng", "-c", conf], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 30
            while run(["curl", "-s", "-o", "/dev/null", f"{url}/acng-report.html"],
                      check=False).returncode != 0:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(f"apt-cacher-ng does not answer on {url}")
                time.sleep(0.2)
            yield url
        finally:
            process.terminate()
            process.wait(timeout=30)
