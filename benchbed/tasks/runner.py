"""Runs the real `rally` against a deployment, in a Rally home kept for that deployment.

Rally keeps its database in /tmp/rally.sqlite unless rally.conf names one, and every
environment it knows in that one database: each deployment gets one home of its own under
its directory (rally.conf, its own SQLite database, the exported spec), made once (`rally db
create`, `rally env create`) and kept while the exported spec's digest stays the same; the
digest file is written last, so a home whose making was interrupted is made again. A lock
beside it keeps two runs from making it at once (made under an exclusive lock, used under a
shared one); `deployment destroy` removes it with the deployment's folder. `rally task start`
validates the task itself: a task Rally refuses is bad input, its recorded run deleted. What
Rally measured is read from `rally task report --json` (Rally 5.x's format: tasks > subtasks
> workloads > data) into `Iteration`s and per-workload scenarios.

The run is recorded (`running`) before `rally task start`, and holds a lock file of its own
while it runs: a run whose process was killed is found `running` with its lock free, and is
recorded as aborted when next read (benchbed.tasks.store). Rally runs in a process group of
its own that dies with benchbed: Rally itself through PR_SET_PDEATHSIG with SIGKILL (Rally
handles SIGTERM), its worker processes through a watchdog in the group that kills the whole
group when benchbed's end of its pipe closes, also when benchbed was killed with -9.
"""

import ctypes
import fcntl
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
# Rally's exit codes for a task it refuses (rally/exceptions.py: ValidationError,
# InvalidConfigException, InvalidTaskException, InvalidTaskConfig, InvalidScenarioArgument)
RALLY_REFUSED = frozenset({110, 112, 113, 114, 115})
OUTPUT_TAIL = 5
PR_SET_PDEATHSIG = 1
# the deployment's Rally home, its lock and the digest of the spec it was made from
HOME_FOLDER = "rally"
HOME_LOCK = "rally.lock"
SPEC_DIGEST = "spec.sha256"
# in Rally's process group: waits for benchbed's end of the pipe to close, then ends the group
WATCHDOG = "import os, signal, sys; sys.stdin.buffer.read(); os.killpg(0, signal.SIGKILL)"
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

    def made_from(self, digest: str) -> bool:
        """Whether the home was made, to its end, from the spec of this digest."""
        try:
            return (self.path / SPEC_DIGEST).read_text(encoding="utf-8") == digest
        except OSError:
            return False

    def make(self, spec: str, digest: str) -> None:
        """A fresh home: rally.conf, `rally db create`, `rally env create --spec`; the spec's
        digest last, as the mark that the home is whole."""
        shutil.rmtree(self.path, ignore_errors=True)
        private_files.make_private_folder(self.path)
        private_files.make_private_folder(self.conf.parent)
        paths.write_private(self.conf, "[database]\nconnection = sqlite:///"
                            f"{self.path / 'rally.sqlite'}\n")
        paths.write_private(self.path / "spec.json", spec)
        self.call("db", "create")
        self.call("env", "create", "--name", "benchbed", "--spec",
                  str(self.path / "spec.json"))
        paths.write_private(self.path / SPEC_DIGEST, digest)

    def call(self, *args: str, timeout: float = 600) -> None:
        """A short Rally command, its output in the deployment's log."""
        with _leashed(self.argv(*args), self.logger, stdout=subprocess.PIPE,
                      stderr=subprocess.STDOUT, env=self.env()) as process:
            try:
                output, _ = process.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                raise BenchbedError(f"rally {args[0]} {args[1]} did not answer within "
                                    f"{timeout:.0f} s") from None
        self.logger.debug("rally %s: exit %d\n%s", " ".join(args[:2]), process.returncode,
                          masking.scrub(output))
        if process.returncode != 0:
            raise BenchbedError(f"rally {' '.join(args[:2])} exited {process.returncode}: "
                                f"{_last_words(output)}")

    def start(self, task_file: str, planned: int | None, progress: Progress | None,
              on_start: Callable[[], None]) -> str:
        """`rally task start`; returns Rally's uuid of the task, with one progress line per
        iteration ended, and `on_start()` called once Rally runs. Rally's exit status is not
        the verdict (the report is), except for a task Rally refuses: InputError."""
        with _leashed(self.argv("task", "start", "--task", task_file), self.logger,
                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=self.env()
                      ) as process:
            on_start()
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
        if code in RALLY_REFUSED:
            raise InputError(f"Rally refuses task file {task_file}: "
                             f"{_last_words(chr(10).join(tail))}")
        if task_uuid is None:
            raise BenchbedError(f"rally task start exited {code} without starting a task: "
                                f"{_last_words(chr(10).join(tail))}")
        return task_uuid

    def report(self, task_uuid: str) -> dict[str, Any]:
        # one file per task: two runs may share the home
        out = self.path / f"report-{task_uuid}.json"
        self.call("task", "report", "--uuid", task_uuid, "--json", "--out", str(out))
        try:
            data: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
        finally:
            out.unlink(missing_ok=True)
        return data


@contextmanager
def _leashed(argv: list[str], logger: Any, **options: Any
             ) -> Iterator["subprocess.Popen[str]"]:
    """A Rally command in a process group of its own that cannot outlive benchbed: Rally
    gets SIGKILL when benchbed ends (PR_SET_PDEATHSIG), and a watchdog in the group kills
    the whole group, Rally's worker processes included, once benchbed's end of the
    watchdog's pipe closes: when the command is over, on an error, or when benchbed dies."""
    process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, text=True, process_group=0,
                               preexec_fn=_die_with_parent, **options)
    watchdog: subprocess.Popen[bytes] | None = None
    try:
        try:
            watchdog = subprocess.Popen([sys.executable, "-I", "-S", "-c", WATCHDOG],
                                        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, process_group=process.pid)
        except (OSError, subprocess.SubprocessError):
            # the group is gone already: Rally and everything it started have ended
            watchdog = None
        logger.info("rally %s: pid %d, process group %d, watchdog pid %s", " ".join(argv[3:5]),
                    process.pid, process.pid, watchdog.pid if watchdog else "-")
        yield process
    finally:
        if watchdog is not None:
            assert watchdog.stdin is not None
            watchdog.stdin.close()
            watchdog.wait()
        else:
            process.kill()
        process.wait()
        if process.stdout is not None:
            process.stdout.close()


def _die_with_parent() -> None:
    """In the Rally child: SIGKILL when benchbed ends (Rally handles SIGTERM, so a `task run`
    killed with -9 would leave it running against the cloud on its own)."""
    _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


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
    samples; the run as stored. Bad input raises InputError with nothing left recorded."""
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
    with _rally_home(rally_path, deployment, render(deployment, "rally-spec"),
                     progress) as home, store.running(deployment.directory, run_uuid):
        task_run = TaskRun(
            uuid=run_uuid, deployment_uuid=deployment.uuid, deployment_name=deployment.name,
            task_name=Path(task_file).name, task_text=masking.scrub(task_text),
            task_digest=hashlib.sha256(task_text.encode()).hexdigest(),
            config_digest=config_digest(deployment.config), started_at=utcnow(),
            sample_interval=interval, tags=dict(tags or {}), versions={},
            deployment_timeline=masking.mask(report_lib.timeline(deployment.timeline())))
        store.add(task_run)
        servers = servers_of(deployment)
        sampler = Sampler(servers, interval)
        iterations: list[Iteration] = []
        samples: list[Sample] = []

        def while_rally_starts() -> None:
            # Rally loads its plugins for seconds before its first iteration
            task_run.versions = api.engine_for(deployment).deployed_versions()

        try:
            sampler.start()
            try:
                task_run.rally_task_uuid = home.start(task_file, planned_iterations(task),
                                                      progress, while_rally_starts)
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
        except InputError:
            store.delete(run_uuid)
            raise
        except BaseException as error:
            task_run.status, task_run.sla_ok = "failed", False
            task_run.error = masking.scrub(str(error) or type(error).__name__)
            _finish(task_run, iterations, samples)
            raise
        finally:
            for server in servers:
                server.close()
        _finish(task_run, iterations, samples)
    return task_run


def _finish(task_run: TaskRun, iterations: list[Iteration], samples: list[Sample]) -> None:
    task_run.finished_at = utcnow()
    store.finish(task_run, iterations, samples)


@contextmanager
def _rally_home(rally: str, deployment: Deployment, spec: str, progress: Progress | None
                ) -> Iterator[RallyHome]:
    """The deployment's Rally home, made for this spec unless it already is, and used under
    a shared lock (so that no other run makes it again meanwhile). It holds the cloud's
    credentials in Rally's database: it lives in the deployment's private folder, which
    `deployment destroy` removes."""
    digest = hashlib.sha256(spec.encode()).hexdigest()
    home = RallyHome(rally, deployment.directory / HOME_FOLDER, deployment.logger)
    descriptor = os.open(deployment.directory / HOME_LOCK,
                         os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, private_files.PRIVATE_FILE)
    try:
        while True:
            _lock(descriptor, fcntl.LOCK_EX, progress)
            if not home.made_from(digest):
                if progress:
                    progress("rally: making its environment for this deployment")
                home.make(spec, digest)
            # not atomic (flock(2)): another run may take the exclusive lock in between
            fcntl.flock(descriptor, fcntl.LOCK_SH)
            if home.made_from(digest):
                break
        yield home
    finally:
        os.close(descriptor)


def _lock(descriptor: int, kind: int, progress: Progress | None) -> None:
    """flock, saying so on the progress line when another run holds the home."""
    try:
        fcntl.flock(descriptor, kind | fcntl.LOCK_NB)
    except BlockingIOError:
        if progress:
            progress("rally: waiting for another task run of this deployment")
        fcntl.flock(descriptor, kind)


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
                                 "still under way, or its process runs elsewhere"),
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
