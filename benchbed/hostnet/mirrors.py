"""Mirrors for guests that have no way out: a git daemon and a PyPI mirror on a host address.

Like the apt proxy (bridge.py), they are shared by every deployment that uses the address:
each takes a reference under a host-side lock (state under /run/benchbed/mirrors), and the
last one to release stops the daemons by the pid they wrote. The PyPI mirror is devpi-server,
installed from PyPI into a venv of its own (/var/lib/benchbed/devpi/venv) that ignores the
host's pip configuration; its cache (/var/cache/benchbed/pypi/ADDRESS) outlives the daemon,
so later deployments find their packages cached.
"""

import ipaddress
import json

from benchbed.errors import BenchbedError, InputError
from benchbed.server import Server, run_script

GIT_PORT = 9418
PYPI_PORT = 3141
DEVPI_REQUIREMENT = "devpi-server==6.20.3"
START_TIMEOUT = 600  # a first start installs devpi-server from PyPI


def address_towards(host: Server, guest: str,
                    routed: ipaddress.IPv4Network | None = None) -> str:
    """The host's own address that `guest` reaches it at: its address on the guest's network
    when it is on it. A guest on another host's slice of a routed deployment network routes
    nothing but that network (`routed`), so there it is the host's address inside it (the
    gateway of the host's own slice), which the guest reaches through the hosts' routes."""
    try:
        ipaddress.ip_address(guest)
    except ValueError:
        raise InputError(f"server {guest}: benchbed's mirrors need the server's IP address, "
                         f"not a name") from None
    listed = host.ssh.run(["ip", "-j", "route", "get", guest], timeout=30, check=False)
    routes = json.loads(listed.stdout or "[]") if listed.exit_code == 0 else []
    route = routes[0] if routes else {}
    if route.get("prefsrc") and not route.get("gateway") and route.get("dev") != "lo":
        return str(route["prefsrc"])
    if routed is not None and route.get("gateway") and ipaddress.ip_address(guest) in routed:
        inside = addresses_inside(host, routed)
        if inside:
            return inside[0]
        raise InputError(f"server {guest} is routed from {host.host} through "
                         f"{route['gateway']}, and {host.host} has no address in the "
                         f"deployment's network {routed} to serve mirrors on: put a slice of "
                         f"that network on {host.host}, or give git_base and pip_index_url "
                         f"that the server can reach")
    raise InputError(f"server {guest} is not on a network of {host.host} (route: "
                     f"{listed.stdout.strip() or listed.stderr.strip()}): benchbed serves "
                     f"mirrors only to guests on a bridge of this machine or routed to one; "
                     f"give git_base and pip_index_url that the server can reach")


def addresses_inside(host: Server, network: ipaddress.IPv4Network) -> list[str]:
    """The host's own IPv4 addresses inside `network`, in `ip addr`'s order."""
    listed = host.ssh.run(["ip", "-j", "-4", "addr", "show"], timeout=30, check=False)
    interfaces = json.loads(listed.stdout or "[]") if listed.exit_code == 0 else []
    return [info["local"] for interface in interfaces for info in interface.get("addr_info", [])
            if "local" in info and ipaddress.IPv4Address(info["local"]) in network]


class GuestMirrors:
    """The git daemon and PyPI mirror on one address of one host."""

    def __init__(self, host: Server, address: str) -> None:
        self.host = host
        self.address = address

    @property
    def git_base(self) -> str:
        return f"git://{self.address}"

    @property
    def pip_index_url(self) -> str:
        return f"http://{self.address}:{PYPI_PORT}/root/pypi/+simple/"

    def acquire(self, user: str, git_mirror: str | None, pypi: bool) -> None:
        """Take `user`'s reference, starting the daemons asked for that are not running."""
        self._run(["acquire", user, self.address, git_mirror or "", "1" if pypi else "0",
                   DEVPI_REQUIREMENT], START_TIMEOUT)

    def release(self, user: str) -> None:
        """Drop `user`'s reference (already dropped is fine); the last one stops the daemons."""
        self._run(["release", user, self.address], 120)

    def _run(self, args: list[str], timeout: float) -> None:
        try:
            run_script(self.host.ssh, "hostnet/mirrors.sh", args, timeout=timeout)
        except BenchbedError as error:
            raise BenchbedError(f"{args[0]} guest mirrors on {self.host.host} "
                                f"{self.address}: {error}") from None
