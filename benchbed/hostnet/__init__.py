"""Host networking shared by the providers that run guests on a host (LXC, Virsh) and the engines
that install packages in them: a bridge with DHCP and an apt proxy, reference-counted per host,
and (`routes`) the routes that join several hosts' container networks."""

from benchbed.hostnet.bridge import (
    APT_PROXY_PORT,
    PROXY_PATTERN,
    HostNetwork,
    bridge_name,
    host_requirements,
)

__all__ = ["APT_PROXY_PORT", "PROXY_PATTERN", "HostNetwork", "bridge_name", "host_requirements"]
