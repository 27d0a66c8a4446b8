"""The server provider contract: Provider(deployment, config), create_servers, destroy_servers."""

import hashlib
import ipaddress
import re
from abc import abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from benchbed import plugin, sizes
from benchbed.errors import ConfigError, InputError
from benchbed.ports import PeerPort, to_data
from benchbed.server import Server
from benchbed.settings import PluginConfig

if TYPE_CHECKING:
    from benchbed.deployment import Deployment
    from benchbed.ledger import Resource
    from benchbed.networks import Claim

ConfigT = TypeVar("ConfigT", bound=PluginConfig)


@dataclass(frozen=True)
class Capabilities:
    """What engines may rely on, so that none of them asks which class its provider is.

    `outlives_deployment`: the servers exist before and after it (engines undo what they
    install); `shares_host`: the servers share this machine's filesystem (engines must not
    install packages on them); `chooses_image`/`chooses_size`: create_servers honours
    image_uuid/type_id.
    """

    outlives_deployment: bool = False
    shares_host: bool = False
    chooses_image: bool = True
    chooses_size: bool = True


def check_ssh_cidr(ssh_cidr: str | None, path: str) -> None:
    """A cloud provider's `ssh_cidr` (where SSH is let in from; None: not given) must be a
    network in CIDR form; `path` is the provider's config path."""
    if ssh_cidr is not None:
        try:
            ipaddress.ip_network(ssh_cidr, strict=True)
        except ValueError as error:
            raise ConfigError(plugin.join_path(path, "ssh_cidr"),
                              f"not a network in CIDR form: {error}") from None


@dataclass
class Stray:
    """A cloud resource with benchbed's tags that no live deployment of this database owns."""

    kind: str
    id: str
    deployment: str
    reason: str


@dataclass
class Sweep:
    """What `benchbed gc` found: the strays, and how many tagged resources it left alone."""

    strays: list[Stray] = field(default_factory=list)
    # recorded in another benchbed database and not expired: whether they live is unknowable
    elsewhere: int = 0


class ServerProvider(plugin.Plugin[ConfigT]):
    """Gives engines servers, whatever the technology behind them.

    Subclasses record every resource in `self.ledger` before creating it and declare its
    kind in RESOURCES; `destroy_servers` then removes everything from the ledger alone,
    even after a crash, and then the providers nested in this one.
    """

    CAPABILITIES: ClassVar[Capabilities] = Capabilities()

    def __init__(self, deployment: "Deployment", config: dict[str, Any],
                 path: str = "provider") -> None:
        super().__init__(deployment, config, path)
        # The ports the deployment's other servers reach these servers on (Engine.peer_ports,
        # gathered by a parent with several servers; empty for a lone server). A provider
        # whose servers sit behind a cloud's firewall opens them to the deployment's own
        # servers only; the others need do nothing.
        self.open_to_peers: frozenset[PeerPort] = frozenset()

    @classmethod
    def capabilities(cls, config: ConfigT) -> Capabilities:
        return cls.CAPABILITIES

    def shared_peer_group(self, kind: str, shared: str, data: dict[str, Any],
                          create: Callable[["Resource"], None],
                          allow: Callable[[str, list[PeerPort]], None]) -> str:
        """The id of the cloud security group that lets the deployment's servers reach each
        other on `open_to_peers`, shared by its providers in one network (`shared` names it
        there): each records a row of `kind` under that name (with `data`, its
        `group_name` among them, and the ports) before any group or rule exists; the first
        creates the group (`create(row)` sets `row.data["group_id"]`, recording it once
        known), the others adopt it, and each adds the rules (`allow`) for the ports no
        other holder opened yet. The last holder's delete removes it (Ledger.last_holder)."""
        own = [r for r in self.ledger.resources(kind) if r.state == "created"]
        if own:
            return str(own[0].data["group_id"])
        ports = to_data(self.open_to_peers)
        with self.ledger.sharing(kind, shared) as holders:
            held = [r for r in holders if r.state == "created"]
            with self.ledger.creating(kind, shared, **data, ports=ports) as row, \
                    self.deployment.step("open ports between the deployment's servers",
                                         f"{data['group_name']}: {', '.join(ports)}"):
                if held:
                    row.data["group_id"] = held[0].data["group_id"]
                else:
                    create(row)
                self.ledger.update(row)
                opened = {port for r in held for port in r.data["ports"]}
                missing = [port for port in self.open_to_peers if str(port) not in opened]
                if missing:
                    allow(row.data["group_id"], missing)
        return str(row.data["group_id"])

    @classmethod
    def capacity(cls, config: ConfigT) -> int | None:
        """The most servers this config can give, if known before anything exists."""
        return None

    @classmethod
    def local_networks(cls, config: ConfigT, path: str) -> Iterator["Claim"]:
        """The networks this config makes on this machine (benchbed.networks checks them)."""
        return iter(())

    @classmethod
    def validate_request(cls, config: ConfigT, image: str | None, size: str | None,
                         path: str) -> None:
        """Refuse at validation what create_servers would refuse: nothing is created then.

        By default sizes are benchbed's named sizes; a cloud provider overrides this to pass
        its own flavor names through to the cloud.
        """
        capabilities = cls.capabilities(config)
        if image is not None and not capabilities.chooses_image:
            raise ConfigError(plugin.join_path(path, "image"),
                              f"{cls.__name__} cannot choose an image")
        if size is not None:
            if not capabilities.chooses_size:
                raise ConfigError(plugin.join_path(path, "flavor"),
                                  f"{cls.__name__} cannot choose a size")
            try:
                sizes.lookup(size)
            except InputError as error:
                raise ConfigError(plugin.join_path(path, "flavor"), str(error)) from None

    @classmethod
    def validate_ssh(cls, config: ConfigT, path: str) -> None:
        """The engine will log in over SSH: refuse a config under which it cannot."""

    @classmethod
    def find_strays(cls, config: ConfigT, live: Callable[[], set[str]]) -> Sweep:
        """For `benchbed gc`: resources this provider tagged whose deployment is not among
        `live()` (uuids of this database's deployments) or whose expiry has passed.

        `live` is read after the cloud is listed: a deployment's row exists before anything
        of it is created, so a resource made meanwhile is never taken for an orphan."""
        raise InputError(f"{cls.__name__} tags no cloud resources: gc has nothing to look for")

    @classmethod
    def delete_strays(cls, config: ConfigT, strays: list[Stray]) -> None:
        raise InputError(f"{cls.__name__} tags no cloud resources: gc has nothing to delete")

    def default_amount(self) -> int:
        """How many servers to create when the engine does not say."""
        return 1

    @abstractmethod
    def create_servers(self, image_uuid: str | None = None, type_id: str | None = None,
                       amount: int = 1) -> list[Server]:
        """Create `amount` servers of image `image_uuid` and size `type_id` (None: the
        provider's default), each recorded in the ledger before it exists."""

    def destroy_servers(self) -> None:
        """The specification's name for `teardown`: remove every server and what they need."""
        self.teardown()

    def save_images(self, name: str, origin: dict[str, Any]) -> list[dict[str, Any]]:
        """Turn this provider's servers into images of its own that servers can start from
        (`benchbed image save`); returns their descriptions. A provider that cannot has
        nothing to save."""
        return []

    @property
    def tag(self) -> str:
        """Eight hex digits that make this provider's names unique on a host.

        The root provider uses the deployment uuid's first digits; a provider elsewhere in
        the tree (a node's) mixes its path in, so providers of one deployment never clash.
        """
        if self.path == "provider":
            return self.deployment.uuid.replace("-", "")[:8]
        return hashlib.sha256(f"{self.deployment.uuid}/{self.path}".encode()).hexdigest()[:8]

    @property
    def holder(self) -> str:
        """Who holds a shared host resource (a bridge): this plugin of this deployment.

        Two providers of one deployment (a MultihostEngine's controller and node) may share
        a network; each holds its own reference, so the first to go does not take it away.
        """
        return f"{self.deployment.uuid}_{re.sub(r'[^A-Za-z0-9._-]', '_', self.path)}"

    def server(self, data: dict[str, Any]) -> Server:
        return Server.from_dict(data, deployment=self.deployment)
