"""The digests of (schema, config) pairs that passed jsonschema, so that the same pair skips it.

Benchmark runs create the same deployment many times a day, and importing jsonschema is a
large part of what `deployment create` of a deployment that makes nothing costs
(docs/benchmarks.md).
A pass is remembered only for the exact JSON value of the schema and of the config (keys
and types included), under the validator's revision and jsonschema's version; a pair that
cannot be written as plain JSON, or any failure, always goes through jsonschema, and so
does everything a schema cannot say (each plugin's `validate_config`). The file lives in
BENCHBED_HOME, mode 0600, next to the database that holds the configs themselves.
"""

import hashlib
import json
from functools import cache
from pathlib import Path
from typing import Any

from benchbed import paths, private_files

# Bump when benchbed's own checks (plugin._pattern, _is_integer, _is_number) change meaning.
REVISION = "1"
KEEP = 1000
FILE_NAME = "schema-passes"


def digest(schema: dict[str, Any], config: Any) -> str | None:
    """The pair's digest, or None when it is not plain JSON (a non-string key, NaN, a date)."""
    if not _plain(config):
        return None
    try:
        text = json.dumps([REVISION, _jsonschema_version(), schema, config], sort_keys=True,
                          allow_nan=False)
    except (TypeError, ValueError):
        return None
    return hashlib.sha256(text.encode()).hexdigest()


def passed(key: str | None) -> bool:
    return key is not None and key in _known(paths.home())


def remember(key: str | None) -> None:
    """Append the digest; past 2 x KEEP lines the file keeps the newest KEEP."""
    if key is None:
        return
    home = paths.home()
    known = _known(home)
    known.append(key)
    path = home / FILE_NAME
    if len(known) > 2 * KEEP:
        del known[:-KEEP]
        paths.write_private(path, "".join(f"{line}\n" for line in known))
        return
    private_files.append(path, f"{key}\n")


def _plain(value: Any) -> bool:
    """Strings as keys, and nothing JSON would write the same as another value."""
    if isinstance(value, dict):
        return all(isinstance(key, str) and _plain(item) for key, item in value.items())
    if isinstance(value, list):
        return all(_plain(item) for item in value)
    return value is None or isinstance(value, str | int | float | bool)


@cache
def _known(home: Path) -> list[str]:
    try:
        return (home / FILE_NAME).read_text(encoding="ascii").split()
    except (OSError, UnicodeDecodeError):
        return []


@cache
def _jsonschema_version() -> str:
    from importlib.metadata import version

    return version("jsonschema")
