"""LxcProvider: LXC containers as servers, overlay clones of a cached Debian base image.

Hosts come from a nested `host_provider` and are driven through `server.ssh.run` (directly for
`localhost`). Each host gets its slice of `start_lxc_network` (host i: the i-th network of that
size), served by the shared, reference-counted bridge/dnsmasq/apt proxy of `benchbed.hostnet`.
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
from typing import Any

from benchbed import hostcheck, hostnet, plugin, sizes
from benchbed.errors import BenchbedError, ConfigError, InputError, SSHError
from benchbed.hostnet import HostNetwork, bridge_name
from benchbed.hostnet.bridge import static_capacity
from benchbed.images.lxc import DEFAULT_RELEASE, RELEASES, LxcImageStore, check_name, image_name
from benchbed.keys import deployment_key
from benchbed.ledger import CREATED, Resource
from benchbed.networks import Claim
from benchbed.parallel import run_parallel
from benchbed.plugin import PROVIDERS, ResourceKind
from benchbed.providers.base import ServerProvider
from benchbed.retry import wait_for
from benchbed.server import Server, run_script, warm_up_ssh

DEFAULT_NETWORK = "10.254.100.0/24"
HOST_TIMEOUT = 20
READY_TIMEOUT = 90
# Removing a container's overlay is one unlink per file it wrote, and on ext4 mounted with
# `discard` each unlink waits for the device: measured over 120 s for a container with
# Keystone and MariaDB installed while other work loaded both cores.
DELETE_TIMEOUT = 900

@dataclass
class Host:
    """An LXC host with its network and the base image clones come from."""

    server: Server
    network: HostNetwork
    image: str
    release: str | None  # set when the image is a base image benchbed builds on demand
    layer_on: str | None = None  # the snapshot stacked under the clones, if `image` is one


class LxcProvider(ServerProvider):
    """LXC containers (overlay clones of a Debian base image) on hosts from a nested provider."""

    UNSUPPORTED_KEYS = {"tunnel_to": "SSH tunnels to the containers are not implemented "
                                      "(remove the key)"}
    CONFIG_SCHEMA = {
        "type": "object",
        "properties": {
            "type": {"const": "LxcProvider"},
            "distribution": {"enum": ["debian"]},
            "release": {"enum": list(RELEASES)},
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
        # a snapshot being saved; once complete it belongs to the image store, not to us
        "image": ResourceKind(delete="_discard_image"),
    }

    @classmethod
    def validate_config(cls, config: dict[str, Any], path: str, *,
                        has_parent: bool = False) -> None:
        def where(key: str) -> str:
            return f"{path}.{key}".lstrip(".")

        if config.get("forward_ssh"):
            raise ConfigError(where("forward_ssh"), "is not supported: it forwards ports with "
                              "NAT, which benchbed never sets up; containers are reached on "
                              "their host's bridge network (remove the key or set it to false)")
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
        per_host = config.get("containers_per_host", 1)
        if static_capacity(network) < per_host:
            raise ConfigError(where("start_lxc_network"), f"{network} has room for "
                              f"{static_capacity(network)} container(s) (the lower half of its "
                              f"addresses), containers_per_host is {per_host}")
        for index, _ in enumerate(config["host_provider"].get("credentials", [])):
            subnet = host_network(network, index)
            if not subnet.is_private:
                raise ConfigError(where("start_lxc_network"), f"host {index} would get "
                                  f"{subnet}, which is not a private network range")

    @classmethod
    def local_networks(cls, config: dict[str, Any], path: str) -> Iterator[Claim]:
        """Host i's slice of start_lxc_network, for the hosts that are this machine."""
        start = ipaddress.IPv4Network(config.get("start_lxc_network", DEFAULT_NETWORK))
        for index, credential in enumerate(config["host_provider"].get("credentials", [])):
            if credential.get("host") == "localhost":
                subnet = host_network(start, index)
                yield Claim(f"{path}.start_lxc_network (host {index}: localhost)".lstrip("."),
                            subnet, shared=True, bridge=bridge_name(subnet))

    @classmethod
    def host_requirements(cls, config: dict[str, Any] | None) -> list[hostcheck.HostCheck]:
        """This machine's needs when it is one of the LXC hosts (always, without a config)."""
        if config is None:
            local_networks: list[ipaddress.IPv4Network | None] = [None]
        else:
            start = ipaddress.IPv4Network(config.get("start_lxc_network", DEFAULT_NETWORK))
            local_networks = [host_network(start, index) for index, credential in
                              enumerate(config["host_provider"].get("credentials", []))
                              if credential.get("host") == "localhost"]
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
            checks += hostnet.host_checks(network, "start_lxc_network")
        return checks

    @property
    def _per_host(self) -> int:
        return int(self.config.get("containers_per_host", 1))

    @property
    def _release(self) -> str:
        return self.config.get("release", DEFAULT_RELEASE)

    def default_amount(self) -> int:
        return self._per_host * self.nest("host_provider", ServerProvider).default_amount()

    def create_servers(self, image_uuid: str | None = None, type_id: str | None = None,
                       amount: int = 1, layer_on: str | None = None) -> list[Server]:
        """Containers cloned from the image; with `layer_on` (a stopped container made from
        that image on the first host), stacked on that container's files instead."""
        limits = sizes.lookup(type_id) if type_id is not None else (0, 0)
        if amount < 1:
            raise InputError(f"LxcProvider: amount must be at least 1, not {amount}")
        host_provider = self.nest("host_provider", ServerProvider)
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
        if host.release is None:
            marker = LxcImageStore(host.server).describe(host.image)
            if marker is None:
                raise InputError(f"{where}: no LXC image named '{host.image}' "
                                 f"(see: benchbed image list --provider lxc)")
            if marker.get("kind") == "snapshot":
                host.image, host.layer_on = marker["base"], host.image

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
        if layer_on and host.layer_on:
            raise InputError(f"LxcProvider: image '{host.layer_on}' is a snapshot; its "
                             f"clones cannot also be layered on '{layer_on}'")
        layer_on = layer_on or host.layer_on
        args = [name, host.image, network.bridge, network.apt_proxy, str(limits[0]),
                str(limits[1]), public_key, network.state_dir, str(first), str(last),
                str(network.network.prefixlen), layer_on or ""]
        with self.ledger.creating("container", name, host=host.server.to_dict(),
                                  image=host.image, state=network.state_dir) as resource:
            with self.deployment.step("create container", name, lane=name):
                result = run_script(host.server.ssh, "lxc/create-container.sh", args,
                                    timeout=READY_TIMEOUT)
            address = result.stdout.strip().splitlines()[-1]
            resource.data.update(address=address, ssh_address=f"{address}:22")
        key_path, _ = deployment_key(self.deployment)
        server = Server(host=address, user="root", key=str(key_path), name=name,
                        deployment=self.deployment)
        with self.deployment.step("wait for SSH", f"{name} {address}", lane=name):
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


def _port_open(address: str, port: int = 22) -> bool:
    try:
        with socket.create_connection((address, port), timeout=0.5):
            return True
    except OSError:
        return False


def _describe_host(host: Host) -> str:
    return f"LXC host {host.server.user}@{host.server.host}"
