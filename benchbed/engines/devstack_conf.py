"""DevStack's local.conf, rendered so that every value arrives as the literal string it is.

`[[local|localrc]]` is sourced by bash: each value is single-quoted (ANSI-C `$'...'` when it
holds a control character, so every assignment stays on one line and no value can start a
section of its own). `[[post-config|FILE]]` blocks go through DevStack's merge_config_file,
which reads each line with `read` (no -r), `eval`s it inside double quotes and hands the value
to `iniset` unquoted: values are escaped for those two layers, and what `iniset` itself
cannot carry literally (globs, backslashes, runs of spaces) is refused at validation.
"""

import re
from collections.abc import Mapping, Sequence
from typing import Any

from benchbed.errors import ConfigError

KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\+?")
# A post-config file: a path, optionally after one of DevStack's variables ($NOVA_CONF).
CONFIG_FILE = re.compile(r"(\$\{?[A-Za-z_][A-Za-z0-9_]*\}?)?[A-Za-z0-9_./-]*")
INI_NAME = re.compile(r"[A-Za-z0-9_.:-]+")
PLUGIN_NAME = re.compile(r"[A-Za-z0-9_.-]+")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Characters iniset mangles: `echo $value` globs and splits, sed reads backslashes.
INISET_UNSAFE = re.compile(r"[\\*?\[]|\s{2,}|^\s|\s$|^-|[\x00-\x1f\x7f]")

Value = str | int | float | bool


def scalar(value: Value) -> str:
    """A config scalar as DevStack spells it (booleans as True/False)."""
    if isinstance(value, bool):
        return "True" if value else "False"
    return str(value)


def bash_literal(text: str) -> str:
    """A bash word that reads back as exactly `text`."""
    if not CONTROL.search(text):
        return "'" + text.replace("'", "'\\''") + "'"
    escaped = []
    for char in text:
        if char in "\\'":
            escaped.append("\\" + char)
        elif CONTROL.match(char):
            escaped.append(f"\\x{ord(char):02x}")
        else:
            escaped.append(char)
    return "$'" + "".join(escaped) + "'"


def post_config_value(text: str) -> str:
    """A value escaped for `read` then `eval "iniset ... \\"VALUE\\""` in merge_config_file."""
    quoted = re.sub(r'([$`"])', r"\\\1", text)
    return quoted.replace("\\", "\\\\")


def check(path: str, settings: Mapping[str, Mapping[str, Any]], plugins: Mapping[str, str],
          post_config: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> None:
    """Refuse what cannot be rendered literally, naming the config path.

    `settings`: the [[local|localrc]] settings by the config key that holds them
    (local_conf, localrc); `plugins`: enable_plugin; `post_config`: the post-config blocks.
    """
    def where(*parts: str) -> str:
        return ".".join(p for p in (path, *parts) if p)

    for section, values in settings.items():
        for key, value in values.items():
            if not KEY.fullmatch(key):
                raise ConfigError(where(section, key), "is not a shell variable name "
                                  "(letters, digits, _; may end in + to append)")
            if isinstance(value, dict | list) or value is None:
                raise ConfigError(where(section, key), "must be a string, number or boolean")
    for name, spec in plugins.items():
        if not PLUGIN_NAME.fullmatch(name):
            raise ConfigError(where("enable_plugin", name), "is not a plugin name")
        words = str(spec).split()
        if not 1 <= len(words) <= 2:
            raise ConfigError(where("enable_plugin", name), "must be 'URL' or 'URL BRANCH'")
    for file, sections in post_config.items():
        if not file or not CONFIG_FILE.fullmatch(file):
            raise ConfigError(where("post_config", file), "must be a path, optionally after "
                              "one DevStack variable ($NOVA_CONF, ${KEYSTONE_CONF})")
        for section, options in sections.items():
            if not INI_NAME.fullmatch(section):
                raise ConfigError(where("post_config", file, section),
                                  "is not an ini section name")
            for option, value in options.items():
                if not INI_NAME.fullmatch(option):
                    raise ConfigError(where("post_config", file, section, option),
                                      "is not an ini option name")
                if INISET_UNSAFE.search(scalar(value)):
                    raise ConfigError(where("post_config", file, section, option),
                                      "DevStack's iniset would change this value (it globs "
                                      "and word-splits it, and reads backslashes): no \\ * ? "
                                      "[, control characters, runs of or outer spaces, or "
                                      "leading -")


def render(settings: Mapping[str, Value], *, plugins: Mapping[str, str] | None = None,
           post_config: Mapping[str, Mapping[str, Mapping[str, Value]]] | None = None,
           disabled: Sequence[str] = ()) -> str:
    """local.conf text: settings in order, a `disable_service` line, then `enable_plugin`
    lines, then post-config."""
    lines = ["[[local|localrc]]"]
    for key, value in settings.items():
        operator = "+=" if key.endswith("+") else "="
        lines.append(f"{key.removesuffix('+')}{operator}{bash_literal(scalar(value))}")
    if disabled:
        lines.append(" ".join(["disable_service", *map(bash_literal, disabled)]))
    for name, spec in (plugins or {}).items():
        lines.append(" ".join(["enable_plugin", name, *map(bash_literal, spec.split())]))
    for file, sections in (post_config or {}).items():
        lines.append("")
        lines.append(f"[[post-config|{file}]]")
        for section, options in sections.items():
            lines.append(f"[{section}]")
            lines.extend(f"{option} = {post_config_value(scalar(value))}"
                         for option, value in options.items())
    return "\n".join(lines) + "\n"
