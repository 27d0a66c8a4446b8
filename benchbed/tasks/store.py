"""Benchmark runs in benchbed's database, through benchbed.db.sql like every other query.

A run's process holds a lock file of its own under the deployment's folder for as long as
the run is `running`: a `running` run read here whose lock is free has lost its process
(killed), and is recorded as failed, aborted, at that read.
"""

import dataclasses
import fcntl
import os
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchbed import paths, private_files
from benchbed.db.sql import Record, transaction
from benchbed.errors import NotFoundError
from benchbed.tasks.model import Iteration, Sample, TaskRun

# what a run id (or the start of one) may hold: it also keeps LIKE's wildcards out
UUID_PREFIX = re.compile(r"[0-9A-Fa-f-]{1,36}")
RUN_COLUMNS = [field.name for field in dataclasses.fields(TaskRun)]
ABORTED = ("aborted: the process running it ended before Rally's task did (killed?); "
           "nothing of the task was recorded")


def _lock_file(deployment_directory: Path, run_uuid: str) -> Path:
    return deployment_directory / "tasks" / f"{run_uuid}.lock"


@contextmanager
def running(deployment_directory: Path, run_uuid: str) -> Iterator[None]:
    """Hold the run's lock file while its process runs it; the file goes when it ends."""
    path = _lock_file(deployment_directory, run_uuid)
    private_files.make_private_folder(path.parent)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                         private_files.PRIVATE_FILE)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        path.unlink(missing_ok=True)
        os.close(descriptor)


def _process_gone(run: TaskRun) -> bool:
    """Whether a `running` run's lock file is there and no process holds it."""
    path = _lock_file(paths.deployment_dir(run.deployment_uuid, create=False), run.uuid)
    try:
        descriptor = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    else:
        path.unlink(missing_ok=True)
        return True
    finally:
        os.close(descriptor)


def add(run: TaskRun) -> None:
    """Record a run as it starts (status `running`), before Rally is asked for anything."""
    values = dataclasses.asdict(run)
    with transaction() as db:
        db.execute(f"INSERT INTO task_runs ({', '.join(RUN_COLUMNS)}) "
                   f"VALUES ({', '.join(':' + name for name in RUN_COLUMNS)})", **values)


def finish(run: TaskRun, iterations: Iterable[Iteration], samples: Iterable[Sample]) -> None:
    """Store how a run ended, its iterations and its samples, in one transaction."""
    changing = [name for name in RUN_COLUMNS if name != "uuid"]
    values = dataclasses.asdict(run)
    with transaction() as db:
        db.execute(f"UPDATE task_runs SET {', '.join(f'{n} = :{n}' for n in changing)} "
                   "WHERE uuid = :uuid", **values)
        for item in iterations:
            db.execute("INSERT INTO task_iterations (run_uuid, scenario, workload, iteration, "
                       "started, duration, error, atomic) VALUES (:run, :scenario, :workload, "
                       ":iteration, :started, :duration, :error, :atomic)",
                       run=run.uuid, **{**dataclasses.asdict(item),
                                        "atomic": [list(pair) for pair in item.atomic]})
        for sample in samples:
            db.execute("INSERT INTO task_samples (run_uuid, at, server, service, cpu_seconds, "
                       "rss_bytes) VALUES (:run, :at, :server, :service, :cpu_seconds, "
                       ":rss_bytes)", run=run.uuid, **dataclasses.asdict(sample))


def delete(uuid: str) -> None:
    """Forget a run that never ran (Rally refused its task): it was bad input."""
    with transaction() as db:
        for table in ("task_samples", "task_iterations"):
            db.count(f"DELETE FROM {table} WHERE run_uuid = :uuid", uuid=uuid)
        db.count("DELETE FROM task_runs WHERE uuid = :uuid", uuid=uuid)


def get(uuid: str) -> TaskRun:
    """A run by its uuid or by a unique prefix of it (as `task show` takes it)."""
    rows: list[Record] = []
    if UUID_PREFIX.fullmatch(uuid):
        with transaction() as db:
            rows = db.execute("SELECT * FROM task_runs WHERE uuid LIKE :prefix "
                              "ORDER BY started_at", prefix=uuid.lower() + "%")
    if len(rows) != 1:
        raise NotFoundError(f"no task run '{uuid[:40]}'" if not rows else
                            f"task run '{uuid}' is ambiguous: {len(rows)} runs start with it")
    return _run(rows[0])


def runs(deployment: str | None = None) -> list[TaskRun]:
    """Every run, oldest first; with `deployment`, the runs of that deployment name."""
    with transaction() as db:
        rows = db.execute("SELECT * FROM task_runs WHERE :name IS NULL OR deployment_name = "
                          ":name ORDER BY started_at", name=deployment)
    return [_run(row) for row in rows]


def iterations(run_uuid: str) -> list[Iteration]:
    with transaction() as db:
        rows = db.execute("SELECT scenario, workload, iteration, started, duration, error, "
                          "atomic FROM task_iterations WHERE run_uuid = :run "
                          "ORDER BY workload, iteration", run=run_uuid)
    return [Iteration(**{**row, "atomic": [(name, float(seconds))
                                           for name, seconds in row["atomic"]]})
            for row in rows]


def samples(run_uuid: str) -> list[Sample]:
    with transaction() as db:
        rows = db.execute("SELECT at, server, service, cpu_seconds, rss_bytes FROM "
                          "task_samples WHERE run_uuid = :run ORDER BY at, server, service",
                          run=run_uuid)
    return [Sample(**row) for row in rows]


def _run(row: Record) -> TaskRun:
    values: dict[str, Any] = {name: row[name] for name in RUN_COLUMNS}
    if values["sla_ok"] is not None:
        values["sla_ok"] = bool(values["sla_ok"])
    run = TaskRun(**values)
    if run.status == "running" and _process_gone(run):
        with transaction() as db:
            db.count("UPDATE task_runs SET status = 'failed', sla_ok = :no, error = :error "
                       "WHERE uuid = :uuid AND status = 'running'", no=False, error=ABORTED,
                       uuid=run.uuid)
        run.status, run.sla_ok, run.error = "failed", False, ABORTED
    return run
