"""DebianEngine's install pipeline: the next service's packages go in while the previous
service is configured, and nothing is configured before its packages and the service it
needs are ready. apt and the recipes are recorded stand-ins; the engine is real."""

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from benchbed.deployment import Deployment
from benchbed.engines import debian
from benchbed.engines.debian_services import Context, Recipe
from benchbed.server import Server

CONFIG = {"type": "DebianEngine", "provider": {
    "type": "ExistingServers", "credentials": [{"user": "root", "host": "192.0.2.7"}]}}
SERVICES = ("mariadb", "keystone", "glance")


class Recorder:
    """Start and end of every install and configure, and whether installs overlapped."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.lock = threading.Lock()
        self.install_started = {name: threading.Event() for name in SERVICES}
        self.configure_started = {name: threading.Event() for name in SERVICES}
        self.overlapped: dict[str, bool] = {}

    def add(self, event: str) -> None:
        with self.lock:
            self.events.append(event)

    def index(self, event: str) -> int:
        return self.events.index(event)

    def install(self, _server: Server, packages: list[str]) -> None:
        service = packages[0]
        self.add(f"install {service} start")
        self.install_started[service].set()
        previous = SERVICES.index(service) - 1
        if previous >= 0:
            # both sides wait for the other to have started: only concurrency gets through
            waited = self.configure_started[SERVICES[previous]].wait(timeout=5)
            self.overlapped[f"install {service}"] = waited
        self.add(f"install {service} end")

    def recipe(self, service: str, following: str | None) -> Recipe:
        def configure(ctx: Context) -> None:
            self.add(f"configure {service} start")
            self.configure_started[service].set()
            if following:
                waited = self.install_started[following].wait(timeout=5)
                self.overlapped[f"configure {service}"] = waited
            if service == "keystone":
                ctx.outputs["auth_url"] = "http://192.0.2.7:5000/v3"
            self.add(f"configure {service} end")

        return Recipe(name=service, packages=(service,), preseed=(), paths=(),
                      services=(service,), configure=configure)


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch, home: Path) -> Recorder:
    recorder = Recorder()
    recipes = {service: recorder.recipe(service, following) for service, following
               in zip(SERVICES, [*SERVICES[1:], None], strict=True)}
    monkeypatch.setattr(debian, "recipes", lambda: recipes)
    for name in ("check", "record_baseline", "update", "preseed", "download"):
        monkeypatch.setattr(debian.apt, name, lambda *_args, **_kwargs: None)
    monkeypatch.setattr(debian.apt, "install", recorder.install)
    monkeypatch.setattr(debian.apt, "missing", lambda _server, packages: packages)
    return recorder


def test_next_packages_install_while_the_previous_service_is_configured(
        recorder: Recorder) -> None:
    deployment = Deployment.create("pipeline", CONFIG)
    endpoints: dict[str, Any] = debian.DebianEngine(deployment)._install(
        Server(host="192.0.2.7"))
    assert endpoints["services"] == ["keystone", "glance"]
    assert recorder.overlapped == {"configure mariadb": True, "install keystone": True,
                                   "configure keystone": True, "install glance": True}
    for service in SERVICES:
        assert recorder.index(f"install {service} end") < \
            recorder.index(f"configure {service} start")
    for before, after in pairwise(SERVICES):
        assert recorder.index(f"configure {before} end") < \
            recorder.index(f"configure {after} start")
        assert recorder.index(f"install {before} end") < \
            recorder.index(f"install {after} start")


def test_a_node_installs_everything_before_it_waits_for_its_controller(
        monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    """A joining node deploys alongside its controller (MultihostEngine): its packages go in
    while the controller's endpoints are not yet known, and only its configure needs them."""
    events: list[str] = []
    controller: Future[dict[str, Any]] = Future()

    def configure(ctx: Context) -> None:
        events.append(f"configure {ctx.passwords['admin']}")

    recipes = {name: Recipe(name=name, packages=(f"{name}-package",), preseed=(), paths=(),
                            services=(), configure=configure)
               for name in ("mariadb-client", "nova-compute")}
    monkeypatch.setattr(debian, "recipes", lambda: recipes)
    for name in ("check", "record_baseline", "update", "preseed", "download"):
        monkeypatch.setattr(debian.apt, name, lambda *_args, **_kwargs: None)
    monkeypatch.setattr(debian.apt, "missing", lambda _server, packages: packages)

    def install(_server: Server, packages: list[str]) -> None:
        events.append(f"install {' '.join(packages)}")
        controller.set_result({"openstack": {"admin": {"password": "from-controller"},
                                             "auth_url": "http://192.0.2.1:5000/v3"},
                               "servers": [{"host": "192.0.2.1", "user": "root"}]})

    monkeypatch.setattr(debian.apt, "install", install)
    config = {**CONFIG, "services": ["nova-compute"]}
    deployment = Deployment.create("node", config)
    node = debian.DebianEngine(deployment, config, "nodes[0].engine[0]")
    node.parent_endpoints = controller
    # a node that waited for its controller before installing would wait here forever
    with ThreadPoolExecutor(max_workers=1) as pool:
        running = pool.submit(node._install, Server(host="192.0.2.7"))
        try:
            endpoints = running.result(timeout=10)
        finally:
            if not controller.done():
                controller.set_exception(AssertionError("waited before installing"))
    assert events == ["install mariadb-client-package nova-compute-package",
                      "configure from-controller", "configure from-controller"]
    assert endpoints["services"] == ["nova-compute"]
