"""Keep secrets out of every output: keys named like secrets are masked, known values scrubbed."""

import logging
import re
import threading
from typing import Any

MASK = "***"
SECRET_KEY_PATTERN = re.compile(r"(password|passwd|secret|token|private_key|^key$|_key$)", re.I)

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
    """Register every value under a secret-named key, at any depth."""
    if isinstance(data, dict):
        for key, value in data.items():
            if isinstance(value, str) and _hides_secret(str(key), value):
                register(value)
            else:
                register_from(value)
    elif isinstance(data, list):
        for item in data:
            register_from(item)


def _hides_secret(key: str, value: Any) -> bool:
    if value in (None, "") or isinstance(value, dict | list | bool) or not is_secret_key(key):
        return False
    # `key` names a key file as often as it holds the key itself; only the latter is secret.
    return key != "key" or "PRIVATE KEY" in str(value)


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
    """Replace every registered secret value found in `text`."""
    with _lock:
        secrets = sorted(_known_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


class ScrubFilter(logging.Filter):
    """Logging filter that scrubs registered secrets from every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = scrub(record.getMessage())
        record.args = None
        return True
