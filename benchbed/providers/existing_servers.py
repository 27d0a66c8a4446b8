"""ExistingServers: hand out machines that already exist; nothing to create or destroy."""

from dataclasses import dataclass
from typing import Any

from benchbed import hostcheck, plugin
from benchbed.errors import ConfigError, InputError
from benchbed.providers.base import Capabilities, ServerProvider
from benchbed.server import Server
from benchbed.settings import PluginConfig, Section, setting


@dataclass(frozen=True, kw_only=True)
class Credential(Section):
    """How to log in to one server over SSH."""

    host: str = setting("The server's host name or IPv4/IPv6 address.",
                        pattern="^[A-Za-z0-9][A-Za-z0-9.:-]{0,252}$")
    port: int = setting("Its SSH port.", 22, minimum=1, maximum=65535)
    user: str = setting("The login name (a POSIX user name).",
                        pattern="^[A-Za-z0-9_][A-Za-z0-9._-]{0,31}$")
    key: str | None = setting("The private key: a file on this machine, or the key itself.",
                              None, minLength=1)
    password: str | None = setting("The login password.", None, secret=True)


@dataclass(frozen=True, kw_only=True)
class ExistingServersConfig(PluginConfig):
    credentials: list[Credential] = setting("The servers, by their SSH credentials.",
                                            minItems=1)


# A config of one server, this machine as root: the examples of the plugins that nest one.
LOCALHOST_SERVERS: dict[str, Any] = {
    "type": "ExistingServers", "credentials": [{"user": "root", "host": "localhost"}]}


class ExistingServers(ServerProvider[ExistingServersConfig]):
    """Servers that already exist, given by their SSH credentials."""

    EXAMPLE = LOCALHOST_SERVERS

    Config = ExistingServersConfig
    CAPABILITIES = Capabilities(outlives_deployment=True, chooses_image=False,
                                chooses_size=False)

    @classmethod
    def validate_config(cls, config: ExistingServersConfig, path: str, *,
                        has_parent: bool = False) -> None:
        seen: set[tuple[str, int]] = set()
        for index, credential in enumerate(config.credentials):
            address = (credential.host, credential.port)
            if address in seen:
                raise ConfigError(plugin.join_path(path, "credentials", index),
                                  f"server {address[0]}:{address[1]} is listed twice")
            seen.add(address)

    @classmethod
    def host_requirements(cls, config: ExistingServersConfig | None
                          ) -> list[hostcheck.HostCheck]:
        """The key files the credentials name must be readable here."""
        if config is None:
            return []
        return [hostcheck.readable_file(credential.key, f"fix credentials[{index}].key")
                for index, credential in enumerate(config.credentials)
                if credential.key and "PRIVATE KEY" not in credential.key]

    @classmethod
    def capacity(cls, config: ExistingServersConfig) -> int | None:
        return len(config.credentials)

    def default_amount(self) -> int:
        return len(self.config.credentials)

    def create_servers(self, image_uuid: str | None = None, type_id: str | None = None,
                       amount: int = 1) -> list[Server]:
        """Return the first `amount` servers; image and type cannot be chosen for them."""
        credentials = self.config.credentials
        if image_uuid or type_id:
            raise InputError("ExistingServers cannot choose an image or a server type: "
                             "remove 'image' and 'flavor' from the engine config")
        if amount < 1 or amount > len(credentials):
            raise InputError(f"ExistingServers has {len(credentials)} server(s); "
                             f"{amount} requested")
        return [Server(host=credential.host, port=credential.port, user=credential.user,
                       key=credential.key, password=credential.password,
                       deployment=self.deployment)
                for credential in credentials[:amount]]
