"""DevStack compute nodes as LXC clones, the older tool's `devstack-lxc-engine` shape with
`distribution: debian`: a MultihostEngine whose controller is a whole DevStack cloud without
a compute of its own, and whose node is an LxcEngine with a DevstackEngine template (the
compute services of DevStack's multinode guide without OVN's metadata agent, which a fake
compute never needs). The template stacks once; five clones of it each resume as their own
compute host (host name, Nova service, OVN chassis, machine-id).

Proven with the real clients: `check` (five computes up, each in Placement), `openstack
compute service list` and `network agent list` (one chassis per clone, none of the
template's, no metadata agent), Rally's boot_and_delete_server without a failure (each
server with a port on a network of its tenant, bound on the clone it lands on), and
`destroy` leaving no container, ledger row, bridge or mirror. Root, real LXC, network
10.254.165.0/24; about 9 minutes on an idle 2-core machine.
"""

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Cli, ledger_rows, rally_task_without_failures
from tests.integration.debian_lab import lxc_leftovers
from tests.long.devstack_nodes import (
    BOOT_AND_DELETE,
    FAKE_NODE_CONF,
    agents_alive,
    compute,
    controller,
    deployed,
    landed_hosts,
    listed,
)

pytestmark = pytest.mark.root

NETWORK = "10.254.165.0/24"
CONTROLLER_PREFIX = "bbdlc"
NODE_PREFIX = "bbdln"
CLONES = 5
IDLE_UNITS = ["ovn-northd.service", "ovn-ovsdb-server-sb.service", "haproxy.service",
              "apache2.service", "ovn-controller-vtep.service"]
LOCALHOST = {"type": "ExistingServers", "credentials": [{"host": "localhost", "user": "root"}]}


def multihost() -> dict[str, Any]:
    return {"type": "MultihostEngine",
            "controller": controller(NETWORK, CONTROLLER_PREFIX),
            "nodes": [{"type": "LxcEngine", "distribution": "debian",
                       "container_name": NODE_PREFIX, "nodes_per_server": CLONES,
                       "start_lxc_network": NETWORK, "provider": LOCALHOST,
                       "engine": compute(type_key="name",
                                         local_conf=FAKE_NODE_CONF)}]}


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cli, Path]]:
    work = tmp_path_factory.mktemp("devstack-lxc-nodes")
    with deployed(work, "lxc", multihost()) as cli:
        yield cli, work


def test_every_clone_is_a_compute_host_of_its_own(cloud: tuple[Cli, Path]) -> None:
    cli, work = cloud
    results = cli.json("deployment", "check", "lxc")
    assert all(r["ok"] for r in results), results
    by_target = {r["target"]: r["detail"] for r in results}
    assert by_target["nodes[0]: compute services"] == f"{CLONES}/{CLONES} up"
    assert by_target["nodes[0]: placement resource providers"] == \
        f"{CLONES}/{CLONES} compute hosts"
    node = cli.json("deployment", "show", "lxc")["endpoints"]["nodes"][0]
    clones = [server["name"] for server in node["servers"]]
    template = node["templates"][0]
    assert len(set(clones)) == CLONES and template not in clones
    # DevStack's fake nova-compute reports as the host name followed by its number
    assert sorted(node["compute_hosts"]) == sorted(f"{name}1" for name in clones)
    services = listed(work, "compute", "service", "list", "--service", "nova-compute")
    assert sorted((s["Host"], s["State"]) for s in services) == \
        sorted((host, "up") for host in node["compute_hosts"])
    agents = agents_alive(work)
    chassis = [agent["Host"] for agent in agents
               if agent["Agent Type"].startswith("OVN Controller")]
    # each clone's chassis is named as its fake compute reports (Neutron binds its ports
    # there); the template's agents left with it, under either of its names
    assert len(chassis) == CLONES + 1 and set(node["compute_hosts"]) < set(chassis), agents
    assert not {template, f"{template}1"} & {agent["Host"] for agent in agents}, agents
    # a fake compute's chassis without OVN's metadata agent (FAKE_NODE_CONF): none reports
    # from a clone, and no clone has its unit
    assert not [agent for agent in agents if agent["Host"] in node["compute_hosts"]
                and not agent["Agent Type"].startswith("OVN Controller")], agents
    units = subprocess.run(
        ["lxc-attach", "-n", clones[0], "--", "systemctl", "list-unit-files", "--no-legend",
         "devstack@*"], capture_output=True, text=True, check=True, timeout=60).stdout
    assert "devstack@n-cpu" in units and "metadata" not in units, units
    # what Debian's packages start and a compute never uses stays off in the clones too
    idle = subprocess.run(
        ["lxc-attach", "-n", clones[0], "--", "systemctl", "is-active", *IDLE_UNITS],
        capture_output=True, text=True, timeout=60).stdout.split()
    assert idle == ["inactive"] * len(IDLE_UNITS), idle


def test_rally_boots_servers_on_the_clones(cloud: tuple[Cli, Path], tmp_path: Path) -> None:
    cli, work = cloud
    rally_task_without_failures(tmp_path, work / "spec.json", BOOT_AND_DELETE, timeout=1200)
    hosts = cli.json("deployment", "show", "lxc")["endpoints"]["nodes"][0]["compute_hosts"]
    servers, landed = landed_hosts(work)
    assert servers >= 10 and landed <= set(hosts) and len(landed) > 1, landed


def test_destroy_leaves_nothing(cloud: tuple[Cli, Path]) -> None:
    cli, work = cloud
    cli.ok("deployment", "destroy", "lxc", timeout=1200)
    assert lxc_leftovers(NETWORK, CONTROLLER_PREFIX) == {
        "containers": [], "bridges": [], "processes": []}
    assert lxc_leftovers(NETWORK, NODE_PREFIX)["containers"] == []
    assert ledger_rows(work / "home") == 0
