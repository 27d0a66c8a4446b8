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


def address_towards(host: Server, guest: str) -> str:
    """The host's own address on the network it reaches `guest` on directly (no gateway)."""
    try:
        ipaddress.ip_address(guest)
    except ValueError:
        raise InputError(f"server {guest}: benchbed's mirrors need the server's IP address, "
                         f"not a name") from None
    listed = host.ssh.run(["ip", "-j", "route", "get", guest], timeout=30, check=False)
    routes = json.loads(listed.stdout or "[]") if listed.exit_code == 0 else []
    route = routes[0] if routes else {}
    if not route.get("prefsrc") or route.get("gateway") or route.get("dev") == "lo":
        raise InputError(f"server {guest} is not on a network of {host.host} (route: "
                         f"{listed.stdout.strip() or listed.stderr.strip()}): benchbed serves "
                         f"mirrors only to guests on a bridge of this machine; give git_base "
                         f"and pip_index_url that the server can reach")
    return route["prefsrc"]


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
