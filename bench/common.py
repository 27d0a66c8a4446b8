"""Shared by the benchmarks: rounds, min and median, ratios against a baseline measured in the
same run, and targets that decide the exit code (and what `make bench` reports)."""

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

MIN_ROUNDS = 3
# `make bench` (bench/report.py) names a file here; each bench appends its targets to it
RESULTS = "BENCH_RESULTS"


def rounds(default: int = MIN_ROUNDS) -> int:
    """ROUNDS from the environment: at least 3, since a median of fewer says little."""
    text = os.environ.get("ROUNDS", str(default))
    if not text.isdigit() or int(text) < MIN_ROUNDS:
        print(f"ROUNDS={text!r}: must be a whole number of at least {MIN_ROUNDS}",
              file=sys.stderr)
        raise SystemExit(2)
    return int(text)


class Timings:
    """Seconds per label, one value per round, in the order measured."""

    def __init__(self) -> None:
        self.values: dict[str, list[float]] = {}

    def add(self, label: str, seconds: float) -> None:
        self.values.setdefault(label, []).append(seconds)

    def median(self, label: str) -> float:
        return statistics.median(self.values[label])

    def ratio(self, label: str, baseline: str) -> float:
        """Median against median: the figure every target of a bench compares."""
        return self.median(label) / self.median(baseline)

    def show(self) -> None:
        for label, values in self.values.items():
            print(f"  {label:<40} min {min(values):8.3f}s  median {statistics.median(values):8.3f}s"
                  f"  max {max(values):8.3f}s  ({len(values)} rounds)", flush=True)


@dataclass(frozen=True)
class Target:
    """One figure of a bench against its limit: `value` at most (or at least) `limit`."""

    name: str
    value: float
    limit: float
    unit: str = "x"
    at_most: bool = True

    @property
    def met(self) -> bool:
        return self.value <= self.limit if self.at_most else self.value >= self.limit

    def line(self) -> str:
        sign = "<=" if self.at_most else ">="
        return (f"{self.name} = {self.value:.2f}{self.unit} (target {sign} "
                f"{self.limit:g}{self.unit}: {'met' if self.met else 'MISSED'})")


def finish(bench: str, targets: Sequence[Target]) -> int:
    """Print each target's verdict, record them for `make bench`, and return the exit code:
    1 when any target was missed, else 0."""
    for target in targets:
        print(f"  {target.line()}", flush=True)
    if os.environ.get(RESULTS):
        with open(os.environ[RESULTS], "a") as out:
            for target in targets:
                out.write(json.dumps({"bench": bench, **asdict(target),
                                      "met": target.met}) + "\n")
    return 0 if targets and all(target.met for target in targets) else 1


def _bench_name() -> str:
    """bench/NAME of the running measure.py, to prefix a failure with."""
    return f"bench/{Path(sys.argv[0]).resolve().parent.name}"


def time_command(argv: Sequence[str], env: dict[str, str] | None = None) -> float:
    """Wall seconds of one run; a failing command ends the bench with its stderr."""
    return time_parallel([argv], env)


def time_parallel(argvs: Sequence[Sequence[str]], env: dict[str, str] | None = None) -> float:
    """Wall seconds until every command, all started at once, has ended; each must succeed."""
    start = time.perf_counter()
    processes = [subprocess.Popen(list(argv), env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True) for argv in argvs]
    stderrs = [process.communicate()[1] for process in processes]
    elapsed = time.perf_counter() - start
    for argv, process, stderr in zip(argvs, processes, stderrs, strict=True):
        if process.returncode != 0:
            sys.exit(f"{_bench_name()}: {' '.join(argv)} failed: {stderr.strip()}")
    return elapsed


def compare(name_a: str, argv_a: Sequence[str], env_a: dict[str, str] | None,
            name_b: str, argv_b: Sequence[str], env_b: dict[str, str] | None,
            runs: int, warmup: int = 1) -> Timings:
    """Alternate A and B (so drift hits both) for `runs` rounds after `warmup`; print them."""
    for _ in range(warmup):
        time_command(argv_a, env_a)
        time_command(argv_b, env_b)
    timings = Timings()
    for _ in range(runs):
        timings.add(name_a, time_command(argv_a, env_a))
        timings.add(name_b, time_command(argv_b, env_b))
    timings.show()
    return timings


def container_cpu(name: str) -> float:
    """CPU seconds an LXC container has used so far (cgroup v1 cpuacct, else v2 cpu.stat)."""
    v1 = Path(f"/sys/fs/cgroup/cpuacct/lxc.payload.{name}/cpuacct.usage")
    if v1.exists():
        return int(v1.read_text()) / 1e9
    for base in ("/sys/fs/cgroup/unified", "/sys/fs/cgroup"):
        stat = Path(f"{base}/lxc.payload.{name}/cpu.stat")
        if stat.exists():
            fields = dict(line.split() for line in stat.read_text().splitlines())
            return int(fields["usage_usec"]) / 1e6
    return float("nan")


def container_rss_mb(name: str) -> float:
    """Resident memory of every process in an LXC container, in MiB (pages two processes
    share counted for each)."""
    found = subprocess.run(["lxc-attach", "-n", name, "--", "ps", "-eo", "rss="],
                           capture_output=True, text=True, check=True)
    return sum(int(kb) for kb in found.stdout.split()) / 1024


def container_at_rest(name: str, timeout: float = 60) -> None:
    """Wait until no user of an LXC container has a systemd user manager left: logind stops
    one UserStopDelaySec (10 s) after that user's last session, so a node measured at once
    after benchbed's SSH counted root's (15 MB) or not, by chance."""
    deadline = time.monotonic() + timeout
    while subprocess.run(["lxc-attach", "-n", name, "--", "loginctl", "list-users",
                          "--no-legend"], capture_output=True, text=True,
                         check=True).stdout.strip():
        if time.monotonic() > deadline:
            fail(f"{name}: a user's systemd manager still runs after {timeout:.0f} s")
        time.sleep(2)


def container_rss_by_command(name: str, top: int = 10) -> dict[str, float]:
    """The `top` largest commands of an LXC container by resident memory (MiB, the processes
    of one command summed): what a total from container_rss_mb is made of."""
    found = subprocess.run(["lxc-attach", "-n", name, "--", "ps", "-eo", "rss=,comm="],
                           capture_output=True, text=True, check=True)
    by_command: dict[str, float] = {}
    for line in found.stdout.splitlines():
        kb, _, command = line.strip().partition(" ")
        by_command[command] = by_command.get(command, 0.0) + int(kb) / 1024
    largest = sorted(by_command.items(), key=lambda item: -item[1])[:top]
    return {command: round(mb, 1) for command, mb in largest}


def fail(message: str) -> None:
    """Say why on stderr at once (a later failure, in a destroy, must not hide it), and stop."""
    print(f"{_bench_name()}: {message}", file=sys.stderr, flush=True)
    raise SystemExit(1)


def run(argv: Sequence[str], env: dict[str, str], timeout: float = 3600,
        check: bool = True) -> str:
    """stdout of a command; a failure (with check) ends the bench with its stderr."""
    with subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as process:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except BaseException:
            # subprocess.run kills on Ctrl-C without waiting: the destroy that follows then
            # found the deployment still held by the dying create
            process.kill()
            process.wait()
            raise
    if check and process.returncode != 0:
        fail(f"{' '.join(argv[:4])} failed: {(stderr or stdout).strip()[-2000:]}")
    return stdout


def lxc_containers(prefixes: Sequence[str]) -> list[str]:
    """The LXC containers whose names start with one of `prefixes` and a dash."""
    found = subprocess.run(["lxc-ls", "-1"], capture_output=True, text=True, check=True)
    return [name for name in found.stdout.split()
            if name.startswith(tuple(f"{prefix}-" for prefix in prefixes))]


def destroy(benchbed: str, name: str, env: dict[str, str], prefixes: Sequence[str],
            work: Path) -> float:
    """Seconds to destroy deployment `name` and remove `work`; a failed destroy or a
    container left (named by `prefixes`) is the run's end, with the run's home (its ledger)
    kept for a destroy by hand."""
    start = time.monotonic()
    result = subprocess.run([benchbed, "deployment", "destroy", "--force", name], env=env,
                            capture_output=True, text=True, timeout=3600)
    left = lxc_containers(prefixes)
    if (result.returncode != 0 and "no deployment named" not in result.stderr) or left:
        fail(f"destroy failed ({result.stderr.strip()[-1000:]}), containers left: {left}; "
             f"the ledger is kept: BENCHBED_HOME={env['BENCHBED_HOME']} {benchbed} "
             f"deployment destroy --force {name}")
    seconds = time.monotonic() - start
    shutil.rmtree(work)
    return seconds


def create_and_check(benchbed: str, name: str, config_file: Path,
                     env: dict[str, str]) -> tuple[float, dict[str, Any]]:
    """Seconds from `deployment create` of `config_file` as `name` to the end of a passing
    `check` (a failing check ends the bench), and what `show --json` says of it then."""
    start = time.monotonic()
    run([benchbed, "deployment", "create", "--file", str(config_file), "--name", name], env)
    checked = json.loads(run([benchbed, "deployment", "check", name, "--json"], env))
    ready = time.monotonic() - start
    if not all(result["ok"] for result in checked):
        fail(f"{name}: check failed: {[r for r in checked if not r['ok']]}")
    return ready, json.loads(run([benchbed, "deployment", "show", name, "--json"], env))


def rally_workloads(clients: Path, work: Path, cloud: str, clouds: Path, spec: Path,
                    task: dict[str, Any]) -> tuple[float, list[dict[str, Any]]]:
    """Rally's run of `task` against cloud `cloud` of `clouds` (a Rally env from `spec`, in
    a Rally home under `work`; a tiny public image `bb-tiny` uploaded first): the seconds
    `task start` took, and the workloads of its JSON report."""
    env = {**os.environ, "OS_CLIENT_CONFIG_FILE": str(clouds)}
    image = work / "tiny.img"
    image.write_bytes(os.urandom(64 * 1024))
    run([str(clients / "openstack"), "--os-cloud", cloud, "image", "create", "--public",
         "--file", str(image), "--disk-format", "raw", "--container-format", "bare",
         "bb-tiny"], env)
    home = work / "rally-home"
    (home / ".rally").mkdir(parents=True)
    (home / ".rally" / "rally.conf").write_text(
        f"[database]\nconnection = sqlite:///{home}/rally.sqlite\n")
    env = {**os.environ, "HOME": str(home)}
    run([str(clients / "rally"), "db", "create"], env)
    run([str(clients / "rally"), "env", "create", "--name", cloud, "--spec", str(spec)], env)
    task_file = work / "task.json"
    task_file.write_text(json.dumps(task))
    start = time.monotonic()
    # it exits non-zero when iterations failed: those are a figure of the run, not its end
    run([str(clients / "rally"), "task", "start", str(task_file)], env, check=False)
    seconds = time.monotonic() - start
    report = work / "report.json"
    run([str(clients / "rally"), "task", "report", "--json", "--out", str(report)], env)
    return seconds, [workload for subtask in json.loads(report.read_text())["tasks"][0]["subtasks"]
                     for workload in subtask["workloads"]]


def bench_home(prefix: str, config: dict[str, Any]) -> tuple[Path, dict[str, str], Path]:
    """A work folder of the run's own (kept until a destroy has left nothing: its ledger is
    what a destroy needs), an environment whose BENCHBED_HOME is in it (SQLite, whatever the
    caller's database), and `config` written there as YAML."""
    import yaml

    work = Path(tempfile.mkdtemp(prefix=prefix))
    env = {**os.environ, "BENCHBED_HOME": str(work / "home")}
    env.pop("BENCHBED_DATABASE_URL", None)
    config_file = work / "config.yaml"
    config_file.write_text(yaml.safe_dump(config))
    return work, env, config_file
