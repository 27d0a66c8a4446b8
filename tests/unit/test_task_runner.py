"""The runner's parts that need no cloud: what a Rally task is, Rally's JSON report read into
iterations and scenarios, which Rally runs, the servers sampled, and bad input refused
before anything is recorded (the whole run: tests/integration/test_task.py)."""

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchbed import masking
from benchbed.db.sql import utcnow
from benchbed.deployment import Deployment, Status
from benchbed.errors import InputError, NotFoundError
from benchbed.tasks import runner, store
from benchbed.tasks.model import Iteration, TaskRun


def _report(password: str) -> dict[str, Any]:
    """A `rally task report --json` (format 1.2 of Rally 5.x), trimmed to what is read."""
    atomic = [{"name": "keystone_v3.create_user", "started_at": 100.0, "finished_at": 100.25,
               "children": [{"name": "inner", "started_at": 100.1, "finished_at": 100.15,
                             "children": []}]},
              {"name": "keystone_v3.list_users", "started_at": 100.25, "finished_at": None,
               "children": []}]
    return {"info": {"format_version": "1.2"}, "tasks": [{
        "uuid": "t", "status": "sla_failed", "subtasks": [{"workloads": [
            {"scenario": {"KeystoneBasic.create_and_list_users": {}},
             "runner": {"constant": {"times": 2}}, "contexts": {}, "pass_sla": True,
             "sla_results": {"sla": [{"criterion": "failure_rate", "success": True,
                                      "detail": "ok"}]},
             "total_iteration_count": 2, "failed_iteration_count": 1,
             "data": [{"timestamp": 100.0, "duration": 0.5, "error": [],
                       "atomic_actions": atomic},
                      {"timestamp": 101.0, "duration": 0.1,
                       "error": ["Unauthorized", f"bad password {password}", "Traceback"],
                       "atomic_actions": []}]}]},
            {"workloads": [
                {"scenario": {"GlanceImages.create_and_delete_image": {
                    "image_location": "/tmp/x", "password": password}},
                 "runner": {"constant": {"times": 1}}, "contexts": {}, "pass_sla": False,
                 "sla_results": {"sla": [{"criterion": "max_avg_duration",
                                          "success": False, "detail": "too slow"}]},
                 "total_iteration_count": 1, "failed_iteration_count": 0,
                 "data": [{"timestamp": 102.0, "duration": 2.0, "error": [],
                           "atomic_actions": [{"name": "glance_v2.create_image",
                                               "started_at": 102.0, "finished_at": 103.5,
                                               "children": []}]}]}]}]}]}


def test_the_report_becomes_iterations_with_nested_atomic_actions_and_scenarios() -> None:
    password = "s3cret-admin-password"
    masking.register(password)
    status, iterations, scenarios = runner.read_report(_report(password))
    assert status == "sla_failed"
    assert iterations[0] == Iteration(
        "KeystoneBasic.create_and_list_users", 0, 0, 100.0, 0.5, None,
        [("keystone_v3.create_user", 0.25), ("keystone_v3.create_user > inner",
                                              pytest.approx(0.05)),
         ("keystone_v3.list_users", 0.0)])
    assert iterations[1].error == "Unauthorized: bad password ***"
    assert (iterations[2].scenario, iterations[2].workload, iterations[2].atomic) == (
        "GlanceImages.create_and_delete_image", 1, [("glance_v2.create_image", 1.5)])
    assert [(s["workload"], s["pass_sla"], s["sla"][0]["criterion"], s["failed"])
            for s in scenarios] == [(0, True, "failure_rate", 1),
                                    (1, False, "max_avg_duration", 0)]
    assert password not in json.dumps(scenarios)


@pytest.mark.parametrize(("task", "problem"), [
    ([], "not a mapping"),
    ({}, "not a mapping"),
    ({"hello": "world"}, "'hello' is not a scenario name"),
    ({"Keystone.create": {"runner": {}}}, "non-empty list of workloads"),
    ({"Keystone.create": [1]}, "non-empty list of workloads"),
    ({"version": 1, "subtasks": []}, "'version' must be 2"),
    ({"version": 2, "subtasks": []}, "non-empty list"),
    ({"version": 2, "subtasks": [{"title": "x"}]}, "subtasks[0] has neither"),
])
def test_what_is_not_a_rally_task_is_named(task: Any, problem: str) -> None:
    found = runner.task_problem(task)
    assert found is not None and problem in found


def test_rally_tasks_of_both_formats_and_their_planned_iterations() -> None:
    v1 = {"KeystoneBasic.create_user": [{"runner": {"type": "constant", "times": 6}}, {}],
          "Glance.x": [{"runner": {"type": "serial", "times": 3}}]}
    v2 = {"version": 2, "subtasks": [
        {"title": "a", "scenario": {"Dummy.dummy": {}}, "runner": {"constant": {"times": 4}}},
        {"title": "b", "workloads": [{"scenario": {"Dummy.dummy": {}},
                                      "runner": {"rps": {"times": 5, "rps": 2}}}]}]}
    assert runner.task_problem(v1) is None and runner.task_problem(v2) is None
    assert runner.planned_iterations(v1) == 10
    assert runner.planned_iterations(v2) == 9
    assert runner.planned_iterations({"A.b": [{"runner": {"type": "constant_for_duration",
                                                          "duration": 10}}]}) is None


def test_a_task_file_that_is_not_yaml_or_unreadable_is_refused(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("A.b: [\n")
    with pytest.raises(InputError, match=r"is not YAML or JSON \(line 2\)"):
        runner.read_task(str(broken))
    with pytest.raises(InputError, match="cannot read task file"):
        runner.read_task(str(tmp_path / "missing.yaml"))
    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\xff\xfe")
    with pytest.raises(InputError, match="cannot read task file"):
        runner.read_task(str(binary))


def test_the_config_digest_is_canonical() -> None:
    assert runner.config_digest({"a": 1, "b": [1, "é"]}) == \
        runner.config_digest({"b": [1, "é"], "a": 1})
    assert runner.config_digest({"a": 1}) != runner.config_digest({"a": 2})


def _executable(path: Path) -> Path:
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_which_rally_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    given = _executable(tmp_path / "given-rally")
    from_env = _executable(tmp_path / "env-rally")
    on_path = tmp_path / "bin"
    on_path.mkdir()
    _executable(on_path / "rally")
    monkeypatch.setenv("PATH", str(on_path))
    monkeypatch.setattr(sys, "executable", str(tmp_path / "venv" / "python"))
    monkeypatch.setenv(runner.RALLY_VARIABLE, str(from_env))
    assert runner.find_rally(str(given)) == str(given)
    assert runner.find_rally(None) == str(from_env)
    monkeypatch.delenv(runner.RALLY_VARIABLE)
    assert runner.find_rally(None) == str(on_path / "rally")
    beside = tmp_path / "venv"
    beside.mkdir()
    _executable(beside / "rally")
    assert runner.find_rally(None) == str(beside / "rally")
    not_executable = tmp_path / "plain"
    not_executable.write_text("")
    for wrong in (str(tmp_path / "none"), str(tmp_path), str(not_executable)):
        with pytest.raises(InputError) as refused:
            runner.find_rally(wrong)
        assert str(refused.value) == runner.RALLY_MISSING
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    (beside / "rally").unlink()
    with pytest.raises(InputError, match="Rally is not installed"):
        runner.find_rally(None)


def _deployment(name: str, endpoints: dict[str, Any]) -> Deployment:
    deployment = Deployment.create(name, {"type": "ServersEngine"})
    deployment.set_endpoints(endpoints)
    deployment.set_status(Status.STARTED)
    deployment.set_status(Status.FINISHED)
    deployment.release()
    return deployment


def test_servers_of_a_multihost_deployment_controller_first_each_once(home: Path) -> None:
    deployment = _deployment("multi", {
        "servers": [{"host": "10.0.0.1"}], "controller_ip": "10.0.0.1",
        "nodes": [{"servers": [{"host": "10.0.0.2", "port": 2222}, {"host": "10.0.0.1"}]},
                  {"nodes": [{"servers": [{"host": "10.0.0.3", "name": "deep"}]}]}]})
    found = runner.servers_of(deployment)
    assert [(s.host, s.port) for s in found] == [("10.0.0.1", 22), ("10.0.0.2", 2222),
                                                 ("10.0.0.3", 22)]
    assert all(s.deployment is deployment for s in found)


def test_bad_input_is_refused_before_anything_is_recorded(home: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    task = tmp_path / "task.json"
    task.write_text(json.dumps({"Dummy.dummy": [{}]}))
    rally = str(_executable(tmp_path / "rally"))
    _deployment("servers", {"servers": [{"host": "localhost"}]})
    cloud = _deployment("cloud", {"openstack": {"auth_url": "http://127.0.0.1:9/v3"}})
    with pytest.raises(NotFoundError):
        runner.run("nosuch", str(task), rally=rally)
    with pytest.raises(InputError, match=r"'servers' .* is not an OpenStack"):
        runner.run("servers", str(task), rally=rally)
    with pytest.raises(InputError, match="--interval must be above 0"):
        runner.run("cloud", str(task), interval=0, rally=rally)
    monkeypatch.delenv(runner.RALLY_VARIABLE, raising=False)
    with pytest.raises(InputError, match="Rally is not installed"):
        runner.run("cloud", str(task), rally=str(tmp_path / "none"))
    task.write_text("[1, 2]")
    with pytest.raises(InputError, match="is not a Rally task"):
        runner.run("cloud", str(task), rally=rally)
    assert store.runs() == []
    assert not (cloud.directory / "tasks").exists() or \
        list((cloud.directory / "tasks").iterdir()) == []


def test_rally_and_its_children_die_with_the_process_that_started_it(tmp_path: Path
                                                                    ) -> None:
    """A killed `task run` leaves nothing of Rally's process group: a child that ignores
    SIGTERM (as Rally handles it) and the worker it started, as Rally's runner does."""
    pidfile = tmp_path / "group"
    parent = subprocess.Popen([sys.executable, "-c", (
        "import logging, subprocess, time\n"
        "from benchbed.tasks.runner import _leashed\n"
        "with _leashed(['sh', '-c', 'trap \"\" TERM; sleep 60 & sleep 60', 'rally', "
        "'task', 'start'], logging.getLogger()) as child:\n"
        f"    open({str(pidfile)!r}, 'w').write(str(child.pid))\n"
        "    time.sleep(60)\n")])
    try:
        for _ in range(200):
            if pidfile.exists() and pidfile.read_text():
                break
            subprocess.run(["sleep", "0.05"], check=True)
        group = int(pidfile.read_text())
        assert os.getpgid(group) == group and len(_members(group)) == 4  # sh, 2 sleeps, watchdog
        parent.kill()
        parent.wait(timeout=10)
        for _ in range(100):
            if not _members(group):
                break
            subprocess.run(["sleep", "0.05"], check=True)
        assert _members(group) == []
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


def _members(group: int) -> list[int]:
    """The running (not zombie) processes of a process group."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError):
                continue
            if int(fields[2]) == group and fields[0] != "Z":
                found.append(int(entry.name))
    return found


def test_a_running_run_whose_process_is_gone_is_recorded_aborted(home: Path) -> None:
    cloud = _deployment("cloud", {"openstack": {"auth_url": "http://127.0.0.1:9/v3"}})
    run = TaskRun(uuid="0a1b2c3d-0000-4000-8000-000000000001", deployment_uuid=cloud.uuid,
                  deployment_name="cloud", task_name="t.json", task_text="{}", task_digest="d",
                  config_digest="c", started_at=utcnow(), sample_interval=1.0)
    with store.running(cloud.directory, run.uuid):
        store.add(run)
        assert (store.get(run.uuid).status, store.get(run.uuid).error) == ("running", None)
    # its process ended by itself: no lock file, nothing to tell; a lock file left free
    # (its process killed) says the run was aborted
    assert store.get(run.uuid).status == "running"
    (cloud.directory / "tasks" / f"{run.uuid}.lock").touch()
    aborted = store.runs()[0]
    assert (aborted.status, aborted.sla_ok, aborted.error) == ("failed", False, store.ABORTED)
    assert store.get(run.uuid).error == store.ABORTED
    assert list((cloud.directory / "tasks").iterdir()) == []
    store.delete(run.uuid)
    assert store.runs() == []
