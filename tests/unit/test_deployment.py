"""Status machine, compare-and-set, lease and timeline, against SQLite and PostgreSQL."""

import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from benchbed.db.session import HEAD_REVISION, MIGRATIONS
from benchbed.deployment import TRANSITIONS, Deployment, Status
from benchbed.errors import BusyError, InputError, NotFoundError, StatusError
from benchbed.lease import Holder

CONFIG = {"type": "ExistingCloud", "auth_url": "http://127.0.0.1:1/v3",
          "admin": {"username": "admin", "password": "Seeded-Pass-1"}}


def test_create_holds_lease_and_starts_in_init(database: str) -> None:
    deployment = Deployment.create("d1", CONFIG)
    assert deployment.status == Status.INIT
    assert Deployment.get("d1").lease_owner == Holder.me().token()
    assert Deployment.get(deployment.uuid).name == "d1"


def test_duplicate_name_is_input_error(database: str) -> None:
    Deployment.create("same", CONFIG).release()
    with pytest.raises(InputError, match="already exists"):
        Deployment.create("same", CONFIG)


def test_unknown_deployment(database: str) -> None:
    with pytest.raises(NotFoundError, match="no deployment named 'nope'"):
        Deployment.get("nope")


def test_transition_table_is_enforced(database: str) -> None:
    deployment = Deployment.create("d2", CONFIG)
    with pytest.raises(StatusError, match="cannot go to cleanup->finished"):
        deployment.set_status(Status.CLEANUP_FINISHED)
    deployment.set_status(Status.STARTED)
    deployment.set_status(Status.FINISHED)
    assert Deployment.get("d2").status == Status.FINISHED


def test_every_status_has_a_way_out() -> None:
    assert set(TRANSITIONS) == set(Status)
    for status, targets in TRANSITIONS.items():
        assert targets, f"{status} is a dead end"


def test_compare_and_set_detects_a_concurrent_change(database: str) -> None:
    deployment = Deployment.create("d3", CONFIG)
    stale = Deployment.get("d3")
    stale._holder = deployment._holder
    deployment.set_status(Status.STARTED)
    with pytest.raises(BusyError, match="changed under us"):
        stale.set_status(Status.FAILED)
    assert Deployment.get("d3").status == Status.STARTED


def test_live_holder_makes_others_busy_even_with_force(database: str) -> None:
    deployment = Deployment.create("d4", CONFIG)
    deployment.set_status(Status.STARTED)
    deployment.set_status(Status.FINISHED)
    other = Deployment.get("d4")
    with pytest.raises(BusyError, match=rf"busy: held by pid {os.getpid()} on"):
        other._acquire(force=True)


def _dead_holder_token() -> str:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return f"{socket.gethostname()}:{process.pid}:1"


def test_dead_holder_needs_force_and_leaves_deployment_inconsistent(database: str) -> None:
    from sqlalchemy import update

    from benchbed.db.models import deployments
    from benchbed.db.session import transaction

    deployment = Deployment.create("d5", CONFIG)
    deployment.set_status(Status.STARTED)
    with transaction() as db:
        db.execute(update(deployments).where(deployments.c.uuid == deployment.uuid)
                   .values(lease_owner=_dead_holder_token()))
    other = Deployment.get("d5")
    with pytest.raises(BusyError, match="no longer running; re-run with --force"):
        other._acquire(force=False)
    with other.lease(force=True):
        assert other.status == Status.INCONSISTENT
        other.set_status(Status.CLEANUP_STARTED)
    assert Deployment.get("d5").lease_owner is None


def test_only_one_of_many_threads_wins_the_lease(database: str) -> None:
    Deployment.create("d6", CONFIG).release()
    winners, losers = [], []
    barrier = threading.Barrier(8)

    def contend() -> None:
        candidate = Deployment.get("d6")
        barrier.wait()
        try:
            candidate._acquire(force=False)
            winners.append(candidate)
        except BusyError:
            losers.append(candidate)

    threads = [threading.Thread(target=contend) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(winners) == 1
    assert len(losers) == 7


def test_timeline_records_steps_and_failures(database: str) -> None:
    deployment = Deployment.create("d7", CONFIG)
    with deployment.step("first", "detail"):
        pass
    with pytest.raises(RuntimeError), deployment.step("second"):
        raise RuntimeError("boom")
    steps = deployment.timeline()
    assert [(s.step, s.outcome) for s in steps] == [("first", "ok"), ("second", "failed")]
    assert all(s.finished_at >= s.started_at for s in steps)


def test_log_scrubs_secrets(database: str) -> None:
    deployment = Deployment.create("d8", CONFIG)
    deployment.logger.info("connecting with Seeded-Pass-1 now")
    text = deployment.log_path.read_text()
    assert "connecting with *** now" in text
    assert "Seeded-Pass-1" not in text
    assert oct(deployment.log_path.stat().st_mode & 0o777) == "0o600"


def test_head_revision_matches_the_migrations() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(config).get_current_head() == HEAD_REVISION


def test_sqlite_database_is_private(home) -> None:
    Deployment.create("d9", CONFIG)
    assert oct((home / "benchbed.sqlite").stat().st_mode & 0o777) == "0o600"


def test_fast_list_reads_what_the_models_read(database: str) -> None:
    from benchbed.db.fastread import list_deployments

    Deployment.create("fast-a", CONFIG).release()
    Deployment.create("fast-b", CONFIG, parent_uuid=Deployment.get("fast-a").uuid).release()
    fast = list_deployments()
    if database == "postgresql":
        assert fast is None
        return
    assert fast == Deployment.list_rows()
    assert [row["name"] for row in fast] == ["fast-a", "fast-b"]


@pytest.mark.parametrize(("column", "value", "kind"), [
    ("lease_since", "yesterday-ish", "a time"), ("config", "{not json", "JSON")])
def test_a_value_benchbed_never_writes_is_one_database_error(
        home: Path, column: str, value: str, kind: str) -> None:
    """A database edited by hand (SQLite stores any text in any column) gives one line naming
    the column, not a traceback."""
    import sqlite3

    from benchbed.errors import DatabaseError

    Deployment.create("edited", CONFIG).release()
    with sqlite3.connect(home / "benchbed.sqlite") as connection:
        connection.execute(f"UPDATE deployments SET {column} = ?", (value,))
    with pytest.raises(DatabaseError, match=f"column {column} holds .*, which is not {kind}; "
                                            "the database was changed outside benchbed"):
        Deployment.get("edited")
