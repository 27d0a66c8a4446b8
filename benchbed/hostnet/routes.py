"""Routed host networks: the LXC hosts of one deployment forward between their slices.

Host i's containers live on its slice of the deployment's network (`bridge.HostNetwork`);
each container has one route, to the supernet that holds every slice, through its bridge
(no default route, no NAT). Each host routes every other host's slice to that host, with
`routing: static` directly over the hosts' own network (the packets keep the containers'
addresses), or with `routing: vxlan` through a VXLAN device, for underlays that drop
forwarded packets. Like the bridges, the routes of one supernet on one host are shared by
reference count under a host-side lock (state under /run/benchbed/routes); the last release
removes every route and device they made and puts IP forwarding back as it was.
"""

import hashlib
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from benchbed.errors import BenchbedError
from benchbed.networks import ip_json, routed_networks
from benchbed.server import Server, run_script

ROUTINGS = ("static", "vxlan")
STATE_DIR = "/run/benchbed/routes"
VXLAN_PORT = 4789


def supernet(slices: Sequence[ipaddress.IPv4Network]) -> ipaddress.IPv4Network:
    """The smallest network that holds every slice: the one route containers get."""
    covering = min(slices, key=lambda s: s.network_address)
    last = max(slices, key=lambda s: s.broadcast_address)
    while not covering.supernet_of(last):
        covering = covering.supernet()
    return covering


def routes_name(network: ipaddress.IPv4Network) -> str:
    """One name per supernet (a link name, 15 characters at most): its state and VXLAN."""
    return "bbvx" + hashlib.sha1(str(network).encode()).hexdigest()[:8]


def vxlan_id(network: ipaddress.IPv4Network) -> int:
    """The VXLAN network identifier of a supernet (24 bits, never 0)."""
    return int(hashlib.sha1(str(network).encode()).hexdigest()[:6], 16) or 1


@dataclass(frozen=True)
class Peer:
    """Another host's slice, the gateway on its bridge, and that host's own address."""

    network: ipaddress.IPv4Network
    gateway: str
    address: str

    def argument(self) -> str:
        return f"{self.network},{self.gateway},{self.address}"


class HostRoutes:
    """The routes on one host to the other hosts' slices of one supernet."""

    def __init__(self, host: Server, network: ipaddress.IPv4Network, routing: str,
                 peers: Sequence[Peer] = ()) -> None:
        self.host = host
        self.network = network
        self.routing = routing
        self.peers = list(peers)
        self.name = routes_name(network)

    def acquire(self, user: str) -> None:
        """Take `user`'s reference, adding the routes (and VXLAN device) that are missing."""
        self._run(["acquire", user, self.name, self.routing, STATE_DIR,
                   str(vxlan_id(self.network)), str(VXLAN_PORT),
                   *(peer.argument() for peer in self.peers)])

    def release(self, user: str) -> None:
        """Drop `user`'s reference (already dropped is fine); the last one removes all."""
        self._run(["release", user, self.name, STATE_DIR])

    def _run(self, args: list[str]) -> None:
        try:
            run_script(self.host.ssh, "hostnet/routes.sh", args, timeout=120)
        except BenchbedError as error:
            raise BenchbedError(f"{args[0]} routes to {self.network} ({self.routing}) on "
                                f"{self.host.host}: {error}") from None


def on_link_here(address: str) -> bool:
    """Whether this machine is on `address`'s own network (a route without a gateway): then
    it reaches the container directly. Containers route only to their supernet, so from
    anywhere else their answers would have no way back: benchbed goes through their host
    (an SSH jump)."""
    found = ipaddress.IPv4Address(address)
    routes = ip_json("route", "show", "table", "main")
    return any(found in network for network, _ in routed_networks(
        [route for route in routes if "gateway" not in route]))
