"""The core end to end through the real CLI: sshd test hosts in network namespaces.

Runs as root (CI does): NetnsProvider makes real SSH hosts on a bridge of its own,
ExistingServers and ServersEngine drive them, and every test checks what is left.
"""

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.conftest import Cli, ledger_rows, password_sshd, read_inventory

SEED_PASSWORD = "Seed-Pa55-Never-Shown"


def write_config(directory: Path, name: str, config: dict) -> str:
    path = directory / name
    path.write_text(yaml.safe_dump(config))
    return str(path)


def netns_config(network: str, amount: int) -> dict:
    return {"type": "ServersEngine",
            "provider": {"type": "NetnsProvider", "network": network, "amount": amount}}


def tag_of(uuid: str) -> str:
    return uuid.replace("-", "")[:8]


def leftovers(tag: str) -> list[str]:
    """Namespaces and bridges of one deployment still on the machine."""
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    found = [line.split()[0] for line in namespaces.splitlines() if tag in line]
    found += [line.split(": ")[1].split("@")[0] for line in links.splitlines() if tag in line]
    return found


def assert_one_clear_line(result: subprocess.CompletedProcess[str], code: int, text: str) -> None:
    """The error is a single line naming the problem (progress notes may precede it)."""
    assert result.returncode == code, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("benchbed:")]
    assert len(errors) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == errors[0]
    assert text in errors[0], errors[0]


@pytest.fixture
def hosts(bb: Cli, tmp_path: Path) -> dict:
    """Three netns SSH hosts, made by a deployment of their own."""
    bb.ok("deployment", "create", "--no-use", "--name", "hosts",
          "--file", write_config(tmp_path, "hosts.yaml", netns_config("10.211.1.0/24", 3)))
    return bb.json("deployment", "show", "hosts")


def existing_servers(hosts: dict, **extra: object) -> dict:
    servers = hosts["endpoints"]["servers"]
    return {"type": "ServersEngine", "ssh_timeout": 8, "provider": {
        "type": "ExistingServers",
        "credentials": [{"host": s["host"], "user": "root", "key": s["key"], **extra}
                        for s in servers]}}


def test_servers_lifecycle_with_real_ssh(bb: Cli, tmp_path: Path, home: Path) -> None:
    bb.ok("deployment", "create", "--name", "life",
          "--file", write_config(tmp_path, "c.yaml", netns_config("10.211.2.0/24", 3)))
    listed = bb.json("deployment", "list")
    assert [(d["name"], d["status"]) for d in listed] == [("life", "deploy->finished")]
    details = bb.json("deployment", "show")  # the current deployment, selected by create
    tag = tag_of(details["uuid"])
    assert len(details["endpoints"]["servers"]) == 3
    assert {r["kind"] for r in details["resources"]} == {"bridge", "netns"}
    assert {"deploy", "create servers", "wait for SSH"} <= {t["step"]
                                                           for t in details["timeline"]}
    checks = bb.json("deployment", "check", "life")
    assert len(checks) == 3
    assert all(c["ok"] for c in checks)

    ssh_config = tmp_path / "ssh_config"
    bb.ok("deployment", "export", "life", "--format", "ssh-config", "--output", str(ssh_config))
    assert oct(ssh_config.stat().st_mode & 0o777) == "0o600"
    for server in details["endpoints"]["servers"]:
        result = subprocess.run(["ssh", "-F", str(ssh_config), "-o", "BatchMode=yes",
                                 server["name"], "echo reached-$(cat /proc/self/net/dev | wc -l)"],
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("reached-")
    inventory = read_inventory(bb.ok("deployment", "export", "life", "--format",
                                     "ansible-inventory").stdout)
    hosts = inventory["all"]["children"]["life"]["hosts"]
    assert sorted(h["ansible_host"] for h in hosts.values()) == \
        sorted(s["host"] for s in details["endpoints"]["servers"])

    bb.ok("deployment", "destroy", "life")
    assert leftovers(tag) == []
    assert bb.json("deployment", "list") == []
    assert ledger_rows(home) == 0


# kill -9 during a create, a second actor on a busy deployment and two destroys at once
# run on SQLite and on PostgreSQL in test_postgres_cli.py


def test_existing_servers_and_changed_host_key(bb: Cli, tmp_path: Path, hosts: dict) -> None:
    bb.ok("deployment", "create", "--name", "existing",
          "--file", write_config(tmp_path, "e.yaml", existing_servers(hosts)))
    assert all(c["ok"] for c in bb.json("deployment", "check", "existing"))

    first = hosts["endpoints"]["servers"][0]
    directory = Path(hosts["log"]).parent / "netns" / first["name"]
    pids = subprocess.run(["ip", "netns", "pids", first["name"]], capture_output=True,
                          text=True).stdout.split()
    for pid in pids:
        os.kill(int(pid), signal.SIGKILL)
    (directory / "ssh_host_ed25519_key").unlink()
    (directory / "ssh_host_ed25519_key.pub").unlink()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                    str(directory / "ssh_host_ed25519_key")], check=True)
    subprocess.run(["ip", "netns", "exec", first["name"], "/usr/sbin/sshd", "-f",
                    str(directory / "sshd_config")], check=True)

    checked = bb("deployment", "check", "existing", "--json")
    assert checked.returncode == 1
    results = {c["target"]: c for c in json.loads(checked.stdout)}
    bad = results[f"root@{first['host']}:22"]
    assert not bad["ok"]
    assert f"host key of {first['host']}:22 has changed since first contact" in bad["detail"]
    assert sum(c["ok"] for c in results.values()) == 2
    bb.ok("deployment", "destroy", "existing")
    assert bb.json("deployment", "show", "hosts")["status"] == "deploy->finished"


@pytest.fixture
def password_user() -> tuple[str, str]:
    """A host account with a password, for password logins (the netns hosts share /etc)."""
    user, password = "bbpwtest", SEED_PASSWORD
    subprocess.run(["useradd", "-M", "-s", "/bin/sh", user], check=True)
    try:
        subprocess.run(["chpasswd"], input=f"{user}:{password}", text=True, check=True)
        yield user, password
    finally:
        subprocess.run(["userdel", user], check=True)


@pytest.fixture
def password_port(hosts: dict, tmp_path: Path) -> Iterator[int]:
    """The netns hosts' own sshd takes keys only: a second sshd of the test's own, in the
    first host's namespace, takes passwords on port 2222."""
    with password_sshd(hosts["endpoints"]["servers"][0], hosts["log"], tmp_path) as port:
        yield port


def test_password_login_and_wrong_credentials(bb: Cli, tmp_path: Path, hosts: dict,
                                              password_user: tuple[str, str],
                                              password_port: int) -> None:
    user, password = password_user
    server = hosts["endpoints"]["servers"][0]["host"]
    good = {"type": "ServersEngine", "ssh_timeout": 8, "provider": {
        "type": "ExistingServers",
        "credentials": [{"host": server, "port": password_port, "user": user,
                         "password": "${BB_TEST_PW}"}]}}
    bb.ok("deployment", "create", "--name", "pw", "--file",
          write_config(tmp_path, "pw.yaml", good), env={"BB_TEST_PW": password})
    outputs = [bb.ok("deployment", *args).stdout + bb.ok("deployment", *args).stderr
               for args in (("list",), ("show", "pw"), ("config", "pw"), ("check", "pw"),
                            ("show", "pw", "--json"), ("config", "pw", "--json"))]
    assert all(password not in text for text in outputs)
    assert "***" in bb.ok("deployment", "config", "pw").stdout

    wrong = {**good, "provider": {**good["provider"], "credentials": [
        {"host": server, "port": password_port, "user": user,
         "password": "not-the-password"}]}}
    failed = bb("deployment", "create", "--name", "wrongpw",
                "--file", write_config(tmp_path, "w.yaml", wrong))
    assert_one_clear_line(failed, 1, f"{user}@{server}:{password_port}: authentication failed")

    other_key = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other_key)],
                   check=True)
    wrong_key = existing_servers(hosts)
    wrong_key["provider"]["credentials"] = [{"host": server, "user": "root",
                                             "key": str(other_key)}]
    failed = bb("deployment", "create", "--name", "wrongkey",
                "--file", write_config(tmp_path, "k.yaml", wrong_key))
    assert_one_clear_line(failed, 1, f"root@{server}:22: authentication failed")
    status = {d["name"]: d["status"] for d in bb.json("deployment", "list")}
    assert status["wrongkey"] == status["wrongpw"] == "deploy->failed"
    shown = bb.json("deployment", "show", "wrongkey")
    assert shown["resources"] == []
    assert "authentication failed" in shown["error"]


def test_unreachable_host_fails_clearly_without_leaking_the_password(
        bb: Cli, tmp_path: Path, hosts: dict, home: Path) -> None:
    config = {"type": "ServersEngine", "ssh_timeout": 3, "provider": {
        "type": "ExistingServers",
        "credentials": [{"host": "10.211.1.250", "user": "root", "password": SEED_PASSWORD}]}}
    failed = bb("deployment", "create", "--name", "nowhere",
                "--file", write_config(tmp_path, "u.yaml", config))
    assert_one_clear_line(failed, 1, "root@10.211.1.250:22: unreachable after 3s")
    assert SEED_PASSWORD not in failed.stderr + failed.stdout
    log = Path(bb.json("deployment", "show", "nowhere")["log"]).read_text()
    assert "unreachable" in log
    assert SEED_PASSWORD not in log
    bb.ok("deployment", "destroy", "nowhere")


def test_existing_cloud_secrets_and_export(bb: Cli, tmp_path: Path) -> None:
    config = {"type": "ExistingCloud", "auth_url": "http://127.0.0.1:9/v3",
              "region_name": "RegionOne",
              "admin": {"username": "admin", "password": SEED_PASSWORD,
                        "project_name": "admin"}}
    created = bb("deployment", "create", "--no-preflight", "--name", "cloud",
                 "--file", write_config(tmp_path, "cloud.json", config))
    assert created.returncode == 0, created.stderr
    texts = [created.stdout, created.stderr]
    for args in (("list",), ("show", "cloud"), ("config", "cloud"), ("show", "cloud", "--json")):
        texts.append(bb.ok("deployment", *args).stdout)
    checked = bb("deployment", "check", "cloud")
    assert checked.returncode == 1
    assert "no token for admin" in checked.stdout
    texts += [checked.stdout, checked.stderr]
    assert all(SEED_PASSWORD not in text for text in texts)
    openrc = tmp_path / "openrc"
    bb.ok("deployment", "export", "cloud", "--format", "openrc", "--output", str(openrc))
    assert oct(openrc.stat().st_mode & 0o777) == "0o600"
    assert f"export OS_PASSWORD='{SEED_PASSWORD}'" in openrc.read_text()


def test_fromenv_registers_the_openrc_cloud(bb: Cli) -> None:
    env = {"OS_AUTH_URL": "http://127.0.0.1:9/v3", "OS_USERNAME": "admin",
           "OS_PASSWORD": SEED_PASSWORD, "OS_PROJECT_NAME": "admin",
           "OS_REGION_NAME": "RegionTwo"}
    bb.ok("deployment", "create", "--no-preflight", "--fromenv", "--name", "env", env=env)
    endpoints = json.loads(bb.ok("deployment", "export", "env", "--format", "json").stdout)
    assert endpoints["openstack"]["region_name"] == "RegionTwo"
    assert endpoints["openstack"]["admin"]["password"] == SEED_PASSWORD
    missing = bb("deployment", "create", "--fromenv", "--name", "env2",
                 env={"OS_AUTH_URL": "", "OS_USERNAME": "", "OS_PASSWORD": ""})
    assert_one_clear_line(missing, 2, "OS_AUTH_URL, OS_USERNAME, OS_PASSWORD not set")


@pytest.mark.parametrize(("content", "message"), [
    ("type: ServersEngine\nprovider: [\n", "invalid YAML at line"),
    ('{"type": "ServersEngine",', "invalid JSON at line 1"),
    ("type: Nope\n", "config type: unknown engine type 'Nope'"),
    ("type: ServersEngine\n", "config: 'provider' is required"),
    ("type: ServersEngine\namount: many\nprovider: {type: NetnsProvider, network: 10.9.0.0/24}\n",
     "config amount: must be of type integer"),
    ("type: ServersEngine\nprovider: {type: NetnsProvider, network: 10.9.0.0/33}\n",
     "config provider.network: not an IPv4 network"),
    ("type: ServersEngine\nprovider: {type: ExistingServers, credentials: [{host: h}]}\n",
     "config provider.credentials[0]: 'user' is required"),
    ("admin:\n  password: ${BB_SURELY_UNSET}\ntype: ExistingCloud\n",
     # under a secret key even the variable's name stays out (it may be the secret itself)
     "config admin.password: names an environment variable that is not set"),
])
def test_bad_input_is_one_line_exit_2_and_creates_nothing(
        bb: Cli, tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / ("bad.json" if content.startswith("{") else "bad.yaml")
    path.write_text(content)
    for command in ("create", "validate"):
        args = ["deployment", command, "--file", str(path)]
        result = bb(*args, *(["--name", "bad"] if command == "create" else []))
        assert_one_clear_line(result, 2, message)
    assert bb.json("deployment", "list") == []


def test_usage_errors(bb: Cli, tmp_path: Path) -> None:
    assert_one_clear_line(bb("deployment", "show", "ghost"), 2, "no deployment named 'ghost'")
    assert_one_clear_line(bb("deployment", "create", "--name", "x", "--file",
                             str(tmp_path / "missing.yaml")), 2, "does not exist")
    assert bb("deployment", "export", "ghost", "--format", "xml").returncode == 2
    assert bb("deployment", "frobnicate").returncode == 2
    valid = write_config(tmp_path, "ok.yaml", netns_config("10.211.9.0/24", 2))
    assert bb.ok("deployment", "validate", "--file", valid).stdout.startswith(valid)
    assert bb.json("deployment", "list") == []


def test_plugin_list(bb: Cli) -> None:
    plugins = {(p["kind"], p["name"]) for p in bb.json("plugin", "list")}
    assert {("engine", "ExistingCloud"), ("engine", "ServersEngine"),
            ("provider", "ExistingServers"), ("provider", "NetnsProvider")} <= plugins
