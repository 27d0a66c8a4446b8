"""Engine.peer_ports: what each engine declares, how a MultihostEngine hands the union to its
engines' providers, and how OpenStackProvider opens it (a fake Neutron and Nova behind
keystoneauth's Session.request, in the shapes benchbed/clients/openstack_cloud.py sends)."""

import itertools
from pathlib import Path
from typing import Any

import pytest

from benchbed import api
from benchbed.clients import openstack_cloud
from benchbed.deployment import Deployment
from benchbed.engines.debian import DebianEngine
from benchbed.engines.devstack import DevstackEngine
from benchbed.engines.multihost import MultihostEngine
from benchbed.engines.servers import ServersEngine
from benchbed.errors import ConfigError
from benchbed.ports import to_data
from benchbed.providers.openstack import OpenStackProvider

EXISTING = {"type": "ExistingServers", "credentials": [{"host": "192.0.2.5", "user": "root"}]}


def ports(engine: Any, config: dict[str, Any]) -> list[str]:
    return to_data(engine.peer_ports(engine.parse_config(config)))


def test_debian_engine_declares_what_its_recipes_listen_on() -> None:
    controller = {"type": "DebianEngine", "provider": EXISTING,
                  "services": ["keystone", "glance", "placement", "neutron", "nova"]}
    assert ports(DebianEngine, controller) == [
        "3306/tcp", "5000/tcp", "5672/tcp", "8774/tcp", "8778/tcp", "9292/tcp", "9696/tcp"]
    assert ports(DebianEngine, {**controller, "services": ["keystone"]}) == [
        "3306/tcp", "5000/tcp"]
    # a compute node listens on nothing that its controller reaches
    assert ports(DebianEngine, {**controller, "services": ["nova-compute"]}) == []
    assert ports(DebianEngine, {**controller, "services": ["glance", "nova-compute-qemu"]}) == [
        "9292/tcp"]


def test_devstack_engine_declares_devstacks_ports() -> None:
    assert ports(DevstackEngine, {"type": "DevstackEngine", "provider": EXISTING}) == [
        "80/tcp", "443/tcp", "3306/tcp", "5672/tcp", "6641/tcp", "6642/tcp", "8775/tcp",
        "9292/tcp", "9696/tcp", "4789/udp", "6081/udp"]


def test_a_multihost_engine_declares_the_union_and_hands_it_to_each_provider(
        home: Path) -> None:
    config = {"type": "MultihostEngine",
              "controller": {"type": "DebianEngine", "provider": EXISTING,
                             "services": ["keystone", "placement"]},
              "nodes": [{"type": "ServersEngine", "provider": EXISTING,
                         "peer_ports": [{"protocol": "udp", "port": 4789}]}]}
    api.validate(config)
    assert ports(MultihostEngine, config) == ["3306/tcp", "5000/tcp", "8778/tcp", "4789/udp"]
    deployment = Deployment.create("peers", config)
    engine = MultihostEngine(deployment)
    node = engine._node("nodes[0]", config["nodes"][0], None)
    assert to_data(node.provider().open_to_peers) == [
        "3306/tcp", "5000/tcp", "8778/tcp", "4789/udp"]
    # a lone engine hands its provider nothing to open
    alone = ServersEngine(Deployment.create("alone", config["nodes"][0]))
    assert alone.provider().open_to_peers == frozenset()


@pytest.mark.parametrize(("port", "words"), [
    ({"port": 0}, "config nodes[0].peer_ports[0].port: 0 is less than the minimum of 1"),
    ({"port": 65536}, "config nodes[0].peer_ports[0].port: 65536 is greater than"),
    ({"port": "22"}, "config nodes[0].peer_ports[0].port"),
    ({"protocol": "icmp", "port": 1}, "config nodes[0].peer_ports[0].protocol"),
    ({}, "config nodes[0].peer_ports[0]: 'port' is required"),
])
def test_a_bad_peer_port_is_refused_naming_the_key(port: dict[str, Any], words: str) -> None:
    node = {"type": "ServersEngine", "provider": EXISTING, "peer_ports": [port]}
    with pytest.raises(ConfigError) as refused:
        api.validate({"type": "MultihostEngine", "controller": {
            "type": "ServersEngine", "provider": EXISTING}, "nodes": [node]})
    assert words in str(refused.value) and "\n" not in str(refused.value), str(refused.value)


class FakeResponse:
    def __init__(self, status: int, body: Any = None) -> None:
        self.status_code, self.body, self.reason, self.text = status, body, "", ""

    def json(self) -> Any:
        return self.body


class FakeCloud:
    """Nova and Neutron as keystoneauth's Session answers for them: the calls benchbed makes."""

    def __init__(self) -> None:
        self.ids = (f"id-{n}" for n in itertools.count())
        self.groups: dict[str, dict[str, Any]] = {}
        self.servers: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, str, Any]] = []

    def get_endpoint(self, **_: Any) -> str:
        return "http://192.0.2.10:9696"

    def request(self, url: str, method: str, raise_exc: bool, endpoint_filter: dict[str, Any],
                json: Any = None, **_: Any) -> FakeResponse:
        self.calls.append((method, url, json))
        if (method, url) == ("POST", "/v2.0/security-groups"):
            group = {**json["security_group"], "id": next(self.ids), "security_group_rules": []}
            self.groups[group["id"]] = group
            return FakeResponse(201, {"security_group": group})
        if (method, url) == ("POST", "/v2.0/security-group-rules"):
            rules = json.get("security_group_rules") or [json["security_group_rule"]]
            for rule in rules:
                self.groups[rule["security_group_id"]]["security_group_rules"].append(rule)
            return FakeResponse(201, {})
        if method == "DELETE" and url.startswith("/v2.0/security-groups/"):
            return FakeResponse(204 if self.groups.pop(url.rsplit("/", 1)[1], None) else 404)
        if method == "DELETE" and url.startswith("/servers/"):
            return FakeResponse(204 if self.servers.pop(url.rsplit("/", 1)[1], None) else 404)
        if method == "GET" and url.startswith("/servers/"):
            found = self.servers.get(url.rsplit("/", 1)[1])
            return FakeResponse(200, {"server": found}) if found else FakeResponse(404)
        if (method, url) == ("POST", "/servers"):
            server = {**json["server"], "id": next(self.ids), "status": "ACTIVE",
                      "addresses": {"private": [{"addr": f"10.0.0.{len(self.servers) + 2}"}]}}
            self.servers[server["id"]] = server
            return FakeResponse(202, {"server": server})
        if method == "GET" and url.startswith("/flavors/"):
            return FakeResponse(200, {"flavor": {"id": "1"}})
        if method == "GET" and url.startswith("/v2/images/"):
            return FakeResponse(200, {"id": url.rsplit("/", 1)[1], "status": "active"})
        return FakeResponse({"DELETE": 204, "PUT": 200}.get(method, 201), {})


PROVIDER = {**OpenStackProvider.EXAMPLE, "ssh_cidr": "203.0.113.7/32"}


@pytest.fixture
def fake_cloud(home: Path, monkeypatch: pytest.MonkeyPatch) -> FakeCloud:
    cloud = FakeCloud()
    monkeypatch.setattr(openstack_cloud, "_session", lambda config: cloud)
    return cloud


def test_openstack_servers_share_a_self_referencing_group_with_the_ports(
        fake_cloud: FakeCloud) -> None:
    deployment = Deployment.create("mesh", {"type": "MultihostEngine"})
    providers = [OpenStackProvider(deployment, PROVIDER, path)
                 for path in ("controller.provider", "nodes[0].provider")]
    servers = ServersEngine.parse_config({"type": "ServersEngine", "provider": EXISTING,
                                          "peer_ports": [{"port": 5672},
                                                         {"protocol": "udp", "port": 6081}]})
    for provider in providers:
        provider.open_to_peers = ServersEngine.peer_ports(servers)
        provider.create_servers(image_uuid="debian-12")
    (peers,) = [g for g in fake_cloud.groups.values() if g["name"].endswith("-peers")]
    rules = {(r["protocol"], r["port_range_min"], r["port_range_max"], r["ethertype"],
              r["remote_group_id"], r.get("remote_ip_prefix")) for r in
             peers["security_group_rules"]}
    assert rules == {(protocol, port, port, ethertype, peers["id"], None)
                     for protocol, port in (("tcp", 5672), ("udp", 6081))
                     for ethertype in ("IPv4", "IPv6")}
    for server in fake_cloud.servers.values():
        assert {"name": peers["id"]} in server["security_groups"]
    for group in fake_cloud.groups.values():
        if group is not peers:  # the scope's own group: SSH from ssh_cidr, as before
            assert [(r["port_range_min"], r["remote_ip_prefix"])
                    for r in group["security_group_rules"]] == [(22, "203.0.113.7/32")]

    providers[1].teardown()  # a node goes first: the controller's server is still in it
    assert peers["id"] in fake_cloud.groups
    providers[0].teardown()
    assert fake_cloud.groups == {} and fake_cloud.servers == {}
    assert deployment.ledger("controller.provider").resources() == []
    assert deployment.ledger("nodes[0].provider").resources() == []


def test_openstack_peer_group_found_by_name_after_a_crash(fake_cloud: FakeCloud) -> None:
    """Killed after Neutron made the group, before its id was saved: destroy finds it."""
    deployment = Deployment.create("crash", {"type": "MultihostEngine"})
    provider = OpenStackProvider(deployment, PROVIDER, "controller.provider")
    provider.open_to_peers = DevstackEngine.peer_ports(DevstackEngine.parse_config(
        {"type": "DevstackEngine", "provider": EXISTING}))
    provider.create_servers(image_uuid="debian-12")
    (row,) = provider.ledger.resources("peer_group")
    del row.data["group_id"]
    provider.ledger.update(row)
    fake_cloud.calls.clear()
    listed = [{**g, "security_group_rules": []} for g in fake_cloud.groups.values()]
    original = fake_cloud.request

    def listing(url: str, method: str, raise_exc: bool, endpoint_filter: dict[str, Any],
                json: Any = None, **kwargs: Any) -> FakeResponse:
        if (method, url) == ("GET", "/v2.0/security-groups"):
            return FakeResponse(200, {"security_groups": [
                g for g in listed if g["id"] in fake_cloud.groups
                and g["name"] == kwargs["params"]["name"]]})
        return original(url, method, raise_exc, endpoint_filter, json, **kwargs)

    fake_cloud.request = listing  # type: ignore[method-assign]
    provider.teardown()
    assert fake_cloud.groups == {} and provider.ledger.resources() == []


def test_openstack_lone_server_opens_nothing(fake_cloud: FakeCloud) -> None:
    deployment = Deployment.create("alone", {"type": "ServersEngine"})
    provider = OpenStackProvider(deployment, PROVIDER, "provider")
    provider.create_servers(image_uuid="debian-12")
    assert [g["name"] for g in fake_cloud.groups.values()] == [f"benchbed-{provider._name}"]
    provider.teardown()
    assert fake_cloud.groups == {} and provider.ledger.resources() == []
