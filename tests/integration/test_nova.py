"""Nova at scale, as root, with real LXC and Debian's packages: a controller (Keystone, Glance,
Placement, Neutron, Nova) and an LxcEngine of fake compute nodes cloned from one prepared
container; the real `openstack` and `rally` clients against it, and `benchbed task run` of
samples/tasks/nova-boot.yaml with every server's services sampled; kill -9 while the clones
start, then destroy leaving nothing. Network 10.254.190.0/24. About 8 minutes on an idle
2-core machine (create 4 min, Rally 70 s, the kill test 2.5 min).

One deployment serves every assertion (the controller's install is most of the cost). The
kill test then re-uses that controller's container as an ExistingServers controller: its
packages are in, so only the recipes' steps run again.
"""

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import (
    CLIENTS,
    Cli,
    cli_for,
    client,
    kill_when,
    ledger_rows,
    rally_task_without_failures,
    write_yaml,
)
from tests.integration.debian_lab import sh

pytestmark = pytest.mark.root

NETWORK = "10.254.190.0/24"
REPOSITORY = Path(__file__).resolve().parents[2]
COMPUTES = 3
LOCALHOST = {"type": "ExistingServers", "credentials": [{"host": "localhost", "user": "root"}]}
CONTROLLER_SERVICES = ["keystone", "glance", "placement", "neutron", "nova"]

RALLY_TASK = {
    "NovaServers.boot_and_delete_server": [{
        "args": {"flavor": {"name": "bb.tiny"}, "image": {"name": "bb-tiny"}},
        "runner": {"type": "constant", "times": 10, "concurrency": 5},
        "context": {"users": {"tenants": 2, "users_per_tenant": 1},
                    "flavors": [{"name": "bb.tiny", "ram": 64, "vcpus": 1, "disk": 1}]},
        "sla": {"failure_rate": {"max": 0}},
    }],
    "NeutronNetworks.create_and_list_networks": [{
        "args": {},
        "runner": {"type": "constant", "times": 10, "concurrency": 5},
        "context": {"users": {"tenants": 2, "users_per_tenant": 1}},
        "sla": {"failure_rate": {"max": 0}},
    }],
}


def containers(prefix: str) -> list[str]:
    return [name for name in sh("lxc-ls -1").split() if name.startswith(f"{prefix}-")]


def lxc_nodes(container_name: str, amount: int, engine: dict[str, Any] | None = None
              ) -> dict[str, Any]:
    return {"type": "LxcEngine", "container_name": container_name, "nodes_per_server": amount,
            "start_lxc_network": NETWORK, "provider": LOCALHOST,
            "engine": engine or {"name": "DebianEngine", "services": ["nova-compute"]}}


@pytest.fixture(scope="module")
def nova(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cli, Path]]:
    work = tmp_path_factory.mktemp("nova")
    cli = cli_for(work / "home")
    config = {"type": "MultihostEngine",
              "controller": {"type": "DebianEngine", "services": CONTROLLER_SERVICES,
                             "provider": {"type": "LxcProvider", "start_lxc_network": NETWORK,
                                          "container_name_prefix": "bbnvc",
                                          "host_provider": LOCALHOST}},
              "nodes": [lxc_nodes("bbnvn", COMPUTES)]}
    try:
        cli.ok("deployment", "create", "--file", write_yaml(work / "nova.yaml", config),
               "--name", "nova", timeout=2400)
        for fmt, name in (("clouds.yaml", "clouds.yaml"), ("rally-spec", "spec.json")):
            cli.ok("deployment", "export", "nova", "--format", fmt, "--output", str(work / name))
        yield cli, work
    finally:
        cli.destroy_all()
        assert containers("bbnvc") == [] and containers("bbnvn") == []
        assert ledger_rows(work / "home") == 0


@pytest.fixture(scope="module")
def tiny_image(nova: tuple[Cli, Path]) -> str:
    """The public image the Rally tasks boot (`bb-tiny`, as samples/tasks/nova-boot.yaml says):
    the fake driver never reads it, so any few bytes do. Uploaded once: a second image of
    that name would make Rally's lookup by name ambiguous."""
    _, work = nova
    image = work / "tiny.img"
    image.write_bytes(os.urandom(64 * 1024))
    client("openstack", "--os-cloud", "nova", "image", "create", "--file", str(image),
           "--disk-format", "raw", "--container-format", "bare", "--public", "bb-tiny",
           env={"OS_CLIENT_CONFIG_FILE": str(work / "clouds.yaml")})
    return "bb-tiny"


def test_check_proves_every_endpoint_compute_and_provider(nova: tuple[Cli, Path]) -> None:
    cli, _ = nova
    results = cli.json("deployment", "check", "nova")
    assert all(r["ok"] for r in results), results
    catalogue = next(r for r in results if r["target"] == "controller: service catalogue")
    assert catalogue["detail"] == "compute, identity, image, network, placement"
    by_target = {r["target"]: r["detail"] for r in results}
    assert by_target["nodes[0]: compute services"] == f"{COMPUTES}/{COMPUTES} up"
    assert by_target["nodes[0]: placement resource providers"] == \
        f"{COMPUTES}/{COMPUTES} compute hosts"


def test_openstack_lists_the_fake_computes_up(nova: tuple[Cli, Path]) -> None:
    cli, work = nova
    env = {"OS_CLIENT_CONFIG_FILE": str(work / "clouds.yaml")}
    services = json.loads(client("openstack", "--os-cloud", "nova", "compute", "service",
                                 "list", "-f", "json", env=env).stdout)
    computes = {s["Host"]: s["State"] for s in services if s["Binary"] == "nova-compute"}
    endpoints = cli.json("deployment", "show", "nova")["endpoints"]
    hosts = endpoints["nodes"][0]["compute_hosts"]
    assert len(hosts) == COMPUTES and all(computes.get(host) == "up" for host in hosts), \
        services
    # the template's compute service left Nova before it became the clones' lower layer
    assert len(computes) == COMPUTES
    assert {"nova-conductor", "nova-scheduler"} <= {s["Binary"] for s in services}
    hypervisors = json.loads(client("openstack", "--os-cloud", "nova", "hypervisor", "list",
                                    "-f", "json", env=env).stdout)
    assert sorted(h["Hypervisor Hostname"] for h in hypervisors) == sorted(hosts)


def test_show_reports_resident_memory_per_node(nova: tuple[Cli, Path]) -> None:
    cli, _ = nova
    servers = cli.json("deployment", "show", "nova")["endpoints"]["nodes"][0]["servers"]
    assert len(servers) == COMPUTES
    # one fake nova-compute is 130-160 MB resident (DESIGN.md); zero would mean none runs
    assert all(50 < server["resident_mb"] < 400 for server in servers), servers
    shown = cli.ok("deployment", "show", "nova").stdout
    assert "resident_mb" in shown


def test_clones_stand_on_the_template_without_copying_it(nova: tuple[Cli, Path]) -> None:
    cli, _ = nova
    endpoints = cli.json("deployment", "show", "nova")["endpoints"]["nodes"][0]
    template = endpoints["templates"][0]
    assert sh(f"lxc-info -n {template} -s").split()[-1] == "STOPPED"
    for name in endpoints["compute_hosts"]:
        rootfs = sh(f"lxc-info -n {name} -c lxc.rootfs.path")
        assert f"/{template}/overlay/delta:" in rootfs, rootfs
        delta = Path(f"/var/lib/lxc/{name}/overlay/delta")
        assert not (delta / "usr/lib/python3/dist-packages/nova").exists()


def test_rally_boots_servers_and_creates_networks_without_failures(
        nova: tuple[Cli, Path], tiny_image: str, tmp_path: Path) -> None:
    _, work = nova
    assert RALLY_TASK["NovaServers.boot_and_delete_server"][0]["args"]["image"] == \
        {"name": tiny_image}
    rally_task_without_failures(tmp_path, work / "spec.json", RALLY_TASK, timeout=900)


def test_task_run_boots_servers_and_samples_controller_and_computes(
        nova: tuple[Cli, Path], tiny_image: str) -> None:
    """`benchbed task run` of samples/tasks/nova-boot.yaml (boot_and_delete_server, 6 at
    concurrency 2): the run, its iterations with Nova's atomic actions, and per-service samples
    of the controller's container and of every compute node's."""
    cli, _ = nova
    task = REPOSITORY / "samples" / "tasks" / "nova-boot.yaml"
    assert f"image: {{name: {tiny_image}}}" in task.read_text()
    done = cli("task", "run", str(task), "--deployment", "nova", "--tag", "proof=nova",
               "--rally", str(CLIENTS / "rally"), "--json", timeout=900)
    assert done.returncode == 0, done.stdout[-1500:] + done.stderr[-1500:]
    run = json.loads(done.stdout)
    assert run["status"] == "finished" and run["sla_ok"] is True, run
    shown = cli.json("task", "show", run["uuid"])
    assert [(s["scenario"], s["iterations"], s["failed"], s["pass_sla"])
            for s in shown["scenarios"]] == [("NovaServers.boot_and_delete_server", 6, 0, True)]
    iterations = shown["iterations"]
    assert len(iterations) == 6 and all(item["error"] is None for item in iterations)
    for item in iterations:
        actions = [name for name, _ in item["atomic"]]
        assert {"nova.boot_server", "nova.delete_server"} <= set(actions), actions

    endpoints = cli.json("deployment", "show", "nova")["endpoints"]
    controller = endpoints["servers"][0]["name"]
    services = set(shown["services"])
    assert {f"{controller}/nova-conductor", f"{controller}/mariadb"} <= services, services
    assert {f"{name}/nova-compute" for name in endpoints["nodes"][0]["compute_hosts"]} \
        <= services, services


def test_kill_while_the_clones_start_then_destroy_leaves_nothing(
        nova: tuple[Cli, Path], tmp_path: Path) -> None:
    cli, work = nova
    endpoints = cli.json("deployment", "show", "nova")["endpoints"]
    controller = dict(endpoints["servers"][0])
    home = tmp_path / "home"
    killed = cli_for(home)
    config = {"type": "MultihostEngine",
              "controller": {"type": "DebianEngine", "services": CONTROLLER_SERVICES,
                             "admin_password": _admin_password(work),
                             "provider": {"type": "ExistingServers", "credentials": [
                                 {"host": controller["host"], "user": "root",
                                  "key": controller["key"]}]}},
              "nodes": [lxc_nodes("bbnvk", 4)]}
    process = killed.popen("deployment", "create", "--file",
                           write_yaml(tmp_path / "k.yaml", config), "--name", "killed")
    try:
        kill_when(process, lambda: len(containers("bbnvk")) >= 2, timeout=1500,
                  never="the clones never started")
        assert ledger_rows(home) > 0
        # the nodes go (clones, then template), then what this deployment added on the
        # fixture's controller container is purged; the fixture then removes the container
        killed.ok("deployment", "destroy", "--force", "killed", timeout=900)
        assert containers("bbnvk") == []
        assert ledger_rows(home) == 0
    finally:
        killed.destroy_all()


def _admin_password(work: Path) -> str:
    clouds = yaml.safe_load((work / "clouds.yaml").read_text())
    return clouds["clouds"]["nova"]["auth"]["password"]
