"""`benchbed deployment ...`: the commands users drive deployments with."""

import shlex
import sys

import click

from benchbed.cli import render
from benchbed.errors import InputError
from benchbed.exporters import FORMATS as EXPORT_FORMATS

NO_DEPLOYMENTS = ("No deployments yet. Create one with: benchbed deployment create --file "
                  "CONFIG --name NAME (example configs: samples/deployments/)")
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")
force_option = click.option("--force", is_flag=True,
                            help="Break the lease of a holder that is no longer running.")


def _resolve(name: str | None) -> str:
    """The deployment named on the command line, or the one selected with `use`."""
    if name:
        return name
    from benchbed import api

    selected = api.current()
    if selected:
        return selected
    raise click.UsageError("no deployment given and none selected with 'benchbed deployment use'")


@click.group()
def deployment() -> None:
    """Create, inspect, check, export and destroy deployments."""


@deployment.command()
@click.option("--file", "config_file", type=click.Path(dir_okay=False),
              help="Deployment config (YAML or JSON).")
@click.option("--name", required=True, help="Unique name of the deployment.")
@click.option("--fromenv", is_flag=True, help="Register the cloud described by the OS_* variables.")
@click.option("--no-use", is_flag=True, help="Do not make it the current deployment.")
@click.option("--no-preflight", is_flag=True,
              help="Record it without asking the world first (an ExistingCloud whose Keystone "
                   "is down now: `check` asks later).")
def create(config_file: str | None, name: str, fromenv: bool, no_use: bool,
           no_preflight: bool) -> None:
    """Deploy (or register) a system and record it."""
    from benchbed import api
    from benchbed.deployment import validate_name

    validate_name(name)
    if fromenv == bool(config_file):
        raise click.UsageError("give exactly one of --file and --fromenv")
    config = api.load_config(config_file) if config_file else api.config_from_env()
    render.note(f"creating deployment '{name}' ({config['type']})")
    created = api.create(name, config, validated=True, preflight=not no_preflight)
    if not no_use:
        api.use(created.uuid)
    render.note(f"deployment '{created.name}' is ready ({created.uuid}); "
                f"destroy it with: benchbed deployment destroy {shlex.quote(created.name)}")


@deployment.command()
@click.option("--file", "config_file", required=True, type=click.Path(dir_okay=False))
def validate(config_file: str) -> None:
    """Check a config, nested engines and providers included; create nothing."""
    from benchbed import api

    config = api.load_config(config_file)
    render.text(f"{config_file}: valid {config['type']} config")


@deployment.command("list")
@json_option
def list_deployments(as_json: bool) -> None:
    """List deployments."""
    from benchbed import api

    rows = api.list_deployments()
    if as_json:
        render.emit_json([{**row, "created_at": row["created_at"].isoformat(timespec="seconds")}
                          for row in rows])
        return
    if not rows:
        render.text(NO_DEPLOYMENTS)
        return
    try:
        selected = api.current()
    except InputError:
        selected = None
    render.table(["", "UUID", "NAME", "STATUS", "CREATED"],
                 [("*" if r["uuid"] == selected else "", r["uuid"], r["name"],
                   r["status"], f"{r['created_at']:%Y-%m-%d %H:%M:%S}") for r in rows])


@deployment.command()
@click.argument("name", required=False)
@json_option
@click.option("--steps", is_flag=True, help="Every step, not one line per server or node.")
def show(name: str | None, as_json: bool, steps: bool) -> None:
    """Show a deployment: status, endpoints, resources, and where the time went."""
    from benchbed import api

    details = api.show(_resolve(name))
    if as_json:
        render.emit_json(details)
        return
    for key in ("uuid", "name", "type", "status", "created_at", "updated_at", "held_by",
                "error", "log"):
        if details[key]:
            render.text(f"{key:<11} {details[key]}")
    if details["endpoints"]:
        render.text("endpoints:")
        render.yaml(details["endpoints"], indent=2)
    if details["resources"]:
        render.table(["SCOPE", "KIND", "NAME", "STATE"],
                     [(r["scope"], r["kind"], r["name"], r["state"])
                      for r in details["resources"]], title="resources")
    render.timeline(details, steps)


@deployment.command()
@click.argument("name", required=False)
@json_option
def config(name: str | None, as_json: bool) -> None:
    """Print the deployment's config, secrets masked."""
    from benchbed import api

    masked = api.config(_resolve(name))
    if as_json:
        render.emit_json(masked)
    else:
        render.yaml(masked)


@deployment.command()
@click.argument("name", required=False)
@json_option
def check(name: str | None, as_json: bool) -> None:
    """Prove the deployed system answers (Keystone and endpoints, or SSH to every server)."""
    from benchbed import api

    results = api.check(_resolve(name))
    rows = [{"target": r.target, "ok": r.ok, "detail": r.detail} for r in results]
    if as_json:
        render.emit_json(rows)
    else:
        render.table(["TARGET", "OK", "DETAIL"],
                     [(r["target"], "yes" if r["ok"] else "NO", r["detail"]) for r in rows])
    if not all(r.ok for r in results):
        sys.exit(1)


@deployment.command()
@click.argument("name")
def use(name: str) -> None:
    """Make NAME the deployment that commands act on when none is given."""
    from benchbed import api

    render.note(f"using deployment '{api.use(name)}'")


@deployment.command()
@click.argument("name", required=False)
@click.option("--format", "fmt", required=True, type=click.Choice(list(EXPORT_FORMATS)))
@click.option("--output", type=click.Path(dir_okay=False),
              help="Write to this file (mode 0600) instead of stdout.")
def export(name: str | None, fmt: str, output: str | None) -> None:
    """Print what a benchmark client needs (credentials included)."""
    from benchbed import api

    render.document(api.export(_resolve(name), fmt), output)


@deployment.command()
@click.argument("name", required=False)
@force_option
def recreate(name: str | None, force: bool) -> None:
    """Clean up and deploy again from the stored config."""
    from benchbed import api

    recreated = api.recreate(_resolve(name), force=force)
    render.note(f"deployment '{recreated.name}' recreated")


@deployment.command()
@click.argument("name", required=False)
@force_option
@click.option("--abandon", "abandon", multiple=True, metavar="HOST",
              help="HOST is gone for good: forget what is left on it (named on stderr), "
                   "then destroy the rest. Repeat for several hosts.")
def destroy(name: str | None, force: bool, abandon: tuple[str, ...]) -> None:
    """Remove everything the deployment created, then the deployment itself.

    A server that does not answer fails the destroy, and the record stays, since the server
    may come back. If it is gone for good, `--abandon HOST` is your word for it: what is
    left on it is forgotten, named here and in the timeline, and the rest is destroyed.
    """
    from benchbed import api

    target = _resolve(name)
    if abandon:
        for row in api.abandon(target, abandon, force=force):
            render.note(f"abandoned on {row['host']} (gone for good, left as it is): "
                        f"{row['kind']} {row['name']}")
    destroyed = api.destroy(target, force=force)
    render.note(f"deployment '{destroyed.name}' destroyed")


@deployment.command("forget-host-key")
@click.argument("name")
@click.argument("address")
def forget_host_key(name: str, address: str) -> None:
    """Forget the recorded host key of ADDRESS (host:port) after a deliberate rebuild."""
    from benchbed import api

    api.forget_host_key(name, address)
    render.note(f"forgot the host key of {address}")
