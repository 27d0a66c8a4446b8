"""Read deployment configs (YAML or JSON) and expand ${ENV_VAR} references."""

import json
import math
import os
import re
from pathlib import Path
from typing import Any

from benchbed.errors import ConfigError, InputError

ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
# Bounds that a real config stays far below and a hostile one (an alias bomb, a
# thousand-deep nesting) meets within milliseconds, before anything expands it.
MAX_BYTES = 1 << 20
MAX_DEPTH = 64
MAX_VALUES = 100_000


def load_file(path: str | Path) -> dict[str, Any]:
    """Parse a config file; the error names the file and the line of a syntax error."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise InputError(f"config file {path} does not exist") from None
    except OSError as error:
        raise InputError(f"cannot read config file {path}: {error.strerror}") from None
    if len(data) > MAX_BYTES:
        raise InputError(f"config file {path} is larger than {MAX_BYTES >> 20} MiB")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InputError(f"config file {path} is not UTF-8 text (byte {error.start})") from None
    return parse(text, str(path))


def _line(mark: Any) -> str:
    """A YAML event's line, 1-based; `?` when the parser gave no position."""
    return "?" if mark is None else str(mark.line + 1)


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number a config may hold")


def parse(text: str, source: str = "config") -> dict[str, Any]:
    if len(text) > MAX_BYTES:
        raise InputError(f"{source}: larger than {MAX_BYTES >> 20} MiB")
    if text.lstrip().startswith(("{", "[")):
        try:
            data = json.loads(text, parse_constant=_refuse_constant)
        except json.JSONDecodeError as error:
            raise InputError(f"{source}: invalid JSON at line {error.lineno}, "
                             f"column {error.colno}: {error.msg}") from None
        except ValueError as error:
            raise InputError(f"{source}: invalid JSON: {error}") from None
        except RecursionError:
            raise InputError(f"{source}: nested deeper than {MAX_DEPTH} levels") from None
    else:
        import yaml  # only YAML configs pay for its import

        try:
            _check_yaml_bounds(text, source)
            data = yaml.load(text, Loader=_loader())
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(error, "problem", None) or "syntax error"
            raise InputError(f"{source}: invalid YAML{where}: {problem}") from None
    if not isinstance(data, dict):
        raise InputError(f"{source}: the config must be a mapping with a 'type' key")
    return data


def _loader() -> type:
    """PyYAML's safe loader, in C when it is built in (about ten times faster)."""
    import yaml

    return getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _check_yaml_bounds(text: str, source: str) -> None:
    """Refuse YAML nested too deep or too big once its aliases are expanded.

    Reads the event stream only (no objects are built), counting for every anchor how
    many values it stands for, so nine levels of nine aliases are refused at the sixth.
    """
    import yaml

    anchors: dict[str, int] = {}
    open_nodes: list[list[Any]] = []  # [values so far, anchor] of each unfinished collection
    total = 0

    def add(count: int) -> None:
        nonlocal total
        if open_nodes:
            open_nodes[-1][0] += count
            count = open_nodes[-1][0]
        else:
            total += count
            count = total
        if count > MAX_VALUES:
            raise InputError(f"{source}: more than {MAX_VALUES} values once its YAML aliases "
                             f"are expanded")

    for event in yaml.parse(text, Loader=_loader()):
        if isinstance(event, yaml.CollectionStartEvent):
            open_nodes.append([1, event.anchor])
            if len(open_nodes) > MAX_DEPTH:
                raise InputError(f"{source}: nested deeper than {MAX_DEPTH} levels "
                                 f"(line {_line(event.start_mark)})")
        elif isinstance(event, yaml.CollectionEndEvent):
            count, anchor = open_nodes.pop()
            if anchor:
                anchors[anchor] = count
            add(count)
        elif isinstance(event, yaml.ScalarEvent):
            if event.anchor:
                anchors[event.anchor] = 1
            add(1)
        elif isinstance(event, yaml.AliasEvent):
            add(anchors.get(event.anchor or "", 1))


JSON_SCALARS = (str, int, float, bool, type(None))


def validate_data(data: Any) -> None:
    """Refuse what JSON cannot hold or a config must not: NaN and infinity, bytes
    (`!!binary`), dates, sets, keys that are not strings, and too much depth or size."""
    budget = [MAX_VALUES]

    def walk(value: Any, path: str, depth: int) -> None:
        budget[0] -= 1
        if budget[0] < 0:
            raise ConfigError("", f"more than {MAX_VALUES} values")
        if depth > MAX_DEPTH:
            raise ConfigError(path, f"nested deeper than {MAX_DEPTH} levels")
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    raise ConfigError(path, f"has a key of type {type(key).__name__} "
                                            f"({str(key)[:40]!r}); keys must be strings")
                walk(item, f"{path}.{key}" if path else key, depth + 1)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                walk(item, f"{path}[{index}]", depth + 1)
        elif not isinstance(value, JSON_SCALARS):
            raise ConfigError(path, f"holds a value of type {type(value).__name__}, which a "
                                    f"config cannot hold (strings, numbers, true/false, null, "
                                    f"lists and mappings only)")
        elif isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(path, "must be a finite number (not NaN or infinity)")

    walk(data, "", 0)


def expand_env(data: Any, path: str = "") -> Any:
    """Replace ${VAR} (or ${VAR:-default}) in every string; a missing variable is an error."""
    if isinstance(data, dict):
        return {key: expand_env(value, f"{path}.{key}" if path else str(key))
                for key, value in data.items()}
    if isinstance(data, list):
        return [expand_env(item, f"{path}[{index}]") for index, item in enumerate(data)]
    if isinstance(data, str):
        def substitute(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            value = os.environ.get(name)
            if value is None:
                if default is None:
                    raise ConfigError(path, f"environment variable {name} is not set")
                return default
            return value

        return ENV_REFERENCE.sub(substitute, data)
    return data
