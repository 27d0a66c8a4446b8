"""Read deployment configs (YAML or JSON) and expand ${ENV_VAR} references.

Whatever the input, reading it costs time and memory in proportion to its size (at most
MAX_BYTES): no alias bomb, no integer of thousands of digits, no nesting that exhausts the
stack. YAML is read with the YAML 1.2 core schema (`1:30` stays a string, not 90; `yes`,
`no`, `on` and `off` are strings: booleans are `true` and `false`), and a key given twice in
one mapping is refused, in YAML and JSON alike, with its line. Error messages say where a
problem is, never the value that holds it: a value may be a password.
"""

import json
import math
import os
import re
from pathlib import Path
from typing import Any

from benchbed import masking
from benchbed.errors import ConfigError, InputError

# Bounds that a real config stays far below and a hostile one (an alias bomb, a
# thousand-deep nesting) meets within milliseconds, before anything expands it.
MAX_BYTES = 1 << 20
MAX_DEPTH = 64
MAX_VALUES = 100_000
# Integers are 64-bit signed, as every consumer of a config value (ports, counts, sizes,
# a database column) takes them; the digits are counted before any conversion, which is
# quadratic in their number for decimal ones.
MAX_INT = (1 << 63) - 1
MAX_INT_DIGITS = {10: 19, 8: 21, 16: 16}
# How deep ${A:-${B:-...}} defaults may nest.
MAX_ENV_NESTING = 8

ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
ENV_TOKEN = re.compile(r"\$\{|\}")
YAML_INT = re.compile(r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+")
YAML_FLOAT = re.compile(r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
                        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)")
YAML_BOOL = {"true": True, "True": True, "TRUE": True,
             "false": False, "False": False, "FALSE": False}
YAML_NULL = re.compile(r"~|null|Null|NULL|")
MERGE = "tag:yaml.org,2002:merge"
# Text a YAML library quotes in its messages: a tag, an anchor or alias name, a token. Each
# may be the start of a password written unquoted (`password: !s3cret`, `*s3cret`).
QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")


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


class _Located(ValueError):
    """What the JSON reader refuses without knowing the line; the YAML reader, which reads
    JSON too, is asked again to say where."""


def _line(mark: Any) -> str:
    """A YAML event's line, 1-based; `?` when the parser gave no position."""
    return "?" if mark is None else str(mark.line + 1)


def check_integer(text: str) -> int:
    """The integer `text` (decimal, or YAML's 0o/0x), or a ValueError if it is out of the
    64-bit range; the digits are counted before they are converted."""
    sign = -1 if text.startswith("-") else 1
    digits = text.lstrip("+-")
    base = {"0o": 8, "0x": 16}.get(digits[:2], 10)
    if base != 10:
        digits = digits[2:]
    if len(digits.lstrip("0")) > MAX_INT_DIGITS[base] or int(digits, base) > MAX_INT:
        raise ValueError(f"an integer of {len(digits)} digits is out of range (configs hold "
                         f"integers up to {MAX_INT})")
    return sign * int(digits, base)


def parse(text: str, source: str = "config") -> dict[str, Any]:
    """A config's text as a mapping: JSON when it is JSON, else YAML (a YAML flow mapping
    such as `{type: Ec2Provider, region: eu-west-1}` begins with `{` too)."""
    if len(text) > MAX_BYTES:
        raise InputError(f"{source}: larger than {MAX_BYTES >> 20} MiB")
    if text.lstrip().startswith(("{", "[")):
        data = _parse_json(text, source)
    else:
        data = _parse_yaml(text, source, "YAML")
    if not isinstance(data, dict):
        raise InputError(f"{source}: the config must be a mapping with a 'type' key")
    return data


def _parse_json(text: str, source: str) -> Any:
    def refuse_constant(name: str) -> None:
        raise InputError(f"{source}: invalid JSON: {name} is not a number a config may hold")

    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        mapping = dict(pairs)
        if len(mapping) < len(pairs):
            keys = [key for key, _ in pairs]
            twice = next(key for index, key in enumerate(keys) if key in keys[:index])
            raise _Located(f"duplicate key {_shown(twice)}")
        return mapping

    def integer(digits: str) -> int:
        try:
            return check_integer(digits)
        except ValueError as error:
            raise _Located(str(error)) from None

    try:
        return json.loads(text, parse_constant=refuse_constant, object_pairs_hook=unique,
                          parse_int=integer)
    except _Located as refused:
        try:
            _parse_yaml(text, source, "JSON")
        except InputError as located:
            if str(refused) in str(located):  # the same refusal, with its line
                raise located from None
        raise InputError(f"{source}: invalid JSON: {refused}") from None
    except json.JSONDecodeError as error:
        problem = f"at line {error.lineno}, column {error.colno}: {error.msg}"
    except RecursionError:
        raise InputError(f"{source}: nested deeper than {MAX_DEPTH} levels") from None
    try:
        return _parse_yaml(text, source, "YAML")
    except InputError as not_yaml:
        raise InputError(f"{source}: invalid JSON {problem} (nor is it YAML: "
                         f"{str(not_yaml).removeprefix(f'{source}: ')})") from None


def _parse_yaml(text: str, source: str, kind: str) -> Any:
    import yaml  # only YAML configs pay for its import

    try:
        _check_yaml_bounds(text, source)
        return yaml.load(text, Loader=_loader())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise InputError(f"{source}: invalid {kind}{where}: {_yaml_problem(error)}") from None


def _yaml_problem(error: Any) -> str:
    """The YAML library's problem, without the text of the config it may quote."""
    problem = str(getattr(error, "problem", None) or "syntax error")
    if isinstance(error, _Refusal):
        return problem
    if "constructor for the tag" in problem:
        return "a tag a config cannot hold (quote a value that begins with '!')"
    if "undefined alias" in problem:
        return "an alias that names no anchor (quote a value that begins with '*')"
    if "occurrence" in problem:
        return "an anchor defined twice (quote a value that begins with '&')"
    return QUOTED.sub("'...'", problem)


def _shown(key: Any) -> str:
    """A key as messages show it: quoted, escaped, at most 40 characters."""
    return repr(str(key)[:40])


_LOADER: type | None = None


class _Refusal(Exception):
    """Marks the YAML errors this module raises itself (their text is its own)."""


def _loader() -> type:
    """PyYAML's safe loader (in C when it is built in: about ten times faster) with the
    YAML 1.2 core schema's scalars, bounded integers, and duplicate keys refused."""
    global _LOADER
    if _LOADER is not None:
        return _LOADER
    import yaml
    from yaml.constructor import ConstructorError

    base: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    class Refused(_Refusal, ConstructorError):
        def __init__(self, problem: str, node: Any) -> None:
            ConstructorError.__init__(self, None, None, problem, node.start_mark)

    class Loader(base):
        yaml_implicit_resolvers: dict[Any, Any] = {}
        yaml_constructors = dict(base.yaml_constructors)

        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            if isinstance(node, yaml.MappingNode):
                seen: set[tuple[str, str]] = set()
                for key_node, _ in node.value:
                    if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == MERGE:
                        continue
                    if (key_node.tag, key_node.value) in seen:
                        raise Refused(f"duplicate key {_shown(key_node.value)}", key_node)
                    seen.add((key_node.tag, key_node.value))
            return super().construct_mapping(node, deep=deep)

    def construct_int(loader: Any, node: Any) -> int:
        value = loader.construct_scalar(node)
        if not YAML_INT.fullmatch(value):
            raise Refused("not an integer as YAML 1.2 writes one", node)
        try:
            return check_integer(value)
        except ValueError as error:
            raise Refused(str(error), node) from None

    def construct_float(loader: Any, node: Any) -> float:
        value = loader.construct_scalar(node)
        if not YAML_FLOAT.fullmatch(value):
            raise Refused("not a number as YAML 1.2 writes one", node)
        if value.lower().endswith(".inf"):
            return -math.inf if value.startswith("-") else math.inf
        return math.nan if value.lower() == ".nan" else float(value)

    def construct_bool(loader: Any, node: Any) -> bool:
        value = loader.construct_scalar(node)
        if value not in YAML_BOOL:
            raise Refused("not true or false", node)
        return YAML_BOOL[value]

    Loader.add_constructor("tag:yaml.org,2002:int", construct_int)
    Loader.add_constructor("tag:yaml.org,2002:float", construct_float)
    Loader.add_constructor("tag:yaml.org,2002:bool", construct_bool)
    # PyYAML resolves a plain scalar by the first of these whose pattern matches it whole
    for tag, pattern, first in (("bool", "|".join(YAML_BOOL), "tTfF"),
                                ("int", YAML_INT.pattern, "-+0123456789"),
                                ("float", YAML_FLOAT.pattern, "-+0123456789."),
                                ("null", YAML_NULL.pattern, ["~", "n", "N", ""]),
                                ("merge", "<<", "<")):
        Loader.add_implicit_resolver(f"tag:yaml.org,2002:{tag}",
                                     re.compile(f"^(?:{pattern})$"), list(first))
    _LOADER = Loader
    return Loader


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


def expand_env(data: Any, path: str = "", secret: bool = False) -> Any:
    """Replace ${VAR} (or ${VAR:-default}, whose default may hold references in turn) in
    every string; a missing variable is an error naming the path (and, unless the value
    is a secret, the variable)."""
    if isinstance(data, dict):
        return {key: expand_env(value, f"{path}.{key}" if path else str(key),
                                secret or masking.is_secret_key(str(key)))
                for key, value in data.items()}
    if isinstance(data, list):
        return [expand_env(item, f"{path}[{index}]", secret)
                for index, item in enumerate(data)]
    if isinstance(data, str) and "${" in data:
        return _expand(data, 0, 0, True, path, secret)[0]
    return data


def _expand(text: str, start: int, depth: int, needed: bool, path: str, secret: bool
            ) -> tuple[str, int]:
    """Expand text from `start` to its end or, in a default (`depth` > 0), to the `}` that
    closes it; return the expansion and where it stopped. A default that is not `needed`
    (its variable is set) is only scanned: what it names need not exist."""
    parts: list[str] = []
    position = start
    for token in ENV_TOKEN.finditer(text, start):
        if token.start() < position:
            continue
        if token.group() == "}":
            if depth:
                parts.append(text[position:token.start()])
                return "".join(parts), token.start()
            continue
        name = ENV_NAME.match(text, token.end())
        if name is None:
            continue  # `${1}`, `${ x}`: not a reference, kept as written
        after = name.end()
        if text.startswith("}", after):
            value, end = _lookup(name.group(), needed, path, secret), after
        elif text.startswith(":-", after):
            if depth >= MAX_ENV_NESTING:
                raise ConfigError(path, f"${{...:-...}} defaults nested deeper than "
                                        f"{MAX_ENV_NESTING} levels")
            found = os.environ.get(name.group()) if needed else ""
            default, end = _expand(text, after + 2, depth + 1, needed and found is None,
                                   path, secret)
            value = default if found is None else found
        else:
            continue  # `${NAME-x}`, `${NAME#x}`: shell syntax, kept as written
        if end >= len(text):
            raise ConfigError(path, "has a ${NAME:-default} reference without its closing "
                                    "'}'")
        parts.append(text[position:token.start()])
        parts.append(value)
        position = end + 1
    parts.append(text[position:])
    return "".join(parts), len(text)


def _lookup(name: str, needed: bool, path: str, secret: bool) -> str:
    if not needed:
        return ""
    value = os.environ.get(name)
    if value is None:
        if secret:
            raise ConfigError(path, "names an environment variable that is not set (its "
                                    "name is not shown: the value is a secret)")
        raise ConfigError(path, f"environment variable {name} is not set")
    return value
