"""LxcEngine over several hosts when one stops answering while its nodes deploy: with
`tolerate` the deployment runs with the others and records the lost one; without, the
create fails in one line naming it. A host that still answers is not lost: its error stands,
unless its part outlives `host_deadline`.

No host exists: each host's part (LxcEngine._deploy_host) and the hosts' shells are
stand-ins.
"""

import dataclasses
import threading
import time
from pathlib import Path
from typing import Any

import paramiko
import pytest

from benchbed import api
from benchbed.deployment import Deployment
from benchbed.engines import lxc
from benchbed.errors import (
    BenchbedError,
    ConfigError,
    ConnectionLostError,
    UnreachableError,
    unreachable_hosts,
)
from benchbed.server import CommandResult, Server
from benchbed.ssh import SSHClient, current_deadline

HOSTS = ["10.254.230.1", "10.254.230.2", "10.254.230.3"]
CLOUD = {"auth_url": "http://192.0.2.1:5000/v3", "admin": {"password": "p"},
         "region_name": "RegionOne"}


def config(tolerate: int) -> dict[str, Any]:
    return {"type": "LxcEngine", "container_name": "bblost", "nodes_per_server": 2,
            "tolerate": tolerate,
            "provider": {"type": "ExistingServers",
                         "credentials": [{"host": host, "user": "root"} for host in HOSTS]},
            "engine": {"type": "DebianEngine", "services": ["nova-compute"]}}


class Shell:
    """A host's SSH: the dead ones do not answer."""

    def __init__(self, host: str, dead: set[str]) -> None:
        self.host, self.dead = host, dead

    def run(self, command: Any, *, timeout: float = 600, check: bool = True,
            stdin: str | None = None) -> CommandResult:
        if self.host in self.dead:
            raise UnreachableError(f"root@{self.host}:22: unreachable after 30s", self.host)
        return CommandResult(0, "", "")

    def close(self) -> None:
        pass


class HungConnection:
    """A host's connection whose command never ends: only closing it ends the wait, as
    SSHClient's own wait ends when its connection is closed."""

    def __init__(self, host: str) -> None:
        self.server = Server(host=host, user="root")
        self.closed = threading.Event()

    def close(self) -> None:
        self.closed.set()

    def run_forever(self) -> None:
        deadline = current_deadline()
        assert deadline is not None, "a host's part runs under its deadline"
        deadline.track(self)  # type: ignore[arg-type]
        assert self.closed.wait(30), "the deadline never closed the connection"
        raise deadline.error(self.server.address)


def deploy(monkeypatch: pytest.MonkeyPatch, tolerate: int, dead: set[str],
           failing: dict[str, BaseException], hung: frozenset[str] = frozenset(),
           host_deadline: int = 3600) -> dict[str, Any]:
    """LxcEngine.deploy with each host's part faked: a host in `failing` raises its error,
    one in `hung` waits on a command that never ends."""
    monkeypatch.setattr(Server, "ssh", property(lambda server: Shell(server.host, dead)))

    def part(engine: lxc.LxcEngine, index: int, *_: Any) -> dict[str, Any]:
        host = HOSTS[index]
        if host in failing:
            raise failing[host]
        if host in hung:
            HungConnection(host).run_forever()
        names = [f"bblost-{index}-{n}" for n in range(2)]
        return {"openstack": CLOUD, "servers": [{"host": name} for name in names],
                "template": f"bblost-t{index}", "compute_hosts": names}

    monkeypatch.setattr(lxc.LxcEngine, "_deploy_host", part)
    deployment = Deployment.create("lost", config(tolerate))
    node = lxc.LxcEngine(deployment, config(tolerate), "nodes[0]")
    node.config = dataclasses.replace(node.config, host_deadline=host_deadline)
    return node.deploy()


def lost_mid_command(host: str) -> BenchbedError:
    """What a step on a container of a host that died says: its connection was lost (the
    container's, not the host's own address)."""
    try:
        raise ConnectionLostError("root@10.254.231.7:22: connection lost: EOF", "10.254.231.7")
    except ConnectionLostError:
        try:
            raise BenchbedError(f"root@10.254.231.7:22: step 'start nova-compute' failed on "
                                f"{host}'s container")
        except BenchbedError as wrapped:
            return wrapped


def test_a_lost_host_tolerated_leaves_the_others_nodes_and_is_recorded(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    endpoints = deploy(monkeypatch, 1, {HOSTS[1]}, {HOSTS[1]: lost_mid_command(HOSTS[1])})
    assert endpoints["compute_hosts"] == ["bblost-0-0", "bblost-0-1", "bblost-2-0",
                                          "bblost-2-1"]
    assert endpoints["lost_hosts"] == [{"host": HOSTS[1], "error": str(
        lost_mid_command(HOSTS[1]))}]
    assert endpoints["templates"] == ["bblost-t0", "bblost-t2"]


def test_more_lost_hosts_than_tolerated_fail_in_one_line_naming_them(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dead = {HOSTS[0], HOSTS[2]}
    with pytest.raises(BenchbedError) as failed:
        deploy(monkeypatch, 1, dead, {host: lost_mid_command(host) for host in dead})
    message = str(failed.value)
    assert "\n" not in message
    assert message.startswith("2 host(s) lost while their nodes deployed, 1 tolerated "
                              "(`tolerate`): ")
    assert f"{HOSTS[0]}: " in message and f"{HOSTS[2]}: " in message
    assert HOSTS[1] not in message


def test_with_nothing_tolerated_one_lost_host_fails_the_create(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(BenchbedError, match=rf"^1 host\(s\) lost while their nodes deployed, "
                                            rf"0 tolerated \(`tolerate`\): {HOSTS[2]}: "):
        deploy(monkeypatch, 0, {HOSTS[2]}, {HOSTS[2]: lost_mid_command(HOSTS[2])})


def test_a_host_whose_part_outlives_host_deadline_is_lost_and_its_connections_closed(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    started = time.monotonic()
    endpoints = deploy(monkeypatch, 1, set(), {}, hung=frozenset({HOSTS[0]}), host_deadline=1)
    assert time.monotonic() - started < 10
    assert endpoints["lost_hosts"] == [{"host": HOSTS[0], "error": "its nodes did not deploy "
                                                                   "within host_deadline (1 s)"}]
    assert endpoints["templates"] == ["bblost-t1", "bblost-t2"]


def test_with_nothing_tolerated_a_host_past_its_deadline_fails_the_create_in_one_line(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(BenchbedError) as failed:
        deploy(monkeypatch, 0, set(), {}, hung=frozenset({HOSTS[2]}), host_deadline=1)
    assert str(failed.value) == (f"1 host(s) lost while their nodes deployed, 0 tolerated "
                                 f"(`tolerate`): {HOSTS[2]}: its nodes did not deploy within "
                                 f"host_deadline (1 s)")


def test_a_host_that_still_answers_is_not_lost_and_its_error_stands(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(BenchbedError, match="start nova-compute' failed"):
        deploy(monkeypatch, 2, set(), {HOSTS[1]: lost_mid_command(HOSTS[1])})


def test_an_error_that_is_not_a_lost_connection_is_never_tolerated(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(BenchbedError, match=r"stack\.sh exited 1"):
        deploy(monkeypatch, 2, {HOSTS[1]},
               {HOSTS[1]: BenchbedError("step 'stack.sh' failed: stack.sh exited 1")})


@pytest.mark.parametrize(("tolerate", "message"), [
    (3, "3 lost host(s) tolerated of 3: at least one host must remain"),
    (-1, ""),
])
def test_a_tolerance_that_leaves_no_host_is_refused(tolerate: int, message: str) -> None:
    multihost = {"type": "MultihostEngine",
                 "controller": {"type": "ServersEngine", "provider": {
                     "type": "ExistingServers", "credentials": [{"host": "10.0.0.1",
                                                                 "user": "root"}]}},
                 "nodes": [config(tolerate)]}
    with pytest.raises(ConfigError) as refused:
        api.validate(multihost)
    assert refused.value.path == "nodes[0].tolerate"
    assert message in str(refused.value)


def test_check_names_the_lost_hosts_and_asks_for_the_survivors_computes_only(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from benchbed.engines import keystone_check
    from benchbed.engines.base import CheckResult

    asked: list[list[str]] = []

    def check_computes(cloud: dict[str, Any], hosts: list[str]) -> list[CheckResult]:
        asked.append(hosts)
        return [CheckResult("compute services", True, f"{len(hosts)}/{len(hosts)} up")]

    monkeypatch.setattr(keystone_check, "check_computes", check_computes)
    deployment = Deployment.create("lost", config(1))
    node = lxc.LxcEngine(deployment, config(1), "nodes[0]")
    node.endpoints = {"openstack": CLOUD, "compute_hosts": ["bblost-0-0", "bblost-2-0"],
                      "lost_hosts": [{"host": HOSTS[1], "error": "connection lost"}]}
    results = node.check()
    assert [(r.target, r.ok, r.detail) for r in results] == [
        ("lost hosts", True, f"{HOSTS[1]} (tolerated: 1)"),
        ("compute services", True, "2/2 up")]
    assert asked == [["bblost-0-0", "bblost-2-0"]]


def test_a_server_silent_mid_command_is_a_lost_connection_naming_its_host() -> None:
    """The keepalive that goes unanswered (a host cut off while a command runs) is told as
    ConnectionLostError, which is how LxcEngine finds its lost hosts."""
    class Transport:
        def is_active(self) -> bool:
            return True

        def open_session(self, timeout: float) -> None:
            raise paramiko.SSHException("Timeout opening channel.")

    class Channel:
        def get_transport(self) -> Transport:
            return Transport()

    client = SSHClient(Server(host=HOSTS[1], user="root"))
    with pytest.raises(ConnectionLostError) as lost:
        client._check_alive(Channel(), f"root@{HOSTS[1]}:22")  # type: ignore[arg-type]
    assert lost.value.host == HOSTS[1] and "stopped answering" in str(lost.value)
    assert unreachable_hosts(lost.value) == {HOSTS[1]}
