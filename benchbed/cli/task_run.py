"""`benchbed task run`, `task list`, `task show`: thin over benchbed.api."""

import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click

from benchbed.cli import render
from benchbed.terminal import safe

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def _tags(values: tuple[str, ...]) -> dict[str, str]:
    tags: dict[str, str] = {}
    for value in values:
        key, equals, text = value.partition("=")
        if not equals or not key:
            raise click.BadParameter(f"'{value}' is not KEY=VALUE", param_hint="--tag")
        tags[key] = text
    return tags


@contextmanager
def _progress_line() -> Iterator[Callable[[str], None] | None]:
    """One line on a terminal that each update overwrites; nothing when stderr is piped."""
    if not sys.stderr.isatty():
        yield None
        return

    def show(text: str) -> None:
        width = shutil.get_terminal_size().columns - 1
        sys.stderr.write(f"\r\033[K{f'  ...    {safe(text)}'[:width]}")
        sys.stderr.flush()

    try:
        yield show
    finally:
        sys.stderr.write("\r\033[K")
        sys.stderr.flush()


@click.command("run")
@click.argument("task_file", metavar="TASK", type=click.Path(dir_okay=False))
@click.option("--deployment", "deployment", required=True, help="The deployment to benchmark.")
@click.option("--tag", "tags", multiple=True, metavar="KEY=VALUE",
              help="A label kept with the run (repeatable): build=42, branch=main.")
@click.option("--interval", type=float, default=1.0, show_default=True,
              help="Seconds between two samples of the system's CPU and memory.")
@click.option("--rally", "rally", metavar="PATH",
              help="The rally command to run (default: $BENCHBED_RALLY, else benchbed[rally]'s).")
@json_option
def run_command(task_file: str, deployment: str, tags: tuple[str, ...], interval: float,
                rally: str | None, as_json: bool) -> None:
    """Run a Rally task against a deployment and record it; exit 1 if an SLA failed."""
    from benchbed import api
    from benchbed.tasks.runner import summary

    with _progress_line() as progress:
        done = api.task_run(deployment, task_file, _tags(tags), interval, rally, progress)
    if as_json:
        render.emit_json(summary(done))
    else:
        failed = sum(not item["pass_sla"] for item in done.scenarios)
        render.text(f"run {done.uuid}: {done.status}, {len(done.scenarios)} workload(s), "
                    f"SLA {'held' if done.sla_ok else 'FAILED'}")
    if not done.sla_ok:
        reason = done.error or f"{failed} of {len(done.scenarios)} workload(s) failed its SLA"
        raise SystemExit(f"benchbed: the SLA did not hold: {reason}")


@click.command("list")
@click.option("--deployment", help="Only the runs of this deployment.")
@json_option
def list_command(deployment: str | None, as_json: bool) -> None:
    """List benchmark runs, oldest first."""
    from benchbed import api
    from benchbed.tasks.runner import summary

    rows = [summary(found) for found in api.task_runs(deployment)]
    if as_json:
        render.emit_json(rows)
        return
    if not rows:
        render.note("No task runs yet. Start one with: benchbed task run TASK --deployment NAME")
        return
    render.table(["UUID", "DEPLOYMENT", "TASK", "STATUS", "SLA", "STARTED", "TAGS"],
                 [(row["uuid"], row["deployment"], row["task"], row["status"],
                   _sla(row["sla_ok"]), row["started_at"],
                   " ".join(f"{k}={v}" for k, v in row["tags"].items()))
                  for row in rows])


def _sla(ok: bool | None) -> str:
    return "-" if ok is None else "ok" if ok else "FAILED"


@click.command("show")
@click.argument("run_id", metavar="RUN")
@json_option
def show_command(run_id: str, as_json: bool) -> None:
    """Show one run (uuid or a unique prefix): what ran, against what, and how it ended."""
    from benchbed import api

    details: dict[str, Any] = api.task_show(run_id)
    if as_json:
        render.emit_json(details)
        return
    render.yaml({key: details[key] for key in (
        "uuid", "deployment", "task", "status", "error", "started_at", "finished_at",
        "tags", "versions", "task_digest", "config_digest", "samples", "services")
        if details[key] not in (None, {}, [])} | {"sla": _sla(details["sla_ok"])})
    render.table(["WORKLOAD", "SCENARIO", "ITERATIONS", "FAILED", "SLA"],
                 [(item["workload"], item["scenario"], item["iterations"], item["failed"],
                   _sla(item["pass_sla"])) for item in details["scenarios"]],
                 title="workloads")
