"""Routed host networks: the LXC hosts of one deployment forward between their slices.

Host i's containers live on its slice of the deployment's network (`bridge.HostNetwork`);
each container has one route, to the supernet that holds every slice, through its bridge
(no default route, no NAT). Each host routes every other host's slice to that host, with
`routing: static` directly over the hosts' own network (the packets keep the containers'
addresses), or with `routing: vxlan` through a VXLAN device, for underlays that drop
forwarded packets. Like the bridges, the routes of one supernet on one host are shared by
reference count under a host-side lock (state under /run/benchbed/routes); the last release
removes every route and device they made and puts IP forwarding back as it was.

The routed network is the deployment's, not one provider's: every plugin of its config
declares the slices it puts on LXC hosts (`Plugin.routed_slices`), so a MultihostEngine's
controller in a container on one host and an LxcEngine's nodes on two others are one routed
network (`RoutingPlan`), known before anything exists; each provider adds, on its own hosts,
the routes to every other host's slices.
"""

import hashlib
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from benchbed import plugin
from benchbed.errors import BenchbedError, ConfigError
from benchbed.hostnet.bridge import gateway_of
from benchbed.networks import ip_json, range_refusal, routed_networks
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


@dataclass(frozen=True)
class Slice:
    """One host's container network in a deployment, and where the config names its host."""

    host: str  # the host's address, as its credentials give it
    network: ipaddress.IPv4Network
    routing: str
    path: str  # of the plugin whose config puts it there
    host_key: str  # where in that config the host is named

    def where(self, key: str) -> str:
        return plugin.join_path(self.path, key)


@dataclass(frozen=True)
class RoutingPlan:
    """A deployment's slices on two hosts or more: what each host routes, and how."""

    slices: tuple[Slice, ...]

    @classmethod
    def of(cls, slices: Iterable[Slice]) -> "RoutingPlan | None":
        """The plan of these slices (one per host and network), None on a single host."""
        kept: list[Slice] = []
        for found in slices:
            if not any((found.host, found.network) == (s.host, s.network) for s in kept):
                kept.append(found)
        return cls(tuple(kept)) if len({s.host for s in kept}) > 1 else None

    @property
    def supernet(self) -> ipaddress.IPv4Network:
        return supernet([s.network for s in self.slices])

    @property
    def routing(self) -> str:
        return self.slices[0].routing

    def peers(self, host: str) -> list[Peer]:
        """The other hosts' slices, as `host` routes them."""
        return [Peer(s.network, str(gateway_of(s.network)), s.host)
                for s in self.slices if s.host != host]

    def refusal(self) -> ConfigError | None:
        """What makes the plan impossible, naming the config path it comes from."""
        for index, found in enumerate(self.slices):
            try:
                ipaddress.IPv4Address(found.host)
            except ValueError:
                return ConfigError(found.where(found.host_key), "with LXC hosts on several "
                                   "machines in one deployment, each is given by its IPv4 "
                                   "address: the other hosts route its containers' network "
                                   "to it")
            for earlier in self.slices[:index]:
                if earlier.routing != found.routing:
                    return ConfigError(found.where("routing"), f"is '{found.routing}', "
                                       f"{earlier.where('routing')} is "
                                       f"'{earlier.routing}': one deployment's hosts are "
                                       f"routed one way")
                if earlier.host != found.host and earlier.network.overlaps(found.network):
                    return ConfigError(found.where("start_lxc_network"),
                                       f"{found.network} on {found.host} overlaps "
                                       f"{earlier.network} on {earlier.host} "
                                       f"({earlier.where('start_lxc_network')}): the hosts "
                                       f"route each slice to one host")
        covering = self.supernet
        refusal = range_refusal(covering)
        return None if refusal is None else ConfigError(
            self.slices[0].where("start_lxc_network"), f"the deployment's container networks "
                                                       f"are routed as {covering}, which "
                                                       f"{refusal}")


def deployment_slices(config: dict[str, Any]) -> list[Slice]:
    """Every slice the plugins of a (validated) deployment config put on LXC hosts."""
    return [found for plugin_class, plugin_config, path in plugin.walk(config)
            for found in plugin_class.routed_slices(plugin_class.parse_config(plugin_config),
                                                    path)]


def check(config: dict[str, Any]) -> None:
    """Refuse a deployment whose slices cannot be routed to each other."""
    plan = RoutingPlan.of(deployment_slices(config))
    refusal = plan.refusal() if plan is not None else None
    if refusal is not None:
        raise refusal


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
