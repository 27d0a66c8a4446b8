"""Keep secrets out of every output: keys named like secrets are masked, known values scrubbed."""

import logging
import re
import threading
from typing import Any

MASK = "***"
SECRET_KEY_PATTERN = re.compile(r"(password|passwd|secret|token|private_key|^key$|_key$)", re.I)
# scheme://user:password@host: the whole userinfo goes, whoever it names (a password may hold
# '/', '?' or '#' where a lenient parser such as SQLAlchemy's takes it, so any but '@' counts)
URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)(?:[^/?#@\s]*|[^/:@\s]*:[^@\s]*)@")
# Secrets that third-party text spells as an assignment: `password=...` in a URL's query or a
# DSN, `'token': '...'` in a dict or JSON, `X-Auth-Token: ...` in a header.
_SECRET_WORD = r"[\w.-]*(?:password|passwd|secret|token|api_?key|access_?key|private_?key)"
# (a value masked already is left as it is, with what follows it)
_VALUE = r"(?!\*\*\*)(?:'[^'\n]*'|\"[^\"\n]*\"|[^\s&;,'\"}\]]+)"
SECRET_ASSIGNMENTS = (
    re.compile(rf"(?i)\b({_SECRET_WORD}\s*=\s*){_VALUE}"),
    re.compile(rf"(?i)(([\"']){_SECRET_WORD}\2\s*:\s*){_VALUE}"),
    re.compile(r"(?i)\b((?:x-auth-token|x-subject-token|authorization)\s*:\s*)"
               r"(?:(?:basic|bearer|token)\s+)?\S+"),
)

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


def register_url(url: str) -> None:
    """Register the secrets a URL carries: its password, as written and percent-decoded
    (read both as a strict parser does, up to the first '@', and as SQLAlchemy does, up to
    the last), and the values of its secret-named query parameters."""
    from urllib.parse import unquote, unquote_plus

    rest = url.partition("://")[2]
    authority, _, query = rest.partition("?")
    candidates = []
    for userinfo in {authority.partition("@")[0], authority.rpartition("@")[0]}:
        if "@" in authority and ":" in userinfo:
            candidates.append(userinfo.split(":", 1)[1])
    for parameter in query.split("&"):
        key, _, value = parameter.partition("=")
        if is_secret_key(unquote_plus(key)):
            candidates.append(value)
    for secret in candidates:
        for form in (secret, unquote(secret), unquote_plus(secret)):
            register(form)


def scrub(text: str) -> str:
    """`text` without a secret: every registered secret value, the userinfo of every URL
    and the value of every secret-named assignment masked. Every message that leaves
    benchbed (errors, logs, check details) passes here, third-party exception text included."""
    with _lock:
        secrets = sorted(_known_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    text = URL_USERINFO.sub(rf"\1{MASK}@", text)
    for assignment in SECRET_ASSIGNMENTS:
        text = assignment.sub(rf"\1{MASK}", text)
    return text


class ScrubFilter(logging.Filter):
    """Logging filter that scrubs every record: its message, and the traceback and stack it
    carries (an exception's text, a library's included, is formatted here, then scrubbed)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = scrub(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        return True
