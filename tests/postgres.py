"""A private PostgreSQL for the database tests: own data dir and loopback port, stopped after,
also when pytest is killed (a watchdog of its own stops it then)."""

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

POSTGRES_USER = "postgres"
# The one place the server is stopped: waits for the end of its stdin, which only this pytest
# process holds open (closed at the end of the tests, or by the kernel when pytest is killed:
# a pytest killed by a timeout had left servers running with their data under /tmp), then
# stops the server, removes its directory and exits with pg_ctl's status.
WATCHDOG = """read -r _
runuser -u "$1" -- "$2" -D "$3" -m immediate stop >/dev/null
stopped=$?
rm -rf "$4"
exit "$stopped"
"""


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    assert found, f"PostgreSQL's {name} is not installed (make host installs it)"
    return found[-1]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _as_postgres(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["runuser", "-u", POSTGRES_USER, "--", *argv], capture_output=True,
                          text=True, check=True, timeout=120)


@contextmanager
def postgres_server() -> Iterator[str]:
    """Start PostgreSQL in a temporary directory; yield a SQLAlchemy URL to a fresh database."""
    directory = tempfile.mkdtemp(prefix="benchbed-pg-")
    os.chmod(directory, 0o755)
    shutil.chown(directory, POSTGRES_USER)
    data = os.path.join(directory, "data")
    port = _free_port()
    watchdog = subprocess.Popen(["sh", "-c", WATCHDOG, "watchdog", POSTGRES_USER, _bin("pg_ctl"),
                                 data, directory], stdin=subprocess.PIPE,
                                start_new_session=True)
    _as_postgres([_bin("initdb"), "-D", data, "-U", POSTGRES_USER, "--auth=trust", "-E", "UTF8"])
    _as_postgres([_bin("pg_ctl"), "-D", data, "-w", "-l", os.path.join(directory, "log"),
                  "-o", f"-c listen_addresses=127.0.0.1 -c port={port} "
                        f"-c unix_socket_directories={directory}", "start"])
    try:
        _as_postgres([_bin("createdb"), "-h", "127.0.0.1", "-p", str(port), "-U",
                      POSTGRES_USER, "benchbed"])
        yield f"postgresql+psycopg2://{POSTGRES_USER}@127.0.0.1:{port}/benchbed"
    finally:
        assert watchdog.stdin is not None
        watchdog.stdin.close()
        assert watchdog.wait(timeout=60) == 0, "PostgreSQL did not stop (its watchdog failed)"
        assert not os.path.exists(directory), directory
