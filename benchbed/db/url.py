"""Which database benchbed uses (no SQLAlchemy import: the fast read path needs this too)."""

import os
import re
from functools import cache

from benchbed import masking, paths, private_files
from benchbed.errors import InputError

# dialect[+driver]:// as SQLAlchemy reads it; the rest is SQLAlchemy's to judge (session.py)
SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9_]*)(\+[A-Za-z0-9_]+)?://")
SHAPE = "dialect[+driver]://user:password@host/database, or sqlite:////absolute/path"


def database_url() -> str:
    """BENCHBED_DATABASE_URL, else a private SQLite file under BENCHBED_HOME.

    A SQLite file is made private (mode 0600) before SQLite opens it, once per process for
    each setting.
    """
    url = os.environ.get("BENCHBED_DATABASE_URL") or None
    if url:
        # a driver's error may quote the URL or its password, whole or in part
        masking.register_url(url)
    return _checked(url, os.environ.get("BENCHBED_HOME"))


@cache
def _checked(url: str | None, _home: str | None) -> str:
    if url is None:
        db_file = paths.home() / "benchbed.sqlite"
        private_files.database(db_file)
        return f"sqlite:///{db_file}"
    scheme = SCHEME.match(url)
    if not scheme:
        raise InputError(f"BENCHBED_DATABASE_URL is not a database URL (expected {SHAPE})")
    if scheme.group(1) == "sqlite":
        path = url[scheme.end():].partition("?")[0]
        if path in ("", "/", "/:memory:"):
            raise InputError("BENCHBED_DATABASE_URL names an in-memory SQLite database, which "
                             "keeps no deployment from one command to the next")
        try:
            private_files.database(path[1:])
        except InputError as error:
            raise InputError(f"BENCHBED_DATABASE_URL: {error}") from None
    return url
