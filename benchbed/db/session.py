"""Database engine and transactions; the schema is migrated with Alembic on first use."""

import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect, make_url, text
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError

from benchbed import masking
from benchbed.db.fastread import HEAD_REVISION
from benchbed.db.url import database_url
from benchbed.errors import BenchbedError, InputError
from benchbed.plugin import not_installed

MIGRATIONS = Path(__file__).with_name("migrations")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA journal_mode=WAL")
    # Under WAL this stays consistent after a crash; only a power loss can undo the last commits.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


@cache
def engine() -> Engine:
    url = database_url()
    try:
        # pre-ping: a pooled connection a server restart has cut is replaced, not used
        db_engine = create_engine(url, future=True, pool_pre_ping=True)
    except ModuleNotFoundError as error:
        raise InputError(f"the database {make_url(url).render_as_string(hide_password=True)} "
                         f"{_missing_driver(error)}") from None
    except (ArgumentError, ValueError) as error:  # NoSuchModuleError is an ArgumentError
        raise InputError(f"BENCHBED_DATABASE_URL: {str(error).splitlines()[0][:300]}") from None
    if db_engine.dialect.name == "sqlite":
        event.listen(db_engine, "connect", _sqlite_pragmas)
    _migrate_if_needed(db_engine)
    return db_engine


# database drivers -> the extra of benchbed that installs each
DRIVER_EXTRAS = {"psycopg2": "postgres"}


def _missing_driver(error: ModuleNotFoundError) -> str:
    """What to install for a driver SQLAlchemy could not import (the pip line of its extra)."""
    module = error.name or str(error)
    return not_installed(module, DRIVER_EXTRAS.get(module))


def _migrate_if_needed(db_engine: Engine) -> None:
    """Upgrade to the head revision; the cheap version check keeps Alembic off the fast path.

    Several commands may start at once on a fresh database: the upgrade runs under a lock
    (`_migration_lock`) and only if the version, read again under it, is still not the head,
    so one process migrates and the others find the schema made.
    """
    if _current_revision(db_engine, under_lock=False) == HEAD_REVISION:
        return
    with _migration_lock(db_engine):
        if _current_revision(db_engine, under_lock=True) == HEAD_REVISION:
            return
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection_engine"] = db_engine
        command.upgrade(config, "head")


def _current_revision(db_engine: Engine, under_lock: bool) -> str | None:
    """The schema's revision, None when there is no schema yet.

    Only a missing version table means "no schema yet": any other error (a refused login,
    an unreachable server, a corrupt file) stops here rather than running migrations. Read
    without the lock, a version table that exists but cannot be read may be one another
    process is making: that is settled under the lock.
    """
    try:
        with db_engine.connect() as conn:
            try:
                current: str | None = conn.execute(
                    text("SELECT version_num FROM alembic_version")).scalar()
            except SQLAlchemyError:
                conn.rollback()
                if under_lock and inspect(conn).has_table("alembic_version"):
                    raise
                current = None
    except SQLAlchemyError as error:
        raise BenchbedError(f"cannot open the database {_safe_url(db_engine)}: "
                            f"{_first_line(error)}") from None
    return current


# pg_advisory_lock's key for the schema migration ("benchbed" in ASCII)
MIGRATION_LOCK_KEY = 0x62656E6368626564
MIGRATION_LOCK_SECONDS = 120


@contextmanager
def _migration_lock(db_engine: Engine) -> Iterator[None]:
    """Serialize migrations of one database: a file lock beside a SQLite file (where its
    own -wal and -shm files live, so every home or URL naming that file shares it), a
    PostgreSQL advisory lock on the server (shared by every machine using the database)."""
    if db_engine.dialect.name == "postgresql":
        try:
            with db_engine.connect() as conn:
                conn.execute(text(f"SET lock_timeout = '{MIGRATION_LOCK_SECONDS}s'"))
                conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
                try:
                    yield
                finally:
                    conn.execute(text("SELECT pg_advisory_unlock(:key)"),
                                 {"key": MIGRATION_LOCK_KEY})
        except SQLAlchemyError as error:
            raise BenchbedError(f"cannot migrate the database {_safe_url(db_engine)}: "
                                f"{_first_line(error)}") from None
        return
    database = db_engine.url.database
    if db_engine.dialect.name != "sqlite" or not database or database == ":memory:":
        # an in-memory SQLite database has no other process; benchbed supports no third
        # kind of database, and another one gets no lock
        yield
        return
    from benchbed.lease import file_lock

    with file_lock(Path(f"{database}.migrate-lock"), "the database schema migration",
                   timeout=MIGRATION_LOCK_SECONDS):
        yield


def _safe_url(db_engine: Engine) -> str:
    """The URL without its password, in the userinfo or in a query parameter."""
    return masking.scrub(db_engine.url.render_as_string(hide_password=True))


def _first_line(error: SQLAlchemyError) -> str:
    original = getattr(error, "orig", None) or error
    return (str(original).strip().splitlines() or [type(original).__name__])[0][:300]


@contextmanager
def transaction() -> Iterator[Connection]:
    """A transaction: committed when the block ends, rolled back on error."""
    db_engine = engine()
    with _connect(db_engine) as connection, connection.begin():
        yield connection


# How long a new connection waits for a PostgreSQL server that is restarting (refusing,
# shutting down or starting up): a restart takes a few seconds; a server that is down for
# good is still named within the bound docs/guarantees.md states.
RESTART_SECONDS = 20
RESTARTING = ("the database system is shutting down", "the database system is starting up",
              "Connection refused", "server closed the connection unexpectedly",
              "terminating connection due to administrator command")


# When the wait for the present outage ends, shared by the threads of this process: an
# outage is waited for once, then every further connection fails at once (None: no outage).
_outage_ends: float | None = None


def _connect(db_engine: Engine) -> Connection:
    """A connection; to a PostgreSQL server that is restarting, once it accepts again."""
    global _outage_ends
    if db_engine.dialect.name == "sqlite":
        return db_engine.connect()
    delay = 0.1
    while True:
        try:
            connection = db_engine.connect()
        except OperationalError as error:
            if not any(text_ in str(error) for text_ in RESTARTING):
                raise
            now = time.monotonic()
            if _outage_ends is None:
                _outage_ends = now + RESTART_SECONDS
            if now >= _outage_ends:
                raise
            time.sleep(min(delay, _outage_ends - now))
            delay = min(delay * 2, 1.0)
            continue
        _outage_ends = None
        return connection
