"""The exported Ansible inventory read by the real Ansible against real hosts: `ansible -m
ping` and a one-task playbook reach every netns host (sshd in a network namespace) and every
LXC container; a host key changed after the export makes Ansible refuse that host; a
hostile value (Jinja in a key's path) is used as it is written, never rendered.

Runs as root: NetnsProvider in 10.254.31.0/24, LxcProvider in 10.254.32.0/24, every
deployment and container named `bban...`; the hosts are made once for the module.
"""

import json
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import CLIENTS, cli_for, read_inventory, write_yaml

pytestmark = pytest.mark.root

NETNS_NETWORK = "10.254.31.0/28"
LXC_NETWORK = "10.254.32.0/24"
PREFIX = "bban"
LOCALHOST = {"type": "ExistingServers", "credentials": [{"user": "root", "host": "localhost"}]}
# a directory of the hostile key path: Ansible would run the command if it rendered it
HOSTILE_DIRECTORY = "{{ lookup('pipe', 'touch key-was-rendered') }}"
PLAYBOOK = [{"hosts": "all", "gather_facts": False, "tasks": [
    {"name": "list the host's own addresses", "ansible.builtin.command": "ip -o -4 addr show"}]}]
KINDS = ["netns", "lxc"]


def ansible(*args: str, cwd: Path, control_paths: str = "cp"
            ) -> subprocess.CompletedProcess[str]:
    """A real Ansible command from .venv-clients, with every file of its own under `cwd`;
    results as one JSON line each (`-v`). The Python on the hosts is named: the netns hosts
    share this machine's PATH, where Ansible's discovery finds a pyenv shim (python3.13)
    that runs nothing over SSH; the containers' Debian has /usr/bin/python3 too. SSH's
    persistent connections live in `cwd / control_paths`: a new folder makes new logins."""
    env = {**os.environ, "ANSIBLE_LOCAL_TEMP": str(cwd / "ansible-tmp"),
           "ANSIBLE_HOME": str(cwd / "ansible-home"), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_TIMEOUT": "20", "ANSIBLE_CALLBACK_RESULT_FORMAT": "json",
           "ANSIBLE_CALLBACK_FORMAT_PRETTY": "false", "ANSIBLE_RETRY_FILES_ENABLED": "false",
           "ANSIBLE_PYTHON_INTERPRETER": "/usr/bin/python3",
           "ANSIBLE_SSH_CONTROL_PATH_DIR": str(cwd / control_paths)}
    return subprocess.run([str(CLIENTS / args[0]), *args[1:]], capture_output=True, text=True,
                          timeout=300, cwd=cwd, env=env)


def results(output: str) -> dict[str, tuple[str, dict[str, Any]]]:
    """Each host's outcome word (SUCCESS, CHANGED, UNREACHABLE!, changed, ...) and result,
    from the lines `alias | WORD => {...}` (ad hoc) and `word: [alias] => {...}` (playbook)."""
    found = {}
    for line in output.splitlines():
        head, arrow, body = line.partition(" => ")
        if not arrow or not body.startswith("{"):
            continue
        if head.startswith(("ok: [", "changed: [", "fatal: [")):
            word, _, alias = head.partition(": [")
            found[alias.rstrip("]")] = (word, json.loads(body))
        elif " | " in head:
            alias, _, word = head.partition(" | ")
            found[alias] = (word, json.loads(body))
    return found


def containers() -> set[str]:
    listed = subprocess.run(["lxc-ls", "-1"], capture_output=True, text=True,
                            check=True).stdout.split()
    return {name for name in listed if name.startswith(f"{PREFIX}-")}


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Two netns hosts, two LXC containers, an ExistingServers deployment of one netns host
    whose key lies under a hostile path; each deployment's inventory exported once."""
    base = tmp_path_factory.mktemp("bban")
    cli = cli_for(base / "home")
    try:
        cli.ok("deployment", "create", "--no-use", "--name", "bban-netns", "--file",
               write_yaml(base / "netns.yaml", {"type": "ServersEngine", "provider": {
                   "type": "NetnsProvider", "network": NETNS_NETWORK, "amount": 2}}))
        cli.ok("deployment", "create", "--no-use", "--name", "bban-lxc", "--file",
               write_yaml(base / "lxc.yaml", {"type": "ServersEngine", "amount": 2, "provider": {
                   "type": "LxcProvider", "containers_per_host": 2,
                   "start_lxc_network": LXC_NETWORK, "container_name_prefix": PREFIX,
                   "host_provider": LOCALHOST}}))
        shown = {kind: cli.json("deployment", "show", f"bban-{kind}") for kind in KINDS}
        target = shown["netns"]["endpoints"]["servers"][1]
        key = base / "keys" / HOSTILE_DIRECTORY / "id"
        key.parent.mkdir(parents=True)
        shutil.copyfile(target["key"], key)
        key.chmod(0o600)
        cli.ok("deployment", "create", "--no-use", "--name", "bban-hostile", "--file",
               write_yaml(base / "hostile.yaml", {"type": "ServersEngine", "provider": {
                   "type": "ExistingServers", "credentials": [
                       {"host": target["host"], "user": "root", "key": str(key)}]}}))
        inventories = {}
        for kind in [*KINDS, "hostile"]:
            inventories[kind] = base / f"{kind}.yaml"
            cli.ok("deployment", "export", f"bban-{kind}", "--format", "ansible-inventory",
                   "--output", str(inventories[kind]))
        # the containers' image has no Python, which Ansible's modules need: Ansible's own
        # way to bootstrap it, the raw module, installs it through benchbed's apt proxy
        bootstrap = ansible("ansible", "-i", str(inventories["lxc"]), "all", "-m", "raw", "-a",
                            "apt-get update -q && apt-get install -q -y "
                            "--no-install-recommends python3", cwd=base)
        assert bootstrap.returncode == 0, bootstrap.stdout[-3000:] + bootstrap.stderr
        yield {"cli": cli, "base": base, "shown": shown, "inventories": inventories,
               "hostile_target": target}
    finally:
        cli.destroy_all()
        assert containers() == set()


@pytest.mark.parametrize("kind", KINDS)
def test_ansible_pings_every_host(lab: dict[str, Any], kind: str) -> None:
    ping = ansible("ansible", "-v", "-i", str(lab["inventories"][kind]), "all", "-m", "ping",
                   cwd=lab["base"])
    assert ping.returncode == 0, ping.stdout + ping.stderr
    servers = lab["shown"][kind]["endpoints"]["servers"]
    found = results(ping.stdout)
    assert sorted(found) == sorted(s["name"] for s in servers), ping.stdout
    assert all(word == "SUCCESS" and result["ping"] == "pong"
               for word, result in found.values()), ping.stdout


@pytest.mark.parametrize("kind", KINDS)
def test_a_one_task_playbook_runs_on_every_host(lab: dict[str, Any], kind: str) -> None:
    playbook = lab["base"] / "playbook.yaml"
    playbook.write_text(yaml.safe_dump(PLAYBOOK))
    played = ansible("ansible-playbook", "-v", "-i", str(lab["inventories"][kind]),
                     str(playbook), cwd=lab["base"])
    assert played.returncode == 0, played.stdout + played.stderr
    found = results(played.stdout)
    servers = lab["shown"][kind]["endpoints"]["servers"]
    assert sorted(found) == sorted(s["name"] for s in servers), played.stdout
    for server in servers:
        word, result = found[server["name"]]
        assert word == "changed", played.stdout
        # it ran on that host: its own address is there, the other host's is not
        assert f"inet {server['host']}/" in result["stdout"], result
        others = [s["host"] for s in servers if s is not server]
        assert not any(f"inet {other}/" in result["stdout"] for other in others), result
    assert "failed=0" in played.stdout and "unreachable=0" in played.stdout


def test_a_hostile_key_path_is_used_as_written(lab: dict[str, Any]) -> None:
    """The key lies under a directory named like a Jinja template that runs a command: the
    login works only if Ansible hands ssh the path as written, and the command never runs."""
    inventory = lab["inventories"]["hostile"].read_text()
    [variables] = read_inventory(inventory)["all"]["children"]["bban_hostile"]["hosts"].values()
    assert HOSTILE_DIRECTORY in variables["ansible_ssh_private_key_file"]
    assert "ansible_ssh_private_key_file: !unsafe" in inventory
    for command in (("ansible", "-v", "-i", str(lab["inventories"]["hostile"]), "all", "-m",
                     "ping"),
                    ("ansible-playbook", "-v", "-i", str(lab["inventories"]["hostile"]),
                     str(lab["base"] / "hostile-playbook.yaml"))):
        (lab["base"] / "hostile-playbook.yaml").write_text(yaml.safe_dump(PLAYBOOK))
        ran = ansible(*command, cwd=lab["base"])
        assert ran.returncode == 0, ran.stdout + ran.stderr
        [(word, result)] = results(ran.stdout).values()
        assert word in ("SUCCESS", "changed"), ran.stdout
        assert result.get("ping") == "pong" or \
            f"inet {lab['hostile_target']['host']}/" in result["stdout"], result
    assert list(lab["base"].rglob("key-was-rendered")) == []


def change_host_keys(kind: str, shown: dict[str, Any], server: dict[str, Any]) -> None:
    """New host keys for `server`, its sshd restarted on them (same address and port)."""
    if kind == "netns":
        directory = Path(shown["log"]).parent / "netns" / server["name"]
        pids = subprocess.run(["ip", "netns", "pids", server["name"]], capture_output=True,
                              text=True, check=True).stdout.split()
        for pid in pids:
            os.kill(int(pid), signal.SIGKILL)
        for old in directory.glob("ssh_host_*_key*"):
            old.unlink()
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                        str(directory / "ssh_host_ed25519_key")], check=True)
        subprocess.run(["ip", "netns", "exec", server["name"], "/usr/sbin/sshd", "-f",
                        str(directory / "sshd_config")], check=True)
        return
    subprocess.run(["lxc-attach", "-n", server["name"], "--", "sh", "-c",
                    "rm -f /etc/ssh/ssh_host_*_key* && ssh-keygen -A && "
                    "kill -HUP \"$(cat /run/sshd.pid)\""], check=True, capture_output=True,
                   timeout=60)


@pytest.mark.parametrize("kind", KINDS)
def test_a_host_key_changed_after_the_export_is_refused(lab: dict[str, Any], kind: str
                                                        ) -> None:
    servers = lab["shown"][kind]["endpoints"]["servers"]
    changed, kept = servers[0], servers[1]
    change_host_keys(kind, lab["shown"][kind], changed)
    # new logins: a connection Ansible keeps open from before the change was made with the
    # old key, and SSH checks a host key only when it logs in
    ping = ansible("ansible", "-v", "-i", str(lab["inventories"][kind]), "all", "-m", "ping",
                   cwd=lab["base"], control_paths=f"cp-{kind}-changed")
    assert ping.returncode != 0, ping.stdout
    found = results(ping.stdout)
    word, result = found[changed["name"]]
    assert word == "UNREACHABLE!", ping.stdout
    assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in result["msg"] or \
        "Host key verification failed" in result["msg"], result
    assert found[kept["name"]][0] == "SUCCESS", ping.stdout
