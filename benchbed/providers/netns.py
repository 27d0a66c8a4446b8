"""NetnsProvider: SSH test hosts on this machine, each an sshd in its own network namespace.

The hosts share this machine's filesystem, so they suit tests and local experiments of
the engines, not isolation. Needs root and OpenSSH's sshd.
"""

import ipaddress
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from benchbed import hostcheck, local, private_files
from benchbed.errors import ConfigError, InputError
from benchbed.keys import deployment_key
from benchbed.ledger import Resource
from benchbed.networks import Claim, guest_network
from benchbed.parallel import run_parallel
from benchbed.plugin import ResourceKind, join_path
from benchbed.providers.base import Capabilities, ServerProvider
from benchbed.server import Server
from benchbed.settings import PluginConfig, setting

SSHD = "/usr/sbin/sshd"
# The sshd runs as root on this machine's filesystem: keys only, never a password (root's or
# any account's), so that the hosts give no way in that this machine does not give already.
SSHD_CONFIG = """\
ListenAddress {address}
Port 22
HostKey {host_key}
PidFile {pid_file}
AuthorizedKeysFile {authorized_keys}
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
UsePAM no
StrictModes no
Subsystem sftp internal-sftp
"""


@dataclass(frozen=True, kw_only=True)
class NetnsProviderConfig(PluginConfig):
    network: str = setting("The IPv4 network (CIDR) of the hosts; its first address is the "
                           "bridge's, one host takes each next one.")
    amount: int = setting("How many hosts to make when the engine does not say.", 1,
                          minimum=1, maximum=200)

    @property
    def ipv4_network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.network)


class NetnsProvider(ServerProvider[NetnsProviderConfig]):
    """sshd in network namespaces on a bridge of its own (test hosts, root only)."""

    EXAMPLE = {"type": "NetnsProvider", "network": "10.254.150.0/29"}

    Config = NetnsProviderConfig
    CAPABILITIES = Capabilities(shares_host=True, chooses_image=False, chooses_size=False)

    @classmethod
    def validate_config(cls, config: NetnsProviderConfig, path: str, *,
                        has_parent: bool = False) -> None:
        network = guest_network(config.network, join_path(path, "network"), smallest=30)
        room = cls.capacity(config)
        if config.amount > room:
            raise ConfigError(join_path(path, "amount"), f"{network} has room for {room} "
                              f"host(s) (one address is the bridge's); {config.amount} "
                              f"requested")

    @classmethod
    def local_networks(cls, config: NetnsProviderConfig, path: str) -> Iterator[Claim]:
        yield Claim(join_path(path, "network"), config.ipv4_network, shared=False)

    @classmethod
    def host_requirements(cls, config: NetnsProviderConfig | None
                          ) -> list[hostcheck.HostCheck]:
        checks = [hostcheck.root(),
                  hostcheck.command("ip", "iproute2"),
                  hostcheck.command(SSHD, "openssh-server"),
                  hostcheck.command("ssh-keygen", "openssh-client"),
                  hostcheck.kernel("network namespaces", "/proc/self/ns/net",
                                   "use a kernel built with network namespaces (CONFIG_NET_NS)")]
        if config is not None:
            checks.append(hostcheck.free_network(config.network, "network"))
        return checks

    @classmethod
    def capacity(cls, config: NetnsProviderConfig) -> int:
        """Every address of the network but the bridge's (and network and broadcast)."""
        return max(config.ipv4_network.num_addresses - 3, 0)

    def default_amount(self) -> int:
        return self.config.amount

    @property
    def _network(self) -> ipaddress.IPv4Network:
        return self.config.ipv4_network

    def create_servers(self, image_uuid: str | None = None, type_id: str | None = None,
                       amount: int = 1) -> list[Server]:
        if image_uuid or type_id:
            raise InputError("NetnsProvider hosts share this machine: no image or type to pick")
        room = self.capacity(self.config)
        if amount < 1 or amount > room:
            raise InputError(f"NetnsProvider: {self._network} has room for {room} "
                             f"host(s); {amount} requested")
        # the bridge's address, then one per host: counted, never listed (a /8 has millions)
        first = self._network.network_address + 1
        if os.geteuid() != 0:
            raise InputError("NetnsProvider needs root (network namespaces and a bridge)")
        base = self.deployment.directory / "netns"
        if any(character in str(base) for character in "\n\r"):
            raise InputError(f"NetnsProvider: sshd cannot read a path with a line break "
                             f"({str(base)!r}): choose a BENCHBED_HOME without one")
        key_path, public_key = deployment_key(self.deployment)
        bridge = f"bbn-{self.tag}"
        prefix = self._network.prefixlen
        with self.ledger.creating("bridge", bridge), self.deployment.step("create bridge", bridge):
            local.run(["ip", "link", "add", "name", bridge, "type", "bridge"])
            local.run(["ip", "addr", "add", f"{first}/{prefix}", "dev", bridge])
            local.run(["ip", "link", "set", bridge, "up"])
        slots = [(index, str(first + index + 1)) for index in range(amount)]

        def create_host(slot: tuple[int, str]) -> Server:
            index, address = slot
            namespace = f"bb-{self.tag}-{index}"
            directory = base / namespace
            with self.ledger.creating("netns", namespace, address=address,
                                      ssh_address=f"{address}:22",
                                      veth=f"bbv{self.tag}{index}",
                                      directory=str(directory)) as resource, \
                    self.deployment.step("create netns host", f"{namespace} {address}",
                                         lane=namespace):
                self._start_host(resource, bridge, prefix, public_key)
            return Server(host=address, user="root", key=str(key_path), name=namespace,
                          deployment=self.deployment)

        return run_parallel("creating netns hosts", slots, create_host,
                            describe=lambda slot: slot[1])

    def _start_host(self, resource: Resource, bridge: str, prefix: int,
                    public_key: str) -> None:
        namespace, data = resource.name, resource.data
        directory = Path(data["directory"])
        private_files.make_private_folder(directory)
        local.run(["ip", "netns", "add", namespace])
        local.run(["ip", "link", "add", data["veth"], "type", "veth", "peer", "name", "eth0",
                   "netns", namespace])
        local.run(["ip", "link", "set", data["veth"], "master", bridge, "up"])
        local.run(["ip", "-n", namespace, "addr", "add", f"{data['address']}/{prefix}",
                   "dev", "eth0"])
        local.run(["ip", "-n", namespace, "link", "set", "eth0", "up"])
        local.run(["ip", "-n", namespace, "link", "set", "lo", "up"])
        host_key = directory / "ssh_host_ed25519_key"
        if not host_key.exists():
            local.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)])
        private_files.write(directory / "authorized_keys", public_key + "\n")
        config = directory / "sshd_config"
        private_files.write(config, sshd_config(data["address"], directory))
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        local.run(["ip", "netns", "exec", namespace, SSHD, "-f", str(config),
                   "-E", str(directory / "sshd.log")])

    def _delete_netns(self, resource: Resource) -> None:
        directory = Path(resource.data["directory"])
        # Gone at once with its peer; left to the namespace, the kernel would remove it
        # only once the killed sshd has finished exiting.
        _delete_link(resource.data["veth"])
        _stop_processes(resource.name)
        result = local.run(["ip", "netns", "delete", resource.name], check=False)
        if result.returncode != 0 and "No such file" not in result.stderr:
            local.run(["ip", "netns", "delete", resource.name])
        shutil.rmtree(directory, ignore_errors=True)

    def _netns_exists(self, resource: Resource) -> bool:
        return Path("/run/netns", resource.name).exists()

    def _delete_bridge(self, resource: Resource) -> None:
        _delete_link(resource.name)

    RESOURCES = {
        "bridge": ResourceKind(delete=_delete_bridge),
        "netns": ResourceKind(delete=_delete_netns, exists=_netns_exists,
                              requires=("bridge",)),
    }


def sshd_config(address: str, directory: Path) -> str:
    """The host's sshd_config: the one place paths reach sshd's own syntax.

    sshd splits arguments at blanks and expands `%` tokens in AuthorizedKeysFile. Every path
    (absolute, as everything under `paths.home()`: sshd daemonizes into `/`) is double-quoted
    with backslash and quote escaped and, where tokens apply, its `%` doubled. A line break
    cannot be quoted: `create_servers` refuses such a home before it creates anything.
    """
    def quoted(path: Path, tokens: bool = False) -> str:
        text = str(path).replace("\\", "\\\\").replace('"', '\\"')
        return '"' + (text.replace("%", "%%") if tokens else text) + '"'

    return SSHD_CONFIG.format(address=address,
                              host_key=quoted(directory / "ssh_host_ed25519_key"),
                              pid_file=quoted(directory / "sshd.pid"),
                              authorized_keys=quoted(directory / "authorized_keys", tokens=True))


def _delete_link(name: str) -> None:
    """Delete a network link; one that is already gone is fine."""
    result = local.run(["ip", "link", "delete", name], check=False)
    if result.returncode != 0 and "Cannot find device" not in result.stderr:
        local.run(["ip", "link", "delete", name])


def _stop_processes(namespace: str) -> None:
    """Stop what runs in our namespace (its sshd), found by namespace, not by a name pattern."""
    listed = local.run(["ip", "netns", "pids", namespace], check=False)
    for pid in listed.stdout.split():
        try:
            os.kill(int(pid), 9)
        except ProcessLookupError:
            continue
