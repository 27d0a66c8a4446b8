"""MultihostEngine: a controller engine, then node engines that join it, in the older format.

The controller is deployed first; `{controller_ip}` anywhere in a node's config becomes the
controller's address, and each node engine reads the controller's endpoints (credentials
included) as `parent_endpoints`. Each node's substituted config is in the ledger before the
node is deployed, so destroy rebuilds and destroys every node from the ledger alone.
"""

import re
from typing import Any
from urllib.parse import urlsplit

from benchbed import plugin
from benchbed.deployment import Status
from benchbed.engines.base import CheckResult, Engine
from benchbed.errors import BenchbedError, ConfigError
from benchbed.ledger import Resource
from benchbed.parallel import run_parallel
from benchbed.plugin import ENGINES, ResourceKind

PLACEHOLDER = "{controller_ip}"
# What node configs are validated with: an address of TEST-NET-1 (RFC 5737), never reached.
VALIDATION_ADDRESS = "192.0.2.1"
# A `{` that opens a placeholder; `${NAME}` is shell syntax (DevStack's localrc) and stays.
PLACEHOLDER_START = re.compile(r"(?<!\$)\{")
NODE_KIND = "node"


class NodeError(BenchbedError):
    """A node failed to deploy; the message names it."""


class MultihostEngine(Engine):
    """A controller engine, then node engines deployed in parallel that join it."""

    CONFIG_SCHEMA = {
        "type": "object",
        "properties": {
            "type": {"const": "MultihostEngine"},
            "controller": {"type": "object"},
            "nodes": {"type": "array", "items": {"type": "object"}, "minItems": 1,
                      "maxItems": 500},
        },
        "required": ["type", "controller", "nodes"],
        "additionalProperties": False,
    }
    NESTED = {"controller": ENGINES, "nodes": ENGINES}
    RESOURCES = {NODE_KIND: ResourceKind(delete="_destroy_node")}

    @classmethod
    def validation_view(cls, config: dict[str, Any], path: str) -> dict[str, Any]:
        for index, node in enumerate(config["nodes"]):
            _check_placeholders(node, plugin.join_path(path, "nodes", index))
        return {**config, "nodes": [substitute(node, VALIDATION_ADDRESS)
                                    for node in config["nodes"]]}

    @classmethod
    def check_config(cls, config: dict[str, Any], path: str) -> None:
        """A node that joins services the controller does not run is refused here, not after
        the controller's install: known for a DebianEngine controller, whose services say."""
        controller = config["controller"]
        if controller["type"] != "DebianEngine":
            return
        offered = set(controller.get("services", []))
        for index, node in enumerate(config["nodes"]):
            missing = sorted(_joins(node) - offered)
            if missing:
                raise ConfigError(plugin.join_path(path, "nodes", index),
                                  f"joins the controller's {', '.join(missing)}, which "
                                  f"controller.services does not include: add it there")

    def deploy(self) -> dict[str, Any]:
        controller = self.nest("controller")
        with self.deployment.step("deploy controller", controller.config["type"],
                                  lane="controller"):
            controller_endpoints = controller.deploy()
        address = controller_address(controller_endpoints)
        self.deployment.set_status(Status.SUBDEPLOY)
        nodes = list(enumerate(self.config["nodes"]))

        def deploy_node(item: tuple[int, dict[str, Any]]) -> dict[str, Any]:
            index, raw = item
            path = self.child_path("nodes", index)
            config = substitute(raw, address)
            with self.ledger.creating(NODE_KIND, path, config=config):
                node = self._node(path, config, controller_endpoints)
                try:
                    with self.deployment.step("deploy node", f"{path} {config['type']}",
                                              lane=path):
                        return node.deploy()
                except Exception as error:
                    raise NodeError(f"{config['type']}: {error}") from None

        node_endpoints = run_parallel("deploying nodes", nodes, deploy_node,
                                      describe=lambda item: f"nodes[{item[0]}]")
        return {**controller_endpoints, "controller_ip": address, "nodes": node_endpoints}

    def _node(self, path: str, config: dict[str, Any],
              controller_endpoints: dict[str, Any] | None) -> Engine:
        node = plugin.build(self.deployment, config, ENGINES, path)
        node.parent_endpoints = controller_endpoints  # type: ignore[attr-defined]
        return node  # type: ignore[return-value]

    def cleanup(self) -> None:
        """Nodes first (from the configs in the ledger, in parallel), then the controller."""
        self.destroy_resources()
        self.nest("controller").teardown()

    def _destroy_node(self, resource: Resource) -> None:
        controller = {key: value for key, value in self.endpoints.items() if key != "nodes"}
        self._node(resource.name, resource.data["config"], controller or None).cleanup()

    def check(self) -> list[CheckResult]:
        controller = self.nest("controller")
        controller.endpoints = {k: v for k, v in self.endpoints.items()  # type: ignore[attr-defined]
                                if k not in ("nodes", "controller_ip")}
        results = [CheckResult(f"controller: {r.target}", r.ok, r.detail)
                   for r in controller.check()]  # type: ignore[attr-defined]
        address = self.endpoints.get("controller_ip", "")
        for index, endpoints in enumerate(self.endpoints.get("nodes", [])):
            path = self.child_path("nodes", index)
            node = self._node(path, substitute(self.config["nodes"][index], address),
                              controller.endpoints)  # type: ignore[attr-defined]
            node.endpoints = endpoints
            results += [CheckResult(f"{path}: {r.target}", r.ok, r.detail)
                        for r in node.check()]
        return results


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


def _joins(node: dict[str, Any]) -> set[str]:
    """The controller's services a (validated) node config joins: what its DebianEngine
    services need, also inside an LxcEngine."""
    from benchbed.engines.debian import NEEDS

    if node["type"] == "LxcEngine":
        return _joins(node["engine"])
    if node["type"] != "DebianEngine":
        return set()
    return {need for service in node.get("services", []) for need in NEEDS.get(service, ())}


def _check_placeholders(config: Any, path: str) -> None:
    """Refuse `{controler_ip}`, `{controller_ip` and other braces that name nothing."""
    if isinstance(config, dict):
        for key, value in config.items():
            _check_placeholders(key, path)
            _check_placeholders(value, plugin.join_path(path, str(key)))
    elif isinstance(config, list):
        for index, item in enumerate(config):
            _check_placeholders(item, f"{path}[{index}]")
    elif isinstance(config, str):
        for match in PLACEHOLDER_START.finditer(config):
            if not config.startswith(PLACEHOLDER, match.start()):
                found = config[match.start():match.start() + len(PLACEHOLDER) + 4]
                raise ConfigError(path, f"malformed placeholder near '{found}': the only one "
                                  f"is {PLACEHOLDER}")


def controller_address(endpoints: dict[str, Any]) -> str:
    """The controller's address: its first server's, else the host of its Keystone URL."""
    servers = endpoints.get("servers") or []
    if servers:
        return servers[0]["host"]
    auth_url = (endpoints.get("openstack") or {}).get("auth_url")
    if auth_url and urlsplit(auth_url).hostname:
        return urlsplit(auth_url).hostname  # type: ignore[return-value]
    raise BenchbedError("the controller's endpoints name no server and no Keystone URL: "
                        "there is no address to give the nodes")
