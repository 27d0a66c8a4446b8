"""FuelEngine: OpenStack deployed by a Fuel master's Nailgun API (the older tool's config).

A deployment: find the release, choose free discovered nodes by role and filter (refused
before anything is created when too few match), create the cluster (in the ledger first),
assign the nodes in one request, merge and verify the network configuration, apply the
changes and follow the deploy task phase by phase. The endpoints have ExistingCloud's shape.
"""

import ipaddress
import re
import time
from contextlib import ExitStack
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal
from urllib.parse import urlsplit

from benchbed.clients.nailgun import (
    Backoff,
    NailgunClient,
    NailgunError,
    NailgunNotFound,
    TaskFailed,
)
from benchbed.endpoints import Endpoints, stored
from benchbed.engines.base import CheckResult, Engine
from benchbed.engines.existing_cloud import normalize_cloud
from benchbed.engines.fuel_nodes import NodeGroup, choose_nodes, role_filters
from benchbed.errors import BenchbedError, ConfigError
from benchbed.ledger import Resource
from benchbed.parallel import percent_progress
from benchbed.plugin import ResourceKind, join_path
from benchbed.settings import PluginConfig, Section, setting

CLUSTER_KIND = "fuel-cluster"
CLEANUP_TIMEOUT = 1800
ROLES = ("controller", "compute", "cinder", "ceph-osd", "mongo", "base-os", "virt", "ironic")
NETWORK_NAMES = ("public", "floating", "management", "storage", "fixed", "private", "baremetal")
# a role group: roles joined by + (cinder+compute)
ROLE_GROUP = r"^[a-z][a-z-]*(\+[a-z][a-z-]*)*$"
IP_STRING: dict[str, Any] = {"type": "string", "maxLength": 45}


@dataclass(frozen=True, kw_only=True)
class FuelNetwork(Section):
    """One of the cluster's networks; what is given replaces Nailgun's own value."""

    cidr: str | None = setting("The network, in CIDR form.", None, maxLength=45)
    gateway: str | None = setting("Its gateway's address.", None, maxLength=45)
    ip_ranges: list[list[str]] | None = setting(
        "Ranges of addresses Fuel may give out, each [first, last].", None,
        items={"type": "array", "items": IP_STRING, "minItems": 2, "maxItems": 2})
    vlan_start: int | None = setting("Its VLAN tag (null: untagged).", None,
                                     schema={"type": ["integer", "null"], "minimum": 1,
                                             "maximum": 4094})


@dataclass(frozen=True, kw_only=True)
class FuelKeystone(Section):
    """The Fuel master's Keystone, for a master that requires a token (Fuel 6.1 and later)."""

    auth_url: str = setting("The master's Keystone URL.", pattern="^https?://[^\\s]+$")
    username: str = setting("The user's name.", minLength=1)
    password: str = setting("The user's password.", secret=True)
    project_name: str | None = setting("The project (default: tenant_name, else admin).", None)
    tenant_name: str | None = setting("The project, as Keystone v2 named it.", None)
    user_domain_name: str = setting("The user's domain.", "Default")
    project_domain_name: str = setting("The project's domain.", "Default")


@dataclass(frozen=True, kw_only=True)
class FuelEngineConfig(PluginConfig):
    deploy_name: str = setting("The name of the cluster created in Nailgun.", minLength=1,
                               maxLength=100, pattern=r"^[^\x00-\x1f\x7f]+$")
    release: str = setting("The name of the Nailgun release to deploy.", minLength=1,
                           maxLength=100)
    api_url: str = setting("The Nailgun API's URL, e.g. http://10.20.0.2:8000/api/v1/.",
                           maxLength=500)
    mode: Literal["multinode", "ha_compact", "ha_full"] = setting("The deployment mode.")
    net_provider: Literal["nova_network", "neutron"] = setting("The network provider.")
    net_segment_type: Literal["gre", "vlan", "tun"] = setting(
        "How Neutron segments tenant networks.", "gre")
    dns_nameservers: list[str] = setting("The cluster's DNS servers (default: Nailgun's).",
                                         [], maxItems=8, items=IP_STRING)
    networks: dict[str, FuelNetwork] = setting(
        f"The cluster's networks by name ({', '.join(NETWORK_NAMES)}), merged into "
        f"Nailgun's configuration.", additionalProperties=False,
        properties={name: FuelNetwork.json_schema() for name in NETWORK_NAMES})
    nodes: dict[str, NodeGroup] = setting(
        "The nodes by role group (controller, compute, cinder+compute, ...); a controller "
        "and a compute are required.", required=["controller"], additionalProperties=False,
        patternProperties={ROLE_GROUP: NodeGroup.json_schema()})
    timeout: float = setting("Seconds the whole deployment may take.", 7200,
                             exclusiveMinimum=0, maximum=172800)
    token: str | None = setting("A Nailgun token (a master without Keystone needs none).",
                                None, secret=True, minLength=1)
    keystone: FuelKeystone | None = setting("Credentials to get a token from the master's "
                                            "Keystone, instead of `token`.", None)
    https_insecure: bool = setting("Do not verify the master's or the cloud's TLS "
                                   "certificates.", False)
    https_cacert: str | None = setting("A CA bundle (PEM file) to verify the master's and the "
                                       "cloud's TLS certificates with (Fuel 7.0 turns TLS on "
                                       "for the public endpoints, with a self-signed "
                                       "certificate).", None, minLength=1, maxLength=4096)


def check_api_url(url: str, path: str) -> None:
    parts = urlsplit(url)
    if (parts.scheme not in ("http", "https") or not parts.hostname or parts.username
            or parts.query or parts.fragment or re.search(r"[\s'\"\\`$;<>]", url)):
        raise ConfigError(path, f"{url!r} is not a Nailgun URL like "
                                f"http://10.20.0.2:8000/api/v1/")
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ConfigError(path, f"{url!r} has an invalid port") from None


def check_cacert(path: str, where: str) -> None:
    """The CA bundle must be a readable file with at least one PEM certificate."""
    import ssl

    try:
        ssl.create_default_context(cafile=path)
    except FileNotFoundError:
        raise ConfigError(where, f"{path!r} does not exist") from None
    except (OSError, ssl.SSLError, ValueError) as error:
        raise ConfigError(where, f"{path!r} is not a CA bundle in PEM form "
                                 f"({error.__class__.__name__})") from None


def check_networks(networks: dict[str, FuelNetwork], path: str = "") -> None:
    for name, network in networks.items():
        where = join_path(path, f"networks.{name}")
        try:
            if network.cidr is not None:
                ipaddress.ip_network(network.cidr, strict=False)
            if network.gateway:
                ipaddress.ip_address(network.gateway)
            for index, (first, last) in enumerate(network.ip_ranges or []):
                low, high = ipaddress.ip_address(first), ipaddress.ip_address(last)
                if low.version != high.version:
                    raise ConfigError(where, f"{low} and {high} are not of the same version")
                if int(low) > int(high):
                    raise ConfigError(f"{where}.ip_ranges[{index}]", "first address is after "
                                                                    "the last")
        except ValueError as error:
            raise ConfigError(where, str(error)) from None


class FuelEngine(Engine[FuelEngineConfig]):
    """OpenStack deployed by a Fuel master through its Nailgun API."""

    EXAMPLE = {
        "type": "FuelEngine", "deploy_name": "bench", "release": "Havana on CentOS 6.4",
        "api_url": "http://192.0.2.2:8000/api/v1/", "mode": "multinode",
        "net_provider": "nova_network", "networks": {},
        "nodes": {"controller": {"amount": 1}, "compute": {"amount": 1}}}

    Config = FuelEngineConfig

    @classmethod
    def validate_config(cls, config: FuelEngineConfig, path: str, *,
                        has_parent: bool = False) -> None:
        check_api_url(config.api_url, join_path(path, "api_url"))
        if config.https_cacert is not None:
            check_cacert(config.https_cacert, join_path(path, "https_cacert"))
        if config.token is not None and config.keystone is not None:
            raise ConfigError(join_path(path, "token"),
                              "give either a token or keystone credentials, not both")
        for group in config.nodes:
            for role in group.split("+"):
                if role not in ROLES:
                    raise ConfigError(join_path(path, f"nodes.{group}"), f"unknown role "
                                      f"'{role}' (known: {', '.join(ROLES)})")
        if not any("compute" in group.split("+") for group in config.nodes):
            raise ConfigError(join_path(path, "nodes"), "at least one compute is required "
                                                        "(compute or cinder+compute)")
        role_filters(config.nodes, path)
        check_networks(config.networks, path)
        for index, server in enumerate(config.dns_nameservers):
            try:
                ipaddress.ip_address(server)
            except ValueError:
                raise ConfigError(join_path(path, "dns_nameservers", index),
                                  f"{server!r} is not an IP address") from None

    def _client(self) -> NailgunClient:
        verify: bool | str = not self.config.https_insecure
        if verify and self.config.https_cacert:
            verify = self.config.https_cacert
        return NailgunClient(self.config.api_url, token=self.config.token,
                             keystone=self.config.keystone, verify=verify)

    def deploy(self) -> Endpoints:
        timeout = float(self.config.timeout)
        deadline = time.monotonic() + timeout
        client = self._client()
        step = self.deployment.step
        version = client.version()
        fuel = str(version["release"])
        with step("Nailgun", f"Fuel {fuel} at {self.config.api_url}"):
            self.deployment.logger.info("Nailgun at %s is Fuel %s (auth required: %s)",
                                        self.config.api_url, fuel,
                                        version.get("auth_required", "no"))
        with step("find release", self.config.release):
            release = self._release(client)
            self._check_public_tls(release)
        with step("choose nodes"):
            chosen = choose_nodes(self.config.nodes, [
                node for node in client.free_nodes()
                if node.get("online", True) and node.get("status") == "discover"], self.path)
        name = self.config.deploy_name
        if self._cluster_named(client, name) is not None:
            raise ConfigError(self.child_path("deploy_name"),
                              f"Nailgun already has a cluster named {name!r}")
        with self.ledger.creating(CLUSTER_KIND, name, api_url=self.config.api_url) as row, \
                step("create cluster", name):
            cluster = self._create_cluster(client, row, release["id"])
        cluster_id = cluster["id"]
        with step("assign nodes", _describe_roles(chosen)):
            client.assign_nodes(cluster_id, {node["id"]: group.split("+")
                                             for group, nodes in chosen.items()
                                             for node in nodes})
        provider = self.config.net_provider
        with step("verify networks"):
            networks = self._networks(client.network_configuration(cluster_id, provider))
            task = client.verify_networks(cluster_id, provider, networks)
            self._follow(client, task, "network verification", deadline, timeout)
        with step("save networks"):
            client.save_networks(cluster_id, provider, networks)
        task = client.deploy_changes(cluster_id)
        self._follow(client, task, "deployment", deadline, timeout, cluster_id=cluster_id)
        return self._cloud_endpoints(client, cluster_id, fuel)

    def _check_public_tls(self, release: dict[str, Any]) -> None:
        """A release that turns TLS on for the public endpoints by default (7.0's
        `public_ssl.services`, with a certificate Fuel signs itself) needs a CA to verify the
        cloud with, or `https_insecure`: refused before anything is created."""
        editable = (release.get("attributes_metadata") or {}).get("editable") or {}
        services = ((editable.get("public_ssl") or {}).get("services") or {}).get("value")
        if services and not self.config.https_cacert and not self.config.https_insecure:
            raise ConfigError(self.child_path("https_cacert"), f"release {release['name']!r} "
                              f"puts the public endpoints behind TLS with a self-signed "
                              f"certificate: give its CA (https_cacert) or https_insecure")

    def _create_cluster(self, client: NailgunClient, row: Resource, release_id: int
                        ) -> dict[str, Any]:
        """POST the cluster; its id goes to the ledger at once. A refusal (4xx) created
        nothing, and the row says so: destroy must not take a same-named cluster for ours."""
        try:
            cluster = client.create_cluster({
                "name": row.name, "release": release_id, "release_id": release_id,
                "mode": self.config.mode, "net_provider": self.config.net_provider,
                "net_segment_type": self.config.net_segment_type})
        except NailgunError as error:
            if error.status is not None and 400 <= error.status < 500:
                row.data["refused"] = True
                self.ledger.update(row)
            raise
        row.data["cluster_id"] = cluster["id"]
        self.ledger.update(row)
        return cluster

    def _release(self, client: NailgunClient) -> dict[str, Any]:
        releases = client.releases()
        release = next((r for r in releases if r["name"] == self.config.release), None)
        if release is None:
            known = ", ".join(repr(r["name"]) for r in releases) or "none"
            raise ConfigError(self.child_path("release"), f"Nailgun has no release "
                              f"{self.config.release!r} (it has: {known})")
        modes = list(release.get("modes_metadata") or {}) or release.get("modes") or []
        if modes and self.config.mode not in modes:
            raise ConfigError(self.child_path("mode"), f"release {release['name']!r} cannot "
                              f"deploy in {self.config.mode} mode (it offers: "
                              f"{', '.join(modes)})")
        return release

    def _networks(self, current: dict[str, Any]) -> dict[str, Any]:
        """The cluster's network configuration with the config's networks and DNS merged in.

        The networks go to Nailgun as the user wrote them (the raw mapping): a null
        vlan_start (untagged) must not be confused with one not given (Nailgun's own)."""
        wanted: dict[str, dict[str, Any]] = self.raw_config["networks"]
        parameters = current.setdefault("networking_parameters", {})
        names = {network["name"] for network in current.get("networks", [])}
        for network in current.get("networks", []):
            network.update(wanted.get(network["name"], {}))
        if "floating" in wanted and "floating" not in names and wanted["floating"].get(
                "ip_ranges"):
            parameters["floating_ranges"] = wanted["floating"]["ip_ranges"]
        if self.config.dns_nameservers:
            parameters["dns_nameservers"] = list(self.config.dns_nameservers)
        return current

    def _follow(self, client: NailgunClient, task: dict[str, Any], what: str, deadline: float,
                timeout: float, cluster_id: int | None = None) -> None:
        """Poll a task to its end; the deploy task's subtasks become timeline steps."""
        phases = _Phases(self.deployment)
        with percent_progress(what) as progress, phases:
            try:
                for current in client.poll_task(task, deadline=deadline, what=what,
                                                timeout=timeout):
                    progress(int(current.get("progress") or 0))
                    if cluster_id is not None:
                        phases.enter(_phase(client.tasks(cluster_id), current["id"]))
            except TaskFailed:
                # polls back off, so the phase that failed may never have been seen running
                if cluster_id is not None:
                    phases.enter(_phase(client.tasks(cluster_id), task["id"]))
                raise

    def _cloud_endpoints(self, client: NailgunClient, cluster_id: int, fuel: str
                         ) -> Endpoints:
        editable = client.attributes(cluster_id)["editable"]
        access = editable["access"]
        ssl = editable.get("public_ssl") or {}
        address = self._public_address(client, cluster_id)
        if (ssl.get("services") or {}).get("value"):
            auth_url = f"https://{(ssl.get('hostname') or {}).get('value') or address}:5000/v3"
        else:
            auth_url = f"http://{_host(address)}:5000/v3"
        cloud = normalize_cloud({
            "auth_url": auth_url, "region_name": "RegionOne", "endpoint_type": "public",
            "https_insecure": self.config.https_insecure,
            "https_cacert": self.config.https_cacert,
            "admin": {"username": access["user"]["value"],
                      "password": access["password"]["value"],
                      "project_name": access["tenant"]["value"]}})
        return stored({**cloud, "fuel": {"api_url": self.config.api_url, "cluster_id": cluster_id,
                                  "mode": self.config.mode, "release": fuel}})

    def _public_address(self, client: NailgunClient, cluster_id: int) -> str:
        """The public VIP (HA modes) or the controller's public address (multinode)."""
        if self.config.mode.startswith("ha_"):
            networks = client.network_configuration(cluster_id, self.config.net_provider)
            vip = ((networks.get("vips") or {}).get("public") or {}).get("ipaddr")
            if vip or networks.get("public_vip"):
                return vip or networks["public_vip"]
        for node in client.nodes(cluster_id):
            if "controller" in node.get("roles", []):
                for network in node.get("network_data") or []:
                    if network.get("name") == "public" and network.get("ip"):
                        return network["ip"].split("/")[0]
        raise BenchbedError(f"Nailgun shows no public address for cluster {cluster_id}'s "
                            f"controller")

    def _cluster_exists(self, resource: Resource) -> bool:
        cluster_id = resource.data.get("cluster_id")
        if cluster_id is None:
            return False
        try:
            self._client().cluster(cluster_id)
        except NailgunNotFound:
            return False
        return True

    def _delete_cluster(self, resource: Resource) -> None:
        """Stop a deployment still running, delete the cluster, wait for its nodes to return
        to discovery; a cluster that is not there (404, or never created) is gone."""
        client = self._client()
        if resource.data.get("refused"):
            return
        cluster_id = resource.data.get("cluster_id") or self._cluster_named(client,
                                                                           resource.name)
        if cluster_id is None:
            return
        deadline = time.monotonic() + CLEANUP_TIMEOUT
        try:
            macs = {node["mac"].lower() for node in client.nodes(cluster_id)}
            if any(t["status"] in ("pending", "running") and t["name"] in (
                    "deploy", "provision", "deployment") for t in client.tasks(cluster_id)):
                with self.deployment.step("stop deployment", f"cluster {cluster_id}"):
                    self._follow(client, client.stop_deployment(cluster_id), "stop deployment",
                                 deadline, CLEANUP_TIMEOUT)
            task = client.delete_cluster(cluster_id)
        except NailgunNotFound:
            return
        with self.deployment.step("wait for nodes to return to discovery", f"{len(macs)}"):
            self._wait_released(client, cluster_id, task, macs, deadline)

    def _wait_released(self, client: NailgunClient, cluster_id: int, task: dict[str, Any] | None,
                       macs: set[str], deadline: float) -> None:
        """Until the cluster is gone and its nodes have come back in discovery (they reboot
        into the bootstrap image first: minutes on a real master), polling with backoff.
        `task` is the deletion task that Nailgun returns from 9.0 (None before)."""
        backoff = Backoff(deadline)
        while True:
            if task is not None:
                try:
                    task = client.task(task["id"])
                except NailgunNotFound:
                    task = None  # Nailgun drops the deletion task with the cluster
                else:
                    if task["status"] == "error":
                        raise BenchbedError(f"Nailgun could not delete cluster {cluster_id}: "
                                            f"{task.get('message') or 'no message'}")
            try:
                client.cluster(cluster_id)
                gone = False
            except NailgunNotFound:
                gone = True
            free = {node["mac"].lower() for node in client.free_nodes()
                    if node.get("status") == "discover"}
            if gone and macs <= free:
                return
            if time.monotonic() >= deadline:
                raise BenchbedError(f"cluster {cluster_id} was not deleted with its nodes "
                                    f"back in discovery within {CLEANUP_TIMEOUT}s")
            backoff.sleep()

    RESOURCES = {CLUSTER_KIND: ResourceKind(delete=_delete_cluster, exists=_cluster_exists)}

    @staticmethod
    def _cluster_named(client: NailgunClient, name: str) -> int | None:
        """A cluster whose id was never saved (killed right after POST): found by name."""
        return next((c["id"] for c in client.clusters() if c["name"] == name), None)

    def check(self) -> list[CheckResult]:
        from benchbed.engines.keystone_check import check_cloud

        return check_cloud(self.endpoints["openstack"])


class _Phases:
    """The deploy task's running subtask (provision, then deployment) as a timeline step."""

    def __init__(self, deployment: Any) -> None:
        self.deployment = deployment
        self.current: str | None = None
        self.stack = ExitStack()

    def enter(self, phase: str | None) -> None:
        if phase is None or phase == self.current:
            return
        self.stack.close()
        self.stack = ExitStack()
        self.stack.enter_context(self.deployment.step(phase))
        self.current = phase

    def __enter__(self) -> "_Phases":
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stack.__exit__(kind, error, traceback)


def _phase(tasks: list[dict[str, Any]], parent_id: int) -> str | None:
    """The deploy task's running phase. Task records have `parent_id` only from Fuel 10.0
    (objects/serializers/task.py); before, the cluster's provision and deployment tasks are
    those of its one deploy task (TaskManager removes a cluster's old ones)."""
    if any("parent_id" in t for t in tasks):
        subtasks = [t for t in tasks if t.get("parent_id") == parent_id]
    else:
        subtasks = tasks
    for name in ("provision", "deployment"):
        if any(t["name"] == name and t["status"] != "ready" for t in subtasks):
            return name
    return None


def _describe_roles(chosen: dict[str, list[dict[str, Any]]]) -> str:
    return ", ".join(f"{group}: {', '.join(str(n['id']) for n in nodes)}"
                     for group, nodes in chosen.items())


def _host(address: str) -> str:
    return f"[{address}]" if ":" in address else address
