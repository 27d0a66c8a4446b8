"""Plugin registry (entry points) and whole-config validation, nested plugins included."""

import importlib.util
import math
import re
from abc import ABC
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar, cast

from benchbed import masking
from benchbed.errors import BenchbedError, ConfigError
from benchbed.settings import PluginConfig

if TYPE_CHECKING:
    import jsonschema

    from benchbed.deployment import Deployment
    from benchbed.hostcheck import HostCheck
    from benchbed.hostnet.routes import Slice
    from benchbed.ledger import Resource

ENGINES = "benchbed.engines"
PROVIDERS = "benchbed.providers"
GROUP_NOUN = {ENGINES: "engine", PROVIDERS: "server provider"}
ConfigT = TypeVar("ConfigT", bound=PluginConfig)
P = TypeVar("P", bound="Plugin[Any]")


Hook = Callable[[Any, "Resource"], Any]


@dataclass(frozen=True)
class ResourceKind:
    """How the core deletes one kind of ledger row and tells whether it still exists.

    `delete` and `exists` are functions of the plugin's class body, `(self, resource) ->
    None` and `(self, resource) -> bool` (so a renamed hook fails when the module loads, not
    in a user's `destroy`); `delete` treats "already gone" as success. `requires` lists the
    kinds of the same scope this one lives on (a container on its network): those wait
    until it is gone. Declare RESOURCES after the hooks it names.
    """

    delete: Hook
    exists: Hook | None = None
    requires: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for hook in (self.delete, self.exists):
            if hook is not None and not callable(hook):
                raise TypeError(f"ResourceKind hooks are functions of the plugin, not {hook!r}")


class Plugin(ABC, Generic[ConfigT]):
    """A node of a deployment's plugin tree: an engine or provider at one config path.

    The config path (`""` for the root engine, `provider`, `nodes[1].provider`) is also the
    plugin's ledger scope, so any number of plugins live in one deployment, each
    destroyed from its own rows.

    Removal has one verb, `teardown()`: delete this scope's ledger rows (`delete_recorded`),
    then tear down the nested plugins, last one first. The specification's names are kept
    as the same act: an engine's `cleanup()` and a provider's `destroy_servers()` call it.
    A plugin with more to undo overrides `teardown` and ends by calling the base's.

    Validation has the verbs `validate_*` (a config, before anything exists); `check()` is
    only ever a health probe of something deployed; `host_requirements` is what `benchbed
    doctor` verifies on this machine.
    """

    # the typed config (benchbed.settings): its fields are the keys this plugin accepts
    Config: ClassVar[type[PluginConfig]] = PluginConfig
    # config key -> entry point group of the plugin(s) configured under it (a list value
    # holds several)
    NESTED: ClassVar[dict[str, str]] = {}
    # the kinds of resource this plugin records in its ledger
    RESOURCES: ClassVar[dict[str, ResourceKind]] = {}
    # keys of the older tool's configs for features that cannot exist here -> why; refused
    # before anything else in the config is looked at, so the line names the real reason
    UNSUPPORTED_KEYS: ClassVar[dict[str, str]] = {}
    # optional Python modules the plugin imports when it runs -> the extra of benchbed that
    # installs each (pyproject's optional-dependencies): a config naming the plugin is refused
    # at validation while one is missing, before any deployment row exists
    EXTRAS: ClassVar[dict[str, str]] = {}
    # A minimal valid config of this plugin (nested plugins included), with which the
    # contract test (benchbed.contract) builds it on a throwaway deployment. Declared here
    # without a value on purpose: every plugin gives its own, and one without fails the
    # contract rather than being skipped.
    EXAMPLE: ClassVar[dict[str, Any]]

    def __init__(self, deployment: "Deployment", config: dict[str, Any], path: str) -> None:
        self.deployment = deployment
        # the config as the user wrote it (nested plugins' configs are mappings in it)
        self.raw_config = config
        self.config: ConfigT = self.parse_config(config)
        self.path = path
        self.ledger = deployment.ledger(path)

    @classmethod
    def parse_config(cls, config: dict[str, Any]) -> ConfigT:
        """The typed config of a mapping that passed validation, defaults applied."""
        return cast(ConfigT, cls.Config.from_dict(config))

    @classmethod
    def config_schema(cls) -> dict[str, Any]:
        return cls.Config.json_schema()

    @classmethod
    def validate_config(cls, config: ConfigT, path: str, *, has_parent: bool = False) -> None:
        """Checks a schema cannot express; raise ConfigError naming the path.

        `has_parent`: an engine above this one gives it `parent_endpoints` (a node of a
        MultihostEngine)."""

    @classmethod
    def child_has_parent(cls, key: str, has_parent: bool) -> bool:
        """Whether the engine(s) nested under `key` receive parent endpoints."""
        return False

    @classmethod
    def host_requirements(cls, config: ConfigT | None) -> list["HostCheck"]:
        """What this machine needs for this plugin: for `config`, or for any (None).

        `benchbed doctor` runs them; a plugin that needs nothing of this host keeps [].
        """
        return []

    @classmethod
    def routed_slices(cls, config: ConfigT, path: str) -> "Iterator[Slice]":
        """The container networks this config puts on LXC hosts, each with its host: one
        deployment routes them to each other once they are on several hosts
        (benchbed.hostnet.routes)."""
        return iter(())

    @classmethod
    def validation_view(cls, config: dict[str, Any], path: str, *, has_parent: bool = False
                        ) -> dict[str, Any]:
        """The config as its nested plugins are validated: a plugin that fills values in at
        deploy time (MultihostEngine's `{controller_ip}`) fills in placeholders here."""
        return config

    @classmethod
    def describe(cls) -> str:
        return (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""

    def child_path(self, key: str, index: int | None = None) -> str:
        return join_path(self.path, key, index)

    def nest(self, key: str, kind: type[P], index: int | None = None) -> P:
        """The plugin configured under `key` (or `key[index]`), bound to its own path."""
        value = self.raw_config[key] if index is None else self.raw_config[key][index]
        return build(self.deployment, value, kind, self.NESTED[key],
                     self.child_path(key, index))

    def nested_plugins(self) -> "list[Plugin[Any]]":
        """Every plugin configured under this one, in config order."""
        found: list[Plugin[Any]] = []
        for key in self.NESTED:
            value = self.raw_config.get(key)
            if isinstance(value, list):
                found += [self.nest(key, Plugin, index) for index in range(len(value))]
            elif isinstance(value, dict):
                found.append(self.nest(key, Plugin))
        return found

    def teardown(self) -> None:
        """Remove everything this plugin made: its own ledger rows first, then the plugins
        it nests, last one first. Works from the ledger alone, so it is safe after a crash."""
        self.delete_recorded()
        for child in reversed(self.nested_plugins()):
            child.teardown()

    def delete_recorded(self) -> None:
        """Delete this scope's ledger rows through the declared kinds, in parallel waves."""
        rows = self.ledger.resources()
        unknown = sorted({row.kind for row in rows} - set(self.RESOURCES))
        if unknown:
            raise BenchbedError(f"{type(self).__name__} at '{self.path or '(root)'}' has "
                                f"ledger rows of unknown kind(s) {', '.join(unknown)}: "
                                f"they were left in place")
        if not rows:
            return
        self.ledger.destroy(self._delete_and_confirm, label=f"{type(self).__name__}: deleting",
                            blocks=lambda newer, older:
                            older.kind in self.RESOURCES[newer.kind].requires)

    def _delete_and_confirm(self, resource: "Resource") -> None:
        kind = self.RESOURCES[resource.kind]
        kind.delete(self, resource)
        if kind.exists is not None and kind.exists(self, resource):
            raise BenchbedError(f"{resource.kind} {resource.name} still exists after delete")


def join_path(path: str, key: str, index: int | None = None) -> str:
    """`provider`, `controller.provider`, `nodes[1]`: the config path of a nested plugin."""
    joined = f"{path}.{key}" if path else key
    return joined if index is None else f"{joined}[{index}]"


def build(deployment: "Deployment", config: dict[str, Any], kind: type[P], group: str,
          path: str) -> P:
    """Instantiate the plugin a (validated) config names, at its config path; it must be a
    `kind` (an Engine where an engine is configured)."""
    plugin_class = get(group, config["type"], join_path(path, "type"))
    if not issubclass(plugin_class, kind):
        raise ConfigError(join_path(path, "type"),
                          f"{config['type']} is not a {kind.__name__}")
    return plugin_class(deployment, config, path)


@cache
def _entry_points(group: str) -> dict[str, Any]:
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=group)}


def names(group: str) -> list[str]:
    return sorted(_entry_points(group))


# The older tool's plugins that cannot exist here, with what to use instead.
UNSUPPORTED = {
    "CobblerProvider": "is not supported: benchbed does not drive Cobbler servers; give the "
                       "machines Cobbler installed to ExistingServers",
}


def get(group: str, type_name: str, path: str = "type") -> "type[Plugin[Any]]":
    found = _entry_points(group).get(type_name)
    if found is None and type_name in UNSUPPORTED:
        raise ConfigError(path, f"{type_name} {UNSUPPORTED[type_name]}")
    if found is None:
        known = ", ".join(names(group))
        raise ConfigError(path, f"unknown {GROUP_NOUN[group]} type '{type_name}' "
                                f"(known: {known})")
    return found.load()


# The older tool's names of plugins that exist here under another name.
LEGACY_TYPES = {PROVIDERS: {"DummyProvider": "ExistingServers"}}


def normalize_legacy(config: Any, group: str) -> None:
    """Rewrite, in place, the older tool's spellings of a plugin tree into ours.

    Its documentation named nested plugins with `name` instead of `type`, and called
    ExistingServers `DummyProvider`; configs written that way keep working.
    """
    if not isinstance(config, dict):
        return
    if "type" not in config and isinstance(config.get("name"), str):
        config["type"] = config.pop("name")
    type_name = config.get("type")
    if not isinstance(type_name, str):
        return  # validation says what is wrong with it
    config["type"] = LEGACY_TYPES.get(group, {}).get(type_name, type_name)
    found = _entry_points(group).get(config["type"])
    if found is None:
        return
    for key, nested_group in found.load().NESTED.items():
        value = config.get(key)
        for item in value if isinstance(value, list) else [value]:
            normalize_legacy(item, nested_group)


def missing_extra(extras: Mapping[str, str]) -> str | None:
    """What to tell the user when a module of `extras` (module -> extra) is not installed:
    "needs boto3, which is not installed: pip install 'benchbed[ec2]'"; None when all are."""
    for module, extra in extras.items():
        try:
            installed = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a finder refusing it, a module without a spec
            installed = False
        if not installed:
            return not_installed(module, extra)
    return None


def not_installed(module: str, extra: str | None) -> str:
    """The line for a missing optional module, with the pip line of the extra that has it."""
    if extra is None:
        return f"needs the Python module {module}, which is not installed"
    return f"needs {module}, which is not installed: pip install 'benchbed[{extra}]'"


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
             ) -> Iterator["jsonschema.ValidationError"]:
    from jsonschema import ValidationError

    if validator.is_type(instance, "string") and not _compiled(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


@cache
def _validator_class() -> Any:
    """Draft 2020-12 with the checks above; jsonschema is imported by the first validation
    only, so that commands which validate nothing do not pay for it (docs/benchmarks.md)."""
    import jsonschema

    return jsonschema.validators.extend(
        jsonschema.Draft202012Validator, validators={"pattern": _pattern},
        type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine_many(
            {"integer": _is_integer, "number": _is_number}))


def _where(path: str, error: "jsonschema.ValidationError") -> str:
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


def _shows_secret(error: "jsonschema.ValidationError") -> bool:
    """Would the library's message print a secret, or a structure that may hold one?"""
    if isinstance(error.instance, dict | list | bytes):
        return True
    return any(isinstance(part, str) and masking.is_secret_key(part)
               for part in error.absolute_path)


def _message(error: "jsonschema.ValidationError") -> str:
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


def walk(config: dict[str, Any], group: str = ENGINES, path: str = "",
         has_parent: bool = False) -> "Iterator[tuple[type[Plugin[Any]], dict[str, Any], str]]":
    """Each plugin of a validated config: (its class, its config, its config path)."""
    plugin = get(group, config["type"], join_path(path, "type"))
    yield plugin, config, path
    for item, nested_group, item_path, below in _nested(plugin, config, path, has_parent):
        if isinstance(item, dict):
            yield from walk(item, nested_group, item_path, below)


def _nested(plugin: "type[Plugin[Any]]", config: dict[str, Any], path: str, has_parent: bool
            ) -> Iterator[tuple[Any, str, str, bool]]:
    """The configs nested in a plugin's (as validation sees them: `validation_view`), each
    with its entry point group, its config path and whether it has a parent engine."""
    view = plugin.validation_view(config, path, has_parent=has_parent)
    for key, nested_group in plugin.NESTED.items():
        value = view.get(key)
        below = plugin.child_has_parent(key, has_parent)
        if isinstance(value, list):
            for index, item in enumerate(value):
                yield item, nested_group, join_path(path, key, index), below
        elif value is not None:
            yield value, nested_group, join_path(path, key), below


def validate(config: Any, group: str = ENGINES, path: str = "", has_parent: bool = False
             ) -> "type[Plugin[Any]]":
    """Validate a config and every plugin nested in it; return the top plugin's class."""
    if not isinstance(config, dict):
        raise ConfigError(path, "must be a mapping")
    type_path = f"{path}.type" if path else "type"
    type_name = config.get("type")
    if not isinstance(type_name, str):
        raise ConfigError(type_path, "is required and must name a plugin")
    plugin = get(group, type_name, type_path)
    missing = missing_extra(plugin.EXTRAS)
    if missing:
        raise ConfigError(type_path, f"{type_name} {missing}")
    for key, reason in plugin.UNSUPPORTED_KEYS.items():
        if key in config:
            raise ConfigError(join_path(path, key), f"is not supported: {reason}")
    _check_schema(plugin.config_schema(), config, path)
    for item, nested_group, item_path, below in _nested(plugin, config, path, has_parent):
        validate(item, nested_group, item_path, below)
    plugin.validate_config(plugin.parse_config(config), path, has_parent=has_parent)
    return plugin


def _check_schema(schema: dict[str, Any], config: dict[str, Any], path: str) -> None:
    """jsonschema's verdict, or the one it gave this very pair before (schema_passes)."""
    from benchbed import schema_passes

    key = schema_passes.digest(schema, config)
    if schema_passes.passed(key):
        return
    validator = _validator_class()(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: (len(e.absolute_path), e.path))
    if errors:
        from jsonschema.exceptions import best_match

        error = best_match(errors)
        raise ConfigError(_where(path, error), _message(error))
    schema_passes.remember(key)
