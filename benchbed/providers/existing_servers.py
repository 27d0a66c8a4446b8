"""ExistingServers: hand out machines that already exist; nothing to create or destroy."""

from typing import Any

from benchbed import hostcheck
from benchbed.errors import ConfigError, InputError
from benchbed.providers.base import Capabilities, ServerProvider
from benchbed.server import Server

CREDENTIAL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        # a host name or an IPv4/IPv6 address; the user a POSIX login name
        "host": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9.:-]{0,252}$"},
        "port": {"type": "integer", "minimum": 1, "maximum": 65535},
        "user": {"type": "string", "pattern": "^[A-Za-z0-9_][A-Za-z0-9._-]{0,31}$"},
        "key": {"type": "string", "minLength": 1},
        "password": {"type": "string"},
    },
    "required": ["host", "user"],
    "additionalProperties": False,
}


class ExistingServers(ServerProvider):
    """Servers that already exist, given by their SSH credentials."""

    CAPABILITIES = Capabilities(outlives_deployment=True, chooses_image=False,
                                chooses_size=False)
    CONFIG_SCHEMA = {
        "type": "object",
        "properties": {
            "type": {"const": "ExistingServers"},
            "credentials": {"type": "array", "items": CREDENTIAL_SCHEMA, "minItems": 1},
        },
        "required": ["type", "credentials"],
        "additionalProperties": False,
    }

    @classmethod
    def validate_config(cls, config: dict[str, Any], path: str, *,
                        has_parent: bool = False) -> None:
        seen: set[tuple[str, int]] = set()
        for index, credential in enumerate(config["credentials"]):
            address = (credential["host"], credential.get("port", 22))
            if address in seen:
                raise ConfigError(f"{path}.credentials[{index}]".lstrip("."),
                                  f"server {address[0]}:{address[1]} is listed twice")
            seen.add(address)

    @classmethod
    def host_requirements(cls, config: dict[str, Any] | None) -> list[hostcheck.HostCheck]:
        """The key files the credentials name must be readable here."""
        return [hostcheck.readable_file(credential["key"], f"fix credentials[{index}].key")
                for index, credential in enumerate((config or {}).get("credentials", []))
                if credential.get("key") and "PRIVATE KEY" not in credential["key"]]

    @classmethod
    def capacity(cls, config: dict[str, Any]) -> int | None:
        return len(config["credentials"])

    def default_amount(self) -> int:
        return len(self.config["credentials"])

    def create_servers(self, image_uuid: str | None = None, type_id: str | None = None,
                       amount: int = 1) -> list[Server]:
        """Return the first `amount` servers; image and type cannot be chosen for them."""
        credentials = self.config["credentials"]
        if image_uuid or type_id:
            raise InputError("ExistingServers cannot choose an image or a server type: "
                             "remove 'image' and 'flavor' from the engine config")
        if amount < 1 or amount > len(credentials):
            raise InputError(f"ExistingServers has {len(credentials)} server(s); "
                             f"{amount} requested")
        return [self.server(credential) for credential in credentials[:amount]]
