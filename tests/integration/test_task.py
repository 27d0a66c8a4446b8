"""`benchbed task run/list/show/report` against one real DebianEngine Keystone + Glance in
LXC, with the real Rally of .venv-clients: the run, its iterations and its samples in the
database, its report drawn in headless Chromium, no secret in any of it, bad input refused
with nothing recorded, one Rally home per deployment (there while the deployment is, gone
with it), and a run killed with -9 (also while its Rally home is being made) leaving no
Rally process and recorded as aborted, with the next run unharmed.
"""

import hashlib
import json
import os
import re
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.browser import rendered, task_marks
from tests.conftest import CLIENTS, Cli, cli_for, kill_when, write_yaml
from tests.integration.debian_lab import (
    NOTHING_LEFT,
    containers_named,
    lxc_here,
    lxc_leftovers,
    sh,
)

pytestmark = pytest.mark.root

LXC_NETWORK = "10.254.240.0/24"
LXC_PREFIX = "bbtr"
RALLY = str(CLIENTS / "rally")
RALLY_MISSING = "Rally is not installed: pip install 'benchbed[rally]' or give --rally"
TIMES = 4
TASK_TABLES = ("task_runs", "task_iterations", "task_samples")


class Cloud:
    """The module's deployment: its CLI, work directory and admin password."""

    def __init__(self, cli: Cli, work: Path) -> None:
        self.cli, self.work = cli, work
        clouds = yaml.safe_load((work / "clouds.yaml").read_text())
        self.password: str = clouds["clouds"]["cloud"]["auth"]["password"]

    @property
    def home(self) -> Path:
        return self.work / "home"

    def db(self, query: str, *args: Any) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.home / "benchbed.sqlite") as connection:
            return connection.execute(query, args).fetchall()

    def task_rows(self) -> str:
        """Every row of the task tables, as text."""
        return "\n".join(repr(row) for table in TASK_TABLES
                         for row in self.db(f"SELECT * FROM {table}"))

    def run_uuids(self) -> list[str]:
        return [row[0] for row in self.db("SELECT uuid FROM task_runs ORDER BY started_at")]

    def rally_home(self) -> Path:
        """The Rally home of the deployment `cloud`."""
        (uuid,) = self.db("SELECT uuid FROM deployments WHERE name = 'cloud'")[0]
        return self.home / "deployments" / uuid / "rally"

    def run_leftovers(self) -> list[Path]:
        """What runs left in the deployments' folders besides the Rally home and its lock."""
        return list(self.home.glob("deployments/*/tasks/*"))

    def deployment_log(self) -> str:
        return "".join(log.read_text() for log in
                       self.home.glob("deployments/*/deployment.log"))



@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    """One Keystone + Glance deployment in an LXC container, destroyed at the module's end."""
    work = tmp_path_factory.mktemp("task-cloud")
    cli = cli_for(work / "home")
    config = {"type": "DebianEngine", "services": ["keystone", "glance"],
              "provider": lxc_here(LXC_NETWORK, LXC_PREFIX)}
    try:
        cli.ok("deployment", "create", "--file", write_yaml(work / "cloud.yaml", config),
               "--name", "cloud", timeout=1500)
        cli.ok("deployment", "export", "cloud", "--format", "clouds.yaml",
               "--output", str(work / "clouds.yaml"))
        yield Cloud(cli, work)
    finally:
        cli.destroy_all()
        assert cli.json("deployment", "list") == []
        # the Rally home, with the cloud's credentials in its database, went with it
        assert list((work / "home").glob("deployments/*")) == []
        assert lxc_leftovers(LXC_NETWORK, LXC_PREFIX) == NOTHING_LEFT


def _task(path: Path, image: Path, times: int = TIMES) -> Path:
    path.write_text(json.dumps({
        "KeystoneBasic.create_and_list_users": [{
            "args": {}, "runner": {"type": "constant", "times": times, "concurrency": 2},
            "sla": {"failure_rate": {"max": 0}}}],
        "GlanceImages.create_and_delete_image": [{
            "args": {"image_location": str(image), "container_format": "bare",
                     "disk_format": "raw"},
            "runner": {"type": "constant", "times": times, "concurrency": 2},
            "context": {"users": {"tenants": 1, "users_per_tenant": 1}},
            "sla": {"failure_rate": {"max": 0}}}],
    }, indent=2))
    return path


def test_a_run_its_iterations_versions_and_samples_are_recorded_without_secrets(
        cloud: Cloud, tmp_path: Path) -> None:
    image = tmp_path / "tiny.img"
    image.write_bytes(os.urandom(64 * 1024))
    task = _task(tmp_path / "task.json", image)
    done = cloud.cli("task", "run", str(task), "--deployment", "cloud", "--tag", "build=42",
                     "--tag", "branch=main", "--interval", "0.5", "--rally", RALLY, "--json",
                     timeout=900)
    assert done.returncode == 0, done.stderr
    run = json.loads(done.stdout)
    assert run["status"] == "finished" and run["sla_ok"] is True
    assert run["tags"] == {"build": "42", "branch": "main"}
    assert run["task_digest"] == hashlib.sha256(task.read_bytes()).hexdigest()
    (config_text,) = cloud.db("SELECT config FROM deployments WHERE name = 'cloud'")[0]
    canonical = json.dumps(json.loads(config_text), sort_keys=True, separators=(",", ":"))
    assert run["config_digest"] == hashlib.sha256(canonical.encode()).hexdigest()

    # the versions are the container's own packages
    assert set(run["versions"]) == {"keystone", "glance-api"}
    container = containers_named(LXC_PREFIX)[0]
    for package, version in run["versions"].items():
        assert version == sh(f"lxc-attach -n {container} -- dpkg-query -W -f '${{Version}}' "
                             f"{package}").strip()

    shown = cloud.cli.ok("task", "show", run["uuid"][:8], "--json").stdout
    details = json.loads(shown)
    assert [(s["scenario"], s["iterations"], s["failed"], s["pass_sla"])
            for s in details["scenarios"]] == [
        ("KeystoneBasic.create_and_list_users", TIMES, 0, True),
        ("GlanceImages.create_and_delete_image", TIMES, 0, True)]
    assert all(s["sla"] and all(c["success"] for c in s["sla"]) for s in details["scenarios"])

    rows = cloud.db("SELECT scenario, workload, iteration, started, duration, error, atomic "
                    "FROM task_iterations WHERE run_uuid = ? ORDER BY workload, iteration",
                    run["uuid"])
    assert [(r[1], r[2]) for r in rows] == [(w, i) for w in (0, 1) for i in range(TIMES)]
    for scenario, _, _, started, duration, error, atomic in rows:
        actions = json.loads(atomic)
        assert error is None and duration > 0 and started > 1.7e9
        prefix = "keystone" if scenario.startswith("Keystone") else "glance"
        assert actions and all(name.startswith(prefix) and seconds >= 0
                               for name, seconds in actions), actions
        assert sum(seconds for _, seconds in actions) <= duration + 0.01
    started_at = [r[3] for r in rows]
    assert max(started_at) - min(started_at) < 600

    # what the Sampler's stop() returned is what the database holds
    sampled = re.findall(rf"task run {run['uuid']}: the sampler returned (\d+) sample",
                         cloud.deployment_log())
    stored = cloud.db("SELECT count(*) FROM task_samples WHERE run_uuid = ?", run["uuid"])
    assert sampled and int(sampled[-1]) == stored[0][0] == details["samples"]

    assert len(cloud.password) >= 24
    assert cloud.password not in shown
    assert cloud.password not in cloud.task_rows()
    assert cloud.run_leftovers() == []
    home = cloud.rally_home()
    spec = cloud.cli.ok("deployment", "export", "cloud", "--format", "rally-spec").stdout
    assert (home / "spec.sha256").read_text() == hashlib.sha256(spec.encode()).hexdigest()
    assert home.stat().st_mode & 0o777 == 0o700
    listed = cloud.cli.json("task", "list")
    assert [r["uuid"] for r in listed] == [run["uuid"]]
    text = cloud.cli.ok("task", "show", run["uuid"]).stdout
    assert "GlanceImages.create_and_delete_image" in text and "build: '42'" in text
    _check_report(cloud, run["uuid"], tmp_path)


def _check_report(cloud: Cloud, run_uuid: str, tmp_path: Path) -> None:
    """The real run's report: the iterations, each sampled service's CPU and memory and the
    deployment's timeline drawn in Chromium, and the admin password in neither form."""
    html = tmp_path / "run.html"
    cloud.cli.ok("task", "report", run_uuid, "--output", str(html))
    as_json = cloud.cli.ok("task", "report", run_uuid, "--format", "json").stdout
    assert cloud.password not in html.read_text() + as_json
    data = json.loads(as_json)
    series = {row["series"] for row in data["memory"]}
    assert any("keystone" in name for name in series), series
    with rendered(html, tmp_path / "run.png", [cloud.password], 50_000) as browser:
        marks = task_marks(browser)
    assert marks == {"atomic": len(data["atomic"]), "failed": 0, "cpu": len(series),
                     "memory": len(series), "deployment": len(data["deployment_timeline"])}
    assert min(marks["atomic"], marks["cpu"], marks["deployment"]) > 0, marks


def test_bad_input_exits_2_in_one_line_and_records_nothing(cloud: Cloud,
                                                           tmp_path: Path) -> None:
    task = _task(tmp_path / "task.json", tmp_path / "image.img", times=1)
    not_yaml = tmp_path / "broken.yaml"
    not_yaml.write_text("KeystoneBasic.create_user: [\n")
    not_task = tmp_path / "list.yaml"
    not_task.write_text("- just\n- a list\n")
    wrong_names = tmp_path / "names.yaml"
    wrong_names.write_text(yaml.safe_dump({"hello": "world"}))
    unknown_scenario = tmp_path / "unknown.json"
    unknown_scenario.write_text(json.dumps({"NoSuch.scenario": [{"runner": {
        "type": "constant", "times": 1}}]}))
    servers = tmp_path / "servers.yaml"
    servers.write_text(yaml.safe_dump({"type": "ServersEngine", "provider": {
        "type": "ExistingServers", "credentials": [{"host": "localhost", "user": "root"}]}}))
    cloud.cli.ok("deployment", "create", "--file", str(servers), "--name", "plain",
                 "--no-use")
    before = cloud.task_rows()
    cases = {
        "not YAML": (["task", "run", str(not_yaml), "--deployment", "cloud"],
                     "is not YAML or JSON"),
        "a list": (["task", "run", str(not_task), "--deployment", "cloud"],
                   "is not a Rally task"),
        "no scenario names": (["task", "run", str(wrong_names), "--deployment", "cloud"],
                              "'hello' is not a scenario name"),
        "unknown scenario": (["task", "run", str(unknown_scenario), "--deployment", "cloud"],
                             "Rally refuses task file"),
        "not an OpenStack": (["task", "run", str(task), "--deployment", "plain"],
                             "is not an OpenStack"),
        "unknown deployment": (["task", "run", str(task), "--deployment", "nosuch"],
                               "nosuch"),
        "unknown run": (["task", "show", "0123abcd"], "no task run '0123abcd'"),
        "rally path": (["task", "run", str(task), "--deployment", "cloud", "--rally",
                        str(tmp_path / "no-rally")], RALLY_MISSING),
    }
    for case, (args, says) in cases.items():
        env = {"BENCHBED_RALLY": RALLY} if "--rally" not in args else {}
        done = cloud.cli(*args, env=env, timeout=300)
        assert done.returncode == 2, (case, done.stdout, done.stderr)
        assert len(done.stderr.splitlines()) == 1 and says in done.stderr, (case, done.stderr)
    for variable in (str(tmp_path / "gone"), str(tmp_path)):
        done = cloud.cli("task", "run", str(task), "--deployment", "cloud",
                         env={"BENCHBED_RALLY": variable})
        assert (done.returncode, done.stderr) == (2, f"benchbed: error: {RALLY_MISSING}\n")
    assert cloud.task_rows() == before
    assert cloud.run_leftovers() == []
    cloud.cli.ok("deployment", "destroy", "plain")


def _rally_group(cloud: Cloud, logged: int, command: str) -> int:
    """The process group of the Rally command the deployment's log names since `logged`."""
    found = re.findall(rf"rally {command}: pid \d+, process group (\d+), watchdog pid \d+",
                       cloud.deployment_log()[logged:])
    assert found, f"no 'rally {command}' in the log"
    return int(found[-1])


def _group_ends(group: int, timeout: float = 30) -> bool:
    """Whether every process of the group has ended within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False


def test_a_run_killed_with_9_leaves_no_rally_and_is_recorded_aborted(cloud: Cloud,
                                                                      tmp_path: Path) -> None:
    task = tmp_path / "long.json"
    task.write_text(json.dumps({"KeystoneBasic.authenticate_user_and_validate_token": [{
        "runner": {"type": "constant", "times": 400, "concurrency": 2}}]}))
    home = cloud.rally_home()

    # killed while its Rally home is made again (as for a changed spec): a home left half
    # made is not taken for whole by the runs after it
    (home / "spec.sha256").write_text("not the spec's digest")
    logged = len(cloud.deployment_log())
    process = cloud.cli.popen("task", "run", str(task), "--deployment", "cloud",
                              "--rally", RALLY)
    kill_when(process, lambda: "rally env create: pid" in cloud.deployment_log()[logged:],
              timeout=300, never="the Rally home was never made again")
    assert _group_ends(_rally_group(cloud, logged, "env create"))
    assert not (home / "spec.sha256").exists()

    before = cloud.run_uuids()
    logged = len(cloud.deployment_log())
    process = cloud.cli.popen("task", "run", str(task), "--deployment", "cloud",
                              "--rally", RALLY)
    # killed once Rally iterates (its worker processes run then), as its output in the
    # deployment's log says
    kill_when(process, lambda: "ITER: 2 END" in cloud.deployment_log()[logged:],
              timeout=600, never="rally never ran an iteration")
    group = _rally_group(cloud, logged, "task start")
    assert _group_ends(group), sh(f"ps -o pid,pgid,args -g {group}")
    (killed,) = [uuid for uuid in cloud.run_uuids() if uuid not in before]
    shown = cloud.cli.json("task", "show", killed)
    assert (shown["status"], shown["sla_ok"], shown["finished_at"]) == ("failed", False, None)
    assert shown["error"].startswith("aborted:")
    assert [r["status"] for r in cloud.cli.json("task", "list")
            if r["uuid"] == killed] == ["failed"]
    assert cloud.run_leftovers() == []
    assert all(r["ok"] for r in cloud.cli.json("deployment", "check", "cloud"))


def test_an_sla_that_fails_exits_1_in_one_line(cloud: Cloud, tmp_path: Path) -> None:
    task = tmp_path / "strict.yaml"
    task.write_text(yaml.safe_dump({"KeystoneBasic.authenticate_user_and_validate_token": [{
        "runner": {"type": "constant", "times": 2, "concurrency": 1},
        "sla": {"max_avg_duration": 0.000001}}]}))
    done = cloud.cli("task", "run", str(task), "--deployment", "cloud", "--tag", "run=strict",
                     env={"BENCHBED_RALLY": RALLY}, timeout=600)
    assert done.returncode == 1, done.stderr
    assert done.stderr.splitlines() == [
        "benchbed: the SLA did not hold: 1 of 1 workload(s) failed its SLA"]
    run = next(r for r in cloud.cli.json("task", "list") if r["tags"] == {"run": "strict"})
    assert (run["status"], run["sla_ok"]) == ("finished", False)
    assert cloud.run_leftovers() == []
    assert (cloud.rally_home() / "spec.sha256").exists()
