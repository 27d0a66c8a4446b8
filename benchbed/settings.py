"""Typed plugin configs: one dataclass per plugin holds every key's type, default and meaning.

A plugin declares `Config`, a frozen dataclass derived from `PluginConfig` whose fields are
made with `setting(...)`. From it the core derives the JSON Schema that validates a user's
config (jsonschema stays the validator: its messages name the config path, and its verdicts
are remembered by `schema_passes`), applies the defaults once, when the plugin is built, and
generates the configuration reference of the docs. Plugin code then reads
`self.config.containers_per_host`, never a dict with a default repeated at each read.

Why dataclasses and not a validation library: pydantic would add a compiled dependency and
tens of milliseconds to every command that validates (`tests/unit/test_light_commands.py`),
and its messages would have to be rewritten into the config-path form users already see.
"""

import dataclasses
import types
import typing
from typing import Any, ClassVar, Literal, Self, TypeVar, Union, get_args, get_origin

T = TypeVar("T")

_NO_DEFAULT: Any = dataclasses.MISSING


def setting(description: str, default: Any = _NO_DEFAULT, *, secret: bool = False,
            schema: dict[str, Any] | None = None, **constraints: Any) -> Any:
    """One config key: its one-line description, its default (none: the key is required),
    and the JSON Schema constraints its type cannot say (`pattern`, `minimum`, `minItems`).

    `schema` replaces the schema derived from the type entirely (a key with several
    forms); `secret` marks a value that is masked wherever benchbed shows it.
    """
    metadata = {"description": description, "constraints": constraints, "schema": schema,
                "secret": secret}
    if isinstance(default, list | dict | set):
        frozen = default
        return dataclasses.field(default_factory=lambda: type(frozen)(frozen),
                                 metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Section:
    """A mapping inside a config (a credential, a network): typed like a config, no `type`."""

    # keys accepted beyond the fields, as the older tool's configs wrote them (kept as given)
    EXTRA_KEYS: ClassVar[bool] = False

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        return _object_schema(cls)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """The typed value of a mapping that passed `json_schema()`; defaults filled in."""
        hints = _hints(cls)
        values = {field.name: _convert(hints[field.name], data[_key(field)])
                  for field in dataclasses.fields(cls) if _key(field) in data}
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """The mapping again, defaults included, in the keys the user writes."""
        return {_key(field): _plain(getattr(self, field.name))
                for field in dataclasses.fields(self)}


@dataclasses.dataclass(frozen=True, kw_only=True)
class PluginConfig(Section):
    """The config of one plugin: the `type` that names it, and its own keys."""

    type: str = setting("The plugin's type name, as its entry point registers it.")


def fields(cls: type[Section]) -> list[dataclasses.Field[Any]]:
    return list(dataclasses.fields(cls))


def describe(field: dataclasses.Field[Any]) -> str:
    return str(field.metadata.get("description", ""))


def is_secret(field: dataclasses.Field[Any]) -> bool:
    return bool(field.metadata.get("secret"))


def has_default(field: dataclasses.Field[Any]) -> bool:
    return (field.default is not dataclasses.MISSING
            or field.default_factory is not dataclasses.MISSING)


def default_of(field: dataclasses.Field[Any]) -> Any:
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None if field.default is dataclasses.MISSING else field.default


def _key(field: dataclasses.Field[Any]) -> str:
    """The key users write: the field's name, or `key=` for one that is a Python keyword."""
    return str(field.metadata.get("key") or field.name)


_HINTS: dict[type, dict[str, Any]] = {}
_SCHEMAS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _object_schema(cls: type[Section]) -> dict[str, Any]:
    if cls not in _SCHEMAS:
        _SCHEMAS[cls] = _derive_schema(cls)
    return _SCHEMAS[cls]


def _derive_schema(cls: type[Section]) -> dict[str, Any]:
    hints = _hints(cls)
    properties: dict[str, Any] = {}
    required: list[str] = []
    for field in dataclasses.fields(cls):
        properties[_key(field)] = field_schema(field, hints[field.name])
        if not has_default(field):
            required.append(_key(field))
    schema: dict[str, Any] = {"type": "object", "properties": properties,
                              "additionalProperties": cls.EXTRA_KEYS}
    if required:
        schema["required"] = required
    return schema


def field_schema(field: dataclasses.Field[Any], hint: Any) -> dict[str, Any]:
    if field.metadata.get("schema") is not None:
        return dict(field.metadata["schema"])
    return {**type_schema(hint), **field.metadata.get("constraints", {})}


def type_schema(hint: Any) -> dict[str, Any]:
    """The JSON Schema of a Python type as configs use them."""
    origin, args = get_origin(hint), get_args(hint)
    if hint is Any:
        return {}
    if origin in (Union, types.UnionType):
        kept = [arg for arg in args if arg is not type(None)]
        return type_schema(kept[0]) if len(kept) == 1 else {
            "anyOf": [type_schema(arg) for arg in kept]}
    if origin is Literal:
        return {"enum": list(args)}
    if origin is list:
        return {"type": "array", "items": type_schema(args[0]) if args else {}}
    if origin is dict:
        value = args[1] if len(args) == 2 else Any
        return {"type": "object"} if value is Any else {
            "type": "object", "additionalProperties": type_schema(value)}
    if isinstance(hint, type) and issubclass(hint, Section):
        return hint.json_schema()
    simple = {str: "string", bool: "boolean", int: "integer", float: "number",
              list: "array", dict: "object"}
    if hint in simple:
        return {"type": simple[hint]}
    raise TypeError(f"no JSON Schema for config type {hint!r}")


def type_name(hint: Any) -> str:
    """A type as the configuration reference shows it."""
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        return " | ".join(type_name(arg) for arg in args if arg is not type(None))
    if origin is Literal:
        return " | ".join(repr(arg) for arg in args)
    if origin is list:
        return f"list of {type_name(args[0])}" if args else "list"
    if origin is dict:
        return "mapping"
    if isinstance(hint, type) and issubclass(hint, PluginConfig):
        return "plugin config"
    if isinstance(hint, type) and issubclass(hint, Section):
        return hint.__name__
    return getattr(hint, "__name__", str(hint))


def _convert(hint: Any, value: Any) -> Any:
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        kept = [arg for arg in args if arg is not type(None)]
        return _convert(kept[0], value) if len(kept) == 1 else value
    if origin is list and args and isinstance(value, list):
        return [_convert(args[0], item) for item in value]
    if origin is dict and len(args) == 2 and isinstance(value, dict):
        return {key: _convert(args[1], item) for key, item in value.items()}
    if isinstance(hint, type) and issubclass(hint, Section) and isinstance(value, dict):
        return hint.from_dict(value)
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, Section):
        return value.to_dict()
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


def hint_of(cls: type[Section], name: str) -> Any:
    return _hints(cls)[name]
