"""`benchbed deployment report`: where the time went, as a self-contained HTML page or JSON."""


import click

from benchbed.cli import render


@click.command("report")
@click.argument("name", required=False)
@click.option("--output", type=click.Path(dir_okay=False),
              help="Write to this file (mode 0600) instead of stdout.")
@click.option("--format", "fmt", type=click.Choice(["html", "json"]), default="html",
              show_default=True, help="A page to open in a browser, or the same data as JSON.")
def report(name: str | None, output: str | None, fmt: str) -> None:
    """Report a deployment: a waterfall of its timeline (one lane per server), its status,
    config, ledger and endpoints, secrets masked. The HTML needs no network to open."""
    from benchbed import api
    from benchbed.cli.deployment import _resolve

    render.document(api.report(_resolve(name), fmt), output)
