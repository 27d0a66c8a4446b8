"""Read deployment configs (YAML or JSON) and expand ${ENV_VAR} references."""

import json
import os
import re
from pathlib import Path
from typing import Any

from benchbed.errors import ConfigError, InputError

ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def load_file(path: str | Path) -> dict[str, Any]:
    """Parse a config file; the error names the file and the line of a syntax error."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise InputError(f"config file {path} does not exist") from None
    except OSError as error:
        raise InputError(f"cannot read config file {path}: {error.strerror}") from None
    return parse(text, str(path))


def parse(text: str, source: str = "config") -> dict[str, Any]:
    if text.lstrip().startswith(("{", "[")):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise InputError(f"{source}: invalid JSON at line {error.lineno}, "
                             f"column {error.colno}: {error.msg}") from None
    else:
        import yaml  # only YAML configs pay for it (about 10 ms)

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(error, "problem", None) or "syntax error"
            raise InputError(f"{source}: invalid YAML{where}: {problem}") from None
    if not isinstance(data, dict):
        raise InputError(f"{source}: the config must be a mapping with a 'type' key")
    return data


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
