"""A bridge with dnsmasq DHCP and an apt-cacher-ng proxy on a host, shared by reference count.

Several deployments on one host and network share one bridge, one dnsmasq and one proxy. Each
takes a reference (a file named after it) under a host-side lock; the last one to release stops
the daemons by the pid they wrote (checked against /proc/<pid>/cmdline) and removes the bridge.
The state lives on the host the bridge is on (/run, which a reboot clears together with the
bridge), so deployments with different BENCHBED_HOMEs still count each other. Guests get an
address and nothing else: no route, no DNS, no NAT; they reach Debian's mirrors only through
the proxy on the bridge address. The proxy's cache and logs (/var/cache/benchbed/apt-cacher-ng/
<bridge> and <bridge>.log) outlive the bridge, so later deployments find their packages cached.
"""

import hashlib
import ipaddress
import json

from benchbed import hostcheck
from benchbed.errors import BenchbedError, InputError
from benchbed.hostcheck import HostCheck
from benchbed.networks import overlapping_route
from benchbed.server import Server, run_script

APT_PROXY_PORT = 3142
STATE_DIR = "/run/benchbed/hostnet"
CACHE_DIR = "/var/cache/benchbed/apt-cacher-ng"
LEASE_TIME = "1h"

# an apt proxy to fetch through: plain HTTP, a host name or address, a port
PROXY_PATTERN = "^http://[A-Za-z0-9][A-Za-z0-9.-]{0,252}(:[0-9]{1,5})?/?$"


def host_requirements(network: ipaddress.IPv4Network | None, key: str) -> list[HostCheck]:
    """What this machine needs to serve a host network (given one: also that it is free;
    `key` is the config key that chose it)."""
    checks = [hostcheck.root(),
              hostcheck.command("ip", "iproute2"), hostcheck.command("dnsmasq", "dnsmasq-base"),
              hostcheck.command("apt-cacher-ng", "apt-cacher-ng"),
              hostcheck.command("flock", "util-linux"),
              hostcheck.command("setpriv", "util-linux")]
    if network is not None:
        checks.append(hostcheck.free_network(str(network), key, bridge_name(network)))
    return checks


def static_capacity(network: ipaddress.IPv4Network) -> int:
    """How many guests of `network` can have a fixed address: half of those the gateway leaves."""
    return max(network.num_addresses - 3, 0) // 2


def gateway_of(network: ipaddress.IPv4Network) -> ipaddress.IPv4Address:
    """The host's address on the bridge of `network`: the guests' gateway."""
    return network.network_address + 1


def bridge_name(network: ipaddress.IPv4Network) -> str:
    """One bridge per network (15 characters at most): deployments on one network share it."""
    return "bblxc" + hashlib.sha1(str(network).encode()).hexdigest()[:8]


class HostNetwork:
    """The bridge, DHCP server and apt proxy for one network on one host."""

    def __init__(self, host: Server, network: ipaddress.IPv4Network,
                 apt_upstream: str = "") -> None:
        """`apt_upstream`: the proxy (http://HOST:PORT) this host's apt proxy fetches through,
        when the host has no way out of its own; set when the proxy starts."""
        if network.num_addresses < 4:
            raise InputError(f"network {network} is too small: needs at least a /30")
        self.host = host
        self.network = network
        self.apt_upstream = apt_upstream
        self.bridge = bridge_name(network)
        # Addresses are counted from the network's bounds, never listed (a /8 has millions).
        gateway = gateway_of(network)
        self.gateway = str(gateway)
        # Guests configured with an address before they boot (LXC) take the lower part, DHCP
        # (VMs, anything else on the bridge) the rest, so the two never hand out one address.
        fixed = static_capacity(network)
        self._static_range = (int(gateway) + 1, int(gateway) + fixed) if fixed else None
        self.dhcp_range = (str(gateway + 1 + fixed), str(network.broadcast_address - 1))

    @property
    def apt_proxy(self) -> str:
        return f"http://{self.gateway}:{APT_PROXY_PORT}"

    @property
    def static_range(self) -> tuple[int, int]:
        """The first and last address (as integers) that guests may be given as fixed ones."""
        if self._static_range is None:
            raise InputError(f"network {self.network} is too small for fixed addresses")
        return self._static_range

    @property
    def state_dir(self) -> str:
        """Where the host keeps this network's references, leases and address reservations."""
        return f"{STATE_DIR}/{self.bridge}"

    def check_free(self) -> None:
        """Refuse a network that overlaps one the host already routes (other than our bridge)."""
        listed = self.host.ssh.run("ip -j -4 route show table all", timeout=30)
        clash = overlapping_route(json.loads(listed.stdout or "[]"), self.network, self.bridge)
        if clash:
            raise InputError(f"network {self.network} overlaps {clash} on host "
                             f"{self.host.host}: choose another start_lxc_network")

    def acquire(self, user: str) -> None:
        """Take a reference for `user`, creating bridge, dnsmasq and proxy if they are missing."""
        self._run("acquire", user)

    def release(self, user: str) -> None:
        """Drop `user`'s reference (already dropped is fine); the last one removes everything."""
        self._run("release", user)

    def _run(self, action: str, user: str) -> None:
        prefix = str(self.network.prefixlen)
        args = [action, user, self.bridge, self.gateway, prefix, *self.dhcp_range, STATE_DIR,
                CACHE_DIR, LEASE_TIME, str(APT_PROXY_PORT), self.apt_upstream]
        try:
            run_script(self.host.ssh, "hostnet/bridge.sh", args, timeout=120)
        except BenchbedError as error:
            raise BenchbedError(f"{action} network {self.bridge} ({self.network}) on "
                                f"{self.host.host}: {error}") from None

