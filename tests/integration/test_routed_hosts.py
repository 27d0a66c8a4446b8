"""Routed host networks: an LxcProvider over two hosts (network namespaces with their own
sshd, /run and /var/lib/lxc: tests/nshosts.py) whose container networks are routed to each
other, by static routes and by VXLAN. A container on host B reaches one on host A from its
own address, benchbed reaches every container (through an SSH jump: this machine is not on
their networks), and destroy leaves no route, device, container or ledger row on any host.
A MultihostEngine whose controller's provider is on host 0 and whose nodes' provider is on
hosts 1 and 2 is one routed network: the controller's container and the nodes' reach each
other from their own addresses.
Neither host has a way out: apt in a container on host 1 goes through its host's proxy,
host 0's, and one upstream cache on this machine's underlay address (`apt_upstream_proxy`).
Underlay 10.254.50.0/24, container networks inside 10.254.52.0/22 (one provider),
10.254.56.0/22 and 10.254.64.0/22 (a controller and its nodes), 10.254.62.0/23 and
10.254.68.0/23 (the apt chain), 10.254.80.0/23 and 10.254.82.0/23 (the mirrors), names
`bbrt`.
"""

import ipaddress
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from benchbed.errors import ParallelError, UnreachableError, unreachable_hosts
from benchbed.hostnet import bridge_name
from benchbed.hostnet.bridge import CACHE_DIR
from benchbed.hostnet.mirrors import GuestMirrors, address_towards
from benchbed.hostnet.routes import HostRoutes, Peer
from benchbed.parallel import run_parallel
from benchbed.providers.lxc import host_network
from benchbed.server import Server
from benchbed.ssh import Deadline
from tests import upstream
from tests.conftest import Cli, cli_for, ledger_rows, write_yaml
from tests.nshosts import NsHost, namespace_hosts, upstream_apt_cache

pytestmark = pytest.mark.root

PREFIX = "bbrt"
UNDERLAY = "10.254.50.0/24"
# two hosts: host 0 gets the first /24, host 1 the next; the containers route to the /23
NETWORKS = {"static": "10.254.52.0/24", "vxlan": "10.254.54.0/24"}
SUPERNETS = {"static": "10.254.52.0/23", "vxlan": "10.254.54.0/23"}


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[list[NsHost], Path]]:
    with namespace_hosts(PREFIX, UNDERLAY, 3, tmp_path_factory.mktemp("nshosts")) as made:
        yield made


def provider(hosts: list[NsHost], key: Path, routing: str, **extra: Any) -> dict[str, Any]:
    return {"type": "LxcProvider", "start_lxc_network": NETWORKS[routing],
            "container_name_prefix": f"{PREFIX}-{routing[:2]}", "containers_per_host": 2,
            "routing": routing, **extra,
            "host_provider": {"type": "ExistingServers",
                              "credentials": [host.credential(key) for host in hosts]}}


def ours(host: NsHost, routing: str) -> list[str]:
    return [name for name in host.containers() if name.startswith(f"{PREFIX}-{routing[:2]}-")]


def attach(host: NsHost, name: str, command: str) -> str:
    return host.run(f"lxc-attach -n {name} -- sh -c '{command}'").stdout


# A tiny listener (the image has perl-base, no python): one connection on port 9000, then
# the address it came from and how many bytes it carried.
LISTENER = ("perl -MIO::Socket::INET -e '$s = IO::Socket::INET->new(LocalPort => 9000, "
            "Listen => 1, ReuseAddr => 1) or die $!; $c = $s->accept; $n = 0; "
            "while (($r = sysread($c, $b, 65536)) > 0) { $n += $r } "
            "print $c->peerhost, \" $n\\n\"'")
SENT = 4 * 1024 * 1024


def source_seen(server_host: NsHost, server: str, client_host: NsHost, client: str,
                address: str) -> str:
    """Send SENT bytes over TCP from `client` to a listener on `server` (at `address`):
    the source address the listener saw, and the bytes that arrived."""
    listening = server_host.popen(f"lxc-attach -n {server} -- {LISTENER}")
    try:
        attach(server_host, server, "for i in $(seq 100); do ss -Hltn sport = :9000 | "
                                    "grep -q . && exit 0; sleep 0.1; done; exit 1")
        client_host.run(f"lxc-attach -n {client} -- bash -c 'head -c {SENT} /dev/zero "
                        f"> /dev/tcp/{address}/9000'", timeout=60)
        out, err = listening.communicate(timeout=30)
        assert listening.returncode == 0, err
        return out
    finally:
        if listening.poll() is None:
            listening.kill()
            listening.wait()


def leftovers(host: NsHost, routing: str, supernet: str = "10.254.52.0/22") -> list[str]:
    """What a deployment could leave on a host: containers (named for `routing`), routes
    into the container networks (inside `supernet`), bridges and VXLAN devices, reference
    state."""
    found = ours(host, routing)
    found += host.routes_inside(supernet)
    found += [link for link in host.links() if link.startswith(("bblxc", "bbvx"))]
    found += host.run("ls /run/benchbed/routes /run/benchbed/hostnet 2>/dev/null | "
                      "grep -v -e '^/' -e '\\.lock$' -e '^$' || true").stdout.split()
    return found


@pytest.mark.parametrize("routing", ["static", "vxlan"])
def test_containers_on_two_hosts_reach_each_other_and_destroy_leaves_nothing(
        hosts: tuple[list[NsHost], Path], tmp_path: Path, routing: str) -> None:
    machines, key = hosts[0][:2], hosts[1]
    home = tmp_path / "home"
    cli = cli_for(home)
    name = f"{PREFIX}-{routing}"
    config = {"type": "ServersEngine", "provider": provider(machines, key, routing)}
    try:
        cli.ok("deployment", "create", "--file", write_yaml(tmp_path / "d.yaml", config),
               "--name", name, timeout=600)
        on_host = [ours(machine, routing) for machine in machines]
        assert [len(names) for names in on_host] == [2, 2], on_host
        servers = json.loads(cli.ok("deployment", "export", name, "--format",
                                    "json").stdout)["servers"]
        address = {server["name"]: server["host"] for server in servers}
        assert all(server.get("jump", {}).get("host") in (m.address for m in machines)
                   for server in servers), servers
        # benchbed reaches every container (ServersEngine's check logs in to each)
        results = cli.json("deployment", "check", name)
        assert len(results) == 4 and all(r["ok"] for r in results), results
        a, b = on_host[0][0], on_host[1][0]
        # from its own address, whole (4 MiB: segments sized to the path's MTU)
        seen = source_seen(machines[0], a, machines[1], b, address[a])
        assert seen.split() == [address[b], str(SENT)], seen
        # the route is set at every start of the container, not once
        machines[1].run(f"lxc-stop -n {b} -t 30 && lxc-start -n {b} -d && "
                        f"lxc-wait -n {b} -s RUNNING -t 30", timeout=90)
        routes = attach(machines[1], b, "ip -4 route")
        assert "default" not in routes and f"{SUPERNETS[routing]} via " in routes, routes
        outside = attach(machines[1], b, f"ip route get {UNDERLAY.split('/')[0][:-1]}1 "
                                         f"2>&1 || true")
        assert "unreachable" in outside, outside  # not even the hosts' own network
        host_routes = "\n".join(machines[0].routes())
        if routing == "static":
            assert f"{address[b].rsplit('.', 1)[0]}.0/24 via {machines[1].address}" \
                in host_routes, host_routes
        else:
            assert " dev bbvx" in host_routes, host_routes
            assert f"{SUPERNETS[routing]} via " in routes and " mtu 1450" in routes, routes
            # the connection came through the VXLAN device, not around it
            received = machines[0].run("cat /sys/class/net/bbvx*/statistics/rx_packets").stdout
            assert int(received) > 0, received
        destroyed = cli("deployment", "destroy", name, timeout=600)
        assert destroyed.returncode == 0, destroyed.stderr
        assert [leftovers(machine, routing) for machine in machines] == [[], []]
        assert ledger_rows(home) == 0
    finally:
        cli.destroy_all()


# a controller's slice on host 0, its nodes' on hosts 1 and 2, and the network routing them
CONTROLLER_NETWORKS = {"static": "10.254.56.0/24", "vxlan": "10.254.64.0/24"}
NODE_NETWORKS = {"static": "10.254.57.0/24", "vxlan": "10.254.65.0/24"}
DEPLOYMENT_SUPERNETS = {"static": "10.254.56.0/22", "vxlan": "10.254.64.0/22"}


@pytest.mark.parametrize("routing", ["static", "vxlan"])
def test_a_controller_on_one_host_and_nodes_on_two_others_are_one_routed_network(
        hosts: tuple[list[NsHost], Path], tmp_path: Path, routing: str) -> None:
    """Two providers of one deployment: the controller's on host 0, the nodes' on hosts 1
    and 2. Each container routes the whole deployment's network; a node and the controller
    reach each other from their own addresses, both ways; destroy leaves nothing anywhere."""
    machines, key = hosts
    home = tmp_path / "home"
    cli = cli_for(home)
    name = f"{PREFIX}-multi-{routing}"
    tag = f"{PREFIX}-{routing[:2]}-m"

    def lxc(on: list[NsHost], network: str, role: str) -> dict[str, Any]:
        return {"type": "LxcProvider", "start_lxc_network": network, "routing": routing,
                "container_name_prefix": f"{tag}{role}",
                "host_provider": {"type": "ExistingServers",
                                  "credentials": [host.credential(key) for host in on]}}

    config = {"type": "MultihostEngine",
              "controller": {"type": "ServersEngine",
                             "provider": lxc(machines[:1], CONTROLLER_NETWORKS[routing], "c")},
              "nodes": [{"type": "ServersEngine", "amount": 2,
                         "provider": lxc(machines[1:], NODE_NETWORKS[routing], "n")}]}
    supernet = DEPLOYMENT_SUPERNETS[routing]
    try:
        cli.ok("deployment", "create", "--file", write_yaml(tmp_path / "m.yaml", config),
               "--name", name, timeout=600)
        found = [[c for c in machine.containers() if c.startswith(tag)]
                 for machine in machines]
        assert [len(names) for names in found] == [1, 1, 1], found
        controller, first, second = (names[0] for names in found)
        address = {container: attach(machine, container, "hostname -I").split()[0]
                   for machine, (container,) in zip(machines, found, strict=True)}
        for machine, container in zip(machines, (controller, first, second), strict=True):
            routes = attach(machine, container, "ip -4 route")
            assert f"{supernet} via " in routes and "default" not in routes, routes
        seen = source_seen(machines[0], controller, machines[2], second, address[controller])
        assert seen.split() == [address[second], str(SENT)], seen
        seen = source_seen(machines[1], first, machines[0], controller, address[first])
        assert seen.split() == [address[controller], str(SENT)], seen
        results = cli.json("deployment", "check", name)
        assert results and all(r["ok"] for r in results), results
        cli.ok("deployment", "destroy", name, timeout=600)
        assert [leftovers(machine, routing, supernet) for machine in machines] \
            == [[], [], []]
        assert ledger_rows(home) == 0
    finally:
        cli.destroy_all()


# This machine's address on the underlay: an apt proxy of the test's there is the hosts' one
# way to Debian's packages (they have no route out).
UPSTREAM = f"http://{ipaddress.IPv4Network(UNDERLAY).network_address + 1}:3150"
APT_NETWORKS = {"static": "10.254.62.0/24", "vxlan": "10.254.68.0/24"}


@pytest.fixture(scope="module")
def upstream_cache(hosts: tuple[list[NsHost], Path],
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The cache the hosts' apt proxies chain to (cold: a cache of its own); its log."""
    work = tmp_path_factory.mktemp("upstream")
    address, port = UPSTREAM.removeprefix("http://").split(":")
    with upstream_apt_cache(address, int(port), work / "cache", work / "log"):
        yield work / "log" / "apt-cacher.log"


def clients_of(log: Path, after: int = 0) -> set[str]:
    """The addresses an apt-cacher-ng served files to, from its log's lines after the first
    `after` (a line is written once its file is served)."""
    lines = log.read_text().splitlines() if log.exists() else []
    return {line.split("|")[3] for line in lines[after:]
            if line.count("|") >= 4 and line.split("|")[1] == "O"}


def lines_in(log: Path) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


@pytest.mark.parametrize("routing", ["static", "vxlan"])
def test_apt_on_a_second_host_goes_through_the_first_hosts_proxy_to_one_upstream_cache(
        hosts: tuple[list[NsHost], Path], upstream_cache: Path, tmp_path: Path,
        routing: str) -> None:
    """Host 1's proxy fetches through host 0's (over the routes), host 0's through the one
    upstream cache: only host 0 ever asks upstream, and only host 1 asks host 0's proxy."""
    machines, key = hosts[0][:2], hosts[1]
    home = tmp_path / "home"
    cli = cli_for(home)
    name = f"{PREFIX}-apt-{routing}"
    network = ipaddress.IPv4Network(APT_NETWORKS[routing])
    config = {"type": "ServersEngine",
              "provider": {**provider(machines, key, routing, apt_upstream_proxy=UPSTREAM),
                           "start_lxc_network": str(network), "containers_per_host": 1,
                           "container_name_prefix": f"{PREFIX}-{routing[:2]}-apt"}}
    # the hosts' proxy caches outlive their deployments: cold ones must ask upstream
    for index in range(len(machines)):
        shutil.rmtree(Path(CACHE_DIR) / bridge_name(host_network(network, index)),
                      ignore_errors=True)
    first_proxy_log = Path(CACHE_DIR) / f"{bridge_name(network)}.log" / "apt-cacher.log"
    try:
        cli.ok("deployment", "create", "--file", write_yaml(tmp_path / "apt.yaml", config),
               "--name", name, timeout=600)
        second = next(c for c in ours(machines[1], routing) if "-apt-" in c)
        before = lines_in(first_proxy_log), lines_in(upstream_cache)
        attach(machines[1], second, "apt-get -q update")
        deadline = time.monotonic() + 30
        while not (clients_of(first_proxy_log, before[0]) and clients_of(upstream_cache,
                                                                        before[1])):
            assert time.monotonic() < deadline, (clients_of(first_proxy_log, before[0]),
                                                 clients_of(upstream_cache, before[1]))
            time.sleep(0.5)
        # host 1 by its underlay address, or with VXLAN by its bridge's (the kernel's pick)
        second_gateway = str(host_network(network, 1).network_address + 1)
        served = clients_of(first_proxy_log, before[0])
        assert served <= {machines[1].address, second_gateway}, served
        assert clients_of(upstream_cache) == {machines[0].address}, clients_of(upstream_cache)
        cli.ok("deployment", "destroy", name, timeout=600)
        assert [leftovers(machine, routing, str(network.supernet())) for machine in machines] \
            == [[], []]
        assert ledger_rows(home) == 0
    finally:
        cli.destroy_all()


def test_a_host_takes_more_commands_at_once_than_its_sshds_max_sessions(
        hosts: tuple[list[NsHost], Path]) -> None:
    """Thirty commands at once on one host's connection (a node host cloning 40 containers
    does that): sshd (MaxSessions 10 by default) refuses an eleventh open session, so
    benchbed queues them instead of failing them."""
    machines, key = hosts
    server = Server(host=machines[0].address, key=str(key))
    try:
        server.ssh.run(["true"])  # one connection, as a deployment's host has by then
        with ThreadPoolExecutor(30) as pool:
            said = list(pool.map(lambda index: server.ssh.run(
                ["sh", "-c", 'sleep 0.5; echo "$0"', str(index)], timeout=120).stdout,
                range(30)))
        assert said == [f"{index}\n" for index in range(30)], said
    finally:
        server.close()


def test_a_deadline_closes_every_connection_of_its_part_and_none_opens_again(
        hosts: tuple[list[NsHost], Path], tmp_path: Path) -> None:
    """Commands that never end on two hosts (one reached through the other, as a container
    is through its host): when the part's deadline passes both fail at once with its
    reason, no connection opens again inside it, and outside it the hosts serve again."""
    machines, key = hosts
    direct = Server(host=machines[0].address, key=str(key))
    jumped = Server(host=machines[1].address, key=str(key), jump=direct.to_dict())
    servers = [direct, jumped]
    pids = tmp_path / "pids"  # the commands the closed connections left running
    try:
        started = time.monotonic()
        with Deadline(3, machines[0].address, "past the test's deadline") as deadline:
            with pytest.raises(ParallelError) as failed:
                run_parallel("hanging", servers, lambda server: server.ssh.run(
                    ["sh", "-c", 'echo $$ >> "$0"; exec sleep 40', str(pids)], timeout=120),
                    describe=lambda server: server.host)
            with pytest.raises(UnreachableError, match="past the test's deadline"):
                direct.ssh.run(["true"])
        assert deadline.expired and time.monotonic() - started < 15
        assert str(failed.value).count("past the test's deadline") == 2, failed.value
        assert unreachable_hosts(failed.value) == {machines[0].address}
        assert [server.ssh.run(["echo", "back"]).stdout for server in servers] == ["back\n"] * 2
    finally:
        for server in servers:
            server.close()
        for pid in pids.read_text().split() if pids.exists() else []:
            subprocess.run(["kill", pid], check=False)


# a slice on host 0 (where the mirrors run) and one on host 1 (the routed guest)
MIRROR_NETWORKS = {"static": "10.254.80.0/24", "vxlan": "10.254.82.0/24"}
DEVPI_VENV = Path("/var/lib/benchbed/devpi/venv")


@pytest.mark.parametrize("routing", ["static", "vxlan"])
def test_a_routed_guest_reaches_the_git_and_pypi_mirrors_of_a_host_with_a_slice(
        hosts: tuple[list[NsHost], Path], tmp_path: Path, routing: str) -> None:
    """A container on host 1 has no route but its deployment's supernet, so the mirrors of
    host 0 (where benchbed would run) listen on host 0's address inside it: the guest clones
    from the git daemon and reads the PyPI mirror's API there, from its own address."""
    machines, key = hosts[0][:2], hosts[1]
    home = tmp_path / "home"
    cli = cli_for(home)
    name = f"{PREFIX}-mirrors-{routing}"
    network = ipaddress.IPv4Network(MIRROR_NETWORKS[routing])
    config = {"type": "ServersEngine",
              "provider": {**provider(machines, key, routing), "containers_per_host": 1,
                           "start_lxc_network": str(network),
                           "container_name_prefix": f"{PREFIX}-{routing[:2]}-mir"}}
    if not (DEVPI_VENV / ".complete").exists():
        # the hosts have no way to PyPI: devpi-server is installed from this machine
        installer = GuestMirrors(Server(host="localhost"), "127.0.0.1")
        installer.acquire(name, None, pypi=True)
        installer.release(name)
    host_zero = Server(host=machines[0].address, key=str(key))
    mirrors: GuestMirrors | None = None
    try:
        cli.ok("deployment", "create", "--file", write_yaml(tmp_path / "mir.yaml", config),
               "--name", name, timeout=600)
        guest = next(c for c in ours(machines[1], routing) if "-mir" in c)
        guest_address = attach(machines[1], guest, "hostname -I").split()[0]
        address = address_towards(host_zero, guest_address, network.supernet())
        assert address == str(network.network_address + 1), address
        mirrors = GuestMirrors(host_zero, address)
        mirrors.acquire(name, str(upstream.git_mirror()), pypi=True)
        pid = machines[1].run(f"lxc-info -n {guest} -pH").stdout.strip()
        in_guest = f"nsenter -t {pid} -n "
        listed = machines[1].run(f"{in_guest}git ls-remote {mirrors.git_base}/openstack/"
                                 f"devstack.git", timeout=60).stdout
        assert "refs/heads/stable/2025.1" in listed, listed
        api = machines[1].run(f"{in_guest}python3 -c 'import sys, urllib.request; sys.stdout."
                              f"write(urllib.request.urlopen(sys.argv[1], timeout=30).read()."
                              f"decode())' http://{address}:3141/+api", timeout=60).stdout
        assert json.loads(api)["type"] == "apiconfig", api
        seen = machines[0].run(f"ss -Htn state established '( sport = :9418 or sport = "
                               f":3141 )' dst {guest_address} | wc -l").stdout
        assert seen.strip() == "0", seen  # both answered and closed, nothing held
        mirrors.release(name)
        assert machines[0].run(f"ls /run/benchbed/mirrors/{address} 2>&1 || true").stdout \
            .strip().endswith("No such file or directory")
        mirrors = None
        cli.ok("deployment", "destroy", name, timeout=600)
        assert [leftovers(machine, routing, str(network.supernet())) for machine in machines] \
            == [[], []]
        assert ledger_rows(home) == 0
    finally:
        if mirrors is not None:
            mirrors.release(name)
        host_zero.close()
        cli.destroy_all()


@pytest.mark.parametrize(("extra", "message"), [
    ({"routing": "ipip"}, "provider.routing: 'ipip' is not one of"),
    ({"tunnel_to": ["10.254.50.10"]}, "provider.tunnel_to: is not supported: the older "
                                      "tool's IPIP tunnel"),
])
def test_ipip_and_tunnel_to_are_refused_in_one_line(tmp_path: Path, extra: dict[str, Any],
                                                     message: str) -> None:
    cli: Cli = cli_for(tmp_path / "home")
    hosts = [NsHost(f"{PREFIX}-x{index}", f"10.254.50.{20 + index}", tmp_path)
             for index in range(2)]
    config = {"type": "ServersEngine",
              "provider": {**provider(hosts, tmp_path / "key", "static"), **extra}}
    result = cli("deployment", "create", "--file", write_yaml(tmp_path / "bad.yaml", config),
                 "--name", f"{PREFIX}-bad")
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "routing" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert json.loads(cli.ok("deployment", "list", "--json").stdout) == []


@pytest.mark.parametrize("routing", ["static", "vxlan"])
def test_routes_are_shared_by_reference_count_and_forwarding_is_put_back(
        hosts: tuple[list[NsHost], Path], routing: str) -> None:
    """Two holders of one supernet's routes on a host: the first release keeps them, the
    last removes routes and device and puts IP forwarding back as it was."""
    machines, key = hosts
    network = ipaddress.IPv4Network("10.254.55.0/24")
    forward = "cat /proc/sys/net/ipv4/ip_forward"
    machines[0].run("echo 0 > /proc/sys/net/ipv4/ip_forward")
    server = Server(host=machines[0].address, key=str(key))
    routes = HostRoutes(server, ipaddress.IPv4Network("10.254.54.0/23"), routing,
                        [Peer(network, "10.254.55.1", machines[1].address)])
    try:
        routes.acquire("first")
        routes.acquire("second")
        assert machines[0].run(forward).stdout.strip() == "1"
        routes.release("first")
        assert any(route.startswith(f"{network} ") for route in machines[0].routes())
        routes.release("second")
        routes.release("second")  # already released: fine
        assert not any(route.startswith("10.254.5") and not route.startswith("10.254.50.")
                       for route in machines[0].routes()), machines[0].routes()
        assert not any(link.startswith("bbvx") for link in machines[0].links())
        assert machines[0].run(forward).stdout.strip() == "0"
    finally:
        for holder in ("first", "second"):
            routes.release(holder)
        server.close()
