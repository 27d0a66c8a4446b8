"""Shared fixtures: an isolated BENCHBED_HOME per test and a CLI runner that cleans up after."""

import json
import os
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from benchbed import masking
from benchbed.db import session as db_session
from benchbed.db import sql as db_sql

FUZZ_SEED = "BENCHBED_FUZZ_SEED"


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Property-based tests draw new examples each run, from one seed printed at the end
    (pytest_terminal_summary), that BENCHBED_FUZZ_SEED (or --hypothesis-seed) gives back.

    The seed goes to Hypothesis as its own --hypothesis-seed would (this hook runs before
    Hypothesis's), and into the environment, which pytest-xdist's workers inherit. The
    profile keeps no example database, so that a run depends on the seed alone."""
    from hypothesis import settings

    given = config.getoption("hypothesis_seed") or os.environ.get(FUZZ_SEED)
    if given is None:
        seed = secrets.randbits(32)
    elif not str(given).isdigit():
        raise pytest.UsageError(f"{FUZZ_SEED}={given!r}: the fuzz seed must be a number")
    else:
        seed = int(given)
    os.environ[FUZZ_SEED] = str(seed)
    config.option.hypothesis_seed = str(seed)
    settings.register_profile("benchbed", database=None, derandomize=False,
                              deadline=timedelta(seconds=2), print_blob=True)
    settings.load_profile("benchbed")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    terminalreporter.write_line(f"fuzz seed: {FUZZ_SEED}={os.environ[FUZZ_SEED]} draws this "
                                f"run's examples again")


def ledger_rows(home: Path) -> int:
    """Resource ledger rows left in a home's SQLite database (0 if it has none)."""
    database = home / "benchbed.sqlite"
    if not database.exists():
        return 0
    with sqlite3.connect(database) as connection:
        return connection.execute("SELECT count(*) FROM resources").fetchone()[0]


@pytest.fixture(autouse=True)
def _own_secret_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Secrets one test registers (a password "root") must not mask another test's output."""
    monkeypatch.setattr(masking, "_known_secrets", set())


def _reset_db_caches() -> None:
    db_session.engine.cache_clear()
    db_sql.forget_connections()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh BENCHBED_HOME (and SQLite database) for this test only."""
    path = tmp_path / "home"
    monkeypatch.setenv("BENCHBED_HOME", str(path))
    monkeypatch.delenv("BENCHBED_DATABASE_URL", raising=False)
    _reset_db_caches()
    yield path
    _reset_db_caches()


class Cli:
    """Runs the real `benchbed` command in a subprocess, as a user would."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        self._env = env

    @property
    def env(self) -> dict[str, str]:
        """A fixed environment if given, else the test's current one (read at each call)."""
        return dict(self._env if self._env is not None else os.environ)

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "benchbed", *args]

    def __call__(self, *args: str, timeout: float = 900, input_text: str | None = None,
                 env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(*args), capture_output=True, text=True,
                              timeout=timeout, input=input_text, env={**self.env, **(env or {})})

    def ok(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        """Run and assert exit code 0, showing stderr if not."""
        result = self(*args, **kwargs)
        assert result.returncode == 0, f"benchbed {' '.join(args)} failed: {result.stderr}"
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args, "--json").stdout)

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(self.argv(*args), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=self.env)

    def destroy_all(self) -> None:
        """Destroy every deployment in this home (used at teardown, also after failures)."""
        listed = self("deployment", "list", "--json")
        if listed.returncode != 0:
            return
        for deployment in json.loads(listed.stdout):
            self("deployment", "destroy", "--force", deployment["name"])


class NetnsCli(Cli):
    """`benchbed` run in the network namespace of process `pid` (a namespace host of
    tests/nshosts: benchbed on the first machine of a fleet), on this machine's files."""

    def __init__(self, pid: int, env: dict[str, str] | None = None) -> None:
        super().__init__(env)
        self.pid = pid

    def argv(self, *args: str) -> list[str]:
        return ["nsenter", "-t", str(self.pid), "-n", "--", *super().argv(*args)]


def log_says(home: Path, text: str) -> bool:
    """Whether a deployment's log in `home` says `text` yet (a moment to kill at)."""
    return any(text in log.read_text() for log in home.glob("deployments/*/deployment.log"))


def kill_when(process: subprocess.Popen[str], moment: Callable[[], bool], timeout: float,
              never: str, interval: float = 0.05) -> None:
    """kill -9 a running `benchbed` the moment `moment()` holds (kill_now: it must still be
    running then); the moment must come within `timeout` seconds, else the test fails with
    `never`. The process is killed and reaped whatever happens."""
    deadline = time.monotonic() + timeout
    try:
        while not moment():
            assert process.poll() is None, \
                f"it ended by itself (exit {process.returncode}) before the moment to kill " \
                f"came: {_output(process)}"
            assert time.monotonic() < deadline, never
            time.sleep(interval)
    except BaseException:
        _reap(process)
        raise
    kill_now(process)


def kill_now(process: subprocess.Popen[str]) -> None:
    """kill -9 `process` and reap it; the test fails unless the kill is what ended it.

    A process that ended by itself a moment before (its work done or failed) is then not
    the mid-work kill the test claims to prove; its exit status tells the two apart, as a
    check before the kill alone cannot (it may end between the check and the signal)."""
    try:
        assert process.poll() is None, \
            f"it ended by itself (exit {process.returncode}) before the kill: {_output(process)}"
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        _reap(process)
    assert process.returncode == -signal.SIGKILL, \
        f"it ended by itself (exit {process.returncode}), not by the kill: {_output(process)}"


def _reap(process: subprocess.Popen[str]) -> None:
    """Kill and wait for `process` if it still runs (cleanup after a failure)."""
    if process.poll() is None:
        process.kill()
    process.wait(timeout=30)


def _output(process: subprocess.Popen[str]) -> str:
    """What the ended process wrote to its pipes (their last lines), for a failure message."""
    stdout, stderr = process.communicate(timeout=30)
    return f"{(stdout or '')[-1500:]}{(stderr or '')[-1500:]}"


def cli_for(home: Path) -> Cli:
    """The CLI bound to `home` for a whole module, on SQLite whatever the environment says."""
    env = {key: value for key, value in os.environ.items() if key != "BENCHBED_DATABASE_URL"}
    return Cli({**env, "BENCHBED_HOME": str(home)})


CLIENTS = Path(__file__).resolve().parents[1] / ".venv-clients" / "bin"


def client(*args: str, env: dict[str, str] | None = None, timeout: float = 300,
           check: bool = True, netns: int | None = None) -> subprocess.CompletedProcess[str]:
    """Run a real benchmark client (`openstack`, `rally`) from .venv-clients; assert it passed
    (unless not `check`: a clean-up that must not hide the failure before it). `netns`: the
    pid of a process whose network namespace it runs in (a namespace host of tests/nshosts).

    In a session of its own, killed with all of it on a timeout: `rally task start` forks its
    runner's workers, which outlived a killed parent and kept loading the machine and the
    cloud (found as orphans after test_nova's Rally timed out at load average 45)."""
    inside = ["nsenter", "-t", str(netns), "-n", "--"] if netns is not None else []
    process = subprocess.Popen([*inside, str(CLIENTS / args[0]), *args[1:]],
                               stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True,
                               env={**os.environ, **(env or {})})
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise
    result = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    assert result.returncode == 0 or not check, \
        f"{' '.join(args)}: {result.stdout[-1500:]}{result.stderr[-1500:]}"
    return result


def rally_env(tmp_path: Path, spec: Path, netns: int | None = None) -> dict[str, str]:
    """A Rally home of its own with an environment made from `spec` (an exported rally-spec);
    returns the variables the further `rally` calls need. Rally keeps its database in
    /tmp/rally.sqlite whatever HOME says, unless rally.conf names one."""
    home = tmp_path / "rally-home"
    (home / ".rally").mkdir(parents=True)
    (home / ".rally" / "rally.conf").write_text(
        f"[database]\nconnection = sqlite:///{home}/rally.sqlite\n")
    env = {"HOME": str(home)}
    client("rally", "db", "create", env=env, netns=netns)
    client("rally", "env", "create", "--name", "bb", "--spec", str(spec), env=env, netns=netns)
    return env


def rally_task_without_failures(tmp_path: Path, spec: Path, task: dict[str, Any],
                                timeout: float, netns: int | None = None) -> None:
    """`rally task start` of `task` in a Rally home made from `spec`: every workload ran all
    its iterations and none failed, as Rally's own JSON report says."""
    env = rally_env(tmp_path, spec, netns)
    task_file = tmp_path / "task.json"
    task_file.write_text(json.dumps(task))
    client("rally", "task", "start", str(task_file), env=env, timeout=timeout, netns=netns)
    report = tmp_path / "report.json"
    client("rally", "task", "report", "--json", "--out", str(report), env=env, netns=netns)
    workloads = [workload for subtask in json.loads(report.read_text())["tasks"][0]["subtasks"]
                 for workload in subtask["workloads"]]
    done = [(workload["total_iteration_count"], workload["failed_iteration_count"])
            for workload in workloads]
    assert sorted(done) == sorted((runs[0]["runner"]["times"], 0) for runs in task.values()), \
        done


@contextmanager
def password_sshd(server: dict[str, Any], log: str, work: Path) -> Iterator[int]:
    """A second sshd of the test's own in a netns host's namespace (NetnsProvider's `server`
    record; `log`, its deployment's log path), with that host's own config but passwords
    allowed, on port 2222; stopped after."""
    config = Path(log).parent / "netns" / server["name"] / "sshd_config"
    own = work / "password_sshd_config"
    own.write_text(config.read_text().replace("Port 22", "Port 2222").replace(
        "PasswordAuthentication no", "PasswordAuthentication yes").replace(
        'sshd.pid"', 'password-sshd.pid"'))
    sshd = subprocess.Popen(["ip", "netns", "exec", server["name"], "/usr/sbin/sshd", "-D",
                             "-e", "-f", str(own)], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection((server["host"], 2222), timeout=2).close()
                break
            except OSError:
                assert sshd.poll() is None and time.monotonic() < deadline, "no sshd on 2222"
                time.sleep(0.2)
        yield 2222
    finally:
        sshd.terminate()
        sshd.wait(timeout=30)


def refused(result: subprocess.CompletedProcess[str], code: int, *words: str) -> str:
    """Exit `code` and exactly one `benchbed:` line on stderr, holding each of `words`, and no
    traceback; returns that line."""
    assert result.returncode == code, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("benchbed: ")]
    assert len(lines) == 1 and all(word in lines[0] for word in words), result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def write_yaml(path: Path, config: dict[str, Any]) -> str:
    """Write a deployment config; returns its path for `--file`."""
    path.write_text(yaml.safe_dump(config))
    return str(path)


@pytest.fixture
def bb(home: Path) -> Iterator[Cli]:
    """The CLI bound to this test's home; whatever the test leaves is destroyed afterwards."""
    cli = Cli()
    yield cli
    cli.destroy_all()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    from tests.postgres import postgres_server

    with postgres_server() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, home: Path, monkeypatch: pytest.MonkeyPatch
             ) -> Iterator[str]:
    """Run the test against SQLite and against a real PostgreSQL (a fresh schema each time)."""
    if request.param == "sqlite":
        yield "sqlite"
        return
    url = request.getfixturevalue("postgres_url")
    from sqlalchemy import create_engine, text

    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    admin.dispose()
    monkeypatch.setenv("BENCHBED_DATABASE_URL", url)
    _reset_db_caches()
    yield "postgresql"
    _reset_db_caches()


class _InventoryLoader(yaml.SafeLoader):
    """Reads an exported Ansible inventory's `!unsafe` strings as the strings they are."""


_InventoryLoader.add_constructor("!unsafe", lambda loader, node: loader.construct_scalar(node))


def read_inventory(text: str) -> Any:
    """An exported Ansible inventory as data (yaml.safe_load refuses its `!unsafe` tags)."""
    return yaml.load(text, Loader=_InventoryLoader)
