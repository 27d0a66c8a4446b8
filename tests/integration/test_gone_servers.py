"""A server that is gone, and the test hosts' paths and logins (root only, real sshd).

NetnsProvider makes the hosts; ExistingServers and DebianEngine drive them. The deployment
under test fails on purpose right after recording what it must undo on its server (its apt
proxy does not answer), before it changes anything on it; then the server goes away.
"""

import ipaddress
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest

from tests.conftest import Cli, ledger_rows, password_sshd, write_yaml

# networks of this file only (10.254.220.0/24)
NETWORKS = {"stopped": "10.254.220.0/28", "deleted": "10.254.220.16/28",
            "space": "10.254.220.32/29", "relative": "10.254.220.40/29",
            "login": "10.254.220.48/29"}
# the bound of a destroy that cannot reach its server: benchbed.ssh.REACH_TIMEOUT (30 s)
# plus one attempt in flight (10 s), with room for a shared, loaded machine
DESTROY_BOUND = 60
LIBRARY_TEXT = ("Traceback", "paramiko", "Exception (client)", "protocol banner", "File \"")


def netns_hosts(network: str) -> dict:
    return {"type": "ServersEngine", "provider": {"type": "NetnsProvider", "network": network,
                                                  "amount": 1}}


def failing_install(server: dict, bridge_address: str) -> dict:
    """A DebianEngine on an existing server whose apt proxy does not answer: it records its
    install in the ledger, then fails its first check, having changed nothing there."""
    return {"type": "DebianEngine", "services": ["keystone"],
            "apt_proxy": f"http://{bridge_address}:9",
            "provider": {"type": "ExistingServers", "credentials": [
                {"host": server["host"], "user": "root", "key": server["key"]}]}}


def pids_in(namespace: str) -> list[int]:
    listed = subprocess.run(["ip", "netns", "pids", namespace], capture_output=True,
                            text=True, check=True).stdout
    return [int(pid) for pid in listed.split()]


def make_gone(how: str, namespace: str) -> None:
    """`stopped`: the sshd is frozen (TCP is still accepted, no SSH banner ever comes);
    `deleted`: its processes killed and the namespace deleted (no route to the host)."""
    pids = pids_in(namespace)
    assert pids, f"no sshd runs in {namespace}"
    for pid in pids:
        os.kill(pid, signal.SIGSTOP if how == "stopped" else signal.SIGKILL)
    if how == "deleted":
        subprocess.run(["ip", "netns", "delete", namespace], check=True)


def assert_one_line(result: subprocess.CompletedProcess[str], code: int, text: str) -> str:
    """Exit `code`, and on stderr nothing but one `benchbed:` line (after progress notes,
    never a library's own words); returns that line."""
    assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("benchbed: "), result.stderr
    assert sum(line.startswith("benchbed:") for line in lines) == 1, result.stderr
    # the library's own output: never; its error's text may be the reason in our one line
    for library_text in LIBRARY_TEXT:
        assert library_text not in "\n".join(lines[:-1]), result.stderr
    assert "Traceback" not in lines[-1] and "Exception (client)" not in lines[-1], lines[-1]
    assert text in lines[-1], lines[-1]
    return lines[-1]


@pytest.mark.parametrize("how", ["stopped", "deleted"])
def test_destroy_of_a_server_gone_is_bounded_then_abandon_finishes(
        bb: Cli, tmp_path: Path, home: Path, how: str) -> None:
    network = NETWORKS[how]
    bb.ok("deployment", "create", "--no-use", "--name", f"bbg-hosts-{how}",
          "--file", write_yaml(tmp_path / "hosts.yaml", netns_hosts(network)))
    hosts = bb.json("deployment", "show", f"bbg-hosts-{how}")
    server = hosts["endpoints"]["servers"][0]
    bridge_address = str(next(ipaddress.IPv4Network(network).hosts()))
    name = f"bbg-gone-{how}"
    failed = bb("deployment", "create", "--no-use", "--name", name,
                "--file", write_yaml(tmp_path / "gone.yaml",
                                     failing_install(server, bridge_address)))
    assert_one_line(failed, 1, "apt proxy")
    shown = bb.json("deployment", "show", name)
    assert [(r["kind"], r["name"]) for r in shown["resources"]] == \
        [("debian-packages", f"{server['host']}:22")]

    make_gone(how, server["name"])
    started = time.monotonic()
    refused = bb("deployment", "destroy", name, timeout=DESTROY_BOUND * 3)
    elapsed = time.monotonic() - started
    line = assert_one_line(refused, 1, f"root@{server['host']}:22: step 'purge packages' "
                                       f"failed: unreachable after 30s")
    assert elapsed < DESTROY_BOUND, f"destroy took {elapsed:.0f}s"
    assert f"benchbed deployment destroy {name} --abandon {server['host']}" in line
    kept = bb.json("deployment", "show", name)
    assert kept["status"] == "cleanup->failed"
    assert len(kept["resources"]) == 1
    log = Path(kept["log"]).read_text()
    if how == "stopped":
        # paramiko's own words went to the deployment's log, not to the terminal
        assert "Error reading SSH protocol banner" in log

    for wrong in ("10.254.220.250", f"{server['host']}:2222", "not a host"):
        mistaken = bb("deployment", "destroy", name, "--abandon", wrong)
        assert_one_line(mistaken, 2, f"no ledger row of deployment '{name}' lives on")
        assert len(bb.json("deployment", "show", name)["resources"]) == 1

    if how == "stopped":
        finished = bb("deployment", "destroy", name, "--abandon", server["host"],
                      timeout=DESTROY_BOUND * 3)
        assert finished.returncode == 0, finished.stderr
        assert finished.stderr.splitlines() == [
            f"abandoned on {server['host']} (gone for good, left as it is): "
            f"debian-packages {server['host']}:22", f"deployment '{name}' destroyed"]
        for library_text in LIBRARY_TEXT:
            assert library_text not in finished.stderr, finished.stderr
    else:
        # the Python API: the word is recorded in the timeline, then destroy finishes
        abandon = subprocess.run(
            [sys.executable, "-c", "import json, sys\nfrom benchbed import api\n"
             "print(json.dumps(api.abandon(sys.argv[1], [sys.argv[2]])))",
             name, f"{server['host']}:22"],
            capture_output=True, text=True, env=bb.env, timeout=120)
        assert abandon.returncode == 0, abandon.stderr
        assert json.loads(abandon.stdout) == [{"host": f"{server['host']}:22", "scope": "",
                                               "kind": "debian-packages",
                                               "name": f"{server['host']}:22"}]
        recorded = bb.json("deployment", "show", name)
        assert recorded["resources"] == []
        assert [(t["step"], t["detail"]) for t in recorded["timeline"]
                if t["step"] == "abandon"] == \
            [("abandon", f"debian-packages {server['host']}:22 on {server['host']}:22")]
        bb.ok("deployment", "destroy", name, timeout=120)
    assert name not in {d["name"] for d in bb.json("deployment", "list")}
    bb.ok("deployment", "destroy", f"bbg-hosts-{how}")
    assert ledger_rows(home) == 0
    assert server["name"] not in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                                text=True).stdout


def ssh_echo(server: dict, scratch: Path) -> str:
    """Log in with the deployment's key through the real ssh client; returns its output.
    (The key is copied to a plain path: what ssh makes of `%` in `-i` is not under test.)"""
    key = scratch / "bbg-key"
    key.write_bytes(Path(server["key"]).read_bytes())
    key.chmod(0o600)
    result = subprocess.run(["ssh", "-i", str(key), "-o", "BatchMode=yes",
                             "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                             "-o", "ConnectTimeout=10", f"root@{server['host']}", "echo in"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.mark.parametrize("where", ["space", "relative"])
def test_hosts_work_under_a_hostile_home_path(tmp_path: Path, where: str) -> None:
    """A home with blanks, a quote, a backslash and a `%h` token; a relative home (which
    sshd, daemonized into `/`, and later readers elsewhere would read against another
    directory)."""
    work = tmp_path / "work"
    work.mkdir()
    given = str(tmp_path / 'bbg home "with" \\ %h') if where == "space" else "relative home"
    home = work / given
    env = {key: value for key, value in os.environ.items() if key != "BENCHBED_DATABASE_URL"}
    cli = Cli({**env, "BENCHBED_HOME": given})
    config = write_yaml(tmp_path / "c.yaml", netns_hosts(NETWORKS[where]))
    start = os.getcwd()
    os.chdir(work)  # the commands run here; the relative home is read against it
    try:
        cli.ok("deployment", "create", "--name", "bbg-path", "--file", config)
        assert (home / "benchbed.sqlite").is_file()
        details = cli.json("deployment", "show", "bbg-path")
        server = details["endpoints"]["servers"][0]
        key = Path(server["key"])
        assert key.is_absolute() and key.is_file() and key.is_relative_to(home), key
        assert all(c["ok"] for c in cli.json("deployment", "check", "bbg-path"))
        os.chdir(tmp_path)  # what was recorded still holds from another directory
        assert ssh_echo(server, tmp_path) == "in"
    finally:
        os.chdir(work)
        cli.destroy_all()
        os.chdir(start)
    assert ledger_rows(home) == 0
    assert server["name"] not in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                                text=True).stdout


@pytest.fixture
def login_host(bb: Cli, tmp_path: Path) -> Iterator[dict]:
    bb.ok("deployment", "create", "--no-use", "--name", "bbg-login",
          "--file", write_yaml(tmp_path / "login.yaml", netns_hosts(NETWORKS["login"])))
    yield bb.json("deployment", "show", "bbg-login")


@pytest.fixture
def password_user() -> Iterator[tuple[str, str]]:
    """root's password cannot be changed on a shared machine: a second account of the test's
    own, with a password, stands for any account (the netns hosts share /etc)."""
    user, password = "bbh26gpw", "Bbg-Pa55-Refused"
    subprocess.run(["useradd", "-M", "-s", "/bin/sh", user], check=True)
    try:
        subprocess.run(["chpasswd"], input=f"{user}:{password}", text=True, check=True)
        yield user, password
    finally:
        subprocess.run(["userdel", user], check=True)


def paramiko_password_login(host: str, user: str, password: str, port: int = 22) -> str:
    """'accepted' or the reason paramiko gives; the server's methods are what decides."""
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    try:
        client.connect(host, port=port, username=user, password=password, timeout=10,
                       banner_timeout=10, auth_timeout=10, allow_agent=False,
                       look_for_keys=False)
        return "accepted"
    except paramiko.BadAuthenticationType as refused:
        return f"methods {sorted(refused.allowed_types)}"
    except paramiko.AuthenticationException as refused:
        return f"refused: {refused}"
    finally:
        client.close()


def test_the_hosts_refuse_password_logins(login_host: dict, tmp_path: Path,
                                          password_user: tuple[str, str]) -> None:
    server = login_host["endpoints"]["servers"][0]
    user, password = password_user
    # the same account and password on a test-owned sshd that allows passwords: accepted,
    # so the host's refusal below is its configuration's, not a wrong password's
    with password_sshd(server, login_host["log"], tmp_path) as port:
        assert paramiko_password_login(server["host"], user, password, port) == "accepted"
    for login in (user, "root"):
        assert paramiko_password_login(server["host"], login, password) == \
            "methods ['publickey']", login
        result = subprocess.run(
            ["ssh", "-o", "BatchMode=no", "-o", "PubkeyAuthentication=no",
             "-o", "PreferredAuthentications=password,keyboard-interactive",
             "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
             "-o", "NumberOfPasswordPrompts=1", "-o", "ConnectTimeout=10",
             f"{login}@{server['host']}", "echo in"],
            capture_output=True, text=True, input=password + "\n", timeout=60)
        assert result.returncode == 255, result
        assert "Permission denied (publickey)" in result.stderr, result.stderr
    assert ssh_echo(server, tmp_path) == "in"
