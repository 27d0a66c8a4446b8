"""`benchbed gc`: the safety net for cloud resources whose ledger is lost."""

import click

from benchbed.cli import render


@click.command("gc")
@click.option("--file", "config_file", required=True, type=click.Path(dir_okay=False),
              help="A provider config (YAML or JSON), e.g. {type: Ec2Provider, region: ...}.")
@click.option("--delete", is_flag=True, help="Remove what is listed (default: only list it).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def gc(config_file: str, delete: bool, as_json: bool) -> None:
    """List the cloud resources benchbed tagged whose deployment no longer exists in this
    database or whose expiry has passed; with --delete, remove them. Resources without
    benchbed's tags are never listed or touched."""
    from benchbed import api

    sweep = api.gc(config_file, delete=delete)
    rows = [{"kind": s.kind, "id": s.id, "deployment": s.deployment, "reason": s.reason}
            for s in sweep.strays]
    if as_json:
        render.emit_json({"strays": rows, "deleted": delete and bool(rows),
                          "left_alone_elsewhere": sweep.elsewhere})
    else:
        render.table(["KIND", "ID", "DEPLOYMENT", "REASON"],
                     [(r["kind"], r["id"], r["deployment"], r["reason"]) for r in rows])
    if sweep.elsewhere:
        render.note(f"left alone: {sweep.elsewhere} resource(s) of another benchbed database "
                    f"that have not expired")
    if rows:
        render.note(f"deleted {len(rows)} resource(s)" if delete
                    else f"{len(rows)} resource(s) to delete: re-run with --delete")
