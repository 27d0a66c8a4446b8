"""LxcProvider end to end, as root, with real LXC: the CLI deploys containers, real `ssh` reaches
them through the exported files, destroy leaves nothing, kill -9 at any point leaks nothing, and
bad input is refused in one line with nothing created.
"""

import ipaddress
import json
import os
import shlex
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from benchbed.hostnet import HostNetwork, bridge_name
from benchbed.hostnet.bridge import STATE_DIR
from benchbed.images.lxc import LxcImageStore, image_name
from benchbed.server import Server
from tests.conftest import kill_when, ledger_rows, read_inventory

pytestmark = pytest.mark.root

NETWORK = "10.254.110.0/24"
BRIDGE = bridge_name(ipaddress.IPv4Network(NETWORK))
LOCALHOST = {"type": "ExistingServers", "credentials": [{"user": "root", "host": "localhost"}]}


def provider(prefix: str, **extra: Any) -> dict[str, Any]:
    return {"type": "LxcProvider", "containers_per_host": 3, "start_lxc_network": NETWORK,
            "container_name_prefix": prefix, "host_provider": LOCALHOST, **extra}


def engine(prefix: str, engine_extra: dict[str, Any] | None = None,
           **provider_extra: Any) -> dict[str, Any]:
    return {"type": "ServersEngine", "provider": provider(prefix, **provider_extra),
            **(engine_extra or {})}


def containers(prefix: str) -> dict[str, str]:
    """This test's containers and their states, straight from LXC."""
    listed = subprocess.run(["lxc-ls", "-f", "-F", "NAME,STATE"], capture_output=True,
                            text=True, check=True).stdout.splitlines()[1:]
    rows = (line.split() for line in listed)
    return {row[0]: row[1] for row in rows if row and row[0].startswith(f"{prefix}-")}


def bridge_exists() -> bool:
    return subprocess.run(["ip", "link", "show", "dev", BRIDGE],
                          capture_output=True).returncode == 0


def daemons_of_run() -> list[str]:
    """dnsmasq or apt-cacher-ng processes serving the test network's bridge."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        text = b" ".join(argv).decode(errors="replace")
        if f"{STATE_DIR}/{BRIDGE}/" in text or f"--interface={BRIDGE}" in text:
            found.append(f"{proc.name}: {text[:120]}")
    return found


def assert_no_leaks(prefix: str, home: Path) -> None:
    assert containers(prefix) == {}
    assert not bridge_exists(), f"bridge {BRIDGE} left behind"
    assert daemons_of_run() == []
    assert not Path(f"{STATE_DIR}/{BRIDGE}").exists()
    assert ledger_rows(home) == 0


def write_config(home: Path, config: dict[str, Any], name: str = "config.json") -> str:
    home.mkdir(parents=True, exist_ok=True)
    path = home.parent / name
    path.write_text(json.dumps(config))
    return str(path)


@pytest.fixture(scope="module")
def base_image() -> str:
    """The cached base image (built once per machine, then reused by every test run)."""
    return LxcImageStore().build(image_name("bookworm"), "bookworm", rebuild=False)["name"]


@pytest.fixture
def prefix(bb: Any) -> Iterator[str]:
    """A container name prefix of this test only; whatever is left of it is removed after."""
    name = f"bbt{uuid.uuid4().hex[:6]}"
    yield name
    bb.destroy_all()
    for leftover in containers(name):
        subprocess.run(["lxc-destroy", "-f", "-n", leftover], capture_output=True)
    users = Path(f"{STATE_DIR}/{BRIDGE}/users")
    network = HostNetwork(Server(host="localhost"), ipaddress.IPv4Network(NETWORK))
    for user in list(users.iterdir()) if users.exists() else []:
        network.release(user.name)


def test_three_containers_reachable_with_real_ssh_then_nothing_left(
        bb: Any, home: Path, prefix: str, base_image: str) -> None:
    config = write_config(home, engine(prefix))
    bb.ok("deployment", "create", "--file", config, "--name", "lxc3")
    servers = bb.json("deployment", "show", "lxc3")["endpoints"]["servers"]
    assert len(servers) == 3
    assert set(containers(prefix).values()) == {"RUNNING"}

    ssh_config = home.parent / "ssh_config"
    ssh_config.write_text(bb.ok("deployment", "export", "lxc3", "--format", "ssh-config").stdout)
    machine_ids = set()
    for server in servers:
        result = subprocess.run(
            ["ssh", "-F", str(ssh_config), "-o", "BatchMode=yes", server["name"],
             "getent hosts $(hostname) >/dev/null && hostname; cat /etc/machine-id; "
             "ip -4 route show default; "
             "cat /etc/apt/apt.conf.d/01benchbed-proxy"],
            capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        hostname, machine_id, *rest = result.stdout.splitlines()
        assert hostname == server["name"]
        assert "default" not in " ".join(rest), "containers must have no default route"
        assert f"http://{ipaddress.IPv4Network(NETWORK)[1]}:3142" in rest[-1]
        machine_ids.add(machine_id)
    assert len(machine_ids) == 3, "each clone needs its own machine-id"

    inventory = read_inventory(
        bb.ok("deployment", "export", "lxc3", "--format", "ansible-inventory").stdout)
    hosts = inventory["all"]["children"]["lxc3"]["hosts"]
    assert {host["ansible_host"] for host in hosts.values()} == {s["host"] for s in servers}
    for host in hosts.values():
        argv = ["ssh", "-o", "BatchMode=yes", "-p", str(host["ansible_port"]),
                "-i", host["ansible_ssh_private_key_file"],
                *shlex.split(host["ansible_ssh_common_args"]),
                f"{host['ansible_user']}@{host['ansible_host']}", "true"]
        assert subprocess.run(argv, capture_output=True, timeout=60).returncode == 0

    apt = subprocess.run(["ssh", "-F", str(ssh_config), "-o", "BatchMode=yes", servers[0]["name"],
                          "apt-get -q update"], capture_output=True, text=True, timeout=300)
    assert apt.returncode == 0 and "Err:" not in apt.stdout, apt.stdout + apt.stderr

    host_keys = {subprocess.run(["ssh-keyscan", "-t", "ed25519", s["host"]], capture_output=True,
                                text=True, timeout=30).stdout.split()[-1] for s in servers}
    assert len(host_keys) == 3, "each clone needs its own SSH host key"

    refused = bb("image", "delete", "--provider", "lxc", base_image)
    assert refused.returncode == 2 and "in use" in refused.stderr

    bb.ok("deployment", "check", "lxc3")
    bb.ok("deployment", "destroy", "lxc3")
    assert_no_leaks(prefix, home)


def test_deployments_share_the_network_until_the_last_one_goes(
        bb: Any, home: Path, prefix: str, base_image: str) -> None:
    config = write_config(home, engine(prefix, {"amount": 1}))
    bb.ok("deployment", "create", "--file", config, "--name", "first")
    bb.ok("deployment", "create", "--file", config, "--name", "second")
    assert len(containers(prefix)) == 2
    bb.ok("deployment", "destroy", "first")
    assert bridge_exists() and len(daemons_of_run()) == 2
    assert len(containers(prefix)) == 1
    bb.ok("deployment", "check", "second")
    bb.ok("deployment", "destroy", "second")
    assert_no_leaks(prefix, home)


def container_address(name: str) -> str:
    config = Path(subprocess.run(["lxc-config", "lxc.lxcpath"], capture_output=True, text=True,
                                 check=True).stdout.strip()) / name / "config"
    for line in config.read_text().splitlines():
        if line.startswith("lxc.net.0.ipv4.address"):
            return line.split("=", 1)[1].strip().split("/")[0]
    raise AssertionError(f"{name} has no fixed address")


def test_fixed_addresses_are_distinct_and_a_reused_one_answers_at_once(
        bb: Any, home: Path, prefix: str, base_image: str) -> None:
    """A /29 leaves two fixed addresses; the second comes back to a new container with a new
    MAC, which must not wait for the host's ARP entry of the old one to expire (30-45 s)."""
    small = "10.254.111.0/29"
    holder = write_config(home, engine(prefix, {"amount": 1}, start_lxc_network=small,
                                       containers_per_host=2), "holder.json")
    one = write_config(home, engine(prefix, {"amount": 1}, start_lxc_network=small,
                                    containers_per_host=2), "one.json")
    bb.ok("deployment", "create", "--file", holder, "--name", "holder")
    (held,) = containers(prefix)
    addresses = {container_address(held)}
    for round_ in range(3):
        started = time.monotonic()
        bb.ok("deployment", "create", "--file", one, "--name", f"reuse{round_}")
        elapsed = time.monotonic() - started
        (name,) = set(containers(prefix)) - {held}
        addresses.add(container_address(name))
        assert elapsed < 10, f"create with a reused address took {elapsed:.0f}s"
        assert bb("deployment", "check", f"reuse{round_}").returncode == 0
        bb.ok("deployment", "destroy", f"reuse{round_}")
    assert addresses == {"10.254.111.2", "10.254.111.3"}
    leases = Path(f"{STATE_DIR}/{bridge_name(ipaddress.IPv4Network(small))}/dnsmasq.leases")
    assert not leases.exists() or leases.read_text().strip() == ""
    bb.ok("deployment", "destroy", "holder")
    assert containers(prefix) == {} and ledger_rows(home) == 0


def test_the_bridge_keeps_its_address_while_ports_come_and_go(
        bb: Any, home: Path, prefix: str, base_image: str) -> None:
    """A bridge without an address of its own takes its lowest port's: a port joining or
    leaving moved it, and a guest with the old one cached lost the host (SSH waited 10 s)."""
    one = write_config(home, engine(prefix, {"amount": 1}))
    bb.ok("deployment", "create", "--file", one, "--name", "macs")
    (name,) = containers(prefix)
    device = Path(f"/sys/class/net/{BRIDGE}")

    def address() -> str:
        return (device / "address").read_text().strip()

    before = address()
    assert (device / "addr_assign_type").read_text().strip() == "3"  # NET_ADDR_SET
    port, peer = f"bbmac{os.getpid() % 100000}", f"bbmap{os.getpid() % 100000}"
    try:
        subprocess.run(["ip", "link", "add", port, "address", "02:00:00:00:00:01", "type",
                        "veth", "peer", "name", peer], check=True)
        subprocess.run(["ip", "link", "set", port, "master", BRIDGE, "up"], check=True)
        assert address() == before
    finally:
        subprocess.run(["ip", "link", "del", port], capture_output=True)
    assert address() == before
    # the check's SSH makes the guest answer the host: it has the gateway's address cached
    assert bb("deployment", "check", "macs").returncode == 0
    gateway = str(next(ipaddress.IPv4Network(NETWORK).hosts()))
    seen = subprocess.run(["lxc-attach", "-n", name, "--", "ip", "neigh", "show", gateway],
                          capture_output=True, text=True, timeout=60).stdout
    assert f"lladdr {before}" in seen, seen
    bb.ok("deployment", "destroy", "macs")
    assert containers(prefix) == {} and ledger_rows(home) == 0


SSHD_CONFIG = """\
ListenAddress 127.0.0.1
Port {port}
HostKey {directory}/host_key
PidFile {directory}/sshd.pid
AuthorizedKeysFile {directory}/authorized_keys
PermitRootLogin yes
PasswordAuthentication no
UsePAM no
StrictModes no
"""


@pytest.fixture
def ssh_host(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """This machine as a remote LXC host: an sshd of the test's own on a loopback port."""
    directory = tmp_path / "sshd"
    directory.mkdir()
    for name in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                        str(directory / name)], check=True)
    (directory / "authorized_keys").write_text((directory / "client_key.pub").read_text())
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = directory / "sshd_config"
    config.write_text(SSHD_CONFIG.format(port=port, directory=directory))
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    subprocess.run(["/usr/sbin/sshd", "-f", str(config)], check=True)
    try:
        yield {"user": "root", "host": "127.0.0.1", "port": port,
               "key": str(directory / "client_key")}
    finally:
        pid_file = directory / "sshd.pid"
        if pid_file.exists():
            os.kill(int(pid_file.read_text()), signal.SIGTERM)


def test_host_driven_over_ssh(bb: Any, home: Path, prefix: str, base_image: str,
                              ssh_host: dict[str, Any]) -> None:
    remote = {"type": "ExistingServers", "credentials": [ssh_host]}
    config = write_config(home, engine(prefix, {"amount": 2}, host_provider=remote))
    bb.ok("deployment", "create", "--file", config, "--name", "viassh")
    assert set(containers(prefix).values()) == {"RUNNING"} and len(containers(prefix)) == 2
    checked = bb("deployment", "check", "viassh")
    assert checked.returncode == 0, checked.stderr
    bb.ok("deployment", "destroy", "viassh")
    assert_no_leaks(prefix, home)


def test_sizes_set_cgroup_limits(bb: Any, home: Path, prefix: str, base_image: str) -> None:
    config = write_config(home, engine(prefix, {"amount": 1, "flavor": "small"}))
    bb.ok("deployment", "create", "--file", config, "--name", "small")
    (name,) = containers(prefix)
    limits = {key: subprocess.run(["lxc-cgroup", "-n", name, key], capture_output=True,
                                  text=True, check=True).stdout.strip()
              for key in ("memory.limit_in_bytes", "cpu.cfs_quota_us")}
    assert limits == {"memory.limit_in_bytes": str(1024 * 2**20), "cpu.cfs_quota_us": "100000"}
    bb.ok("deployment", "destroy", "small")
    assert_no_leaks(prefix, home)


KILL_POINTS: dict[str, Callable[[str], Callable[[], bool]]] = {
    "before-cloning": lambda prefix: bridge_exists,
    # A clone's directory, not `lxc-ls -f`: that waits on the lock a clone in progress holds,
    # long enough for the whole create to end meanwhile.
    "during-cloning": lambda prefix: lambda: any(Path("/var/lib/lxc").glob(f"{prefix}-*")),
    "after-cloning": lambda prefix: lambda: list(containers(prefix).values()).count(
        "RUNNING") == 3,
}


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_kill_during_create_then_destroy_leaks_nothing(
        bb: Any, home: Path, prefix: str, base_image: str, point: str) -> None:
    config = write_config(home, engine(prefix))
    process = bb.popen("deployment", "create", "--file", config, "--name", "killed")
    kill_when(process, KILL_POINTS[point](prefix), timeout=60,
              never="the moment to kill never came", interval=0.01)
    assert ledger_rows(home) >= 1, "killed before anything was recorded"
    bb.ok("deployment", "destroy", "--force", "killed")
    assert bb.json("deployment", "list") == []
    assert_no_leaks(prefix, home)


BAD_PROVIDER_KEYS = {
    "malformed CIDR": ({"start_lxc_network": "10.254.300.0/24"}, "start_lxc_network"),
    "CIDR with host bits": ({"start_lxc_network": "10.254.110.7/24"}, "start_lxc_network"),
    "public CIDR": ({"start_lxc_network": "8.8.8.0/24"}, "start_lxc_network"),
    "too small for containers_per_host": ({"start_lxc_network": "10.254.110.0/30"},
                                          "start_lxc_network"),
    "unknown release": ({"release": "hamm2"}, "release"),
    "unknown distribution": ({"distribution": "slackware"}, "distribution"),
    "forward_ssh": ({"forward_ssh": True}, "forward_ssh"),
    "tunnel_to": ({"tunnel_to": ["10.0.0.1"]}, "tunnel_to"),
}


@pytest.mark.parametrize("case", list(BAD_PROVIDER_KEYS))
def test_bad_provider_config_is_refused_in_one_line(bb: Any, home: Path, prefix: str,
                                                     case: str) -> None:
    extra, key = BAD_PROVIDER_KEYS[case]
    result = bb("deployment", "create", "--file", write_config(home, engine(prefix, **extra)),
                "--name", "bad")
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert key in result.stderr and "Traceback" not in result.stderr
    assert bb.json("deployment", "list") == []
    assert containers(prefix) == {}


@pytest.mark.parametrize("amount", [0, -1])
def test_amount_below_one_is_refused(bb: Any, home: Path, prefix: str, amount: int) -> None:
    config = write_config(home, engine(prefix, {"amount": amount}))
    result = bb("deployment", "create", "--file", config, "--name", "bad")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "amount" in result.stderr
    assert bb.json("deployment", "list") == []


def test_network_overlapping_a_host_route_is_refused(bb: Any, home: Path, prefix: str) -> None:
    dummy = "bblxcovl0"
    subprocess.run(["ip", "link", "add", dummy, "type", "bridge"], check=True)
    try:
        subprocess.run(["ip", "addr", "add", "10.254.111.1/24", "dev", dummy], check=True)
        subprocess.run(["ip", "link", "set", dummy, "up"], check=True)
        config = engine(prefix, start_lxc_network="10.254.111.128/25")
        result = bb("deployment", "create", "--file", write_config(home, config),
                    "--name", "bad")
    finally:
        subprocess.run(["ip", "link", "delete", dummy], check=True)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "overlaps 10.254.111.0/24" in result.stderr
    assert bb.json("deployment", "list") == []


def test_runtime_refusals_create_nothing(bb: Any, home: Path, prefix: str,
                                         base_image: str) -> None:
    huge = bb("deployment", "create", "--name", "huge",
              "--file", write_config(home, engine(prefix, {"flavor": "huge"}), "huge"))
    assert huge.returncode == 2 and "config flavor: unknown size 'huge'" in huge.stderr
    # capacity is known from the config: refused at validation, before any row exists
    capacity = bb("deployment", "create", "--name", "capacity",
                  "--file", write_config(home, engine(prefix, {"amount": 4}), "capacity"))
    assert capacity.returncode == 2
    assert "amount: 4 server(s) requested, but LxcProvider can give 3" in capacity.stderr
    assert bb.json("deployment", "list") == []
    cases = {
        "image": ({"image": "benchbed-no-such-image"}, {}, 2, "no LXC image named"),
        "unreachable": ({}, {"host_provider": {"type": "ExistingServers", "credentials": [
            {"user": "root", "host": "127.0.0.1", "port": 1}]}}, 1, "unreachable"),
    }
    for name, (engine_extra, provider_extra, code, message) in cases.items():
        config = write_config(home, engine(prefix, engine_extra, **provider_extra), name)
        result = bb("deployment", "create", "--file", config, "--name", name)
        assert result.returncode == code, (name, result.stderr)
        assert len(result.stderr.strip().splitlines()) <= 2, result.stderr
        assert message in result.stderr and "Traceback" not in result.stderr
        assert containers(prefix) == {}
        bb.ok("deployment", "destroy", name)
    assert_no_leaks(prefix, home)


def test_image_build_use_and_delete(bb: Any, home: Path, prefix: str, base_image: str) -> None:
    image = f"benchbed-{prefix}"
    try:
        bb.ok("image", "build", "--provider", "lxc", "--name", image, timeout=1200)
        listed = {i["name"]: i for i in bb.json("image", "list", "--provider", "lxc")}
        assert listed[image]["release"] == "bookworm" and listed[image]["clones"] == 0
        config = write_config(home, engine(prefix, {"amount": 1, "image": image}))
        bb.ok("deployment", "create", "--file", config, "--name", "custom")
        refused = bb("image", "delete", "--provider", "lxc", image)
        assert refused.returncode == 2 and "in use by 1 container" in refused.stderr
        bb.ok("deployment", "destroy", "custom")
        bb.ok("image", "delete", "--provider", "lxc", image)
        assert image not in [i["name"] for i in bb.json("image", "list", "--provider", "lxc")]
        assert not Path(f"/var/lib/lxc/{image}").exists()
    finally:
        bb.destroy_all()
        bb("image", "delete", "--provider", "lxc", image)


def test_image_list_and_unknown_image_delete(bb: Any, base_image: str) -> None:
    images = bb.json("image", "list", "--provider", "lxc")
    assert base_image in [image["name"] for image in images]
    missing = bb("image", "delete", "--provider", "lxc", "benchbed-no-such-image")
    assert missing.returncode == 2 and "no image named" in missing.stderr
