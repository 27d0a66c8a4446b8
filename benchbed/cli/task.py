"""`benchbed task`: run a benchmark against a deployment, look at its runs, compare two.

Each verb lives in its own module (`task_run`, `task_report`, `task_compare`) and is added
to this group here; all of them are thin over `benchbed.api`.
"""

import click

from benchbed.cli.task_compare import compare
from benchbed.cli.task_report import report
from benchbed.cli.task_run import list_command, run_command, show_command


@click.group("task")
def task() -> None:
    """Run a Rally task against a deployment, with the system's own CPU and memory beside
    its iterations; list, show, report and compare the runs."""


for verb in (run_command, list_command, show_command, report, compare):
    task.add_command(verb)
