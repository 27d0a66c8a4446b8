"""LxcProvider: LXC containers as servers, overlay clones of a cached Debian base image.

Hosts come from a nested `host_provider` and are driven through `server.ssh.run` (directly for
`localhost`). Each host gets its slice of `start_lxc_network` (host i: the i-th network of that
size), served by the shared, reference-counted bridge/dnsmasq/apt proxy of `benchbed.hostnet`.
Every container is in the ledger before `lxc-copy` runs; host-side scripts hold a per-container
lock, so a destroy that races a killed `create` waits for its half-done clone and removes it.
"""

import ipaddress
import json
import shlex
import socket
import subprocess
from dataclasses import dataclass
from typing import Any

from benchbed import plugin, sizes
from benchbed.errors import ConfigError, InputError, SSHError
from benchbed.hostnet import HostNetwork, bridge_name
from benchbed.hostnet.bridge import overlapping_route, static_capacity
from benchbed.images.lxc import DEFAULT_RELEASE, RELEASES, LxcImageStore, image_name
from benchbed.keys import deployment_key
from benchbed.ledger import Resource
from benchbed.parallel import run_parallel
from benchbed.plugin import PROVIDERS, ResourceKind
from benchbed.providers.base import ServerProvider
from benchbed.retry import wait_for
from benchbed.server import Server, run_script, warm_up_ssh

DEFAULT_NETWORK = "10.254.100.0/24"
HOST_TIMEOUT = 20
READY_TIMEOUT = 90

# sh -s -- NAME IMAGE BRIDGE PROXY CPUS MEMORY_MB PUBLIC_KEY STATE FIRST LAST PREFIX LAYER_ON;
# prints the address. LAYER_ON, when not empty, is a stopped overlay container whose own
# layers go under the clone's (overlayfs stacks them): a clone of a prepared container
# without copying its files, which `lxc-copy -s` of an overlay clone would do.
# The address is fixed before boot (no DHCP round trip, no dhclient at boot): the next one
# in FIRST..LAST (integers, round robin from the last one given) that no container
# config, reservation under STATE/addresses or dnsmasq lease holds, reserved under a lock;
# DELETE drops the reservation. The host's ARP entry for it is flushed: a reused address still
# pointing at the previous container's MAC made SSH wait 30-45 s for the entry to expire.
CREATE = r"""
set -eu
name=$1 image=$2 bridge=$3 proxy=$4 cpus=$5 memory=$6 pubkey=$7 state=$8 first=$9
last=${10} prefix=${11} layer_on=${12:-}
lxcpath=$(lxc-config lxc.lxcpath)
if [ -n "$layer_on" ]; then
    layers=$(sed -n 's/^lxc.rootfs.path *= *overlay:\(.*\)$/\1/p' "$lxcpath/$layer_on/config")
    [ -n "$layers" ] || { echo "$layer_on: not an overlay container" >&2; exit 1; }
    lxc-info -n "$layer_on" -s | grep -q STOPPED || { echo "$layer_on: not stopped" >&2; exit 1; }
fi
mkdir -p /run/lock "$state/addresses"
exec 9>>"/run/lock/benchbed-lxc-$name.lock"
flock 9
exec 8>>"$state/addresses.lock"
flock 8
previous=$(cat "$state/addresses.last" 2>/dev/null || echo "$last")
chosen=$({ ls "$state/addresses"
          sed -n 's/^lxc.net.0.ipv4.address *= *\([0-9.]*\).*/\1/p' "$lxcpath"/*/config
          cut -d' ' -f3 "$state/dnsmasq.leases" 2>/dev/null || true
        } | awk -v first="$first" -v last="$last" -v previous="$previous" '
    { used[$0] = 1 }
    END {
        for (i = 1; i <= last - first + 1; i++) {
            n = first + (previous - first + i) % (last - first + 1)
            a = sprintf("%d.%d.%d.%d", int(n / 16777216) % 256, int(n / 65536) % 256,
                        int(n / 256) % 256, n % 256)
            if (!(a in used)) { print n, a; exit }
        }
    }')
[ -n "$chosen" ] || { echo "$name: no free address left on $bridge" >&2; exit 1; }
address=${chosen#* }
echo "$name" > "$state/addresses/$address"
echo "${chosen%% *}" > "$state/addresses.last"
exec 8>&-
ip neigh flush to "$address" dev "$bridge" 2>/dev/null || true
lxc-copy -s -B overlay -n "$image" -N "$name" >&2 9>&-
config=$lxcpath/$name/config
upper=$(sed -n 's/^lxc.rootfs.path *= *overlay:[^:]*:\(.*\)$/\1/p' "$config")
[ -n "$upper" ] || { echo "$name: not an overlay clone" >&2; exit 1; }
if [ -n "$layer_on" ]; then
    # its upper layer over its lower ones, all under the clone's own upper layer
    lower=${layers%:*} top=${layers##*:}
    sed -i "s|^lxc.rootfs.path *=.*|lxc.rootfs.path = overlay:$top:$lower:$upper|" "$config"
fi
sed -i "s/^lxc.net.0.link *=.*/lxc.net.0.link = $bridge/" "$config"
echo "lxc.net.0.ipv4.address = $address/$prefix" >> "$config"
if [ "$cpus" -gt 0 ]; then
    if [ -d /sys/fs/cgroup/cpu ]; then
        printf 'lxc.cgroup.cpu.cfs_period_us = 100000\nlxc.cgroup.cpu.cfs_quota_us = %s\n' \
            "$((cpus * 100000))" >> "$config"
    else
        echo "lxc.cgroup2.cpu.max = $((cpus * 100000)) 100000" >> "$config"
    fi
fi
if [ "$memory" -gt 0 ]; then
    if [ -d /sys/fs/cgroup/memory ]; then
        echo "lxc.cgroup.memory.limit_in_bytes = ${memory}M" >> "$config"
    else
        echo "lxc.cgroup2.memory.max = ${memory}M" >> "$config"
    fi
fi
mkdir -p "$upper/etc/ssh" "$upper/root/.ssh" "$upper/etc/apt/apt.conf.d" "$upper/etc/network" \
    "$upper/etc/systemd/system"
tr -d - < /proc/sys/kernel/random/uuid > "$upper/etc/machine-id"
echo "$name" > "$upper/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 %s\n::1 localhost ip6-localhost ip6-loopback\n' \
    "$name" > "$upper/etc/hosts"
printf 'auto lo\niface lo inet loopback\n# eth0: %s/%s, set by LXC before boot\n' \
    "$address" "$prefix" > "$upper/etc/network/interfaces"
# LXC brings up lo and eth0 itself: ifupdown would only delay network.target, and sshd after it
ln -sf /dev/null "$upper/etc/systemd/system/networking.service"
ln -sf /dev/null "$upper/etc/systemd/system/ifupdown-pre.service"
ssh-keygen -q -t ed25519 -N '' -C "root@$name" -f "$upper/etc/ssh/ssh_host_ed25519_key"
chmod 700 "$upper/root/.ssh"
echo "$pubkey" > "$upper/root/.ssh/authorized_keys"
chmod 600 "$upper/root/.ssh/authorized_keys"
echo "Acquire::http::Proxy \"$proxy\";" > "$upper/etc/apt/apt.conf.d/01benchbed-proxy"
lxc-start -n "$name" -d 9>&-
echo "$address"
"""

# sh -s -- NAME STATE; already gone is success.
DELETE = r"""
set -eu
name=$1 state=$2
lxcpath=$(lxc-config lxc.lxcpath)
mkdir -p /run/lock
exec 9>>"/run/lock/benchbed-lxc-$name.lock"
flock 9
if [ -f "$lxcpath/$name/config" ]; then lxc-destroy -f -n "$name" >&2 9>&-; fi
rm -rf "${lxcpath:?}/$name"
if [ -d "$state/addresses" ]; then
    grep -lxF "$name" "$state/addresses"/* 2>/dev/null | while read -r reserved; do
        rm -f "$reserved"
    done
fi
rm -f "/run/lock/benchbed-lxc-$name.lock"
"""


@dataclass
class Host:
    """An LXC host with its network and the base image clones come from."""

    server: Server
    network: HostNetwork
    image: str
    release: str | None  # set when the image is a base image benchbed builds on demand


class LxcProvider(ServerProvider):
    """LXC containers (overlay clones of a Debian base image) on hosts from a nested provider."""

    CONFIG_SCHEMA = {
        "type": "object",
        "properties": {
            "type": {"const": "LxcProvider"},
            "distribution": {"enum": ["debian"]},
            "release": {"type": "string", "minLength": 1},
            "containers_per_host": {"type": "integer", "minimum": 1, "maximum": 250},
            "container_name_prefix": {"type": "string", "pattern": "^[a-z][a-z0-9-]{0,23}$"},
            "start_lxc_network": {"type": "string"},
            "forward_ssh": {"type": "boolean"},
            "tunnel_to": {"type": "array", "items": {"type": "string"}},
            "host_provider": {"type": "object"},
        },
        "required": ["type", "host_provider"],
        "additionalProperties": False,
    }
    NESTED = {"host_provider": PROVIDERS}
    RESOURCES = {
        "hostnet": ResourceKind(delete="_release_network"),
        "container": ResourceKind(delete="_delete_container", requires=("hostnet",)),
    }

    @classmethod
    def check_config(cls, config: dict[str, Any], path: str) -> None:
        def where(key: str) -> str:
            return f"{path}.{key}".lstrip(".")

        if config.get("forward_ssh"):
            raise ConfigError(where("forward_ssh"), "is not supported: it forwards ports with "
                              "NAT, which benchbed never sets up; containers are reached on "
                              "their host's bridge network (remove the key or set it to false)")
        if "tunnel_to" in config:
            raise ConfigError(where("tunnel_to"), "is not supported: SSH tunnels to the "
                              "containers are not implemented (remove the key)")
        release = config.get("release", DEFAULT_RELEASE)
        if release not in RELEASES:
            raise ConfigError(where("release"), f"unknown Debian release '{release}' "
                              f"(known: {', '.join(RELEASES)})")
        text = config.get("start_lxc_network", DEFAULT_NETWORK)
        try:
            network = ipaddress.IPv4Network(text, strict=True)
        except ValueError as error:
            raise ConfigError(where("start_lxc_network"),
                              f"not an IPv4 network in CIDR form: {error}") from None
        if not network.is_private or network.is_loopback or network.is_link_local:
            raise ConfigError(where("start_lxc_network"),
                              f"{network} is not a private network range")
        per_host = config.get("containers_per_host", 1)
        if static_capacity(network) < per_host:
            raise ConfigError(where("start_lxc_network"), f"{network} has room for "
                              f"{static_capacity(network)} container(s) (the lower half of its "
                              f"addresses), containers_per_host is {per_host}")
        for index, credential in enumerate(config["host_provider"].get("credentials", [])):
            subnet = host_network(network, index)
            if not subnet.is_private:
                raise ConfigError(where("start_lxc_network"), f"host {index} would get "
                                  f"{subnet}, which is not a private network range")
            if credential.get("host") == "localhost":
                _check_local_network(subnet, where(f"start_lxc_network (host {index}: "
                                                   "localhost)"))

    @property
    def _per_host(self) -> int:
        return int(self.config.get("containers_per_host", 1))

    @property
    def _release(self) -> str:
        return self.config.get("release", DEFAULT_RELEASE)

    def default_amount(self) -> int:
        return self._per_host * self.nest("host_provider").default_amount()

    def create_servers(self, image_uuid: str | None = None, type_id: str | None = None,
                       amount: int = 1, layer_on: str | None = None) -> list[Server]:
        """Containers cloned from the image; with `layer_on` (a stopped container made from
        that image on the first host), stacked on that container's files instead."""
        limits = sizes.lookup(type_id) if type_id is not None else (0, 0)
        if amount < 1:
            raise InputError(f"LxcProvider: amount must be at least 1, not {amount}")
        host_provider = self.nest("host_provider")
        servers = host_provider.create_servers(amount=host_provider.default_amount())
        if amount > len(servers) * self._per_host:
            raise InputError(f"LxcProvider: {len(servers)} host(s) x containers_per_host "
                             f"{self._per_host} hold {len(servers) * self._per_host} "
                             f"container(s); {amount} requested")
        servers = servers[:-(-amount // self._per_host)]
        start = ipaddress.IPv4Network(self.config.get("start_lxc_network", DEFAULT_NETWORK))
        if image_uuid is None or image_uuid in RELEASES:
            release: str | None = image_uuid or self._release
            image = image_name(release)
        else:
            release, image = None, image_uuid
        hosts = [Host(server, HostNetwork(server, host_network(start, index)), image, release)
                 for index, server in enumerate(servers)]
        run_parallel("checking LXC hosts", hosts, self._check_host, describe=_describe_host)
        run_parallel("preparing LXC hosts", hosts, self._prepare_host, describe=_describe_host)
        _, public_key = deployment_key(self.deployment)
        offset = len(self.ledger.resources("container"))
        tag = self.tag
        prefix = self.config.get("container_name_prefix", "benchbed")
        slots = [(f"{prefix}-{tag}-{offset + index}", hosts[index // self._per_host])
                 for index in range(amount)]
        warm_up_ssh()
        return run_parallel("creating LXC containers", slots,
                            lambda slot: self._create_container(*slot, limits, public_key,
                                                                layer_on),
                            describe=lambda slot: slot[0])

    def _check_host(self, host: Host) -> None:
        """Everything that can be refused is refused here, before anything is created."""
        shell, where = host.server.ssh, _describe_host(host)
        try:
            shell.wait_ready(timeout=HOST_TIMEOUT)
        except SSHError as error:
            raise SSHError(f"{where} (from host_provider): {error}") from None
        found = shell.run("id -u; for tool in lxc-copy lxc-create dnsmasq apt-cacher-ng "
                          "flock setpriv ssh-keygen ip; do command -v $tool >/dev/null "
                          "|| echo missing: $tool; done", timeout=HOST_TIMEOUT)
        lines = found.stdout.split()
        if lines[:1] != ["0"]:
            raise InputError(f"{where}: LXC needs root on the host")
        missing = [word for word in lines[1:] if word != "missing:"]
        if missing:
            raise InputError(f"{where}: not installed: {', '.join(missing)} "
                             f"(tools/host-packages.sh installs them)")
        host.network.check_free()
        if host.release is None and not LxcImageStore(host.server).exists(host.image):
            raise InputError(f"{where}: no LXC image named '{host.image}' "
                             f"(see: benchbed image list --provider lxc)")

    def _prepare_host(self, host: Host) -> None:
        with self.deployment.step("ensure LXC image", f"{host.image} on {host.server.host}"):
            if host.release is not None:
                LxcImageStore(host.server).ensure(host.image, host.release)
        with self.ledger.creating("hostnet", f"{host.network.bridge}@{host.server.host}",
                                  host=host.server.to_dict(),
                                  network=str(host.network.network)), \
                self.deployment.step("acquire network", host.network.bridge):
            host.network.acquire(self.holder)

    def _create_container(self, name: str, host: Host, limits: tuple[int, int],
                          public_key: str, layer_on: str | None) -> Server:
        network = host.network
        first, last = network.static_range
        args = [name, host.image, network.bridge, network.apt_proxy, str(limits[0]),
                str(limits[1]), public_key, network.state_dir, str(first), str(last),
                str(network.network.prefixlen), layer_on or ""]
        with self.ledger.creating("container", name, host=host.server.to_dict(),
                                  image=host.image, state=network.state_dir) as resource:
            with self.deployment.step("create container", name):
                result = run_script(host.server.ssh, CREATE, args, timeout=READY_TIMEOUT)
            address = result.stdout.strip().splitlines()[-1]
            resource.data.update(address=address, ssh_address=f"{address}:22")
        key_path, _ = deployment_key(self.deployment)
        server = Server(host=address, user="root", key=str(key_path), name=name,
                        deployment=self.deployment)
        with self.deployment.step("wait for SSH", f"{name} {address}"):
            wait_for(lambda: _port_open(address), timeout=READY_TIMEOUT,
                     what=f"SSH on {name} ({address})", interval=0.02, max_interval=0.02)
            server.ssh.wait_ready(timeout=READY_TIMEOUT)
        return server

    @classmethod
    def capacity(cls, config: dict[str, Any]) -> int | None:
        host_config = config["host_provider"]
        hosts = plugin.get(PROVIDERS, host_config["type"]).capacity(host_config)
        return None if hosts is None else hosts * config.get("containers_per_host", 1)

    def _delete_container(self, resource: Resource) -> None:
        host = Server.from_dict(resource.data["host"], deployment=self.deployment)
        try:
            run_script(host.ssh, DELETE, [resource.name, resource.data.get("state", "")],
                       timeout=120)
        finally:
            host.close()

    def _release_network(self, resource: Resource) -> None:
        host = Server.from_dict(resource.data["host"], deployment=self.deployment)
        try:
            # the holder that acquired it: a deployment's providers each hold their own
            HostNetwork(host, ipaddress.IPv4Network(resource.data["network"])).release(
                self.holder)
        finally:
            host.close()


def stop_container(host: Server, name: str, timeout: int = 60) -> None:
    """Stop a container cleanly (its services shut down), waiting at most `timeout`."""
    host.ssh.run(f"lxc-stop -n {shlex.quote(name)} -t {timeout} || "
                 f"lxc-info -n {shlex.quote(name)} -s | grep -q STOPPED", timeout=timeout + 30)


def host_network(start: ipaddress.IPv4Network, index: int) -> ipaddress.IPv4Network:
    """Host `index`'s network: the index-th network of start's size, counting from start."""
    first = int(start.network_address) + index * start.num_addresses
    return ipaddress.IPv4Network((first, start.prefixlen))


def _check_local_network(network: ipaddress.IPv4Network, where: str) -> None:
    """At validation time, refuse a network that clashes with this machine's routes."""
    try:
        listed = subprocess.run(["ip", "-j", "-4", "route", "show", "table", "all"],
                                capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return
    clash = overlapping_route(json.loads(listed.stdout or "[]"), network, bridge_name(network))
    if clash:
        raise ConfigError(where, f"{network} overlaps {clash} on this machine")


def _port_open(address: str, port: int = 22) -> bool:
    try:
        with socket.create_connection((address, port), timeout=0.5):
            return True
    except OSError:
        return False


def _describe_host(host: Host) -> str:
    return f"LXC host {host.server.user}@{host.server.host}"
