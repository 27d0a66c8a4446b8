"""The server provider contract: Provider(deployment, config), create_servers, destroy_servers."""

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, ClassVar

from benchbed import plugin, sizes
from benchbed.errors import ConfigError, InputError
from benchbed.ledger import Resource
from benchbed.server import Server

if TYPE_CHECKING:
    from benchbed.deployment import Deployment
    from benchbed.networks import Claim


class ServerProvider(plugin.Plugin):
    """Gives engines servers, whatever the technology behind them.

    Subclasses record every resource in `self.ledger` before creating it and implement
    `delete_resource`, which must treat "already gone" as success; `destroy_servers`
    then removes everything from the ledger alone, even after a crash.
    """

    # Whether create_servers can pick an image (image_uuid) and a named size (type_id).
    CHOOSES_IMAGE: ClassVar[bool] = True
    CHOOSES_SIZE: ClassVar[bool] = True

    @classmethod
    def check_request(cls, image: str | None, size: str | None, path: str) -> None:
        """Refuse at validation what create_servers would refuse: nothing is created then."""
        where = f"{path}." if path else ""
        if image is not None and not cls.CHOOSES_IMAGE:
            raise ConfigError(f"{where}image", f"{cls.__name__} cannot choose an image")
        if size is not None:
            if not cls.CHOOSES_SIZE:
                raise ConfigError(f"{where}flavor", f"{cls.__name__} cannot choose a size")
            try:
                sizes.lookup(size)
            except InputError as error:
                raise ConfigError(f"{where}flavor", str(error)) from None

    @classmethod
    def capacity(cls, config: dict[str, Any]) -> int | None:
        """The most servers this config can give (None: no limit known at validation)."""
        return None

    @classmethod
    def local_networks(cls, config: dict[str, Any], path: str) -> Iterator["Claim"]:
        """The networks this config makes on this machine (benchbed.networks checks them)."""
        return iter(())

    def __init__(self, deployment: "Deployment", config: dict[str, Any],
                 scope: str = "provider") -> None:
        self.deployment = deployment
        self.config = config
        self.scope = scope
        self.ledger = deployment.ledger(scope)

    @classmethod
    def from_config(cls, deployment: "Deployment", config: dict[str, Any],
                    scope: str = "provider") -> "ServerProvider":
        provider_class = plugin.get(plugin.PROVIDERS, config["type"], f"{scope}.type")
        return provider_class(deployment, config, scope=scope)

    def nested(self, key: str) -> "ServerProvider":
        """A provider nested in this one's config (e.g. LXC's `host_provider`)."""
        return ServerProvider.from_config(self.deployment, self.config[key],
                                          scope=f"{self.scope}.{key}")

    def default_amount(self) -> int:
        """How many servers to create when the engine does not say."""
        return 1

    def create_servers(self, image_uuid: str | None = None, type_id: str | None = None,
                       amount: int = 1) -> list[Server]:
        raise NotImplementedError

    def destroy_servers(self) -> None:
        self.ledger.destroy(self.delete_resource, label=f"{self.config['type']}: destroying")

    def delete_resource(self, resource: Resource) -> None:
        raise NotImplementedError

    def server(self, data: dict[str, Any]) -> Server:
        return Server.from_dict(data, deployment=self.deployment)
