"""The queries' one way to the database: SQL text with `:name` parameters, in a transaction.

Every command is a fresh process, and importing SQLAlchemy costs as much as `deployment
create` of a deployment that makes nothing may take in all (docs/benchmarks.md). So benchbed's
queries are plain SQL that SQLite and PostgreSQL both read: on a SQLite database whose
schema is at the head revision the standard library's sqlite3 runs them, anywhere else
(PostgreSQL, or a schema that Alembic must migrate first) SQLAlchemy's `text()` does. The
schema itself lives in benchbed/db/models.py and its migrations, for both.
"""

import json
import re
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from benchbed.db.fastread import HEAD_REVISION
from benchbed.db.url import database_url
from benchbed.errors import DatabaseError

# Columns stored as JSON text, and as timestamps, in SQLAlchemy's formats (models.py).
JSON_COLUMNS = frozenset({"config", "endpoints", "data", "tags", "versions", "scenarios",
                          "deployment_timeline", "atomic"})
TIME_COLUMNS = frozenset({"created_at", "updated_at", "lease_since", "started_at",
                          "finished_at"})
SQLITE_PRAGMAS = ("PRAGMA foreign_keys=ON", "PRAGMA busy_timeout=30000",
                  "PRAGMA journal_mode=WAL",
                  # under WAL this stays consistent after a crash; only a power loss can undo
                  # the last commits
                  "PRAGMA synchronous=NORMAL")


def utcnow() -> datetime:
    """Naive UTC: what the timestamp columns hold."""
    return datetime.now(UTC).replace(tzinfo=None)


class IntegrityViolation(Exception):
    """A unique or foreign key constraint refused the statement."""


class Record(dict):
    """One result row: by column name, as `row["name"]` or `row.name`."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class Connection:
    """A transaction's connection: `execute` returns the rows, `count` the rows changed."""

    def __init__(self, run: Any, sqlite: bool) -> None:
        self._run = run
        self._sqlite = sqlite

    def execute(self, sql: str, **params: Any) -> list[Record]:
        return self._run(sql, {name: self._encode(value) for name, value in params.items()})[0]

    def count(self, sql: str, **params: Any) -> int:
        """Run an UPDATE or DELETE; the number of rows it changed."""
        return self._run(sql, {name: self._encode(value) for name, value in params.items()})[1]

    def first(self, sql: str, **params: Any) -> Record | None:
        rows = self.execute(sql, **params)
        return rows[0] if rows else None

    def _encode(self, value: Any) -> Any:
        if isinstance(value, dict | list):
            return json.dumps(value)
        if self._sqlite and isinstance(value, datetime):
            return value.isoformat(sep=" ", timespec="microseconds")
        return value


def _decode(names: list[str], row: Any) -> Record:
    """A row as Python values; a value benchbed never writes (the database edited by hand or
    damaged) is a DatabaseError naming the column, not a traceback."""
    record = Record(zip(names, row, strict=True))
    for name, value in record.items():
        if not isinstance(value, str):
            continue
        try:
            if name in JSON_COLUMNS:
                record[name] = json.loads(value)
            elif name in TIME_COLUMNS:
                record[name] = datetime.fromisoformat(value)
        except ValueError:
            kind = "JSON" if name in JSON_COLUMNS else "a time"
            raise DatabaseError(f"database: column {name} holds {value[:40]!r}, which is "
                                f"not {kind}; the database was changed outside benchbed"
                                ) from None
    return record


_local = threading.local()
_ready: set[str] = set()


def _sqlite_connection(path: str) -> sqlite3.Connection:
    """This thread's connection to the file (one per thread, as sqlite3 requires)."""
    connections = _local.__dict__.setdefault("connections", {})
    if path not in connections:
        connection = sqlite3.connect(path, timeout=30, isolation_level=None)
        for pragma in SQLITE_PRAGMAS:
            connection.execute(pragma)
        connections[path] = connection
    return connections[path]


def _sqlite_at_head(url: str) -> bool:
    """A SQLite database whose schema needs no migration (checked once per process)."""
    if not url.startswith("sqlite:///"):
        return False
    if url in _ready:
        return True
    try:
        version = _sqlite_connection(url.removeprefix("sqlite:///")).execute(
            "SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.Error:
        version = None
    if version != (HEAD_REVISION,):
        from benchbed.db.session import engine

        engine()  # migrates (or says why the database cannot be opened)
    _ready.add(url)
    return True


@contextmanager
def transaction() -> Iterator[Connection]:
    """A transaction: committed when the block ends, rolled back on error."""
    url = database_url()
    if _sqlite_at_head(url):
        connection = _sqlite_connection(url.removeprefix("sqlite:///"))

        def run(sql: str, params: dict[str, Any]) -> tuple[list[Record], int]:
            try:
                cursor = connection.execute(sql, params)
            except sqlite3.IntegrityError as error:
                raise IntegrityViolation(str(error)) from None
            except sqlite3.Error as error:
                raise _database_error(error) from None
            names = [column[0] for column in cursor.description or ()]
            return [_decode(names, row) for row in cursor.fetchall()], cursor.rowcount

        # the write lock first: a read-then-write transaction that waits for it cannot be
        # refused halfway because another writer committed since its read
        try:
            connection.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as error:
            raise _database_error(error) from None
        try:
            yield Connection(run, sqlite=True)
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
        try:
            connection.execute("COMMIT")
        except sqlite3.Error as error:
            raise _database_error(error) from None
        return
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError, IntegrityError

    from benchbed.db.session import transaction as sqlalchemy_transaction

    def run_sqlalchemy(db: Any, sql: str, params: dict[str, Any]
                       ) -> tuple[list[Record], int]:
        try:
            result = db.execute(text(sql), params)
        except IntegrityError as error:
            raise IntegrityViolation(str(error.orig)) from None
        if not result.returns_rows:
            return [], result.rowcount
        names = list(result.keys())
        return [_decode(names, row) for row in result.all()], result.rowcount

    try:
        with sqlalchemy_transaction() as db:
            yield Connection(lambda sql, params: run_sqlalchemy(db, sql, params), sqlite=False)
    except DBAPIError as error:
        raise _database_error(error.orig or error, _server(url)) from None


def _server(url: str) -> str:
    """host:port of a database server, without the URL's user and password."""
    from sqlalchemy import make_url

    parsed = make_url(url)
    return f"{parsed.host or 'localhost'}:{parsed.port or 5432}"


# libpq's words for a connection a stopping or restarting server cut or refused
CONNECTION_LOST = ("server closed the connection", "terminating connection",
                   "connection already closed", "could not receive data from server",
                   "SSL connection has been closed", "the database system is shutting down",
                   "the database system is starting up", "Connection refused")
# libpq's prefix of a failed connection, and the severity word of the server's message
LIBPQ_PREFIX = re.compile(r'^connection to server (?:at|on) "[^"]*"(?: \([^)]*\))?, '
                          r"port \d+ failed: |^(?:FATAL|ERROR|PANIC):\s+")


def _database_error(error: BaseException, server: str | None = None) -> DatabaseError:
    """The driver's own first line, without the statement and its parameters (which may hold
    secrets) that SQLAlchemy appends: a database that went away or a disk that is full is a
    fault of the world, not an internal error. A PostgreSQL server that stopped or restarted
    mid-command is said so, in words of benchbed's, not libpq's `FATAL:` lines."""
    lines = str(error).strip().splitlines()
    first = lines[0] if lines else type(error).__name__
    while LIBPQ_PREFIX.match(first):
        first = LIBPQ_PREFIX.sub("", first, count=1)
    first = " ".join(first.split())
    if server is not None and any(text in first for text in CONNECTION_LOST):
        return DatabaseError(f"database: the connection to PostgreSQL at {server} was lost "
                             f"({first}): the server stopped or restarted mid-command")
    return DatabaseError(f"database: {first}")


def forget_connections() -> None:
    """Close this thread's connections and forget which databases were checked (tests)."""
    for connection in _local.__dict__.pop("connections", {}).values():
        connection.close()
    _ready.clear()
