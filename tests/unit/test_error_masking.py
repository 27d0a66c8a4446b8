"""One masking layer for every error message, third-party text included, and one function
that makes text safe for a terminal (issue 26)."""

import io
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchbed import masking
from benchbed.cli import main, render
from benchbed.errors import BenchbedError
from benchbed.terminal import safe

DATABASE_URLS = [
    # (BENCHBED_DATABASE_URL, the secret in every form it must not appear in)
    ("postgresql+psycopg2://bb:Secret-Pw-1@127.0.0.1:1/db", ["Secret-Pw-1"]),
    ("postgresql+psycopg2://bb:p/ss?w#rd-2@127.0.0.1:1/db", ["p/ss?w#rd-2", "ss?w#rd-2"]),
    ("postgresql+psycopg2://bb@127.0.0.1:1/db?password=Query-Secret-3", ["Query-Secret-3"]),
    ("postgresql+psycopg2://bb:s%40cr%2Ft-4@127.0.0.1:1/db", ["s%40cr%2Ft-4", "s@cr/t-4"]),
]


@pytest.mark.parametrize(("url", "secrets"), DATABASE_URLS)
def test_a_database_error_never_prints_the_password(home: Path, url: str,
                                                    secrets: list[str]) -> None:
    result = subprocess.run([sys.executable, "-m", "benchbed", "deployment", "list"],
                            env={**os.environ, "BENCHBED_DATABASE_URL": url, "BENCHBED_DEBUG": ""},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("benchbed: error: cannot open the database "), result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    for secret in secrets:
        assert secret not in result.stderr, result.stderr


RAISE_WITH_SECRET = """
import sys
from benchbed import api, masking
from benchbed.cli.main import _run

def broken():
    masking.register("Debug-Secret-5")
    raise RuntimeError("driver said: password Debug-Secret-5 refused")

api.list_deployments = broken
sys.argv = ["benchbed", "deployment", "list"]
sys.exit(_run())
"""


def test_the_debug_traceback_is_masked_too(home: Path) -> None:
    result = subprocess.run([sys.executable, "-c", RAISE_WITH_SECRET],
                            env={**os.environ, "BENCHBED_DEBUG": "1"},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stderr
    assert "Traceback" in result.stderr
    assert "Debug-Secret-5" not in result.stderr, result.stderr


def _requests_error() -> str:
    import requests

    session = requests.Session()
    session.trust_env = False  # no proxy: the refusal must come from loopback
    with pytest.raises(requests.RequestException) as caught:
        session.get("http://127.0.0.1:1/v3?token=Tok-Secret-6&x=1", timeout=5)
    return str(caught.value)


def _keystoneauth_error() -> str:
    from keystoneauth1 import exceptions, session

    with pytest.raises(exceptions.ClientException) as caught:
        session.Session(timeout=5).get("http://admin:Ks-Secret-7@127.0.0.1:1/v3",
                                       authenticated=False, connect_retries=0)
    return str(caught.value)


def _sqlalchemy_error() -> str:
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import IntegrityError

    engine = create_engine("sqlite://")
    with engine.begin() as db:
        db.execute(text("CREATE TABLE t (name TEXT UNIQUE, config TEXT)"))
        db.execute(text("INSERT INTO t VALUES ('a', '')"))
    with pytest.raises(IntegrityError) as caught, engine.begin() as db:
        db.execute(text("INSERT INTO t VALUES (:name, :config)"),
                   {"name": "a", "config": '{"os_password": "Sql-Secret-8"}'})
    engine.dispose()
    return str(caught.value)


@pytest.mark.parametrize(("raise_it", "secret"), [
    (_requests_error, "Tok-Secret-6"),
    (_keystoneauth_error, "Ks-Secret-7"),
    (_sqlalchemy_error, "Sql-Secret-8"),
])
def test_third_party_exception_text_is_masked_without_registration(raise_it, secret: str
                                                                   ) -> None:
    message = raise_it()
    assert secret in message  # the library does print it: the masking is what holds
    line = main._line("internal error", message)
    assert secret not in line
    assert masking.MASK in line
    assert "\n" not in line


def test_registered_secrets_and_hostile_text_leave_the_cli_as_one_safe_line() -> None:
    masking.register("Reg-Secret-9")
    error = BenchbedError("step failed: Reg-Secret-9\r\n\x1b[2Jbenchbed: deployment ready\x07")
    line = main._line("error", error)
    assert line == ("benchbed: error: step failed: ***\\r\\n\\x1b[2Jbenchbed: deployment "
                    "ready\\x07")


def test_log_records_are_masked_with_their_traceback() -> None:
    masking.register("Log-Secret-10")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(masking.ScrubFilter())
    logger = logging.getLogger("benchbed.test_error_masking")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        try:
            raise ConnectionError("to postgresql://bb:Url-Secret-11@db/x: Log-Secret-10")
        except ConnectionError:
            logger.exception("database went away (%s)", "password=Arg-Secret-12")
    finally:
        logger.removeHandler(handler)
    logged = stream.getvalue()
    assert "Traceback" in logged and "ConnectionError" in logged
    for secret in ("Log-Secret-10", "Url-Secret-11", "Arg-Secret-12"):
        assert secret not in logged, logged


@pytest.mark.parametrize(("text", "shown"), [
    ("\x1b[2J\x1b[Hcleared", "\\x1b[2J\\x1b[Hcleared"),
    ("ok\r\nbenchbed: deployment 'prod' is ready", "ok\\r\\nbenchbed: deployment 'prod' is ready"),
    ("\x1b]8;;file:///etc/passwd\x1b\\x\x1b]8;;\x07", "\\x1b]8;;file:///etc/passwd\\x1b\\x\\x1b]8;;\\x07"),
    ("\x9b2J\x7f\x00", "\\x9b2J\\x7f\\x00"),  # C1 CSI, DEL, NUL
    ("abc\u202egnp.exe\u2028\u200b", "abc\\u202egnp.exe\\u2028\\u200b"),  # bidi, separators
    ("bad \udcff byte", "bad \\udcff byte"),  # a surrogate from surrogateescape
    ("tab\there", "tab\\there"),
])
def test_safe_shows_what_a_terminal_would_act_on(text: str, shown: str) -> None:
    assert safe(text) == shown


@pytest.mark.parametrize("text", ["plain [bold]x[/] text", "é, 日本語, emoji 🙂", "C:\\path"])
def test_safe_leaves_printable_text_alone(text: str) -> None:
    assert safe(text) == text


def test_render_prints_one_line_per_value_when_piped(capsys: pytest.CaptureFixture[str]
                                                     ) -> None:
    hostile = ["a\r\nbenchbed: forged", "\x1b[2J[/]"]
    render.text(f"error       {hostile[0]}")
    render.note(hostile[1])
    render.table(["K", "V"], [(hostile[0], hostile[1])], title="t\x1b[31m")
    render.yaml({hostile[1]: hostile[0], "list": [hostile[1]]}, indent=2)
    out, err = capsys.readouterr()
    assert err == "\\x1b[2J[/]\n"
    assert "\x1b" not in out and "\r" not in out
    assert out.splitlines() == [
        "error       a\\r\\nbenchbed: forged",
        "t\\x1b[31m",
        "K".ljust(len("a\\r\\nbenchbed: forged")) + "  V",
        "a\\r\\nbenchbed: forged  \\x1b[2J[/]",
        '  "\\e[2J[/]": "a\\r\\nbenchbed: forged"',
        "  list:",
        '  - "\\e[2J[/]"',
    ]
