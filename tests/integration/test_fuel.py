"""FuelEngine end to end through the real CLI, against the Nailgun simulator.

No Fuel master can run here (Fuel is retired and needs bare metal), so the master is
tests/nailgun_sim.py: a real HTTP server on 127.0.0.1 with Nailgun's paths, payloads,
status codes and task life cycle, learnt from fuel-web's source. It is a stand-in.
"""

import json
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import Cli, kill_when, ledger_rows
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


def deployment_rows(home: Path) -> int:
    database = home / "benchbed.sqlite"
    if not database.exists():
        return 0
    with sqlite3.connect(database) as connection:
        return connection.execute("SELECT count(*) FROM deployments").fetchone()[0]


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


def test_ha_with_filters_uses_the_public_vip(bb: Cli, sim: Simulator, tmp_path: Path,
                                             home: Path) -> None:
    config = fuel_config(sim, deploy_name="bench ha", mode="ha_compact", nodes={
        "controller": {"amount": 3, "filters": ["ram>=16G", "cpus>4"]},
        "cinder+compute": {"amount": 1, "filters": ["mac=52:54:00:00:00:05"]}})
    bb.ok("deployment", "create", "--name", "ha", "--file", write(tmp_path, config))
    [cluster] = sim.clusters.values()
    roles = {n["mac"][-2:]: n["roles"] for n in sim.nodes.values()
             if n["cluster"] == cluster["id"]}
    assert roles == {"01": ["controller"], "02": ["controller"], "03": ["controller"],
                     "05": ["cinder", "compute"]}
    exported = json.loads(bb.ok("deployment", "export", "ha", "--format", "json").stdout)
    # the VIP is the first public address; the controllers have the ones after it
    assert exported["openstack"]["auth_url"] == "http://10.3.3.5:5000/v3"
    assert exported["fuel"]["mode"] == "ha_compact"
    bb.ok("deployment", "destroy", "ha")
    assert_all_gone(sim, home)


def test_failed_deploy_task_fails_at_once_with_its_message(bb: Cli, sim: Simulator,
                                                           tmp_path: Path, home: Path) -> None:
    sim.fail_at = 40
    result = bb("deployment", "create", "--name", "bad", "--file",
                write(tmp_path, fuel_config(sim, timeout=600)))
    assert_one_clear_line(result, 1, "deployment failed at 40%: Deployment has failed.")
    assert "Deployment has failed. Puppet run failed on node-1: Could not start nova-api" \
        in result.stderr
    # the deploy task was read once in error, and never polled again
    [deploy] = [t for t in sim.tasks.values() if t["name"] == "deploy"]
    with sim.lock:
        reads = [answer["status"] for method, path, answer in sim.answers
                 if method == "GET" and path.rstrip("/").endswith(f"/tasks/{deploy['id']}")]
    assert reads[-1] == "error" and reads.count("error") == 1 and len(reads) > 3
    details = bb.json("deployment", "show", "bad")
    assert details["status"] == "deploy->failed"
    assert [s["outcome"] for s in details["timeline"] if s["step"] == "deployment"] == ["failed"]
    bb.ok("deployment", "destroy", "bad")
    assert_all_gone(sim, home)


def test_task_that_never_finishes_hits_the_timeout(bb: Cli, sim: Simulator, tmp_path: Path,
                                                   home: Path) -> None:
    sim.hang_at = 40
    result = bb("deployment", "create", "--name", "hang", "--file",
                write(tmp_path, fuel_config(sim, timeout=20)))
    assert_one_clear_line(result, 1, "deployment timed out after 20s: Nailgun task")
    assert "is still running at 40%" in result.stderr
    bb.ok("deployment", "destroy", "hang")
    assert calls(sim, "PUT", "/stop_deployment")
    assert_all_gone(sim, home)


def test_too_few_matching_nodes_refused_before_the_cluster(bb: Cli, sim: Simulator,
                                                           tmp_path: Path, home: Path) -> None:
    config = fuel_config(sim, nodes={"controller": {"amount": 1},
                                     "compute": {"amount": 2,
                                                 "filters": ["storage>300G", "ram>=8G"]}})
    result = bb("deployment", "create", "--name", "few", "--file", write(tmp_path, config))
    assert_one_clear_line(result, 2, "config nodes.compute: 2 compute node(s) needed, 1 of 6 "
                                     "free node(s) available (storage>300G excluded 5, "
                                     "ram>=8G excluded 1)")
    assert calls(sim, "POST", "/clusters") == []
    assert ledger_rows(home) == 0


def test_kill_during_deploy_then_destroy(bb: Cli, sim: Simulator, tmp_path: Path,
                                         home: Path) -> None:
    sim.hang_at = 60
    process = bb.popen("deployment", "create", "--name", "killed", "--file",
                       write(tmp_path, fuel_config(sim, timeout=600)))
    kill_when(process, lambda: any(t["name"] == "deployment" and t["status"] == "running"
                                   for t in list(sim.tasks.values())),
              timeout=60, never="the Fuel deployment task never ran", interval=0.1)
    assert len(sim.clusters) == 1 and ledger_rows(home) == 1
    bb.ok("deployment", "destroy", "--force", "killed")
    assert_all_gone(sim, home)
    assert bb.json("deployment", "list") == []


def test_kill_right_after_post_clusters_then_destroy(bb: Cli, sim: Simulator, tmp_path: Path,
                                                     home: Path) -> None:
    """The id never reached the ledger: destroy finds the cluster by its unique name."""
    from sqlalchemy import create_engine, text

    bb.ok("deployment", "create", "--name", "lost", "--file", write(tmp_path, fuel_config(sim)))
    with create_engine(f"sqlite:///{home / 'benchbed.sqlite'}").begin() as db:
        db.execute(text("UPDATE resources SET data = :data, state = 'creating'"),
                    {"data": json.dumps({"api_url": sim.url})})
    bb.ok("deployment", "destroy", "lost")
    assert_all_gone(sim, home)


def test_token_is_sent_and_never_shown(bb: Cli, sim: Simulator, tmp_path: Path,
                                       home: Path) -> None:
    sim.token = TOKEN
    wrong = bb("deployment", "create", "--name", "wrong", "--file",
               write(tmp_path, fuel_config(sim, token="not-the-token"), "wrong.yaml"))
    assert_one_clear_line(wrong, 1, "401 Authentication required")
    assert sim.clusters == {}
    bb.ok("deployment", "destroy", "wrong")
    bb.ok("deployment", "create", "--name", "tok", "--file",
          write(tmp_path, fuel_config(sim, token=TOKEN)))
    shown = "".join(bb.ok("deployment", *args).stdout for args in (
        ("show", "tok"), ("show", "tok", "--json"), ("config", "tok"), ("config", "tok", "--json"),
        ("list",)))
    assert TOKEN not in shown and "***" in shown
    logs = "".join(p.read_text() for p in home.rglob("*.log"))
    assert logs and TOKEN not in logs
    bb.ok("deployment", "destroy", "tok")
    assert_all_gone(sim, home)


def test_keystone_credentials_for_the_master(bb: Cli, sim: Simulator, tmp_path: Path,
                                             home: Path) -> None:
    sim.keystone_user = ("fueladmin", "Keystone-Pa55")
    keystone = {"auth_url": sim.url.replace("/api/v1/", "/keystone/v3"),
                "username": "fueladmin", "password": "Keystone-Pa55", "project_name": "admin"}
    bb.ok("deployment", "create", "--name", "ks", "--file",
          write(tmp_path, fuel_config(sim, keystone=keystone)))
    assert sim.issued and "Keystone-Pa55" not in bb.ok("deployment", "config", "ks").stdout
    bb.ok("deployment", "destroy", "ks")
    assert_all_gone(sim, home)


@pytest.mark.parametrize(("change", "where"), [
    ({"mode": "single"}, "config mode:"),
    ({"net_provider": "quantum"}, "config net_provider:"),
    ({"nodes": {"controller": {"amount": 1, "filters": ["storage>>80G"]},
                "compute": {"amount": 1}}}, "config nodes.controller.filters[0]: malformed"),
    ({"nodes": {"controller": {"amount": 1}, "compute": {"amount": 1,
                                                         "filters": ["ram>=16Q"]}}},
     "config nodes.compute.filters[0]: malformed filter 'ram>=16Q'"),
    ({"nodes": {"controller": {"amount": 1}, "compute": {"amount": 1,
                                                         "filters": ["cpus>4G"]}}},
     "config nodes.compute.filters[0]: malformed filter 'cpus>4G': cpus takes a whole"),
    ({"nodes": {"controller": {"amount": 1}, "compute": {"amount": 1,
                                                         "filters": ["mac>52:54:00:00:00:01"]}}},
     "config nodes.compute.filters[0]: malformed filter"),
    ({"nodes": {"controller": {"amount": 1}, "compute": {
        "amount": 1, "filters": ["mac=$(reboot)"]}}}, "config nodes.compute.filters[0]"),
    ({"nodes": {"controller": {"amount": 1}, "cinder": {"amount": 1}}},
     "config nodes: at least one compute"),
    ({"nodes": {"controller": {"amount": 1}, "compute+rm": {"amount": 1}}},
     "config nodes.compute+rm: unknown role 'rm'"),
    ({"nodes": {"controller": {"amount": 0}, "compute": {"amount": 1}}},
     "config nodes.controller.amount:"),
    ({"api_url": "ftp://10.20.0.2/api/v1/"}, "config api_url: 'ftp://10.20.0.2/api/v1/' is not"),
    ({"api_url": "http://10.20.0.2:8000/api/v1/$(reboot)"}, "config api_url:"),
    ({"api_url": "http://10.20.0.2:99999/api/v1/"}, "config api_url:"),
    ({"api_url": "http://admin:pw@10.20.0.2:8000/"}, "config api_url:"),
    ({"deploy_name": "two\nlines"}, "config deploy_name:"),
    ({"dns_nameservers": ["8.8.8.8; reboot"]}, "config dns_nameservers[0]: '8.8.8.8; reboot'"),
    ({"networks": {"public": {"cidr": "10.0.0.0/33"}}}, "config networks.public:"),
    ({"networks": {"public": {"ip_ranges": [["10.0.0.9", "10.0.0.1"]]}}},
     "config networks.public.ip_ranges[0]: first address is after the last"),
    ({"networks": {"publik": {}}}, "config networks: unknown key(s)"),
    ({"timeout": 0}, "config timeout:"),
    ({"token": "t", "keystone": {"auth_url": "http://x/", "username": "u", "password": "p"}},
     "config token: give either a token or keystone credentials"),
])
def test_bad_input_one_line_nothing_created(bb: Cli, sim: Simulator, tmp_path: Path, home: Path,
                                            change: dict[str, Any], where: str) -> None:
    result = bb("deployment", "create", "--name", "bad", "--file",
                write(tmp_path, fuel_config(sim, **change)))
    assert_one_clear_line(result, 2, where)
    assert sim.requests == []
    assert deployment_rows(home) == 0


def test_unknown_release_and_dead_api_url(bb: Cli, sim: Simulator, tmp_path: Path,
                                          home: Path) -> None:
    result = bb("deployment", "create", "--name", "rel", "--file",
                write(tmp_path, fuel_config(sim, release="Grizzly on Ubuntu 12.04")))
    assert_one_clear_line(result, 2, "config release: Nailgun has no release 'Grizzly on "
                                     "Ubuntu 12.04' (it has: 'Havana on CentOS 6.4', 'Mitaka")
    result = bb("deployment", "create", "--name", "mode", "--file",
                write(tmp_path, fuel_config(sim, release="Mitaka on Ubuntu 14.04")))
    assert_one_clear_line(result, 2, "config mode: release 'Mitaka on Ubuntu 14.04' cannot "
                                     "deploy in multinode mode (it offers: ha_compact)")
    sim.stop()
    result = bb("deployment", "create", "--name", "dead", "--file",
                write(tmp_path, fuel_config(sim)))
    assert_one_clear_line(result, 1, f"cannot reach Nailgun at {sim.url}: ")
    assert "Connection refused" in result.stderr
    assert sim.clusters == {} and ledger_rows(home) == 0


def test_progress_on_a_terminal(bb: Cli, sim: Simulator, tmp_path: Path, home: Path) -> None:
    """On a terminal every phase prints its line and the deploy task has a progress bar."""
    import os
    import pty
    import subprocess

    primary, secondary = pty.openpty()
    process = subprocess.Popen(bb.argv("deployment", "create", "--name", "tty", "--file",
                                       write(tmp_path, fuel_config(sim))),
                               stdin=subprocess.DEVNULL, stdout=secondary, stderr=secondary,
                               env={**bb.env, "COLUMNS": "120"})
    os.close(secondary)
    output = b""
    try:
        while True:
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # the terminal closed with the process
                break
            if not chunk:
                break
            output += chunk
    finally:
        os.close(primary)
        assert process.wait(timeout=120) == 0, output.decode(errors="replace")
    text = output.decode(errors="replace")
    # nested steps show on one line that the next one overwrites (only top-level and failed
    # steps stay on the screen)
    for phase in ("verify networks", "provision", "deployment"):
        assert f"...    {phase}" in text, text
    assert re.search(r"deployment [^\r\n]*━[^\r\n]* +[1-9]\d*/100", text), text
    bb.ok("deployment", "destroy", "tty")
    assert_all_gone(sim, home)
