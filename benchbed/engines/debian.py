"""DebianEngine: a real OpenStack (Zed) from Debian 12's packages, on any provider.

Everything runs on one server the provider gives: MariaDB (and RabbitMQ for Nova and
Neutron), then each service's recipe (benchbed/engines/debian_services), in the order of
KNOWN_SERVICES whatever the config's order. The endpoints have the shape of ExistingCloud's,
so every exporter and `deployment check` work on them unchanged.
"""

import contextvars
import secrets
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace

from benchbed import masking, plugin
from benchbed.endpoints import Endpoints, OpenStackCloud, stored
from benchbed.engines.base import (
    CheckResult,
    Engine,
    ServerRequestConfig,
    provider_capabilities,
    validate_server_request,
)
from benchbed.engines.debian_services import KNOWN_SERVICES, Context, Recipe, apt, recipes
from benchbed.engines.debian_services.common import UWSGI_PROCESSES, dropin_directory
from benchbed.engines.debian_services.mariadb import DEFAULT_MAX_CONNECTIONS
from benchbed.engines.debian_services.nova import CONDUCTOR_WORKERS, SCHEDULER_WORKERS
from benchbed.engines.existing_cloud import normalize_cloud
from benchbed.engines.steps import server_step
from benchbed.errors import BenchbedError, ConfigError
from benchbed.ledger import Resource
from benchbed.plugin import PROVIDERS, ResourceKind
from benchbed.ports import PeerPort
from benchbed.providers.existing_servers import LOCALHOST_SERVERS
from benchbed.scale import ControlPlane, control_plane_for
from benchbed.server import Server
from benchbed.settings import setting

# What a MultihostEngine node may run when it joins its controller's cloud: Nova's and
# Neutron's servers talk to the controller's RabbitMQ as its own `openstack` account.
NODE_SERVICES = ("glance", "placement", "nova-compute", "nova-compute-qemu")
# What each service needs in the same cloud (nova-compute on a node: the controller's).
NEEDS = {"nova": ("placement", "glance", "neutron"), "nova-compute": ("nova",),
         "nova-compute-qemu": ("nova",)}
MESSAGE_QUEUE_USERS = ("nova", "neutron")
SSH_READY_TIMEOUT = 180
INSTALL_KIND = "debian-packages"

# Passwords go into SQL strings and the services' INI files (where '$' is interpolated,
# and a newline would start a setting of its own): printable, without those.
PASSWORD = "^[A-Za-z0-9_.,:;@!%^*+=~/-]{8,128}$"


@dataclass(frozen=True, kw_only=True)
class DebianEngineConfig(ServerRequestConfig):
    services: list[str] = setting(
        f"The OpenStack services to run, of {', '.join(KNOWN_SERVICES)} (installed in that "
        f"order). Without keystone, a MultihostEngine node that joins its controller's "
        f"cloud.", ["keystone", "glance"], minItems=1, uniqueItems=True)
    database: str = setting("The services' database server: mariadb, the only one "
                            "supported.", "mariadb")
    region_name: str = setting("The region of the cloud's endpoints.", "RegionOne",
                               pattern="^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    admin_password: str | None = setting("Keystone's admin password; generated when absent.",
                                         None, secret=True, pattern=PASSWORD)
    database_password: str | None = setting("The password of every service's MariaDB "
                                            "account; each generated when absent.", None,
                                            secret=True, pattern=PASSWORD)
    service_password: str | None = setting("The password of every service's Keystone user "
                                           "and RabbitMQ account; each generated when "
                                           "absent.", None, secret=True, pattern=PASSWORD)
    # written into apt's config and probed from a shell: host and port only
    apt_proxy: str | None = setting(
        "The HTTP proxy through which the server's apt reaches Debian's mirror "
        "(http://host:port); apt's own settings when absent.", None,
        pattern="^https?://[A-Za-z0-9][A-Za-z0-9.-]{0,252}(:[0-9]{1,5})?/?$")

    # a Nova controller's sizing (benchbed.scale): grown from the nodes that join it
    nova_conductor_workers: int | None = setting(
        "nova-conductor's worker processes; when absent, 1 and one more per 100 compute "
        "nodes that join, at most the server's cores.", None, minimum=1, maximum=256)
    nova_scheduler_workers: int | None = setting(
        "nova-scheduler's worker processes; when absent, 1 and one more per 250 compute "
        "nodes that join, at most the server's cores.", None, minimum=1, maximum=256)
    nova_api_processes: int | None = setting(
        "nova-api's uWSGI processes; when absent, 4, or one per 250 compute nodes that join "
        "if more, at most the server's cores.", None, minimum=1, maximum=256)
    database_max_connections: int | None = setting(
        "MariaDB's max_connections; when absent, 151 (MariaDB's default) and 55 more (oslo.db's "
        "pool and overflow) for each Nova process added for the joining nodes.", None,
        minimum=10, maximum=100000)

    def control_plane(self, computes: int, cores: int) -> ControlPlane:
        """The control plane for `computes` joining nodes on `cores` cores, as the config
        sets it where it does."""
        grown = control_plane_for(computes, cores, ControlPlane(
            CONDUCTOR_WORKERS, SCHEDULER_WORKERS, UWSGI_PROCESSES, DEFAULT_MAX_CONNECTIONS))
        return ControlPlane(self.nova_conductor_workers or grown.conductor_workers,
                            self.nova_scheduler_workers or grown.scheduler_workers,
                            self.nova_api_processes or grown.api_processes,
                            self.database_max_connections or grown.database_connections)

    @property
    def joins(self) -> bool:
        """Whether this engine joins its controller's cloud (it runs no Keystone)."""
        return "keystone" not in self.services


class DebianEngine(Engine[DebianEngineConfig]):
    """OpenStack Zed (Keystone, Glance, Placement, Nova, Neutron) from Debian 12's packages."""

    EXAMPLE = {"type": "DebianEngine",
               "provider": {"type": "LxcProvider", "host_provider": LOCALHOST_SERVERS}}

    Config = DebianEngineConfig
    NESTED = {"provider": PROVIDERS}
    # a node reads its controller's endpoints only after installing its packages
    STARTS_BEFORE_PARENT = True

    @classmethod
    def clones_as_node(cls, config: DebianEngineConfig) -> bool:
        """A server running nova-compute alone clones into compute nodes (LxcEngine)."""
        return list(config.services) == ["nova-compute"]

    @classmethod
    def planned_computes(cls, config: DebianEngineConfig) -> int:
        """Its one server, when it runs a compute."""
        return int(bool({"nova-compute", "nova-compute-qemu"} & set(config.services)))

    @classmethod
    def offered_services(cls, config: DebianEngineConfig) -> frozenset[str]:
        """The services it runs: a node may join any of them."""
        return frozenset(config.services)

    @classmethod
    def joined_services(cls, config: DebianEngineConfig) -> frozenset[str]:
        """A node's: its controller's Keystone, and what its own services need there."""
        if not config.joins:
            return frozenset()
        return frozenset({"keystone", *(need for service in config.services
                                         for need in NEEDS.get(service, ()))})

    @classmethod
    def peer_ports(cls, config: DebianEngineConfig) -> frozenset[PeerPort]:
        """What its recipes listen on: Keystone, Glance, Placement, Nova's and Neutron's APIs,
        and a controller's MariaDB and RabbitMQ (a node's services use them)."""
        return frozenset(port for recipe in cls._recipes(config) for port in recipe.ports)

    @classmethod
    def validate_config(cls, config: DebianEngineConfig, path: str, *,
                        has_parent: bool = False) -> None:
        validate_server_request(config.provider, path, config.image, config.flavor, amount=1)
        if provider_capabilities(config.provider).shares_host:
            raise ConfigError(plugin.join_path(path, "provider"),
                              f"{config.provider['type']} servers share this machine's "
                              f"filesystem: DebianEngine would install packages on this "
                              f"machine itself (use LxcProvider, VirshProvider or "
                              f"ExistingServers)")
        where = plugin.join_path(path, "services")
        services = config.services
        for index, name in enumerate(services):
            if name not in KNOWN_SERVICES:
                raise ConfigError(f"{where}[{index}]", f"unknown service '{name}' "
                                  f"(known: {', '.join(KNOWN_SERVICES)})")
        if config.joins and not has_parent:
            raise ConfigError(where, "must include 'keystone' (every other service needs it), "
                              "unless this engine is a node of a MultihostEngine whose "
                              "controller runs Keystone")
        for index, name in enumerate(services):
            if config.joins and name not in NODE_SERVICES:
                raise ConfigError(f"{where}[{index}]", f"'{name}' runs on the controller: a "
                                  f"node that joins it runs {', '.join(NODE_SERVICES)}")
            missing = [need for need in NEEDS.get(name, ()) if need not in services]
            if missing and not config.joins:
                raise ConfigError(where, f"'{name}' needs {', '.join(missing)} in the same "
                                  f"cloud: add them")
        if {"nova-compute", "nova-compute-qemu"} <= set(services):
            raise ConfigError(where, "'nova-compute' (fake driver) and 'nova-compute-qemu' "
                              "(real guests) are one nova-compute each: choose one")
        if config.database != "mariadb":
            reason = (": under uwsgi's concurrent workers SQLite fails with 'database is "
                      "locked'" if config.database == "sqlite" else "")
            raise ConfigError(plugin.join_path(path, "database"),
                              f"'{config.database}' is not supported{reason}; use 'mariadb'")

    def deploy(self) -> Endpoints:
        provider = self.provider()
        with self.deployment.step("create servers", f"1 x {provider.raw_config['type']}"):
            server = provider.create_servers(image_uuid=self.config.image,
                                             type_id=self.config.flavor, amount=1)[0]
        try:
            with self._step(server, "wait for SSH"):
                server.ssh.wait_ready(timeout=SSH_READY_TIMEOUT)
            if not provider.capabilities(provider.config).outlives_deployment:
                return self._install(server)
            # The server outlives the deployment: cleanup must purge what we add.
            with self.ledger.creating(INSTALL_KIND, server.address, server=server.to_dict()):
                return self._install(server)
        finally:
            server.close()

    def hold_for_clones(self, template: Server) -> None:
        from benchbed.engines.debian_services.nova_compute import hold_at_boot

        hold_at_boot(template)

    def start_clone(self, clone: Server) -> list[str]:
        """nova-compute, held back at boot, starts; its host is the clone's host name."""
        from benchbed.engines.debian_services.nova_compute import start_held

        start_held(clone)
        return [clone.name or clone.host]

    def join_computes(self, hosts: list[str]) -> None:
        from benchbed.engines.debian_services.catalogue import Catalogue
        from benchbed.engines.debian_services.nova_compute import join

        cloud = self._joined_cloud()
        join(Catalogue(cloud["auth_url"], cloud["admin"]["password"]), cloud["region_name"],
             hosts)

    def map_computes(self, hosts: list[str]) -> None:
        """nova-manage's discover_hosts on this engine's server, which runs Nova."""
        from benchbed.engines.debian_services.nova_compute import discover_hosts

        if "nova" not in self.config.services:
            return super().map_computes(hosts)
        server = Server.from_dict(dict(self.endpoints["servers"][0]),
                                  deployment=self.deployment)
        try:
            discover_hosts(server)
        finally:
            server.close()

    def _joined_cloud(self) -> OpenStackCloud:
        """The controller's cloud this node joins (it runs no Keystone of its own); waits
        while the controller is still deploying."""
        cloud = (self.parent_endpoints or {}).get("openstack")
        servers = (self.parent_endpoints or {}).get("servers")
        if not cloud or not cloud.get("admin") or not servers:
            raise BenchbedError(f"{self.path}: DebianEngine without keystone joins its "
                                f"MultihostEngine controller's cloud, but the controller "
                                f"gave no Keystone admin credentials and server")
        return cloud

    def _controller_server(self) -> Server:
        """The server of the controller this node joins (its database, its RabbitMQ)."""
        return Server.from_dict((self.parent_endpoints or {})["servers"][0],
                                deployment=self.deployment)

    @staticmethod
    def _recipes(config: DebianEngineConfig) -> list[Recipe]:
        """The recipes a config installs, in their order."""
        own = [name for name in KNOWN_SERVICES if name in config.services]
        queue = ["rabbitmq"] if any(name in own for name in MESSAGE_QUEUE_USERS) else []
        # A node keeps its databases in the controller's MariaDB: it needs only the client.
        services = [*(["mariadb-client"] if config.joins else ["mariadb", *queue]), *own]
        return [recipes()[name] for name in services]

    def _install(self, server: Server) -> Endpoints:
        joins = self.config.joins
        chosen = self._recipes(self.config)
        passwords = self._passwords()
        with self._step(server, "check apt"):
            proxy = apt.check(server, self.config.apt_proxy)
        with self._step(server, "record installed packages"):
            apt.record_baseline(server, [*(p for r in chosen for p in r.paths),
                                         *(dropin_directory(s) for r in chosen
                                           for s in r.services)])
        if self.config.apt_proxy:
            with self._step(server, "configure apt proxy", proxy):
                apt.set_proxy(server, self.config.apt_proxy)
        packages = [package for r in chosen for package in r.packages]
        # none on a re-run, or on a server started from a snapshot (`image save`)
        with self._step(server, "find missing packages"):
            missing = apt.missing(server, packages)
        if missing:
            with self._step(server, "apt-get update", proxy):
                apt.update(server)
            with self._step(server, "download packages", " ".join(missing)):
                apt.download(server, missing)
            # after the download, which waits for the apt lock of a killed earlier run: its
            # packages' scripts would hold debconf's database too
            with self._step(server, "preseed debconf"):
                apt.preseed(server, [answer for r in chosen for answer in r.preseed])
        if joins and missing:
            # a node's controller may still be deploying (MultihostEngine starts the two
            # together): every package goes in before the node needs the controller
            self._install_packages(server, tuple(packages))
        if joins or not missing:
            chosen = [replace(recipe, packages=()) for recipe in chosen]
        joined, controller = None, None
        if joins:
            with self._step(server, "wait for the controller"):
                joined, controller = self._joined_cloud(), self._controller_server()
            passwords["admin"] = joined["admin"]["password"]
        cores = int(server.ssh.run("nproc", timeout=60).stdout) if self.computes_joining else 1
        context = Context(server=server, address=server.host, region=self.config.region_name,
                          passwords=passwords, step=lambda name, detail: self._step(
                              server, name, detail),
                          control_plane=self.config.control_plane(self.computes_joining, cores))
        if joined and controller:
            context.database, context.database_host = controller, controller.host
            context.outputs["auth_url"] = joined["auth_url"]
            context.region = joined.get("region_name", context.region)
        self._install_packages(server, chosen[0].packages)
        # dpkg works one package at a time on one core: the next service's packages go in
        # while the previous service is configured, which keeps the second core busy.
        with ThreadPoolExecutor(max_workers=1) as pool:
            for recipe, following in zip(chosen, [*chosen[1:], None], strict=True):
                installing = pool.submit(contextvars.copy_context().run,
                                         self._install_packages, server,
                                         following.packages) \
                    if following else None
                started = list(context.waiting)
                recipe.configure(context)
                # a service may still be loading during the next recipe, no longer
                context.ready(*started)
                if installing:
                    installing.result()
        context.ready(*context.waiting)
        if context.database is not None:
            context.database.close()
        cloud = {"openstack": joined} if joined else normalize_cloud({
            "auth_url": context.outputs["auth_url"], "region_name": context.region,
            "endpoint_type": "public",
            "admin": {"username": "admin", "password": passwords["admin"],
                      "project_name": "admin", "user_domain_name": "Default",
                      "project_domain_name": "Default"},
        })
        hosts = context.outputs.get("compute_hosts")
        own = [name for name in KNOWN_SERVICES if name in self.config.services]
        return stored({**cloud, "services": own, "servers": [server.to_dict()],
                **({"compute_hosts": hosts} if hosts else {})})

    def deployed_versions(self) -> dict[str, str]:
        """The Debian version of each package of the services this engine installed."""
        servers = self.endpoints.get("servers") or []
        known = recipes()
        packages = sorted({package for name in self.endpoints.get("services") or []
                           if name in known for package in known[name].packages})
        if not servers or not packages:
            return {}
        server = Server.from_dict(servers[0], deployment=self.deployment)
        try:
            # a package that is not there makes dpkg-query exit 1 after listing the others
            listed = server.ssh.run(["dpkg-query", "-W", "-f", "${Package}\t${Version}\n",
                                     *packages], check=False, timeout=60).stdout
        finally:
            server.close()
        return dict(line.split("\t", 1) for line in listed.splitlines() if "\t" in line)

    def _install_packages(self, server: Server, packages: tuple[str, ...]) -> None:
        if not packages:
            return
        with self._step(server, "install packages", " ".join(packages)):
            apt.install(server, list(packages))

    def _passwords(self) -> dict[str, str]:
        """The configured passwords, the others generated; all registered for masking."""
        database = self.config.database_password
        service = self.config.service_password
        passwords = {"admin": self.config.admin_password or _generate(),
                     "rabbit": service or _generate(), "compute": service or _generate()}
        for name in ("keystone", "glance", "placement", "nova", "neutron"):
            passwords[f"{name}_database"] = database or _generate()
            passwords[name] = service or _generate()
        for value in passwords.values():
            masking.register(value)
        return passwords

    def _step(self, server: Server, name: str, detail: str | None = None
              ) -> AbstractContextManager[None]:
        """A step on the server, in the server's lane of the timeline."""
        return server_step(self.deployment, server, name, detail,
                           lane=server.name or server.host)

    def _purge(self, resource: Resource) -> None:
        server = Server.from_dict(resource.data["server"], deployment=self.deployment)
        services = [service for recipe in recipes().values() for service in recipe.services]
        try:
            with self._step(server, "purge packages", resource.name):
                apt.purge(server, list(reversed(services)))
        finally:
            server.close()

    RESOURCES = {INSTALL_KIND: ResourceKind(delete=_purge)}

    def check(self) -> list[CheckResult]:
        from benchbed.engines.keystone_check import check_cloud, check_computes

        cloud = self.endpoints["openstack"]
        results = check_cloud(cloud)
        if "compute_hosts" in self.endpoints:
            results += check_computes(cloud, self.endpoints["compute_hosts"])
        return results


def _generate() -> str:
    return secrets.token_urlsafe(24)
