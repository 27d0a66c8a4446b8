"""The deploy engine contract from the specification: Engine(deployment), deploy(), cleanup()."""

from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from benchbed import plugin
from benchbed.errors import ConfigError

if TYPE_CHECKING:
    from benchbed.deployment import Deployment
    from benchbed.providers.base import Capabilities, ServerProvider


# The keys with which an engine asks its provider for servers (see check_server_request).
SERVER_REQUEST_PROPERTIES: dict[str, Any] = {
    "provider": {"type": "object"},
    # image and size names reach the host (LXC container names, libvirt volume names)
    "image": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"},
    "flavor": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"},
}


@dataclass
class CheckResult:
    """One line of `deployment check`: what was tried, whether it worked, and what was seen."""

    target: str
    ok: bool
    detail: str


class Engine(plugin.Plugin):
    """Deploys a distribution (or registers one) and returns its endpoints.

    `Engine(deployment)` is the root engine of the deployment's config; a MultihostEngine
    builds its controller and nodes at their own paths, and gives nodes the controller's
    endpoints as `parent_endpoints`.
    """

    # Whether deploy() may begin before the parent's endpoints exist: such an engine reads
    # `parent_endpoints` only once it needs them, and that read waits for the parent.
    STARTS_BEFORE_PARENT: ClassVar[bool] = False

    def __init__(self, deployment: "Deployment", config: dict[str, Any] | None = None,
                 path: str = "") -> None:
        super().__init__(deployment, deployment.config if config is None else config, path)
        self._parent: dict[str, Any] | Future[dict[str, Any]] | None = None
        self._own_endpoints: dict[str, Any] | None = None

    @property
    def parent_endpoints(self) -> dict[str, Any] | None:
        """The parent's endpoints; while the parent still deploys, this waits for them."""
        if isinstance(self._parent, Future):
            return self._parent.result()
        return self._parent

    @parent_endpoints.setter
    def parent_endpoints(self, endpoints: "dict[str, Any] | Future[dict[str, Any]] | None"
                         ) -> None:
        self._parent = endpoints

    def same_parent_as(self, engine: "Engine") -> None:
        """Give this (inner) engine the parent endpoints of `engine`, known yet or not."""
        self._parent = engine._parent

    def deploy(self) -> dict[str, Any]:
        """Deploy and return the endpoints (secrets included; they are masked on display)."""
        raise NotImplementedError

    def cleanup(self) -> None:
        """Remove everything `deploy` made, from the ledger alone (safe after a crash)."""
        self.destroy_tree()

    def teardown(self) -> None:
        self.cleanup()

    def check(self) -> list[CheckResult]:
        """Prove the deployed system answers; used by `deployment check`."""
        raise NotImplementedError

    @property
    def endpoints(self) -> dict[str, Any]:
        """What this engine deployed: the deployment's endpoints, or a node's part of them."""
        return self.deployment.endpoints if self._own_endpoints is None else self._own_endpoints

    @endpoints.setter
    def endpoints(self, endpoints: dict[str, Any]) -> None:
        self._own_endpoints = endpoints

    @classmethod
    def provider_class(cls, config: dict[str, Any]) -> type["ServerProvider"]:
        return plugin.get(plugin.PROVIDERS, config["provider"]["type"])  # type: ignore[return-value]

    @classmethod
    def check_server_request(cls, config: dict[str, Any], path: str,
                             amount: int | None = None, ssh: bool = True) -> None:
        """Let the provider refuse the engine's image, flavor or amount before anything exists,
        and, when the engine will log in (`ssh`), a config under which it cannot."""
        provider_class = cls.provider_class(config)
        provider_config = config["provider"]
        provider_class.check_request(provider_config, config.get("image"),
                                     config.get("flavor"), path)
        if ssh:
            provider_class.check_ssh(provider_config, plugin.join_path(path, "provider"))
        capacity = provider_class.capacity(provider_config)
        if amount is not None and capacity is not None and amount > capacity:
            raise ConfigError(plugin.join_path(path, "amount"),
                              f"{amount} server(s) requested, but "
                              f"{provider_config['type']} can give {capacity}")

    @classmethod
    def provider_capabilities(cls, config: dict[str, Any]) -> "Capabilities":
        return cls.provider_class(config).capabilities(config["provider"])

    def provider(self, key: str = "provider") -> "ServerProvider":
        """The provider configured under `key`, bound to its own ledger scope."""
        return self.nest(key)  # type: ignore[return-value]
