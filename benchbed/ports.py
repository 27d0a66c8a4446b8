"""The ports a deployment's servers must reach each other on: what engines declare
(Engine.peer_ports) and cloud providers open between the deployment's own servers only."""

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from benchbed.settings import Section, setting


@dataclass(frozen=True, kw_only=True)
class PeerPort(Section):
    """One port a service listens on for the deployment's other servers."""

    protocol: Literal["tcp", "udp"] = setting("tcp or udp.", "tcp")
    port: int = setting("The port number.", minimum=1, maximum=65535)

    def __str__(self) -> str:
        return f"{self.port}/{self.protocol}"


def tcp(*numbers: int) -> frozenset[PeerPort]:
    return frozenset(PeerPort(protocol="tcp", port=number) for number in numbers)


def udp(*numbers: int) -> frozenset[PeerPort]:
    return frozenset(PeerPort(protocol="udp", port=number) for number in numbers)


def in_order(ports: Iterable[PeerPort]) -> list[PeerPort]:
    """Sorted by protocol then number: what the ledger records and the clouds are sent."""
    return sorted(set(ports), key=lambda port: (port.protocol, port.port))


def to_data(ports: Iterable[PeerPort]) -> list[str]:
    """As a ledger row records them ("5672/tcp")."""
    return [str(port) for port in in_order(ports)]
