"""The deploy engine contract from the specification: Engine(deployment), deploy(), cleanup()."""

from abc import abstractmethod
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from benchbed import plugin
from benchbed.endpoints import Endpoints, stored
from benchbed.errors import ConfigError
from benchbed.ports import PeerPort
from benchbed.scale import StartupGate
from benchbed.settings import PluginConfig, setting

if TYPE_CHECKING:
    from benchbed.deployment import Deployment
    from benchbed.providers.base import Capabilities, ServerProvider
    from benchbed.server import Server

ConfigT = TypeVar("ConfigT", bound=PluginConfig)


# The keys with which an engine asks its provider for servers (see check_server_request).
SERVER_REQUEST_PROPERTIES: dict[str, Any] = {
    "provider": {"type": "object"},
    # image and size names reach the host (LXC container names, libvirt volume names)
    "image": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"},
    "flavor": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"},
}


@dataclass(frozen=True, kw_only=True)
class ServerRequestConfig(PluginConfig):
    """The config of an engine that asks its provider for servers (SERVER_REQUEST_PROPERTIES
    as typed fields)."""

    provider: dict[str, Any] = setting("The server provider that gives this engine its "
                                       "servers (a provider config).")
    image: str | None = setting("The image the servers are made from, in the provider's "
                                "terms; the provider's default when absent.", None,
                                pattern=SERVER_REQUEST_PROPERTIES["image"]["pattern"])
    flavor: str | None = setting("The size of the servers, in the provider's terms; the "
                                 "provider's default when absent.", None,
                                 pattern=SERVER_REQUEST_PROPERTIES["flavor"]["pattern"])


@dataclass
class CheckResult:
    """One line of `deployment check`: what was tried, whether it worked, and what was seen."""

    target: str
    ok: bool
    detail: str


class Engine(plugin.Plugin[ConfigT]):
    """Deploys a distribution (or registers one) and returns its endpoints.

    `Engine(deployment)` is the root engine of the deployment's config; a MultihostEngine
    builds its controller and nodes at their own paths, and gives nodes the controller's
    endpoints as `parent_endpoints`.
    """

    # Whether deploy() may begin before the parent's endpoints exist: such an engine reads
    # `parent_endpoints` only once it needs them, and that read waits for the parent.
    STARTS_BEFORE_PARENT: ClassVar[bool] = False

    @classmethod
    def offered_services(cls, config: ConfigT) -> frozenset[str] | None:
        """The services this engine runs that nodes may join; None: it does not say."""
        return None

    @classmethod
    def joined_services(cls, config: ConfigT) -> frozenset[str]:
        """The parent's services this engine joins (a node's needs of its controller)."""
        return frozenset()

    @classmethod
    def peer_ports(cls, config: ConfigT) -> frozenset[PeerPort]:
        """The ports this engine's services listen on for the deployment's other servers (a
        node's compute on its controller's RabbitMQ). A parent with several servers
        (MultihostEngine) gathers them; cloud providers open them between the deployment's
        servers only. Answer from the config alone; nothing when the engine runs no service
        that another server reaches."""
        return frozenset()

    @classmethod
    def planned_computes(cls, config: ConfigT) -> int:
        """How many compute nodes this engine's servers will run, from the config alone: a
        parent sizes its controller's control plane for them (benchbed.scale)."""
        return 0

    @classmethod
    def clones_as_node(cls, config: ConfigT) -> bool:
        """Whether a server this engine prepared can be cloned into compute nodes as it is:
        it joins its parent's cloud as a node and keeps nothing that must be unique to one
        server. LxcEngine deploys such an engine once per host into a template container
        and clones it; it asks before the inner config is validated (the config is parsed
        from the mapping as given), so answer from the config alone, False when unsure."""
        return False

    # -- what LxcEngine asks of an engine whose clones_as_node says yes ------------------

    def hold_for_clones(self, template: "Server") -> None:
        """On the deployed template, before it stops: keep its compute services from starting
        when a clone of it boots (a clone is not itself yet then)."""
        raise NotImplementedError(f"{type(self).__name__} makes no compute node to clone")

    def start_clone(self, clone: "Server") -> list[str]:
        """Make a booted clone (its own host name, address and machine-id already) its own
        compute node and start its compute services; the compute hosts they report as."""
        raise NotImplementedError(f"{type(self).__name__} makes no compute node to clone")

    def join_computes(self, hosts: list[str]) -> None:
        """Return once each of the clones' compute hosts is up in the parent's Nova and has
        a Placement resource provider (the parent maps them into its cell: map_computes)."""
        raise NotImplementedError(f"{type(self).__name__} makes no compute node to clone")

    # -- what a MultihostEngine asks of its controller --------------------------------

    def map_computes(self, hosts: list[str]) -> None:
        """Map the nodes' compute hosts (up already) into this controller's cell, once for
        the whole deployment: discoveries at once race to map the same host."""
        raise NotImplementedError(f"{type(self).__name__} runs no Nova for nodes to join")

    def __init__(self, deployment: "Deployment", config: dict[str, Any] | None = None,
                 path: str = "") -> None:
        super().__init__(deployment, deployment.config if config is None else config, path)
        self._parent: Endpoints | Future[Endpoints] | None = None
        self._own_endpoints: Endpoints | None = None
        # what the deployment's other servers must reach this engine's servers on: set by
        # the parent that gathers its engines' peer_ports, handed to this engine's provider
        self.open_to_peers: frozenset[PeerPort] = frozenset()
        # set by a MultihostEngine: on its controller, how many compute nodes will join it;
        # on its nodes, the gate every compute start-up of the deployment goes through
        self.computes_joining = 0
        self.startup_gate: StartupGate | None = None

    @property
    def parent_endpoints(self) -> Endpoints | None:
        """The parent's endpoints; while the parent still deploys, this waits for them."""
        if isinstance(self._parent, Future):
            return self._parent.result()
        return self._parent

    @parent_endpoints.setter
    def parent_endpoints(self, endpoints: "Endpoints | Future[Endpoints] | None") -> None:
        self._parent = endpoints

    def same_parent_as(self, engine: "Engine[Any]") -> None:
        """Give this (inner) engine the parent endpoints of `engine`, known yet or not, and
        its start-up gate."""
        self._parent = engine._parent
        self.startup_gate = engine.startup_gate

    @classmethod
    def preflight(cls, config: ConfigT) -> None:
        """Ask the world what the config assumes of it, before anything is recorded (the root
        engine of `create`); raise to refuse. Most engines make what they need: nothing."""

    @abstractmethod
    def deploy(self) -> Endpoints:
        """Deploy and return the endpoints (secrets included; they are masked on display)."""

    def cleanup(self) -> None:
        """The specification's name for `teardown`: remove everything `deploy` made."""
        self.teardown()

    @abstractmethod
    def check(self) -> list[CheckResult]:
        """Health probe: prove the deployed system answers; used by `deployment check`."""

    def deployed_versions(self) -> dict[str, str]:
        """What was deployed, by name: a package's version, a repository's commit. A benchmark
        run records it, so that two runs are compared knowing whether the system changed.
        Read from the deployed servers; {} where the engine cannot tell."""
        return {}

    @property
    def endpoints(self) -> Endpoints:
        """What this engine deployed: the deployment's endpoints, or a node's part of them."""
        if self._own_endpoints is None:
            return stored(self.deployment.endpoints)
        return self._own_endpoints

    @endpoints.setter
    def endpoints(self, endpoints: Endpoints) -> None:
        self._own_endpoints = endpoints

    def provider(self, key: str = "provider") -> "ServerProvider[Any]":
        """The provider configured under `key`, bound to its own ledger scope, told which
        ports to open to the deployment's other servers."""
        from benchbed.providers.base import ServerProvider

        provider = self.nest(key, ServerProvider)
        provider.open_to_peers = self.open_to_peers
        return provider


def provider_class(provider_config: dict[str, Any]) -> "type[ServerProvider[Any]]":
    """The class of a (validated) provider config."""
    from benchbed.providers.base import ServerProvider

    found = plugin.get(plugin.PROVIDERS, provider_config["type"])
    assert issubclass(found, ServerProvider)
    return found


def engine_class(engine_config: dict[str, Any], path: str = "type") -> "type[Engine[Any]]":
    """The class of an engine config (`path`: where its type is, for the error)."""
    found = plugin.get(plugin.ENGINES, engine_config["type"], path)
    if not issubclass(found, Engine):
        raise ConfigError(path, f"{engine_config['type']} is not an engine")
    return found


def provider_capabilities(provider_config: dict[str, Any]) -> "Capabilities":
    found = provider_class(provider_config)
    return found.capabilities(found.parse_config(provider_config))


def validate_server_request(provider_config: dict[str, Any], path: str,
                            image: str | None = None, flavor: str | None = None,
                            amount: int | None = None, ssh: bool = True) -> None:
    """Let the provider under `path.provider` refuse an engine's image, flavor or amount
    before anything exists, and, when the engine will log in (`ssh`), a config under which
    it cannot."""
    found = provider_class(provider_config)
    typed = found.parse_config(provider_config)
    found.validate_request(typed, image, flavor, path)
    if ssh:
        found.validate_ssh(typed, plugin.join_path(path, "provider"))
    capacity = found.capacity(typed)
    if amount is not None and capacity is not None and amount > capacity:
        raise ConfigError(plugin.join_path(path, "amount"),
                          f"{amount} server(s) requested, but "
                          f"{provider_config['type']} can give {capacity}")
