"""Networks that providers make on this machine, refused at validation when they would clash.

A provider that makes a network here declares it (`ServerProvider.local_networks`). Before
anything exists, each one is refused if it is not a private range (RFC 1918: loopback,
multicast, link-local, reserved and public ones are all refused), if it overlaps another
network of the same config, a network of another deployment, or an address or route already
on this machine. A provider's own validation refuses a network of another range, or too
small, with `guest_network`, whether its host is this machine or another. Providers whose
deployments share one bridge per network (LXC, Virsh: the reference-counted
`benchbed.hostnet`) may name exactly the same network as another such deployment; any other
overlap is refused.
"""

import ipaddress
import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from benchbed import plugin
from benchbed.errors import BenchbedError, ConfigError

PRIVATE_RANGES = tuple(ipaddress.IPv4Network(network) for network in
                       ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))


@dataclass(frozen=True)
class Claim:
    """A network a provider will make on this machine, and where the config names it."""

    path: str
    network: ipaddress.IPv4Network
    shared: bool  # deployments naming this very network share its bridge
    bridge: str | None = None  # the bridge it is on, when shared


def claims(config: dict[str, Any], group: str = plugin.ENGINES) -> Iterator[Claim]:
    """Every network the plugins of a (validated) config would make on this machine."""
    from benchbed.providers.base import ServerProvider

    for plugin_class, plugin_config, path in plugin.walk(config, group):
        if issubclass(plugin_class, ServerProvider):
            yield from plugin_class.local_networks(plugin_class.parse_config(plugin_config),
                                                   path)


def check(config: dict[str, Any]) -> None:
    mine = list(claims(config))
    if not mine:
        return
    for index, claim in enumerate(mine):
        _check_range(claim)
        for earlier in mine[:index]:
            # two providers of one deployment (a MultihostEngine's controller and nodes)
            # may share one bridged network, as deployments may
            if earlier.network.overlaps(claim.network) and not (
                    earlier.shared and claim.shared and earlier.network == claim.network):
                raise ConfigError(claim.path, f"{claim.network} overlaps {earlier.network} "
                                              f"of {earlier.path or 'the config'}")
    for name, other in _other_deployments():
        for claim in mine:
            clash = next((o for o in other if o.network.overlaps(claim.network)
                          and not (o.shared and claim.shared and o.network == claim.network)),
                         None)
            if clash:
                raise ConfigError(claim.path, f"{claim.network} overlaps {clash.network} of "
                                              f"deployment '{name}'")
    taken = _taken_here()
    for claim in mine:
        for routed, device in taken:
            if claim.bridge is not None and device == claim.bridge:
                continue  # the shared bridge of this very network, made by another deployment
            if routed.overlaps(claim.network):
                raise ConfigError(claim.path, f"{claim.network} overlaps {routed} on "
                                              f"{device} on this machine")


def parse_ipv4_network(text: str, path: str) -> ipaddress.IPv4Network:
    """`text` as an IPv4 network in CIDR form (no host bits set), or a ConfigError naming
    the config `path` it was read from."""
    try:
        return ipaddress.IPv4Network(text, strict=True)
    except ValueError as error:
        raise ConfigError(path, f"not an IPv4 network in CIDR form: {error}") from None


def guest_network(text: str, path: str, smallest: int) -> ipaddress.IPv4Network:
    """`text` as a network a provider makes a bridge for, with its guests on it: CIDR form,
    a private range (`range_refusal`), and at least a /`smallest`. Only arithmetic on the
    network's bounds: the cost is the same for a /8 as for a /30."""
    network = parse_ipv4_network(text, path)
    refusal = range_refusal(network)
    if refusal:
        raise ConfigError(path, f"{network} {refusal}")
    if network.prefixlen > smallest:
        raise ConfigError(path, f"needs at least a /{smallest} ({network} is a "
                                f"/{network.prefixlen})")
    return network


def range_refusal(network: ipaddress.IPv4Network) -> str | None:
    """Why guests cannot live on `network` (`is a loopback range`, ...), or None. Only the
    private ranges of RFC 1918 are theirs: a public range is someone else's, and the special
    ones (loopback, link-local, multicast, 0.0.0.0/8, 240.0.0.0/4, the documentation and
    benchmark ranges) are not for hosts."""
    for refused, what in ((network.is_loopback, "loopback"), (network.is_multicast, "multicast"),
                          (network.is_link_local, "link-local"),
                          (network.is_unspecified, "unspecified"),
                          (network.is_reserved, "reserved")):
        if refused:
            return f"is a {what} range"
    if not any(network.subnet_of(private) for private in PRIVATE_RANGES):
        return (f"is not a private network range (RFC 1918: "
                f"{', '.join(map(str, PRIVATE_RANGES))})")
    return None


def routed_networks(routes: list[dict[str, Any]]) -> Iterator[tuple[ipaddress.IPv4Network, str]]:
    """The destinations of routes as `ip -j -4 route` lists them, each with its device;
    default routes and the kernel's broadcast entries are left out."""
    for route in routes:
        destination = route.get("dst", "")
        if destination in ("", "default") or route.get("type") == "broadcast":
            continue
        try:
            routed = ipaddress.IPv4Network(destination, strict=False)
        except ValueError:
            continue
        yield routed, route.get("dev", "?")


def overlapping_route(routes: list[dict[str, Any]], network: ipaddress.IPv4Network,
                      own_bridge: str) -> str | None:
    """Describe the first route (from `ip -j -4 route`) that overlaps `network` on another
    device than `own_bridge` (the shared bridge of this very network)."""
    for routed, device in routed_networks(routes):
        if device != own_bridge and routed.overlaps(network):
            return f"{routed} on {device}"
    return None


def _check_range(claim: Claim) -> None:
    refusal = range_refusal(claim.network)
    if refusal:
        raise ConfigError(claim.path, f"{claim.network} {refusal}")


def _other_deployments() -> Iterator[tuple[str, list[Claim]]]:
    from benchbed.db.sql import transaction

    with transaction() as db:
        rows = db.execute("SELECT name, config FROM deployments")
    for row in rows:
        try:
            yield row.name, list(claims(row.config))
        except (ConfigError, KeyError, TypeError, ValueError):
            continue  # a config of a plugin no longer installed: it claims nothing known


def _taken_here() -> list[tuple[ipaddress.IPv4Network, str]]:
    """The networks of this machine's routes and of its addresses (links down included),
    each with its device."""
    taken = list(routed_networks(ip_json("route", "show", "table", "all")))
    for link in ip_json("addr", "show"):
        for address in link.get("addr_info", []):
            try:
                taken.append((ipaddress.IPv4Network(
                    f"{address['local']}/{address.get('prefixlen', 32)}", strict=False),
                    link.get("ifname", "?")))
            except (KeyError, ValueError):
                continue
    return taken


def ip_json(*args: str) -> list[dict[str, Any]]:
    """What `ip -j -4 ARGS` lists on this machine (routes, addresses), parsed."""
    try:
        listed = subprocess.run(["ip", "-j", "-4", *args], capture_output=True, text=True,
                                timeout=10, check=True)
    except FileNotFoundError:
        raise BenchbedError("'ip' (iproute2) is not installed on this machine") from None
    except (OSError, subprocess.SubprocessError) as error:
        raise BenchbedError(f"cannot list this machine's networks: {error}") from None
    found: list[dict[str, Any]] = json.loads(listed.stdout or "[]")
    return found
