"""LxcEngine's clones at scale: they boot with nova-compute held back, are checked to be
themselves, then start it a bounded number at a time.

No container exists: the template's engine, the clones' provider, the servers' shells and
Nova are stand-ins that record what LxcEngine asks of them, in order.
"""

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from benchbed.deployment import Deployment
from benchbed.engines import lxc
from benchbed.engines.debian_services import nova_compute
from benchbed.engines.debian_services.catalogue import Catalogue
from benchbed.errors import BenchbedError
from benchbed.scale import StartupGate
from benchbed.server import CommandResult, Server

TEMPLATE = "bbs4-t"
TEMPLATE_ADDRESS = "192.0.2.9"
CONTROLLER = {"host": "192.0.2.1", "name": "controller"}
CLOUD = {"auth_url": "http://192.0.2.1:5000/v3", "admin": {"password": "p"},
         "region_name": "RegionOne"}
CONFIG = {"type": "LxcEngine", "container_name": "bbs4", "nodes_per_server": 5,
          "provider": {"type": "ExistingServers",
                       "credentials": [{"host": "localhost", "user": "root"}]},
          "engine": {"type": "DebianEngine", "services": ["nova-compute"]}}


def identity(name: str, address: str, machine_id: str | None = None,
             key: str | None = None) -> str:
    return (f"{name}\n{machine_id or 'id-' + name}\nssh-ed25519 key-{key or name}\n"
            f"{address}/24\n")


class Recorder:
    """What every stand-in did, in order, and how many starts ran at once at most."""

    def __init__(self, identities: dict[str, str]) -> None:
        self.identities = identities
        self.events: list[tuple[str, str]] = []
        self.running = self.most = 0
        self.lock = threading.Lock()

    def note(self, what: str, where: str) -> None:
        with self.lock:
            self.events.append((what, where))


class FakeShell:
    def __init__(self, recorder: Recorder, host: str) -> None:
        self.recorder, self.host = recorder, host

    def run(self, command: Any, *, timeout: float = 600, check: bool = True,
            stdin: str | None = None) -> CommandResult:
        recorder = self.recorder
        if command == lxc.IDENTITY:
            recorder.note("identify", self.host)
            return CommandResult(0, recorder.identities[self.host], "")
        if command == "nproc":
            return CommandResult(0, "1\n", "")
        if isinstance(command, str) and "systemctl start nova-compute" in command:
            assert nova_compute.RELEASED in command
            with recorder.lock:
                recorder.running += 1
                recorder.most = max(recorder.most, recorder.running)
            recorder.note("start", self.host)
            time.sleep(0.05)
            with recorder.lock:
                recorder.running -= 1
            return CommandResult(0, "", "")
        if isinstance(command, str) and command.startswith("ps "):
            return CommandResult(0, "153600\n", "")
        recorder.note("run", f"{self.host}: {command}")
        return CommandResult(0, "", "")

    def put_file(self, content: str | bytes, remote_path: str, mode: int = 0o644) -> None:
        self.recorder.note("put", f"{self.host}:{remote_path}")

    def wait_ready(self, timeout: float = 120) -> None:
        pass

    def close(self) -> None:
        pass


@pytest.fixture
def recorder(home: Path, monkeypatch: pytest.MonkeyPatch) -> Recorder:
    clones = {f"192.0.2.{10 + i}": f"bbs4-x-{i}" for i in range(5)}
    found = Recorder({TEMPLATE_ADDRESS: identity(TEMPLATE, TEMPLATE_ADDRESS),
                      **{address: identity(name, address) for address, name in clones.items()}})
    monkeypatch.setattr(Server, "ssh", property(lambda server: FakeShell(found, server.host)))

    def deploy() -> dict[str, Any]:
        found.note("deploy template", TEMPLATE)
        return {"openstack": CLOUD, "compute_hosts": [TEMPLATE],
                "servers": [{"host": TEMPLATE_ADDRESS, "name": TEMPLATE}]}

    real_engine = lxc.LxcEngine._engine

    def template(self: lxc.LxcEngine, index: int) -> Any:
        """The real inner DebianEngine (its clone hooks), its deploy faked."""
        inner = real_engine(self, index)
        monkeypatch.setattr(inner, "deploy", deploy)
        return inner

    class Clones:
        def create_servers(self, amount: int, ex_layer_on: str) -> list[Server]:
            assert ex_layer_on == TEMPLATE
            found.note("create clones", str(amount))
            return [Server(host=address, name=name) for address, name in clones.items()]

    monkeypatch.setattr(lxc.LxcEngine, "_engine", template)
    monkeypatch.setattr(lxc.LxcEngine, "_clones", lambda self, index: Clones())
    monkeypatch.setattr(lxc, "stop_container",
                        lambda host, name: found.note("stop template", name))
    monkeypatch.setattr(Catalogue, "__init__", lambda self, url, password: None)
    monkeypatch.setattr(nova_compute, "forget",
                        lambda catalogue, region, host: found.note("forget", host))
    monkeypatch.setattr(nova_compute, "join", lambda catalogue, region, hosts:
                        found.note("join", ",".join(hosts)))
    return found



def engine() -> lxc.LxcEngine:
    deployment = Deployment.create("scale", CONFIG)
    node = lxc.LxcEngine(deployment, CONFIG, "nodes[0]")
    node.parent_endpoints = {"openstack": CLOUD, "servers": [CONTROLLER]}  # type: ignore[attr-defined]
    return node


def test_clones_start_nova_compute_only_once_all_are_themselves_two_per_core(
        recorder: Recorder) -> None:
    endpoints = engine().deploy()
    events = recorder.events
    kinds = [what for what, _ in events]
    # the template is held back before it stops, so its clones boot without nova-compute
    hold = events.index(("put", f"{TEMPLATE_ADDRESS}:{nova_compute.HOLD_DROP_IN}"))
    assert hold < kinds.index("stop template") < kinds.index("create clones")
    last_identify = max(i for i, what in enumerate(kinds) if what == "identify")
    starts = [i for i, what in enumerate(kinds) if what == "start"]
    assert len(starts) == 5 and min(starts) > last_identify
    assert recorder.most == 2  # one host core (nproc 1), two start-ups at a time
    assert kinds.index("join") > max(starts)
    assert dict(events)["join"] == ",".join(f"bbs4-x-{i}" for i in range(5))
    assert endpoints["compute_hosts"] == [f"bbs4-x-{i}" for i in range(5)]
    assert [s["resident_mb"] for s in endpoints["servers"]] == [150.0] * 5


def test_the_deployments_start_up_gate_holds_the_starts_below_the_hosts_own_batch(
        recorder: Recorder) -> None:
    node = engine()
    node.startup_gate = StartupGate(lambda: 1)
    node.deploy()
    assert recorder.most == 1  # the host's batch is two (nproc 1), the gate one
    assert len([what for what, _ in recorder.events if what == "start"]) == 5


@pytest.mark.parametrize(("address", "text", "message"), [
    ("192.0.2.12", identity(TEMPLATE, "192.0.2.12"),
     "bbs4-x-2: its hostname is 'bbs4-t', so Nova would know it under another host name"),
    ("192.0.2.12", identity("bbs4-x-2", "192.0.2.99"),
     "bbs4-x-2: 192.0.2.12 is not among its addresses (192.0.2.99)"),
    ("192.0.2.12", identity("bbs4-x-2", "192.0.2.12", machine_id="id-bbs4-t"),
     "bbs4-x-2: same machine-id as bbs4-t"),
    ("192.0.2.13", identity("bbs4-x-3", "192.0.2.13", key="bbs4-x-1"),
     "bbs4-x-3: same SSH host key as bbs4-x-1"),
])
def test_a_clone_that_is_not_itself_starts_no_compute(
        recorder: Recorder, address: str, text: str, message: str) -> None:
    recorder.identities[address] = text
    with pytest.raises(BenchbedError) as refused:
        engine().deploy()
    assert str(refused.value).startswith(message), refused.value
    assert "start" not in [what for what, _ in recorder.events]


def test_identify_reads_one_command(recorder: Recorder) -> None:
    found = lxc.identify(Server(host="192.0.2.10"))
    assert found == lxc.Identity("bbs4-x-0", "id-bbs4-x-0", "ssh-ed25519 key-bbs4-x-0",
                                 ("192.0.2.10",))
    recorder.identities["192.0.2.10"] = "only-a-name\n"
    with pytest.raises(BenchbedError, match="no hostname, machine-id and host key"):
        lxc.identify(Server(host="192.0.2.10"))


def test_the_hold_is_a_unit_condition_that_the_release_satisfies() -> None:
    assert f"ConditionPathExists={nova_compute.RELEASED}" in nova_compute.HOLD_UNIT
    assert nova_compute.HOLD_DROP_IN.startswith("/etc/systemd/system/nova-compute.service.d/")
