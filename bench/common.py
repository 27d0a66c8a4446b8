"""Shared by the benchmarks: time whole commands, alternating A and B, and report medians."""

import statistics
import subprocess
import time
from collections.abc import Sequence


def time_command(argv: Sequence[str], env: dict[str, str] | None = None) -> float:
    """Wall seconds of one run; the command must succeed."""
    start = time.perf_counter()
    subprocess.run(list(argv), env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE)
    return time.perf_counter() - start


def compare(name_a: str, argv_a: Sequence[str], env_a: dict[str, str] | None,
            name_b: str, argv_b: Sequence[str], env_b: dict[str, str] | None,
            runs: int = 7, warmup: int = 1) -> tuple[float, float]:
    """Alternate A and B (so drift hits both), print min/median/max, return the medians."""
    for _ in range(warmup):
        time_command(argv_a, env_a)
        time_command(argv_b, env_b)
    times_a, times_b = [], []
    for _ in range(runs):
        times_a.append(time_command(argv_a, env_a))
        times_b.append(time_command(argv_b, env_b))
    for name, times in ((name_a, times_a), (name_b, times_b)):
        print(f"{name:<40} min {min(times):.3f}s  median {statistics.median(times):.3f}s  "
              f"max {max(times):.3f}s  ({runs} runs)")
    return statistics.median(times_a), statistics.median(times_b)
