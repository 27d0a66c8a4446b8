"""FuelEngine end to end through the real CLI, against the Nailgun simulator.

No Fuel master can run here (Fuel is retired and needs bare metal), so the master is
tests/nailgun_sim.py: a real HTTP server on 127.0.0.1 with Nailgun's paths, payloads,
status codes and task life cycle, learnt from fuel-web's source. It is a stand-in.
"""

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import Cli, ledger_rows
from tests.integration.test_core_cli import assert_one_clear_line
from tests.nailgun_sim import Simulator

ALL_MACS = {f"52:54:00:00:00:{i:02x}" for i in range(1, 7)}
TOKEN = "Fuel-T0ken-Never-Shown"


@pytest.fixture
def sim() -> Iterator[Simulator]:
    simulator = Simulator()
    simulator.url = simulator.serve()
    yield simulator
    simulator.stop()


def fuel_config(sim: Simulator, **overrides: Any) -> dict[str, Any]:
    config = {
        "type": "FuelEngine", "deploy_name": "bench multinode", "api_url": sim.url,
        "release": "Havana on CentOS 6.4", "mode": "multinode", "net_provider": "nova_network",
        "dns_nameservers": ["10.20.0.2", "10.20.0.3"],
        "nodes": {"controller": {"amount": 1, "filters": ["ram>=16G"]},
                  "compute": {"amount": 2, "filters": ["storage>80G"]}},
        "networks": {"public": {"cidr": "10.3.3.0/24", "gateway": "10.3.3.1",
                                "ip_ranges": [["10.3.3.5", "10.3.3.254"]], "vlan_start": 14},
                     "floating": {"cidr": "10.3.4.0/24",
                                  "ip_ranges": [["10.3.4.5", "10.3.4.254"]]}},
        "timeout": 60,
    }
    config.update(overrides)
    return config


def write(tmp_path: Path, config: dict[str, Any], name: str = "fuel.yaml") -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config))
    return str(path)


def free_macs(sim: Simulator) -> set[str]:
    with sim.lock:
        return {n["mac"] for n in sim.nodes.values()
                if n["cluster"] is None and n["status"] == "discover"}


def calls(sim: Simulator, method: str, path_end: str) -> list[Any]:
    """Bodies of the requests with this method whose path ends so."""
    with sim.lock:
        return [body for m, p, body in sim.requests
                if m == method and p.rstrip("/").endswith(path_end)]


def assert_all_gone(sim: Simulator, home: Path) -> None:
    assert sim.clusters == {}
    assert free_macs(sim) == ALL_MACS
    assert ledger_rows(home) == 0


def test_multinode_create_endpoints_destroy(bb: Cli, sim: Simulator, tmp_path: Path,
                                            home: Path) -> None:
    bb.ok("deployment", "create", "--name", "fuel", "--file", write(tmp_path, fuel_config(sim)))
    details = bb.json("deployment", "show", "fuel")
    assert details["status"] == "deploy->finished"
    [cluster] = sim.clusters.values()
    assert cluster["status"] == "operational" and cluster["mode"] == "multinode"
    roles = sorted((n["roles"], n["meta"]["memory"]["total"] >> 30,
                    sum(d["size"] for d in n["meta"]["disks"]) >> 30)
                   for n in sim.nodes.values() if n["cluster"] == cluster["id"])
    # ram>=16G for the controller, storage>80G for the computes: nodes 1-3 (4-6 are smaller)
    assert roles == [(["compute"], 16, 200), (["compute"], 16, 200), (["controller"], 32, 500)]
    # one bulk assignment; the config's networks and DNS merged into what was saved
    [assignment] = calls(sim, "PUT", "/api/v1/nodes")
    assert sorted(item["id"] for item in assignment) == [1, 2, 3]
    assert all(item["pending_addition"] and item["cluster_id"] == cluster["id"]
               for item in assignment)
    [verified] = calls(sim, "PUT", "/network_configuration/nova_network/verify")
    [saved] = calls(sim, "PUT", "/network_configuration/nova_network")
    assert saved == verified
    public = next(n for n in saved["networks"] if n["name"] == "public")
    assert public["cidr"] == "10.3.3.0/24" and public["vlan_start"] == 14
    parameters = cluster["network"]["networking_parameters"]
    assert parameters["dns_nameservers"] == ["10.20.0.2", "10.20.0.3"]
    assert parameters["floating_ranges"] == [["10.3.4.5", "10.3.4.254"]]
    # the endpoints: ExistingCloud's shape, Keystone on the controller's public address
    exported = json.loads(bb.ok("deployment", "export", "fuel", "--format", "json").stdout)
    [controller] = [n for n in sim.nodes.values() if n["roles"] == ["controller"]]
    address = next(net["ip"] for net in controller["network_data"] if net["name"] == "public")
    assert address.startswith("10.3.3.")
    assert exported["openstack"]["auth_url"] == f"http://{address.split('/')[0]}:5000/v3"
    assert exported["openstack"]["admin"] == {
        "username": "admin", "password": "admin", "project_name": "admin",
        "user_domain_name": "Default", "project_domain_name": "Default"}
    assert "OS_AUTH_URL=" in bb.ok("deployment", "export", "fuel", "--format", "openrc").stdout
    steps = [s["step"] for s in details["timeline"]]
    for step in ("find release", "choose nodes", "create cluster", "assign nodes",
                 "verify networks", "save networks", "provision", "deployment"):
        assert step in steps, steps
    bb.ok("deployment", "destroy", "fuel")
    assert_all_gone(sim, home)
