"""A Nailgun simulator: the stand-in for a Fuel master, which cannot run here.

A real HTTP(S) server on 127.0.0.1 serving the part of `/api/v1/` that FuelEngine uses, as
the Nailgun of one Fuel release answers it (`Simulator(release=...)`, or
`python -m tests.nailgun_sim --release 8.0`): 5.0, 6.1, 7.0, 8.0, 9.0, 10.0 and 11.0. Each
difference in RELEASES was read in openstack/fuel-web at that release's tag (urls.py,
handlers/cluster.py, tasks.py, node.py, version.py, objects/serializers/, consts.py,
settings.yaml, fixtures/openstack.yaml, task/fake.py). Common to all: 201 on create, 202 for
deferred work, 204 on delete, 400 with {"message", "errors"} for refusals ("No changes to
deploy"), 404 for unknown ids; nodes go discover -> provisioning -> provisioned ->
deploying -> ready; a `deploy` supertask runs `provision` then `deployment` subtasks.
Tasks advance with wall-clock time on a clock thread (fake mode's threads), whatever the
client does; after a cluster is deleted its nodes come back in discovery after a delay.

Switches (attributes of Simulator): `seconds` (how long each phase takes); `fail_at` +
`fail_message` fail the deployment once the deploy task reaches that progress; `hang_at`
stops it there forever; `verify_error` fails network verification; `token` requires
X-Auth-Token; `keystone_user` requires a token from the simulated master Keystone at
/keystone/v3/auth/tokens (both only from 6.1: 5.0 has no authentication); `tls` serves
HTTPS. `times` has the moment of every request, `rate(window)` the busiest window.
"""

import argparse
import itertools
import json
import re
import secrets
import ssl
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import ip_address, ip_network
from typing import Any
from urllib.parse import parse_qs, urlsplit

GiB = 1 << 30


@dataclass(frozen=True)
class Release:
    """What one Fuel release's Nailgun answers differently, each fact read in fuel-web at
    that release's tag (files under nailgun/nailgun/)."""

    version: str
    names: tuple[str, ...]          # fixtures/openstack.yaml, the releases' `name`
    os_version: str                 # fixtures/openstack.yaml, the releases' `version`
    modes: tuple[str, ...]          # fixtures/openstack.yaml `modes_metadata`: multinode
                                    # is gone from 7.0
    auth: bool                      # settings.yaml AUTH (none at 5.0; version handler's
                                    # `auth_required` from 6.1)
    delete_task: bool               # api/v1/handlers/cluster.py ClusterHandler.DELETE:
                                    # `raise self.http(202, '{}')` to 8.0, the task from 9.0
    pending: bool                   # consts.py TASK_STATUSES: 'pending' from 8.0
    task_fields: tuple[str, ...]    # objects/serializers/task.py (api/serializers at 5.0):
                                    # parent_id, dry_run, graph_type, time_* from 10.0
    public_tls: bool | None         # fixtures/openstack.yaml editable.public_ssl.services:
                                    # absent to 6.1, true at 7.0, false from 8.0
    version_keys: tuple[str, ...]   # settings.yaml VERSION + handlers/version.py


TASK_FIELDS = ("id", "cluster", "uuid", "name", "result", "message", "status", "progress")
TASK_FIELDS_10 = (*TASK_FIELDS, "parent_id", "dry_run", "graph_type", "time_start", "time_end")
OLD_VERSION = ("release", "api", "nailgun_sha", "astute_sha", "fuellib_sha", "ostf_sha")
RELEASES: dict[str, Release] = {r.version: r for r in (
    Release("5.0", ("Icehouse on CentOS 6.5", "Icehouse on Ubuntu 12.04.4"), "2014.1-5.0",
            ("ha_compact", "multinode"), False, False, False, TASK_FIELDS, None,
            (*OLD_VERSION, "mirantis")),
    Release("6.1", ("Juno on CentOS 6.5", "Juno on Ubuntu 14.04.1"), "2014.2.2-6.1",
            ("ha_compact", "multinode"), True, False, False, TASK_FIELDS, None,
            (*OLD_VERSION, "feature_groups", "auth_required", "release_versions")),
    Release("7.0", ("Kilo on CentOS 6.5", "Kilo on Ubuntu 14.04"), "2015.1.0-7.0",
            ("ha_compact",), True, False, False, TASK_FIELDS, True,
            (*OLD_VERSION, "feature_groups", "auth_required", "release_versions")),
    Release("8.0", ("Liberty on CentOS 6.5", "Liberty on Ubuntu 14.04"), "liberty-8.0",
            ("ha_compact",), True, False, True, TASK_FIELDS, False,
            ("release", "auth_required")),
    Release("9.0", ("Mitaka on CentOS 6.5", "Mitaka on Ubuntu 14.04",
                    "Mitaka on Ubuntu+UCA 14.04"), "mitaka-9.0",
            ("ha_compact",), True, True, True, TASK_FIELDS, False, ("release", "auth_required")),
    Release("10.0", ("Newton on CentOS 6.5", "Newton on Ubuntu 16.04",
                     "Newton on Ubuntu+UCA 16.04"), "newton-10.0",
            ("ha_compact",), True, True, True, TASK_FIELDS_10, False,
            ("release", "auth_required")),
    Release("11.0", ("Ocata on CentOS 6.5", "Newton on Ubuntu 16.04",
                     "Ocata on Ubuntu+UCA 16.04"), "ocata-11.0",
            ("ha_compact",), True, True, True, TASK_FIELDS_10, False,
            ("release", "auth_required")),
)}
ROLES = ("controller", "compute", "cinder", "ceph-osd", "mongo", "base-os", "virt", "ironic")
WEIGHTS = {"provision": 0.4, "deployment": 1.0}
NODE_PHASES = {"provision": ("provisioning", "provisioned"), "deployment": ("deploying", "ready")}


class Refused(Exception):
    """An HTTP error answer: status and Nailgun's message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def make_node(node_id: int, mac: str, ram_gib: int, cpus: int, disks_gib: list[int]) -> dict:
    return {
        "id": node_id, "name": f"Untitled ({mac[-5:]})", "mac": mac, "status": "discover",
        "online": True, "cluster": None, "roles": [], "pending_roles": [],
        "pending_addition": False, "pending_deletion": False, "progress": 0,
        "error_type": None, "hostname": f"node-{node_id}", "fqdn": f"node-{node_id}.test.domain",
        "ip": f"10.20.0.{100 + node_id}", "manufacturer": "QEMU", "platform_name": "Standard PC",
        "os_platform": "centos", "kernel_params": None, "labels": {}, "group_id": None,
        "network_data": [],
        "meta": {
            "memory": {"total": ram_gib * GiB, "slots": 1},
            "cpu": {"total": cpus, "real": 1, "spec": [{"model": "QEMU Virtual CPU",
                                                        "frequency": 2400}] * cpus},
            "disks": [{"name": f"vd{chr(97 + i)}", "disk": f"vd{chr(97 + i)}",
                       "model": "VirtIO", "size": size * GiB}
                      for i, size in enumerate(disks_gib)],
            "interfaces": [{"name": "eth0", "mac": mac, "ip": f"10.20.0.{100 + node_id}",
                            "netmask": "255.255.255.0", "current_speed": 1000,
                            "max_speed": 1000}],
            "system": {"manufacturer": "QEMU", "product": "Standard PC"},
        },
    }


def default_nodes() -> list[dict]:
    """Six discovered nodes of three sizes, as a lab master would show them."""
    sizes = [(16, 8, [100, 100]), (16, 8, [100, 100]), (32, 16, [500]), (8, 4, [50]),
             (8, 2, [200]), (4, 2, [40])]
    return [make_node(i + 1, f"52:54:00:00:00:{i + 1:02x}", *size)
            for i, size in enumerate(sizes)]


class Simulator:
    """State of one simulated master of `release`; `serve()` starts the HTTP(S) server.

    Tasks run on a clock thread (fake mode's FakeThread sleeps between steps): how far a
    task is depends on the time since it started, never on how often a client reads it.
    """

    def __init__(self, nodes: list[dict] | None = None, release: str = "11.0",
                 tls: tuple[str, str] | None = None) -> None:
        if release not in RELEASES:
            raise ValueError(f"unknown release {release!r} (known: {', '.join(RELEASES)})")
        self.release = RELEASES[release]
        self.tls = tls
        self.lock = threading.RLock()
        self.nodes: dict[int, dict] = {n["id"]: n for n in (nodes or default_nodes())}
        self.clusters: dict[int, dict] = {}
        self.tasks: dict[int, dict] = {}
        self.ids = itertools.count(1)
        self.node_ids = itertools.count(max(self.nodes, default=0) + 1)
        # seconds each phase takes (fake mode's tick_interval x tick_count, shortened)
        self.seconds = {"provision": 1.5, "deployment": 2.5, "verify_networks": 1.0,
                        "stop_deployment": 1.0, "cluster_deletion": 1.0, "rediscover": 2.0}
        self.fail_at: int | None = None
        self.fail_message = "Puppet run failed on node-1: Could not start nova-api"
        self.hang_at: int | None = None
        self.verify_error: str | None = None
        self.token: str | None = None
        self.keystone_user: tuple[str, str] | None = None
        self.issued: set[str] = set()
        self.admin_password = "admin"
        self.requests: list[tuple[str, str, Any]] = []
        self.times: list[float] = []  # time.monotonic() of every request, in order
        self.answers: list[tuple[str, str, Any]] = []  # method, path, answer
        self.rediscover: list[tuple[float, dict]] = []  # (when, node) still rebooting
        self.server: ThreadingHTTPServer | None = None
        self.url = ""
        self.stopped = threading.Event()

    # -- server ------------------------------------------------------------------------------

    def serve(self) -> str:
        simulator = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _any(self) -> None:
                simulator.handle(self)

            do_GET = do_POST = do_PUT = do_DELETE = _any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        scheme = "http"
        if self.tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*self.tls)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        threading.Thread(target=self._clock, daemon=True).start()
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}/api/v1/"
        return self.url

    def stop(self) -> None:
        self.stopped.set()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def _clock(self) -> None:
        while not self.stopped.wait(0.1):
            with self.lock:
                self.advance(time.monotonic())

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(request.path)
        length = int(request.headers.get("Content-Length") or 0)
        raw = request.rfile.read(length) if length else b""
        headers: dict[str, str] = {}
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
            status, answer = 400, {"message": "Invalid json format", "errors": []}
        else:
            try:
                with self.lock:
                    self.requests.append((request.command, parts.path, body))
                    self.times.append(time.monotonic())
                    if parts.path.startswith("/keystone/"):
                        status, answer, headers = self.keystone(request.command, parts.path,
                                                                body)
                    elif re.fullmatch(r"/api(/v1)?/version/?", parts.path):
                        # urls.py public_urls(): the version needs no token
                        status, answer = 200, self.version()
                    else:
                        self.authorize(request.headers.get("X-Auth-Token"))
                        status, answer = self.route(request.command, parts.path,
                                                    parse_qs(parts.query,
                                                             keep_blank_values=True), body)
            except Refused as refused:
                status, answer = refused.status, {"message": str(refused), "errors": []}
        with self.lock:
            self.answers.append((request.command, parts.path, json.loads(json.dumps(answer))))
        data = b"" if status == 204 else json.dumps(answer).encode()
        request.send_response(status)
        if status != 204:
            request.send_header("Content-Type", "application/json")
        for key, value in headers.items():
            request.send_header(key, value)
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)

    def version(self) -> dict[str, Any]:
        """GET /api/version: settings.VERSION, with `auth_required` from 6.1."""
        values: dict[str, Any] = {"release": self.release.version, "api": "1",
                                  "auth_required": self.release.auth, "feature_groups": [],
                                  "release_versions": {}, "mirantis": "no"}
        return {key: values.get(key, "Unknown build") for key in self.release.version_keys}

    def authorize(self, token: str | None) -> None:
        """Keystone middleware from 6.1 (5.0 has none): a token is required."""
        if not self.release.auth:
            return
        if self.token is not None and token != self.token:
            raise Refused(401, "Authentication required")
        if self.keystone_user is not None and token not in self.issued:
            raise Refused(401, "Authentication required")

    def keystone(self, method: str, path: str, body: Any) -> tuple[int, Any, dict]:
        """The master's Keystone, v3 password authentication only."""
        if method != "POST" or path.rstrip("/") != "/keystone/v3/auth/tokens":
            raise Refused(404, "The resource could not be found.")
        user = ((body or {}).get("auth", {}).get("identity", {}).get("password", {})
                .get("user", {}))
        if self.keystone_user is None or (user.get("name"), user.get("password")) != \
                self.keystone_user:
            raise Refused(401, "The request you have made requires authentication.")
        token = secrets.token_hex(16)
        self.issued.add(token)
        expires = (datetime.now(UTC) + timedelta(hours=1)).strftime(
            "%Y-%m-%dT%H:%M:%S.000000Z")
        return 201, {"token": {"methods": ["password"], "expires_at": expires,
                               "user": {"id": "u1", "name": user["name"],
                                        "domain": {"id": "default", "name": "Default"}},
                               "catalog": []}}, {"X-Subject-Token": token}

    def rate(self, window: float) -> int:
        """The most requests any `window` seconds saw."""
        with self.lock:
            times = list(self.times)
        most, first = 0, 0
        for last, moment in enumerate(times):
            while moment - times[first] > window:
                first += 1
            most = max(most, last - first + 1)
        return most

    # -- routing -----------------------------------------------------------------------------

    def route(self, method: str, path: str, query: dict[str, list[str]], body: Any
              ) -> tuple[int, Any]:
        path = path.removeprefix("/api/v1").rstrip("/") or "/"
        for pattern, handler in self.ROUTES:
            found = re.fullmatch(pattern, path)
            if found:
                name = f"{method.lower()}_{handler}"
                if not hasattr(self, name):
                    raise Refused(405, "Method Not Allowed")
                return getattr(self, name)(*[int(g) for g in found.groups()], query=query,
                                           body=body)
        raise Refused(404, "Not Found")

    ROUTES = [
        (r"/releases", "releases"),
        (r"/nodes", "nodes"),
        (r"/nodes/(\d+)", "node"),
        (r"/clusters", "clusters"),
        (r"/clusters/(\d+)", "cluster"),
        (r"/clusters/(\d+)/attributes", "attributes"),
        (r"/clusters/(\d+)/changes", "changes"),
        (r"/clusters/(\d+)/stop_deployment", "stop_deployment"),
        (r"/clusters/(\d+)/network_configuration/(?:nova_network|neutron)/verify", "verify"),
        (r"/clusters/(\d+)/network_configuration/(?:nova_network|neutron)", "network"),
        (r"/tasks", "tasks"),
        (r"/tasks/(\d+)", "task"),
    ]

    def releases(self) -> list[dict]:
        """The release objects of this master (objects/serializers/release.py)."""
        return [{"id": index, "name": name, "version": self.release.os_version,
                 "state": "available", "is_deployable": True,
                 "operating_system": "CentOS" if "CentOS" in name else "Ubuntu",
                 "description": f"This option will install the OpenStack {name.split()[0]} "
                                f"packages",
                 "modes_metadata": {mode: {"description": mode} for mode in self.release.modes},
                 "roles_metadata": {role: {"name": role.title()} for role in ROLES},
                 "attributes_metadata": {"editable": self._editable_defaults()}}
                for index, name in enumerate(self.release.names, start=1)]

    def get_releases(self, **_: Any) -> tuple[int, Any]:
        return 200, self.releases()

    def get_nodes(self, *, query: dict, **_: Any) -> tuple[int, Any]:
        nodes = list(self.nodes.values())
        if "cluster_id" in query:
            wanted = query["cluster_id"][0]
            nodes = [n for n in nodes if (n["cluster"] is None if wanted == ""
                                          else str(n["cluster"]) == wanted)]
        return 200, nodes

    def get_node(self, node_id: int, **_: Any) -> tuple[int, Any]:
        return 200, self._node(node_id)

    def put_nodes(self, *, body: Any, **_: Any) -> tuple[int, Any]:
        """Bulk update, as NodeCollectionHandler.PUT: every item names a node by id."""
        if not isinstance(body, list):
            raise Refused(400, "Invalid json list")
        for item in body:
            node = self.nodes.get(item.get("id"))
            if node is None:
                raise Refused(404, f"Can't find node: {item}")
            cluster_id = item.get("cluster_id", node["cluster"])
            if item.get("pending_roles"):
                if cluster_id not in self.clusters:
                    raise Refused(400, f"Cannot assign pending_roles to node {node['id']}. "
                                       f"Node doesn't belong to any cluster.")
                release = self._release(self.clusters[cluster_id]["release_id"])
                invalid = set(item["pending_roles"]) - set(release["roles_metadata"])
                if invalid:
                    raise Refused(400, f"Roles {', '.join(sorted(invalid))} are not valid for "
                                       f"node {node['id']} in environment {cluster_id}")
        for item in body:
            node = self.nodes[item["id"]]
            node["cluster"] = item.get("cluster_id", node["cluster"])
            for key in ("pending_roles", "pending_addition", "pending_deletion"):
                if key in item:
                    node[key] = item[key]
        return 200, [self.nodes[item["id"]] for item in body]

    def get_clusters(self, **_: Any) -> tuple[int, Any]:
        return 200, [self._public(c) for c in self.clusters.values()]

    def post_clusters(self, *, body: Any, **_: Any) -> tuple[int, Any]:
        """ClusterValidator: release required and deployable, mode offered, name unique."""
        if not isinstance(body, dict):
            raise Refused(400, "Invalid json format")
        release_id = body.get("release", body.get("release_id"))
        if not release_id:
            raise Refused(400, "Release ID is required")
        release = next((r for r in self.releases() if r["id"] == release_id), None)
        if release is None:
            raise Refused(400, "Invalid release ID")
        mode = body.get("mode", "ha_compact")
        if mode not in release["modes_metadata"]:
            raise Refused(400, f"Cannot deploy in {mode} mode in current release. Need to be "
                               f"one of: {', '.join(release['modes_metadata'])}")
        if any(c["name"] == body.get("name") for c in self.clusters.values()):
            raise Refused(409, "Environment with this name already exists")
        cluster_id = next(self.ids)
        provider = body.get("net_provider", "nova_network")
        self.clusters[cluster_id] = {
            "id": cluster_id, "name": body.get("name") or f"cluster-{cluster_id}", "mode": mode,
            "status": "new", "net_provider": provider, "release_id": release_id,
            "fuel_version": self.release.version,
            "changes": [{"name": "attributes", "node_id": None},
                        {"name": "networks", "node_id": None}],
            "is_customized": False, "is_locked": False, "components": [], "ui_settings": {},
            "net_segment_type": body.get("net_segment_type", "gre"),
            "network": self._default_network(cluster_id, provider,
                                             body.get("net_segment_type", "gre")),
            "editable": self._editable_defaults(),
        }
        return 201, self._public(self.clusters[cluster_id])

    def get_cluster(self, cluster_id: int, **_: Any) -> tuple[int, Any]:
        return 200, self._public(self._cluster(cluster_id))

    def delete_cluster(self, cluster_id: int, **_: Any) -> tuple[int, Any]:
        """ClusterDeletionManager: refused while a deployment runs; else a 202 task."""
        cluster = self._cluster(cluster_id)
        if any(t["cluster"] == cluster_id and t["status"] in ("pending", "running")
               and t["name"] in ("deploy", "provision", "deployment")
               for t in self.tasks.values()):
            raise Refused(400, f"Can't delete environment '{cluster_id}' when running "
                               f"deployment task exists.")
        cluster["status"] = "remove"
        for node in self._cluster_nodes(cluster_id):
            node["pending_deletion"] = True
        task = self._task("cluster_deletion", cluster_id, status="running")
        # handlers/cluster.py: `raise self.http(202, '{}')` up to 8.0; the task from 9.0
        return 202, self._serialize(task) if self.release.delete_task else {}

    def get_attributes(self, cluster_id: int, **_: Any) -> tuple[int, Any]:
        return 200, {"editable": self._cluster(cluster_id)["editable"]}

    def _editable_defaults(self) -> dict:
        """The cluster attributes FuelEngine reads; public_ssl only from 7.0, on by default
        there only (fixtures/openstack.yaml)."""
        field = lambda value, kind="text": {"value": value, "type": kind, "weight": 10}  # noqa
        editable = {
            "access": {"metadata": {"label": "OpenStack Access", "weight": 10},
                       "user": field("admin"), "email": field("admin@localhost"),
                       "tenant": field("admin"),
                       "password": field(self.admin_password, "password")},
            "common": {"metadata": {"label": "Common", "weight": 30},
                       "debug": field(False, "checkbox")}}
        if self.release.public_tls is not None:
            on = self.release.public_tls
            editable["public_ssl"] = {"metadata": {"label": "Public TLS", "weight": 110},
                                      "horizon": field(on, "checkbox"),
                                      "services": field(on, "checkbox"),
                                      "cert_source": field("self_signed", "radio"),
                                      "hostname": field("public.fuel.local")}
        return editable

    def get_network(self, cluster_id: int, **_: Any) -> tuple[int, Any]:
        cluster = self._cluster(cluster_id)
        network = json.loads(json.dumps(cluster["network"]))
        if cluster["mode"].startswith("ha_"):
            public = self._net(network, "public")
            vip = public["ip_ranges"][0][0]
            network["public_vip"] = vip
            network["vips"] = {"public": {"ipaddr": vip, "network_role": "public/vip",
                                          "namespace": "haproxy", "node_roles": ["controller"],
                                          "is_user_defined": False, "vendor_specific": None}}
        return 200, network

    def put_network(self, cluster_id: int, *, body: Any, **_: Any) -> tuple[int, Any]:
        cluster = self._cluster(cluster_id)
        if cluster["status"] not in ("new", "stopped", "error"):
            raise Refused(403, "Network configuration cannot be changed during deployment and "
                               "after upgrade.")
        self._validate_network(cluster, body)
        cluster["network"]["networks"] = body["networks"]
        cluster["network"]["networking_parameters"].update(body.get("networking_parameters")
                                                           or {})
        return self.get_network(cluster_id)

    def put_verify(self, cluster_id: int, *, body: Any, **_: Any) -> tuple[int, Any]:
        cluster = self._cluster(cluster_id)
        self._validate_network(cluster, body)
        return 202, self._serialize(self._task("verify_networks", cluster_id, status="running"))

    def put_changes(self, cluster_id: int, **_: Any) -> tuple[int, Any]:
        """ApplyChangesTaskManager: `deploy` with `provision` and `deployment` subtasks."""
        cluster = self._cluster(cluster_id)
        if not any(n["pending_addition"] for n in self._cluster_nodes(cluster_id)):
            raise Refused(400, "No changes to deploy")
        cluster["status"] = "deployment"
        deploy = self._task("deploy", cluster_id, status="pending", progress=0)
        self._task("provision", cluster_id, parent=deploy["id"])
        self._task("deployment", cluster_id, parent=deploy["id"])
        return 202, self._serialize(deploy)

    def put_stop_deployment(self, cluster_id: int, **_: Any) -> tuple[int, Any]:
        self._cluster(cluster_id)
        if not any(t["cluster"] == cluster_id and t["name"] in ("provision", "deployment")
                   and t["status"] == "running" for t in self.tasks.values()):
            raise Refused(400, f"Nothing to stop - deployment is not running on environment "
                               f"'{cluster_id}'")
        return 202, self._serialize(self._task("stop_deployment", cluster_id, status="running"))

    def get_tasks(self, *, query: dict, **_: Any) -> tuple[int, Any]:
        tasks = list(self.tasks.values())
        if query.get("cluster_id"):
            tasks = [t for t in tasks if str(t["cluster"]) == query["cluster_id"][0]]
        return 200, [self._serialize(t) for t in tasks]

    def get_task(self, task_id: int, **_: Any) -> tuple[int, Any]:
        if task_id not in self.tasks:
            raise Refused(404, "Task not found")
        return 200, self._serialize(self.tasks[task_id])

    def _serialize(self, task: dict) -> dict:
        """TaskSerializer's fields of this release (parent_id and the times from 10.0)."""
        return {key: task[key] for key in self.release.task_fields}

    # -- the state machines, on the clock -----------------------------------------------------

    def advance(self, now: float) -> None:
        """Every unfinished top-level task moves on to where `now` puts it."""
        for task in list(self.tasks.values()):
            if task["status"] in ("pending", "running") and task["parent_id"] is None:
                getattr(self, f"_advance_{task['name']}")(task, now - task["started"])
        for when, node in list(self.rediscover):
            if now >= when:
                # the node rebooted into the bootstrap image and registered again
                self.rediscover.remove((when, node))
                self.nodes[node["id"]] = node

    def _advance_verify_networks(self, task: dict, elapsed: float) -> None:
        if elapsed < self.seconds["verify_networks"]:
            task.update(status="running", progress=min(99, int(100 * elapsed /
                                                                self.seconds["verify_networks"])))
        elif self.verify_error:
            self._finish(task, "error", self.verify_error)
        else:
            self._finish(task, "ready", "")

    def _advance_deploy(self, task: dict, elapsed: float) -> None:
        subtasks = sorted((t for t in self.tasks.values() if t["parent_id"] == task["id"]),
                          key=lambda t: t["id"])
        cluster = self.clusters[task["cluster"]]
        task["status"] = "running"
        limit = self.fail_at if self.fail_at is not None else self.hang_at
        start = 0.0
        for subtask in subtasks:
            length = self.seconds[subtask["name"]]
            share = max(0.0, min(1.0, (elapsed - start) / length))
            start += length
            if share > 0 and subtask["status"] in ("pending", "running"):
                subtask["status"] = "running"
            subtask["progress"] = int(100 * share)
        # TaskHelper.calculate_parent_task_progress, with provision's weight of 0.4
        progress = round(sum(WEIGHTS[t["name"]] * t["progress"] for t in subtasks)
                         / sum(WEIGHTS[t["name"]] for t in subtasks))
        if limit is not None and progress >= limit:
            progress = limit
            current = subtasks[-1]
            current["progress"] = min(current["progress"], 99)
            if self.fail_at is not None:
                nodes = self._cluster_nodes(task["cluster"])
                nodes[0]["status"], nodes[0]["error_type"] = "error", "deploy"
                self._finish(current, "error", self.fail_message)
                task["progress"] = progress
                self._finish(task, "error", f"Deployment has failed. {self.fail_message}")
                cluster["status"] = "error"
                return
        task["progress"] = progress
        for subtask in subtasks:
            if subtask["progress"] == 100 and subtask["status"] != "ready":
                subtask["status"] = "ready"
                if subtask["name"] == "deployment":
                    self._deployed(task["cluster"])
                else:
                    for node in self._cluster_nodes(task["cluster"]):
                        node["status"] = NODE_PHASES[subtask["name"]][1]
        current = next((t for t in subtasks if t["status"] != "ready"), None)
        if current is None:
            cluster["status"] = "operational"
            self._finish(task, "ready", f"Deployment of environment '{cluster['name']}' is "
                                        f"done. Access the OpenStack dashboard (Horizon) at "
                                        f"http://{self._public_address(cluster)}/")
            return
        if current["status"] == "running":
            for node in self._cluster_nodes(task["cluster"]):
                node.update(status=NODE_PHASES[current["name"]][0],
                            progress=current["progress"])

    def _advance_stop_deployment(self, task: dict, elapsed: float) -> None:
        """stop_deployment_resp: deploy tasks deleted, nodes reset to discover."""
        if elapsed < self.seconds["stop_deployment"]:
            task["status"] = "running"
            return
        cluster_id = task["cluster"]
        for other in list(self.tasks.values()):
            if other["cluster"] == cluster_id and other["name"] in ("deploy", "provision",
                                                                     "deployment"):
                del self.tasks[other["id"]]
        for node in self._cluster_nodes(cluster_id):
            node.update(status="discover", progress=0, pending_addition=True,
                        pending_roles=node["roles"] or node["pending_roles"], roles=[])
        self.clusters[cluster_id]["status"] = "stopped"
        self._finish(task, "ready", f"Deployment of environment '{cluster_id}' was "
                                    f"successfully stopped")

    def _advance_cluster_deletion(self, task: dict, elapsed: float) -> None:
        """remove_cluster_resp, then FakeDeletionThread's nodes_to_restore: the nodes leave
        the master and come back in discovery once they have rebooted (new ids)."""
        if elapsed < self.seconds["cluster_deletion"]:
            task["progress"] = int(100 * elapsed / self.seconds["cluster_deletion"])
            return
        cluster_id = task["cluster"]
        back = time.monotonic() + self.seconds["rediscover"]
        for node in self._cluster_nodes(cluster_id):
            del self.nodes[node["id"]]
            fresh = make_node(next(self.node_ids), node["mac"], 1, 1, [1])
            fresh["meta"] = node["meta"]
            self.rediscover.append((back, fresh))
        for other in list(self.tasks.values()):
            if other["cluster"] == cluster_id:
                del self.tasks[other["id"]]
        del self.clusters[cluster_id]

    def _deployed(self, cluster_id: int) -> None:
        cluster = self.clusters[cluster_id]
        public = self._net(cluster["network"], "public")
        first = int(ip_address(public["ip_ranges"][0][0]))
        offset = 1 if cluster["mode"].startswith("ha_") else 0
        prefix = ip_network(public["cidr"]).prefixlen
        # controllers first: the first public address (after the VIP) is the controller's
        for index, node in enumerate(sorted(self._cluster_nodes(cluster_id), key=lambda n: (
                "controller" not in n["pending_roles"], n["id"]))):
            node.update(roles=node["pending_roles"], pending_roles=[], pending_addition=False,
                        status="ready", progress=100)
            node["network_data"] = [
                {"name": "public", "cidr": public["cidr"], "vlan": public["vlan_start"],
                 "ip": f"{ip_address(first + offset + index)}/{prefix}", "dev": "eth1",
                 "gateway": public["gateway"],
                 "netmask": str(ip_network(public["cidr"]).netmask),
                 "brd": str(ip_network(public["cidr"]).broadcast_address)},
                {"name": "fuelweb_admin", "ip": f"{node['ip']}/24", "dev": "eth0"}]

    # -- helpers ------------------------------------------------------------------------------

    def _task(self, name: str, cluster_id: int, status: str = "pending", progress: int = 0,
              parent: int | None = None) -> dict:
        task_id = next(self.ids)
        if status == "pending" and not self.release.pending:
            status = "running"  # consts.TASK_STATUSES has no 'pending' before 8.0
        self.tasks[task_id] = {
            "id": task_id, "uuid": str(uuid.uuid4()), "name": name, "cluster": cluster_id,
            "status": status, "progress": progress, "message": None, "result": {},
            "parent_id": parent, "dry_run": False, "graph_type": None,
            "time_start": datetime.now(UTC).isoformat(), "time_end": None,
            "started": time.monotonic()}
        return self.tasks[task_id]

    @staticmethod
    def _finish(task: dict, status: str, message: str) -> None:
        task.update(status=status, progress=100, message=message or None,
                    time_end=datetime.now(UTC).isoformat())

    def _cluster(self, cluster_id: int) -> dict:
        if cluster_id not in self.clusters:
            raise Refused(404, "Cluster not found")
        return self.clusters[cluster_id]

    def _node(self, node_id: int) -> dict:
        if node_id not in self.nodes:
            raise Refused(404, "Node not found")
        return self.nodes[node_id]

    def _cluster_nodes(self, cluster_id: int) -> list[dict]:
        return [n for n in self.nodes.values() if n["cluster"] == cluster_id]

    def _release(self, release_id: int) -> dict:
        return next(r for r in self.releases() if r["id"] == release_id)

    @staticmethod
    def _public(cluster: dict) -> dict:
        return {k: v for k, v in cluster.items()
                if k not in ("network", "net_segment_type", "editable")}

    @staticmethod
    def _net(network: dict, name: str) -> dict:
        return next(n for n in network["networks"] if n["name"] == name)

    def _public_address(self, cluster: dict) -> str:
        return self._net(cluster["network"], "public")["ip_ranges"][0][0]

    @staticmethod
    def _default_network(cluster_id: int, provider: str, segment: str) -> dict:
        def net(net_id: int, name: str, cidr: str, gateway: str | None, ranges: list,
                vlan: int | None) -> dict:
            return {"id": net_id, "name": name, "cidr": cidr, "gateway": gateway,
                    "ip_ranges": ranges, "vlan_start": vlan, "group_id": cluster_id,
                    "meta": {"notation": "ip_ranges" if ranges else "cidr",
                             "configurable": True, "use_gateway": gateway is not None}}

        base = cluster_id * 10
        networks = [
            net(1, "fuelweb_admin", "10.20.0.0/24", "10.20.0.2", [["10.20.0.3", "10.20.0.254"]],
                None),
            net(base + 1, "public", "172.16.0.0/24", "172.16.0.1",
                [["172.16.0.2", "172.16.0.127"]], None),
            net(base + 2, "management", "192.168.0.0/24", None, [], 101),
            net(base + 3, "storage", "192.168.1.0/24", None, [], 102),
        ]
        parameters: dict[str, Any] = {"dns_nameservers": ["8.8.4.4", "8.8.8.8"],
                                      "floating_ranges": [["172.16.0.128", "172.16.0.254"]]}
        if provider == "nova_network":
            networks.append(net(base + 4, "fixed", "10.0.0.0/16", None, [], 103))
            parameters.update(net_manager="FlatDHCPManager", fixed_networks_cidr="10.0.0.0/16",
                              fixed_networks_vlan_start=103, fixed_network_size=256,
                              fixed_networks_amount=1)
        else:
            networks.append(net(base + 4, "private", None, None, [], None))
            parameters.update(base_mac="fa:16:3e:00:00:00", gre_id_range=[2, 65535],
                              internal_cidr="192.168.111.0/24", internal_gateway="192.168.111.1",
                              net_l23_provider="ovs", segmentation_type=segment,
                              vlan_range=[1000, 1030], floating_name="admin_floating_net",
                              internal_name="admin_internal_net")
        return {"networks": networks, "networking_parameters": parameters}

    def _validate_network(self, cluster: dict, body: Any) -> None:
        """NetworkConfigurationValidator, the checks a merge can break."""
        if not isinstance(body, dict) or not isinstance(body.get("networks"), list):
            raise Refused(400, "'networks' is a required property")
        known = {n["id"] for n in cluster["network"]["networks"]}
        for network in body["networks"]:
            if network.get("id") not in known:
                raise Refused(400, f"Invalid network ID: {network.get('id')}")
            if not network.get("cidr"):
                continue
            try:
                cidr = ip_network(network["cidr"], strict=False)
                for first, last in network.get("ip_ranges") or []:
                    if ip_address(first) not in cidr or ip_address(last) not in cidr:
                        raise Refused(400, f"IP range {first} - {last} of network "
                                           f"'{network['name']}' is not in {cidr}")
            except ValueError as error:
                raise Refused(400, f"Invalid network '{network['name']}': {error}") from None
        for server in (body.get("networking_parameters") or {}).get("dns_nameservers", []):
            try:
                ip_address(server)
            except ValueError:
                raise Refused(400, f"'{server}' is not a valid IP address") from None


def main() -> None:
    """Serve a simulated master of one release until interrupted (for trying a client)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--release", choices=list(RELEASES), default="11.0")
    parser.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"),
                        help="serve HTTPS with this certificate and key")
    arguments = parser.parse_args()
    simulator = Simulator(release=arguments.release,
                          tls=tuple(arguments.tls) if arguments.tls else None)
    print(simulator.serve(), flush=True)
    try:
        simulator.stopped.wait()
    except KeyboardInterrupt:
        simulator.stop()


if __name__ == "__main__":
    main()
