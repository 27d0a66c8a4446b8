"""Who holds a deployment: host, pid and process start time, so a reused pid is not mistaken.

Also the file locks that make a check and the write it allows one step for concurrent
benchbed processes (a schema migration, a network claim).
"""

import contextlib
import fcntl
import os
import re
import signal
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from benchbed.errors import BenchbedError
from benchbed.retry import wait_for

# host:pid:start time, as `Holder.token` writes it
_TOKEN = re.compile(r"(?P<host>[^\x00-\x1f\x7f]+):(?P<pid>[1-9][0-9]{0,9}):"
                    r"(?P<start>[0-9]{1,20})")


def _start_time(pid: int) -> str | None:
    """Process start time in clock ticks since boot, from /proc; None if the process is gone
    or a zombie (dead, its parent has not reaped it yet: a test runner interrupted with
    Ctrl-C leaves its killed `benchbed` so, and the lease it held must be breakable)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] == "Z" else fields[19]


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
        """The holder a lease names; a token this code did not write (a hand-edited row)
        gives an `UnreadableHolder`, which can be checked by no one and broken with --force."""
        found = _TOKEN.fullmatch(token)
        if found is None:
            return UnreadableHolder("", 0, "", text=token)
        return cls(found["host"], int(found["pid"]), found["start"])

    def token(self) -> str:
        return f"{self.host}:{self.pid}:{self.start_time}"

    def is_alive(self) -> bool | None:
        """True/False on this host; None when the holder runs elsewhere and cannot be checked."""
        if self.host != socket.gethostname():
            return None
        return _start_time(self.pid) == self.start_time

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}"


@dataclass(frozen=True)
class UnreadableHolder(Holder):
    """A lease whose text is not a holder token (edited by hand): no process can be checked
    or ended for it, so only --force breaks it."""

    text: str = ""

    def token(self) -> str:
        return self.text

    def is_alive(self) -> bool | None:
        return None

    def describe(self) -> str:
        shown = self.text if len(self.text) <= 60 else self.text[:57] + "..."
        return f"an unreadable holder {shown!a}"


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


@contextlib.contextmanager
def file_lock(path: Path, what: str, timeout: float = 120) -> Iterator[None]:
    """Hold an exclusive lock on `path` for the block, for `what` (a few words naming it).

    The file is made mode 0600 if missing and never opened through a symlink; it is closed
    on exec, so commands started meanwhile do not keep it. Holders keep it for short steps:
    waiting longer than `timeout` seconds is an error, not a hang.
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as error:
        raise BenchbedError(f"cannot open the lock file {path} for {what}: "
                            f"{error.strerror}") from None
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise BenchbedError(f"timed out after {timeout:.0f}s waiting for {what} "
                                        f"(another benchbed holds {path})") from None
                time.sleep(0.02)
        yield
    finally:
        os.close(fd)
