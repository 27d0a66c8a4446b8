"""`benchbed task report`: a run on one time axis, as a self-contained HTML page or JSON."""


import click

from benchbed.cli import render


@click.command("report")
@click.argument("run")
@click.option("--output", type=click.Path(dir_okay=False),
              help="Write to this file (mode 0600) instead of stdout.")
@click.option("--format", "fmt", type=click.Choice(["html", "json"]), default="html",
              show_default=True, help="A page to open in a browser, or the same data as JSON.")
def report(run: str, output: str | None, fmt: str) -> None:
    """Report a run (its uuid or a unique start of it): the iterations per atomic action,
    each service's CPU and memory and the deployment's own timeline on one time axis, with
    the run's facts and SLA, secrets masked. The HTML needs no network to open."""
    from benchbed import api

    render.document(api.task_report(run, fmt), output)
