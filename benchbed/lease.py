"""Who holds a deployment: host, pid and process start time, so a reused pid is not mistaken."""

import os
import socket
from dataclasses import dataclass


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
