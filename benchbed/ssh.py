"""SSH to servers with paramiko: retries, timeouts, streamed logging, host keys checked.

Kept apart from `benchbed.server` because importing paramiko is one of the costliest imports
(docs/benchmarks.md), which a run that only drives localhost should not pay;
`server.warm_up_ssh` pays it while servers boot.
"""

import contextvars
import io
import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import paramiko

from benchbed import masking
from benchbed.errors import ConnectionLostError, SSHError, UnreachableError
from benchbed.retry import retry
from benchbed.server import Command, CommandResult, Server, command_failed, command_line

# The bounds of telling a dead server from a slow one (docs/user-guide.md, "destroy").
# One attempt: TCP connect, SSH banner and authentication, each within this many seconds.
ATTEMPT_TIMEOUT = 10.0
# A server that should be up (a command, a file, a cleanup) is retried this long before it
# is given up as unreachable; `wait_ready` waits as long as its caller says (a boot).
REACH_TIMEOUT = 30.0
# Once connected: an SSH keepalive after this many idle seconds, and the kernel drops the
# connection when what was sent is not acknowledged within TCP_USER_TIMEOUT: a server that
# stops answering mid-command fails the command within about 40 s, not at its own timeout.
KEEPALIVE_INTERVAL = 10
TCP_USER_TIMEOUT_MS = 30_000

# paramiko logs its own errors (`Exception (client): Error reading SSH protocol banner`,
# with tracebacks) through the logging module; with no handler, Python prints them on
# stderr. Each connection's records go to its deployment's log (`_connect_once`); what is
# logged outside a deployment goes nowhere, never to the terminal.
_library_logger = logging.getLogger("paramiko")
_library_logger.addHandler(logging.NullHandler())
_library_logger.propagate = False


def _library_channel(deployment_logger: logging.Logger) -> logging.Logger:
    """The logger a deployment's paramiko records go to: its log file (through the parent),
    at INFO and above. Its own NullHandler keeps a record that comes after the deployment's
    log was closed (a transport thread's last words) from Python's stderr fallback."""
    channel = deployment_logger.getChild("paramiko")
    if not channel.handlers:
        channel.addHandler(logging.NullHandler())
        channel.setLevel(logging.INFO)
    return channel

# A command silent this long makes us ask whether the server is still there, and the
# server has this long to answer: a stopped sshd or host, or a cut link, keeps the TCP
# connection open (or retransmits for 15 min), so the command's own timeout (up to 30 min
# for an install) would be the only bound.
ALIVE_INTERVAL = 15.0
ALIVE_TIMEOUT = 15.0
# sshd refuses a session beyond MaxSessions (OpenSSH's default: 10) open at once on one
# connection ("Connect failed"), and one host's connection carries every command of the
# deployment's threads on it (forty container clones at once): commands and file copies
# share all but one of them, the liveness probe has the last.
MAX_SESSIONS = 10
# what a streamed command's data moves by (an image: hundreds of MB)
STREAM_CHUNK = 1 << 20


class TrustOnFirstUse(paramiko.MissingHostKeyPolicy):
    """Record a server's host key with the deployment on first contact; refuse a changed one."""

    def __init__(self, server: Server) -> None:
        self.server = server

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str,
                         key: paramiko.PKey) -> None:
        from benchbed import host_keys

        host_keys.verify_or_record(self.server.deployment, self.server.address, key)


def _refused(client: paramiko.SSHClient, error: paramiko.AuthenticationException) -> bool:
    """The server answered and turned the credentials down (its connection still up), as
    opposed to paramiko's `AuthenticationException` for a connection that closed or timed
    out mid-authentication."""
    if isinstance(error, paramiko.BadAuthenticationType):
        return True
    transport = client.get_transport()
    return transport is not None and transport.is_active() and "timeout" not in str(error)


class Deadline:
    """A bound on one part of a deployment (one host's nodes) for the hang keepalives cannot
    see: a host that answers while its commands never end. Every SSH connection made or used
    inside `with deadline:` (and in the threads `run_parallel` starts from there) is
    tracked; when the time is up they are all closed and none opens again, so the part fails
    at once wherever it waits on a server, with an `UnreachableError` naming `host` and
    `reason`. Commands already started on the servers are not stopped."""

    def __init__(self, seconds: float, host: str, reason: str) -> None:
        self.host = host
        self.reason = reason
        self.expired = False
        self._clients: set[SSHClient] = set()
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._token: contextvars.Token[Deadline | None] | None = None

    def __enter__(self) -> "Deadline":
        self._token = _current_deadline.set(self)
        self._timer.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._timer.cancel()
        if self._token is not None:
            _current_deadline.reset(self._token)

    def track(self, client: "SSHClient") -> None:
        """Close `client` when the time is up; refuse it once the time is up."""
        with self._lock:
            if self.expired:
                raise self.error(client.server.address)
            self._clients.add(client)

    def error(self, where: str) -> UnreachableError:
        return UnreachableError(f"{where}: {self.reason}", self.host)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            clients = list(self._clients)
        for client in clients:
            client.close()


_current_deadline: contextvars.ContextVar[Deadline | None] = \
    contextvars.ContextVar("benchbed_ssh_deadline", default=None)


def current_deadline() -> Deadline | None:
    """The deadline the calling code runs under, if any."""
    return _current_deadline.get()


class SSHClient:
    """paramiko with retries, timeouts, streamed logging and clear errors."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self._client: paramiko.SSHClient | None = None
        self._lock = threading.Lock()
        self._sessions = threading.BoundedSemaphore(MAX_SESSIONS - 1)
        # one liveness probe at a time; an answer serves every command for ALIVE_INTERVAL
        self._probe_lock = threading.Lock()
        self._answered_at = 0.0
        # the connection to the jump server, when the server is reached through one
        self._jump: Server | None = None

    @property
    def _logger(self) -> logging.Logger:
        if self.server.deployment is not None:
            return self.server.deployment.logger
        return logging.getLogger("benchbed.ssh")

    def _connect_once(self, timeout: float) -> paramiko.SSHClient:
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(TrustOnFirstUse(self.server))
        if self.server.deployment is not None:
            client.set_log_channel(_library_channel(self._logger).name)
        pkey = _load_key(self.server.key) if self.server.key else None
        sock = self._open_socket(timeout)
        try:
            client.connect(self.server.host, port=self.server.port, username=self.server.user,
                           pkey=pkey, password=self.server.password, timeout=timeout,
                           banner_timeout=timeout, auth_timeout=timeout, sock=sock,
                           allow_agent=False, look_for_keys=False)
            transport = client.get_transport()
            if transport is not None:
                transport.set_keepalive(KEEPALIVE_INTERVAL)
        except BaseException as error:
            failure = self._authentication_failure(client, error)
            client.close()
            sock.close()
            if failure is None:
                raise
            raise failure from None
        return client

    def _authentication_failure(self, client: paramiko.SSHClient, error: BaseException
                                ) -> Exception | None:
        """What an authentication failure means (None for any other error): a refused key or
        password fails at once; an EOF or a timeout during authentication, which paramiko
        reports the same way (a booting server's sshd restarting, or a loaded one), is
        retried."""
        if not isinstance(error, paramiko.AuthenticationException):
            return None
        if _refused(client, error):
            return SSHError(f"{self._where}: authentication failed (wrong key or password)")
        self._logger.info("%s: authentication did not finish (%s); retrying",
                          self.server.address, error)
        return paramiko.SSHException(f"authentication did not finish: {error}")

    @property
    def _where(self) -> str:
        return f"{self.server.user}@{self.server.address}"

    def _open_socket(self, timeout: float) -> socket.socket | paramiko.Channel:
        """A TCP connection to the server's SSH port: direct, or a `direct-tcpip` channel
        of the jump server's own connection (its keepalives cover this one too)."""
        if self.server.jump is not None:
            if self._jump is None:
                self._jump = Server.from_dict(self.server.jump, deployment=self.server.deployment)
            jump_client = self._jump.ssh
            if not isinstance(jump_client, SSHClient):
                raise SSHError(f"{self.server.address}: the jump server "
                               f"{self._jump.address} is this machine; connect directly")
            transport = jump_client.connect().get_transport()
            if transport is None:
                raise paramiko.SSHException(f"the connection to {self._jump.address} closed")
            return transport.open_channel("direct-tcpip", (self.server.host, self.server.port),
                                          ("127.0.0.1", 0), timeout=timeout)
        sock = socket.create_connection((self.server.host, self.server.port), timeout=timeout)
        # SSH sends many small packets back and forth; with Nagle's algorithm each waits for
        # the peer's delayed ACK, which tripled the handshake and every channel open
        # (docs/benchmarks.md).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, TCP_USER_TIMEOUT_MS)
        return sock

    def connect(self, timeout: float = REACH_TIMEOUT) -> paramiko.SSHClient:
        """Connect, retrying unreachable hosts with backoff; refused credentials fail at once
        (an `SSHError`, which `retry` passes through, as it does `HostKeyChangedError`)."""
        deadline = current_deadline()
        if deadline is not None:
            deadline.track(self)
        with self._lock:
            transport = self._client.get_transport() if self._client is not None else None
            if self._client is not None and transport is not None and transport.is_active():
                return self._client
            try:
                self._client = retry(lambda: self._connect_once(min(timeout, ATTEMPT_TIMEOUT)),
                                     timeout=timeout,
                                     retry_on=(OSError, EOFError, paramiko.SSHException),
                                     initial_delay=0.1, max_delay=2.0)
            except (OSError, EOFError, paramiko.SSHException) as error:
                raise UnreachableError(f"{self._where}: unreachable after {timeout:.0f}s: "
                                       f"{masking.scrub(str(error)) or type(error).__name__}",
                                       self.server.host) from None
            return self._client

    def wait_ready(self, timeout: float = 120) -> None:
        self.connect(timeout=timeout)

    def run(self, command: Command, *, timeout: float = 600, check: bool = True,
            stdin: str | None = None) -> CommandResult:
        """Run a command; stdout/stderr stream into the deployment log as they arrive."""
        command = command_line(command)
        self._logger.debug("%s$ %s", self._where, command)
        with self._session(command, timeout, "command timed out after") as channel:
            if stdin is not None:
                channel.sendall(stdin.encode())
            channel.shutdown_write()
            stdout, stderr = self._collect(channel, self._where, timeout)
            exit_code = channel.recv_exit_status()
            if exit_code == -1 and not channel.get_transport().is_active():
                # no exit status: the connection ended under the command (its sshd killed,
                # keepalives unanswered), which did not end
                raise paramiko.SSHException("the connection closed before the command ended")
        result = CommandResult(exit_code, stdout, stderr)
        if check and exit_code != 0:
            raise command_failed(self._where, command, result)
        return result

    def stream(self, command: Command, *, stdin: BinaryIO | None = None,
               stdout: BinaryIO | None = None, timeout: float = 600) -> CommandResult:
        """A command whose stdin is read from `stdin` or whose stdout goes to `stdout` as
        it comes (bytes too many to hold: an image), `timeout` the longest silence; the
        result carries its stderr only."""
        command = command_line(command)
        self._logger.debug("%s$ %s (streamed)", self._where, command)
        with self._session(command, timeout, "streamed command silent for") as channel:
            if stdin is not None:
                while chunk := stdin.read(STREAM_CHUNK):
                    channel.sendall(chunk)
            channel.shutdown_write()
            if stdout is not None:
                while chunk := channel.recv(STREAM_CHUNK):
                    stdout.write(chunk)
            errors = channel.makefile_stderr("rb").read().decode(errors="replace")
            exit_code = channel.recv_exit_status()
        result = CommandResult(exit_code, "", errors)
        if exit_code != 0:
            raise command_failed(self._where, command, result)
        return result

    @contextmanager
    def _session(self, command: str, timeout: float, timed_out: str
                 ) -> Iterator[paramiko.Channel]:
        """A session running `command`, one of the connection's MAX_SESSIONS, closed
        whatever happens (one left open, a command timed out, would hold its slot);
        paramiko's failures in it become benchbed's errors."""
        where = self._where
        with self._sessions:
            client = self.connect()
            channel: paramiko.Channel | None = None
            try:
                transport = client.get_transport()
                if transport is None:
                    raise paramiko.SSHException("the SSH connection is closed")
                channel = transport.open_session(timeout=30)
                channel.settimeout(timeout)
                channel.exec_command(command)
                yield channel
            except TimeoutError:
                raise SSHError(f"{where}: {timed_out} {timeout:.0f}s: "
                               f"{masking.scrub(command)[:120]}") from None
            except (paramiko.SSHException, OSError, EOFError) as error:
                deadline = current_deadline()
                if deadline is not None and deadline.expired:
                    raise deadline.error(self.server.address) from None
                raise ConnectionLostError(f"{where}: connection lost: "
                                          f"{masking.scrub(str(error)) or type(error).__name__}",
                                          self.server.host) from None
            finally:
                if channel is not None:
                    channel.close()

    def _collect(self, channel: paramiko.Channel, where: str, timeout: float
                 ) -> tuple[str, str]:
        out, err = io.StringIO(), io.StringIO()
        deadline = time.monotonic() + timeout
        heard = time.monotonic()
        streams = ((channel.recv_ready, channel.recv, out, "out"),
                   (channel.recv_stderr_ready, channel.recv_stderr, err, "err"))
        while True:
            idle = True
            for ready, receive, buffer, label in streams:
                if ready():
                    idle = False
                    heard = time.monotonic()
                    chunk = receive(65536).decode(errors="replace")
                    buffer.write(chunk)
                    for line in chunk.splitlines():
                        self._logger.debug("%s %s: %s", where, label, line)
            if idle:
                # sshd may send the exit status before the last of the output: the end is
                # the channel's EOF (or close), with nothing left to read
                if channel.exit_status_ready() and (channel.eof_received or channel.closed) \
                        and not channel.recv_ready() and not channel.recv_stderr_ready():
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError
                if time.monotonic() - heard > ALIVE_INTERVAL:
                    self._check_alive(channel, where)
                    heard = time.monotonic()
                time.sleep(0.01)
        return out.getvalue(), err.getvalue()

    def _check_alive(self, channel: paramiko.Channel, where: str) -> None:
        """Open and close a channel: a server that still runs confirms it at once, whatever
        its command is doing. One that does not within ALIVE_TIMEOUT is given up, and the
        connection with it."""
        transport = channel.get_transport()
        with self._probe_lock:
            if time.monotonic() - self._answered_at < ALIVE_INTERVAL:
                return
            try:
                transport.open_session(timeout=ALIVE_TIMEOUT).close()
            except paramiko.SSHException:
                if not transport.is_active():
                    raise
                self.close()
                raise ConnectionLostError(f"{where}: the server stopped answering (no reply "
                                          f"within {ALIVE_TIMEOUT:.0f}s after "
                                          f"{ALIVE_INTERVAL:.0f}s of silence)",
                                          self.server.host) from None
            self._answered_at = time.monotonic()

    def put_file(self, content: str | bytes, remote_path: str, mode: int = 0o644) -> None:
        data = content.encode() if isinstance(content, str) else content
        with self._sessions:
            sftp = self.connect().open_sftp()
            try:
                with sftp.open(remote_path, "wb") as remote:
                    sftp.chmod(remote_path, mode)
                    remote.write(data)
            except OSError as error:
                raise SSHError(f"{self.server.address}: cannot write {remote_path}: "
                               f"{error}") from None
            finally:
                sftp.close()

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None
            if self._jump is not None:
                self._jump.close()
                self._jump = None


def _load_key(key: str) -> paramiko.PKey:
    """A private key given as a file path or as the key text itself."""
    text = key if key.lstrip().startswith("-----BEGIN") else None
    path = None if text else Path(key).expanduser()
    if path is not None and not path.exists():
        raise SSHError(f"private key file {path} does not exist")
    for key_class in (paramiko.Ed25519Key, paramiko.RSAKey, paramiko.ECDSAKey):
        try:
            if text:
                return key_class.from_private_key(io.StringIO(text))
            return key_class.from_private_key_file(str(path))
        except paramiko.SSHException:
            continue
    raise SSHError(f"cannot read private key {path or '(inline)'}")
