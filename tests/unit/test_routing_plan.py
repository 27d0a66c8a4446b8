"""One routed network per deployment (benchbed.hostnet.routes.RoutingPlan): the slices every
plugin of a config puts on LXC hosts, what each host routes, and the configs refused before
anything exists, in one line naming the key."""

import ipaddress
from typing import Any

import pytest

from benchbed import api
from benchbed.engines.lxc import LxcEngine, _template_provider
from benchbed.errors import ConfigError
from benchbed.hostnet.routes import Peer, RoutingPlan, Slice, deployment_slices


def lxc(hosts: list[str], network: str, routing: str = "static") -> dict[str, Any]:
    return {"type": "LxcProvider", "start_lxc_network": network, "routing": routing,
            "host_provider": {"type": "ExistingServers",
                              "credentials": [{"host": host, "user": "root"}
                                              for host in hosts]}}


def multihost(controller: dict[str, Any], *nodes: dict[str, Any]) -> dict[str, Any]:
    return {"type": "MultihostEngine",
            "controller": {"type": "ServersEngine", "provider": controller},
            "nodes": [{"type": "ServersEngine", "provider": node} for node in nodes]}


def lxc_engine(hosts: list[str], network: str, routing: str = "static") -> dict[str, Any]:
    return {"type": "LxcEngine", "start_lxc_network": network, "routing": routing,
            "nodes_per_server": 2,
            "engine": {"type": "DebianEngine", "services": ["nova-compute"]},
            "provider": {"type": "ExistingServers",
                         "credentials": [{"host": host, "user": "root"} for host in hosts]}}


def refused(config: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as error:
        api.validate(config, check_networks=False)
    text = str(error.value)
    assert "\n" not in text
    return text


def test_a_controller_on_one_host_and_nodes_on_two_others_route_every_slice() -> None:
    config = multihost(lxc(["192.0.2.10"], "10.9.0.0/24"),
                       lxc(["192.0.2.11", "192.0.2.12"], "10.9.1.0/24"))
    api.validate(config, check_networks=False)
    plan = RoutingPlan.of(deployment_slices(config))
    assert plan is not None
    assert plan.supernet == ipaddress.IPv4Network("10.9.0.0/22")
    assert plan.peers("192.0.2.11") == [
        Peer(ipaddress.IPv4Network("10.9.0.0/24"), "10.9.0.1", "192.0.2.10"),
        Peer(ipaddress.IPv4Network("10.9.2.0/24"), "10.9.2.1", "192.0.2.12")]
    assert [peer.address for peer in plan.peers("192.0.2.10")] == ["192.0.2.11", "192.0.2.12"]


def test_an_lxc_engine_declares_each_host_once() -> None:
    """Its template's provider on host 0 (as validation sees it) and the engine's own slice
    of host 0 are one slice."""
    config = {"type": "MultihostEngine",
              "controller": {"type": "ServersEngine",
                             "provider": lxc(["192.0.2.10"], "10.9.0.0/24")},
              "nodes": [lxc_engine(["192.0.2.11", "192.0.2.12"], "10.9.4.0/24")]}
    api.validate(config, check_networks=False)
    plan = RoutingPlan.of(deployment_slices(config))
    assert plan is not None
    assert [(s.host, str(s.network)) for s in plan.slices] == [
        ("192.0.2.10", "10.9.0.0/24"), ("192.0.2.11", "10.9.4.0/24"),
        ("192.0.2.12", "10.9.5.0/24")]
    assert plan.supernet == ipaddress.IPv4Network("10.9.0.0/21")


def test_slices_on_one_host_need_no_routes() -> None:
    config = multihost(lxc(["localhost"], "10.9.0.0/24"), lxc(["localhost"], "10.9.1.0/24"))
    api.validate(config, check_networks=False)
    assert RoutingPlan.of(deployment_slices(config)) is None
    assert RoutingPlan.of([]) is None


def test_a_second_provider_on_the_same_host_adds_no_peer() -> None:
    found = [Slice("192.0.2.10", ipaddress.IPv4Network("10.9.0.0/24"), "static", "a", "h"),
             Slice("192.0.2.10", ipaddress.IPv4Network("10.9.1.0/24"), "static", "b", "h"),
             Slice("192.0.2.11", ipaddress.IPv4Network("10.9.2.0/24"), "static", "c", "h")]
    plan = RoutingPlan.of(found)
    assert plan is not None
    assert [str(peer.network) for peer in plan.peers("192.0.2.10")] == ["10.9.2.0/24"]
    assert [str(peer.network) for peer in plan.peers("192.0.2.11")] == [
        "10.9.0.0/24", "10.9.1.0/24"]


@pytest.mark.parametrize(("config", "where", "message"), [
    (multihost(lxc(["192.0.2.10"], "10.9.0.0/24"),
               lxc(["192.0.2.11"], "10.9.1.0/24", "vxlan")),
     "nodes[0].provider.routing", "is 'vxlan', controller.provider.routing is 'static'"),
    (multihost(lxc(["192.0.2.10"], "10.9.0.0/24"), lxc(["192.0.2.11"], "10.9.0.0/24")),
     "nodes[0].provider.start_lxc_network",
     "10.9.0.0/24 on 192.0.2.11 overlaps 10.9.0.0/24 on 192.0.2.10"),
    (multihost(lxc(["localhost"], "10.9.0.0/24"), lxc(["192.0.2.11"], "10.9.1.0/24")),
     "controller.provider.host_provider.credentials[0].host",
     "each is given by its IPv4 address"),
    (multihost(lxc(["192.0.2.10"], "10.9.0.0/24"), lxc(["192.0.2.11"], "192.168.9.0/24")),
     "controller.provider.start_lxc_network",
     "the deployment's container networks are routed as 0.0.0.0/0, which"),
    ({"type": "MultihostEngine",
      "controller": {"type": "ServersEngine", "provider": lxc(["192.0.2.10"], "10.9.0.0/24")},
      "nodes": [lxc_engine(["192.0.2.11", "192.0.2.12"], "10.9.4.0/24", "vxlan")]},
     "nodes[0].routing", "is 'vxlan', controller.provider.routing is 'static'"),
])
def test_a_deployment_that_cannot_be_routed_is_refused_naming_the_key(
        config: dict[str, Any], where: str, message: str) -> None:
    text = refused(config)
    assert text.startswith(f"config {where}: ") and message in text, text


def test_an_lxc_engine_gives_each_host_its_routing_and_upstream_apt_proxy() -> None:
    """Each host's template provider routes and fetches as the engine says."""
    node = {**lxc_engine(["192.0.2.11", "192.0.2.12"], "10.9.4.0/24", "vxlan"),
            "apt_upstream_proxy": "http://192.0.2.1:3150"}
    config = {"type": "MultihostEngine",
              "controller": {"type": "ServersEngine",
                             "provider": lxc(["192.0.2.10"], "10.9.0.0/24", "vxlan")},
              "nodes": [node]}
    api.validate(config, check_networks=False)
    typed = LxcEngine.parse_config(node)
    assert [(p["start_lxc_network"], p["routing"], p["apt_upstream_proxy"])
            for p in (_template_provider(typed, index) for index in range(2))] == [
        ("10.9.4.0/24", "vxlan", "http://192.0.2.1:3150"),
        ("10.9.5.0/24", "vxlan", "http://192.0.2.1:3150")]
    assert "apt_upstream_proxy" not in _template_provider(
        LxcEngine.parse_config(lxc_engine(["192.0.2.11"], "10.9.4.0/24")), 0)


@pytest.mark.parametrize("proxy", ["http://192.0.2.1:3150\nProxy: http://evil:1",
                                   "https://192.0.2.1:3150", "http://user:pw@192.0.2.1:3150",
                                   "http://$(id):3150"])
def test_an_lxc_engine_refuses_an_upstream_proxy_beyond_host_and_port(proxy: str) -> None:
    config = {"type": "MultihostEngine",
              "controller": {"type": "ServersEngine",
                             "provider": lxc(["192.0.2.10"], "10.9.0.0/24")},
              "nodes": [{**lxc_engine(["192.0.2.11"], "10.9.4.0/24"),
                         "apt_upstream_proxy": proxy}]}
    assert refused(config).startswith("config nodes[0].apt_upstream_proxy: ")
