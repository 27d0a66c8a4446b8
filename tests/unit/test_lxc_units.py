"""LxcProvider's pure parts: config checks, per-host networks, route overlap, mirror parsing."""

import ipaddress
from typing import Any

import pytest

from benchbed import plugin
from benchbed.errors import BenchbedError, ConfigError, InputError
from benchbed.hostnet import HostNetwork, bridge_name
from benchbed.hostnet.routes import supernet
from benchbed.images.lxc import check_name, parse_mirrors
from benchbed.networks import overlapping_route
from benchbed.providers.lxc import LxcProvider, host_network
from benchbed.server import Server

REMOTE = {"type": "ExistingServers", "credentials": [{"user": "root", "host": "192.0.2.10"}]}


def check(**keys: Any) -> None:
    """What validation checks of a provider config: its keys, its schema, then its values."""
    plugin.validate({"type": "LxcProvider", "host_provider": REMOTE, **keys}, plugin.PROVIDERS,
                    "provider")


def test_defaults_pass() -> None:
    check()


@pytest.mark.parametrize(("keys", "path"), [
    ({"start_lxc_network": "10.1.2.300/24"}, "provider.start_lxc_network"),
    ({"start_lxc_network": "10.1.2.3/24"}, "provider.start_lxc_network"),
    ({"start_lxc_network": "1.1.1.0/24"}, "provider.start_lxc_network"),
    ({"start_lxc_network": "10.1.2.0/29", "containers_per_host": 6},
     "provider.start_lxc_network"),
    ({"release": "potato"}, "provider.release"),
    ({"forward_ssh": True}, "provider.forward_ssh"),
    ({"tunnel_to": ["10.0.0.1"]}, "provider.tunnel_to"),
    # written into apt-cacher-ng's config: a URL of host and port, nothing else
    ({"apt_upstream_proxy": "http://10.0.0.1:3142\nProxy: http://evil:1"},
     "provider.apt_upstream_proxy"),
    ({"apt_upstream_proxy": "https://10.0.0.1:3142"}, "provider.apt_upstream_proxy"),
    ({"apt_upstream_proxy": "http://user:secret@10.0.0.1:3142"},
     "provider.apt_upstream_proxy"),
])
def test_bad_keys_name_their_path(keys: dict[str, Any], path: str) -> None:
    with pytest.raises(ConfigError) as raised:
        check(**keys)
    assert raised.value.path == path


def test_forward_ssh_false_is_what_it_does_anyway() -> None:
    check(forward_ssh=False)


def test_an_upstream_apt_proxy_of_host_and_port_passes() -> None:
    check(host_provider=TWO_HOSTS, apt_upstream_proxy="http://10.254.50.1:3150")


def test_each_host_gets_the_next_network_of_the_same_size() -> None:
    start = ipaddress.IPv4Network("10.9.0.0/24")
    assert [str(host_network(start, i)) for i in range(3)] == [
        "10.9.0.0/24", "10.9.1.0/24", "10.9.2.0/24"]


@pytest.mark.parametrize(("cidr", "fixed", "dhcp"), [
    ("10.1.2.0/24", ("10.1.2.2", "10.1.2.127"), ("10.1.2.128", "10.1.2.254")),
    ("10.1.2.0/29", ("10.1.2.2", "10.1.2.3"), ("10.1.2.4", "10.1.2.6")),
    ("10.8.0.0/16", ("10.8.0.2", "10.8.127.255"), ("10.8.128.0", "10.8.255.254")),
])
def test_fixed_addresses_and_dhcp_never_meet(cidr: str, fixed: tuple[str, str],
                                             dhcp: tuple[str, str]) -> None:
    network = HostNetwork(Server(host="localhost"), ipaddress.IPv4Network(cidr))
    first, last = network.static_range
    assert (str(ipaddress.IPv4Address(first)), str(ipaddress.IPv4Address(last))) == fixed
    assert network.dhcp_range == dhcp
    assert network.gateway not in (*fixed, *dhcp)


def test_a_network_with_one_guest_has_no_fixed_addresses() -> None:
    network = HostNetwork(Server(host="localhost"), ipaddress.IPv4Network("10.1.2.0/30"))
    assert network.dhcp_range == ("10.1.2.2", "10.1.2.2")
    with pytest.raises(InputError, match="too small for fixed addresses"):
        _ = network.static_range


def test_bridge_names_fit_linux_and_differ_per_network() -> None:
    names = {bridge_name(ipaddress.IPv4Network(f"10.9.{i}.0/24")) for i in range(50)}
    assert len(names) == 50 and all(len(name) <= 15 for name in names)


def test_overlap_ignores_our_own_bridge_and_default_route() -> None:
    network = ipaddress.IPv4Network("10.9.0.0/24")
    routes = [{"dst": "default", "dev": "eth0"},
              {"dst": "10.9.0.0/24", "dev": bridge_name(network)},
              {"dst": "10.8.0.0/16", "dev": "eth1"}]
    assert overlapping_route(routes, network, bridge_name(network)) is None
    routes.append({"dst": "10.9.0.128/25", "dev": "br9"})
    assert overlapping_route(routes, network, bridge_name(network)) == "10.9.0.128/25 on br9"


def test_mirrors_from_deb822_sources() -> None:
    text = ("Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n"
            "Components: main\n\nTypes: deb\nURIs: http://mirror.example/debian-security\n"
            "Suites: bookworm-security\nComponents: main\n")
    assert parse_mirrors(text, "h") == ("http://mirror.example/debian",
                                        "http://mirror.example/debian-security")


def test_mirrors_from_one_line_sources() -> None:
    text = ("# comment\ndeb [arch=amd64] http://mirror.example/debian bookworm main\n"
            "deb http://mirror.example/security bookworm-security main\n")
    assert parse_mirrors(text, "h") == ("http://mirror.example/debian",
                                        "http://mirror.example/security")


def test_no_mirror_is_a_clear_error() -> None:
    with pytest.raises(BenchbedError, match="no Debian mirror"):
        parse_mirrors("", "h")


@pytest.mark.parametrize("name", ["../etc", "", "a b", "-x", "x" * 64])
def test_image_names_stay_inside_lxc_store(name: str) -> None:
    with pytest.raises(InputError):
        check_name(name)


def test_every_host_network_must_stay_private() -> None:
    hosts = {"type": "ExistingServers", "credentials": [
        {"user": "root", "host": f"192.0.2.{i}"} for i in (1, 2)]}
    with pytest.raises(ConfigError, match=r"host 1 would get 172\.32\.0\.0/12"):
        LxcProvider.validate_config(LxcProvider.parse_config(
            {"type": "LxcProvider", "host_provider": hosts, "start_lxc_network": "172.16.0.0/12"}),
            "provider")


TWO_HOSTS = {"type": "ExistingServers", "credentials": [
    {"user": "root", "host": "192.0.2.10"}, {"user": "root", "host": "192.0.2.11"}]}


@pytest.mark.parametrize(("start", "hosts", "covering"), [
    ("10.9.0.0/24", 2, "10.9.0.0/23"),
    ("10.9.0.0/24", 3, "10.9.0.0/22"),
    ("10.9.1.0/24", 2, "10.9.0.0/22"),  # not on a /23 boundary: the route covers more
    ("10.9.0.0/24", 1, "10.9.0.0/24"),
])
def test_containers_route_to_the_smallest_network_of_every_slice(start: str, hosts: int,
                                                                 covering: str) -> None:
    slices = [host_network(ipaddress.IPv4Network(start), i) for i in range(hosts)]
    assert str(supernet(slices)) == covering


@pytest.mark.parametrize(("keys", "path"), [
    ({"routing": "ipip"}, "provider.routing"),
    ({"host_provider": {**TWO_HOSTS, "credentials": [{"user": "root", "host": "localhost"},
                                                     {"user": "root", "host": "192.0.2.11"}]}},
     "provider.host_provider.credentials[0].host"),
    ({"host_provider": TWO_HOSTS, "start_lxc_network": "172.31.255.0/24"},
     "provider.start_lxc_network"),  # the second slice, 172.32.0.0/24, is not private
])
def test_routed_hosts_refuse_what_cannot_be_routed(keys: dict[str, Any], path: str) -> None:
    with pytest.raises(ConfigError) as raised:
        check(**keys)
    assert raised.value.path == path


def test_vxlan_routing_of_two_hosts_passes() -> None:
    check(host_provider=TWO_HOSTS, routing="vxlan", start_lxc_network="10.9.0.0/24")


def test_a_jump_server_survives_the_ledger_and_endpoints() -> None:
    host = Server(host="192.0.2.10", key="/k")
    container = Server(host="10.9.1.5", name="c", jump=host.to_dict())
    assert Server.from_dict(container.to_dict()) == container
    assert "jump" not in host.to_dict()
    assert Server.from_dict(container.to_dict()).jump == {"host": "192.0.2.10", "port": 22,
                                                          "user": "root", "key": "/k"}
