"""The plugin tree: config paths as ledger scopes, declared resource kinds, capabilities,
no cascading deletes (SQLite and PostgreSQL), and the older tool's spellings."""

import threading
from typing import Any

import pytest
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError

from benchbed import api, plugin
from benchbed.db.models import deployments
from benchbed.db.session import transaction
from benchbed.deployment import Deployment
from benchbed.errors import BenchbedError, ConfigError, StatusError
from benchbed.ledger import Resource
from benchbed.plugin import ResourceKind
from benchbed.providers.base import ServerProvider
from benchbed.server import Server
from benchbed.settings import PluginConfig

NETNS = {"type": "NetnsProvider", "network": "10.254.150.0/29"}


class Boxes(ServerProvider):
    """A provider whose deletes are recorded, to watch the base class destroy."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.deleted: list[str] = []
        self.lock = threading.Lock()
        self.still_there: set[str] = set()

    def _delete(self, resource: Resource) -> None:
        with self.lock:
            self.deleted.append(resource.name)

    def _exists(self, resource: Resource) -> bool:
        return resource.name in self.still_there

    def create_servers(self, image_uuid: str | None = None, type_id: str | None = None,
                       amount: int = 1) -> list[Server]:
        return []

    RESOURCES = {
        "network": ResourceKind(delete=_delete),
        "volume": ResourceKind(delete=_delete),
        "box": ResourceKind(delete=_delete, exists=_exists, requires=("network", "volume")),
    }


@pytest.fixture
def boxes(database: str) -> Boxes:
    deployment = Deployment.create("tree", {"type": "ServersEngine", "provider": NETNS})
    return Boxes(deployment, NETNS, "nodes[0].provider")


def test_the_ledger_scope_is_the_config_path(boxes: Boxes) -> None:
    with boxes.ledger.creating("box", "b1"):
        pass
    (row,) = boxes.deployment.all_resources()
    assert row.scope == "nodes[0].provider"


def test_destroy_waits_only_for_what_a_kind_requires(boxes: Boxes) -> None:
    boxes.ledger.record("network", "net")
    boxes.ledger.record("box", "b1")
    boxes.ledger.record("volume", "vol")  # newer than b1, but b1 lives on it
    boxes.ledger.record("box", "b2")
    boxes.delete_recorded()
    assert set(boxes.deleted[:2]) == {"b1", "b2"}
    assert set(boxes.deleted[2:]) == {"net", "vol"}
    assert boxes.deployment.remaining_resources() == 0


def test_a_resource_that_still_exists_after_delete_keeps_its_row(boxes: Boxes) -> None:
    boxes.ledger.record("box", "stubborn")
    boxes.still_there.add("stubborn")
    with pytest.raises(BenchbedError, match="stubborn still exists"):
        boxes.delete_recorded()
    assert [r.name for r in boxes.ledger.resources()] == ["stubborn"]


def test_an_unknown_kind_is_an_error_and_no_row_is_dropped(boxes: Boxes) -> None:
    boxes.ledger.record("box", "b1")
    boxes.ledger.record("mystery", "m1")
    with pytest.raises(BenchbedError, match=r"unknown kind.*mystery"):
        boxes.delete_recorded()
    assert sorted(r.name for r in boxes.ledger.resources()) == ["b1", "m1"]
    assert boxes.deleted == []


def test_a_deployment_row_cannot_go_while_a_nested_plugin_has_rows(boxes: Boxes) -> None:
    deployment = boxes.deployment
    boxes.ledger.record("box", "b1")
    with pytest.raises(StatusError, match="1 resource"):
        deployment.delete()
    # even a direct delete of the row is refused by the database: nothing cascades
    with pytest.raises(IntegrityError), transaction() as db:
        db.execute(delete(deployments).where(deployments.c.uuid == deployment.uuid))
    assert [r.name for r in deployment.all_resources()] == ["b1"]
    boxes.delete_recorded()
    deployment.delete()


def test_nest_builds_every_plugin_at_its_path(database: str) -> None:
    config = {"type": "LxcProvider", "host_provider": {
        "type": "ExistingServers", "credentials": [{"user": "root", "host": "localhost"}]}}
    deployment = Deployment.create("nest", {"type": "ServersEngine", "provider": config})
    provider = plugin.build(deployment, config, ServerProvider, plugin.PROVIDERS,
                            "controller.provider")
    (host,) = provider.nested_plugins()
    assert host.path == "controller.provider.host_provider"
    assert type(host).__name__ == "ExistingServers"


def test_capabilities_replace_class_checks() -> None:
    existing = plugin.get(plugin.PROVIDERS, "ExistingServers")
    netns = plugin.get(plugin.PROVIDERS, "NetnsProvider")
    assert existing.capabilities(existing.parse_config(
        {"type": "ExistingServers", "credentials": [{"host": "h", "user": "root"}]})
    ).outlives_deployment
    assert netns.capabilities(netns.parse_config(NETNS)).shares_host
    assert netns.capacity(netns.parse_config(NETNS)) == 5


def test_debian_engine_on_netns_is_refused_at_validation(home) -> None:
    with pytest.raises(ConfigError, match="provider: NetnsProvider servers share"):
        api.validate({"type": "DebianEngine", "provider": dict(NETNS)})


def test_amount_beyond_capacity_is_refused_at_validation(home) -> None:
    with pytest.raises(ConfigError, match=r"amount: 9 server.*can give 5"):
        api.validate({"type": "ServersEngine", "amount": 9, "provider": dict(NETNS)})


def test_older_spellings_are_rewritten() -> None:
    config = {"type": "ServersEngine",
              "provider": {"name": "DummyProvider",
                           "credentials": [{"user": "root", "host": "10.0.0.5"}]}}
    api.validate(config)
    assert config["provider"]["type"] == "ExistingServers"
    assert "name" not in config["provider"]


class CloudStyle(ServerProvider):
    """A provider whose sizes are the cloud's own flavor names, checked by the cloud."""

    @classmethod
    def validate_request(cls, config: PluginConfig, image: str | None, size: str | None,
                         path: str) -> None:
        if size is not None and not size.strip():
            raise ConfigError(plugin.join_path(path, "flavor"), "must name a flavor")

    def create_servers(self, image_uuid: str | None = None, type_id: str | None = None,
                       amount: int = 1) -> list[Server]:
        return []


class _EntryPoint:
    def __init__(self, loaded: type) -> None:
        self.loaded = loaded

    def load(self) -> type:
        return self.loaded


def test_a_cloud_provider_gets_flavor_names_benchbed_does_not_know(
        monkeypatch: pytest.MonkeyPatch) -> None:
    real = plugin._entry_points

    def with_cloud(group: str) -> dict[str, Any]:
        found = dict(real(group))
        if group == plugin.PROVIDERS:
            found["CloudStyle"] = _EntryPoint(CloudStyle)
        return found

    monkeypatch.setattr(plugin, "_entry_points", with_cloud)
    api.validate({"type": "ServersEngine", "flavor": "m1.small",
                  "provider": {"type": "CloudStyle"}})
    with pytest.raises(ConfigError, match=r"flavor: unknown size 'm1\.small'"):
        api.validate({"type": "ServersEngine", "flavor": "m1.small", "provider": {
            "type": "LxcProvider", "start_lxc_network": "10.254.152.0/24", "host_provider": {
                "type": "ExistingServers", "credentials": [{"user": "root", "host": "10.9.9.9"}]}}})
