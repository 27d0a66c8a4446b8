"""DevStack on several nodes, the older tool's `multihost` shape: a MultihostEngine whose
controller is a whole DevStack cloud without a compute of its own, and whose node is a
DevstackEngine on two LXC containers (nova-compute with the fake driver, OVN's controller
and metadata agent) that stack against `{controller_ip}` once the controller is up.

Proven with the real clients: `check` (both computes up, each with a Placement resource
provider), `openstack compute service list`, every node's OVN chassis alive, Rally's
boot_and_delete_server without a failure and on more than one compute host; `destroy`
leaving no container, ledger row, bridge or mirror. A node whose stack.sh fails while its
controller is fine: one line naming the node's server, DevStack's function and command, and
`destroy` leaves nothing. Then kill -9 while the nodes stack, and `destroy` leaves nothing
either. Root, real LXC, network 10.254.164.0/24; about 30 minutes on
an idle 2-core machine (three controller stacks, the nodes' stack.sh in parallel).
"""

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import (
    Cli,
    cli_for,
    kill_when,
    ledger_rows,
    rally_task_without_failures,
    write_yaml,
)
from tests.integration.debian_lab import lxc_here, lxc_leftovers
from tests.integration.devstack_lab import create_fails
from tests.long.devstack_nodes import (
    BOOT_AND_DELETE,
    NODE_CONF,
    agents_alive,
    compute,
    controller,
    deployed,
    landed_hosts,
    listed,
)

pytestmark = pytest.mark.root

NETWORK = "10.254.164.0/24"
CONTROLLER_PREFIX = "bbdmc"
NODE_PREFIX = "bbdmn"
NODES = 2


def multihost() -> dict[str, Any]:
    return {"type": "MultihostEngine",
            "controller": controller(NETWORK, CONTROLLER_PREFIX),
            "nodes": [compute(provider={**lxc_here(NETWORK, NODE_PREFIX),
                                        "containers_per_host": NODES})]}


def nothing_left(home: Path) -> None:
    assert lxc_leftovers(NETWORK, CONTROLLER_PREFIX) == {
        "containers": [], "bridges": [], "processes": []}
    assert lxc_leftovers(NETWORK, NODE_PREFIX)["containers"] == []
    assert ledger_rows(home) == 0


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cli, Path]]:
    work = tmp_path_factory.mktemp("devstack-multinode")
    with deployed(work, "multi", multihost()) as cli:
        yield cli, work


def node_hosts(cli: Cli) -> list[str]:
    shown = cli.json("deployment", "show", "multi")
    hosts: list[str] = shown["endpoints"]["nodes"][0]["compute_hosts"]
    return hosts


def test_check_shows_every_node_compute_up_with_its_chassis(cloud: tuple[Cli, Path]) -> None:
    cli, work = cloud
    results = cli.json("deployment", "check", "multi")
    assert all(r["ok"] for r in results), results
    by_target = {r["target"]: r["detail"] for r in results}
    assert by_target["nodes[0]: compute services"] == f"{NODES}/{NODES} up"
    assert by_target["nodes[0]: placement resource providers"] == \
        f"{NODES}/{NODES} compute hosts"
    hosts = node_hosts(cli)
    assert len(set(hosts)) == NODES
    services = listed(work, "compute", "service", "list", "--service", "nova-compute")
    assert sorted((s["Host"], s["State"]) for s in services) == \
        sorted((host, "up") for host in hosts)
    # one OVN chassis per server, the nodes' as gateways too (DevStack's
    # ENABLE_CHASSIS_AS_GW), each with its metadata agent
    agents = agents_alive(work)
    chassis = {agent["Host"] for agent in agents
               if agent["Agent Type"].startswith("OVN Controller")}
    metadata = {agent["Host"] for agent in agents if agent["Agent Type"] == "OVN Metadata agent"}
    assert len(chassis) == NODES + 1 and metadata == chassis, agents


def test_rally_boots_servers_on_more_than_one_node(cloud: tuple[Cli, Path],
                                                   tmp_path: Path) -> None:
    cli, work = cloud
    rally_task_without_failures(tmp_path, work / "spec.json", BOOT_AND_DELETE, timeout=1200)
    servers, landed = landed_hosts(work)
    assert servers >= 10 and landed <= set(node_hosts(cli)) and len(landed) > 1, landed


def test_destroy_leaves_no_container_row_or_mirror(cloud: tuple[Cli, Path]) -> None:
    cli, work = cloud
    cli.ok("deployment", "destroy", "multi", timeout=1200)
    assert cli.json("deployment", "list") == []
    nothing_left(work / "home")


def test_a_failing_node_is_one_line_naming_its_server_function_and_command(
        tmp_path: Path) -> None:
    """The controller stacks; the node's stack.sh fails (a Nova branch its git server does
    not have): the one line names the node's server, DevStack's function and command, and
    the log's last lines; destroy leaves nothing."""
    home = tmp_path / "home"
    cli = cli_for(home)
    failing = multihost()
    failing["nodes"][0]["local_conf"] = {**NODE_CONF, "NOVA_BRANCH": "bb-no-such-branch"}
    failing["nodes"][0]["provider"]["containers_per_host"] = 1
    try:
        error = create_fails(cli, write_yaml(tmp_path / "fail.yaml", failing), "fail")
        [node] = lxc_leftovers(NETWORK, NODE_PREFIX)["containers"]
        address = container_address(node)
        assert re.fullmatch(
            rf"benchbed: error: DevstackEngine: root@{re.escape(address)}:22: "
            r"step 'stack.sh' failed: "
            r"stack.sh exited \d+ in \S+ \(functions-common:\d+: .+\); last lines: .+",
            error), error
        # DevStack's git_clone fetched the branch, and its git_timed died
        assert "git call failed: [git fetch origin bb-no-such-branch]" in error, error
        # the controller's stack.sh ended well, the node's did not
        stacks = [step["outcome"] for step in cli.json("deployment", "show", "fail")["timeline"]
                  if step["step"] == "stack.sh"]
        assert stacks == ["ok", "failed"], stacks
        cli.ok("deployment", "destroy", "fail", timeout=1800)
        nothing_left(home)
    finally:
        cli.destroy_all()


def container_address(name: str) -> str:
    shown = subprocess.run(["lxc-info", "-iH", "-n", name], capture_output=True, text=True,
                           check=True, timeout=60)
    return shown.stdout.split()[0]


def test_kill_9_while_the_nodes_stack_then_destroy_leaves_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    cli = cli_for(home)
    try:
        killed = cli.popen("deployment", "create", "--file",
                           write_yaml(tmp_path / "multi.yaml", multihost()), "--name", "killed")
        kill_when(killed, lambda: nodes_stacking(home), timeout=3600, interval=0.5,
                  never="the nodes' stack.sh never reached install_nova")
        assert len(lxc_leftovers(NETWORK, NODE_PREFIX)["containers"]) == NODES
        assert ledger_rows(home) > 0
        cli.ok("deployment", "destroy", "--force", "killed", timeout=1800)
        nothing_left(home)
    finally:
        cli.destroy_all()


def nodes_stacking(home: Path) -> bool:
    """Whether the nodes' stack.sh (the second one in the log, on both nodes at once) has
    reached DevStack's install_nova."""
    for log in home.glob("deployments/*/deployment.log"):
        _, started, after = log.read_text().partition(f"step started: stack.sh ({NODES} ")
        if started and ":install_nova:" in after:
            return True
    return False
