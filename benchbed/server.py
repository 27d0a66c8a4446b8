"""Server: where a provider's machine is and how to reach it (SSH, or directly for localhost)."""

import contextvars
import importlib
import logging
import os
import shlex
import subprocess
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

from benchbed import masking
from benchbed.errors import SSHError

if TYPE_CHECKING:
    from benchbed.deployment import Deployment

LOCAL_HOSTS = frozenset({"localhost"})
_SHELL_LOCK = threading.Lock()
STDERR_TAIL = 600


@dataclass
class CommandResult:
    exit_code: int
    stdout: str
    stderr: str


# A remote command: a fixed string with no values in it, or an argument list that
# `command_line` quotes (the one place where a command string is made from values).
Command = str | Sequence[str]


def command_line(command: Command) -> str:
    """The shell command line for `command`; every argument of a list is shell-quoted."""
    return command if isinstance(command, str) else shlex.join(command)


class Shell(Protocol):
    """What engines and providers need from a server: run commands, copy files, wait."""

    def run(self, command: Command, *, timeout: float = 600, check: bool = True,
            stdin: str | None = None) -> CommandResult: ...

    def put_file(self, content: str | bytes, remote_path: str, mode: int = 0o644) -> None: ...

    def stream(self, command: Command, *, stdin: BinaryIO | None = None,
               stdout: BinaryIO | None = None, timeout: float = 600) -> CommandResult: ...

    def wait_ready(self, timeout: float = 120) -> None: ...

    def close(self) -> None: ...


@cache
def script_text(name: str) -> str:
    """A shell script of the package (benchbed/scripts/NAME), checked by `make shellcheck`."""
    from importlib import resources  # only commands that run a script on a server pay for it

    return resources.files("benchbed").joinpath("scripts", name).read_text()


def script_command(name: str, args: Sequence[str]) -> list[str]:
    """The package's script NAME as `sh -c SCRIPT NAME ARGS`, for a command whose stdin is
    its data (a stream), not its text; values still reach it only as arguments."""
    return ["sh", "-c", script_text(name), name, *args]


def run_script(shell: Shell, name: str, args: Sequence[str], *, timeout: float = 600,
               check: bool = True) -> CommandResult:
    """Run the package's script NAME on the server as `sh -s -- ARGS`, the script on stdin.

    Values reach the script only as positional arguments, never inside its text.
    """
    return shell.run(["sh", "-s", "--", *args], stdin=script_text(name), timeout=timeout,
                     check=check)


def pipe(source: Shell, source_command: Command, target: Shell, target_command: Command, *,
         timeout: float) -> None:
    """`source_command`'s stdout into `target_command`'s stdin as it comes, through this
    machine: two hosts need no way to each other, nor keys for each other. A target that
    fails closes the pipe, which stops the source; its error leads, the source's follows."""
    read_end, write_end = os.pipe()
    reader, writer = os.fdopen(read_end, "rb"), os.fdopen(write_end, "wb")

    def send() -> None:
        try:
            source.stream(source_command, stdout=writer, timeout=timeout)
        finally:
            writer.close()

    received: SSHError | OSError | None = None
    with ThreadPoolExecutor(max_workers=1) as pool:
        sending = pool.submit(contextvars.copy_context().run, send)
        try:
            target.stream(target_command, stdin=reader, timeout=timeout)
        except (SSHError, OSError) as error:
            received = error
        finally:
            reader.close()
        failed = sending.exception()
    if received is not None:
        raise SSHError(str(received) + (f" (sending: {failed})" if failed else "")) from None
    if failed is not None:
        raise SSHError(f"sending: {failed}") from None


def command_failed(where: str, command: str, result: CommandResult) -> SSHError:
    output = result.stderr.strip() or result.stdout.strip()
    tail = masking.scrub(output[-STDERR_TAIL:])
    first = masking.scrub(command.strip().splitlines()[0] if command.strip() else command)
    return SSHError(f"{where}: command '{first[:120]}' exited {result.exit_code}: {tail}")


@dataclass
class Server:
    """A machine given by a provider; `to_dict`/`from_dict` keep it in endpoints and the ledger."""

    host: str
    port: int = 22
    user: str = "root"
    key: str | None = None
    password: str | None = None
    name: str | None = None
    # what the provider wants users to know about the server (e.g. how it is virtualized)
    facts: dict[str, Any] = field(default_factory=dict)
    # the server (as `to_dict` gives it) that SSH goes through when this machine has no route
    # to `host`: a container on another LXC host is reached through that host
    jump: dict[str, Any] | None = None
    deployment: "Deployment | None" = field(default=None, repr=False, compare=False)
    _shell: "Shell | None" = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        masking.register(self.password)

    @property
    def is_local(self) -> bool:
        return self.host in LOCAL_HOSTS

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def ssh(self) -> "Shell":
        """The handle to run commands on the server (paramiko, or a local shell): one per
        server, also when threads ask for it at once (each would open a connection)."""
        with _SHELL_LOCK:
            if self._shell is None:
                if self.is_local:
                    self._shell = LocalShell(self)
                else:
                    from benchbed.ssh import SSHClient

                    self._shell = SSHClient(self)
            return self._shell

    def to_dict(self) -> dict[str, Any]:
        data = {"host": self.host, "port": self.port, "user": self.user, "key": self.key,
                "password": self.password, "name": self.name, "facts": self.facts or None,
                "jump": self.jump}
        return {key: value for key, value in data.items() if value is not None}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], deployment: "Deployment | None" = None
                  ) -> "Server":
        return cls(host=data["host"], port=int(data.get("port", 22)),
                   user=data.get("user", "root"), key=data.get("key"),
                   password=data.get("password"), name=data.get("name"),
                   facts=dict(data.get("facts") or {}),
                   jump=dict(data["jump"]) if data.get("jump") else None, deployment=deployment)

    def close(self) -> None:
        if self._shell is not None:
            self._shell.close()
            self._shell = None


class LocalShell:
    """The same interface as SSHClient for `localhost`: commands run directly."""

    def __init__(self, server: Server) -> None:
        self.server = server

    def run(self, command: Command, *, timeout: float = 600, check: bool = True,
            stdin: str | None = None) -> CommandResult:
        command = command_line(command)
        logger = (self.server.deployment.logger if self.server.deployment
                  else logging.getLogger("benchbed.local"))
        logger.debug("localhost$ %s", command)
        try:
            completed = subprocess.run(["/bin/sh", "-c", command], input=stdin,
                                       capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise SSHError(f"localhost: command timed out after {timeout:.0f}s: "
                           f"{masking.scrub(command)[:120]}") from None
        for label, text in (("out", completed.stdout), ("err", completed.stderr)):
            for line in text.splitlines():
                logger.debug("localhost %s: %s", label, line)
        result = CommandResult(completed.returncode, completed.stdout, completed.stderr)
        if check and completed.returncode != 0:
            raise command_failed("localhost", command, result)
        return result

    def stream(self, command: Command, *, stdin: BinaryIO | None = None,
               stdout: BinaryIO | None = None, timeout: float = 600) -> CommandResult:
        """A command whose stdin is read from `stdin` or whose stdout goes to `stdout` as
        it comes (bytes too many to hold); the result carries its stderr only."""
        command = command_line(command)
        try:
            process = subprocess.Popen(["/bin/sh", "-c", command],
                                       stdin=stdin or subprocess.DEVNULL,
                                       stdout=stdout or subprocess.DEVNULL,
                                       stderr=subprocess.PIPE)
            _, errors = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise SSHError(f"localhost: command timed out after {timeout:.0f}s: "
                           f"{masking.scrub(command)[:120]}") from None
        result = CommandResult(process.returncode, "", errors.decode(errors="replace"))
        if process.returncode != 0:
            raise command_failed("localhost", command, result)
        return result

    def put_file(self, content: str | bytes, remote_path: str, mode: int = 0o644) -> None:
        path = Path(remote_path)
        data = content.encode() if isinstance(content, str) else content
        path.touch(mode=mode, exist_ok=True)
        path.chmod(mode)
        path.write_bytes(data)

    def wait_ready(self, timeout: float = 120) -> None:
        return None

    def close(self) -> None:
        return None


def warm_up_ssh() -> None:
    """Import the SSH stack (paramiko, a costly import) in the background while servers boot."""
    threading.Thread(target=importlib.import_module, args=("benchbed.ssh",), daemon=True,
                     name="benchbed-ssh-import").start()

