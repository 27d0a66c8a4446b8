"""`benchbed task compare A B`: run B against run A, with a verdict a CI pipeline can act on."""

import sys
from typing import Any

import click

from benchbed.cli import render


@click.command("compare")
@click.argument("a")
@click.argument("b")
@click.option("--json", "as_json", is_flag=True, help="The comparison as JSON.")
@click.option("--fail-above", type=click.FloatRange(min=0), metavar="PCT",
              help="Exit 1 if B is slower on any row with even the interval's low end above "
                   "PCT %.")
@click.option("--different-tasks", is_flag=True,
              help="Compare runs of different tasks (refused otherwise: exit 2).")
def compare(a: str, b: str, as_json: bool, fail_above: float | None,
            different_tasks: bool) -> None:
    """Compare run B with run A (ids or unique prefixes): per scenario and atomic action the
    median and p95 of each, the ratio B/A with a bootstrap 95 % interval and a verdict, and
    each service's CPU-seconds per iteration. A verdict needs the interval to exclude 1, a
    change above 20 % (what two runs of the same task differ by on a shared machine) and
    above twice the larger drift between the halves of either run; anything less is
    reported as noise."""
    from benchbed import api
    from benchbed.tasks.compare import regressions

    result = api.task_compare(a, b, different_tasks=different_tasks)
    for warning in result["warnings"]:
        render.note(f"warning: {warning}")
    if as_json:
        render.emit_json(result)
    else:
        _show(result)
    if fail_above is None:
        return
    failing = regressions(result, fail_above)
    for row in failing:
        render.note(f"regression above {fail_above:g} %: {_name(row)}: {row['text']}")
    if failing:
        sys.exit(1)


def _show(result: dict[str, Any]) -> None:
    for label in ("a", "b"):
        run = result[label]
        render.text(f"{label.upper()}: {run['uuid']}  {run['task_name']} on "
                    f"{run['deployment_name']}, {run['started_at']}, {run['iterations']} "
                    f"iterations ({run['failed']} failed)")
    render.table(["SCENARIO / ACTION", "N A/B", "MEDIAN A", "MEDIAN B", "P95 A", "P95 B",
                  "B/A", "VERDICT"],
                 [(_name(row), f"{row['a']['n']}/{row['b']['n']}",
                   _seconds(row["a"]["median"]), _seconds(row["b"]["median"]),
                   _seconds(row["a"]["p95"]), _seconds(row["b"]["p95"]),
                   "" if row["ratio"] is None else f"{row['ratio']:.3f}", row["text"])
                  for row in result["rows"]], title="seconds per passed iteration")
    if result["services"]:
        render.table(["SERVER", "SERVICE", "CPU-S/ITER A", "CPU-S/ITER B", "B/A", ""],
                     [(row["server"], row["service"], _seconds(row["a"]), _seconds(row["b"]),
                       "" if row["ratio"] is None else f"{row['ratio']:.3f}", row["note"])
                      for row in result["services"]], title="CPU-seconds per iteration")


def _name(row: dict[str, Any]) -> str:
    return f"{row['label']} > {row['action']}" if row["action"] else row["label"]


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
