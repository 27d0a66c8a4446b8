"""Benchmark runs in benchbed's database, through benchbed.db.sql like every other query."""

import dataclasses
import re
from collections.abc import Iterable
from typing import Any

from benchbed.db.sql import Record, transaction
from benchbed.errors import NotFoundError
from benchbed.tasks.model import Iteration, Sample, TaskRun

# what a run id (or the start of one) may hold: it also keeps LIKE's wildcards out
UUID_PREFIX = re.compile(r"[0-9A-Fa-f-]{1,36}")
RUN_COLUMNS = [field.name for field in dataclasses.fields(TaskRun)]


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
    return TaskRun(**values)
