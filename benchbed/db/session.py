"""Database engine and transactions; the schema is migrated with Alembic on first use."""

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from benchbed import masking
from benchbed.db.fastread import HEAD_REVISION
from benchbed.db.url import database_url
from benchbed.errors import BenchbedError, InputError

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
        db_engine = create_engine(url, future=True)
    except (ArgumentError, ValueError) as error:  # NoSuchModuleError is an ArgumentError
        raise InputError(f"BENCHBED_DATABASE_URL: {str(error).splitlines()[0][:300]}") from None
    if db_engine.dialect.name == "sqlite":
        event.listen(db_engine, "connect", _sqlite_pragmas)
    _migrate_if_needed(db_engine)
    return db_engine


def _migrate_if_needed(db_engine: Engine) -> None:
    """Upgrade to the head revision; the cheap version check keeps Alembic off the fast path.

    Only a missing version table means "no schema yet": any other error (a refused login,
    an unreachable server, a corrupt file) stops here rather than running migrations.
    """
    try:
        with db_engine.connect() as conn:
            try:
                current = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
            except SQLAlchemyError:
                conn.rollback()
                if inspect(conn).has_table("alembic_version"):
                    raise
                current = None
    except SQLAlchemyError as error:
        raise BenchbedError(f"cannot open the database {_safe_url(db_engine)}: "
                            f"{_first_line(error)}") from None
    if current == HEAD_REVISION:
        return
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection_engine"] = db_engine
    command.upgrade(config, "head")


def _safe_url(db_engine: Engine) -> str:
    """The URL without its password, in the userinfo or in a query parameter."""
    return masking.scrub(db_engine.url.render_as_string(hide_password=True))


def _first_line(error: SQLAlchemyError) -> str:
    original = getattr(error, "orig", None) or error
    return (str(original).strip().splitlines() or [type(original).__name__])[0][:300]


@contextmanager
def transaction() -> Iterator[Connection]:
    """A transaction: committed when the block ends, rolled back on error."""
    with engine().begin() as connection:
        yield connection
