"""Entry point: the `benchbed` command and its error handling (one line, exit 1 or 2)."""

import logging
import os
import sys
import warnings

import click

from benchbed.cli.deployment import deployment
from benchbed.cli.doctor import doctor
from benchbed.cli.examples import attach as attach_examples
from benchbed.cli.gc import gc
from benchbed.cli.image import image_group
from benchbed.cli.plugin import plugin_group
from benchbed.cli.report import report


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="benchbed")
def cli() -> None:
    """Stand up the system you want to benchmark, and tear it down without a trace."""


cli.add_command(deployment)
deployment.add_command(report)
cli.add_command(plugin_group)
cli.add_command(image_group)
cli.add_command(gc)
cli.add_command(doctor)
attach_examples(cli)


def main() -> None:
    """Run one command, then leave without the interpreter's teardown.

    By then everything is committed and logged; tearing down SQLAlchemy, paramiko and the
    thread pools object by object would only add time to every command (docs/benchmarks.md).
    """
    code = _run()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:
        code = code or 1
    logging.shutdown()
    os._exit(code)


def _run() -> int:
    """The command's exit code: 0, 1 (it failed at run time) or 2 (bad input)."""
    from benchbed.errors import BenchbedError

    # a plugin's deprecation notice (FutureWarning) as one line, not file, line and source
    warnings.formatwarning = lambda message, *_args, **_kwargs: f"benchbed: warning: {message}\n"
    try:
        cli.main(standalone_mode=False, prog_name="benchbed")
    except click.exceptions.Exit as done:
        return done.exit_code
    except click.ClickException as error:
        error.show()
        return 2
    except click.Abort:
        sys.stderr.write("benchbed: aborted\n")
        return 130
    except SystemExit as done:
        if isinstance(done.code, str):
            sys.stderr.write(done.code + "\n")
            return 1
        return done.code or 0
    except BenchbedError as error:
        from benchbed import masking

        sys.stderr.write(f"benchbed: error: {masking.scrub(str(error))}\n")
        return error.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("benchbed: interrupted\n")
        return 130
    except Exception as error:
        if os.environ.get("BENCHBED_DEBUG"):
            raise
        from benchbed import masking

        sys.stderr.write(f"benchbed: internal error: {type(error).__name__}: "
                         f"{masking.scrub(str(error))} (set BENCHBED_DEBUG=1 for a traceback)\n")
        return 1
    return 0
