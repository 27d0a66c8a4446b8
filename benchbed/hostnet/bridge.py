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
from benchbed.server import Server, run_script

APT_PROXY_PORT = 3142
STATE_DIR = "/run/benchbed/hostnet"
CACHE_DIR = "/var/cache/benchbed/apt-cacher-ng"
LEASE_TIME = "1h"

# Runs on the host as `sh -s -- ACTION USER BRIDGE GATEWAY PREFIX FIRST LAST`, under a lock.
SCRIPT = f"""
base={STATE_DIR} cache={CACHE_DIR} lease_time={LEASE_TIME} port={APT_PROXY_PORT}
""" + r"""
set -eu
action=$1 user=$2 bridge=$3 gateway=$4 prefix=$5 first=$6 last=$7
state=$base/$bridge
mkdir -p "$base"
exec 9>>"$base/$bridge.lock"
flock 9

ours() {  # is the process in pid file $1 ours, i.e. does its command line hold argument $2?
    [ -s "$1" ] || return 1
    read -r pid < "$1"
    [ -r "/proc/$pid/cmdline" ] && grep -qzxF -- "$2" "/proc/$pid/cmdline"
}

running() {  # alive and not a zombie (PID 1 may be slow to reap)
    [ -r "/proc/$1/status" ] && ! grep -q '^State:.*Z' "/proc/$1/status"
}

stop() {  # stop the process in pid file $1 if it is ours, by that pid only
    if ours "$1" "$2"; then
        pid=$(cat "$1")
        kill "$pid" 2>/dev/null || true
        i=0
        while running "$pid" && [ $i -lt 50 ]; do sleep 0.05; i=$((i + 1)); done
        if ours "$1" "$2"; then kill -9 "$pid" 2>/dev/null || true; fi
    fi
    rm -f "$1"
}

wait_for_file() {
    i=0
    while [ ! -s "$1" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
    [ -s "$1" ] || { echo "$2 did not start (no $1)" >&2; exit 1; }
}

acquire() {
    mkdir -p "$state/users"
    : > "$state/users/$user"
    if ! ip -br addr show dev "$bridge" 2>/dev/null | grep -q "UP .* $gateway/$prefix\( \|$\)"; then
        ip link show dev "$bridge" >/dev/null 2>&1 || ip link add name "$bridge" type bridge
        ip addr replace "$gateway/$prefix" dev "$bridge"
        ip link set "$bridge" up
    fi
    if ! ours "$state/dnsmasq.pid" "--pid-file=$state/dnsmasq.pid"; then
        rm -f "$state/dnsmasq.pid"
        dnsmasq --conf-file=/dev/null --port=0 --bind-interfaces --interface="$bridge" \
            --except-interface=lo --listen-address="$gateway" \
            --dhcp-range="$first,$last,$lease_time" --dhcp-authoritative --no-ping \
            --dhcp-option=3 --dhcp-option=6 --dhcp-leasefile="$state/dnsmasq.leases" \
            --pid-file="$state/dnsmasq.pid" </dev/null >"$state/dnsmasq.log" 2>&1 9>&- \
            || { cat "$state/dnsmasq.log" >&2; exit 1; }
        wait_for_file "$state/dnsmasq.pid" dnsmasq
    fi
    conf=$state/acng
    if ! ours "$state/acng-run/pid" "$conf"; then
        mkdir -p "$conf" "$state/acng-run" "$cache/$bridge.log" "$cache/$bridge"
        chown apt-cacher-ng: "$state/acng-run" "$cache/$bridge.log" "$cache/$bridge"
        rm -f "$state/acng-run/pid"
        cat > "$conf/acng.conf" <<EOF
CacheDir: $cache/$bridge
LogDir: $cache/$bridge.log
SupportDir: /usr/lib/apt-cacher-ng
BindAddress: $gateway
Port: $port
PidFile: $state/acng-run/pid
SocketPath: $state/acng-run/socket
ForeGround: 0
ExThreshold: 4
EOF
        setpriv --reuid=apt-cacher-ng --regid=apt-cacher-ng --init-groups \
            apt-cacher-ng -c "$conf" </dev/null >"$state/acng-start.log" 2>&1 9>&- \
            || { cat "$state/acng-start.log" >&2; exit 1; }
        wait_for_file "$state/acng-run/pid" apt-cacher-ng
    fi
}

release() {
    rm -f "$state/users/$user"
    if [ -n "$(ls -A "$state/users" 2>/dev/null)" ]; then return 0; fi
    stop "$state/acng-run/pid" "$state/acng"
    stop "$state/dnsmasq.pid" "--pid-file=$state/dnsmasq.pid"
    if ip link show dev "$bridge" >/dev/null 2>&1; then ip link delete "$bridge"; fi
    rm -rf "$state"
}

"$action"
"""


def host_checks(network: ipaddress.IPv4Network | None, key: str) -> list[HostCheck]:
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


def bridge_name(network: ipaddress.IPv4Network) -> str:
    """One bridge per network (15 characters at most): deployments on one network share it."""
    return "bblxc" + hashlib.sha1(str(network).encode()).hexdigest()[:8]


class HostNetwork:
    """The bridge, DHCP server and apt proxy for one network on one host."""

    def __init__(self, host: Server, network: ipaddress.IPv4Network) -> None:
        if network.num_addresses < 4:
            raise InputError(f"network {network} is too small: needs at least a /30")
        self.host = host
        self.network = network
        self.bridge = bridge_name(network)
        addresses = list(network.hosts())
        self.gateway = str(addresses[0])
        # Guests configured with an address before they boot (LXC) take the lower part, DHCP
        # (VMs, anything else on the bridge) the rest, so the two never hand out one address.
        fixed = static_capacity(network)
        self._static_range = (int(addresses[1]), int(addresses[fixed])) if fixed else None
        self.dhcp_range = (str(addresses[1 + fixed]), str(addresses[-1]))

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
        args = [action, user, self.bridge, self.gateway, prefix, *self.dhcp_range]
        try:
            run_script(self.host.ssh, SCRIPT, args, timeout=120)
        except BenchbedError as error:
            raise BenchbedError(f"{action} network {self.bridge} ({self.network}) on "
                                f"{self.host.host}: {error}") from None


def overlapping_route(routes: list[dict], network: ipaddress.IPv4Network,
                      own_bridge: str) -> str | None:
    """Describe the first route (from `ip -j route`) that overlaps `network` on another device."""
    for route in routes:
        destination = route.get("dst", "")
        if destination in ("", "default") or route.get("dev") == own_bridge:
            continue
        try:
            routed = ipaddress.IPv4Network(destination, strict=False)
        except ValueError:
            continue
        if routed.overlaps(network) and route.get("type") != "broadcast":
            return f"{routed} on {route.get('dev', '?')}"
    return None
