"""What benchbed prints on a real terminal (a pty) when data is hostile (issue 26).

Config values, step details and a remote service's error message hold control characters,
escape sequences, newlines and rich markup. On the pty, the raw bytes must hold none of the
data's control bytes (only rich's own colours and the terminal's CRLF), no OSC 8 hyperlink,
and the markup as literal text; every command ends with its expected exit code.
"""

import fcntl
import json
import os
import pty
import re
import select
import sqlite3
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.conftest import Cli, write_yaml

# Markup rich would read, escape sequences a terminal would act on, lines a value would forge.
MARKUP = ("[/]", "[bold]x[/]", "[link=file:///etc/passwd]x[/link]")
CLEAR_SCREEN = "\x1b[2J\x1b[H"
OSC8_LINK = "\x1b]8;;file:///etc/passwd\x1b\\click\x1b]8;;\x1b\\"
BLINK_RED = "\x1b[5;31m"
FORGED_LINE = "\r\nbenchbed: deployment 'prod' is ready\n"
REMOTE_MESSAGES = (f"{CLEAR_SCREEN}denied[/]{FORGED_LINE}", f"{OSC8_LINK}\x07\x9b2J\u202eyek")
COLUMNS = 1000


def hostile_config(port: int, variant: int) -> dict:
    """An ExistingCloud (registering it creates nothing) whose values attack the terminal."""
    first = variant == 0
    path = f"{CLEAR_SCREEN}{MARKUP[2]}{OSC8_LINK}" if first else f"{MARKUP[1]}{BLINK_RED}\x7f"
    user = f"{MARKUP[0]}{BLINK_RED}\u2028adm" if first else f"adm\r{MARKUP[0]}\x1b[K\u202ein"
    region = f"Region{FORGED_LINE}" if first else f"{CLEAR_SCREEN}Region\x9b31m"
    return {"type": "ExistingCloud", "auth_url": f"http://127.0.0.1:{port}/v3/{path}",
            "region_name": region, "admin": {"username": user, "password": "Pa55-never-shown"}}


class HostileKeystone(BaseHTTPRequestHandler):
    """Refuses every token with an error message made to attack the terminal."""

    message = ""

    def do_POST(self) -> None:
        body = json.dumps({"error": {"code": 401, "title": "Unauthorized",
                                     "message": self.message}}).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST

    def log_message(self, *_args: object) -> None:
        """Quiet: the test reads only what benchbed prints."""


@pytest.fixture(params=REMOTE_MESSAGES, ids=["clear-and-forge", "hyperlink-and-bidi"])
def keystone(request: pytest.FixtureRequest) -> Iterator[int]:
    """A Keystone on loopback whose 401 says REMOTE_MESSAGES[i]; yields its port."""
    handler = type("Handler", (HostileKeystone,), {"message": request.param})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def on_pty(*args: str, timeout: float = 120) -> tuple[int, bytes]:
    """`benchbed ARGS` with stdin, stdout and stderr on a fresh pty (wide, so that rich wraps
    nothing); its exit code and every byte it wrote to the terminal."""
    env = {key: value for key, value in os.environ.items() if "proxy" not in key.lower()}
    env.update(COLUMNS=str(COLUMNS), LINES="50", TERM="xterm-256color")
    env.pop("NO_COLOR", None)
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, COLUMNS, 0, 0))
    try:
        process = subprocess.Popen([sys.executable, "-m", "benchbed", *args], stdin=slave,
                                   stdout=slave, stderr=slave, env=env, close_fds=True)
    finally:
        os.close(slave)
    output = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if not ready:
                if process.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the last holder of the pty's other side is gone
                break
            if not chunk:
                break
            output += chunk
        code = process.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
        os.close(master)
    return code, output


# What benchbed itself may send a terminal: rich's colours (SGR), the progress line's
# "back to the start, clear the line", and the pty's CRLF for each newline.
OWN_SEQUENCES = re.compile(rb"\x1b\[[0-9;]*m|\r\x1b\[K|\r(?=\n)")


def assert_terminal_safe(output: bytes) -> str:
    """No control byte of the data reached the terminal; the text as the user reads it."""
    for raw in (BLINK_RED, CLEAR_SCREEN, "\x1b]8;", "\x1b[K\u202e", "\x9b", "\u202e",
                "\u2028", "\x7f", "\x07"):
        assert raw.encode() not in output, (raw, output)
    rest = OWN_SEQUENCES.sub(b"", output)
    controls = sorted({byte for byte in rest if (byte < 0x20 and byte != 0x0A) or byte == 0x7F})
    assert controls == [], (controls, output)
    shown = rest.decode()
    assert not re.search(r"^benchbed: deployment 'prod' is ready", shown, re.M), shown
    return shown


def test_show_check_config_list_and_errors_on_a_terminal(bb: Cli, home: Path,
                                                         keystone: int,
                                                         tmp_path: Path) -> None:
    uuids = []
    for variant in (0, 1):
        code, output = on_pty("deployment", "create", "--no-preflight", "--name",
                              f"bbs-hostile{variant}",
                              "--file", write_yaml(tmp_path / f"c{variant}.yaml",
                                                   hostile_config(keystone, variant)))
        shown = assert_terminal_safe(output)
        assert code == 0, shown
        assert "\\x1b[2J" in shown or "\\x1b[5;31m" in shown, shown  # the step's detail
        uuids.append(bb.json("deployment", "show", f"bbs-hostile{variant}")["uuid"])

    for variant in (0, 1):
        name = f"bbs-hostile{variant}"
        code, output = on_pty("deployment", "show", "--steps", name)
        shown = assert_terminal_safe(output)
        assert code == 0, shown
        assert MARKUP[2 - variant] in shown, shown  # the auth_url, as written
        assert "\\x1b" in shown, shown

        code, output = on_pty("deployment", "show", name)
        assert code == 0, assert_terminal_safe(output)

        code, output = on_pty("deployment", "config", name)
        shown = assert_terminal_safe(output)
        assert code == 0, shown
        assert "Pa55-never-shown" not in shown, shown
        assert MARKUP[0] in shown, shown  # the user name

        code, output = on_pty("deployment", "check", name)
        shown = assert_terminal_safe(output)
        assert code == 1, shown  # Keystone refused the token: the check failed, no crash
        assert "internal error" not in shown and "Traceback" not in shown, shown
        assert f"no token for {MARKUP[0]}" in shown or f"{MARKUP[0]}\\x1b[K" in shown, shown
        assert "HTTP 401" in shown, shown
        assert "denied[/]" in shown or "\\x9b2J" in shown, shown  # the remote message
        assert "Pa55-never-shown" not in shown, shown

    # a database another tool wrote: a name benchbed itself would refuse
    with sqlite3.connect(home / "benchbed.sqlite") as db:
        db.execute("UPDATE deployments SET name = ? WHERE uuid = ?",
                   (f"{MARKUP[1]}{CLEAR_SCREEN}{FORGED_LINE}", uuids[0]))
        db.execute("UPDATE deployments SET name = ? WHERE uuid = ?",
                   (f"{MARKUP[2]}{OSC8_LINK}\x9b31m", uuids[1]))
    try:
        code, output = on_pty("deployment", "list")
        shown = assert_terminal_safe(output)
        assert code == 0, shown
        assert MARKUP[1] in shown and MARKUP[2] in shown, shown
    finally:
        with sqlite3.connect(home / "benchbed.sqlite") as db:
            for variant, uuid in enumerate(uuids):
                db.execute("UPDATE deployments SET name = ? WHERE uuid = ?",
                           (f"bbs-hostile{variant}", uuid))
    for uuid in uuids:
        bb.ok("deployment", "destroy", uuid)


@pytest.mark.parametrize("key", [f"{CLEAR_SCREEN}key{FORGED_LINE}",
                                 f"{MARKUP[2]}{OSC8_LINK}\u202e\x9b2J"])
def test_a_config_error_is_one_safe_line(bb: Cli, home: Path, tmp_path: Path,
                                         key: str) -> None:
    # the error names the config path, the hostile key in it
    config = {"type": "DevstackEngine", "local_conf": {key: {"nested": 1}},
              "provider": {"type": "ExistingServers",
                           "credentials": [{"user": "root", "host": "localhost"}]}}
    code, output = on_pty("deployment", "create", "--name", "bbs-refused",
                          "--file", write_yaml(tmp_path / "bad.yaml", config))
    shown = assert_terminal_safe(output)
    assert code == 2, shown
    lines = [line for line in shown.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("benchbed: error: config local_conf"), shown
    assert "\\x1b" in lines[0], shown
    assert bb.json("deployment", "list") == []
