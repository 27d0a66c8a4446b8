"""Entry point: the `benchbed` command and its error handling (one line, exit 1 or 2)."""

import errno
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
from benchbed.cli.task import task


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
cli.add_command(task)
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
    warnings.formatwarning = lambda message, *_args, **_kwargs: _line("warning", message) + "\n"
    try:
        cli.main(standalone_mode=False, prog_name="benchbed")
    except click.exceptions.Exit as done:
        return done.exit_code
    except click.ClickException as error:
        _click_error(error)
        return 2
    except click.Abort:
        sys.stderr.write("benchbed: aborted\n")
        return 130
    except SystemExit as done:
        if isinstance(done.code, str):
            sys.stderr.write(_line(None, done.code) + "\n")
            return 1
        return done.code or 0
    except BenchbedError as error:
        sys.stderr.write(_line("error", error) + "\n")
        return error.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("benchbed: interrupted\n")
        return 130
    except OSError as error:
        if error.errno not in WORLD_ERRNOS:
            return _internal(error)
        # the machine's fault, not benchbed's nor the input's: a full or failing disk
        sys.stderr.write(_line("error", _os_error(error)) + "\n")
        return 1
    except Exception as error:
        return _internal(error)
    return 0


def _internal(error: Exception) -> int:
    """A bug: one line, the traceback only on request."""
    if os.environ.get("BENCHBED_DEBUG"):
        _traceback(error)
    sys.stderr.write(_line("internal error", f"{type(error).__name__}: {error}")
                     + " (set BENCHBED_DEBUG=1 for a traceback)\n")
    return 1


def _os_error(error: OSError) -> str:
    where = f": {error.filename}" if error.filename else ""
    return f"{error.strerror or os.strerror(error.errno or 0)}{where}"


# errno values that say the world failed (disk full, quota, I/O error, read-only filesystem)
WORLD_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS})


def _line(kind: str | None, message: object) -> str:
    """The one way a message leaves on stderr: secrets masked (third-party text included,
    such as a driver's error that quotes a database URL), then made one safe terminal line."""
    from benchbed import masking
    from benchbed.terminal import safe

    text = safe(masking.scrub(str(message)))
    return f"benchbed: {kind}: {text}" if kind else text


def _click_error(error: click.ClickException) -> None:
    """click's usage error as click prints it, each line through `_line`."""
    import io

    shown = io.StringIO()
    error.show(file=shown)
    sys.stderr.write("".join(_line(None, line) + "\n" for line in shown.getvalue().splitlines()))


def _traceback(error: BaseException) -> None:
    """BENCHBED_DEBUG's traceback, masked and safe line by line like every other message."""
    import traceback

    lines = "".join(traceback.format_exception(error)).splitlines()
    sys.stderr.write("".join(_line(None, line) + "\n" for line in lines))
