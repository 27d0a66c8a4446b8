"""The deploy engine contract from the specification: Engine(deployment), deploy(), cleanup()."""

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from benchbed import plugin

if TYPE_CHECKING:
    from benchbed.deployment import Deployment
    from benchbed.providers.base import ServerProvider


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
    """Deploys a distribution (or registers one) and returns its endpoints."""

    def __init__(self, deployment: "Deployment") -> None:
        self.deployment = deployment
        self.config: dict[str, Any] = deployment.config

    def deploy(self) -> dict[str, Any]:
        """Deploy and return the endpoints (secrets included; they are masked on display)."""
        raise NotImplementedError

    def cleanup(self) -> None:
        """Remove everything `deploy` made, from the ledger alone (safe after a crash)."""
        raise NotImplementedError

    def check(self) -> list[CheckResult]:
        """Prove the deployed system answers; used by `deployment check`."""
        raise NotImplementedError

    @classmethod
    def check_server_request(cls, config: dict[str, Any], path: str) -> None:
        """Let the provider refuse the engine's `image`/`flavor` before anything is created."""
        provider_class = plugin.get(plugin.PROVIDERS, config["provider"]["type"])
        provider_class.check_request(config.get("image"), config.get("flavor"), path)

    def provider(self, key: str = "provider") -> "ServerProvider":
        """The provider configured under `key`, bound to its own ledger scope."""
        from benchbed.providers.base import ServerProvider

        return ServerProvider.from_config(self.deployment, self.config[key], scope=key)
