"""Service recipes of the DebianEngine: one module per OpenStack service, each a few steps.

A recipe names its Debian packages, the debconf answers that keep the packages' own
set-up out of the way, the directories it may create, and the steps that configure the
service once the packages are in. Every step can be re-run on a half-configured server.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from benchbed.server import Command, Server

# The services the schema knows; only the recipes below are implemented today.
KNOWN_SERVICES = ("keystone", "glance", "placement", "nova", "neutron")


@dataclass
class Context:
    """What recipes share: the server, its address, the passwords and the region."""

    server: Server
    address: str
    region: str
    passwords: dict[str, str]
    step: Callable[[str, str | None], Any]
    outputs: dict[str, Any] = field(default_factory=dict)

    def run(self, command: Command, *, timeout: float = 600, stdin: str | None = None) -> str:
        return self.server.ssh.run(command, timeout=timeout, stdin=stdin).stdout


@dataclass(frozen=True)
class Recipe:
    """How one service is installed: packages, preseeding, created paths, set-up steps."""

    name: str
    packages: tuple[str, ...]
    preseed: tuple[str, ...]
    paths: tuple[str, ...]
    services: tuple[str, ...]
    configure: Callable[[Context], None]


def recipes() -> dict[str, Recipe]:
    from benchbed.engines.debian_services import glance, keystone, mariadb

    return {recipe.name: recipe for recipe in (mariadb.RECIPE, keystone.RECIPE, glance.RECIPE)}
