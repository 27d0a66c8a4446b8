"""Service recipes of the DebianEngine: one module per OpenStack service, each a few steps.

A recipe names its Debian packages, the debconf answers that keep the packages' own
set-up out of the way, the directories it may create, and the steps that configure the
service once the packages are in. Every step can be re-run on a half-configured server.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from benchbed.ports import PeerPort
from benchbed.scale import ControlPlane
from benchbed.server import Command, Server

# The services a DebianEngine installs, in the order they are installed and configured (each
# needs those before it); rabbitmq comes with nova or neutron, mariadb with any database.
KNOWN_SERVICES = ("keystone", "glance", "placement", "neutron", "nova", "nova-compute",
                  "nova-compute-qemu")


@dataclass
class Context:
    """What recipes share: the server, its address, the passwords and the region.

    `database` is the server whose MariaDB holds the services' databases, reached from the
    services at `database_host`: this server itself, or a MultihostEngine controller that
    this node joins (then `outputs` starts with the controller's Keystone URL).
    """

    server: Server
    address: str
    region: str
    passwords: dict[str, str]
    step: Callable[[str, str | None], Any]
    # Nova's processes and MariaDB's connections, sized for the nodes that join
    control_plane: ControlPlane
    outputs: dict[str, Any] = field(default_factory=dict)
    database: Server | None = None
    database_host: str = "127.0.0.1"
    # services started but not yet waited for, by name: each wait runs once, when a later
    # step needs the service (ready) or at the latest after the next recipe's steps
    waiting: dict[str, Callable[[], None]] = field(default_factory=dict)

    def ready(self, *names: str) -> None:
        """Wait for the named started services to answer (those not waited for yet)."""
        for name in names:
            wait = self.waiting.pop(name, None)
            if wait is not None:
                wait()

    def run(self, command: Command, *, timeout: float = 600, stdin: str | None = None) -> str:
        return self.server.ssh.run(command, timeout=timeout, stdin=stdin).stdout

    @property
    def database_server(self) -> Server:
        return self.database or self.server

    @property
    def database_clients(self) -> tuple[str, ...]:
        """The hosts MariaDB accounts are granted to: local ones, or this node's address."""
        if self.database is None:
            return ("localhost", "127.0.0.1")
        return (self.address,)


@dataclass(frozen=True)
class Recipe:
    """How one service is installed: packages, preseeding, created paths, set-up steps."""

    name: str
    packages: tuple[str, ...]
    preseed: tuple[str, ...]
    paths: tuple[str, ...]
    services: tuple[str, ...]
    configure: Callable[[Context], None]
    # what its services listen on for the deployment's other servers (Engine.peer_ports)
    ports: frozenset[PeerPort] = frozenset()


def recipes() -> dict[str, Recipe]:
    from benchbed.engines.debian_services import (
        glance,
        keystone,
        mariadb,
        neutron,
        nova,
        nova_compute,
        nova_compute_qemu,
        placement,
        rabbitmq,
    )

    return {recipe.name: recipe for recipe in (
        mariadb.RECIPE, mariadb.CLIENT_RECIPE, rabbitmq.RECIPE, keystone.RECIPE, glance.RECIPE,
        placement.RECIPE, neutron.RECIPE, nova.RECIPE, nova_compute.RECIPE,
        nova_compute_qemu.RECIPE)}
