"""DevstackEngine: real DevStack on every server a provider gives, from local git mirrors.

The older tool's config (`local_conf`, its deprecated alias `localrc`, `devstack_repo`,
`devstack_branch`, `enable_plugin`) plus `stack_timeout`, `post_config` and where the
OpenStack repositories come from: `git_mirror` (a folder laid out as openstack/NAME.git that
benchbed serves with a git daemon) or `git_base` (a git server the guests reach already).
Guests without a way out get PyPI through benchbed's devpi mirror (hostnet/mirrors.py) unless
`pip_index_url` names one. On each server, in parallel: prerequisites, the stack user, the
devstack clone, local.conf, then stack.sh, detached on the server so that its output can be
followed and a killed benchbed leaves a process group that destroy can end. The endpoints
have ExistingCloud's shape, read from DevStack's /etc/openstack/clouds.yaml.

A server whose stack.sh ended is sealed: the units that would reach its address or hold its
secrets start only on that machine, and /var/lib/benchbed-devstack/stacked.json records its
address, host name, passwords and settings. A server started from a snapshot of it (`image
save`) has another machine-id: instead of stack.sh it is resumed (scripts/devstack/
resume.py), which rewrites what DevStack wrote with the old identity to the new one and
starts the services, in seconds.
"""

import hashlib
import json
import re
import secrets
import time
import warnings
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from benchbed import masking, plugin
from benchbed.endpoints import Endpoints, stored
from benchbed.engines import devstack_conf
from benchbed.engines.base import (
    CheckResult,
    Engine,
    ServerRequestConfig,
    provider_capabilities,
    provider_class,
    validate_server_request,
)
from benchbed.engines.debian_services import apt
from benchbed.engines.devstack_conf import Value
from benchbed.engines.existing_cloud import normalize_cloud
from benchbed.engines.steps import DeployStepError, server_step, where
from benchbed.errors import ConfigError
from benchbed.hostnet.mirrors import GuestMirrors, address_towards
from benchbed.hostnet.routes import RoutingPlan, deployment_slices
from benchbed.ledger import Resource
from benchbed.parallel import run_parallel
from benchbed.plugin import PROVIDERS, ResourceKind
from benchbed.ports import PeerPort, tcp, udp
from benchbed.providers.existing_servers import LOCALHOST_SERVERS
from benchbed.scale import ControlPlane, control_plane_for
from benchbed.server import Server, run_script, script_text
from benchbed.settings import setting

DEFAULT_BRANCH = "stable/2025.1"
# With neither git_mirror, git_base nor devstack_repo, DevStack comes from where the older
# tool took it, and its repositories from DevStack's own GIT_BASE: servers that reach it only.
OLDER_TOOL_DEVSTACK_REPO = "https://opendev.org/openstack/devstack.git"
SSH_READY_TIMEOUT = 180
POLL_INTERVAL = 1.0
LOG_TAIL = 8
PASSWORD_KEYS = ("ADMIN_PASSWORD", "DATABASE_PASSWORD", "RABBIT_PASSWORD", "SERVICE_PASSWORD")
STACK_LOGFILE = "/opt/stack/logs/stack.sh.log"
LOCAL_CONF = "/opt/stack/devstack/local.conf"
STATE = "/var/lib/benchbed-devstack"
STACKED = f"{STATE}/stacked.json"
# DevStack's global virtualenv (GLOBAL_VENV, the default), else the system's Python
PYTHONS = ("/opt/stack/data/venv/bin/python", "python3")
RESUME_TIMEOUT = 600
# nodes' groups join the controller's cell one at a time (see nova_compute.DISCOVER_LOCK)
DISCOVER_LOCK = "/run/lock/benchbed-devstack-discover-hosts"
DISCOVER_TIMEOUT = 600
# what of RabbitMQ's definitions a clone takes over (resume.py keeps the queues that outlive
# their consumers); the rest (the cluster's name, parameters, policies) is the origin's own
RABBIT_DEFINITIONS = ("users", "vhosts", "permissions", "topic_permissions", "queues",
                      "exchanges", "bindings")
# each repository's name and HEAD; a fixed command (the repositories belong to `stack`)
COMMITS_COMMAND = ("for d in /opt/stack/*/.git; do p=${d%/.git}; printf '%s %s\\n' "
                   "\"${p##*/}\" \"$(git -c safe.directory='*' -C \"$p\" rev-parse HEAD)\"; "
                   "done")
# paths that cleanup removes on a server that outlives the deployment, if they were not there
CREATED_PATHS = ["/etc/sudoers.d/50_stack_sh", "/opt/stack", "/etc/openstack",
                 "/var/lib/benchbed-devstack"]
LOCALRC_DEPRECATED = "DevstackEngine: 'localrc' is deprecated, use 'local_conf' (same keys)"
SCALAR: dict[str, Any] = {"type": ["string", "number", "boolean"]}
BRANCH = "^[A-Za-z0-9][A-Za-z0-9._/-]*$"
# DevStack's xtrace prefix (PS4 '+ $(short_source):   '): file:function:line
TRAPS = frozenset({"exit_trap", "err_trap", "die", "err", "backtrace", "kill_spinner"})
XTRACE = re.compile(r"^\++ (?P<file>[^ :]+):(?P<function>[^ :]+):(?P<line>\d+) +: +(?P<cmd>.*)$")


SETTINGS: dict[str, Any] = {"type": "object", "additionalProperties": SCALAR}
# DevStack's default services that a benchmark of Nova, Neutron, Glance or Keystone does not
# need: Cinder, Swift, Horizon, Tempest, noVNC, dstat, and etcd3 (only Cinder uses it; DevStack
# downloads it from GitHub).
DEFAULT_DISABLED = ["c-api", "c-sch", "c-vol", "c-bak", "s-proxy", "s-object", "s-container",
                    "s-account", "horizon", "tempest", "n-novnc", "dstat", "etcd3"]
SERVICE = "^[A-Za-z0-9][A-Za-z0-9_.-]*$"
# what a DevStack controller offers its nodes (Engine.offered_services)
JOINED = "devstack"
# What DevStack (stable/2025.1) listens on for other servers (Engine.peer_ports): Apache,
# before Keystone, Nova, Placement and Glance under WSGI_MODE=uwsgi (80, 443 with tls-proxy);
# MySQL (lib/databases/mysql) and RabbitMQ (lib/rpc_backend, 5672); Glance's GLANCE_HOSTPORT
# (9292); nova-metadata (METADATA_SERVICE_PORT 8775, which the nodes' OVN metadata agents
# ask); neutron-server (Q_PORT 9696); OVN's northbound and southbound databases
# (lib/neutron_plugins/ovn_agent, 6641/6642); Geneve (OVN's tunnels, 6081/udp) and VXLAN
# (ML2/OVS's, 4789/udp) between the chassis. Memcached listens on localhost only.
PEER_PORTS = tcp(80, 443, 3306, 5672, 6641, 6642, 8775, 9292, 9696) | udp(4789, 6081)
# the service name that tells DevStack a chassis-only compute has Neutron
# (with_neutron_for_chassis)
CHASSIS_NEUTRON = "neutron-ovn-chassis"
# Debian's ovn-central and what it starts (ovn-northd, OVN's northbound and southbound
# databases)
OVN_CENTRAL_UNITS = ["ovn-central.service", "ovn-northd.service",
                     "ovn-ovsdb-server-nb.service", "ovn-ovsdb-server-sb.service"]


@dataclass(frozen=True, kw_only=True)
class DevstackEngineConfig(ServerRequestConfig):
    local_conf: dict[str, Value] | None = setting(
        "local.conf's [[local|localrc]] settings: shell variable -> value (a name ending in "
        "+ appends to the variable).", None, schema=SETTINGS)
    localrc: dict[str, Value] | None = setting(
        "The older tool's name of local_conf (deprecated; the same keys); not with "
        "local_conf.", None, schema=SETTINGS)
    post_config: dict[str, dict[str, dict[str, Value]]] = setting(
        "local.conf's [[post-config|FILE]] blocks: file (optionally after one DevStack "
        "variable, $NOVA_CONF) -> ini section -> option -> value.", {},
        schema={"type": "object", "additionalProperties": {
            "type": "object", "additionalProperties": SETTINGS}})
    disable_service: list[str] | None = setting(
        "DevStack services to turn off (local.conf's disable_service); by default Cinder, "
        "Swift, Horizon, Tempest, noVNC, dstat and etcd3, unless local_conf sets "
        "ENABLED_SERVICES (or appends to it); [] keeps DevStack's own defaults.", None,
        schema={"type": ["array", "null"], "items": {"type": "string", "pattern": SERVICE}})
    enable_plugin: dict[str, str] = setting("DevStack plugins to enable: name -> 'URL' or "
                                            "'URL BRANCH'.", {})
    devstack_repo: str | None = setting(
        "DevStack's git repository; by default openstack/devstack.git of the git server "
        "(git_mirror, git_base), else opendev.org's.", None,
        pattern="^(git|https?|file)://[^\\s]+$")
    devstack_branch: str = setting("The branch of DevStack to run.", DEFAULT_BRANCH,
                                   pattern=BRANCH)
    stack_timeout: int = setting("Seconds within which stack.sh must end on every server.",
                                 3600, minimum=60)
    git_mirror: str | None = setting(
        "A folder laid out as openstack/NAME.git that benchbed serves to the servers with a "
        "git daemon; not with git_base.", None, pattern="^/")
    git_base: str | None = setting("A git server the servers reach already (DevStack's "
                                   "GIT_BASE); not with git_mirror.", None,
                                   pattern="^(git|https?)://[^\\s'\"]+$")
    pip_index_url: str | None = setting(
        "A PyPI index the servers reach; by default benchbed's PyPI mirror on this "
        "machine.", None, pattern="^https?://[^\\s'\"]+$")

    def local_settings(self) -> dict[str, Value]:
        """The [[local|localrc]] settings, under either name."""
        return dict(self.local_conf or self.localrc or {})

    def disabled_services(self) -> list[str]:
        """disable_service as given, else the default list unless the config chooses
        ENABLED_SERVICES itself (the older tool's configs stay as they were)."""
        if self.disable_service is not None:
            return list(self.disable_service)
        chosen = {"ENABLED_SERVICES", "ENABLED_SERVICES+"} & set(self.local_settings())
        return [] if chosen else list(DEFAULT_DISABLED)


def with_neutron_for_chassis(services: str) -> str:
    """ENABLED_SERVICES that stacks OVN's chassis where the config asks for one.

    DevStack installs Neutron, and with it OVN, Open vSwitch and nova.conf's [neutron], only
    where a service named q-* or neutron-* is on (lib/neutron's is_neutron_enabled). A
    compute that lists ovn-controller without the metadata agent (which a fake compute,
    booting no instance, never needs) would get no chassis and bind no port; the name
    CHASSIS_NEUTRON is on no unit, so DevStack runs nothing more for it."""
    names = [name for name in services.split(",") if name]
    if "ovn-controller" not in names or any(
            name.startswith(("q-", "neutron-")) for name in names):
        return services
    return ",".join([*names, CHASSIS_NEUTRON])


def idle_units(config: DevstackEngineConfig) -> list[str]:
    """Units that Debian's packages start at install and at every boot on a server with OVN's
    chassis, and that none of the services a config lists (ENABLED_SERVICES) uses: OVN's
    central databases and northd without ovn-northd (files/debs/ovn installs ovn-central
    everywhere), its VTEP controller without ovn-controller-vtep, the system's haproxy (the
    Neutron agents run haproxy processes of their own), and Apache (guest.sh keeps it where
    DevStack enabled a site). DevStack's own defaults stay as they are."""
    services = config.local_settings().get("ENABLED_SERVICES")
    names = set(services.split(",")) if isinstance(services, str) else set()
    if "ovn-controller" not in names:
        return []
    units = ["haproxy.service", "apache2.service"]
    if "ovn-northd" not in names:
        units += OVN_CENTRAL_UNITS
    if "ovn-controller-vtep" not in names:
        units.append("ovn-controller-vtep.service")
    return units


def render_settings(config: DevstackEngineConfig) -> dict[str, Any]:
    """benchbed's [[local|localrc]] settings for any server (what a container needs), then
    the config's own (which win)."""
    own = config.local_settings()
    if isinstance(own.get("ENABLED_SERVICES"), str):
        own["ENABLED_SERVICES"] = with_neutron_for_chassis(str(own["ENABLED_SERVICES"]))
    return {"LOGFILE": STACK_LOGFILE,
            # ksmtuned pulls in qemu for nothing on a test bed
            "ENABLE_KSMTUNED": False,
            # no Open vSwitch kernel datapath in a container
            "OVS_DATAPATH_TYPE": "netdev",
            # no public network: it would route the floating range out of the server, and
            # guests here have no way out
            "OVN_L3_CREATE_PUBLIC_NETWORK": False,
            **own}


def api_workers(computes: int, cores: int) -> int:
    """DevStack's API_WORKERS (nova-api's, nova-conductor's and nova-scheduler's processes
    at once) for `computes` joining nodes: DevStack's own default (a quarter of the cores,
    at least 2), grown as benchbed.scale grows conductors."""
    own = max(cores // 4, 2)
    return control_plane_for(computes, cores, ControlPlane(own, own, own, 0)).conductor_workers


def render_local_conf(config: DevstackEngineConfig, host_ip: str, source: dict[str, str],
                      passwords: dict[str, str], workers: int | None = None) -> str:
    """local.conf for a server at `host_ip`: where the sources are, the passwords, the API
    workers when benchbed sizes them for joining nodes, then render_settings."""
    settings: dict[str, Any] = {"HOST_IP": host_ip, **passwords}
    if workers is not None:
        settings["API_WORKERS"] = workers
    if source["git_base"]:
        settings["GIT_BASE"] = source["git_base"]
    if config.pip_index_url is None:
        settings["DOWNLOAD_DEFAULT_IMAGES"] = False  # guests have no way out
    settings.update(render_settings(config))
    return devstack_conf.render(settings, plugins=config.enable_plugin,
                                post_config=config.post_config,
                                disabled=config.disabled_services())


class DevstackEngine(Engine[DevstackEngineConfig]):
    """Real DevStack (stable/2025.1 by default) on the servers of any provider."""

    EXAMPLE = {"type": "DevstackEngine",
               "provider": {"type": "LxcProvider", "host_provider": LOCALHOST_SERVERS}}

    Config = DevstackEngineConfig
    NESTED = {"provider": PROVIDERS}
    # the template LxcEngine cloned this engine's server into (hold_for_clones)
    # the host names a cloned template's Neutron agents report under
    _template_hosts: tuple[str, ...] = ()

    @classmethod
    def validate_config(cls, config: DevstackEngineConfig, path: str, *,
                        has_parent: bool = False) -> None:
        if config.git_mirror is not None and config.git_base is not None:
            raise ConfigError(path, "give git_mirror or git_base, not both")
        validate_server_request(config.provider, path, config.image, config.flavor)
        if provider_capabilities(config.provider).shares_host:
            raise ConfigError(plugin.join_path(path, "provider"),
                              f"{config.provider['type']} servers share this machine's "
                              f"filesystem: DevStack would install itself on this machine")
        if config.local_conf is not None and config.localrc is not None:
            raise ConfigError(plugin.join_path(path, "localrc"), "give local_conf or its "
                              "deprecated alias localrc, not both")
        devstack_conf.check(path, {"local_conf": config.local_conf or {},
                                   "localrc": config.localrc or {}},
                            config.enable_plugin, config.post_config)
        if config.localrc is not None:
            warnings.warn(LOCALRC_DEPRECATED, FutureWarning, stacklevel=2)

    # -- deploy -----------------------------------------------------------------------------

    def deploy(self) -> Endpoints:
        if self.config.localrc is not None:
            self.deployment.logger.warning(LOCALRC_DEPRECATED)
        provider = self.provider()
        amount = provider.default_amount()
        with self.deployment.step("create servers", f"{amount} x {provider.raw_config['type']}"):
            servers = provider.create_servers(image_uuid=self.config.image,
                                              type_id=self.config.flavor, amount=amount)
        outlives = provider.capabilities(provider.config).outlives_deployment
        try:
            run_parallel("waiting for SSH", servers, self._wait_ready, describe=where)
            passwords = self._passwords()
            origins = run_parallel("looking for a stacked snapshot", servers, self._origin,
                                   describe=where)
            if any(origins):
                run_parallel("resuming servers from their snapshot", servers,
                             lambda s: self._resume(s, origins[servers.index(s)], passwords),
                             describe=where)
                return self._endpoints(servers, passwords)
            sources = self._sources(servers)
            run_parallel("preparing servers for DevStack", servers,
                         lambda s: self._prepare(s, sources[s.host], passwords, outlives),
                         describe=where)
            self._stack(servers)
            run_parallel("after stack.sh", servers, lambda s: self._after_stack(s, passwords),
                         describe=where)
            endpoints = self._endpoints(servers, passwords)
            compute_hosts = self._join(servers)
            return stored({**endpoints, "compute_hosts": compute_hosts}) if compute_hosts \
                else endpoints
        finally:
            for server in servers:
                server.close()

    def _wait_ready(self, server: Server) -> None:
        with self._step(server, "wait for SSH"):
            server.ssh.wait_ready(timeout=SSH_READY_TIMEOUT)

    def _sources(self, servers: list[Server]) -> dict[str, dict[str, str]]:
        """Per server: GIT_BASE, devstack's repository and the pip index it uses."""
        use_pypi = self.config.pip_index_url is None
        use_git = self.config.git_mirror is not None
        mirrors: dict[str, GuestMirrors] = {}
        serving_address: dict[str, str] = {}
        local = Server(host="localhost", deployment=self.deployment)
        plan = RoutingPlan.of(deployment_slices(self.deployment.config))
        for server in servers:
            if use_pypi or use_git:
                address = address_towards(local, server.host, plan.supernet if plan else None)
                serving_address[server.host] = address
                mirrors.setdefault(address, GuestMirrors(local, address))
        for address, mirror in mirrors.items():
            with self.ledger.creating("mirrors", address, address=address), \
                    self.deployment.step("acquire guest mirrors", address):
                mirror.acquire(self._mirror_user(), self.config.git_mirror, use_pypi)
        sources = {}
        for server in servers:
            serving = mirrors[serving_address[server.host]] if mirrors else None
            git_base = serving.git_base if use_git and serving else self.config.git_base
            repo = self.config.devstack_repo or (
                f"{git_base}/openstack/devstack.git" if git_base else OLDER_TOOL_DEVSTACK_REPO)
            index = serving.pip_index_url if use_pypi and serving else \
                self.config.pip_index_url or ""
            sources[server.host] = {"git_base": git_base or "", "repo": repo, "index": index}
        return sources

    def _passwords(self) -> dict[str, str]:
        """local_conf's passwords, else the controller's (on a node), else generated."""
        given = self.config.local_settings()
        parent = (self.parent_endpoints or {}).get("devstack", {}).get("passwords", {})
        passwords = {key: str(given.get(key) or parent.get(key) or secrets.token_hex(16))
                     for key in PASSWORD_KEYS}
        for value in passwords.values():
            masking.register(value)
        masking.register_from(given)
        return passwords

    def _prepare(self, server: Server, source: dict[str, str], passwords: dict[str, str],
                 outlives: bool) -> None:
        if outlives:
            # The server outlives the deployment: cleanup must undo what DevStack adds.
            with self.ledger.creating("devstack", server.address, server=server.to_dict()), \
                    self._step(server, "record installed packages"):
                apt.record_baseline(server, CREATED_PATHS)
        with self._step(server, "install prerequisites", "git sudo"):
            self._guest(server, "prereqs", timeout=900)
        with self._step(server, "create stack user"):
            self._guest(server, "user")
        index = urlsplit(source["index"])
        with self._step(server, "point pip at the mirror", source["index"]):
            self._guest(server, "pip", source["index"],
                        index.hostname or "" if index.scheme == "http" else "")
        branch = self.config.devstack_branch
        with self._step(server, "clone devstack", f"{source['repo']} {branch}"):
            self._guest(server, "clone", source["repo"], branch, timeout=300)
        workers = None
        if self.computes_joining and "API_WORKERS" not in self.config.local_settings():
            cores = int(server.ssh.run("nproc", timeout=60).stdout)
            workers = api_workers(self.computes_joining, cores)
        with self._step(server, "write local.conf",
                        None if workers is None else f"API_WORKERS={workers}"):
            server.ssh.put_file(render_local_conf(self.config, server.host, source, passwords,
                                                  workers),
                                LOCAL_CONF, 0o600)

    def _guest(self, server: Server, *args: str, timeout: float = 120) -> str:
        return run_script(server.ssh, "devstack/guest.sh", list(args), timeout=timeout).stdout

    # -- stack.sh ---------------------------------------------------------------------------

    def _stack(self, servers: list[Server]) -> None:
        """stack.sh on every server at once, followed until all end, under stack_timeout."""
        timeout = self.config.stack_timeout
        run_parallel("starting stack.sh", servers, lambda s: self._guest(s, "start"),
                     describe=where)
        runs = {server.address: _Run(server) for server in servers}
        deadline = time.monotonic() + timeout
        with self.deployment.step("stack.sh", f"{len(servers)} server(s)"), \
                _progress() as show:
            while any(run.state == "running" for run in runs.values()):
                for run in runs.values():
                    if run.state == "running":
                        self._poll(run)
                show(_progress_line(runs.values()))
                if time.monotonic() > deadline:
                    for run in runs.values():
                        if run.state == "running":
                            self._guest(run.server, "stop")
                            run.state = "timeout"
                    break
                if any(run.state == "running" for run in runs.values()):
                    time.sleep(POLL_INTERVAL)
            failures = [run.failure(timeout) for run in runs.values() if run.state != "0"]
            if failures:
                raise DeployStepError("; ".join(failures))

    def _poll(self, run: "_Run") -> None:
        output = self._guest(run.server, "poll", str(run.offset), timeout=60)
        state, _, data = output.partition("\n")
        run.offset += len(data.encode())
        run.feed(data)
        if state.strip() != "running":
            run.state = state.strip()

    def _join(self, servers: list[Server]) -> list[str]:
        """A node's nova-computes, up and in Placement; its MultihostEngine then maps them
        into the controller's cell (DevStack leaves that to whoever stacks the nodes: its
        multinode jobs run tools/discover_hosts.sh on the controller once they are up). The
        compute hosts, [] on a server without them."""
        parent = self.parent_endpoints or {}
        if "openstack" not in parent or not parent.get("servers"):
            return []
        listed = run_parallel("listing compute hosts", servers,
                              lambda server: self._guest(server, "computes").split(),
                              describe=where)
        hosts = [host for found in listed for host in found]
        if hosts:
            self.join_computes(hosts)
        return hosts

    def join_computes(self, hosts: list[str]) -> None:
        """Up in the controller's Nova and in its Placement; the OVN agents of a template
        that was cloned leave Neutron first (its chassis is gone with it)."""
        from benchbed.engines.debian_services.catalogue import Catalogue
        from benchbed.engines.debian_services.nova_compute import join

        parent = self.parent_endpoints or {}
        cloud = parent["openstack"]
        controller = Server.from_dict(dict(parent["servers"][0]), deployment=self.deployment)
        catalogue = Catalogue(cloud["auth_url"], cloud["admin"]["password"])
        try:
            if self._template_hosts:
                with self._step(controller, "forget the template's agents",
                                ", ".join(self._template_hosts)):
                    for host in self._template_hosts:
                        catalogue.forget_network_agents(cloud["region_name"], host)
            with self._step(controller, "computes up", f"{len(hosts)} compute host(s)"):
                join(catalogue, cloud["region_name"], hosts)
        finally:
            controller.close()

    def map_computes(self, hosts: list[str]) -> None:
        """DevStack's tools/discover_hosts.sh, as its `stack` user, on this controller."""
        server = Server.from_dict(dict(self.endpoints["servers"][0]),
                                  deployment=self.deployment)
        try:
            self._guest(server, "discover", DISCOVER_LOCK, timeout=DISCOVER_TIMEOUT)
        finally:
            server.close()

    @classmethod
    def planned_computes(cls, config: DevstackEngineConfig) -> int:
        """A node's servers, each a nova-compute (as many as its provider can give)."""
        if not cls.clones_as_node(config):
            return 0
        provider = provider_class(config.provider)
        return provider.capacity(provider.parse_config(config.provider)) or 1

    @classmethod
    def peer_ports(cls, config: DevstackEngineConfig) -> frozenset[PeerPort]:
        """DevStack's (PEER_PORTS): a controller's APIs, database, queue and OVN databases,
        and the tunnels between every two servers."""
        return PEER_PORTS

    @classmethod
    def offered_services(cls, config: DevstackEngineConfig) -> frozenset[str]:
        """DevStack's cloud, which only DevStack nodes join: they map their computes into its
        cell with its own nova-manage, as its `stack` user."""
        return frozenset({JOINED})

    @classmethod
    def joined_services(cls, config: DevstackEngineConfig) -> frozenset[str]:
        """A node's (DevStack's SERVICE_HOST set, or compute services alone): its
        controller's DevStack cloud."""
        node = "SERVICE_HOST" in config.local_settings() or cls.clones_as_node(config)
        return frozenset({JOINED}) if node else frozenset()

    # -- compute nodes that LxcEngine clones -------------------------------------------------

    @classmethod
    def clones_as_node(cls, config: DevstackEngineConfig) -> bool:
        """A server that runs DevStack's compute services alone (no Keystone, database or
        message queue: those of its controller) clones into compute nodes, each resumed as
        a snapshot is (resume.py) with its own host name, address and OVN chassis."""
        services = set(str(config.local_settings().get("ENABLED_SERVICES", "")).split(","))
        return "n-cpu" in services and not services & {"key", "mysql", "rabbit", "n-api"}

    def hold_for_clones(self, template: Server) -> None:
        """Sealed when its stack.sh ended (the units start only on the template's machine-id);
        the host names its agents report under are kept, for them to leave Neutron with it:
        its own, and its OVN chassis's (named after its fake compute: `_chassis`)."""
        listed = self._guest(template, "agent_hosts")
        self._template_hosts = tuple(sorted({line.strip() for line in listed.splitlines()
                                             if line.strip()}))

    def start_clone(self, clone: Server) -> list[str]:
        self._wait_ready(clone)
        self._resume(clone, self._origin(clone), self._passwords())
        return self._guest(clone, "computes").split()

    def _endpoints(self, servers: list[Server], passwords: dict[str, str]) -> Endpoints:
        import yaml

        endpoints: dict[str, Any] = {
            "servers": [server.to_dict() for server in servers],
            "devstack": {"branch": self.config.devstack_branch,
                         "passwords": passwords},
        }
        controller = servers[0]
        with self._step(controller, "read clouds.yaml"):
            listed = controller.ssh.run(["cat", "/etc/openstack/clouds.yaml"], check=False,
                                        timeout=60)
        clouds = (yaml.safe_load(listed.stdout) or {}).get("clouds", {}) \
            if listed.exit_code == 0 else {}
        admin = clouds.get("devstack-admin")
        if admin:
            auth = admin["auth"]
            endpoints.update(normalize_cloud({
                "auth_url": auth["auth_url"], "region_name": admin.get("region_name"),
                "endpoint_type": "public",
                "admin": {"username": auth["username"], "password": auth["password"],
                          "project_name": auth["project_name"],
                          "user_domain_name": "Default", "project_domain_name": "Default"}}))
        elif self.parent_endpoints and "openstack" in self.parent_endpoints:
            endpoints["openstack"] = self.parent_endpoints["openstack"]
        else:
            # a cloud of its own without its admin's credentials is no cloud to hand over
            found = listed.stderr.strip().splitlines()  # not stdout: it holds passwords
            raise DeployStepError(f"{where(controller)}: step 'read clouds.yaml' failed: no "
                                  f"devstack-admin cloud in /etc/openstack/clouds.yaml"
                                  f"{': ' + found[-1][:200] if found else ''}")
        return stored(endpoints)

    # -- snapshots -------------------------------------------------------------------------

    def _settings(self) -> str:
        """A digest of what decides what stack.sh installs (not addresses or passwords): a
        snapshot resumes only under the settings it was stacked with."""
        local = {key: value for key, value in self.config.local_settings().items()
                 if key not in PASSWORD_KEYS and key != "HOST_IP"}
        chosen = {"branch": self.config.devstack_branch, "local": local,
                  "post_config": self.config.post_config, "plugins": self.config.enable_plugin,
                  "disabled": self.config.disabled_services()}
        return hashlib.sha256(json.dumps(chosen, sort_keys=True, default=str).encode()
                              ).hexdigest()

    def _after_stack(self, server: Server, passwords: dict[str, str]) -> None:
        datapath = str(render_settings(self.config)["OVS_DATAPATH_TYPE"])
        with self._step(server, "OVN's bridge on OVS's datapath", datapath):
            self._guest(server, "datapath", datapath)
        self._chassis(server)
        units = idle_units(self.config)
        if units:
            with self._step(server, "units no DevStack service here uses, off",
                            " ".join(units)):
                self._guest(server, "idle", *units)
        self._seal(server, passwords)

    def _chassis(self, server: Server) -> None:
        """OVN's chassis named as the server's fake nova-compute reports (`host` in its
        conf: the host name and 1), after stack.sh and again on each resume: Neutron binds a
        port only to a chassis of the port's host."""
        with self._step(server, "OVN's chassis under the fake compute's host name"):
            self._guest(server, "chassis")

    def _seal(self, server: Server, passwords: dict[str, str]) -> None:
        """Record what a clone of this server must rewrite: a whole cloud's (its database
        included) or a compute node's, which LxcEngine clones."""
        # one line each, an empty one for what is not there
        probe = server.ssh.run(
            "hostname; cat /etc/machine-id; for p in " + " ".join(PYTHONS) + "; do "
            "found=$(command -v \"$p\") && break; done; echo \"${found:-}\"; "
            "test -e /etc/systemd/system/devstack@keystone.service && echo database || echo",
            check=False, timeout=60)
        hostname, machine_id, python, database = [
            line.strip() for line in [*probe.stdout.splitlines(), "", "", "", ""][:4]]
        with self._step(server, "seal for snapshots"):
            exported = server.ssh.run("rabbitmqctl export_definitions - 2>/dev/null || true",
                                      timeout=120).stdout
            rabbit = json.loads(exported) if exported.strip().startswith("{") else {}
            stacked = {"address": server.host, "hostname": hostname,
                       "machine_id": machine_id, "python": python or PYTHONS[-1],
                       "database": database == "database",
                       "passwords": passwords, "settings": self._settings(),
                       "rabbitmq": {key: rabbit[key] for key in RABBIT_DEFINITIONS
                                    if key in rabbit}}
            server.ssh.put_file(json.dumps(stacked), STACKED, 0o600)
            self._guest(server, "seal")

    def _origin(self, server: Server) -> dict[str, Any] | None:
        """What a server started from a snapshot of a stacked one recorded of its origin;
        None on any other server (also the origin itself, a re-run)."""
        listed = server.ssh.run(f"cat /etc/machine-id {STACKED} 2>/dev/null", check=False,
                                timeout=60).stdout
        machine_id, _, recorded = listed.partition("\n")
        if not recorded.strip():
            return None
        origin: dict[str, Any] = json.loads(recorded)
        masking.register_from(origin.get("passwords") or {})
        return None if origin.get("machine_id") == machine_id.strip() else origin

    def _resume(self, server: Server, origin: dict[str, Any] | None,
                passwords: dict[str, str]) -> None:
        if origin is None:
            raise DeployStepError(f"{where(server)}: step 'resume from snapshot' failed: the "
                                  f"other servers come from a snapshot of a stacked DevStack "
                                  f"and this one does not")
        if origin.get("settings") != self._settings():
            raise DeployStepError(
                f"{where(server)}: step 'resume from snapshot' failed: the image holds a "
                f"DevStack stacked from {origin.get('address')} with other settings "
                f"(devstack_branch, local_conf, post_config, enable_plugin, "
                f"disable_service); use the config it was saved from, or a base image")
        with self._step(server, "resume from snapshot",
                        f"{origin.get('address')} -> {server.host}"):
            hostname = server.ssh.run("hostname", timeout=60).stdout.strip()
            target = {"address": server.host, "hostname": hostname, "passwords": passwords}
            server.ssh.put_file(json.dumps(target), f"{STATE}/target.json", 0o600)
            self._guest(server, "seal")
            server.ssh.run([origin["python"], "-", STATE],
                           stdin=script_text("devstack/resume.py"), timeout=RESUME_TIMEOUT)
        self._chassis(server)

    def _step(self, server: Server, name: str, detail: str | None = None
              ) -> AbstractContextManager[None]:
        return server_step(self.deployment, server, name, detail)

    # -- cleanup and check ------------------------------------------------------------------

    def _mirror_user(self) -> str:
        """This engine's reference on the mirrors: a controller and its nodes hold one each."""
        return f"{self.deployment.uuid}{'@' + self.path if self.path else ''}"

    def _release_mirrors(self, resource: Resource) -> None:
        local = Server(host="localhost", deployment=self.deployment)
        GuestMirrors(local, resource.data["address"]).release(self._mirror_user())

    def _undo_devstack(self, resource: Resource) -> None:
        """unstack.sh, clean.sh and what they leave, on a server that outlives us."""
        server = Server.from_dict(resource.data["server"], deployment=self.deployment)
        try:
            with self._step(server, "unstack and clean"):
                self._guest(server, "cleanup", timeout=1800)
            with self._step(server, "purge packages DevStack added"):
                apt.purge(server, [])
        finally:
            server.close()

    # newest first: a server's DevStack is undone before the mirrors it used are released
    RESOURCES = {"devstack": ResourceKind(delete=_undo_devstack),
                 "mirrors": ResourceKind(delete=_release_mirrors)}

    def deployed_versions(self) -> dict[str, str]:
        """The commit of each git repository under /opt/stack (devstack, keystone, ...),
        by project, from every server (the controller's first)."""
        versions: dict[str, str] = {}
        for entry in self.endpoints.get("servers") or []:
            server = Server.from_dict(entry, deployment=self.deployment)
            try:
                listed = server.ssh.run(COMMITS_COMMAND, check=False, timeout=60).stdout
            finally:
                server.close()
            for line in listed.splitlines():
                project, _, commit = line.partition(" ")
                if re.fullmatch(r"[0-9a-f]{40}", commit):
                    versions.setdefault(project, commit)
        return versions

    def check(self) -> list[CheckResult]:
        from benchbed.engines.keystone_check import check_cloud, check_computes

        if "openstack" not in self.endpoints:
            return [CheckResult("devstack", False, "no Keystone among the endpoints")]
        results = check_cloud(self.endpoints["openstack"])
        if self.endpoints.get("compute_hosts"):
            results += check_computes(self.endpoints["openstack"],
                                      self.endpoints["compute_hosts"])
        return results


class _Run:
    """What is known of one server's stack.sh: its state, how much output was read, the tail."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.state = "running"
        self.offset = 0
        self.partial = ""
        self.tail: list[str] = []
        self.last_trace: re.Match[str] | None = None
        self.errors: list[str] = []

    def feed(self, data: str) -> None:
        """Take the next output (the SSH layer has logged it already)."""
        lines = (self.partial + data).split("\n")
        self.partial = lines.pop()
        for line in lines:
            trace = XTRACE.match(line)
            if trace:
                # what DevStack runs once it failed is not where it failed
                command = (trace["cmd"].split() or [""])[0]
                if trace["function"] not in TRAPS and command not in TRAPS:
                    self.last_trace = trace
            elif line.strip():
                self.tail = [*self.tail, line.strip()][-LOG_TAIL:]
                if line.startswith(("[ERROR]", "ERROR")) or " ERROR " in line:
                    self.errors.append(line.strip())

    def failure(self, timeout: float) -> str:
        """One line: the server, where DevStack stopped, and the last lines it printed."""
        at = where(self.server)
        if self.state == "timeout":
            what = f"stack.sh did not finish within stack_timeout {timeout:.0f} s"
        elif self.state == "lost":
            what = "stack.sh ended without an exit code (killed?)"
        else:
            what = f"stack.sh exited {self.state}"
        if self.last_trace:
            trace = self.last_trace
            what += (f" in {trace['function']} ({trace['file']}:{trace['line']}: "
                     f"{trace['cmd'][:160]})")
        detail = " | ".join(self.errors[-2:] or self.tail[-3:])
        return masking.scrub(f"{at}: step 'stack.sh' failed: {what}; last lines: {detail}")


def _progress_line(runs: Any) -> str:
    parts = []
    for run in runs:
        step = run.last_trace["function"] if run.last_trace else "starting"
        parts.append(f"{run.server.host}: {run.state if run.state != 'running' else step}")
    return "stack.sh " + ", ".join(parts)


@contextmanager
def _progress() -> Iterator[Any]:
    """A status line on a terminal (where each server's stack.sh is); nothing when piped."""
    import sys

    if not sys.stderr.isatty():
        yield lambda text: None
        return
    from rich.console import Console
    from rich.text import Text

    from benchbed.terminal import safe

    started = time.monotonic()
    with Console(stderr=True).status("stack.sh") as status:
        # a Text, not a string: a remote trace's [brackets] are not rich markup
        yield lambda text: status.update(Text(safe(f"{text} ({time.monotonic() - started:.0f} s)")))

