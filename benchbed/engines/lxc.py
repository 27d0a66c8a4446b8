"""LxcEngine: many compute nodes on few servers, as LXC containers cloned from one prepared one.

The older tool's format: `provider` gives the servers (hosts), `engine` is the config of
the engine that makes one node, `nodes_per_server` how many nodes each host runs. On each
host the engine is deployed once, into a template container; that container is stopped
and `nodes_per_server` clones are stacked on its files (overlayfs: nothing is copied, and
the packages' files are in the page cache once), each with its own hostname (Nova's
`host`), machine-id, host key and address, started in parallel. N nodes cost one install
plus N clones and boots. The template's own compute service leaves Nova before it stops.

The clones boot with nova-compute held back: many clones starting it during their boots
compete with the boots for the CPU (each start costs seconds of CPU), and clones went silent
on SSH for a long time. Once every clone answers SSH with its own identity, nova-compute
starts on at most two per host core at a time (its unit returns once the service has
reported in), and across all hosts no more at once than the deployment's start-up gate lets
through (MultihostEngine's computes_starting_at_once: two per core of the controller); once
every node is up, the MultihostEngine maps them all into the cell with one discover_hosts.
The figures are in the benchmarks of the docs.

It is a MultihostEngine node: the nodes join the controller's Nova, Placement and
RabbitMQ (the inner engine's `parent_endpoints`), and all run `nova-compute` with the fake
driver. What is engine-specific (holding the template's services back, making a clone its
own node, mapping the hosts into the cell) the inner engine does: Engine.hold_for_clones,
start_clone and join_computes (DebianEngine: nova-compute held at boot; DevstackEngine: the
clone resumed as from a snapshot, with its own OVN chassis). It deploys alongside the
controller: the template's packages go in while the controller installs, and the inner
engine waits for the controller's endpoints.
"""

import ipaddress
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Literal

from benchbed import plugin
from benchbed.endpoints import Endpoints
from benchbed.engines.base import CheckResult, Engine, engine_class
from benchbed.errors import BenchbedError, ConfigError, UnreachableError, unreachable_hosts
from benchbed.hostnet.bridge import PROXY_PATTERN, static_capacity
from benchbed.hostnet.routes import ROUTINGS, Slice
from benchbed.images.lxc import (
    DEFAULT_RELEASE,
    LxcImageStore,
    copy_image,
    resolve_image,
    source_of,
)
from benchbed.networks import parse_ipv4_network
from benchbed.parallel import run_parallel
from benchbed.plugin import ENGINES, PROVIDERS
from benchbed.ports import PeerPort
from benchbed.providers.existing_servers import LOCALHOST_SERVERS
from benchbed.providers.lxc import (
    DEFAULT_NETWORK,
    LxcProvider,
    host_network,
    stop_container,
)
from benchbed.server import Server
from benchbed.settings import PluginConfig, setting

NODE_SERVICES = ["nova-compute"]
# Resident memory of these processes is what a compute node costs.
NODE_PROCESSES = "nova-compute"
# nova-compute start-ups at once per host core: one computing, one waiting on the controller
STARTS_PER_CORE = 2
# What a server says it is: hostname, machine-id, SSH host key, its IPv4 addresses
IDENTITY = ("hostname; cat /etc/machine-id; cut -d' ' -f1,2 /etc/ssh/ssh_host_ed25519_key.pub;"
            " ip -4 -o addr show scope global | awk '{print $4}'")


@dataclass(frozen=True)
class Identity:
    """What makes a clone itself rather than a copy of its template."""

    hostname: str
    machine_id: str
    host_key: str
    addresses: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class LxcEngineConfig(PluginConfig):
    provider: dict[str, Any] = setting("The hosts that run the containers: ExistingServers "
                                       "with their credentials.")
    engine: dict[str, Any] = setting("The engine that makes one compute node, deployed into "
                                     "the template container of each host (LxcEngine gives "
                                     "its provider).")
    distribution: Literal["debian"] = setting("The containers' distribution.", "debian")
    container_name: str = setting("Prefix of the containers' names on each host.",
                                  "benchbed-compute", pattern="^[a-z][a-z0-9-]{0,23}$")
    nodes_per_server: int = setting("How many compute nodes (clones) each host runs.", 1,
                                    minimum=1)
    start_lxc_network: str = setting("IPv4 network (CIDR) that each host's container network "
                                     "is a slice of, host 0 first.", DEFAULT_NETWORK)
    routing: str = setting(
        "How the hosts forward between their slices and to the rest of the deployment's "
        "LXC hosts: `static` routes over the hosts' own network, or `vxlan` for networks "
        "that drop forwarded packets.", "static", enum=list(ROUTINGS))
    apt_upstream_proxy: str | None = setting(
        "The HTTP proxy (http://host:port) each host's apt proxy fetches Debian's packages "
        "through, for hosts without a way out of their own (LxcProvider's).", None,
        pattern=PROXY_PATTERN)
    tolerate: int = setting("How many hosts may be lost while the nodes deploy (a host that "
                            "stops answering SSH: benchbed.ssh bounds how long that takes to "
                            "tell): the deployment then runs with the other hosts' nodes and "
                            "records the lost ones. 0: a lost host fails the create.", 0,
                            minimum=0)
    host_deadline: int = setting(
        "Seconds one host may take for its nodes (template, clones, their starts and joins). "
        "A host past it is lost, as one that stops answering is (`tolerate`): its SSH "
        "connections are closed and its part stops. It bounds the hang that SSH's "
        "keepalives cannot see, a host that answers while its commands never end.", 3600,
        minimum=10)


class LxcEngine(Engine[LxcEngineConfig]):
    """Compute nodes as LXC clones of one container prepared by an inner engine, per host."""

    EXAMPLE = {"type": "LxcEngine", "provider": LOCALHOST_SERVERS,
               "engine": {"type": "DebianEngine", "services": ["nova-compute"]}}

    Config = LxcEngineConfig
    # the template's packages go in while the controller installs (its engine waits for it)
    STARTS_BEFORE_PARENT = True
    UNSUPPORTED_KEYS = {"tunnel_to": "the older tool's IPIP tunnel between hosts (this kernel "
                                      "has no IPIP): LxcProvider routes several hosts to each "
                                      "other by `routing: static` or `routing: vxlan` (remove "
                                      "the key)"}
    NESTED = {"provider": PROVIDERS, "engine": ENGINES}

    @classmethod
    def joined_services(cls, config: LxcEngineConfig) -> frozenset[str]:
        """What the inner engine joins: every clone joins the same."""
        inner = engine_class(config.engine)
        return inner.joined_services(inner.parse_config(_inner_config(config, 0)))

    @classmethod
    def routed_slices(cls, config: LxcEngineConfig, path: str) -> Iterator[Slice]:
        """Each host's slice of start_lxc_network, on that host."""
        hosts = config.provider.get("credentials")
        for index, credential in enumerate(hosts if isinstance(hosts, list) else []):
            if isinstance(credential, dict):
                yield Slice(str(credential.get("host")),
                            host_network(ipaddress.IPv4Network(config.start_lxc_network),
                                         index), config.routing, path,
                            f"provider.credentials[{index}].host")

    @classmethod
    def planned_computes(cls, config: LxcEngineConfig) -> int:
        """nodes_per_server on each host."""
        hosts = config.provider.get("credentials")
        return config.nodes_per_server * (len(hosts) if isinstance(hosts, list) else 1)

    @classmethod
    def peer_ports(cls, config: LxcEngineConfig) -> frozenset[PeerPort]:
        """The inner engine's: every clone runs the same services."""
        inner = engine_class(config.engine)
        return inner.peer_ports(inner.parse_config(_inner_config(config, 0)))

    @classmethod
    def child_has_parent(cls, key: str, has_parent: bool) -> bool:
        """The inner engine joins the controller this LxcEngine's parent gives it."""
        return key == "engine" and has_parent

    @classmethod
    def validation_view(cls, config: dict[str, Any], path: str, *, has_parent: bool = False
                        ) -> dict[str, Any]:
        """The inner engine is validated with the template container's provider, once the
        shape of the config is known to allow one (checked here, before the nested ones)."""
        def where(key: str) -> str:
            return plugin.join_path(path, key)

        if not has_parent:
            raise ConfigError(path or "type", "LxcEngine makes compute nodes that join a "
                              "controller: use it as a node of a MultihostEngine")
        if config["provider"].get("type") != "ExistingServers":
            raise ConfigError(where("provider.type"), "must be ExistingServers: the hosts "
                              "that run the containers, given by their credentials")
        if "provider" in config["engine"]:
            raise ConfigError(where("engine.provider"), "is LxcEngine's to give (the "
                              "template container on each host): remove it")
        typed = cls.parse_config(config)
        parse_ipv4_network(typed.start_lxc_network, where("start_lxc_network"))
        if not isinstance(typed.provider.get("credentials"), list):
            return config
        inner = _inner_config(typed, 0)
        if not _makes_node(inner, where("engine.type")):
            raise ConfigError(where("engine"), "must make a compute node, as an engine whose "
                              "server clones as a node does: {type: DebianEngine, services: "
                              "[nova-compute]}, or a DevstackEngine whose ENABLED_SERVICES "
                              "has n-cpu and none of key, mysql, rabbit, n-api")
        return {**config, "engine": inner}

    @classmethod
    def validate_config(cls, config: LxcEngineConfig, path: str, *,
                        has_parent: bool = False) -> None:
        hosts = config.provider.get("credentials")
        if isinstance(hosts, list) and config.tolerate >= len(hosts):
            raise ConfigError(plugin.join_path(path, "tolerate"),
                              f"{config.tolerate} lost host(s) tolerated of {len(hosts)}: at "
                              f"least one host must remain")
        network = ipaddress.IPv4Network(config.start_lxc_network)
        room = static_capacity(network) - 1  # one address for the template
        if config.nodes_per_server > room:
            raise ConfigError(plugin.join_path(path, "nodes_per_server"),
                              f"{config.nodes_per_server} nodes per server, but {network} has "
                              f"addresses for {room} besides the template")

    def _hosts(self) -> list[dict[str, Any]]:
        hosts: list[dict[str, Any]] = self.config.provider["credentials"]
        return hosts

    def _engine(self, index: int) -> Engine[Any]:
        engine = plugin.build(self.deployment, _inner_config(self.config, index), Engine,
                              ENGINES, self.child_path("engine", index))
        engine.same_parent_as(self)
        return engine

    def _clones(self, index: int) -> LxcProvider:
        config = {**_template_provider(self.config, index),
                  "containers_per_host": self.config.nodes_per_server}
        return LxcProvider(self.deployment, config, self.child_path("clones", index))

    def deploy(self) -> Endpoints:
        image, release = resolve_image(self.config.engine.get("image"), DEFAULT_RELEASE)
        hosts = [Server.from_dict(host, deployment=self.deployment) for host in self._hosts()]
        try:
            source = source_of(image, release, hosts, self.deployment)
        finally:
            for host in hosts:
                host.close()
        outcomes = run_parallel("deploying LXC nodes", list(range(len(hosts))),
                                lambda index: self._deploy_or_lose(index, image, source),
                                describe=lambda i: f"server {i}")
        lost = [outcome["lost"] for outcome in outcomes if "lost" in outcome]
        if len(lost) > self.config.tolerate:
            named = "; ".join(f"{host['host']}: {host['error']}" for host in lost)
            raise BenchbedError(f"{len(lost)} host(s) lost while their nodes deployed, "
                                f"{self.config.tolerate} tolerated (`tolerate`): {named}")
        per_host = [outcome for outcome in outcomes if "lost" not in outcome]
        servers = [server for host in per_host for server in host["servers"]]
        return {"openstack": per_host[0]["openstack"], "services": NODE_SERVICES,
                "servers": servers,
                "compute_hosts": [name for host in per_host for name in host["compute_hosts"]],
                "templates": [host["template"] for host in per_host],
                **({"lost_hosts": lost} if lost else {})}

    def _deploy_or_lose(self, index: int, image: str, source: LxcImageStore
                        ) -> dict[str, Any]:
        """The host's nodes; or {"lost": {"host", "error"}} when its part did not end within
        `host_deadline`, or failed because its servers stopped answering and the host itself
        does not answer now."""
        from benchbed.ssh import Deadline

        address = self._hosts()[index]["host"]
        deadline = Deadline(self.config.host_deadline, address,
                            f"its nodes did not deploy within host_deadline "
                            f"({self.config.host_deadline} s)")
        try:
            with deadline:
                return self._deploy_host(index, image, source)
        except Exception as error:
            if deadline.expired:
                self.deployment.logger.warning("host %s lost while its nodes deployed: %s",
                                               address, error)
                return {"lost": {"host": address, "error": deadline.reason}}
            if not unreachable_hosts(error):
                raise
            host = Server.from_dict(self._hosts()[index], deployment=self.deployment)
            try:
                host.ssh.run("true", timeout=60)
            except UnreachableError:
                self.deployment.logger.warning("host %s lost while its nodes deployed: %s",
                                               host.host, error)
                return {"lost": {"host": host.host, "error": str(error)}}
            finally:
                host.close()
            raise

    def _deploy_host(self, index: int, image: str, source: LxcImageStore) -> dict[str, Any]:
        from benchbed.engines.debian_services.catalogue import Catalogue
        from benchbed.engines.debian_services.nova_compute import forget

        host = Server.from_dict(self._hosts()[index], deployment=self.deployment)
        try:
            copy_image(image, source, host, self.deployment)
        finally:
            host.close()
        engine = self._engine(index)
        with self.deployment.step("deploy template", engine.path):
            endpoints = engine.deploy()
        template = endpoints["servers"][0]
        cloud = endpoints["openstack"]
        catalogue = Catalogue(cloud["auth_url"], cloud["admin"]["password"])
        region = cloud["region_name"]
        host = Server.from_dict(self._hosts()[index], deployment=self.deployment)
        origin = Server.from_dict(dict(template), deployment=self.deployment)
        try:
            with self.deployment.step("stop template", template["name"]):
                engine.hold_for_clones(origin)
                original = identify(origin)
                # stopped first: a running nova-compute would report its service back in
                stop_container(host, template["name"])
                for compute_host in endpoints["compute_hosts"]:
                    forget(catalogue, region, compute_host)
            amount = self.config.nodes_per_server
            clones = self._clones(index).create_servers(amount=amount,
                                                        ex_layer_on=template["name"])
            names = [clone.name or clone.host for clone in clones]
            with self.deployment.step("check identities", f"{len(names)} on {host.host}"):
                found = run_parallel("checking clones", clones, identify,
                                     describe=lambda clone: clone.host)
                check_identities(template["name"], original, clones, found)
            batch = STARTS_PER_CORE * int(host.ssh.run("nproc", timeout=60).stdout)
            with self.deployment.step("start compute nodes", f"{len(names)}, {batch} at once"):
                started = run_parallel("starting nova-compute", clones,
                                       lambda clone: self._start(engine, clone),
                                       describe=lambda clone: clone.host, max_workers=batch)
            compute_hosts = [name for names_of_one in started for name in names_of_one]
            with self.deployment.step("join compute nodes", f"{len(names)} on {host.host}"):
                engine.join_computes(compute_hosts)
            with self.deployment.step("measure memory", f"{len(clones)} node(s)"):
                memory = run_parallel("measuring nodes", clones, _resident_mb,
                                      describe=lambda clone: clone.host)
        finally:
            for server in (host, origin):
                server.close()
        servers = []
        for clone, resident in zip(clones, memory, strict=True):
            servers.append({**clone.to_dict(), "resident_mb": resident})
            clone.close()
        return {"openstack": cloud, "servers": servers, "template": template["name"],
                "compute_hosts": compute_hosts}

    def _start(self, engine: Engine[Any], clone: Server) -> list[str]:
        """Under the deployment's start-up gate, which every host's starts share."""
        with self.startup_gate.slot() if self.startup_gate else nullcontext(), \
                self.deployment.step("start nova-compute", clone.name, lane=clone.name):
            return engine.start_clone(clone)

    def teardown(self) -> None:
        """Per host, the clones first (they stand on the template's files), then the template."""
        def clean_host(index: int) -> None:
            self._clones(index).destroy_servers()
            self._engine(index).cleanup()

        run_parallel("cleaning LXC nodes", list(range(len(self._hosts()))), clean_host,
                     describe=lambda i: f"server {i}")

    def check(self) -> list[CheckResult]:
        """The surviving hosts' computes; the lost hosts, tolerated, named on a line."""
        from benchbed.engines.keystone_check import check_computes

        lost = self.endpoints.get("lost_hosts", [])
        named = [CheckResult("lost hosts", True, f"{', '.join(h['host'] for h in lost)} "
                             f"(tolerated: {self.config.tolerate})")] if lost else []
        return named + check_computes(self.endpoints["openstack"],
                                      self.endpoints["compute_hosts"])


def _template_provider(config: LxcEngineConfig, index: int) -> dict[str, Any]:
    """The LxcProvider of host `index`: its slice of start_lxc_network, that host only."""
    start = ipaddress.IPv4Network(config.start_lxc_network)
    return {"type": "LxcProvider",
            "container_name_prefix": config.container_name,
            "start_lxc_network": str(host_network(start, index)),
            "routing": config.routing,
            **({"apt_upstream_proxy": config.apt_upstream_proxy}
               if config.apt_upstream_proxy else {}),
            "host_provider": {"type": "ExistingServers",
                              "credentials": [config.provider["credentials"][index]]}}


def _inner_config(config: LxcEngineConfig, index: int) -> dict[str, Any]:
    """The inner engine's config on host `index`: the template container as its provider."""
    return {**config.engine, "provider": _template_provider(config, index)}


def _makes_node(inner: dict[str, Any], type_path: str) -> bool:
    """Whether the inner engine's class says a server it prepared clones as a compute node
    (Engine.clones_as_node), asked of a config that has not been validated yet."""
    if not isinstance(inner.get("type"), str):
        return False
    found = engine_class(inner, type_path)
    try:
        typed = found.parse_config(inner)
    except (TypeError, ValueError, KeyError):  # a required key missing: not a node config
        return False
    return found.clones_as_node(typed)


def _resident_mb(server: Server) -> float:
    """Resident memory of the node's compute processes, in MiB."""
    found = server.ssh.run(f"ps -o rss= -C {NODE_PROCESSES}", timeout=60, check=False)
    return round(sum(int(kb) for kb in found.stdout.split()) / 1024, 1)


def identify(server: Server) -> Identity:
    """Ask a server what it is (one command)."""
    lines = server.ssh.run(IDENTITY, timeout=60).stdout.splitlines()
    if len(lines) < 3:
        raise BenchbedError(f"{server.host}: no hostname, machine-id and host key in "
                            f"{lines!r}")
    return Identity(lines[0].strip(), lines[1].strip(), lines[2].strip(),
                    tuple(line.split("/")[0] for line in lines[3:]))


def check_identities(template: str, original: Identity, clones: list[Server],
                     found: list[Identity]) -> None:
    """Each clone is itself: its name as hostname (Nova's `host`), its own address, and a
    machine-id and host key that neither the template nor another clone has."""
    owners = {("machine-id", original.machine_id): template,
              ("SSH host key", original.host_key): template}
    for clone, identity in zip(clones, found, strict=True):
        name = clone.name or clone.host
        if identity.hostname != name:
            raise BenchbedError(f"{name}: its hostname is '{identity.hostname}', so Nova "
                                f"would know it under another host name")
        if clone.host not in identity.addresses:
            raise BenchbedError(f"{name}: {clone.host} is not among its addresses "
                                f"({', '.join(identity.addresses) or 'none'})")
        for what, value in (("machine-id", identity.machine_id),
                            ("SSH host key", identity.host_key)):
            if (what, value) in owners:
                raise BenchbedError(f"{name}: same {what} as {owners[what, value]}")
            owners[what, value] = name
