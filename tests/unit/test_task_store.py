"""Benchmark runs round-trip through the database, SQLite and PostgreSQL alike."""

from datetime import datetime

import pytest

from benchbed.errors import NotFoundError
from benchbed.tasks import store
from benchbed.tasks.model import Iteration, Sample, TaskRun


def _run(uuid: str) -> TaskRun:
    return TaskRun(uuid=uuid, deployment_uuid="d" * 36, deployment_name="os",
                   task_name="keystone.yaml", task_text="---\n", task_digest="a" * 64,
                   config_digest="b" * 64, started_at=datetime(2026, 12, 5, 22, 0, 0, 123456),
                   sample_interval=1.0, tags={"build": "42"}, versions={"keystone": "22.0.0"},
                   deployment_timeline=[{"step": "deploy", "duration": 3.5}])


def test_a_run_its_iterations_and_samples_come_back_as_stored(database: str) -> None:
    run = _run("11111111-2222-3333-4444-555555555555")
    store.add(run)
    assert store.get("1111").status == "running"
    run.status, run.sla_ok = "finished", False
    run.finished_at = datetime(2026, 12, 5, 22, 1, 0)
    run.scenarios = [{"workload": 0, "scenario": "KeystoneBasic.create_user",
                      "sla": [{"criterion": "failure_rate", "success": False}]}]
    iterations = [Iteration("KeystoneBasic.create_user", 0, index, 1000.0 + index, 0.25,
                            "boom" if index else None,
                            [("keystone_v3.create_user", 0.2), ("x > y", 0.01)])
                  for index in range(3)]
    samples = [Sample(1000.5, "controller", "keystone.service", 12.5, 300 << 20)]
    store.finish(run, iterations, samples)
    found = store.get(run.uuid)
    assert found == run
    assert store.iterations(run.uuid) == iterations
    assert store.samples(run.uuid) == samples
    assert [r.uuid for r in store.runs("os")] == [run.uuid]
    assert store.runs("other") == []


def test_an_unknown_or_ambiguous_run_is_named(database: str) -> None:
    store.add(_run("abc00000-0000-0000-0000-000000000001"))
    store.add(_run("abc00000-0000-0000-0000-000000000002"))
    with pytest.raises(NotFoundError, match="ambiguous: 2 runs"):
        store.get("abc")
    with pytest.raises(NotFoundError, match="no task run 'zzz'"):
        store.get("zzz")
    with pytest.raises(NotFoundError, match="no task run"):
        store.get("%")
