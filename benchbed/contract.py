"""The plugin contract as a test any engine or provider can run, ours or a third party's.

`check_plugin(MyProvider)` raises AssertionError naming every rule the class breaks:

* its `Config` is a `PluginConfig` dataclass whose JSON Schema is derived and is itself a
  valid schema, and every key (nested sections included) has a description;
* every kind of `RESOURCES` is a `ResourceKind` whose `delete` and `exists` hooks are
  functions of the plugin's own class (or a base of it), not names;
* its capabilities are declared: a provider's `CAPABILITIES` is a `Capabilities`, an engine
  has `STARTS_BEFORE_PARENT`, `offered_services` and `joined_services`;
* it declares `EXAMPLE`, a minimal config that validates; built from it on a throwaway
  deployment, it refuses to delete a ledger row of a kind it does not declare (and keeps the
  row), and its `teardown()` of an empty ledger does nothing and records nothing.

In a test module: `test_contract = contract_test(MyProvider)` (one test per class), or call
`check_plugin` yourself. Without a `deployment`, the instance checks run in a throwaway
BENCHBED_HOME (a temporary SQLite database) that is removed afterwards.
"""

import dataclasses
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from benchbed import plugin, settings
from benchbed.errors import BenchbedError
from benchbed.plugin import Plugin, ResourceKind
from benchbed.settings import PluginConfig, Section

if TYPE_CHECKING:
    from benchbed.deployment import Deployment

UNKNOWN_KIND = "contract-unknown-kind"


def check_plugin(plugin_class: type[Plugin[Any]], deployment: "Deployment | None" = None
                 ) -> None:
    """Raise AssertionError listing every contract rule `plugin_class` breaks."""
    problems = static_problems(plugin_class)
    if not problems and deployment is None:
        # validation remembers its verdicts under BENCHBED_HOME: keep them in the throwaway
        with throwaway_deployment() as made:
            problems = example_problems(plugin_class) or instance_problems(plugin_class, made)
    elif not problems and deployment is not None:
        problems = example_problems(plugin_class) or instance_problems(plugin_class, deployment)
    if problems:
        raise AssertionError(f"{plugin_class.__module__}.{plugin_class.__qualname__} breaks "
                             f"the plugin contract:\n" + "\n".join(f"  - {p}" for p in problems))


def static_problems(plugin_class: type[Plugin[Any]]) -> list[str]:
    """What the class declares: config, resource kinds, capabilities."""
    return [*_config_problems(plugin_class), *_resource_problems(plugin_class),
            *_capability_problems(plugin_class)]


def _config_problems(plugin_class: type[Plugin[Any]]) -> list[str]:
    if "CONFIG_SCHEMA" in vars(plugin_class):
        return ["still declares CONFIG_SCHEMA: declare a typed Config (benchbed.settings) "
                "instead"]
    config = plugin_class.Config
    if not (isinstance(config, type) and issubclass(config, PluginConfig)
            and dataclasses.is_dataclass(config)):
        return [f"Config must be a PluginConfig dataclass, not {config!r}"]
    if config is PluginConfig:
        return ["Config is PluginConfig itself: declare the plugin's own Config (a subclass)"]
    problems: list[str] = []
    try:
        schema = config.json_schema()
        from jsonschema import Draft202012Validator

        Draft202012Validator.check_schema(schema)
    except Exception as error:  # any failure to derive or load the schema is the finding
        problems.append(f"Config.json_schema() does not load: {type(error).__name__}: {error}")
    problems += [f"config key '{key}' has no description" for key in _undescribed(config)]
    return problems


def _undescribed(section: type[Section], prefix: str = "", seen: frozenset[type] = frozenset()
                 ) -> Iterator[str]:
    for field in settings.fields(section):
        key = f"{prefix}{field.metadata.get('key') or field.name}"
        if not settings.describe(field).strip():
            yield key
        for inner in _sections_in(settings.hint_of(section, field.name)):
            if inner not in seen:
                yield from _undescribed(inner, f"{key}.", seen | {section})


def _sections_in(hint: Any) -> Iterator[type[Section]]:
    """The Section classes a type mentions (`Credential`, `list[Credential] | None`)."""
    if isinstance(hint, type) and issubclass(hint, Section):
        yield hint
    for arg in getattr(hint, "__args__", ()):
        yield from _sections_in(arg)


def _defined_on(plugin_class: type, function: Any) -> bool:
    return any(vars(base).get(getattr(function, "__name__", "")) is function
               for base in plugin_class.__mro__)


def _resource_problems(plugin_class: type[Plugin[Any]]) -> list[str]:
    problems: list[str] = []
    for kind, declared in plugin_class.RESOURCES.items():
        if not isinstance(declared, ResourceKind):
            problems.append(f"RESOURCES['{kind}'] is not a ResourceKind: {declared!r}")
            continue
        for role, hook in (("delete", declared.delete), ("exists", declared.exists)):
            if hook is None:
                continue
            if isinstance(hook, str) or not callable(hook):
                problems.append(f"RESOURCES['{kind}'].{role} must be a function of the class "
                                f"body, not {hook!r}")
            elif not _defined_on(plugin_class, hook):
                problems.append(f"RESOURCES['{kind}'].{role} ({hook!r}) is not defined on "
                                f"{plugin_class.__name__} or a base of it")
        for required in declared.requires:
            if required not in plugin_class.RESOURCES:
                problems.append(f"RESOURCES['{kind}'] requires '{required}', which is not a "
                                f"declared kind")
    return problems


def _capability_problems(plugin_class: type[Plugin[Any]]) -> list[str]:
    from benchbed.engines.base import Engine
    from benchbed.providers.base import Capabilities, ServerProvider

    if issubclass(plugin_class, ServerProvider):
        # the base's default Capabilities() is a declaration too: a cloud's servers
        if not isinstance(plugin_class.CAPABILITIES, Capabilities):
            return [f"CAPABILITIES must be a Capabilities, not {plugin_class.CAPABILITIES!r}"]
        if not callable(getattr(plugin_class, "capacity", None)):
            return ["the capability classmethod capacity(config) is missing"]
        return []
    if issubclass(plugin_class, Engine):
        problems = []
        if not isinstance(plugin_class.STARTS_BEFORE_PARENT, bool):
            problems.append("STARTS_BEFORE_PARENT must be a bool")
        for name in ("offered_services", "joined_services"):
            if not callable(getattr(plugin_class, name, None)):
                problems.append(f"the capability classmethod {name}(config) is missing")
        return problems
    return [f"is neither an Engine nor a ServerProvider ({plugin_class.__mro__[1].__name__})"]


def _group_of(plugin_class: type[Plugin[Any]]) -> str:
    from benchbed.engines.base import Engine

    return plugin.ENGINES if issubclass(plugin_class, Engine) else plugin.PROVIDERS


def _path_of(plugin_class: type[Plugin[Any]]) -> str:
    return "" if _group_of(plugin_class) == plugin.ENGINES else "provider"


def _registered(plugin_class: type[Plugin[Any]], name: str) -> bool:
    try:
        return plugin.get(_group_of(plugin_class), name) is plugin_class
    except BenchbedError:
        return False


def example_problems(plugin_class: type[Plugin[Any]]) -> list[str]:
    """EXAMPLE is declared and validates as a config of this plugin."""
    example = getattr(plugin_class, "EXAMPLE", None)
    if not isinstance(example, dict):
        return ["declares no EXAMPLE (a minimal valid config, ClassVar on the plugin): the "
                "contract builds the plugin from it"]
    path = _path_of(plugin_class)
    try:
        config = _copy(example)
        if _registered(plugin_class, str(config.get("type"))):
            _validate_anywhere(plugin_class, config, path)
        else:
            plugin._check_schema(plugin_class.config_schema(), config, path)
            plugin_class.validate_config(plugin_class.parse_config(config), path)
    except BenchbedError as error:
        return [f"EXAMPLE does not validate: {error}"]
    return []


def _validate_anywhere(plugin_class: type[Plugin[Any]], config: dict[str, Any],
                       path: str) -> None:
    """Validate at the root of a tree or, for an engine that only makes nodes (LxcEngine),
    as a node that has a parent engine: an example must fit one of the two places."""
    group = _group_of(plugin_class)
    try:
        plugin.validate(_copy(config), group, path)
    except BenchbedError:
        if group != plugin.ENGINES:
            raise
        plugin.validate(config, group, path, has_parent=True)


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy(item) for item in value]
    return value


def instance_problems(plugin_class: type[Plugin[Any]], deployment: "Deployment") -> list[str]:
    """Built from EXAMPLE: unknown kinds are refused, an empty teardown is a no-op."""
    problems: list[str] = []
    built = plugin_class(deployment, _copy(plugin_class.EXAMPLE), _path_of(plugin_class))
    before = deployment.remaining_resources()
    row = built.ledger.record(UNKNOWN_KIND, "contract-row")
    try:
        built.delete_recorded()
        problems.append(f"delete_recorded() accepted a ledger row of the undeclared kind "
                        f"'{UNKNOWN_KIND}'")
    except BenchbedError:
        pass
    finally:
        kept = [r.id for r in built.ledger.resources() if r.id == row.id]
        if not kept:
            problems.append("a ledger row of an undeclared kind was dropped: it must be kept")
        else:
            built.ledger.forget(row)
    try:
        built.teardown()
    except Exception as error:  # whatever it raises, an empty teardown must not
        problems.append(f"teardown() of an empty ledger raised {type(error).__name__}: {error}")
    after = deployment.remaining_resources()
    if after != before:
        problems.append(f"teardown() of an empty ledger left {after - before} ledger row(s)")
    return problems


@contextmanager
def throwaway_deployment() -> Iterator["Deployment"]:
    """A deployment in a temporary BENCHBED_HOME (SQLite), removed with it afterwards."""
    from benchbed.db import session, sql
    from benchbed.deployment import Deployment

    saved = {key: os.environ.get(key) for key in ("BENCHBED_HOME", "BENCHBED_DATABASE_URL")}

    def reset() -> None:
        session.engine.cache_clear()
        sql.forget_connections()

    with tempfile.TemporaryDirectory(prefix="benchbed-contract-") as home:
        os.environ["BENCHBED_HOME"] = home
        os.environ.pop("BENCHBED_DATABASE_URL", None)
        reset()
        try:
            deployment = Deployment.create("contract", {"type": "contract"})
            yield deployment
            if deployment.remaining_resources() == 0:
                deployment.delete()
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            reset()


def registered_plugins() -> list[tuple[str, str]]:
    """(group, name) of every engine and provider installed (entry points)."""
    return [(group, name) for group in (plugin.ENGINES, plugin.PROVIDERS)
            for name in plugin.names(group)]


def contract_test(*plugin_classes: type[Plugin[Any]]) -> Callable[..., None]:
    """A pytest test, one case per class: `test_contract = contract_test(MyProvider)`."""
    import pytest

    @pytest.mark.parametrize("plugin_class", plugin_classes,
                             ids=[cls.__name__ for cls in plugin_classes])
    def test_plugin_contract(plugin_class: type[Plugin[Any]]) -> None:
        check_plugin(plugin_class)

    return test_plugin_contract
