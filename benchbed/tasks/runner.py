"""Runs the real `rally` against a deployment, in a Rally home of its own per run.

Rally keeps its database in /tmp/rally.sqlite unless rally.conf names one, and every
environment it knows in that one database: each run gets its own home under the deployment's
directory (rally.conf, its own SQLite database, the exported spec), which is removed when
the run ends. What Rally measured is read from `rally task report --json` (Rally 5.x's
format: tasks > subtasks > workloads > data) into `Iteration`s and per-workload scenarios.

The run is recorded (`running`) before `rally task start`; a run whose process is killed
stays `running` (`task show` says it never finished) and its Rally, which dies with it
(PR_SET_PDEATHSIG), leaves only its home behind.
"""

import ctypes
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import uuid as uuid_lib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchbed import masking, paths, private_files
from benchbed.db.sql import utcnow
from benchbed.deployment import Deployment, Status
from benchbed.endpoints import Endpoints, stored
from benchbed.errors import BenchbedError, InputError
from benchbed.server import Server
from benchbed.tasks import store
from benchbed.tasks.model import Iteration, Sample, TaskRun
from benchbed.tasks.sampler import Sampler

RALLY_MISSING = "Rally is not installed: pip install 'benchbed[rally]' or give --rally"
RALLY_VARIABLE = "BENCHBED_RALLY"
# Rally's v1 task format: {"Group.scenario": [workload, ...]}
SCENARIO_NAME = re.compile(r"[A-Za-z0-9_]+\.[A-Za-z0-9_]+")
# what `rally task start` says as it begins, and as each iteration ends
RALLY_TASK_UUID = re.compile(r"\bTask\s+([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-"
                             r"[0-9a-f]{12})\b")
ITERATION_END = re.compile(r"ITER:\s*\d+\s+END")
# Rally's own statuses of a task that ran to its end (its SLA held or not)
RALLY_COMPLETED = ("finished", "sla_failed")
RALLY_TIMEOUT = 60 * 60 * 24
OUTPUT_TAIL = 5
PR_SET_PDEATHSIG = 1
# loaded here, not in the forked child, where loading a library could wait forever for a
# lock that another thread (the sampler's) held at the fork
_LIBC = ctypes.CDLL(None, use_errno=True)

Progress = Callable[[str], None]


# -- input -----------------------------------------------------------------------------------


def find_rally(given: str | None) -> str:
    """The `rally` to run: `given`, else $BENCHBED_RALLY, else the one installed beside this
    Python (`benchbed[rally]`), else the one on PATH. One that names no executable file is
    refused, so that no run is recorded for a Rally that cannot start."""
    named = given or os.environ.get(RALLY_VARIABLE)
    if named:
        candidate: str | None = named
    else:
        beside = Path(sys.executable).parent / "rally"
        candidate = str(beside) if beside.is_file() else shutil.which("rally")
    if not candidate or not Path(candidate).is_file() or not os.access(candidate, os.X_OK):
        raise InputError(RALLY_MISSING)
    return candidate


def read_task(task_file: str) -> tuple[str, dict[str, Any]]:
    """The task file's text and its content, checked to be a Rally task (format 1 or 2)."""
    import yaml

    try:
        text = Path(task_file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else error
        raise InputError(f"cannot read task file {task_file}: {reason}") from None
    try:
        task = yaml.safe_load(text)
    except yaml.YAMLError as error:
        where = getattr(error, "problem_mark", None)
        at = f" (line {where.line + 1})" if where is not None else ""
        raise InputError(f"task file {task_file} is not YAML or JSON{at}") from None
    problem = task_problem(task)
    if problem:
        raise InputError(f"task file {task_file} is not a Rally task: {problem}")
    assert isinstance(task, dict)
    return text, task


def task_problem(task: Any) -> str | None:
    """What makes `task` no Rally task, or None. Rally's format 2 has `version: 2` and
    `subtasks`; format 1 maps scenario names (Group.name) to lists of workloads."""
    if not isinstance(task, dict) or not task:
        return "it is not a mapping of scenarios (or a format 2 task with subtasks)"
    if "version" in task or "subtasks" in task:
        if task.get("version") != 2:
            return "'version' must be 2 (the only versioned format)"
        subtasks = task.get("subtasks")
        if not isinstance(subtasks, list) or not subtasks:
            return "'subtasks' must be a non-empty list"
        for index, subtask in enumerate(subtasks):
            if not isinstance(subtask, dict) or not ("scenario" in subtask
                                                      or "workloads" in subtask):
                return f"subtasks[{index}] has neither 'scenario' nor 'workloads'"
        return None
    for name, workloads in task.items():
        if not isinstance(name, str) or not SCENARIO_NAME.fullmatch(name):
            return f"'{str(name)[:60]}' is not a scenario name (Group.name)"
        if not isinstance(workloads, list) or not workloads or \
                not all(isinstance(workload, dict) for workload in workloads):
            return f"{name} must be a non-empty list of workloads (mappings)"
    return None


def planned_iterations(task: Mapping[str, Any]) -> int | None:
    """How many iterations the task runs in all, when every runner says (`times`)."""
    workloads: list[Any] = []
    if task.get("version") == 2:
        for subtask in task["subtasks"]:
            workloads += subtask.get("workloads") or [subtask]
    else:
        for listed in task.values():
            workloads += listed
    total = 0
    for workload in workloads:
        runner = workload.get("runner") or {"type": "constant"}
        # format 1: {"type": "constant", "times": 6}; format 2: {"constant": {"times": 6}}
        body = runner if "type" in runner else next(iter(runner.values()), {})
        times = body.get("times", 1 if runner.get("type", "constant") == "constant" else None) \
            if isinstance(body, dict) else None
        if not isinstance(times, int):
            return None
        total += times
    return total


def config_digest(config: Mapping[str, Any]) -> str:
    """sha256 of the config as canonical JSON: equal configs, equal digests."""
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def servers_of(deployment: Deployment) -> list[Server]:
    """Every server of the deployment, the controller's first, then each node's (at any
    depth), each once."""
    found: dict[tuple[str, int], Server] = {}
    pending: list[Endpoints] = [stored(deployment.endpoints)]
    while pending:
        endpoints = pending.pop(0)
        for entry in endpoints.get("servers") or []:
            server = Server.from_dict(entry, deployment=deployment)
            found.setdefault((server.host, server.port), server)
        pending += endpoints.get("nodes") or []
    return list(found.values())


# -- Rally -----------------------------------------------------------------------------------


@dataclass
class RallyHome:
    """A Rally of its own: `HOME`, rally.conf and its SQLite database in one directory."""

    rally: str
    path: Path
    logger: Any

    @property
    def conf(self) -> Path:
        return self.path / ".rally" / "rally.conf"

    def argv(self, *args: str) -> list[str]:
        return [self.rally, "--config-file", str(self.conf), *args]

    def env(self) -> dict[str, str]:
        # unbuffered: each iteration's line reaches the progress line as Rally writes it
        return {**os.environ, "HOME": str(self.path), "PYTHONUNBUFFERED": "1"}

    def prepare(self, spec: str, task_file: str) -> None:
        """rally.conf, `rally db create`, `rally env create --spec`, `rally task validate`
        (Rally's word on the task: refused here, nothing is recorded)."""
        private_files.make_private_folder(self.conf.parent)
        paths.write_private(self.conf, "[database]\nconnection = sqlite:///"
                            f"{self.path / 'rally.sqlite'}\n")
        paths.write_private(self.path / "spec.json", spec)
        self.call("db", "create")
        self.call("env", "create", "--name", "benchbed", "--spec",
                  str(self.path / "spec.json"))
        validated = self.call("task", "validate", "--task", task_file, check=False)
        if validated.returncode != 0:
            raise InputError(f"Rally refuses task file {task_file}: "
                             f"{_last_words(validated.stdout)}")

    def call(self, *args: str, check: bool = True, timeout: float = 600
             ) -> subprocess.CompletedProcess[str]:
        """A short Rally command, its output in the deployment's log."""
        try:
            done = subprocess.run(self.argv(*args), capture_output=True, text=True,
                                  env=self.env(), timeout=timeout,
                                  stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        except subprocess.TimeoutExpired:
            raise BenchbedError(f"rally {args[0]} {args[1]} did not answer within "
                                f"{timeout:.0f} s") from None
        output = done.stdout + done.stderr
        self.logger.debug("rally %s: exit %d\n%s", " ".join(args[:2]), done.returncode,
                          masking.scrub(output))
        done.stdout = output
        if check and done.returncode != 0:
            raise BenchbedError(f"rally {' '.join(args[:2])} exited {done.returncode}: "
                                f"{_last_words(output)}")
        return done

    def start(self, task_file: str, planned: int | None, progress: Progress | None) -> str:
        """`rally task start`; returns Rally's uuid of the task, with one progress line per
        iteration ended. Rally's exit status is not the verdict: the report is."""
        process = subprocess.Popen(self.argv("task", "start", "--task", task_file),
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, text=True, env=self.env(),
                                   preexec_fn=_die_with_parent)
        assert process.stdout is not None
        task_uuid: str | None = None
        ended = 0
        tail: list[str] = []
        of = f"/{planned}" if planned else ""
        for line in process.stdout:
            self.logger.debug("rally task start: %s", masking.scrub(line.rstrip()))
            if line.strip():
                tail = [*tail, line.strip()][-OUTPUT_TAIL:]
            found = RALLY_TASK_UUID.search(line)
            if task_uuid is None and found:
                task_uuid = found.group(1)
            if ITERATION_END.search(line):
                ended += 1
                if progress:
                    progress(f"rally: {ended}{of} iterations done")
        code = process.wait()
        if task_uuid is None:
            raise BenchbedError(f"rally task start exited {code} without starting a task: "
                                f"{_last_words(chr(10).join(tail))}")
        return task_uuid

    def report(self, task_uuid: str) -> dict[str, Any]:
        out = self.path / "report.json"
        self.call("task", "report", "--uuid", task_uuid, "--json", "--out", str(out))
        data: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
        return data


def _die_with_parent() -> None:
    """In the Rally child: end it when benchbed ends (a `task run` killed with -9 leaves no
    Rally running against the cloud on its own)."""
    _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _last_words(output: str) -> str:
    """Rally's last meaningful lines, as one line, secrets masked."""
    lines = [line.strip() for line in output.splitlines()
             if line.strip() and not set(line.strip()) <= set("-=+|")]
    return masking.scrub(" | ".join(lines[-2:]))[:600] or "no output"


# -- what Rally measured ---------------------------------------------------------------------


def read_report(report: Mapping[str, Any]
                ) -> tuple[str, list[Iteration], list[dict[str, Any]]]:
    """Rally's task status, the iterations and the per-workload scenarios (SLA included)
    of a `rally task report --json` (Rally 5.x), secrets masked."""
    iterations: list[Iteration] = []
    scenarios: list[dict[str, Any]] = []
    status = "crashed"
    position = 0
    for task in report.get("tasks", []):
        status = task.get("status", status)
        for subtask in task.get("subtasks", []):
            for workload in subtask.get("workloads", []):
                name, args = next(iter(workload["scenario"].items()))
                sla = [{"criterion": item.get("criterion"), "success": bool(item.get("success")),
                        "detail": item.get("detail")}
                       for item in (workload.get("sla_results") or {}).get("sla", [])]
                scenarios.append(masking.mask({
                    "workload": position, "scenario": name, "args": args,
                    "runner": workload.get("runner"), "contexts": workload.get("contexts"),
                    "sla": sla, "pass_sla": bool(workload.get("pass_sla")),
                    "iterations": workload.get("total_iteration_count"),
                    "failed": workload.get("failed_iteration_count"),
                    "load_duration": workload.get("load_duration"),
                    "full_duration": workload.get("full_duration")}))
                for index, item in enumerate(workload.get("data") or []):
                    iterations.append(Iteration(
                        scenario=name, workload=position, iteration=index,
                        started=float(item["timestamp"]), duration=float(item["duration"]),
                        error=_error(item.get("error")),
                        atomic=list(_atomic(item.get("atomic_actions") or []))))
                position += 1
    return status, iterations, scenarios


def _error(error: Any) -> str | None:
    """Rally's [type, message, traceback] of a failed iteration as one masked line."""
    if not error:
        return None
    parts = [str(part) for part in error[:2]] if isinstance(error, list) else [str(error)]
    return masking.scrub(": ".join(part for part in parts if part))[:2000]


def _atomic(actions: list[dict[str, Any]], prefix: str = "") -> Iterator[tuple[str, float]]:
    """Rally's nested atomic actions in order, nested names joined with ' > '."""
    for action in actions:
        name = f"{prefix}{action['name']}"
        started, finished = action.get("started_at"), action.get("finished_at")
        yield name, (float(finished) - float(started)) if started and finished else 0.0
        yield from _atomic(action.get("children") or [], f"{name} > ")


# -- a run -----------------------------------------------------------------------------------


def run(deployment_name: str, task_file: str, tags: Mapping[str, str] | None = None,
        interval: float = 1.0, rally: str | None = None, progress: Progress | None = None
        ) -> TaskRun:
    """Run `task_file` with Rally against the deployment and record it with the system's
    samples; the run as stored. Bad input raises InputError before anything is recorded."""
    from benchbed import api
    from benchbed import report as report_lib
    from benchbed.exporters import render

    deployment = Deployment.get(deployment_name)
    if deployment.status != Status.FINISHED:
        raise InputError(f"deployment '{deployment.name}' is {deployment.status}: only a "
                         f"{Status.FINISHED} deployment can be benchmarked")
    if "openstack" not in deployment.endpoints:
        raise InputError(f"deployment '{deployment.name}' ({deployment.config.get('type')}) "
                         f"is not an OpenStack: Rally has no cloud to run against")
    if interval <= 0:
        raise InputError(f"--interval must be above 0 seconds, not {interval}")
    masking.register_from(deployment.config)
    masking.register_from(deployment.endpoints)
    rally_path = find_rally(rally)
    task_text, task = read_task(task_file)
    run_uuid = str(uuid_lib.uuid4())
    with _rally_home(rally_path, deployment, run_uuid) as home:
        if progress:
            progress("rally: preparing its environment")
        home.prepare(render(deployment, "rally-spec"), task_file)
        versions = api.engine_for(deployment).deployed_versions()
        task_run = TaskRun(
            uuid=run_uuid, deployment_uuid=deployment.uuid, deployment_name=deployment.name,
            task_name=Path(task_file).name, task_text=masking.scrub(task_text),
            task_digest=hashlib.sha256(task_text.encode()).hexdigest(),
            config_digest=config_digest(deployment.config), started_at=utcnow(),
            sample_interval=interval, tags=dict(tags or {}), versions=versions,
            deployment_timeline=masking.mask(report_lib.timeline(deployment.timeline())))
        store.add(task_run)
        servers = servers_of(deployment)
        sampler = Sampler(servers, interval)
        iterations: list[Iteration] = []
        samples: list[Sample] = []
        try:
            sampler.start()
            try:
                task_run.rally_task_uuid = home.start(task_file, planned_iterations(task),
                                                      progress)
            finally:
                samples = sampler.stop()
                deployment.logger.info("task run %s: the sampler returned %d sample(s) of %d "
                                       "server(s)", run_uuid, len(samples), len(servers))
            status, iterations, task_run.scenarios = read_report(
                home.report(task_run.rally_task_uuid))
            task_run.status = "finished" if status in RALLY_COMPLETED else "failed"
            if task_run.status == "failed":
                task_run.error = f"Rally's task ended {status}"
            task_run.sla_ok = task_run.status == "finished" and bool(task_run.scenarios) and \
                all(scenario["pass_sla"] for scenario in task_run.scenarios)
        except BaseException as error:
            task_run.status, task_run.sla_ok = "failed", False
            task_run.error = masking.scrub(str(error) or type(error).__name__)
            raise
        finally:
            task_run.finished_at = utcnow()
            store.finish(task_run, iterations, samples)
            for server in servers:
                server.close()
    return task_run


@contextmanager
def _rally_home(rally: str, deployment: Deployment, run_uuid: str) -> Iterator[RallyHome]:
    """The run's Rally home under the deployment's directory, removed when the run ends
    (it holds the cloud's credentials in Rally's database)."""
    path = deployment.directory / "tasks" / run_uuid
    private_files.make_private_folder(path.parent)
    private_files.make_private_folder(path)
    try:
        yield RallyHome(rally, path, deployment.logger)
    finally:
        shutil.rmtree(path, ignore_errors=True)


def show(run_id: str) -> dict[str, Any]:
    """A run as `task show` gives it: the run, its iterations and how many samples, secrets
    masked; a run still `running` whose process is gone is said to have never finished."""
    found = store.get(run_id)
    iterations = store.iterations(found.uuid)
    samples = store.samples(found.uuid)
    data = summary(found)
    data.update({
        "task_text": found.task_text, "scenarios": found.scenarios,
        "error": found.error or (None if found.status != "running" else
                                 "the run never finished (its process was stopped) or is "
                                 "still under way"),
        "iterations": [{"scenario": item.scenario, "workload": item.workload,
                        "iteration": item.iteration, "started": item.started,
                        "duration": item.duration, "error": item.error,
                        "atomic": [list(pair) for pair in item.atomic]}
                       for item in iterations],
        "samples": len(samples),
        "services": sorted({f"{sample.server}/{sample.service}" for sample in samples}),
    })
    return masking.mask(data)


def summary(found: TaskRun) -> dict[str, Any]:
    """The fields of `task list`, JSON-ready."""
    return {
        "uuid": found.uuid, "deployment": found.deployment_name,
        "deployment_uuid": found.deployment_uuid, "task": found.task_name,
        "task_digest": found.task_digest, "config_digest": found.config_digest,
        "status": found.status, "sla_ok": found.sla_ok,
        "started_at": found.started_at.isoformat(timespec="seconds"),
        "finished_at": found.finished_at.isoformat(timespec="seconds")
        if found.finished_at else None,
        "tags": found.tags, "versions": found.versions,
        "rally_task_uuid": found.rally_task_uuid, "sample_interval": found.sample_interval,
    }
