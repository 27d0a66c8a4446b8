"""Crashes, leases and commands at once through the real CLI, on SQLite and on a real
PostgreSQL server (the `database` fixture runs each case on both): kill -9 in the middle
of a create then `destroy`, a lease left by a dead or unreadable holder, two processes on
one deployment, two creates of one name at once; and a PostgreSQL restarted under a
running command, which must end in one clear line.

Runs as root: NetnsProvider makes real SSH hosts in network namespaces, in 10.254.30.0/24;
every deployment is named `bbpg...`.
"""

import ipaddress
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from tests.conftest import Cli, kill_when, write_yaml

pytestmark = pytest.mark.root

NETWORKS = {"kill": "10.254.30.0/26", "busy": "10.254.30.64/27", "destroys": "10.254.30.96/29",
            "name-a": "10.254.30.104/29", "name-b": "10.254.30.112/29",
            "restart": "10.254.30.128/26"}
# docs/guarantees.md's bound from a database fault to the command's exit, in seconds
DATABASE_BOUND = 60
# In the creates it is given to, `Deployment.create` (the insert of the named row) starts
# a second late: both creates have then passed every check before either inserts.
SLOW_INSERT = """
import time
from benchbed.deployment import Deployment
_create = Deployment.create.__func__
def _slow_create(cls, *args, **kwargs):
    time.sleep(1)
    return _create(cls, *args, **kwargs)
Deployment.create = classmethod(_slow_create)
"""
# A row with its lease as a crashed holder would leave it; then the lease is edited.
HELD_ROW = """
from benchbed.deployment import Deployment
Deployment.create("bbpg-held", {"type": "ExistingCloud", "auth_url": "http://127.0.0.1:9/v3",
                                "admin": {"username": "a", "password": "b",
                                          "project_name": "p"}})
"""


def netns_config(network: str, amount: int) -> dict[str, Any]:
    return {"type": "ServersEngine", "ssh_timeout": 10,
            "provider": {"type": "NetnsProvider", "network": network, "amount": amount}}


def database_url(home: Path) -> str:
    """The database the CLI of this test writes to: the `database` fixture's PostgreSQL
    URL, else the home's SQLite file."""
    return os.environ.get("BENCHBED_DATABASE_URL") or f"sqlite:///{home}/benchbed.sqlite"


def query(url: str, sql: str, **params: Any) -> list[tuple[Any, ...]] | None:
    """Rows of `sql` in the test's database; None while it cannot be read (no table yet,
    or a writer holds SQLite's lock)."""
    engine = create_engine(url, poolclass=NullPool,
                           connect_args={"timeout": 1} if url.startswith("sqlite") else {})
    try:
        with engine.begin() as connection:
            return [tuple(row) for row in connection.execute(text(sql), params)]
    except SQLAlchemyError:
        return None
    finally:
        engine.dispose()


def ledger_rows(home: Path) -> int:
    rows = query(database_url(home), "SELECT count(*) FROM resources")
    assert rows is not None, "the resources table cannot be read"
    return int(rows[0][0])


def tag_of(uuid: str) -> str:
    return uuid.replace("-", "")[:8]


def leftovers(tag: str) -> list[str]:
    """Namespaces and links of one deployment still on the machine."""
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                                check=True).stdout
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True,
                           check=True).stdout
    return [line for line in (namespaces + links).splitlines() if tag in line]


def one_clear_line(stderr: str, text_: str) -> str:
    """The error: the last line of stderr and its only `benchbed:` line, naming `text_`;
    no trace, no libpq `FATAL:` line, no statement anywhere."""
    errors = [line for line in stderr.splitlines() if line.startswith("benchbed:")]
    assert len(errors) == 1, stderr
    for library_text in ("Traceback", "FATAL", "[SQL:"):
        assert library_text not in stderr, stderr
    assert stderr.strip().splitlines()[-1] == errors[0], stderr
    assert text_ in errors[0], errors[0]
    return errors[0]


def host_addresses_in(network: str) -> list[str]:
    """This machine's IPv4 addresses inside `network` (a bridge of a deployment there)."""
    listed = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True,
                            text=True, check=True).stdout
    inside = ipaddress.IPv4Network(network)
    return [address for address in (line.split()[3].split("/")[0]
                                    for line in listed.splitlines())
            if ipaddress.IPv4Address(address) in inside]


def assert_nothing_left(bb: Cli, home: Path, uuid: str) -> None:
    assert leftovers(tag_of(uuid)) == []
    assert bb.json("deployment", "list") == []
    assert ledger_rows(home) == 0


@pytest.fixture
def cli(database: str, bb: Cli) -> Cli:
    """The CLI on this test's home, with its database (SQLite or PostgreSQL) selected."""
    return bb


# Killed with 1 and with 4 ledger rows recorded: before and after its hosts exist.
@pytest.mark.parametrize("kill_after_rows", [1, 4])
def test_kill_during_create_then_destroy_leaves_nothing(
        cli: Cli, tmp_path: Path, home: Path, kill_after_rows: int) -> None:
    config = write_yaml(tmp_path / "c.yaml", netns_config(NETWORKS["kill"], 40))
    cli.ok("deployment", "list")  # the schema exists, so the moment is read from the start
    process = cli.popen("deployment", "create", "--name", "bbpg-crash", "--file", config)
    url = database_url(home)
    uuid = None

    def moment() -> bool:
        nonlocal uuid
        found = query(url, "SELECT uuid, (SELECT count(*) FROM resources) FROM deployments")
        if not found:
            return False
        uuid = found[0][0]
        return bool(found[0][1] >= kill_after_rows)

    kill_when(process, moment, timeout=60, never=f"never reached {kill_after_rows} row(s)",
              interval=0.002)
    assert uuid is not None

    refused = cli("deployment", "destroy", "bbpg-crash")
    assert refused.returncode == 1, refused.stderr
    one_clear_line(refused.stderr, "which is no longer running; re-run with --force")
    cli.ok("deployment", "destroy", "--force", "bbpg-crash")
    assert_nothing_left(cli, home, uuid)


@pytest.mark.parametrize("lease", [
    "garbage",
    "myhost:not-a-pid:12",
    "",
    "\x1b[2Jdeployment 'bbpg-held' is ready",
])
def test_force_breaks_a_lease_edited_by_hand(cli: Cli, home: Path, lease: str) -> None:
    subprocess.run([*cli.argv()[:1], "-c", HELD_ROW], check=True, env=cli.env, timeout=60)
    assert query(database_url(home), "UPDATE deployments SET lease_owner = :lease "
                 "WHERE name = 'bbpg-held' RETURNING name", lease=lease) == [("bbpg-held",)]

    refused = cli("deployment", "destroy", "bbpg-held")
    assert refused.returncode == 1
    since = refused.stderr.split(" since ")[1].split(",")[0]
    assert one_clear_line(refused.stderr, "") == (
        f"benchbed: error: deployment 'bbpg-held' is held by an unreadable holder "
        f"{lease!a} since {since}, which cannot be checked; re-run with --force to "
        f"break the lease")
    assert "\x1b" not in refused.stderr
    assert [d["name"] for d in cli.json("deployment", "list")] == ["bbpg-held"]

    broken = cli("deployment", "destroy", "--force", "bbpg-held")
    assert broken.returncode == 0, broken.stderr
    assert broken.stderr.splitlines()[0] == \
        f"broke the lease of deployment 'bbpg-held' held by an unreadable holder {lease!a}"
    assert "\x1b" not in broken.stderr
    assert cli.json("deployment", "list") == []


def test_second_actor_gets_busy_error_naming_the_holder(cli: Cli, tmp_path: Path, home: Path
                                                        ) -> None:
    cli.ok("deployment", "create", "--name", "bbpg-shared",
           "--file", write_yaml(tmp_path / "c.yaml", netns_config(NETWORKS["busy"], 24)))
    url = database_url(home)
    recreating = cli.popen("deployment", "recreate", "bbpg-shared")
    deadline = time.monotonic() + 30
    while not (query(url, "SELECT lease_owner FROM deployments") or [(None,)])[0][0]:
        assert recreating.poll() is None and time.monotonic() < deadline, \
            "recreate never took the lease"
        time.sleep(0.002)
    busy = cli("deployment", "destroy", "bbpg-shared")
    assert busy.returncode == 1, busy.stderr
    one_clear_line(busy.stderr, f"is busy: held by pid {recreating.pid} on")
    _, stderr = recreating.communicate(timeout=300)
    assert recreating.returncode == 0, stderr
    details = cli.json("deployment", "show", "bbpg-shared")
    assert details["status"] == "deploy->finished"
    assert details["held_by"] is None
    assert all(c["ok"] for c in cli.json("deployment", "check", "bbpg-shared"))
    cli.ok("deployment", "destroy", "bbpg-shared")
    assert_nothing_left(cli, home, details["uuid"])


def test_two_destroys_at_once_one_wins(cli: Cli, tmp_path: Path, home: Path) -> None:
    cli.ok("deployment", "create", "--name", "bbpg-race",
           "--file", write_yaml(tmp_path / "c.yaml", netns_config(NETWORKS["destroys"], 4)))
    uuid = cli.json("deployment", "show", "bbpg-race")["uuid"]
    first, second = (cli.popen("deployment", "destroy", "bbpg-race") for _ in range(2))
    outputs = [process.communicate(timeout=120)[1] for process in (first, second)]
    outcomes = sorted(zip([first.returncode, second.returncode], outputs, strict=True))
    assert outcomes[0][0] == 0, outcomes
    if outcomes[1][0] == 1:
        one_clear_line(outcomes[1][1], "is busy: held by pid")
    else:
        assert outcomes[1][0] == 2, outcomes
        one_clear_line(outcomes[1][1], "no deployment named 'bbpg-race'")
    assert_nothing_left(cli, home, uuid)


def test_two_creates_of_one_name_at_once_one_wins(cli: Cli, tmp_path: Path, home: Path
                                                  ) -> None:
    slow = tmp_path / "slow"
    slow.mkdir()
    (slow / "sitecustomize.py").write_text(SLOW_INSERT)
    cli.ok("deployment", "list")  # the schema exists: this test is about the name
    env = {**cli.env, "PYTHONPATH": str(slow)}
    started = [subprocess.Popen(cli.argv("deployment", "create", "--no-use", "--name",
                                         "bbpg-one", "--file",
                                         write_yaml(tmp_path / f"{key}.yaml",
                                                    netns_config(NETWORKS[key], 1))),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=env)
               for key in ("name-a", "name-b")]
    outputs = [process.communicate(timeout=300)[1] for process in started]
    codes = sorted(process.returncode for process in started)
    assert codes == [0, 2], outputs
    loser = outputs[[process.returncode for process in started].index(2)]
    assert one_clear_line(loser, "") == \
        "benchbed: error: a deployment named 'bbpg-one' already exists"
    listed = cli.json("deployment", "list")
    assert [(d["name"], d["status"]) for d in listed] == [("bbpg-one", "deploy->finished")]
    shown = cli.json("deployment", "show", "bbpg-one")
    assert len(shown["endpoints"]["servers"]) == 1
    cli.ok("deployment", "destroy", "bbpg-one")
    assert_nothing_left(cli, home, shown["uuid"])
    # the loser made nothing on the machine: no bridge holds an address in either network
    assert host_addresses_in(NETWORKS["name-a"]) == host_addresses_in(NETWORKS["name-b"]) == []


# -- a PostgreSQL restarted under a running command ---------------------------------------


@pytest.fixture
def pg_ctl(postgres_url: str) -> Iterator[Callable[[str], None]]:
    """`pg_ctl <action>` on the session's PostgreSQL (a fast shutdown cuts every
    connection); the server is running again after the test whatever happened."""
    from tests.postgres import POSTGRES_USER, _bin

    rows = query(postgres_url, "SHOW data_directory")
    assert rows, "the PostgreSQL server does not answer"
    data = rows[0][0]

    # a start is given tests.postgres's own options again (a restart keeps them itself)
    options = (f"-c listen_addresses=127.0.0.1 -c port={make_url(postgres_url).port} "
               f"-c unix_socket_directories={Path(data).parent}")

    def run(action: str) -> None:
        subprocess.run(["runuser", "-u", POSTGRES_USER, "--", _bin("pg_ctl"), "-D", data,
                        "-m", "fast", "-w", "-l", f"{data}/../restart.log", "-o", options,
                        action], check=True, capture_output=True, timeout=120)
    try:
        yield run
    finally:
        if query(postgres_url, "SELECT 1") is None:
            run("start")


@pytest.mark.parametrize("database", ["postgresql"], indirect=True)
@pytest.mark.parametrize("fault", ["restart", "stop"])
def test_postgres_restarted_or_stopped_mid_create(
        cli: Cli, tmp_path: Path, home: Path, pg_ctl: Callable[[str], None], fault: str
        ) -> None:
    """A new connection waits (once per outage, RESTART_SECONDS) for a server that refuses
    while it restarts; a server that stays down, or a statement cut in flight, ends the
    create with one line of benchbed's, exit 1, within the bound; destroy then works."""
    cli.ok("deployment", "list")
    url = database_url(home)
    config = write_yaml(tmp_path / "c.yaml", netns_config(NETWORKS["restart"], 40))
    process = cli.popen("deployment", "create", "--name", "bbpg-restart", "--file", config)
    try:
        deadline = time.monotonic() + 60
        while (query(url, "SELECT count(*) FROM resources") or [(0,)])[0][0] < 5:
            assert process.poll() is None and time.monotonic() < deadline, \
                "no host was ever recorded"
            time.sleep(0.02)
        pg_ctl(fault)
        started = time.monotonic()
        _, stderr = process.communicate(timeout=120)
        elapsed = time.monotonic() - started
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    print(f"{fault}: exit {process.returncode} {elapsed:.1f} s after the fault")
    if fault == "stop":
        pg_ctl("start")
    # a statement in flight when the server went away fails (it is not repeated: it may
    # have been committed); a restart between statements is waited for
    if fault == "stop" or process.returncode != 0:
        assert process.returncode == 1, stderr
        line = one_clear_line(stderr, "")
        assert line.startswith("benchbed: error: database: the connection to PostgreSQL at "
                               "127.0.0.1:"), line
        assert line.endswith("the server stopped or restarted mid-command"), line
        assert elapsed < DATABASE_BOUND
    else:
        assert "FATAL" not in stderr, stderr
        assert cli.json("deployment", "show", "bbpg-restart")["status"] == "deploy->finished"
    shown = cli.json("deployment", "show", "bbpg-restart")
    destroyed = cli("deployment", "destroy", "--force", "bbpg-restart")
    assert destroyed.returncode == 0, destroyed.stderr
    assert "FATAL" not in destroyed.stderr
    assert_nothing_left(cli, home, shown["uuid"])
