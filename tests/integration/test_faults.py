"""Faults of the world during a create, with the real component: the apt proxy dies, the SSH
connection drops, a server stops answering, PostgreSQL restarts, the disk under the home fills.

Each create must end with one clear `benchbed:` line and exit 1 within the bound that
docs/guarantees.md ("Faults in the world") states, leave the record consistent (status
`deploy->failed`, every resource that exists has its ledger row), and `destroy` must then
leave nothing: no container, bridge, namespace or row. Faults are made by pid, found from
benchbed's own records (the proxy's pid file, the container's init, the namespace's sshd).
"""

import ipaddress
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from benchbed.hostnet import bridge_name
from tests.conftest import Cli, cli_for, write_yaml

pytestmark = pytest.mark.root

LXC_NETWORK = "10.254.230.64/26"
LXC_PREFIX = "bbq"
HOSTS_NETWORK = "10.254.230.0/28"
DISK_NETWORK = "10.254.230.16/28"
DATABASE_NETWORK = "10.254.230.128/26"
# The bounds docs/guarantees.md states, in seconds from the fault to the exit.
APT_PROXY_BOUND = 60
SSH_DROP_BOUND = 30
SILENT_SERVER_BOUND = 60
DATABASE_BOUND = 60
DISK_BOUND = 60


def sh(*argv: str, check: bool = True) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert not check or result.returncode == 0, f"{argv}: {result.stderr}"
    return result.stdout


def one_clear_line(stderr: str) -> str:
    """The single error line: the last line of stderr, the only `benchbed:` line, no trace."""
    errors = [line for line in stderr.splitlines() if line.startswith("benchbed:")]
    assert len(errors) == 1, stderr
    assert "Traceback" not in stderr and "Logging error" not in stderr, stderr
    assert stderr.strip().splitlines()[-1] == errors[0], stderr
    return errors[0]


def fail_within(process: subprocess.Popen[str], bound: float) -> tuple[str, float]:
    """Wait for a create hit by a fault: exit 1 within `bound` s; its error line and time."""
    started = time.monotonic()
    try:
        _, stderr = process.communicate(timeout=bound)
    except subprocess.TimeoutExpired:
        process.kill()
        _, stderr = process.communicate()
        raise AssertionError(f"still running {bound} s after the fault: {stderr[-2000:]}"
                             ) from None
    elapsed = time.monotonic() - started
    print(f"failed {elapsed:.1f} s after the fault")
    assert process.returncode == 1, stderr
    return one_clear_line(stderr), elapsed


def wait_for(moment: Callable[[], Any], process: subprocess.Popen[str], timeout: float,
             never: str) -> Any:
    """Poll until `moment()` gives a value, while the create still runs."""
    deadline = time.monotonic() + timeout
    while True:
        found = moment()
        if found:
            return found
        if process.poll() is not None:
            raise AssertionError(f"{never}; create ended: {process.communicate()}")
        assert time.monotonic() < deadline, never
        time.sleep(0.02)


def step_started(home: Path, step: str) -> Callable[[], bool]:
    def moment() -> bool:
        return any(f"step started: {step}" in log.read_text(errors="replace")
                   for log in home.glob("deployments/*/deployment.log"))
    return moment


def deployment_state(cli: Cli, name: str) -> dict[str, Any]:
    shown: dict[str, Any] = cli.json("deployment", "show", name)
    return shown


def assert_consistent(shown: dict[str, Any], exists: Callable[[dict[str, Any]], bool],
                      existing: set[str]) -> None:
    """Failed, and every resource of the deployment that exists has its ledger row."""
    assert shown["status"] == "deploy->failed", shown["status"]
    assert shown["held_by"] is None
    rows = {r["name"] for r in shown["resources"]}
    assert existing <= rows, (existing, rows)
    assert all(exists(r) or r["name"] not in existing for r in shown["resources"])


# -- netns hosts (ServersEngine): a silent server, the disk, the database -----------------


def netns_tag(home_or_uuid: str) -> str:
    return home_or_uuid.replace("-", "")[:8]


def netns_leftovers(tag: str) -> set[str]:
    """Namespaces and links of one NetnsProvider deployment still on the machine."""
    found = {line.split()[0] for line in sh("ip", "netns", "list").splitlines() if tag in line}
    found |= {line.split(": ")[1].split("@")[0]
              for line in sh("ip", "-o", "link", "show").splitlines() if tag in line}
    return found


def recorded_kinds(found: set[str]) -> set[str]:
    """The namespaces and bridge: a host's veth is part of its namespace's row."""
    return {name for name in found if not name.startswith("bbv")}


def netns_config(network: str, amount: int) -> dict[str, Any]:
    return {"type": "ServersEngine", "ssh_timeout": 10,
            "provider": {"type": "NetnsProvider", "network": network, "amount": amount}}


def unrecorded_failure(cli: Cli, shown: dict[str, Any], tag: str) -> bool:
    """A full disk or a database that is gone can take the failure's own record with it:
    the deployment then stays `deploy->started`, held by a pid that is gone, which destroy
    names, and --force breaks; then nothing is left. False if the failure was recorded."""
    if shown["status"] != "deploy->started":
        return False
    refused = cli("deployment", "destroy", shown["name"])
    assert refused.returncode == 1
    assert "no longer running; re-run with --force" in one_clear_line(refused.stderr)
    cli.ok("deployment", "destroy", "--force", shown["name"], timeout=300)
    assert netns_leftovers(tag) == set() and cli.json("deployment", "list") == []
    return True


def destroy_leaves_nothing(cli: Cli, name: str, tag: str) -> None:
    cli.ok("deployment", "destroy", name, timeout=300)
    assert netns_leftovers(tag) == set()
    assert cli.json("deployment", "list") == []


@pytest.fixture(scope="module")
def netns_hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cli, dict[str, Any]]]:
    """Two netns SSH hosts made by a deployment of their own, for ExistingServers."""
    work = tmp_path_factory.mktemp("faults-hosts")
    cli = cli_for(work / "home")
    try:
        cli.ok("deployment", "create", "--no-use", "--name", "hosts", "--file",
               write_yaml(work / "hosts.yaml", netns_config(HOSTS_NETWORK, 2)))
        yield cli, cli.json("deployment", "show", "hosts")
    finally:
        cli.destroy_all()


def _silence_sshd(server: dict[str, Any]) -> Callable[[], None]:
    pid = int(sh("ip", "netns", "pids", server["name"]).split()[0])
    os.kill(pid, signal.SIGSTOP)
    return lambda: os.kill(pid, signal.SIGCONT)


def _link_down(hosts: dict[str, Any], server: dict[str, Any]) -> Callable[[], None]:
    _, tag, index = server["name"].split("-")
    veth = f"bbv{tag}{index}"  # NetnsProvider's name for the host's end on the bridge
    sh("ip", "link", "set", veth, "down")
    return lambda: sh("ip", "link", "set", veth, "up") and None


@pytest.mark.parametrize("fault", ["sshd-stopped", "link-down"])
def test_server_that_stops_answering(netns_hosts: tuple[Cli, dict[str, Any]], tmp_path: Path,
                                     fault: str) -> None:
    hosts_cli, hosts = netns_hosts
    server = hosts["endpoints"]["servers"][1]
    cli = cli_for(tmp_path / "home")
    config = {"type": "ServersEngine", "ssh_timeout": 10, "provider": {
        "type": "ExistingServers", "credentials": [
            {"host": s["host"], "user": "root", "key": s["key"]}
            for s in hosts["endpoints"]["servers"]]}}
    path = write_yaml(tmp_path / "c.yaml", config)
    undo = _silence_sshd(server) if fault == "sshd-stopped" else _link_down(hosts, server)
    try:
        process = cli.popen("deployment", "create", "--name", "silent", "--file", path)
        line, _ = fail_within(process, SILENT_SERVER_BOUND)
        assert server["host"] in line and "unreachable after" in line, line
        shown = deployment_state(cli, "silent")
        assert_consistent(shown, lambda r: True, set())
        assert shown["resources"] == []
    finally:
        undo()
    cli.ok("deployment", "destroy", "silent", timeout=120)
    assert cli.json("deployment", "list") == []
    assert all(c["ok"] for c in hosts_cli.json("deployment", "check", "hosts"))


@pytest.mark.parametrize("when", ["before", "during"])
def test_disk_under_home_fills_up(tmp_path: Path, when: str) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    sh("mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(home))
    filler = home / "filler"
    cli = cli_for(home)
    tag = None
    try:
        if when == "before":
            cli.ok("deployment", "list")  # the home and its database exist, then the disk fills
        path = write_yaml(tmp_path / "c.yaml", netns_config(DISK_NETWORK, 8))

        def fill() -> None:
            with open(filler, "wb") as out:
                try:
                    while True:
                        out.write(b"\0" * 65536)
                        out.flush()
                except OSError:
                    pass

        if when == "before":
            fill()
        process = cli.popen("deployment", "create", "--name", "full", "--file", path)
        if when == "during":
            wait_for(lambda: list(home.glob("deployments/*/netns/*/sshd.pid")), process, 60,
                     "no netns host was ever started")
            fill()
        line, _ = fail_within(process, DISK_BOUND)
        assert "No space left on device" in line or "disk is full" in line, line
        assert "internal error" not in line, line
        filler.unlink()
        listed = cli.json("deployment", "list")
        if when == "before" and not listed:
            return  # nothing could be recorded, so nothing was created
        shown = deployment_state(cli, "full")
        tag = netns_tag(shown["uuid"])
        existing = recorded_kinds(netns_leftovers(tag))
        if unrecorded_failure(cli, shown, tag):
            return
        assert_consistent(shown, lambda r: r["name"] in existing, existing)
        destroy_leaves_nothing(cli, "full", tag)
    finally:
        if filler.exists():
            filler.unlink()
        cli.destroy_all()
        sh("umount", str(home))
    if tag:
        assert netns_leftovers(tag) == set()


@pytest.fixture
def postgres(tmp_path: Path) -> Iterator[tuple[str, Callable[[], None]]]:
    """A PostgreSQL of its own and a function that restarts it (fast shutdown: every
    connection is cut, then it accepts new ones)."""
    from tests.postgres import POSTGRES_USER, _bin, postgres_server

    with postgres_server() as url:
        engine = create_engine(url)
        with engine.connect() as connection:
            data = connection.execute(text("SHOW data_directory")).scalar_one()
        engine.dispose()

        def restart() -> None:
            subprocess.run(["runuser", "-u", POSTGRES_USER, "--", _bin("pg_ctl"), "-D", data,
                            "-m", "fast", "-w", "-l", f"{data}/../restart.log", "restart"],
                           check=True, capture_output=True, timeout=120)
        yield url, restart


@pytest.mark.parametrize("moment", ["creating hosts", "waiting for ssh"])
def test_database_restarted_mid_create(postgres: tuple[str, Callable[[], None]],
                                       tmp_path: Path, moment: str) -> None:
    url, restart = postgres
    cli = Cli({**cli_for(tmp_path / "home").env, "BENCHBED_DATABASE_URL": url})
    path = write_yaml(tmp_path / "c.yaml", netns_config(DATABASE_NETWORK, 40))
    engine = create_engine(url)

    def rows() -> int:
        with engine.connect() as connection:
            return int(connection.execute(text("SELECT count(*) FROM resources")).scalar_one())

    tag = None
    try:
        process = cli.popen("deployment", "create", "--name", "pg", "--file", path)
        if moment == "creating hosts":
            wait_for(lambda: _quiet(rows) >= 5, process, 60, "no host was ever recorded")
        else:
            wait_for(step_started(tmp_path / "home", "wait for SSH"), process, 120,
                     "wait for SSH never started")
        restart()
        engine.dispose()
        started = time.monotonic()
        _, stderr = process.communicate(timeout=DATABASE_BOUND)
        elapsed = time.monotonic() - started
        assert elapsed < DATABASE_BOUND
        shown = deployment_state(cli, "pg")
        tag = netns_tag(shown["uuid"])
        existing = recorded_kinds(netns_leftovers(tag))
        if process.returncode == 0:
            # survived the restart: then it finished, and everything is recorded
            assert shown["status"] == "deploy->finished", shown["status"]
            assert existing <= {r["name"] for r in shown["resources"]}
        else:
            assert process.returncode == 1, stderr
            line = one_clear_line(stderr)
            assert "internal error" not in line and "[SQL:" not in line, line
            if unrecorded_failure(cli, shown, tag):
                return
            assert_consistent(shown, lambda r: r["name"] in existing, existing)
        destroy_leaves_nothing(cli, "pg", tag)
    finally:
        engine.dispose()
        cli.destroy_all()
    assert netns_leftovers(tag or "no-tag") == set()


def _quiet(rows: Callable[[], int]) -> int:
    """Rows so far; the table may not exist yet."""
    try:
        return rows()
    except Exception:
        return 0


# -- DebianEngine in LXC: the apt proxy, the SSH connection ---------------------------------


def lxc_leftovers() -> dict[str, list[str]]:
    bridge = bridge_name(ipaddress.IPv4Network(LXC_NETWORK))
    containers = [n for n in sh("lxc-ls", "-1").split() if n.startswith(LXC_PREFIX + "-")]
    bridges = [line for line in sh("ip", "-br", "link").splitlines() if bridge in line]
    state = sorted(os.listdir("/run/benchbed/hostnet")) \
        if os.path.isdir("/run/benchbed/hostnet") else []
    return {"containers": containers, "bridges": bridges,
            "state": [name for name in state if name == bridge]}  # its .lock stays, by design


def debian_config() -> dict[str, Any]:
    return {"type": "DebianEngine", "services": ["keystone"],
            "provider": {"type": "LxcProvider", "start_lxc_network": LXC_NETWORK,
                         "container_name_prefix": LXC_PREFIX,
                         "host_provider": {"type": "ExistingServers", "credentials": [
                             {"host": "localhost", "user": "root"}]}}}


def container_of(cli: Cli, name: str) -> str:
    containers = [r["name"] for r in deployment_state(cli, name)["resources"]
                  if r["kind"] == "container"]
    assert len(containers) == 1, containers
    return containers[0]


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


def ssh_sessions(container: str) -> list[int]:
    """The sshd processes serving connections into the container: the descendants named
    sshd of the container's listening sshd (found from its init, not by a pattern)."""
    init = int(sh("lxc-info", "-n", container, "-pH").strip())
    listeners = [pid for pid in _children(init)
                 if Path(f"/proc/{pid}/comm").read_text().strip() == "sshd"]
    assert len(listeners) == 1, listeners
    sessions, queue = [], _children(listeners[0])
    while queue:
        pid = queue.pop()
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip().startswith("sshd"):
                sessions.append(pid)
            queue += _children(pid)
        except FileNotFoundError:
            continue
    return sessions


def kill_apt_proxy() -> None:
    """SIGKILL the apt-cacher-ng of our bridge, by the pid in benchbed's pid file."""
    pid_file = Path("/run/benchbed/hostnet", bridge_name(ipaddress.IPv4Network(LXC_NETWORK)),
                    "acng-run", "pid")
    pid = int(pid_file.read_text())
    assert Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"apt-cacher-ng")
    os.kill(pid, signal.SIGKILL)


@pytest.fixture
def debian(tmp_path: Path) -> Iterator[tuple[Cli, Path]]:
    cli = cli_for(tmp_path / "home")
    try:
        yield cli, Path(write_yaml(tmp_path / "debian.yaml", debian_config()))
    finally:
        cli.destroy_all()
        assert lxc_leftovers() == {"containers": [], "bridges": [], "state": []}


def lxc_create_hit(cli: Cli, config: Path, home: Path, step: str,
                   fault: Callable[[str], None], bound: float) -> str:
    """Start a DebianEngine create, apply `fault(container)` as `step` starts; check the
    create fails within `bound`, the record is consistent and destroy leaves nothing."""
    process = cli.popen("deployment", "create", "--name", "deb", "--file", str(config))
    wait_for(step_started(home, step), process, 300, f"step {step!r} never started")
    container = container_of(cli, "deb")
    assert process.poll() is None
    fault(container)
    line, _ = fail_within(process, bound)
    shown = deployment_state(cli, "deb")
    existing = set(lxc_leftovers()["containers"])
    assert existing == {container}
    assert_consistent(shown, lambda r: r["name"] in existing, existing)
    cli.ok("deployment", "destroy", "deb", timeout=300)
    assert cli.json("deployment", "list") == []
    assert lxc_leftovers() == {"containers": [], "bridges": [], "state": []}
    return line


def test_apt_proxy_dies_mid_install(debian: tuple[Cli, Path], tmp_path: Path) -> None:
    cli, config = debian
    line = lxc_create_hit(cli, config, tmp_path / "home", "download packages",
                          lambda _: kill_apt_proxy(), APT_PROXY_BOUND)
    assert "download packages" in line and "exited" in line, line


@pytest.mark.parametrize("fault", ["sshd-killed", "sshd-stopped"])
def test_ssh_connection_drops_or_stalls_mid_step(debian: tuple[Cli, Path], tmp_path: Path,
                                                 fault: str) -> None:
    cli, config = debian

    def hit(container: str) -> None:
        time.sleep(0.5)  # the step's command has started on the server
        sessions = ssh_sessions(container)
        assert sessions, "benchbed has no SSH session into the container"
        for pid in sessions:
            os.kill(pid, signal.SIGKILL if fault == "sshd-killed" else signal.SIGSTOP)

    bound = SSH_DROP_BOUND if fault == "sshd-killed" else SILENT_SERVER_BOUND
    line = lxc_create_hit(cli, config, tmp_path / "home", "apt-get update", hit, bound)
    assert "apt-get update" in line, line
    expected = "connection lost" if fault == "sshd-killed" else "stopped answering"
    assert expected in line, line

