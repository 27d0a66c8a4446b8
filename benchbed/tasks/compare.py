"""Two benchmark runs side by side, with a verdict in words a CI pipeline can act on.

Per scenario, for the whole iteration and for each atomic action: the median and p95 of each
run, the ratio of medians B/A and its bootstrap 95 % confidence interval; plus each service's
CPU-seconds per iteration in each run.

The bootstrap resamples the passed iterations of each run with replacement, takes each
resample's median and the ratio of the two, many times; the interval is the 2.5th to 97.5th
percentile of those ratios. Only each resample's median matters, and it has a known exact
distribution, so it is drawn directly instead of building the resample (`_resampled_median`):
the same bootstrap, at a cost that does not grow with the number of iterations (pure Python,
no numpy). The random generator is seeded from the two run ids and the row, so the same pair
of runs always gives the same answer.

A row gets a verdict ("slower"/"faster") only when three things hold:
1. the interval excludes 1.0: the change is not the spread within the runs;
2. the change passes `PRACTICAL_PCT` (on the log scale, so that A against B and B against A
   get the same answer): below it, no one should act on a change, real or not. Measured on
   a shared 2-core machine (2026-12-05, load average 3-4, Keystone in LXC,
   KeystoneBasic.create_user x10 at concurrency 2): six runs of one task had medians from
   1.60 to 1.86 s, 16 % apart at most, while Keystone's CPU-seconds per iteration stayed
   within 3 %; with 5 % as the threshold four of five A/A pairs got a verdict. One uwsgi
   worker instead of four was 44 % slower there;
3. the change passes the runs' own drift, times `DRIFT_FACTOR`. The interval assumes the
   iterations of a run are independent draws; on a shared machine they are not: the
   neighbours' load comes and goes over minutes and moves every iteration of a stretch
   together, and a run-to-run shift of that kind is outside any interval drawn from one run
   (in CI one of five A/A pairs was called "faster" that way, past 20 %). Each run measures
   it itself: the ratio of the medians of its second and first halves (in start order).
   Under a steady change of the machine, two back-to-back runs' centres are one run apart,
   twice as far as its halves' centres, so the change between runs is twice the change
   within one (`DRIFT_FACTOR`); the larger drift of the two runs counts. The halves' medians
   are of a few iterations each, so the drift also holds the spread within the run: it errs
   on the side of no verdict. Simulated (2026-12-06; 10 iterations per run, lognormal
   spread 10-20 %, 150-200 pairs each): a steady machine, A/A verdicts 0-2 % with or
   without this condition; a machine slowing steadily by 30 % across two runs, 20-29 % of
   A/A pairs flagged by conditions 1 and 2 alone, 9-10 % with the drift; each half of each
   run at its own level (±15-20 %), 16-21 % against 3 %. The price is power: B 44 % slower
   at 15 % spread is found in 84 % of pairs instead of all (93 % with 20 iterations).
Otherwise the row says what this pair of runs could have told: "no difference this run can
detect: noise ±X %", X the larger of the interval's half-width and the drift times
DRIFT_FACTOR; or, when the change is real but small, that it is below the threshold.
A machine that changed in the pause between two runs and stayed steady during both is not
seen by any of this: that is why tests pin the deployment's priority (tests/long/
test_task_compare.py) and why a pipeline should compare runs made under the same conditions.
"""

import hashlib
import itertools
import math
import random
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from benchbed.tasks.model import Iteration, Sample, TaskRun

RESAMPLES = 5000
CONFIDENCE = 0.95
# A change smaller than this is not called one (the module's docstring says why)
PRACTICAL_PCT = 20.0
# How much more two runs drift apart than the halves of one (the module's docstring says why)
DRIFT_FACTOR = 2.0
# Fewer passed iterations than this and a median's resamples take a handful of values only:
# the interval would be an artefact of the resampling, not of the runs
MIN_ITERATIONS = 5
WHOLE = "whole iteration"

RowKey = tuple[int, str, str | None]


def compare(a: TaskRun, a_iterations: Sequence[Iteration], a_samples: Sequence[Sample],
            b: TaskRun, b_iterations: Sequence[Iteration], b_samples: Sequence[Sample]
            ) -> dict[str, Any]:
    """The comparison of run B against run A: rows (one per scenario and action) and the
    services' CPU-seconds per iteration, as plain data (the CLI renders it, --json dumps it)."""
    a_durations, b_durations = _durations(a_iterations), _durations(b_iterations)
    keys = sorted(set(a_durations) | set(b_durations),
                  key=lambda key: (key[0], key[1], key[2] is not None, key[2] or ""))
    repeated = _repeated_scenarios(keys)
    rows = [_row(key, key[1] in repeated, a_durations.get(key, []), b_durations.get(key, []),
                 _seed(a.uuid, b.uuid, key)) for key in keys]
    return {
        "a": _summary(a, a_iterations), "b": _summary(b, b_iterations),
        "confidence": CONFIDENCE, "resamples": RESAMPLES, "practical_pct": PRACTICAL_PCT,
        "drift_factor": DRIFT_FACTOR, "rows": rows,
        "services": _services(_cpu_per_iteration(a_samples, len(a_iterations)),
                              _cpu_per_iteration(b_samples, len(b_iterations))),
    }


def regressions(result: dict[str, Any], above_pct: float) -> list[dict[str, Any]]:
    """The rows where B is slower and even the interval's low end is above `above_pct` %."""
    return [row for row in result["rows"]
            if row["verdict"] == "slower" and row["ci_pct"][0] > above_pct]


def bootstrap_ratio(a: Sequence[float], b: Sequence[float], rng: random.Random,
                    resamples: int = RESAMPLES) -> tuple[float, float]:
    """The percentile bootstrap interval (CONFIDENCE) of median(b) / median(a)."""
    sorted_a, sorted_b = sorted(a), sorted(b)
    ratios = sorted(_resampled_median(sorted_b, rng) / _resampled_median(sorted_a, rng)
                    for _ in range(resamples))
    tail = (1 - CONFIDENCE) / 2
    return quantile(ratios, tail), quantile(ratios, 1 - tail)


def _resampled_median(ordered: Sequence[float], rng: random.Random) -> float:
    """The median of one resample with replacement of `ordered` (sorted), drawn directly.

    A resample draws n indices floor(n*U) from n uniforms U; its k-th smallest value is the
    value at floor(n*U_(k)), and the k-th smallest of n uniforms follows Beta(k, n-k+1). The
    next one up is the smallest of the n-k uniforms above U_(k): U_(k) + (1-U_(k)) times the
    minimum of n-k uniforms, which is 1 - V^(1/(n-k)). Exactly the resample's median, in
    constant time."""
    n = len(ordered)
    k = (n + 1) // 2
    low = rng.betavariate(k, n - k + 1)
    if n % 2:
        return ordered[_index(low, n)]
    high = low + (1 - low) * (1 - rng.random() ** (1 / (n - k)))
    return (ordered[_index(low, n)] + ordered[_index(high, n)]) / 2


def _index(uniform: float, n: int) -> int:
    # a Beta draw can round up to exactly 1.0
    return min(int(uniform * n), n - 1)


def quantile(ordered: Sequence[float], q: float) -> float:
    """The q-quantile of sorted values, interpolated between neighbours (numpy's default)."""
    position = (len(ordered) - 1) * q
    below = math.floor(position)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * (position - below)


def drift(in_start_order: Sequence[float]) -> float:
    """How far a run moved while it ran: |ln| of the median of its second half (in start
    order) over that of its first; an odd count's middle iteration goes to the second half.

    It holds the run's spread too (each half's median is of a few values), so it is never
    smaller than what the halves' own noise makes it: an estimate that errs on the safe side."""
    middle = len(in_start_order) // 2
    first, second = sorted(in_start_order[:middle]), sorted(in_start_order[middle:])
    return abs(math.log(quantile(second, 0.5) / quantile(first, 0.5)))


def verdict(ratio: float, low: float, high: float, drifted: float = 0.0) -> tuple[str, str]:
    """("slower" | "faster" | "none", the verdict in words) for a ratio B/A, its interval and
    the larger `drift` of the two runs (the module's docstring gives the three conditions)."""
    change = math.log(ratio)
    drift_noise = DRIFT_FACTOR * drifted
    noise = max((math.log(high) - math.log(low)) / 2, drift_noise)
    if (low <= 1 <= high) or abs(change) <= drift_noise:
        return "none", f"no difference this run can detect: noise ±{_pct(math.expm1(noise))} %"
    if ratio > 1:
        word, text = "slower", (f"B is {_pct(ratio - 1)} % slower, "
                                f"CI {_pct(low - 1)}-{_pct(high - 1)} %")
    else:
        word, text = "faster", (f"B is {_pct(1 - ratio)} % faster, "
                                f"CI {_pct(1 - high)}-{_pct(1 - low)} %")
    if abs(change) <= math.log1p(PRACTICAL_PCT / 100):
        return "none", f"{text}: below the {PRACTICAL_PCT:.0f} % that counts"
    return word, text


def _pct(fraction: float) -> str:
    return f"{fraction * 100:.0f}"


def _durations(iterations: Sequence[Iteration]) -> dict[RowKey, list[float]]:
    """Seconds per passed iteration, for the whole iteration and each atomic action (an
    action that occurs twice in an iteration counts once, with both times added). A failed
    iteration's time is the time to its failure, not to the work: it is left out. In the order
    the iterations started (`drift` needs it)."""
    durations: dict[RowKey, list[float]] = defaultdict(list)
    for item in sorted(iterations, key=lambda item: item.started):
        if item.error is not None:
            continue
        durations[(item.workload, item.scenario, None)].append(item.duration)
        per_action: dict[str, float] = defaultdict(float)
        for name, seconds in item.atomic:
            per_action[name] += seconds
        for name, seconds in per_action.items():
            durations[(item.workload, item.scenario, name)].append(seconds)
    return durations


def _repeated_scenarios(keys: Sequence[RowKey]) -> set[str]:
    """Scenarios that more than one workload of the task runs (their rows name the workload)."""
    workloads: dict[str, set[int]] = defaultdict(set)
    for workload, scenario, _ in keys:
        workloads[scenario].add(workload)
    return {scenario for scenario, seen in workloads.items() if len(seen) > 1}


def _seed(a_uuid: str, b_uuid: str, key: RowKey) -> int:
    text = "\0".join([a_uuid, b_uuid, str(key[0]), key[1], key[2] or ""])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def _row(key: RowKey, name_workload: bool, a: list[float], b: list[float], seed: int
         ) -> dict[str, Any]:
    workload, scenario, action = key
    row: dict[str, Any] = {
        "workload": workload, "scenario": scenario,
        "label": f"{scenario} #{workload}" if name_workload else scenario,
        "action": action, "a": _stats(a), "b": _stats(b),
        "ratio": None, "ci": None, "change_pct": None, "ci_pct": None, "drift_pct": None,
    }
    if not a or not b:
        row["verdict"], row["text"] = "missing", f"only in {'A' if a else 'B'}"
        return row
    if min(len(a), len(b)) < MIN_ITERATIONS:
        row["verdict"] = "too few"
        row["text"] = (f"too few passed iterations to tell (A {len(a)}, B {len(b)}; "
                       f"{MIN_ITERATIONS} needed)")
        return row
    row.update(judge(a, b, random.Random(seed)))
    return row


def judge(a: Sequence[float], b: Sequence[float], rng: random.Random,
          resamples: int = RESAMPLES) -> dict[str, Any]:
    """B's durations against A's (each in start order, MIN_ITERATIONS or more): the ratio of
    medians, its interval, each run's drift and the verdict, as a row of `compare` has them."""
    ratio = quantile(sorted(b), 0.5) / quantile(sorted(a), 0.5)
    low, high = bootstrap_ratio(a, b, rng, resamples)
    drifts = drift(a), drift(b)
    word, text = verdict(ratio, low, high, max(drifts))
    return {"ratio": ratio, "ci": [low, high], "change_pct": (ratio - 1) * 100,
            "ci_pct": [(low - 1) * 100, (high - 1) * 100],
            "drift_pct": {"a": math.expm1(drifts[0]) * 100, "b": math.expm1(drifts[1]) * 100},
            "verdict": word, "text": text}


def _stats(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0, "median": None, "p95": None}
    ordered = sorted(values)
    return {"n": len(values), "median": quantile(ordered, 0.5), "p95": quantile(ordered, 0.95)}


def _summary(run: TaskRun, iterations: Sequence[Iteration]) -> dict[str, Any]:
    return {
        "uuid": run.uuid, "task_name": run.task_name, "task_digest": run.task_digest,
        "deployment_name": run.deployment_name, "config_digest": run.config_digest,
        "started_at": run.started_at.isoformat(timespec="seconds"), "status": run.status,
        "sla_ok": run.sla_ok, "tags": run.tags, "iterations": len(iterations),
        "failed": sum(1 for item in iterations if item.error is not None),
    }


def _cpu_per_iteration(samples: Sequence[Sample], iterations: int) -> dict[tuple[str, str],
                                                                           float | None]:
    """CPU-seconds each service used during the run, per iteration of the run (None: one
    sample only, nothing to measure from). The counter restarts with its service: a value
    below the one before counts from zero."""
    counters: dict[tuple[str, str], list[Sample]] = defaultdict(list)
    for sample in samples:
        counters[(sample.server, sample.service)].append(sample)
    used: dict[tuple[str, str], float | None] = {}
    for key, series in counters.items():
        series.sort(key=lambda sample: sample.at)
        if len(series) < 2 or not iterations:
            used[key] = None
            continue
        total = 0.0
        for before, after in itertools.pairwise(series):
            step = after.cpu_seconds - before.cpu_seconds
            total += step if step >= 0 else after.cpu_seconds
        used[key] = total / iterations
    return used


def _services(a: dict[tuple[str, str], float | None], b: dict[tuple[str, str], float | None]
              ) -> list[dict[str, Any]]:
    rows = []
    for server, service in sorted(set(a) | set(b)):
        in_a, in_b = a.get((server, service)), b.get((server, service))
        note = ("only in B" if (server, service) not in a else
                "only in A" if (server, service) not in b else
                "one sample only" if in_a is None or in_b is None else "")
        ratio = in_b / in_a if in_a and in_b is not None else None
        rows.append({"server": server, "service": service, "a": in_a, "b": in_b,
                     "ratio": ratio, "note": note})
    return rows
