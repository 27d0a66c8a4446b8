"""Plugin registry (entry points) and whole-config validation, nested plugins included."""

from functools import cache
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, ClassVar

import jsonschema

from benchbed.errors import ConfigError

if TYPE_CHECKING:
    from benchbed.hostcheck import HostCheck

ENGINES = "benchbed.engines"
PROVIDERS = "benchbed.providers"
GROUP_NOUN = {ENGINES: "engine", PROVIDERS: "server provider"}


class Plugin:
    """Base of engines and providers: a JSON Schema for the config and nested plugin keys."""

    CONFIG_SCHEMA: ClassVar[dict[str, Any]] = {"type": "object"}
    # config key -> entry point group of the plugin configured under it
    NESTED: ClassVar[dict[str, str]] = {}

    @classmethod
    def check_config(cls, config: dict[str, Any], path: str) -> None:
        """Checks a schema cannot express; raise ConfigError naming the path."""

    @classmethod
    def host_checks(cls, config: dict[str, Any] | None) -> list["HostCheck"]:
        """What this machine needs for this plugin: for `config`, or for any (None).

        `benchbed doctor` runs them; a plugin that needs nothing of this host keeps [].
        """
        return []

    @classmethod
    def describe(cls) -> str:
        return (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""


@cache
def _entry_points(group: str) -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=group)}


def names(group: str) -> list[str]:
    return sorted(_entry_points(group))


def get(group: str, type_name: str, path: str = "type") -> type[Plugin]:
    found = _entry_points(group).get(type_name)
    if found is None:
        known = ", ".join(names(group))
        raise ConfigError(path, f"unknown {GROUP_NOUN[group]} type '{type_name}' "
                                f"(known: {known})")
    return found.load()


def _where(path: str, error: jsonschema.ValidationError) -> str:
    parts = [path] if path else []
    for part in error.absolute_path:
        parts.append(f"[{part}]" if isinstance(part, int) else str(part))
    return ".".join(parts).replace(".[", "[")


def _message(error: jsonschema.ValidationError) -> str:
    if error.validator == "required":
        return error.message.replace("is a required property", "is required")
    if error.validator == "additionalProperties":
        return error.message.replace("Additional properties are not allowed", "unknown key(s)")
    if error.validator == "type":
        return f"must be of type {error.validator_value}, got {error.instance!r}"[:200]
    return error.message[:200]


def validate(config: Any, group: str = ENGINES, path: str = "") -> type[Plugin]:
    """Validate a config and every plugin nested in it; return the top plugin's class."""
    if not isinstance(config, dict):
        raise ConfigError(path, "must be a mapping")
    type_path = f"{path}.type" if path else "type"
    type_name = config.get("type")
    if not isinstance(type_name, str):
        raise ConfigError(type_path, "is required and must name a plugin")
    plugin = get(group, type_name, type_path)
    schema = plugin.CONFIG_SCHEMA
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: (len(e.absolute_path), e.path))
    if errors:
        error = jsonschema.exceptions.best_match(errors)
        raise ConfigError(_where(path, error), _message(error))
    for key, nested_group in plugin.NESTED.items():
        if key in config:
            validate(config[key], nested_group, f"{path}.{key}" if path else key)
    plugin.check_config(config, path)
    return plugin
