"""Which host address benchbed's git and PyPI mirrors listen on for a guest: the host's
address on the guest's bridge, or, for a guest routed from another host's slice (it routes
only the deployment's supernet), the host's address inside that supernet."""

import ipaddress
import json
from typing import Any

import pytest

from benchbed.errors import InputError
from benchbed.hostnet.mirrors import address_towards
from benchbed.server import Server

SUPERNET = ipaddress.IPv4Network("10.254.88.0/21")
# `ip -j -4 addr show` of a host with the underlay, its own slice's bridge and loopback
ADDRESSES = [
    {"ifname": "lo", "addr_info": [{"family": "inet", "local": "127.0.0.1", "prefixlen": 8}]},
    {"ifname": "eth0", "addr_info": [{"family": "inet", "local": "10.254.96.10",
                                      "prefixlen": 24}]},
    {"ifname": "bblxc0a58", "addr_info": [{"family": "inet", "local": "10.254.88.1",
                                           "prefixlen": 24}]},
]


class IpShell:
    """Answers `ip -j route get` and `ip -j -4 addr show` as the kernel would."""

    def __init__(self, route: dict[str, Any], addresses: list[dict[str, Any]]) -> None:
        self.route = route
        self.addresses = addresses

    def run(self, command: list[str], **_: Any) -> Any:
        listed = self.addresses if "addr" in command else [self.route]
        return type("Result", (), {"stdout": json.dumps(listed), "stderr": "",
                                   "exit_code": 0})()


def host(route: dict[str, Any], addresses: list[dict[str, Any]] = ADDRESSES) -> Server:
    shell = IpShell(route, addresses)

    class Answering(Server):
        @property
        def ssh(self) -> Any:
            return shell
    return Answering(host="localhost")


def test_a_guest_on_the_hosts_bridge_gets_the_bridge_address() -> None:
    route = {"dst": "10.254.88.5", "dev": "bblxc0a58", "prefsrc": "10.254.88.1"}
    assert address_towards(host(route), "10.254.88.5", SUPERNET) == "10.254.88.1"


@pytest.mark.parametrize("route", [
    {"dst": "10.254.89.5", "gateway": "10.254.96.11", "dev": "eth0", "prefsrc": "10.254.96.10"},
    {"dst": "10.254.89.5", "gateway": "10.254.89.1", "dev": "bbvx0a58", "flags": ["onlink"],
     "prefsrc": "10.254.96.10"},
], ids=["static", "vxlan"])
def test_a_routed_guest_gets_the_hosts_address_inside_the_supernet_not_the_underlays(
        route: dict[str, Any]) -> None:
    assert address_towards(host(route), "10.254.89.5", SUPERNET) == "10.254.88.1"


def test_a_routed_guest_of_a_host_without_a_slice_is_refused_in_one_line() -> None:
    route = {"dst": "10.254.89.5", "gateway": "10.254.96.11", "dev": "eth0",
             "prefsrc": "10.254.96.10"}
    with pytest.raises(InputError) as raised:
        address_towards(host(route, ADDRESSES[:2]), "10.254.89.5", SUPERNET)
    message = str(raised.value)
    assert "no address in the deployment's network 10.254.88.0/21" in message
    assert "\n" not in message


@pytest.mark.parametrize(("guest", "routed"), [("10.254.89.5", None),
                                               ("192.168.7.5", SUPERNET)])
def test_a_guest_behind_a_gateway_outside_any_routed_network_is_refused(
        guest: str, routed: ipaddress.IPv4Network | None) -> None:
    route = {"dst": guest, "gateway": "10.254.96.11", "dev": "eth0", "prefsrc": "10.254.96.10"}
    with pytest.raises(InputError, match=f"server {guest} is not on a network of localhost"):
        address_towards(host(route), guest, routed)


def test_a_guest_given_by_name_is_refused() -> None:
    with pytest.raises(InputError, match="need the server's IP address, not a name"):
        address_towards(host({}), "node-1.example", SUPERNET)
