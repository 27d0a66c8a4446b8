"""MultihostEngine end to end, as root, with real LXC: a Keystone controller and a Glance node
on containers of their own, the real `openstack` client storing an image on the node, kill -9
while the nodes deploy, and destroy leaving nothing. Network 10.254.150.0/24.
"""

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Cli, cli_for, kill_when, ledger_rows, write_yaml
from tests.integration.debian_lab import sh

pytestmark = pytest.mark.root

ROOT = Path(__file__).resolve().parents[2]
CLIENTS = ROOT / ".venv-clients" / "bin"
NETWORK = "10.254.150.0/24"
# the cheap tests' own network: the module's Keystone/Glance deployment holds NETWORK's
# bridge until the module ends, so "the network is gone" is asserted on this one
CHEAP_NETWORK = "10.254.153.0/24"
LOCALHOST = {"type": "ExistingServers", "credentials": [{"host": "localhost", "user": "root"}]}


def lxc(prefix: str, network: str = NETWORK) -> dict[str, Any]:
    return {"type": "LxcProvider", "start_lxc_network": network,
            "container_name_prefix": prefix, "host_provider": LOCALHOST}


def network_gone(network: str = NETWORK) -> bool:
    """The test network's bridge, DHCP and proxy are gone: every holder released it."""
    import ipaddress

    from benchbed.hostnet import bridge_name

    bridge = bridge_name(ipaddress.IPv4Network(network))
    return subprocess.run(["ip", "link", "show", "dev", bridge],
                          capture_output=True).returncode != 0


def containers(prefix: str) -> list[str]:
    return [name for name in sh("lxc-ls -1").split() if name.startswith(f"{prefix}-")]


@pytest.fixture(scope="module")
def multihost(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cli, Path]]:
    """Keystone on the controller's container, Glance on the node's, one deployment."""
    work = tmp_path_factory.mktemp("multihost")
    cli = cli_for(work / "home")
    config = {"type": "MultihostEngine",
              "controller": {"type": "DebianEngine", "services": ["keystone"],
                             "provider": lxc("bbmhc")},
              "nodes": [{"type": "DebianEngine", "services": ["glance"],
                         "provider": lxc("bbmhn")}]}
    try:
        cli.ok("deployment", "create", "--file", write_yaml(work / "mh.yaml", config),
               "--name", "mh", timeout=1500)
        cli.ok("deployment", "export", "mh", "--format", "clouds.yaml",
               "--output", str(work / "clouds.yaml"))
        yield cli, work
        destroyed = cli("deployment", "destroy", "mh", timeout=600)
        assert destroyed.returncode == 0, destroyed.stderr
    finally:
        cli.destroy_all()
    assert containers("bbmhc") == [] and containers("bbmhn") == []
    assert ledger_rows(work / "home") == 0
    assert network_gone()


def test_check_covers_the_controller_and_the_node(multihost: tuple[Cli, Path]) -> None:
    cli, _ = multihost
    results = cli.json("deployment", "check", "mh")
    assert all(r["ok"] for r in results), results
    assert any(r["target"].startswith("controller: keystone") for r in results)
    node_image = [r for r in results if r["target"].startswith("nodes[0]: image ")]
    assert node_image, results
    assert cli.json("deployment", "show", "mh")["status"] == "deploy->finished"


def test_an_image_is_stored_on_the_node_not_the_controller(multihost: tuple[Cli, Path],
                                                           tmp_path: Path) -> None:
    cli, work = multihost
    endpoints = json.loads(cli.ok("deployment", "export", "mh", "--format", "json").stdout)
    node_address = endpoints["nodes"][0]["servers"][0]["host"]
    controller_address = endpoints["servers"][0]["host"]
    assert endpoints["controller_ip"] == controller_address != node_address
    image = tmp_path / "tiny.img"
    image.write_bytes(os.urandom(128 * 1024))
    env = {**os.environ, "OS_CLIENT_CONFIG_FILE": str(work / "clouds.yaml")}
    created = subprocess.run(
        [str(CLIENTS / "openstack"), "--os-cloud", "mh", "image", "create", "--file",
         str(image), "--disk-format", "raw", "--container-format", "bare", "-f", "json",
         "on-node"], capture_output=True, text=True, timeout=300, env=env)
    assert created.returncode == 0, created.stderr
    image_id = json.loads(created.stdout)["id"]
    stored = {name: sh(f"lxc-attach -n {name} -- ls /var/lib/glance/images/", check=False)
              for name in containers("bbmhc") + containers("bbmhn")}
    on_node = [name for name, listing in stored.items() if image_id in listing]
    assert len(on_node) == 1 and on_node[0].startswith("bbmhn-"), stored


def test_destroy_goes_nodes_first_and_leaves_nothing(tmp_path: Path) -> None:
    """Cheap engines (ServersEngine) on LXC: the order and the zero, without an install."""
    cli = cli_for(tmp_path / "home")
    config = {"type": "MultihostEngine",
              "controller": {"type": "ServersEngine", "provider": lxc("bbmhd", CHEAP_NETWORK)},
              "nodes": [{"type": "ServersEngine", "provider": lxc("bbmhd", CHEAP_NETWORK)}
                        for _ in range(2)]}
    try:
        cli.ok("deployment", "create", "--file", write_yaml(tmp_path / "c.yaml", config),
               "--name", "order")
        assert len(containers("bbmhd")) == 3
        shown = cli.json("deployment", "show", "order")
        scopes = {r["scope"] for r in shown["resources"]}
        assert {"", "controller.provider", "nodes[0].provider", "nodes[1].provider"} <= scopes
        cli.ok("deployment", "destroy", "order")
        assert containers("bbmhd") == []
        assert ledger_rows(tmp_path / "home") == 0
        assert network_gone(CHEAP_NETWORK)
    finally:
        cli.destroy_all()


def test_kill_while_the_nodes_deploy_then_destroy_leaves_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    cli = cli_for(home)
    config = {"type": "MultihostEngine",
              "controller": {"type": "ServersEngine", "provider": lxc("bbmhk", CHEAP_NETWORK)},
              "nodes": [{"type": "ServersEngine", "provider": lxc("bbmhk", CHEAP_NETWORK)}
                        for _ in range(3)]}
    process = cli.popen("deployment", "create", "--file", write_yaml(tmp_path / "k.yaml", config),
                        "--name", "killed")
    try:
        kill_when(process, lambda: _status(home) == "deploy->subdeploy", timeout=120,
                  never="never reached deploy->subdeploy", interval=0.02)
        assert ledger_rows(home) > 0
        cli.ok("deployment", "destroy", "--force", "killed", timeout=300)
        assert containers("bbmhk") == []
        assert ledger_rows(home) == 0
        assert network_gone(CHEAP_NETWORK)
    finally:
        cli.destroy_all()


def _status(home: Path) -> str | None:
    import sqlite3

    database = home / "benchbed.sqlite"
    if not database.exists():
        return None
    try:
        with sqlite3.connect(database, timeout=5) as connection:
            row = connection.execute("SELECT status FROM deployments").fetchone()
    except sqlite3.Error:
        return None
    return row[0] if row else None


@pytest.mark.parametrize(("nodes", "message"), [
    ([{"type": "ServersEngine", "provider": {"type": "ExistingServers", "credentials": [
        {"host": "{controller_ip", "user": "root"}]}}],
     "nodes[0].provider.credentials[0].host: malformed placeholder"),
    ([{"type": "ServersEngine", "provider": {"type": "ExistingServers", "credentials": [
        {"host": "{controler_ip}", "user": "root"}]}}],
     "nodes[0].provider.credentials[0].host: malformed placeholder near '{controler_ip}"),
    ([{"type": "DebianEngine", "services": ["glance"], "provider": {
        "type": "NetnsProvider", "network": "10.254.150.0/29"}}],
     "nodes[0].provider: NetnsProvider servers share"),
    ([], "nodes: "),
])
def test_bad_node_configs_are_refused_with_their_path(tmp_path: Path, nodes: list[Any],
                                                      message: str) -> None:
    cli = cli_for(tmp_path / "home")
    config = {"type": "MultihostEngine",
              "controller": {"type": "ServersEngine", "provider": LOCALHOST}, "nodes": nodes}
    result = cli("deployment", "create", "--file", write_yaml(tmp_path / "bad.yaml", config),
                 "--name", "bad")
    assert result.returncode == 2, result.stderr
    assert message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr
    assert json.loads(cli.ok("deployment", "list", "--json").stdout) == []


def test_a_node_config_sees_the_controller_address_at_validation(tmp_path: Path) -> None:
    cli = cli_for(tmp_path / "home")
    config = {"type": "MultihostEngine",
              "controller": {"type": "ServersEngine", "provider": LOCALHOST},
              "nodes": [{"type": "ServersEngine", "provider": {
                  "type": "ExistingServers",
                  "credentials": [{"host": "{controller_ip}", "user": "root"}]}}]}
    cli.ok("deployment", "validate", "--file", write_yaml(tmp_path / "ok.yaml", config))
