"""The write-ahead ledger: rows before resources, newest-first parallel destroy, crash re-runs."""

import threading

import pytest

from benchbed.deployment import Deployment
from benchbed.ledger import CREATED, CREATING, Ledger, Resource
from benchbed.parallel import ParallelError


@pytest.fixture
def ledger(database: str) -> "Ledger":
    deployment = Deployment.create("ledger", {"type": "ServersEngine", "provider": {}})
    return deployment.ledger("provider")


def test_row_exists_before_the_resource_and_is_marked_created(ledger) -> None:
    with ledger.creating("box", "b1", size=1) as resource:
        assert [(r.name, r.state) for r in ledger.resources()] == [("b1", CREATING)]
        resource.data["address"] = "10.0.0.2"
    (row,) = ledger.resources()
    assert row.state == CREATED
    assert row.data == {"size": 1, "address": "10.0.0.2"}


def test_failed_creation_keeps_the_row_for_destroy(ledger) -> None:
    with pytest.raises(OSError), ledger.creating("box", "half-made"):
        raise OSError("creation failed halfway")
    assert [(r.name, r.state) for r in ledger.resources()] == [("half-made", CREATING)]


def test_destroy_goes_newest_first_and_runs_a_kind_in_parallel(ledger) -> None:
    ledger.record("network", "net")
    for index in range(4):
        ledger.record("box", f"b{index}")
    order: list[str] = []
    in_flight, peak = [0], [0]
    lock = threading.Lock()
    barrier = threading.Barrier(4, timeout=5)

    def remove(resource: Resource) -> None:
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
        if resource.kind == "box":
            barrier.wait()
        with lock:
            in_flight[0] -= 1
            order.append(resource.kind)

    ledger.destroy(remove)
    assert order == ["box"] * 4 + ["network"]
    assert peak[0] == 4
    assert ledger.resources() == []


def test_failed_removal_stops_before_older_resources_and_can_be_rerun(ledger) -> None:
    ledger.record("network", "net")
    ledger.record("box", "good")
    ledger.record("box", "stuck")

    def remove(resource: Resource) -> None:
        if resource.name == "stuck":
            raise RuntimeError("device busy")

    with pytest.raises(ParallelError, match="box stuck: device busy"):
        ledger.destroy(remove)
    assert [r.name for r in ledger.resources()] == ["stuck", "net"]
    ledger.destroy(lambda _resource: None)
    assert ledger.resources() == []


def test_scopes_are_separate(ledger) -> None:
    other = ledger.deployment.ledger("provider.host_provider")
    other.record("host", "h")
    ledger.record("box", "b")
    assert [r.name for r in other.resources()] == ["h"]
    assert [r.name for r in ledger.resources()] == ["b"]
    assert ledger.deployment.remaining_resources() == 2


def test_forgetting_a_server_forgets_its_host_key(ledger: "Ledger") -> None:
    import paramiko

    from benchbed import host_keys

    key = paramiko.Ed25519Key.from_private_key_file(_make_key())
    host_keys.verify_or_record(ledger.deployment, "10.0.0.9:22", key)
    server = ledger.record("box", "b", ssh_address="10.0.0.9:22")
    assert host_keys.known_hosts_lines(ledger.deployment)
    ledger.forget(server)
    assert host_keys.known_hosts_lines(ledger.deployment) == []


def test_forgetting_a_batch_of_servers_forgets_their_host_keys_only(ledger: "Ledger") -> None:
    import paramiko

    from benchbed import host_keys

    key = paramiko.Ed25519Key.from_private_key_file(_make_key())
    for address in ("10.0.0.7:22", "10.0.0.8:22", "10.0.0.9:22"):
        host_keys.verify_or_record(ledger.deployment, address, key)
    batch = ledger.record("instance", "token", ssh_addresses=["10.0.0.7:22", "10.0.0.8:22"])
    ledger.forget(batch)
    assert [line.split()[0] for line in host_keys.known_hosts_lines(ledger.deployment)] == \
        ["10.0.0.9"]


def _make_key() -> str:
    import subprocess
    import tempfile

    path = tempfile.mkdtemp() + "/key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", path], check=True)
    return path
