"""Who holds a deployment: host, pid and process start time, so a reused pid is not mistaken."""

import contextlib
import os
import signal
import socket
from dataclasses import dataclass

from benchbed.retry import wait_for


def _start_time(pid: int) -> str | None:
    """Process start time in clock ticks since boot, from /proc; None if the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return fields[19]


@dataclass(frozen=True)
class Holder:
    host: str
    pid: int
    start_time: str

    @classmethod
    def me(cls) -> "Holder":
        pid = os.getpid()
        return cls(socket.gethostname(), pid, _start_time(pid) or "0")

    @classmethod
    def parse(cls, token: str) -> "Holder":
        host, pid, start_time = token.rsplit(":", 2)
        return cls(host, int(pid), start_time)

    def token(self) -> str:
        return f"{self.host}:{self.pid}:{self.start_time}"

    def is_alive(self) -> bool | None:
        """True/False on this host; None when the holder runs elsewhere and cannot be checked."""
        if self.host != socket.gethostname():
            return None
        return _start_time(self.pid) == self.start_time

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}"


# Every command a holder starts inherits this variable: "<holder token>@<session id>". A
# holder killed with -9 leaves its running commands behind (a container half-copied, an apt
# run over SSH); whoever breaks its lease ends them first, or they would go on creating
# what the destroy has just removed. The daemons those commands start (dnsmasq, the apt
# proxy, git daemon, LXC's monitors) detach into sessions of their own, so the session id
# tells a leftover command from a shared daemon.
ACTOR_VARIABLE = "BENCHBED_ACTOR"


def mark_commands(holder: Holder) -> None:
    """Tag the commands this process starts from now on as `holder`'s."""
    os.environ[ACTOR_VARIABLE] = f"{holder.token()}@{os.getsid(0)}"


def _marker(pid: int) -> str | None:
    prefix = f"{ACTOR_VARIABLE}=".encode()
    try:
        with open(f"/proc/{pid}/environ", "rb") as environ:
            variables = environ.read().split(b"\0")
    except OSError:
        return None
    found = next((v[len(prefix):] for v in variables if v.startswith(prefix)), None)
    return found.decode(errors="replace") if found is not None else None


def leftover_commands(holder: Holder) -> list[int]:
    """Processes still running that `holder` started, in its session (not daemons)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        token, _, session = (_marker(int(entry)) or "").rpartition("@")
        if token != holder.token():
            continue
        try:
            if str(os.getsid(int(entry))) == session:
                pids.append(int(entry))
        except OSError:
            continue
    return pids


def end_leftover_commands(holder: Holder, timeout: float = 30) -> list[int]:
    """SIGKILL what a dead holder left running and wait until it is gone; returns the pids."""
    ended = leftover_commands(holder)
    for pid in ended:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(TimeoutError):
        wait_for(lambda: not leftover_commands(holder), timeout=timeout,
                 what="the commands to end", max_interval=0.1)
    return ended
