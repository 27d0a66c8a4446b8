"""`benchbed doctor`: run the host checks that the installed plugins (or one config) declare.

The checks belong to the plugins (`Plugin.host_checks`); this module only collects them,
once each, and runs them. Without a config every installed engine and provider is asked
what it needs for any config; with one, only the plugins of that config's tree are asked,
for that config (its networks, its key files).
"""

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from benchbed import plugin
from benchbed.hostcheck import HostCheck


@dataclass
class Outcome:
    """One line of `doctor`: which plugins need it, what was checked, and what to do."""

    needed_by: list[str]
    what: str
    ok: bool
    problem: str
    fix: str


def run(config: dict[str, Any] | None = None) -> list[Outcome]:
    """Every check once, in the order the plugins declared them."""
    wanted: dict[str, tuple[HostCheck, list[str]]] = {}
    for who, checks in _declared(config):
        for check in checks:
            _, needed_by = wanted.setdefault(check.what, (check, []))
            if who not in needed_by:
                needed_by.append(who)
    outcomes = []
    for check, needed_by in wanted.values():
        try:
            problem = check.probe()
        except Exception as error:
            problem = f"could not be checked: {error}"
        outcomes.append(Outcome(needed_by, check.what, problem is None, problem or "",
                                check.fix))
    return outcomes


def _declared(config: dict[str, Any] | None) -> Iterator[tuple[str, list[HostCheck]]]:
    if config is None:
        for group in (plugin.ENGINES, plugin.PROVIDERS):
            for name in plugin.names(group):
                yield name, plugin.get(group, name).host_requirements(None)
        return
    for path, plugin_class, node in _tree(config, plugin.ENGINES, ""):
        typed = plugin_class.parse_config(node)
        yield f"{path or 'engine'} ({node['type']})", plugin_class.host_requirements(typed)


def _tree(config: dict[str, Any], group: str, path: str
          ) -> Iterator[tuple[str, type[plugin.Plugin], dict[str, Any]]]:
    """Each plugin of a (validated) config with its config path, nested ones included."""
    plugin_class = plugin.get(group, config["type"])
    yield path, plugin_class, config
    for key, nested_group in plugin_class.NESTED.items():
        value = config.get(key)
        nested = value if isinstance(value, list) else [value] if value else []
        for index, item in enumerate(nested):
            where = f"{path}.{key}".lstrip(".") + (f"[{index}]" if isinstance(value, list)
                                                   else "")
            yield from _tree(item, nested_group, where)
