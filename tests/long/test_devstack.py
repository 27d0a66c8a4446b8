"""DevstackEngine end to end: real DevStack (stable/2025.1, keystone) from shared/upstream.

Root, real LXC. The repositories of shared/upstream are served by benchbed's git daemon and
PyPI by its devpi mirror, both on the bridge address; the guests have no other way out. One
deployment through LxcProvider is shared by the client tests; the ExistingServers tests run
on one container made with raw LXC commands (a clone of benchbed's cached base image on a
bridge of the test's own), through failure, kill -9 and a full run, so that what cleanup
leaves can be compared with the container as it was.
"""

import ipaddress
import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from benchbed.hostnet import bridge_name
from benchbed.server import Server
from tests import upstream
from tests.conftest import Cli, cli_for, ledger_rows, write_yaml
from tests.integration.debian_lab import ImageLab, Lab, sh

pytestmark = pytest.mark.root

ROOT = Path(__file__).resolve().parents[2]
CLIENTS = ROOT / ".venv-clients" / "bin"
LXC_NETWORK = "10.254.160.0/24"
LXC_PREFIX = "bbdst"
LAB_SUBNET = "10.254.161"
KEYSTONE_ONLY = {"ENABLED_SERVICES": "key,mysql"}
# what a keystone-only stack.sh leaves running (uwsgi is devstack@keystone's)
DAEMONS = ("mysqld", "mariadbd", "apache2", "uwsgi", "memcached", "beam.smp", "etcd")
HOSTILE = "$(touch /tmp/bb-pwned); `id` 'q' \"d\" \\ $HOME"  # ${VAR} is config syntax


def _client(*args: str, env: dict[str, str] | None = None, timeout: float = 300
            ) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(CLIENTS / args[0]), *args[1:]], capture_output=True,
                            text=True, timeout=timeout, env={**os.environ, **(env or {})})
    assert result.returncode == 0, f"{' '.join(args)}: {result.stdout[-1500:]}" \
                                   f"{result.stderr[-1500:]}"
    return result


def _mirror_processes(address: str) -> list[str]:
    return [line for line in sh("ps -ww -eo args").splitlines()
            if f"--listen={address}" in line or f"--host={address}" in line]


# -- LxcProvider: check, openstack, rally, destroy ------------------------------------------


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cli, Path]]:
    """One keystone-only DevStack in an LXC container, shared by the client tests."""
    work = tmp_path_factory.mktemp("devstack-cloud")
    cli = cli_for(work / "home")
    config = {"type": "DevstackEngine", "git_mirror": str(upstream.git_mirror()),
              "local_conf": KEYSTONE_ONLY,
              "provider": {"type": "LxcProvider", "start_lxc_network": LXC_NETWORK,
                           "container_name_prefix": LXC_PREFIX,
                           "host_provider": {"type": "ExistingServers", "credentials": [
                               {"host": "localhost", "user": "root"}]}}}
    try:
        cli.ok("deployment", "create", "--file", write_yaml(work / "cloud.yaml", config),
               "--name", "cloud", timeout=1800)
        for fmt, name in (("clouds.yaml", "clouds.yaml"), ("rally-spec", "spec.json")):
            cli.ok("deployment", "export", "cloud", "--format", fmt,
                   "--output", str(work / name))
        yield cli, work
    finally:
        cli.destroy_all()


def test_check_and_the_real_clients(cloud: tuple[Cli, Path], tmp_path: Path) -> None:
    cli, work = cloud
    results = cli.json("deployment", "check", "cloud")
    assert all(r["ok"] for r in results), results
    assert next(r for r in results if r["target"] == "service catalogue")["detail"] \
        == "identity"
    token = _client("openstack", "--os-cloud", "cloud", "token", "issue", "-f", "json",
                    env={"OS_CLIENT_CONFIG_FILE": str(work / "clouds.yaml")})
    assert json.loads(token.stdout)["id"]
    # rally keeps its database in /tmp/rally.sqlite unless rally.conf names one
    home = tmp_path / "rally-home"
    (home / ".rally").mkdir(parents=True)
    (home / ".rally" / "rally.conf").write_text(
        f"[database]\nconnection = sqlite:///{home}/rally.sqlite\n")
    env = {"HOME": str(home)}
    _client("rally", "db", "create", env=env)
    _client("rally", "env", "create", "--name", "bb", "--spec", str(work / "spec.json"),
            env=env)
    assert "OK!" in _client("rally", "env", "check", env=env).stdout


def test_generated_passwords_are_masked(cloud: tuple[Cli, Path]) -> None:
    cli, work = cloud
    password = yaml.safe_load((work / "clouds.yaml").read_text())[
        "clouds"]["cloud"]["auth"]["password"]
    assert len(password) == 32
    for command in (("deployment", "show", "cloud"), ("deployment", "show", "cloud", "--json")):
        assert password not in cli.ok(*command).stdout
    log = next((work / "home").glob("deployments/*/deployment.log")).read_text()
    assert "stack.sh completed in" in log or "This is your host IP address" in log
    assert password not in log


def test_destroy_leaves_no_container_row_or_mirror(cloud: tuple[Cli, Path]) -> None:
    cli, work = cloud
    cli.ok("deployment", "destroy", "cloud", timeout=600)
    assert cli.json("deployment", "list") == []
    assert ledger_rows(work / "home") == 0
    assert [n for n in sh("lxc-ls -1").split() if n.startswith(LXC_PREFIX)] == []
    bridge = bridge_name(ipaddress.IPv4Network(LXC_NETWORK))
    assert bridge not in sh("ip -br link")
    assert _mirror_processes("10.254.160.1") == []


# -- mirrors: shared, and they survive the bridge going and coming back ---------------------


def test_mirrors_survive_the_bridge_and_stop_with_the_last_user() -> None:
    from benchbed.hostnet.mirrors import GuestMirrors

    bridge, address = "bbdsmbr0", "10.254.161.201"
    sh(f"ip link delete {bridge}", check=False)  # left by an interrupted earlier run
    sh(f"ip link add {bridge} type bridge && ip addr add {address}/32 dev {bridge} && "
       f"ip link set {bridge} up")
    mirrors = GuestMirrors(Server(host="localhost"), address)
    try:
        mirrors.acquire("user-a", str(upstream.git_mirror()), pypi=False)
        mirrors.acquire("user-b", str(upstream.git_mirror()), pypi=False)
        sh(f"ip link delete {bridge}")
        sh(f"ip link add {bridge} type bridge && ip addr add {address}/32 dev {bridge} && "
           f"ip link set {bridge} up")
        listed = sh(f"git ls-remote git://{address}/openstack/devstack.git", timeout=60)
        assert "refs/heads/stable/2025.1" in listed
        mirrors.release("user-a")
        assert len(_mirror_processes(address)) == 1
        mirrors.release("user-b")
        assert _mirror_processes(address) == []
    finally:
        mirrors.release("user-a")
        mirrors.release("user-b")
        sh(f"ip link delete {bridge}", check=False)


# -- ExistingServers on a container made with raw LXC commands ------------------------------


@pytest.fixture(scope="module")
def raw() -> Iterator[tuple[ImageLab, str]]:
    lab = ImageLab("bbdsx", LAB_SUBNET, "/var/cache/benchbed-tests/apt-cacher-ng-devstack")
    try:
        lab.start()
        yield lab, lab.clone("bbdsx-server")
    finally:
        lab.stop()


def _existing(lab: Lab, address: str, **engine: Any) -> dict[str, Any]:
    return {"type": "DevstackEngine", "git_mirror": str(upstream.git_mirror()), **engine,
            "provider": {"type": "ExistingServers", "credentials": [lab.credentials(address)]}}


def _leftovers(lab: Lab, address: str) -> dict[str, str]:
    """What DevStack adds that cleanup must take away again."""
    return {
        "stack user": lab.ssh(address, "getent passwd stack; true"),
        "drop-ins": lab.ssh(address, "ls /etc/sudoers.d 2>/dev/null | grep -v README; true"),
        "services": lab.ssh(address, "systemctl list-units --state=running --no-legend "
                                     "--plain 'devstack@*' apache2.service mariadb.service "
                                     "mysql.service memcached.service; true"),
        "processes": lab.ssh(address, "ps -eo user=,args= | grep -E '^stack |stack.sh' "
                                      "| grep -v grep; true"),
        "daemons": _daemons(lab, address),
        "files": lab.ssh(address, "ls -d /opt/stack /etc/openstack /etc/pip.conf "
                                  "/var/lib/benchbed-devstack 2>/dev/null; true"),
        "packages": lab.ssh(address, "dpkg-query -W -f='${db:Status-Status} "
                                     "${binary:Package}\\n' | grep -v '^not-installed' | sort"),
    }


def _daemons(lab: Lab, address: str) -> str:
    """DevStack's daemons by process name, whoever runs them (mysql, www-data, stack)."""
    return lab.ssh(address, "ps -eo comm= | grep -xE '" + "|".join(DAEMONS) + "' | sort -u; true")


def _wait_for(home: Path, text: str, timeout: float = 900) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for log in home.glob("deployments/*/deployment.log"):
            if text in log.read_text():
                return
        time.sleep(0.5)
    raise AssertionError(f"{text!r} never appeared in the deployment log")


def _fails(cli: Cli, config: str, name: str) -> str:
    result = cli("deployment", "create", "--file", config, "--name", name, timeout=1800)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.strip().splitlines()
             if not line.startswith("creating deployment")]
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize(("engine", "pattern"), [
    ({"devstack_branch": "stable/no-such-branch"},
     r"step 'clone devstack' failed: .*Remote branch stable/no-such-branch not found"),
    ({"devstack_repo": f"git://{LAB_SUBNET}.1:9/openstack/devstack.git"},
     r"step 'clone devstack' failed: .*(unable to connect|did not answer)"),
])
def test_clone_failures_name_server_and_step(raw: tuple[ImageLab, str], tmp_path: Path,
                                             engine: dict[str, Any], pattern: str) -> None:
    lab, address = raw
    before = _leftovers(lab, address)
    cli = cli_for(tmp_path / "home")
    try:
        error = _fails(cli, write_yaml(tmp_path / "c.yaml", _existing(lab, address, **engine)),
                       "bad")
        assert re.search(rf"root@{address}:22: {pattern}", error), error
        cli.ok("deployment", "destroy", "bad", timeout=900)
        assert _leftovers(lab, address) == before
        assert ledger_rows(tmp_path / "home") == 0
    finally:
        cli.destroy_all()


def test_failing_stack_names_server_function_and_command(raw: tuple[ImageLab, str],
                                                         tmp_path: Path) -> None:
    lab, address = raw
    before = _leftovers(lab, address)
    cli = cli_for(tmp_path / "home")
    try:
        # stack.sh fails halfway: MySQL cannot bind an address the server does not have
        failing = _existing(lab, address, local_conf={**KEYSTONE_ONLY,
                                                      "SERVICE_LISTEN_ADDRESS": "192.0.2.77"})
        error = _fails(cli, write_yaml(tmp_path / "fail.yaml", failing), "fail")
        assert re.search(rf"root@{address}:22: step 'stack.sh' failed: stack.sh exited 1 in "
                         r"\S+ \(lib/databases/mysql:\d+: .*\); last lines: .+", error), error
        cli.ok("deployment", "destroy", "fail", timeout=900)
        assert _leftovers(lab, address) == before
        assert ledger_rows(tmp_path / "home") == 0
    finally:
        cli.destroy_all()


def test_kill_9_during_stack_then_destroy_then_a_later_create(raw: tuple[ImageLab, str],
                                                              tmp_path: Path) -> None:
    lab, address = raw
    before = _leftovers(lab, address)
    home = tmp_path / "home"
    cli = cli_for(home)
    try:
        # kill -9 once stack.sh has Keystone running under uwsgi behind apache2 with its
        # MySQL, then destroy: no stack user, drop-in, service, daemon or ledger row is left
        config = write_yaml(tmp_path / "ok.yaml", _existing(
            lab, address, localrc={**KEYSTONE_ONLY, "BENCHBED_HOSTILE": HOSTILE}))
        killed = cli.popen("deployment", "create", "--file", config, "--name", "killed")
        _wait_for(home, ":create_keystone_accounts:", timeout=2700)
        killed.kill()
        killed.wait()
        running = _daemons(lab, address).split()
        assert {"apache2", "uwsgi", "memcached"} <= set(running), running
        assert {"mysqld", "mariadbd"} & set(running), running
        assert ledger_rows(home) > 0
        cli.ok("deployment", "destroy", "--force", "killed", timeout=900)
        assert _leftovers(lab, address) == before
        assert ledger_rows(home) == 0

        # a later create on the same server succeeds; localrc (deprecated) warns and a value
        # with shell syntax arrives literally
        created = cli("deployment", "create", "--file", config, "--name", "ok", timeout=3600)
        assert created.returncode == 0, created.stderr
        assert "'localrc' is deprecated" in created.stderr
        assert all(r["ok"] for r in cli.json("deployment", "check", "ok"))
        read_back = lab.ssh(address, "bash -c '. /opt/stack/devstack/.localrc.auto; "
                                     "printf %s \"$BENCHBED_HOSTILE\"'")
        assert read_back == HOSTILE
        assert lab.ssh(address, "ls /tmp/bb-pwned 2>/dev/null; true") == ""
        assert "stack" in _leftovers(lab, address)["stack user"]

        cli.ok("deployment", "destroy", "ok", timeout=900)
        assert _leftovers(lab, address) == before
        assert cli.json("deployment", "list") == []
        assert ledger_rows(home) == 0
    finally:
        cli.destroy_all()
    assert _mirror_processes(f"{LAB_SUBNET}.1") == []
