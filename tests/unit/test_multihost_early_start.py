"""MultihostEngine starts the nodes that can begin without their controller (an LxcEngine
installing its template) together with it; the others follow it with `{controller_ip}`
filled in. Stand-in engines record when they ran; MultihostEngine and the ledger are real."""

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from benchbed import plugin
from benchbed.deployment import Deployment, Status
from benchbed.engines.base import CheckResult, Engine
from benchbed.engines.multihost import MultihostEngine
from benchbed.errors import BenchbedError
from benchbed.settings import PluginConfig, setting

CONTROLLER_IP = "192.0.2.10"
WAIT = 10


class Events:
    """What the stand-ins saw, shared across their threads."""

    def __init__(self) -> None:
        self.node_started = threading.Event()
        self.release_controller = threading.Event()
        self.seen: dict[str, Any] = {}


EVENTS = Events()


@dataclass(frozen=True, kw_only=True)
class ControllerConfig(PluginConfig):
    wait: float = setting("How long the controller waits for the early node.", WAIT)
    fail: bool = setting("Whether the controller fails.", False)


@dataclass(frozen=True, kw_only=True)
class LateNodeConfig(PluginConfig):
    address: str = setting("The controller's address, filled in by MultihostEngine.")


@dataclass(frozen=True, kw_only=True)
class EarlyNodeConfig(PluginConfig):
    name: str = setting("A name that may hold {controller_ip}.", "")


class Controller(Engine[ControllerConfig]):
    Config = ControllerConfig

    def deploy(self) -> dict[str, Any]:
        # the early node must be running before the controller may finish
        EVENTS.seen["node began first"] = EVENTS.node_started.wait(self.config.wait)
        EVENTS.release_controller.wait(WAIT)
        if self.config.fail:
            raise BenchbedError("controller: keystone did not start")
        return {"openstack": {"auth_url": f"http://{CONTROLLER_IP}:5000/v3"},
                "servers": [{"host": CONTROLLER_IP, "user": "root"}]}

    def check(self) -> list[CheckResult]:
        return []


class EarlyNode(Engine[EarlyNodeConfig]):
    Config = EarlyNodeConfig
    STARTS_BEFORE_PARENT = True

    def deploy(self) -> dict[str, Any]:
        EVENTS.node_started.set()
        EVENTS.release_controller.set()
        parent = self.parent_endpoints or {}
        EVENTS.seen[self.path] = parent["servers"][0]["host"]
        return {"node": self.path}

    def check(self) -> list[CheckResult]:
        return []


class LateNode(Engine[LateNodeConfig]):
    Config = LateNodeConfig

    def deploy(self) -> dict[str, Any]:
        EVENTS.seen[self.path] = self.config.address
        return {"node": self.path}

    def check(self) -> list[CheckResult]:
        return []


class _Found:
    def __init__(self, plugin_class: type) -> None:
        self.plugin_class = plugin_class

    def load(self) -> type:
        return self.plugin_class


@pytest.fixture
def engines(monkeypatch: pytest.MonkeyPatch, home: Path) -> Events:
    global EVENTS
    EVENTS = Events()
    found = {"MultihostEngine": MultihostEngine, "Controller": Controller,
             "EarlyNode": EarlyNode, "LateNode": LateNode}
    monkeypatch.setattr(plugin, "_entry_points", lambda _group: {
        name: _Found(plugin_class) for name, plugin_class in found.items()})
    return EVENTS


def _deploy(controller: dict[str, Any], nodes: list[dict[str, Any]]) -> dict[str, Any]:
    config = {"type": "MultihostEngine", "controller": controller, "nodes": nodes}
    deployment = Deployment.create("early", config)
    deployment.set_status(Status.STARTED)
    engine = plugin.build(deployment, config, Engine, plugin.ENGINES, "")
    return engine.deploy()


def test_an_early_node_deploys_alongside_the_controller_and_waits_for_its_endpoints(
        engines: Events) -> None:
    endpoints = _deploy({"type": "Controller"}, [
        {"type": "LateNode", "address": "{controller_ip}"},
        {"type": "EarlyNode"},
        {"type": "LateNode", "address": "{controller_ip}"}])
    assert engines.seen["node began first"] is True
    assert engines.seen["nodes[1]"] == CONTROLLER_IP
    assert engines.seen["nodes[0]"] == engines.seen["nodes[2]"] == CONTROLLER_IP
    assert [node["node"] for node in endpoints["nodes"]] == ["nodes[0]", "nodes[1]", "nodes[2]"]
    assert endpoints["controller_ip"] == CONTROLLER_IP


def test_a_node_with_a_placeholder_waits_for_the_controller_even_if_its_engine_could_not(
        engines: Events) -> None:
    engines.release_controller.set()
    endpoints = _deploy({"type": "Controller", "wait": 0.5}, [
        {"type": "EarlyNode", "name": "{controller_ip}"}])
    assert engines.seen["node began first"] is False
    assert endpoints["nodes"] == [{"node": "nodes[0]"}]


def test_a_failing_controller_fails_the_deploy_with_its_own_error_after_the_early_node(
        engines: Events) -> None:
    with pytest.raises(BenchbedError, match=r"^controller: keystone did not start$"):
        _deploy({"type": "Controller", "fail": True}, [{"type": "EarlyNode"}])
    # the early node asked for the controller's endpoints, was refused, and has ended
    assert "nodes[0]" not in engines.seen
    assert [thread.name for thread in threading.enumerate()
            if thread.name.startswith("ThreadPoolExecutor")] == []
