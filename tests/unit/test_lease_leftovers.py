"""A holder killed with -9 leaves its commands running; breaking its lease ends them, but
not the daemons they started (those detached into sessions of their own)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from benchbed.deployment import Deployment
from benchbed.lease import Holder, leftover_commands
from tests.conftest import kill_now

# the holder: creates a deployment (so it holds its lease), starts a command in its own
# session and a daemon-like one in a new session, says their pids, and waits to be killed
HOLDER = """
import json, subprocess, sys, time
from benchbed.deployment import Deployment
deployment = Deployment.create("held", {"type": "ExistingCloud"})
command = subprocess.Popen(["sleep", "300"])
daemon = subprocess.Popen(["sleep", "301"], start_new_session=True)
print(json.dumps({"token": deployment.lease_owner, "command": command.pid,
                  "daemon": daemon.pid}), flush=True)
time.sleep(300)
"""


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_breaking_a_dead_holders_lease_ends_its_commands_not_its_daemons(home: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER], stdout=subprocess.PIPE,
                              text=True, env=dict(os.environ))
    pids: dict[str, int] = {}
    try:
        started = json.loads(holder.stdout.readline())
        pids = {"command": started["command"], "daemon": started["daemon"]}
        dead = Holder.parse(started["token"])
        assert leftover_commands(dead) == [pids["command"]]
        kill_now(holder)
        assert dead.is_alive() is False and _running(pids["command"])

        with Deployment.get("held").lease(force=True):
            assert not _running(pids["command"])
            assert _running(pids["daemon"])
        assert leftover_commands(dead) == []
        assert f"@{os.getsid(0)}" in os.environ["BENCHBED_ACTOR"]
    finally:
        holder.kill()
        holder.wait()
        for pid in pids.values():
            if _running(pid):
                os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while _running(pids.get("daemon", 0)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _running(pids.get("daemon", 0))


def test_a_killed_holder_not_yet_reaped_is_not_alive() -> None:
    """A zombie: dead, but its pid and start time still in /proc until its parent waits."""
    child = subprocess.Popen(["sleep", "300"])
    try:
        start = Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
        holder = Holder(Holder.me().host, child.pid, start)
        assert holder.is_alive() is True
        os.kill(child.pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while _running(child.pid):
            assert time.monotonic() < deadline, "the child never died"
            time.sleep(0.01)
        assert Path(f"/proc/{child.pid}").exists(), "not a zombie: reaped too early"
        assert holder.is_alive() is False
    finally:
        child.kill()
        child.wait()
