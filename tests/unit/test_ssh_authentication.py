"""Telling a refused key from a connection that ended mid-authentication, against paramiko's
own server: CI saw a booting container's sshd drop a connection while authenticating, which
paramiko reports as an `AuthenticationException`, and benchbed gave up with "wrong key"."""

import io
import socket
import threading
from collections.abc import Callable, Iterator

import paramiko
import pytest

from benchbed.errors import SSHError, UnreachableError
from benchbed.server import Server
from benchbed.ssh import SSHClient


class _Interface(paramiko.ServerInterface):
    """Accepts the one user key, after `drops` connections were cut during authentication."""

    def __init__(self, lab: "_Lab", transport: paramiko.Transport) -> None:
        self.lab, self.transport = lab, transport

    def get_allowed_auths(self, username: str) -> str:
        return "publickey"

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        with self.lab.lock:
            self.lab.attempts += 1
            if self.lab.drops > 0:
                self.lab.drops -= 1
                self.transport.close()
                return paramiko.common.AUTH_FAILED
        if key.get_base64() == self.lab.accepted.get_base64():
            return paramiko.common.AUTH_SUCCESSFUL
        return paramiko.common.AUTH_FAILED


class _Lab:
    """An SSH server on loopback in a thread; one transport per accepted connection."""

    def __init__(self, accepted: paramiko.PKey, drops: int) -> None:
        self.accepted, self.drops, self.attempts = accepted, drops, 0
        self.lock = threading.Lock()
        self.host_key = paramiko.RSAKey.generate(2048)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.transports: list[paramiko.Transport] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            transport = paramiko.Transport(connection)
            transport.add_server_key(self.host_key)
            self.transports.append(transport)
            transport.start_server(server=_Interface(self, transport))

    def close(self) -> None:
        self.listener.close()
        for transport in self.transports:
            transport.close()


def _key_text(key: paramiko.PKey) -> str:
    text = io.StringIO()
    key.write_private_key(text)
    return text.getvalue()


@pytest.fixture
def user_key() -> paramiko.RSAKey:
    return paramiko.RSAKey.generate(2048)


@pytest.fixture
def lab_for() -> Iterator[Callable[[paramiko.PKey, int], _Lab]]:
    """Servers made by the test, closed after it, also when it fails."""
    labs: list[_Lab] = []

    def make(accepted: paramiko.PKey, drops: int) -> _Lab:
        labs.append(_Lab(accepted, drops))
        return labs[-1]

    yield make
    for lab in labs:
        lab.close()


def test_a_connection_cut_during_authentication_is_retried(
        user_key: paramiko.RSAKey, lab_for: Callable[[paramiko.PKey, int], _Lab]) -> None:
    lab = lab_for(user_key, 2)
    server = Server(host="127.0.0.1", port=lab.port, key=_key_text(user_key))
    client = SSHClient(server)
    transport = client.connect(timeout=20).get_transport()
    assert transport is not None and transport.is_authenticated()
    assert lab.attempts == 3
    client.close()


def test_a_refused_key_fails_at_once_as_a_wrong_key(
        user_key: paramiko.RSAKey, lab_for: Callable[[paramiko.PKey, int], _Lab]) -> None:
    lab = lab_for(paramiko.RSAKey.generate(2048), 0)
    server = Server(host="127.0.0.1", port=lab.port, key=_key_text(user_key))
    with pytest.raises(SSHError, match="authentication failed") as raised:
        SSHClient(server).connect(timeout=20)
    assert not isinstance(raised.value, UnreachableError)
    assert lab.attempts == 1


def test_a_server_that_always_cuts_authentication_is_unreachable_not_refused(
        user_key: paramiko.RSAKey, lab_for: Callable[[paramiko.PKey, int], _Lab]) -> None:
    lab = lab_for(user_key, 10**6)
    server = Server(host="127.0.0.1", port=lab.port, key=_key_text(user_key))
    with pytest.raises(UnreachableError, match="authentication did not finish"):
        SSHClient(server).connect(timeout=2)
    assert lab.attempts >= 2
