"""A controller sized for the nodes that join it (benchbed.scale), the deployment-wide gate
on compute start-ups, and how a MultihostEngine counts its nodes' computes."""

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from benchbed import api, plugin
from benchbed.deployment import Deployment, Status
from benchbed.engines.base import Engine
from benchbed.engines.debian import DebianEngineConfig
from benchbed.engines.devstack import DevstackEngine, api_workers, render_local_conf
from benchbed.engines.multihost import MultihostEngine
from benchbed.errors import ConfigError
from benchbed.scale import ControlPlane, StartupGate, control_plane_for
from tests.unit.test_devstack_multihost import _bash_reads

SMALL = ControlPlane(conductor_workers=1, scheduler_workers=1, api_processes=4,
                     database_connections=151)


@pytest.mark.parametrize(("computes", "cores", "expected"), [
    (0, 2, SMALL),
    (50, 2, SMALL),  # bench/scale's 50 nodes ran on the small control plane
    (101, 2, ControlPlane(2, 1, 4, 151 + 55)),
    (1000, 2, ControlPlane(2, 2, 4, 151 + 2 * 55)),  # never more workers than cores
    (1000, 16, ControlPlane(10, 4, 4, 151 + 12 * 55)),
    (2000, 16, ControlPlane(16, 8, 8, 151 + (15 + 7 + 4) * 55)),
])
def test_the_control_plane_grows_with_the_computes_up_to_the_cores(
        computes: int, cores: int, expected: ControlPlane) -> None:
    assert control_plane_for(computes, cores, SMALL) == expected


def test_what_the_config_sets_wins_over_the_grown_control_plane() -> None:
    config = DebianEngineConfig.from_dict({
        "type": "DebianEngine", "services": ["keystone", "nova"],
        "provider": {"type": "ExistingServers", "credentials": []},
        "nova_conductor_workers": 3, "database_max_connections": 500})
    sized = config.control_plane(1000, 16)
    assert sized == ControlPlane(3, 4, 4, 500)
    assert DebianEngineConfig.from_dict({
        "type": "DebianEngine", "provider": {"type": "ExistingServers", "credentials": []}
    }).control_plane(0, 2) == SMALL


@pytest.mark.parametrize(("computes", "cores", "workers"), [
    (0, 2, 2), (0, 16, 4),  # DevStack's own: a quarter of the cores, at least 2
    (300, 2, 2), (500, 8, 5), (5000, 8, 8)])
def test_devstack_api_workers_grow_from_devstacks_own(computes: int, cores: int,
                                                      workers: int) -> None:
    assert api_workers(computes, cores) == workers


def test_local_conf_says_the_grown_api_workers_and_the_users_own_wins() -> None:
    config = DevstackEngine.parse_config({
        "type": "DevstackEngine", "git_mirror": "/srv/git",
        "provider": {"type": "ExistingServers", "credentials": []}})
    source = {"git_base": "git://10.0.0.1", "repo": "", "index": ""}
    rendered = render_local_conf(config, "10.0.0.2", source, {}, workers=5)
    assert _bash_reads(rendered, ["API_WORKERS"]) == {"API_WORKERS": "5"}
    assert "API_WORKERS" not in render_local_conf(config, "10.0.0.2", source, {})
    own = DevstackEngine.parse_config({
        "type": "DevstackEngine", "git_mirror": "/srv/git", "local_conf": {"API_WORKERS": 1},
        "provider": {"type": "ExistingServers", "credentials": []}})
    assert _bash_reads(render_local_conf(own, "10.0.0.2", source, {}, workers=5),
                       ["API_WORKERS"]) == {"API_WORKERS": "1"}


def test_the_gate_lets_through_no_more_than_its_limit_and_asks_it_once() -> None:
    asked: list[int] = []
    gate = StartupGate(lambda: asked.append(3) or 3)
    running, most = 0, 0
    lock = threading.Lock()

    def start() -> None:
        nonlocal running, most
        with gate.slot():
            with lock:
                running += 1
                most = max(most, running)
            time.sleep(0.02)
            with lock:
                running -= 1

    threads = [threading.Thread(target=start) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most == 3
    assert asked == [3]
    assert gate.limit == 3


def test_a_gate_whose_limit_fails_fails_each_start_up_with_that_error() -> None:
    calls: list[int] = []

    def limit() -> int:
        calls.append(1)
        raise RuntimeError("the controller failed to deploy")

    gate = StartupGate(limit)
    for _ in range(2):
        with pytest.raises(RuntimeError, match="the controller failed"), gate.slot():
            pass
    assert len(calls) == 2
    assert gate.limit is None


def _hosts(count: int) -> dict[str, Any]:
    return {"type": "ExistingServers",
            "credentials": [{"host": f"10.0.1.{index + 1}", "user": "root"}
                            for index in range(count)]}


MULTIHOST = {
    "type": "MultihostEngine",
    "controller": {"type": "DebianEngine", "provider": _hosts(1),
                   "services": ["keystone", "glance", "placement", "neutron", "nova"]},
    "nodes": [{"type": "LxcEngine", "nodes_per_server": 10, "provider": _hosts(3),
               "engine": {"type": "DebianEngine", "services": ["nova-compute"]}},
              {"type": "DebianEngine", "services": ["nova-compute"], "provider": _hosts(1)}],
}


def test_a_multihost_engine_counts_its_nodes_computes_for_its_controller() -> None:
    assert MultihostEngine.planned_computes(MultihostEngine.parse_config(MULTIHOST)) == 31


def test_the_controller_is_told_how_many_computes_join(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    deployment = Deployment.create("sized", MULTIHOST)
    multihost = plugin.build(deployment, MULTIHOST, Engine, plugin.ENGINES, "")
    assert isinstance(multihost, MultihostEngine)
    seen: dict[str, Any] = {}

    def deploy(engine: Engine[Any]) -> Any:
        seen["computes"] = engine.computes_joining
        raise RuntimeError("stop here")

    monkeypatch.setattr(type(multihost.nest("controller", Engine)), "deploy", deploy)
    monkeypatch.setattr(MultihostEngine, "_deploy_nodes", lambda *args: {})
    with pytest.raises(RuntimeError, match="stop here"):
        multihost.deploy()
    assert seen == {"computes": 31}
    assert multihost.startup_gate is not None


@pytest.mark.parametrize(("key", "value", "path"), [
    ("computes_starting_at_once", 0, "computes_starting_at_once"),
    ("computes_starting_at_once", "8", "computes_starting_at_once"),
])
def test_a_bad_start_up_cap_is_refused_naming_the_key(key: str, value: Any,
                                                      path: str) -> None:
    with pytest.raises(ConfigError) as refused:
        api.validate({**MULTIHOST, key: value})
    assert refused.value.path == path


@pytest.mark.parametrize(("key", "value"), [
    ("nova_conductor_workers", 0), ("nova_scheduler_workers", -1),
    ("nova_api_processes", "4"), ("database_max_connections", 5)])
def test_a_bad_control_plane_knob_is_refused_naming_the_key(key: str, value: Any) -> None:
    config = {**MULTIHOST, "controller": {**MULTIHOST["controller"], key: value}}
    with pytest.raises(ConfigError) as refused:
        api.validate(config)
    assert refused.value.path == f"controller.{key}"


def test_the_controller_maps_every_nodes_computes_once_after_all_are_up(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    deployment = Deployment.create("mapped", MULTIHOST)
    deployment.set_status(Status.STARTED)
    multihost = plugin.build(deployment, MULTIHOST, Engine, plugin.ENGINES, "")
    assert isinstance(multihost, MultihostEngine)
    controller_class = type(multihost.nest("controller", Engine))
    mapped: list[list[str]] = []
    controller_endpoints = {"servers": [{"host": "10.0.1.1", "user": "root"}],
                            "openstack": {"auth_url": "http://10.0.1.1:5000/v3"}}
    monkeypatch.setattr(controller_class, "deploy", lambda engine: controller_endpoints)
    monkeypatch.setattr(controller_class, "map_computes",
                        lambda engine, hosts: mapped.append(hosts))
    monkeypatch.setattr(MultihostEngine, "_deploy_nodes", lambda self, nodes, controller: {
        index: {"compute_hosts": [f"node{index}-{n}" for n in range(2)]}
        for index, _ in nodes})
    endpoints = multihost.deploy()
    assert mapped == [["node0-0", "node0-1", "node1-0", "node1-1"]]
    assert [row.step for row in deployment.timeline()][-1:] == ["map compute nodes"]
    assert endpoints["controller_ip"] == "10.0.1.1"
