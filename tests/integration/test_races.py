"""Commands at once, through the real CLI: a first run on a fresh home migrates the schema
once (SQLite and PostgreSQL); two creates of overlapping networks cannot both pass the
network check. (A lease edited by hand, broken by --force: test_postgres_cli.py, on SQLite
and PostgreSQL.)

Runs as root: NetnsProvider makes real SSH hosts on bridges of its own, in 10.254.212.0/24.
"""

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import Cli, ledger_rows, write_yaml

# In the creates it is given to, `Deployment.create` (the insert of the row holding the
# claim) starts a second late: without a lock from the overlap check to the committed row,
# a concurrent create would pass the check in that second, every time.
SLOW_INSERT = """
import time
from benchbed.deployment import Deployment
_create = Deployment.create.__func__
def _slow_create(cls, *args, **kwargs):
    time.sleep(1)
    return _create(cls, *args, **kwargs)
Deployment.create = classmethod(_slow_create)
"""


def netns_config(network: str) -> dict:
    return {"type": "ServersEngine",
            "provider": {"type": "NetnsProvider", "network": network, "amount": 1}}


def leftovers(uuid: str) -> list[str]:
    """Namespaces and links of one deployment still on the machine."""
    tag = uuid.replace("-", "")[:8]
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                                check=True).stdout
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True,
                           check=True).stdout
    return [line for line in (namespaces + links).splitlines() if tag in line]


def error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert "Traceback" not in result.stderr, result.stderr
    return [line for line in result.stderr.splitlines() if line.startswith("benchbed:")]


def run_together(commands: list[tuple[str, ...]], env: dict[str, str]
                 ) -> list[subprocess.CompletedProcess[str]]:
    """Start every command, then wait for each: they run at once."""
    cli = Cli(env)
    started = [(args, subprocess.Popen(cli.argv(*args), stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, text=True, env=env))
               for args in commands]
    results = []
    try:
        for args, process in started:
            stdout, stderr = process.communicate(timeout=300)
            results.append(subprocess.CompletedProcess(list(args), process.returncode,
                                                       stdout, stderr))
    finally:
        for _, process in started:
            if process.poll() is None:
                process.kill()
                process.wait()
    return results


@pytest.mark.usefixtures("database")
def test_a_first_run_of_many_commands_at_once_migrates_once(bb: Cli, home: Path,
                                                            tmp_path: Path) -> None:
    assert not home.exists()
    config = write_yaml(tmp_path / "c.yaml", netns_config("10.254.212.128/29"))
    commands = [("deployment", "list", "--json")] * 8 + \
        [("deployment", "create", "--no-use", "--name", "first", "--file", config)]
    results = run_together(commands, dict(os.environ))
    for result in results:
        assert result.returncode == 0, f"{result.args}: {result.stderr}"
        assert error_lines(result) == []
    for listed in results[:8]:
        assert {d["name"] for d in json.loads(listed.stdout)} <= {"first"}
    shown = bb.json("deployment", "show", "first")
    assert shown["status"] == "deploy->finished"
    bb.ok("deployment", "destroy", "first")
    assert leftovers(shown["uuid"]) == []
    assert bb.json("deployment", "list") == []


@pytest.mark.parametrize("first, second", [
    ("10.254.212.0/29", "10.254.212.0/28"),   # one inside the other
    ("10.254.212.16/29", "10.254.212.16/29"),  # the very same network, not shareable
])
def test_two_creates_of_overlapping_networks_at_once_one_wins(
        bb: Cli, home: Path, tmp_path: Path, first: str, second: str) -> None:
    slow = tmp_path / "slow"
    slow.mkdir()
    (slow / "sitecustomize.py").write_text(SLOW_INSERT)
    env = {**os.environ, "PYTHONPATH": str(slow)}
    bb.ok("deployment", "list")  # the schema exists: this test is about the networks
    results = run_together(
        [("deployment", "create", "--no-use", "--name", name, "--file",
          write_yaml(tmp_path / f"{name}.yaml", netns_config(network)))
         for name, network in (("one", first), ("two", second))], env)

    codes = sorted(result.returncode for result in results)
    assert codes == [0, 2], [result.stderr for result in results]
    winner, loser = sorted(results, key=lambda result: result.returncode)
    won = "one" if "one" in winner.args else "two"
    lost_network = second if won == "one" else first
    won_network = first if won == "one" else second
    assert error_lines(loser) == [
        f"benchbed: error: config provider.network: {lost_network} overlaps {won_network} "
        f"of deployment '{won}'"]
    listed = bb.json("deployment", "list")
    assert [(d["name"], d["status"]) for d in listed] == [(won, "deploy->finished")]

    bb.ok("deployment", "destroy", won)
    assert leftovers(listed[0]["uuid"]) == []
    assert bb.json("deployment", "list") == []
    assert ledger_rows(home) == 0
