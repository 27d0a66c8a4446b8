"""Keep secrets out of every output: keys named like secrets are masked, known values scrubbed."""

import logging
import re
import threading
from typing import Any

MASK = "***"
SECRET_KEY_PATTERN = re.compile(r"(password|passwd|secret|token|private_key|^key$|_key$)", re.I)
# scheme://user:password@host: the whole userinfo goes, whoever it names
URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/?#@\s]*@")

_known_secrets: set[str] = set()
_lock = threading.Lock()


def is_secret_key(key: str) -> bool:
    """True for dict keys whose value must never be shown (password, token, key, ...)."""
    return bool(SECRET_KEY_PATTERN.search(key)) and not key.endswith(("_file", "_path"))


def register(value: str | None) -> None:
    """Remember a secret value so that `scrub` removes it from any text."""
    if value and len(value) >= 4:
        with _lock:
            _known_secrets.add(value)


def register_from(data: Any) -> None:
    """Register every value under a secret-named key, at any depth, whatever its type."""
    if isinstance(data, dict):
        for key, value in data.items():
            if _hides_secret(str(key), value):
                _register_all(value)
            else:
                register_from(value)
    elif isinstance(data, list):
        for item in data:
            register_from(item)


def _register_all(value: Any) -> None:
    """Every scalar inside a secret (a list of passwords, a number, bytes)."""
    if isinstance(value, dict):
        for item in value.values():
            _register_all(item)
    elif isinstance(value, list):
        for item in value:
            _register_all(item)
    elif isinstance(value, bytes):
        register(value.decode("utf-8", "replace"))
    elif value is not None and not isinstance(value, bool):
        register(str(value))


def _hides_secret(key: str, value: Any) -> bool:
    if value is None or value == "" or not is_secret_key(key):
        return False
    # `key` names a key file as often as it holds the key itself; only the latter is secret.
    if key == "key" and isinstance(value, str):
        return "PRIVATE KEY" in value or "\n" in value
    return True


def mask(data: Any) -> Any:
    """Return a copy of `data` with every secret-named value replaced by the mask."""
    if isinstance(data, dict):
        return {key: MASK if _hides_secret(str(key), value) else mask(value)
                for key, value in data.items()}
    if isinstance(data, list):
        return [mask(item) for item in data]
    if isinstance(data, str):
        return scrub(data)
    return data


def scrub(text: str) -> str:
    """Replace every registered secret value, and the userinfo of every URL, in `text`."""
    with _lock:
        secrets = sorted(_known_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return URL_USERINFO.sub(rf"\1{MASK}@", text)


class ScrubFilter(logging.Filter):
    """Logging filter that scrubs registered secrets from every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = scrub(record.getMessage())
        record.args = None
        return True
