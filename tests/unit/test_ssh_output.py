"""A command's output is read to the channel's end, not to its exit status: sshd may send
the exit status before the last of the output (seen under load: `hostname` read as empty, so
a node waited 300 s for a compute host named '')."""

import time

from benchbed.server import Server
from benchbed.ssh import SSHClient


class LateOutputChannel:
    """The exit status at once, the output 0.1 s later, the EOF 0.2 s later."""

    closed = False

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.taken = False

    def _age(self) -> float:
        return time.monotonic() - self.started

    def exit_status_ready(self) -> bool:
        return True

    @property
    def eof_received(self) -> bool:
        return self._age() > 0.2

    def recv_ready(self) -> bool:
        return self._age() > 0.1 and not self.taken

    def recv(self, size: int) -> bytes:
        self.taken = True
        return b"bbso-n-1\n"

    def recv_stderr_ready(self) -> bool:
        return False

    def recv_stderr(self, size: int) -> bytes:
        raise AssertionError("nothing on stderr")


def test_output_that_comes_after_the_exit_status_is_kept() -> None:
    client = SSHClient(Server(host="10.254.230.9"))
    out, err = client._collect(LateOutputChannel(), "root@10.254.230.9:22",  # type: ignore[arg-type]
                               timeout=10)
    assert (out, err) == ("bbso-n-1\n", "")
