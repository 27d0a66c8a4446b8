"""Shared by the benchmarks: rounds, min and median, ratios against a baseline measured in the
same run, and targets that decide the exit code (and what `make bench` reports)."""

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

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
