"""`benchbed doctor`: does this machine have what the installed plugins (or one config) need?"""

import sys

import click

from benchbed.cli import render


@click.command()
@click.option("--file", "config_file", type=click.Path(dir_okay=False),
              help="Check only what this deployment config needs (its networks included).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def doctor(config_file: str | None, as_json: bool) -> None:
    """Check this machine for what the engines and providers need: commands, daemons, kernel
    features, permissions, free networks, Python extras. One line per check, with what to do
    about a failure; exits 1 if any check fails."""
    from benchbed import api

    # a taken network is one of doctor's own checks (a FAIL line), not a config error
    config = api.load_config(config_file, check_networks=False) if config_file else None
    outcomes = api.doctor(config)
    if as_json:
        render.emit_json([vars(outcome) for outcome in outcomes])
    else:
        for outcome in outcomes:
            needed_by = ", ".join(outcome.needed_by)
            if outcome.ok:
                render.text(f"ok    {outcome.what}  [{needed_by}]")
            else:
                render.text(f"FAIL  {outcome.what}: {outcome.problem}; to fix: {outcome.fix}"
                            f"  [{needed_by}]")
    failed = sum(not outcome.ok for outcome in outcomes)
    render.note(f"doctor: {failed} of {len(outcomes)} checks failed" if failed else
                f"doctor: all {len(outcomes)} checks passed")
    if failed:
        sys.exit(1)
