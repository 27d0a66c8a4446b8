"""LxcProvider: LXC containers as servers, overlay clones of a cached Debian base image.

Hosts come from a nested `host_provider` and are driven through `server.ssh.run` (directly for
`localhost`). Each host gets its slice of `start_lxc_network` (host i: the i-th network of that
size), served by the shared, reference-counted bridge/dnsmasq/apt proxy of `benchbed.hostnet`.
With several hosts, the slices are routed to each other (`benchbed.hostnet.routes`: static
routes or VXLAN, `routing`), and containers on a network this machine is not on are reached
by an SSH jump through their host.
Every container is in the ledger before `lxc-copy` runs; host-side scripts hold a per-container
lock, so a destroy that races a killed `create` waits for its half-done clone and removes it.
An `image` that is a snapshot (`benchbed image save`) is cloned from its base image with the
snapshot's layers stacked under the clone's own; `save_images` makes such snapshots, each in
the ledger until it is complete, so a destroy after a killed save removes the half-made one.
"""

import ipaddress
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from benchbed import hostcheck, hostnet, plugin, sizes
from benchbed.errors import BenchbedError, ConfigError, InputError, SSHError
from benchbed.hostnet import PROXY_PATTERN, HostNetwork, bridge_name
from benchbed.hostnet.bridge import static_capacity
from benchbed.hostnet.routes import (
    ROUTINGS,
    HostRoutes,
    RoutingPlan,
    Slice,
    deployment_slices,
    on_link_here,
    supernet,
)
from benchbed.images.lxc import (
    DEFAULT_RELEASE,
    RELEASES,
    LxcImageStore,
    check_name,
    copy_image,
    resolve_image,
    source_of,
)
from benchbed.keys import deployment_key
from benchbed.ledger import CREATED, Resource
from benchbed.networks import Claim, parse_ipv4_network, range_refusal
from benchbed.parallel import run_parallel
from benchbed.plugin import PROVIDERS, ResourceKind, join_path
from benchbed.providers.base import ServerProvider
from benchbed.providers.existing_servers import LOCALHOST_SERVERS
from benchbed.retry import wait_for
from benchbed.server import Server, run_script, warm_up_ssh
from benchbed.settings import PluginConfig, setting

# start_lxc_network when the config gives none (LxcEngine's default too)
DEFAULT_NETWORK = "10.254.100.0/24"
# an upstream apt proxy: host and port only (acng's `Proxy:` takes nothing else)
HOST_TIMEOUT = 20
READY_TIMEOUT = 90
# Removing a container's overlay is one unlink per file it wrote, and on ext4 mounted with
# `discard` each unlink waits for the device: minutes for a container with a cloud's
# services installed, while other work loads the cores.
DELETE_TIMEOUT = 900


@dataclass(frozen=True, kw_only=True)
class LxcProviderConfig(PluginConfig):
    host_provider: dict[str, Any] = setting(
        "The provider of the hosts the containers run on (ExistingServers; a host named "
        "`localhost` is this machine).")
    distribution: Literal["debian"] = setting("The containers' distribution (Debian only).",
                                              "debian")
    release: str = setting("The Debian release of the base image the containers are "
                           "cloned from.", DEFAULT_RELEASE, enum=list(RELEASES))
    containers_per_host: int = setting("How many containers each host runs at most.", 1,
                                       minimum=1, maximum=250)
    container_name_prefix: str = setting("The first part of the containers' names.",
                                         "benchbed", pattern="^[a-z][a-z0-9-]{0,23}$")
    start_lxc_network: str = setting(
        "The IPv4 network (CIDR) of the first host's bridge; host i gets the i-th network of "
        "the same size after it. Containers take the lower half of its addresses.",
        DEFAULT_NETWORK)
    routing: str = setting(
        "How several hosts forward between their slices: `static` routes over the hosts' own "
        "network, or `vxlan` for networks that drop forwarded packets (nothing with one host).",
        "static", enum=list(ROUTINGS))
    apt_upstream_proxy: str | None = setting(
        "The HTTP proxy (http://host:port) the first host's apt proxy fetches Debian's "
        "packages through, for hosts without a way out of their own; the other hosts' apt "
        "proxies fetch through the first host's (routed), so the hosts share one upstream "
        "cache. When absent, the first host fetches directly.", None,
        pattern=PROXY_PATTERN)
    forward_ssh: bool = setting("The older tool's port forwarding to the containers: only "
                                "false is accepted (they are reached on their host's "
                                "bridge).", False)

    def host_network(self, index: int) -> ipaddress.IPv4Network:
        """Host `index`'s slice of start_lxc_network."""
        return host_network(ipaddress.IPv4Network(self.start_lxc_network), index)

    def supernet(self, hosts: int) -> ipaddress.IPv4Network:
        """The network that holds the slices of `hosts` hosts: the containers' one route."""
        return supernet([self.host_network(index) for index in range(hosts)])

    def host_credentials(self) -> list[dict[str, Any]]:
        """The hosts' SSH credentials when host_provider lists them (ExistingServers), so
        that they are known before anything exists; else none."""
        credentials = self.host_provider.get("credentials", [])
        return credentials if isinstance(credentials, list) else []

    def local_host_indexes(self) -> list[int]:
        """The indexes of the hosts that are this machine."""
        return [index for index, credential in enumerate(self.host_credentials())
                if isinstance(credential, dict) and credential.get("host") == "localhost"]


@dataclass
class Host:
    """An LXC host with its network and the base image clones come from."""

    server: Server
    network: HostNetwork
    image: str
    release: str | None  # set when the image is a base image benchbed builds on demand
    layer_on: str | None = None  # the snapshot stacked under the clones, if `image` is one
    routes: HostRoutes | None = None  # to the other hosts' slices, when there are others


class LxcProvider(ServerProvider[LxcProviderConfig]):
    """LXC containers (overlay clones of a Debian base image) on hosts from a nested provider.

    Provider extension (not portable, as libcloud's `ex_` names): `create_servers` takes
    `ex_layer_on`, a stopped container whose files the clones stack on.
    """

    EXAMPLE = {"type": "LxcProvider", "host_provider": LOCALHOST_SERVERS}

    Config = LxcProviderConfig
    UNSUPPORTED_KEYS = {"tunnel_to": "the older tool's IPIP tunnel between hosts (this kernel "
                                      "has no IPIP): several hosts are routed to each other "
                                      "by `routing: static` or `routing: vxlan` (remove the "
                                      "key)"}
    NESTED = {"host_provider": PROVIDERS}

    @classmethod
    def validate_config(cls, config: LxcProviderConfig, path: str, *,
                        has_parent: bool = False) -> None:
        if config.forward_ssh:
            raise ConfigError(join_path(path, "forward_ssh"), "is not supported: it forwards "
                              "ports with NAT, which benchbed never sets up; containers are "
                              "reached on their host's bridge network (remove the key or set "
                              "it to false)")
        where = join_path(path, "start_lxc_network")
        network = parse_ipv4_network(config.start_lxc_network, where)
        per_host = config.containers_per_host
        if static_capacity(network) < per_host:
            raise ConfigError(where, f"{network} has room for {static_capacity(network)} "
                              f"container(s) (the lower half of its addresses), "
                              f"containers_per_host is {per_host}")
        # host 0's is start_lxc_network itself, checked when the hosts are not listed too
        credentials = config.host_credentials()
        for index in range(max(len(credentials), 1)):
            subnet = host_network(network, index)
            refusal = range_refusal(subnet)
            if refusal:
                raise ConfigError(where, f"host {index} would get {subnet}, which {refusal}")
        if len(credentials) > 1:
            covering = config.supernet(len(credentials))
            refusal = range_refusal(covering)
            if refusal:
                raise ConfigError(where, f"the hosts' slices are routed as {covering}, which "
                                  f"{refusal}")
            for index, credential in enumerate(credentials):
                if not _is_ipv4(credential.get("host") if isinstance(credential, dict) else None):
                    raise ConfigError(join_path(path, f"host_provider.credentials[{index}]"
                                                      f".host"), "with several LXC hosts, each "
                                      "is given by its IPv4 address: the other hosts route "
                                      "its containers' network to it")

    @classmethod
    def local_networks(cls, config: LxcProviderConfig, path: str) -> Iterator[Claim]:
        """Host i's slice of start_lxc_network, for the hosts that are this machine."""
        for index in config.local_host_indexes():
            subnet = config.host_network(index)
            yield Claim(join_path(path, f"start_lxc_network (host {index}: localhost)"),
                        subnet, shared=True, bridge=bridge_name(subnet))

    @classmethod
    def routed_slices(cls, config: LxcProviderConfig, path: str) -> Iterator[Slice]:
        """Host i's slice of start_lxc_network on host i, for the hosts that are listed."""
        for index, credential in enumerate(config.host_credentials()):
            if isinstance(credential, dict):
                yield Slice(str(credential.get("host")), config.host_network(index),
                            config.routing, path, f"host_provider.credentials[{index}].host")

    @classmethod
    def host_requirements(cls, config: LxcProviderConfig | None) -> list[hostcheck.HostCheck]:
        """This machine's needs when it is one of the LXC hosts (always, without a config)."""
        local_networks: list[ipaddress.IPv4Network | None] = [None] if config is None else [
            config.host_network(index) for index in config.local_host_indexes()]
        if not local_networks:
            return []
        checks = [hostcheck.command(tool, "lxc") for tool in
                  ("lxc-create", "lxc-copy", "lxc-start", "lxc-attach", "lxc-config")]
        checks += [hostcheck.command("debootstrap", "debootstrap"),
                   hostcheck.readable_file("/usr/share/lxc/templates/lxc-debian",
                                           f"{hostcheck.INSTALL} lxc-templates"),
                   hostcheck.command("ssh-keygen", "openssh-client"),
                   hostcheck.filesystem("overlay"),
                   hostcheck.kernel("control groups", "/sys/fs/cgroup/cgroup.controllers"
                                    if _cgroup2() else "/sys/fs/cgroup/memory",
                                    "mount the cgroup filesystems (LXC limits use them)")]
        for network in local_networks:
            checks += hostnet.host_requirements(network, "start_lxc_network")
        return checks

    @classmethod
    def capacity(cls, config: LxcProviderConfig) -> int | None:
        host_class = plugin.get(PROVIDERS, config.host_provider["type"])
        if not issubclass(host_class, ServerProvider):
            return None
        hosts = host_class.capacity(host_class.parse_config(config.host_provider))
        return None if hosts is None else hosts * config.containers_per_host

    def default_amount(self) -> int:
        return (self.config.containers_per_host
                * self.nest("host_provider", ServerProvider).default_amount())

    def create_servers(self, image_uuid: str | None = None, type_id: str | None = None,
                       amount: int = 1, *, ex_layer_on: str | None = None) -> list[Server]:
        """Containers cloned from the image.

        `ex_layer_on` (a provider extension): a stopped container made from that image on
        the first host; the clones are stacked on its files instead."""
        limits = sizes.lookup(type_id) if type_id is not None else (0, 0)
        if amount < 1:
            raise InputError(f"LxcProvider: amount must be at least 1, not {amount}")
        per_host = self.config.containers_per_host
        host_provider = self.nest("host_provider", ServerProvider)
        servers = host_provider.create_servers(amount=host_provider.default_amount())
        if amount > len(servers) * per_host:
            raise InputError(f"LxcProvider: {len(servers)} host(s) x containers_per_host "
                             f"{per_host} hold {len(servers) * per_host} "
                             f"container(s); {amount} requested")
        servers = servers[:-(-amount // per_host)]
        image, release = resolve_image(image_uuid, self.config.release)
        first = HostNetwork(servers[0], self.config.host_network(0),
                            self.config.apt_upstream_proxy or "")
        hosts = [Host(server, first if index == 0 else HostNetwork(
                          server, self.config.host_network(index), first.apt_proxy),
                      image, release)
                 for index, server in enumerate(servers)]
        # this provider's hosts as they came, and every other slice of the deployment
        plan = RoutingPlan.of([
            *(Slice(host.server.host, host.network.network, self.config.routing, self.path,
                    "host_provider") for host in hosts),
            *deployment_slices(self.deployment.config)])
        if plan is not None:
            for host in hosts:
                if not _is_ipv4(host.server.host):
                    raise InputError(f"{_describe_host(host)}: with LXC hosts on several "
                                     f"machines, each is given by its IPv4 address (routes "
                                     f"point to it)")
                host.routes = HostRoutes(host.server, plan.supernet, plan.routing,
                                         plan.peers(host.server.host))
        run_parallel("checking LXC hosts", hosts, self._check_host, describe=_describe_host)
        source = source_of(image, release, [host.server for host in hosts], self.deployment)
        run_parallel("streaming LXC images", hosts,
                     lambda host: copy_image(image, source, host.server, self.deployment),
                     describe=_describe_host)
        if release is None:
            marker = LxcImageStore(hosts[0].server).describe(image) or {}
            if marker.get("kind") == "snapshot":
                for host in hosts:
                    host.image, host.layer_on = marker["base"], image
        run_parallel("preparing LXC hosts", hosts, self._prepare_host, describe=_describe_host)
        _, public_key = deployment_key(self.deployment)
        offset = len(self.ledger.resources("container"))
        tag = self.tag
        prefix = self.config.container_name_prefix
        slots = [(f"{prefix}-{tag}-{offset + index}", hosts[index // per_host])
                 for index in range(amount)]
        warm_up_ssh()
        return run_parallel("creating LXC containers", slots,
                            lambda slot: self._create_container(*slot, limits, public_key,
                                                                ex_layer_on),
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

    def _prepare_host(self, host: Host) -> None:
        with self.ledger.creating("hostnet", f"{host.network.bridge}@{host.server.host}",
                                  host=host.server.to_dict(),
                                  network=str(host.network.network)), \
                self.deployment.step("acquire network", host.network.bridge):
            host.network.acquire(self.holder)
        if host.routes is not None:
            routes = host.routes
            with self.ledger.creating("routes", f"{routes.name}@{host.server.host}",
                                      host=host.server.to_dict(), network=str(routes.network),
                                      routing=routes.routing), \
                    self.deployment.step("acquire routes",
                                         f"{routes.network} ({routes.routing})"):
                routes.acquire(self.holder)

    def _create_container(self, name: str, host: Host, limits: tuple[int, int],
                          public_key: str, layer_on: str | None) -> Server:
        network = host.network
        first, last = network.static_range
        if layer_on and host.layer_on:
            raise InputError(f"LxcProvider: image '{host.layer_on}' is a snapshot; its "
                             f"clones cannot also be layered on '{layer_on}'")
        layer_on = layer_on or host.layer_on
        args = [name, host.image, network.bridge, network.apt_proxy, str(limits[0]),
                str(limits[1]), public_key, network.state_dir, str(first), str(last),
                str(network.network.prefixlen), layer_on or ""]
        if host.routes is not None:
            args += [str(host.routes.network), network.gateway,
                     host.routes.name if host.routes.routing == "vxlan" else ""]
        with self.ledger.creating("container", name, host=host.server.to_dict(),
                                  image=host.image, state=network.state_dir) as resource:
            with self.deployment.step("create container", name, lane=name):
                result = run_script(host.server.ssh, "lxc/create-container.sh", args,
                                    timeout=READY_TIMEOUT)
            address = result.stdout.strip().splitlines()[-1]
            resource.data.update(address=address, ssh_address=f"{address}:22")
        key_path, _ = deployment_key(self.deployment)
        direct = host.server.is_local or on_link_here(address)
        server = Server(host=address, user="root", key=str(key_path), name=name,
                        jump=None if direct else host.server.to_dict(),
                        deployment=self.deployment)
        with self.deployment.step("wait for SSH", f"{name} {address}", lane=name):
            if direct:
                wait_for(lambda: _port_open(address), timeout=READY_TIMEOUT,
                         what=f"SSH on {name} ({address})", interval=0.02, max_interval=0.02)
            server.ssh.wait_ready(timeout=READY_TIMEOUT)
        return server

    def _delete_container(self, resource: Resource) -> None:
        host = Server.from_dict(resource.data["host"], deployment=self.deployment)
        try:
            run_script(host.ssh, "lxc/delete-container.sh",
                       [resource.name, resource.data.get("state", "")], timeout=DELETE_TIMEOUT)
        finally:
            host.close()

    def save_images(self, name: str, origin: dict[str, Any]) -> list[dict[str, Any]]:
        """Snapshot every container (`name`, or `name-0`, `name-1`, ... for several)."""
        containers = [row for row in reversed(self.ledger.resources("container"))
                      if row.state == CREATED]
        names = [name] if len(containers) == 1 else \
            [f"{name}-{index}" for index in range(len(containers))]
        for image in names:
            check_name(image)
        return run_parallel("saving LXC images", list(zip(names, containers, strict=True)),
                            lambda pair: self._save_image(*pair, origin),
                            describe=lambda pair: pair[0])

    def _save_image(self, name: str, container: Resource, origin: dict[str, Any]
                    ) -> dict[str, Any]:
        host = Server.from_dict(container.data["host"], deployment=self.deployment)
        store = LxcImageStore(host)
        resource = self.ledger.record("image", name, host=container.data["host"])
        try:
            with self.deployment.step("save image", f"{container.name} as {name}",
                                      lane=container.name):
                marker = store.save(name, container.name, {"origin": {
                    **origin, "provider": self.path or "(root)", "container": container.name}})
        except BaseException:
            self._discard_image(resource)
            self.ledger.forget(resource)
            raise
        finally:
            host.close()
        self.ledger.forget(resource)
        return marker

    def _discard_image(self, resource: Resource) -> None:
        host = Server.from_dict(resource.data["host"], deployment=self.deployment)
        try:
            LxcImageStore(host).discard(resource.name)
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

    def _release_routes(self, resource: Resource) -> None:
        host = Server.from_dict(resource.data["host"], deployment=self.deployment)
        try:
            HostRoutes(host, ipaddress.IPv4Network(resource.data["network"]),
                       resource.data["routing"]).release(self.holder)
        finally:
            host.close()

    RESOURCES = {
        "hostnet": ResourceKind(delete=_release_network),
        "routes": ResourceKind(delete=_release_routes),
        "container": ResourceKind(delete=_delete_container, requires=("hostnet", "routes")),
        # a snapshot being saved; once complete it belongs to the image store, not to us
        "image": ResourceKind(delete=_discard_image),
    }


def _cgroup2() -> bool:
    return Path("/sys/fs/cgroup/cgroup.controllers").exists()


def stop_container(host: Server, name: str, timeout: int = 60) -> None:
    """Stop a container cleanly (its services shut down), waiting at most `timeout`."""
    stopped = host.ssh.run(["lxc-stop", "-n", name, "-t", str(timeout)], check=False,
                           timeout=timeout + 30)
    if stopped.exit_code != 0:
        state = host.ssh.run(["lxc-info", "-n", name, "-s"], timeout=30).stdout
        if "STOPPED" not in state:
            raise BenchbedError(f"container {name} did not stop: {stopped.stderr.strip()}")


def host_network(start: ipaddress.IPv4Network, index: int) -> ipaddress.IPv4Network:
    """Host `index`'s network: the index-th network of start's size, counting from start."""
    first = int(start.network_address) + index * start.num_addresses
    return ipaddress.IPv4Network((first, start.prefixlen))


def _is_ipv4(host: object) -> bool:
    try:
        ipaddress.IPv4Address(str(host))
    except ValueError:
        return False
    return True


def _port_open(address: str, port: int = 22) -> bool:
    try:
        with socket.create_connection((address, port), timeout=0.5):
            return True
    except OSError:
        return False


def _describe_host(host: Host) -> str:
    return f"LXC host {host.server.user}@{host.server.host}"
