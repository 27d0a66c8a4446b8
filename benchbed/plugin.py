"""Plugin registry (entry points) and whole-config validation, nested plugins included."""

import math
import re
from collections.abc import Iterator
from functools import cache
from importlib.metadata import entry_points
from typing import Any, ClassVar

import jsonschema

from benchbed import masking
from benchbed.errors import ConfigError

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


def _is_integer(_checker: Any, instance: Any) -> bool:
    """An int, not a bool, not a float such as 2.0 (JSON Schema alone would take both)."""
    return isinstance(instance, int) and not isinstance(instance, bool)


def _is_number(_checker: Any, instance: Any) -> bool:
    """A finite int or float: NaN and infinity compare false with every bound."""
    return (isinstance(instance, int | float) and not isinstance(instance, bool)
            and math.isfinite(instance))


@cache
def _compiled(pattern: str) -> re.Pattern[str]:
    """JSON Schema's `$` ends the string; Python's `$` also matches before a final newline,
    which would let "root\\n" through "^[a-z]+$": it becomes `\\Z`."""
    return re.compile(re.sub(r"(?<!\\)\$$", r"\\Z", pattern))


def _pattern(validator: Any, pattern: str, instance: Any, _schema: Any
             ) -> Iterator[jsonschema.ValidationError]:
    if validator.is_type(instance, "string") and not _compiled(pattern).search(instance):
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


Validator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator, validators={"pattern": _pattern},
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine_many(
        {"integer": _is_integer, "number": _is_number}))


def _where(path: str, error: jsonschema.ValidationError) -> str:
    parts = [path] if path else []
    for part in error.absolute_path:
        parts.append(f"[{part}]" if isinstance(part, int) else str(part))
    return ".".join(parts).replace(".[", "[")


# What a failed check means, said without the value that failed it.
WITHOUT_VALUE = {
    "type": "must be of type {}",
    "minLength": "must have at least {} character(s)",
    "maxLength": "must have at most {} character(s)",
    "pattern": "does not match the pattern {}",
    "enum": "must be one of {}",
    "const": "must be {!r}",
    "minimum": "must be at least {}",
    "maximum": "must be at most {}",
    "exclusiveMinimum": "must be more than {}",
    "exclusiveMaximum": "must be less than {}",
    "minItems": "must have at least {} item(s)",
    "maxItems": "must have at most {} item(s)",
    "uniqueItems": "must not repeat an item",
    "oneOf": "matches none (or more than one) of the forms it may take",
    "anyOf": "matches none of the forms it may take",
}


def _shows_secret(error: jsonschema.ValidationError) -> bool:
    """Would the library's message print a secret, or a structure that may hold one?"""
    if isinstance(error.instance, dict | list | bytes):
        return True
    return any(isinstance(part, str) and masking.is_secret_key(part)
               for part in error.absolute_path)


def _message(error: jsonschema.ValidationError) -> str:
    if error.validator == "required":
        return error.message.replace("is a required property", "is required")
    if error.validator == "additionalProperties":
        return error.message.replace("Additional properties are not allowed", "unknown key(s)")
    if _shows_secret(error):
        template = WITHOUT_VALUE.get(str(error.validator), "fails the '{}' check")
        value = error.validator_value if error.validator in WITHOUT_VALUE else error.validator
        return template.format(value)[:200]
    if error.validator == "type":
        return f"must be of type {error.validator_value}, got {error.instance!r}"[:200]
    return error.message[:200]


def walk(config: dict[str, Any], group: str = ENGINES, path: str = ""
         ) -> Iterator[tuple[type[Plugin], dict[str, Any], str]]:
    """Each plugin of a validated config: (its class, its config, its config path)."""
    plugin = get(group, config["type"], f"{path}.type" if path else "type")
    yield plugin, config, path
    for key, nested_group in plugin.NESTED.items():
        if isinstance(config.get(key), dict):
            yield from walk(config[key], nested_group, f"{path}.{key}" if path else key)


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
    validator = Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: (len(e.absolute_path), e.path))
    if errors:
        error = jsonschema.exceptions.best_match(errors)
        raise ConfigError(_where(path, error), _message(error))
    for key, nested_group in plugin.NESTED.items():
        if key in config:
            validate(config[key], nested_group, f"{path}.{key}" if path else key)
    plugin.check_config(config, path)
    return plugin
