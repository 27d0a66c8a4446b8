"""A Nova deployment across three machines, simulated by namespace hosts (tests/nshosts.py):
the controller (DebianEngine: Keystone, Glance, Placement, Neutron, Nova) in a container on
host 0, an LxcEngine's fake compute nodes on hosts 1 and 2, one routed network (static
routes over the underlay, no NAT). benchbed and the clients run in host 0's network
namespace, as on the first machine of a fleet; the hosts have no way out, their apt proxies
fetch through one upstream cache of the test's on this machine's underlay address.

Proven: every compute up, the controller sees the nodes' own addresses, Rally's
boot_and_delete_server without a failure; a host cut off (its underlay link down) while the
nodes start fails the create in one line naming it with `tolerate: 0`, and with `tolerate: 1`
the deployment runs with the survivors and `destroy --abandon HOST` completes; destroy
leaves no route, bridge, container or ledger row on any host. Host 2 starts with an empty
LXC store and gets the image streamed from host 1, not built.

All of it twice: with static routes, then with VXLAN (`routing`). What this cannot show: the
hosts share this machine's two cores, its kernel and its disk, so timings say nothing about
separate machines. Underlay 10.254.70.0/24, container networks 10.254.72.0/22 (static) and
10.254.76.0/22 (VXLAN), names `bbsc`. About 35 minutes on an idle 2-core machine.
"""

import ipaddress
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from benchbed.images.lxc import DEFAULT_RELEASE, image_name
from tests.conftest import (
    Cli,
    NetnsCli,
    cli_for,
    client,
    ledger_rows,
    rally_task_without_failures,
    write_yaml,
)
from tests.nshosts import NsHost, namespace_hosts, upstream_apt_cache

pytestmark = pytest.mark.root

IMAGE = image_name(DEFAULT_RELEASE)
PREFIX = "bbsc"
UNDERLAY = "10.254.70.0/24"


@dataclass(frozen=True)
class Networks:
    """The controller's slice (host 0), the nodes' first (host 1; host 2 gets the next) and
    the network routing them, for one `routing`."""

    controller: str
    nodes: str
    supernet: str

    @property
    def node_slices(self) -> list[ipaddress.IPv4Network]:
        first = ipaddress.IPv4Network(self.nodes)
        return [first, ipaddress.IPv4Network((int(first.network_address) + 256, 24))]


NETWORKS = {"static": Networks("10.254.72.0/24", "10.254.73.0/24", "10.254.72.0/22"),
            "vxlan": Networks("10.254.76.0/24", "10.254.77.0/24", "10.254.76.0/22")}
UPSTREAM_PORT = 3160
UPSTREAM = f"http://{ipaddress.IPv4Network(UNDERLAY).network_address + 1}:{UPSTREAM_PORT}"
# the upstream cache outlives the test (as benchbed's own proxies' caches do)
UPSTREAM_CACHE = Path("/var/cache/benchbed-tests/apt-cacher-ng-nshosts")
CONTROLLER_SERVICES = ["keystone", "glance", "placement", "neutron", "nova"]
NODES_PER_HOST = 2
BOOT_AND_DELETE = {
    "NovaServers.boot_and_delete_server": [{
        "args": {"flavor": {"name": "bb.tiny"}, "image": {"name": "bb-tiny"}},
        "runner": {"type": "constant", "times": 10, "concurrency": 4},
        "context": {"users": {"tenants": 2, "users_per_tenant": 1},
                    "flavors": [{"name": "bb.tiny", "ram": 64, "vcpus": 1, "disk": 1}]},
        "sla": {"failure_rate": {"max": 0}},
    }],
}


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[list[NsHost], Path]]:
    # host 2 starts with an empty LXC store: it gets the image streamed from host 1
    with namespace_hosts(PREFIX, UNDERLAY, 3, tmp_path_factory.mktemp("nshosts"),
                         without_image=frozenset({2})) as made:
        yield made


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory,
             hosts: tuple[list[NsHost], Path]) -> Iterator[str]:
    """The one cache the hosts fetch through (they have no other way out)."""
    address = UPSTREAM.removeprefix("http://").split(":")[0]
    with upstream_apt_cache(address, UPSTREAM_PORT, UPSTREAM_CACHE,
                            tmp_path_factory.mktemp("upstream")) as url:
        yield url


@dataclass(frozen=True)
class Cloud:
    """The module's deployment: its CLI (in host 0's network namespace), its work folder
    (clouds.yaml, spec.json) and how its hosts are routed."""

    cli: Cli
    work: Path
    routing: str
    # whether host 2 had the LXC image before the create (else it was streamed to it)
    host_2_had_image: bool


def lxc_nodes(machines: list[NsHost], key: Path, name: str, routing: str,
              **extra: Any) -> dict[str, Any]:
    return {"type": "LxcEngine", "container_name": name, "nodes_per_server": NODES_PER_HOST,
            "start_lxc_network": NETWORKS[routing].nodes, "routing": routing,
            "apt_upstream_proxy": UPSTREAM,
            "provider": {"type": "ExistingServers",
                         "credentials": [machine.credential(key) for machine in machines]},
            "engine": {"type": "DebianEngine", "services": ["nova-compute"]}, **extra}


@pytest.fixture(scope="module", params=["static", "vxlan"])
def cloud(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
          hosts: tuple[list[NsHost], Path], upstream: str) -> Iterator[Cloud]:
    machines, key = hosts
    routing = request.param
    networks = NETWORKS[routing]
    work = tmp_path_factory.mktemp(f"cloud-{routing}")
    cli = NetnsCli(machines[0].sshd_pid, cli_for(work / "home").env)
    config = {"type": "MultihostEngine",
              "controller": {"type": "DebianEngine", "services": CONTROLLER_SERVICES,
                             "provider": {"type": "LxcProvider",
                                          "start_lxc_network": networks.controller,
                                          "routing": routing,
                                          "container_name_prefix": f"{PREFIX}-ctl",
                                          "apt_upstream_proxy": upstream,
                                          "host_provider": {"type": "ExistingServers",
                                                            "credentials": [
                                                                machines[0].credential(key)]}}},
              "nodes": [lxc_nodes(machines[1:], key, f"{PREFIX}-cpu", routing)]}
    had_image = _has_image(machines[2])
    try:
        cli.ok("deployment", "create", "--file", write_yaml(work / "cloud.yaml", config),
               "--name", "cloud", timeout=3000)
        for fmt, name in (("clouds.yaml", "clouds.yaml"), ("rally-spec", "spec.json")):
            cli.ok("deployment", "export", "cloud", "--format", fmt,
                   "--output", str(work / name))
        yield Cloud(cli, work, routing, had_image)
    finally:
        for machine in machines:  # a test that cut a host off puts it back first
            _link(machine, "up")
        cli.destroy_all()
        # host 2 keeps the bridge and routes that the abandoned deployment held there
        # (destroy --abandon said so): what a host that comes back still has
        assert [leftovers(machine, networks.supernet) for machine in machines[:2]] == [[], []]
        assert [c for c in machines[2].containers() if c.startswith(PREFIX)] == []
        assert ledger_rows(work / "home") == 0


def leftovers(host: NsHost, supernet: str) -> list[str]:
    """Containers, routes into the deployment's network, bridges, VXLAN devices."""
    found = [name for name in host.containers() if name.startswith(PREFIX)]
    found += host.routes_inside(supernet)
    found += [link for link in host.links() if link.startswith(("bblxc", "bbvx"))]
    return found


def _has_image(host: NsHost) -> bool:
    return host.run(f"test -f /var/lib/lxc/{IMAGE}/benchbed-image.json",
                    check=False).returncode == 0


def _link(host: NsHost, state: str) -> None:
    """Cut a host off the underlay (its link on this machine's side) or put it back."""
    subprocess.run(["ip", "link", "set", f"{host.namespace}v", state], check=True)


def _attach(host: NsHost, name: str, command: str) -> str:
    return host.run(f"lxc-attach -n {name} -- sh -c '{command}'").stdout


def test_every_compute_on_both_hosts_is_up_and_reaches_the_controller_from_its_own_address(
        cloud: Cloud, hosts: tuple[list[NsHost], Path]) -> None:
    cli = cloud.cli
    machines, _ = hosts
    results = cli.json("deployment", "check", "cloud")
    assert all(r["ok"] for r in results), results
    by_target = {r["target"]: r["detail"] for r in results}
    computes = 2 * NODES_PER_HOST
    assert by_target["nodes[0]: compute services"] == f"{computes}/{computes} up", by_target
    endpoints = cli.json("deployment", "show", "cloud")["endpoints"]
    compute_hosts = endpoints["nodes"][0]["compute_hosts"]
    on_host = [[name for name in machine.containers() if name in compute_hosts]
               for machine in machines]
    assert [len(names) for names in on_host] == [0, NODES_PER_HOST, NODES_PER_HOST], on_host
    controller = endpoints["servers"][0]
    # RabbitMQ's connections on the controller come from the nodes' own addresses
    peers = _attach(machines[0], controller["name"],
                    "ss -Htn state established \"( sport = :5672 )\"")
    # the peer's address, IPv4 or IPv4-mapped ([::ffff:10.254.73.3]:41234)
    addresses = {ipaddress.IPv4Address(re.sub(r"^\[::ffff:|\]$", "",
                                              line.split()[-1].rsplit(":", 1)[0]))
                 for line in peers.splitlines() if line.strip()}
    slices = NETWORKS[cloud.routing].node_slices
    assert all(any(address in network for address in addresses) for network in slices), peers
    # host 2 got the image from host 1, through benchbed's machine, not by building its own
    timeline = cli.json("deployment", "show", "cloud")["timeline"]
    streamed = [step["detail"] for step in timeline if step["step"] == "stream LXC image"]
    assert streamed == ([] if cloud.host_2_had_image else
                        [f"{IMAGE}: {machines[1].address} -> {machines[2].address}"]), streamed
    assert not any(step["step"] == "build LXC image" for step in timeline)
    assert _has_image(machines[2])


def test_rally_boots_servers_on_both_hosts_without_failures(
        cloud: Cloud, hosts: tuple[list[NsHost], Path], tmp_path: Path) -> None:
    work = cloud.work
    machines, _ = hosts
    env = {"OS_CLIENT_CONFIG_FILE": str(work / "clouds.yaml")}
    image = tmp_path / "tiny.img"
    image.write_bytes(b"\0" * 65536)
    client("openstack", "--os-cloud", "cloud", "image", "create", "--file", str(image),
           "--disk-format", "raw", "--container-format", "bare", "--public", "bb-tiny",
           env=env, netns=machines[0].sshd_pid)
    rally_task_without_failures(tmp_path, work / "spec.json", BOOT_AND_DELETE, timeout=1200,
                                netns=machines[0].sshd_pid)


def _killed_config(cloud: Cloud, machines: list[NsHost], key: Path, name: str,
                   tolerate: int) -> dict[str, Any]:
    """Nodes of a new deployment joining the module's controller (its container as an
    ExistingServers controller: its packages are in), on hosts 1 and 2."""
    cli, work = cloud.cli, cloud.work
    controller = cli.json("deployment", "show", "cloud")["endpoints"]["servers"][0]
    password = yaml.safe_load((work / "clouds.yaml").read_text())[
        "clouds"]["cloud"]["auth"]["password"]
    return {"type": "MultihostEngine",
            "controller": {"type": "DebianEngine", "services": CONTROLLER_SERVICES,
                           "admin_password": password,
                           "provider": {"type": "ExistingServers", "credentials": [
                               {"host": controller["host"], "user": "root",
                                "key": controller["key"]}]}},
            "nodes": [lxc_nodes(machines[1:], key, name, cloud.routing, tolerate=tolerate,
                                nodes_per_server=1)]}


def _create_and_cut_host_2(cli: Cli, config: dict[str, Any], tmp_path: Path, name: str,
                           machines: list[NsHost]) -> tuple[int, str, float]:
    """Start the create; cut host 2 off once its clone is being made (the create still
    running): the create's exit code, its stderr, and how long it ran after the cut."""
    process = cli.popen("deployment", "create", "--file",
                        write_yaml(tmp_path / f"{name}.yaml", config), "--name", name)
    prefix = f"{PREFIX}-{name}"
    try:
        deadline = time.monotonic() + 1500
        while len([c for c in machines[2].containers() if c.startswith(prefix)]) < 2:
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "host 2's clone never started"
            time.sleep(0.5)
        _link(machines[2], "down")
        cut = time.monotonic()
        _, stderr = process.communicate(timeout=900)
        return process.returncode, stderr, time.monotonic() - cut
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


@contextmanager
def _cut_off(cloud: Cloud, hosts: tuple[list[NsHost], Path], tmp_path: Path,
             tolerate: int) -> Iterator[tuple[Cli, str, int, str, float]]:
    """A deployment of nodes tolerating `tolerate` lost hosts, host 2 cut off while they
    start: its CLI, its name, the create's exit code, stderr and seconds after the cut. Host 2
    is put back and what is left of the deployment removed on the way out."""
    machines, key = hosts
    cli = NetnsCli(machines[0].sshd_pid, cli_for(tmp_path / "home").env)
    name = f"tol{tolerate}-{cloud.routing[:2]}"
    try:
        yield cli, name, *_create_and_cut_host_2(
            cli, _killed_config(cloud, machines, key, f"{PREFIX}-{name}", tolerate), tmp_path,
            name, machines)
    finally:
        _link(machines[2], "up")
        cli.destroy_all()
        machines[2].run(f"for c in $(lxc-ls -1); do case $c in {PREFIX}-{name}*) "
                        f"lxc-destroy -f -n $c;; esac; done", timeout=300)


def test_a_host_lost_while_nodes_start_is_tolerated_and_destroy_abandons_it(
        cloud: Cloud, hosts: tuple[list[NsHost], Path], tmp_path: Path) -> None:
    machines, _ = hosts
    with _cut_off(cloud, hosts, tmp_path, 1) as (cli, name, code, stderr, took):
        assert code == 0, stderr
        print(f"create ended {took:.0f} s after host 2 was cut off")
        endpoints = cli.json("deployment", "show", name)["endpoints"]["nodes"][0]
        assert [lost["host"] for lost in endpoints["lost_hosts"]] == [machines[2].address]
        results = cli.json("deployment", "check", name)
        by_target = {r["target"]: (r["ok"], r["detail"]) for r in results}
        assert by_target["nodes[0]: lost hosts"][0] is True, by_target
        assert machines[2].address in by_target["nodes[0]: lost hosts"][1]
        assert by_target["nodes[0]: compute services"] == (True, "1/1 up"), by_target
        stopped = cli("deployment", "destroy", name, timeout=900)
        assert stopped.returncode != 0 and machines[2].address in stopped.stderr, stopped.stderr
        cli.ok("deployment", "destroy", name, "--abandon", machines[2].address, timeout=900)
        assert ledger_rows(tmp_path / "home") == 0
        assert [c for c in machines[1].containers() if c.startswith(f"{PREFIX}-{name}")] == []


def test_a_host_lost_with_nothing_tolerated_fails_the_create_in_one_line_naming_it(
        cloud: Cloud, hosts: tuple[list[NsHost], Path], tmp_path: Path) -> None:
    machines, _ = hosts
    with _cut_off(cloud, hosts, tmp_path, 0) as (cli, name, code, stderr, took):
        assert code != 0
        print(f"create failed {took:.0f} s after host 2 was cut off: {stderr.strip()}")
        # the progress line, then one error line naming the host
        errors = [line for line in stderr.splitlines() if line.startswith("benchbed: error:")]
        assert len(errors) == 1 and machines[2].address in errors[0], stderr
        assert "lost" in errors[0] and "0 tolerated" in errors[0], errors
        assert stderr.strip().splitlines()[-1] == errors[0], stderr
        assert took < 300, took
        _link(machines[2], "up")
        cli.ok("deployment", "destroy", name, timeout=900)
        assert ledger_rows(tmp_path / "home") == 0
        assert [c for machine in machines for c in machine.containers()
                if c.startswith(f"{PREFIX}-{name}")] == []
