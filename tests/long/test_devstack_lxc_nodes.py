"""DevStack compute nodes as LXC clones, the older tool's `devstack-lxc-engine` shape with
`distribution: debian`: a MultihostEngine whose controller is a whole DevStack cloud without
a compute of its own, and whose node is an LxcEngine with a DevstackEngine template (the
compute services of DevStack's multinode guide). The template stacks once; five clones of
it each resume as their own compute host (host name, Nova service, OVN chassis, machine-id).

Proven with the real clients: `check` (five computes up, each in Placement), `openstack
compute service list` and `network agent list` (one chassis per clone, none of the
template's), Rally's boot_and_delete_server without a failure, and `destroy` leaving no
container, ledger row, bridge or mirror. Root, real LXC, network 10.254.165.0/24; about 15
minutes on an idle 2-core machine.
"""

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import upstream
from tests.conftest import (
    Cli,
    cli_for,
    client,
    ledger_rows,
    rally_task_without_failures,
    write_yaml,
)
from tests.integration.debian_lab import lxc_here, lxc_leftovers
from tests.integration.devstack_lab import RALLY_TASK, WHOLE_CLOUD
from tests.long.test_devstack_multinode import CONTROLLER_DISABLED, NODE_CONF

pytestmark = pytest.mark.root

NETWORK = "10.254.165.0/24"
CONTROLLER_PREFIX = "bbdlc"
NODE_PREFIX = "bbdln"
CLONES = 5
LOCALHOST = {"type": "ExistingServers", "credentials": [{"host": "localhost", "user": "root"}]}
BOOT_AND_DELETE = {key: value for key, value in RALLY_TASK.items() if key.startswith("Nova")}


def multihost() -> dict[str, Any]:
    mirror = str(upstream.git_mirror())
    return {"type": "MultihostEngine",
            "controller": {"type": "DevstackEngine", "git_mirror": mirror,
                           "local_conf": WHOLE_CLOUD, "disable_service": CONTROLLER_DISABLED,
                           "provider": lxc_here(NETWORK, CONTROLLER_PREFIX)},
            "nodes": [{"type": "LxcEngine", "distribution": "debian",
                       "container_name": NODE_PREFIX, "nodes_per_server": CLONES,
                       "start_lxc_network": NETWORK, "provider": LOCALHOST,
                       "engine": {"name": "DevstackEngine", "git_mirror": mirror,
                                  "local_conf": NODE_CONF}}]}


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cli, Path]]:
    work = tmp_path_factory.mktemp("devstack-lxc-nodes")
    cli = cli_for(work / "home")
    try:
        cli.ok("deployment", "create", "--file", write_yaml(work / "lxc.yaml", multihost()),
               "--name", "lxc", timeout=5400)
        for fmt, name in (("clouds.yaml", "clouds.yaml"), ("rally-spec", "spec.json")):
            cli.ok("deployment", "export", "lxc", "--format", fmt,
                   "--output", str(work / name))
        image = work / "tiny.img"
        image.write_bytes(b"\0" * 65536)
        openstack(work, "image", "create", "--file", str(image), "--disk-format", "raw",
                  "--container-format", "bare", "--public", "bb-tiny")
        yield cli, work
    finally:
        cli.destroy_all()


def openstack(work: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return client("openstack", "--os-cloud", "lxc", *args,
                  env={"OS_CLIENT_CONFIG_FILE": str(work / "clouds.yaml")}, timeout=600)


def listed(work: Path, *args: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads(openstack(work, *args, "-f", "json").stdout)
    return rows


def agents_alive(work: Path) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 120
    while True:
        agents = listed(work, "network", "agent", "list")
        if agents and all(agent["Alive"] for agent in agents):
            return agents
        assert time.monotonic() < deadline, agents
        time.sleep(5)


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
    assert len(chassis) == CLONES + 1 and set(clones) < set(chassis), agents
    assert template not in {agent["Host"] for agent in agents}, agents


def test_rally_boots_servers_on_the_clones(cloud: tuple[Cli, Path], tmp_path: Path) -> None:
    cli, work = cloud
    rally_task_without_failures(tmp_path, work / "spec.json", BOOT_AND_DELETE, timeout=1200)
    hosts = cli.json("deployment", "show", "lxc")["endpoints"]["nodes"][0]["compute_hosts"]
    deleted = listed(work, "server", "list", "--all-projects", "--deleted", "--long")
    landed = {server["Host"] for server in deleted}
    assert len(deleted) >= 10 and landed <= set(hosts) and len(landed) > 1, deleted


def test_destroy_leaves_nothing(cloud: tuple[Cli, Path]) -> None:
    cli, work = cloud
    cli.ok("deployment", "destroy", "lxc", timeout=1200)
    assert lxc_leftovers(NETWORK, CONTROLLER_PREFIX) == {
        "containers": [], "bridges": [], "processes": []}
    assert lxc_leftovers(NETWORK, NODE_PREFIX)["containers"] == []
    assert ledger_rows(work / "home") == 0
