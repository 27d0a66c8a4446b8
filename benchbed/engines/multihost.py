"""MultihostEngine: a controller engine, then node engines that join it, in the older format.

The controller is deployed first; `{controller_ip}` anywhere in a node's config becomes the
controller's address, and each node engine reads the controller's endpoints (credentials
included) as `parent_endpoints`. A node whose engine can begin without them (an LxcEngine
installing its template) and whose config has no placeholder deploys alongside the
controller, and waits for its endpoints where it needs them. Each node's substituted config
is in the ledger before the node is deployed, so destroy rebuilds and destroys every node
from the ledger alone.
"""

import contextvars
import re
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from benchbed import masking, plugin
from benchbed.deployment import Status
from benchbed.endpoints import Endpoints
from benchbed.engines.base import CheckResult, Engine, engine_class
from benchbed.errors import BenchbedError, ConfigError
from benchbed.ledger import Resource
from benchbed.parallel import run_parallel
from benchbed.plugin import ENGINES, ResourceKind
from benchbed.ports import PeerPort
from benchbed.providers.existing_servers import LOCALHOST_SERVERS
from benchbed.scale import STARTUPS_PER_CONTROLLER_CORE, StartupGate
from benchbed.server import Server
from benchbed.settings import PluginConfig, setting

PLACEHOLDER = "{controller_ip}"
# What node configs are validated with: an address of TEST-NET-1 (RFC 5737), never reached.
VALIDATION_ADDRESS = "192.0.2.1"
# A `{` that opens a placeholder; `${NAME}` is shell syntax (DevStack's localrc) and stays.
PLACEHOLDER_START = re.compile(r"(?<!\$)\{")
NODE_KIND = "node"


class NodeError(BenchbedError):
    """A node failed to deploy; the message names it."""


@dataclass(frozen=True, kw_only=True)
class MultihostEngineConfig(PluginConfig):
    controller: dict[str, Any] = setting("The engine deployed first, whose cloud the nodes "
                                         "join (an engine config).")
    nodes: list[dict[str, Any]] = setting(
        "The engines that join the controller, deployed in parallel; {controller_ip} in "
        "them becomes the controller's address.", minItems=1, maxItems=500)
    computes_starting_at_once: int | None = setting(
        "The most compute nodes that start at once, across every host of the deployment "
        "(each start-up costs the controller); when absent, two per core of the controller's "
        "server.", None, minimum=1, maximum=10000)


class MultihostEngine(Engine[MultihostEngineConfig]):
    """A controller engine, then node engines deployed in parallel that join it."""

    EXAMPLE = {"type": "MultihostEngine",
               "controller": {"type": "ServersEngine", "provider": LOCALHOST_SERVERS},
               "nodes": [{"type": "ServersEngine", "provider": LOCALHOST_SERVERS}]}

    Config = MultihostEngineConfig
    NESTED = {"controller": ENGINES, "nodes": ENGINES}

    @classmethod
    def validation_view(cls, config: dict[str, Any], path: str, *, has_parent: bool = False
                        ) -> dict[str, Any]:
        for index, node in enumerate(config["nodes"]):
            _check_placeholders(node, plugin.join_path(path, "nodes", index))
        return {**config, "nodes": [substitute(node, VALIDATION_ADDRESS)
                                    for node in config["nodes"]]}

    @classmethod
    def child_has_parent(cls, key: str, has_parent: bool) -> bool:
        """Nodes receive the controller's endpoints."""
        return key == "nodes"

    @classmethod
    def validate_config(cls, config: MultihostEngineConfig, path: str, *,
                        has_parent: bool = False) -> None:
        """A node that joins services the controller does not run is refused here, not after
        the controller's install: known when the controller's engine declares the services
        it offers (Engine.offered_services) and compared with what each node's engine
        declares it joins (Engine.joined_services)."""
        controller = engine_class(config.controller)
        offered = controller.offered_services(controller.parse_config(config.controller))
        if offered is None:
            return
        for index, raw in enumerate(config.nodes):
            node = substitute(raw, VALIDATION_ADDRESS)  # as the node was validated
            node_class = engine_class(node)
            missing = sorted(node_class.joined_services(node_class.parse_config(node))
                             - offered)
            if missing:
                raise ConfigError(plugin.join_path(path, "nodes", index),
                                  f"joins the controller's {', '.join(missing)}, which the "
                                  f"controller does not run (it offers "
                                  f"{', '.join(sorted(offered)) or 'nothing'})")

    @classmethod
    def peer_ports(cls, config: MultihostEngineConfig) -> frozenset[PeerPort]:
        """Every port its controller and nodes declare: each server of the deployment may
        need any other's (nodes reach the controller's queue, tunnels run node to node)."""
        found = engine_class(config.controller)
        ports = found.peer_ports(found.parse_config(config.controller))
        for raw in config.nodes:
            node = substitute(raw, VALIDATION_ADDRESS)  # as the node was validated
            found = engine_class(node)
            ports |= found.peer_ports(found.parse_config(node))
        return ports

    @classmethod
    def planned_computes(cls, config: MultihostEngineConfig) -> int:
        """The controller's and every node's."""
        return cls._planned(config.controller) + cls._planned_nodes(config)

    @classmethod
    def _planned_nodes(cls, config: MultihostEngineConfig) -> int:
        """The computes the nodes will run: what joins the controller."""
        return sum(cls._planned(substitute(node, VALIDATION_ADDRESS)) for node in config.nodes)

    @staticmethod
    def _planned(config: dict[str, Any]) -> int:
        found = engine_class(config)
        return found.planned_computes(found.parse_config(config))

    def _startup_limit(self, controller: "Future[Endpoints]") -> int:
        """The config's computes_starting_at_once, else two per core of the controller's
        server (asked once its endpoints are known)."""
        if self.config.computes_starting_at_once:
            return self.config.computes_starting_at_once
        server = Server.from_dict(dict(controller.result()["servers"][0]),
                                  deployment=self.deployment)
        try:
            return STARTUPS_PER_CONTROLLER_CORE * int(server.ssh.run("nproc", timeout=60).stdout)
        finally:
            server.close()

    def _with_peers(self, engine: Engine[Any]) -> Engine[Any]:
        """The controller or a node, told to open the whole deployment's ports to its peers
        (with what a MultihostEngine above this one asked of it)."""
        engine.open_to_peers = self.open_to_peers | self.peer_ports(self.config)
        return engine

    def deploy(self) -> Endpoints:
        """The controller, with the nodes that can start before it (STARTS_BEFORE_PARENT, no
        placeholder) deploying alongside: an LxcEngine installs its template's packages while
        the controller installs its own. The other nodes follow the controller."""
        controller = self._with_peers(self.nest("controller", Engine))
        controller.computes_joining = self._planned_nodes(self.config)
        nodes = list(enumerate(self.config.nodes))
        early = [(index, raw) for index, raw in nodes if _starts_early(raw)]
        early_indexes = {index for index, _ in early}
        ready: Future[Endpoints] = Future()
        # a MultihostEngine that is itself a node shares its parent's gate
        self.startup_gate = self.startup_gate or StartupGate(lambda: self._startup_limit(ready))
        with ThreadPoolExecutor(max_workers=1) as pool:
            early_run = pool.submit(contextvars.copy_context().run, self._deploy_nodes,
                                    early, ready) if early else None
            try:
                with self.deployment.step("deploy controller", controller.raw_config["type"],
                                          lane="controller"):
                    controller_endpoints = controller.deploy()
            except BaseException:
                # the early nodes stop at their wait; leaving the pool waits for them
                ready.set_exception(BenchbedError("the controller failed to deploy"))
                raise
            ready.set_result(controller_endpoints)
            address = controller_address(controller_endpoints)
            self.deployment.set_status(Status.SUBDEPLOY)
            later = [(index, substitute(raw, address)) for index, raw in nodes
                     if index not in early_indexes]
            for index, config in later:
                # validated with VALIDATION_ADDRESS; the real address (a host name, IPv6)
                # may make a value its schema refuses: refused before any node deploys
                plugin.validate(config, ENGINES, self.child_path("nodes", index),
                                has_parent=True)
            failures: list[BaseException] = []
            deployed: dict[int, Endpoints] = {}
            try:
                deployed.update(self._deploy_nodes(later, controller_endpoints))
            except Exception as error:
                failures.append(error)
            if early_run:
                try:
                    deployed.update(early_run.result())
                except Exception as error:
                    failures.append(error)
        if failures:
            raise failures[0] if len(failures) == 1 else NodeError(
                "; ".join(str(failure) for failure in failures))
        node_endpoints = [deployed[index] for index, _ in nodes]
        hosts = [host for endpoints in node_endpoints
                 for host in endpoints.get("compute_hosts", [])]
        if hosts:
            controller.endpoints = controller_endpoints
            with self.deployment.step("map compute nodes", f"{len(hosts)} into the cell",
                                      lane="controller"):
                controller.map_computes(hosts)
        return {**controller_endpoints, "controller_ip": address, "nodes": node_endpoints}

    def _deploy_nodes(self, nodes: list[tuple[int, dict[str, Any]]],
                      controller: "Endpoints | Future[Endpoints]") -> dict[int, Endpoints]:
        """Deploy these (substituted) node configs in parallel; endpoints by node index."""
        def deploy_node(item: tuple[int, dict[str, Any]]) -> Endpoints:
            index, config = item
            path = self.child_path("nodes", index)
            with self.ledger.creating(NODE_KIND, path, config=config):
                node = self._node(path, config, controller)
                try:
                    with self.deployment.step("deploy node", f"{path} {config['type']}",
                                              lane=path):
                        return node.deploy()
                except Exception as error:
                    raise NodeError(f"{config['type']}: {error}") from None

        endpoints = run_parallel("deploying nodes", nodes, deploy_node,
                                 describe=lambda item: f"nodes[{item[0]}]")
        return {index: found for (index, _), found in zip(nodes, endpoints, strict=True)}

    def _node(self, path: str, config: dict[str, Any],
              controller_endpoints: "Endpoints | Future[Endpoints] | None") -> Engine[Any]:
        node = self._with_peers(plugin.build(self.deployment, config, Engine, ENGINES, path))
        node.parent_endpoints = controller_endpoints
        node.startup_gate = self.startup_gate
        return node

    def teardown(self) -> None:
        """Nodes first (from the configs in the ledger, in parallel), then the controller."""
        self.delete_recorded()
        self.nest("controller", Engine).teardown()

    def _destroy_node(self, resource: Resource) -> None:
        self._node(resource.name, resource.data["config"], _controller_part(self.endpoints)
                   or None).cleanup()

    def _deployed(self) -> tuple[Engine, list[tuple[str, Engine]]]:
        """The controller and each (path, node) engine of a deployed tree, with the endpoints
        each recorded, for the verbs that ask them after `deploy`."""
        controller = self.nest("controller", Engine)
        controller.endpoints = _controller_part(self.endpoints)
        address = self.endpoints.get("controller_ip", "")
        nodes = []
        for index, endpoints in enumerate(self.endpoints.get("nodes", [])):
            path = self.child_path("nodes", index)
            node = self._node(path, substitute(self.config.nodes[index], address),
                              controller.endpoints)
            node.endpoints = endpoints
            nodes.append((path, node))
        return controller, nodes

    def check(self) -> list[CheckResult]:
        controller, nodes = self._deployed()
        results = [CheckResult(f"controller: {r.target}", r.ok, r.detail)
                   for r in controller.check()]
        for path, node in nodes:
            results += [CheckResult(f"{path}: {r.target}", r.ok, r.detail)
                        for r in node.check()]
        return results

    def deployed_versions(self) -> dict[str, str]:
        """The controller's, then each node's; a node's version that differs from the
        controller's of the same name is kept under the node's path."""
        controller, nodes = self._deployed()
        versions = controller.deployed_versions()
        for path, node in nodes:
            for name, version in node.deployed_versions().items():
                versions[name if versions.setdefault(name, version) == version
                         else f"{path}: {name}"] = version
        return versions

    RESOURCES = {NODE_KIND: ResourceKind(delete=_destroy_node)}


def substitute(config: Any, address: str) -> Any:
    """The node config with every `{controller_ip}` replaced, in keys and values alike."""
    if isinstance(config, dict):
        return {substitute(key, address): substitute(value, address)
                for key, value in config.items()}
    if isinstance(config, list):
        return [substitute(item, address) for item in config]
    if isinstance(config, str):
        return config.replace(PLACEHOLDER, address)
    return config


def _starts_early(node: dict[str, Any]) -> bool:
    """Whether a node can deploy alongside its controller: its engine waits for the
    controller's endpoints itself, and its config has no placeholder to fill first."""
    return engine_class(node).STARTS_BEFORE_PARENT and \
        substitute(node, VALIDATION_ADDRESS) == node


def _check_placeholders(config: Any, path: str, secret: bool = False) -> None:
    """Refuse `{controler_ip}`, `{controller_ip` and other braces that name nothing; the
    message quotes what it found unless the value is a secret (a password with a `{`)."""
    if isinstance(config, dict):
        for key, value in config.items():
            _check_placeholders(key, path)
            _check_placeholders(value, plugin.join_path(path, str(key)),
                                secret or masking.is_secret_key(str(key)))
    elif isinstance(config, list):
        for index, item in enumerate(config):
            _check_placeholders(item, f"{path}[{index}]", secret)
    elif isinstance(config, str):
        for match in PLACEHOLDER_START.finditer(config):
            if not config.startswith(PLACEHOLDER, match.start()):
                found = "(not shown: the value is a secret)" if secret else \
                    f"near '{config[match.start():match.start() + len(PLACEHOLDER) + 4]}'"
                raise ConfigError(path, f"malformed placeholder {found}: the only one is "
                                  f"{PLACEHOLDER}")


def _controller_part(endpoints: Endpoints) -> Endpoints:
    """A MultihostEngine's endpoints without its own keys: its controller's."""
    part = endpoints.copy()
    part.pop("nodes", None)
    part.pop("controller_ip", None)
    return part


def controller_address(endpoints: Endpoints) -> str:
    """The controller's address: its first server's, else the host of its Keystone URL."""
    servers = endpoints.get("servers") or []
    if servers:
        return servers[0]["host"]
    cloud = endpoints.get("openstack")
    hostname = urlsplit(cloud["auth_url"]).hostname if cloud else None
    if hostname:
        return hostname
    raise BenchbedError("the controller's endpoints name no server and no Keystone URL: "
                        "there is no address to give the nodes")
