"""`benchbed plugin list`."""

import click

from benchbed.cli import render


@click.group("plugin")
def plugin_group() -> None:
    """Engines and server providers found through entry points."""


@plugin_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_plugins(as_json: bool) -> None:
    """List the installed engines and providers."""
    from benchbed import api

    rows = api.plugins()
    if as_json:
        render.emit_json(rows)
    else:
        render.table(["KIND", "NAME", "DESCRIPTION"],
                     [(r["kind"], r["name"], r["description"]) for r in rows])
