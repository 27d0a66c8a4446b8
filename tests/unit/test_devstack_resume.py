"""What a DevStack server resumed from a snapshot rewrites (scripts/devstack/resume.py's
pure parts), and when DevstackEngine resumes instead of running stack.sh."""

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from benchbed.deployment import Deployment
from benchbed.engines.devstack import DevstackEngine
from benchbed.engines.steps import DeployStepError
from benchbed.server import Server

SERVERS = {"type": "ExistingServers", "credentials": [{"host": "10.0.0.2", "user": "root"}]}
OLD = {"address": "10.1.0.2", "hostname": "bbx-1234-0",
       "passwords": {"ADMIN_PASSWORD": "a" * 32, "DATABASE_PASSWORD": "d" * 32,
                     "RABBIT_PASSWORD": "r" * 32, "SERVICE_PASSWORD": "s" * 32}}
NEW = {"address": "10.1.0.23", "hostname": "bbx-9876-0",
       "passwords": {"ADMIN_PASSWORD": "A" * 32, "DATABASE_PASSWORD": "D" * 32,
                     "RABBIT_PASSWORD": "R" * 32, "SERVICE_PASSWORD": "S\\1" * 8}}


def _resume() -> ModuleType:
    path = Path(__file__).parents[2] / "benchbed/scripts/devstack/resume.py"
    spec = importlib.util.spec_from_file_location("resume", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


resume = _resume()


def test_addresses_hosts_and_passwords_are_rewritten_where_devstack_writes_them() -> None:
    rewrite = resume.rewriter(OLD, NEW)
    text = ("transport_url = rabbit://stackrabbit:" + "r" * 32 + "@10.1.0.2:5672/\n"
            "connection = mysql+pymysql://root:" + "d" * 32 + "@127.0.0.1/nova\n"
            "url = http://10.1.0.2/identity\nhost = bbx-1234-01\nhostname=bbx-1234-0\n"
            "topic=conductor.bbx-1234-0 fqdn=bbx-1234-0.lan\n")
    assert rewrite(text) == (
        "transport_url = rabbit://stackrabbit:" + "R" * 32 + "@10.1.0.23:5672/\n"
        "connection = mysql+pymysql://root:" + "D" * 32 + "@127.0.0.1/nova\n"
        "url = http://10.1.0.23/identity\nhost = bbx-9876-01\nhostname=bbx-9876-0\n"
        "topic=conductor.bbx-9876-0 fqdn=bbx-9876-0.lan\n")


def test_a_longer_address_or_name_that_starts_alike_is_left_alone() -> None:
    rewrite = resume.rewriter(OLD, NEW)
    kept = "10.1.0.21 110.1.0.2 10.1.0.2.5 bbx-1234-0a bbx-1234-0-2 xbbx-1234-0"
    assert rewrite(kept) == kept


def test_a_given_password_with_backslashes_arrives_literally() -> None:
    rewrite = resume.rewriter(OLD, NEW)
    assert rewrite("secret=" + "s" * 32) == "secret=" + "S\\1" * 8


@given(st.text(alphabet=st.characters(blacklist_characters="abdrs.0123456789")))
def test_text_without_old_values_is_unchanged(text: str) -> None:
    assert resume.rewriter(OLD, NEW)(text) == text


def test_rabbitmq_users_get_the_new_password_as_rabbitmq_hashes_it() -> None:
    import base64
    import hashlib

    queue = {"vhost": "/", "durable": False, "auto_delete": False, "arguments": {}}
    binding = {"vhost": "/", "source": "nova", "destination_type": "queue", "arguments": {}}
    definitions = resume.rabbit_definitions(
        {"users": [{"name": "stackrabbit", "password_hash": "old", "tags": []}],
         "vhosts": [{"name": "/"}],
         "queues": [{**queue, "name": "conductor.bbx-1234-0"},
                    {**queue, "name": "reply_0a1b", "auto_delete": True}],
         "exchanges": [{"vhost": "/", "name": "nova", "auto_delete": False},
                       {"vhost": "/", "name": "conductor_fanout", "auto_delete": True}],
         "bindings": [{**binding, "destination": "conductor.bbx-1234-0",
                       "routing_key": "conductor.bbx-1234-0"},
                      {**binding, "destination": "reply_0a1b", "routing_key": "reply_0a1b"},
                      {**binding, "source": "conductor_fanout", "routing_key": "conductor",
                       "destination": "conductor.bbx-1234-0"}]},
        "new-password", resume.rewriter(OLD, NEW))
    assert [q["name"] for q in definitions["queues"]] == ["conductor.bbx-9876-0"]
    assert [e["name"] for e in definitions["exchanges"]] == ["nova"]
    assert [(b["source"], b["routing_key"]) for b in definitions["bindings"]] \
        == [("nova", "conductor.bbx-9876-0")]
    user = definitions["users"][0]
    raw = base64.b64decode(user["password_hash"])
    assert raw[4:] == hashlib.sha256(raw[:4] + b"new-password").digest()
    assert user["hashing_algorithm"] == "rabbit_password_hashing_sha256"
    assert definitions["vhosts"] == [{"name": "/"}]


def test_own_computes_are_the_host_name_alone_or_numbered() -> None:
    own = resume.own_compute("bbx-1234-0")
    assert [own(h) for h in ("bbx-1234-0", "bbx-1234-01", "bbx-1234-0a", "bbx-1234-00x")] \
        == [True, True, False, False]


# -- the engine: resume or stack.sh ----------------------------------------------------------


class FakeShell:
    """Answers the engine's probe of a server: its machine-id and stacked.json."""

    def __init__(self, machine_id: str, stacked: dict[str, Any] | None) -> None:
        self.output = machine_id + "\n" + (json.dumps(stacked) if stacked else "")

    def run(self, command: Any, **_: Any) -> Any:
        return type("Result", (), {"stdout": self.output, "exit_code": 0})()


def _engine(home: Path, **engine: Any) -> DevstackEngine:
    config = {"type": "DevstackEngine", "provider": SERVERS, **engine}
    return DevstackEngine(Deployment.create(f"snap-{len(Deployment.uuids())}", config))


def _server(machine_id: str, stacked: dict[str, Any] | None) -> Server:
    shell = FakeShell(machine_id, stacked)

    class Probed(Server):
        @property
        def ssh(self) -> Any:
            return shell
    return Probed(host="10.0.0.5")


def test_only_a_clone_of_a_stacked_server_resumes(home: Path) -> None:
    engine = _engine(home)
    stacked = {**OLD, "machine_id": "m-origin", "settings": engine._settings()}
    assert engine._origin(_server("m-clone", stacked)) == stacked
    assert engine._origin(_server("m-origin", stacked)) is None  # the origin itself
    assert engine._origin(_server("m-clone", None)) is None


def test_settings_decide_and_passwords_addresses_do_not(home: Path) -> None:
    first = _engine(home, local_conf={"VIRT_DRIVER": "fake", "ADMIN_PASSWORD": "x"})
    assert first._settings() == _engine(home, local_conf={"VIRT_DRIVER": "fake"})._settings()
    assert first._settings() != _engine(home, local_conf={"VIRT_DRIVER": "ironic"})._settings()
    assert first._settings() != _engine(home, devstack_branch="master")._settings()


def test_a_snapshot_of_other_settings_or_a_mixed_set_is_refused_in_one_line(
        home: Path) -> None:
    engine = _engine(home, local_conf={"VIRT_DRIVER": "fake"})
    other = {**OLD, "machine_id": "m-origin", "settings": "0" * 64}
    with pytest.raises(DeployStepError, match=r"^root@10.0.0.5:22: step 'resume from "
                       r"snapshot' failed: the image holds a DevStack stacked from "
                       r"10.1.0.2 with other settings [^\n]+base image$"):
        engine._resume(_server("m-clone", other), other, NEW["passwords"])
    with pytest.raises(DeployStepError, match="this one does not"):
        engine._resume(_server("m-clone", None), None, NEW["passwords"])


@pytest.mark.parametrize("southbound_here", [True, False])
def test_the_chassis_is_new_and_only_a_local_southbound_database_is_asked(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, southbound_here: bool) -> None:
    """A whole cloud deletes its origin's chassis in its own southbound database; a compute
    node (LxcEngine's clone) has none (its template's chassis leaves through Neutron). Both
    get a new system-id, also where Open vSwitch's start-up reads it from."""
    external_ids = {"system-id": '"old-id"', "hostname": f'"{OLD["hostname"]}"',
                    "ovn-encap-ip": f'"{OLD["address"]}"', "ovn-remote": '"tcp:10.1.0.1:6642"'}
    calls: list[tuple[str, ...]] = []

    def run(*command: str, check: bool = True, stdin: str | None = None) -> str:
        calls.append(command)
        if command[:4] == ("ovs-vsctl", "get", "open", "."):
            return external_ids.get(command[4].removeprefix("external_ids:"), "")
        return ""

    system_id = tmp_path / "system-id.conf"
    system_id.write_text("old-id\n")
    socket = tmp_path / "ovnsb_db.sock"
    if southbound_here:
        socket.touch()
    monkeypatch.setattr(resume, "run", run)
    monkeypatch.setattr(resume, "SYSTEM_ID", system_id)
    monkeypatch.setattr(resume, "SOUTHBOUND", (socket,))
    monkeypatch.setattr(resume.shutil, "which", lambda name: f"/usr/bin/{name}")
    new_id = resume.openvswitch(OLD, NEW, resume.rewriter(OLD, NEW))
    assert new_id not in ("", "old-id") and system_id.read_text() == f"{new_id}\n"
    assert ("ovs-vsctl", "set", "open", ".", f"external_ids:system-id={new_id}",
            f"external_ids:hostname={NEW['hostname']}",
            f"external_ids:ovn-encap-ip={NEW['address']}",
            "external_ids:ovn-remote=tcp:10.1.0.1:6642") in calls
    asked = [command for command in calls if command[0] in ("ovn-sbctl", "ovn-nbctl")]
    assert bool(asked) is southbound_here
