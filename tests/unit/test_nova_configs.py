"""Validation of the Nova services of DebianEngine and of LxcEngine: one line naming the key.

No server is reached: these configs are refused (or accepted) before anything exists.
"""

import copy
from pathlib import Path
from typing import Any

import pytest

from benchbed import api
from benchbed.engines.debian_services import recipes
from benchbed.errors import ConfigError

NETWORK = "10.254.190.0/24"
LOCALHOST = {"type": "ExistingServers", "credentials": [{"host": "localhost", "user": "root"}]}
LXC = {"type": "LxcProvider", "start_lxc_network": NETWORK, "host_provider": LOCALHOST}
CONTROLLER = {"type": "DebianEngine", "provider": LXC,
              "services": ["keystone", "glance", "placement", "neutron", "nova"]}
COMPUTES = {"type": "LxcEngine", "container_name": "bbnova", "nodes_per_server": 3,
            "start_lxc_network": NETWORK, "provider": LOCALHOST,
            "engine": {"name": "DebianEngine", "services": ["nova-compute"]}}


def multihost(**node: Any) -> dict[str, Any]:
    return {"type": "MultihostEngine", "controller": copy.deepcopy(CONTROLLER),
            "nodes": [{**copy.deepcopy(COMPUTES), **node}]}


@pytest.fixture(autouse=True)
def isolated(home: Path) -> Path:
    """Validation reads the networks of other deployments: a database of this test's own."""
    return home


def test_a_controller_and_lxc_computes_in_the_older_format_validate() -> None:
    config = multihost()
    api.validate(config)
    assert config["nodes"][0]["engine"] == {"type": "DebianEngine",
                                            "services": ["nova-compute"]}


def test_a_debian_compute_node_validates() -> None:
    api.validate({"type": "MultihostEngine", "controller": copy.deepcopy(CONTROLLER),
                  "nodes": [{"type": "DebianEngine", "services": ["nova-compute"],
                             "provider": LXC}]})


def test_every_service_has_a_recipe() -> None:
    from benchbed.engines.debian_services import KNOWN_SERVICES

    assert set(KNOWN_SERVICES) <= set(recipes())


@pytest.mark.parametrize(("config", "message"), [
    ({**CONTROLLER, "services": ["keystone", "nova"]},
     "config services: 'nova' needs placement, glance, neutron in the same cloud"),
    ({**CONTROLLER, "services": ["keystone", "nova-compute"]},
     "config services: 'nova-compute' needs nova in the same cloud"),
    ({**CONTROLLER, "services": ["nova-compute"]},
     "config services: must include 'keystone'"),
    ({"type": "MultihostEngine", "controller": CONTROLLER, "nodes": [
        {"type": "DebianEngine", "services": ["nova"], "provider": LXC}]},
     "config nodes[0].services[0]: 'nova' runs on the controller"),
    ({**COMPUTES, "engine": {"type": "DebianEngine", "services": ["nova-compute"]}},
     "config type: LxcEngine makes compute nodes that join a controller"),
    (multihost(nodes_per_server=0), "config nodes[0].nodes_per_server: 0 is less than"),
    (multihost(nodes_per_server=200),
     "config nodes[0].nodes_per_server: 200 nodes per server, but 10.254.190.0/24 has "
     "addresses for 125"),
    (multihost(nodes_per_server="many"), "config nodes[0].nodes_per_server: must be of type"),
    (multihost(engine={"type": "DebianEngine", "services": ["glance"]}),
     "config nodes[0].engine: must make a compute node"),
    (multihost(engine={"type": "DevstackEngine", "localrc": {"VIRT_DRIVER": "fake"}}),
     "config nodes[0].engine: must make a compute node"),
    (multihost(engine={"type": "DebianEngine", "services": ["nova-compute"],
                       "provider": LOCALHOST}),
     "config nodes[0].engine.provider: is LxcEngine's to give"),
    (multihost(tunnel_to=["10.2.0.1"]), "config nodes[0].tunnel_to: is not supported"),
    (multihost(provider=LXC), "config nodes[0].provider.type: must be ExistingServers"),
    (multihost(distribution="ubuntu"), "config nodes[0].distribution: 'ubuntu' is not one of"),
    (multihost(container_name="x; rm -rf /"), "config nodes[0].container_name: "),
    (multihost(container_name="a\nb: c"), "config nodes[0].container_name: "),
    (multihost(start_lxc_network="10.254.190.0/33"),
     "config nodes[0].start_lxc_network: not an IPv4 network"),
    (multihost(start_lxc_network="8.8.8.0/24"),
     "config nodes[0].engine.provider.start_lxc_network: host 0 would get 8.8.8.0/24, which is "
     "not a private network range"),
    (multihost(colour="red"), "config nodes[0]: unknown key(s)"),
    ({**multihost(), "controller": {**CONTROLLER, "services": ["keystone", "glance"]}},
     "config nodes[0]: joins the controller's nova, which the controller does not run (it "
     "offers glance, keystone)"),
    ({"type": "MultihostEngine", "controller": {**CONTROLLER, "services": ["keystone"]},
      "nodes": [{"type": "DebianEngine", "services": ["nova-compute"], "provider": LXC}]},
     "config nodes[0]: joins the controller's nova"),
])
def test_bad_nova_configs_are_refused_with_one_line(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        api.validate(copy.deepcopy(config))
    text = str(refused.value)
    assert text.startswith(message), text
    assert "\n" not in text


@pytest.mark.parametrize("node", [
    {"nodes_per_server": 0}, {"nodes_per_server": 126},
    {"engine": {"type": "DebianEngine", "services": ["keystone"]}}])
def test_a_refused_compute_config_creates_nothing(bb: Any, tmp_path: Path,
                                                   node: dict[str, Any]) -> None:
    """The CLI says one line and leaves no deployment and no ledger row behind."""
    from tests.conftest import ledger_rows, write_yaml

    result = bb("deployment", "create", "--name", "refused",
                "--file", write_yaml(tmp_path / "bad.yaml", multihost(**node)))
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "nodes[0]" in result.stderr
    assert bb.json("deployment", "list") == []
    assert ledger_rows(tmp_path / "home") == 0


def test_services_are_configured_in_dependency_order_with_rabbitmq(
        monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    """Whatever the config's order, each service comes after those it needs; RabbitMQ comes
    with Nova. apt and the recipes' steps are stand-ins; the engine's ordering is real."""
    from benchbed.deployment import Deployment
    from benchbed.engines import debian
    from benchbed.engines.debian_services import Context, Recipe
    from benchbed.server import Server

    configured: list[str] = []

    def recipe(name: str) -> Recipe:
        def configure(ctx: Context) -> None:
            configured.append(name)
            ctx.outputs.setdefault("auth_url", "http://192.0.2.7:5000/v3")

        return Recipe(name=name, packages=(name,), preseed=(), paths=(), services=(),
                      configure=configure)

    monkeypatch.setattr(debian, "recipes", lambda: {name: recipe(name) for name in (
        "mariadb", "mariadb-client", "rabbitmq", *debian.KNOWN_SERVICES)})
    for name in ("check", "record_baseline", "update", "preseed", "download", "install"):
        monkeypatch.setattr(debian.apt, name, lambda *_args, **_kwargs: None)
    monkeypatch.setattr(debian.apt, "missing", lambda _server, packages: packages)
    config = {**CONTROLLER, "services": ["nova", "neutron", "keystone", "placement", "glance"],
              "provider": {"type": "ExistingServers",
                           "credentials": [{"host": "192.0.2.7", "user": "root"}]}}
    deployment = Deployment.create("order", config)
    endpoints = debian.DebianEngine(deployment)._install(Server(host="192.0.2.7"))
    assert configured == ["mariadb", "rabbitmq", "keystone", "glance", "placement", "neutron",
                          "nova"]
    assert endpoints["services"] == ["keystone", "glance", "placement", "neutron", "nova"]


def test_debian_engine_declares_the_services_it_offers_and_joins() -> None:
    """What MultihostEngine checks a node against its controller with, by capability."""
    from benchbed.engines.debian import DebianEngine

    controller = DebianEngine.parse_config(CONTROLLER)
    assert DebianEngine.offered_services(controller) == set(CONTROLLER["services"])
    assert DebianEngine.joined_services(controller) == frozenset()
    node = DebianEngine.parse_config({"type": "DebianEngine", "provider": LXC,
                                      "services": ["glance", "nova-compute"]})
    assert DebianEngine.joined_services(node) == {"keystone", "nova"}
    assert DebianEngine.parse_config({"type": "DebianEngine", "provider": LXC}).services == [
        "keystone", "glance"]
