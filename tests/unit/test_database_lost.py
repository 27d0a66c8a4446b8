"""A PostgreSQL server that stops or restarts mid-command: one line in benchbed's words."""

import pytest

from benchbed.db.sql import _database_error
from benchbed.errors import DatabaseError
from benchbed.parallel import ParallelError, run_parallel

SERVER = "127.0.0.1:5432"


@pytest.mark.parametrize("driver_text", [
    "server closed the connection unexpectedly\n\tThis probably means the server terminated "
    "abnormally\n\tbefore or while processing the request.",
    'connection to server at "127.0.0.1", port 5432 failed: FATAL:  the database system is '
    "shutting down",
    "terminating connection due to administrator command\nserver closed the connection",
    'connection to server at "127.0.0.1", port 5432 failed: Connection refused\n\tIs the '
    "server running on that host and accepting TCP/IP connections?",
])
def test_a_lost_server_is_one_line_without_libpq_words(driver_text: str) -> None:
    message = str(_database_error(Exception(driver_text), SERVER))
    assert message.startswith(f"database: the connection to PostgreSQL at {SERVER} was lost (")
    assert message.endswith("): the server stopped or restarted mid-command")
    assert "\n" not in message and "\t" not in message
    assert "FATAL" not in message and "connection to server at" not in message


def test_other_database_errors_keep_the_drivers_first_line() -> None:
    error = Exception('ERROR:  relation "deployments" does not exist\nLINE 1: SELECT')
    assert str(_database_error(error, SERVER)) == \
        'database: relation "deployments" does not exist'
    assert str(_database_error(Exception("disk I/O error"))) == "database: disk I/O error"


def fail(item: int) -> int:
    if item == 0:
        raise RuntimeError("host 0 refused")
    if item % 2:
        raise DatabaseError(f"database: lost ({item})")
    return item


def test_a_lost_database_among_parallel_failures_is_said_once() -> None:
    with pytest.raises(DatabaseError) as raised:
        run_parallel("creating hosts", list(range(6)), fail)
    assert str(raised.value).startswith("database: lost (")
    with pytest.raises(ParallelError, match="failed for 1 item"):
        run_parallel("creating hosts", [0, 2], fail)
