"""A Nailgun simulator: the stand-in for a Fuel master, which cannot run here.

A real HTTP server on 127.0.0.1 serving the part of `/api/v1/` that FuelEngine uses, with
the paths, payloads, status codes and state machines of fuel-web (nailgun/api/v1/urls.py,
handlers/, validators/, serializers/, task/fake.py): 201 on create, 202 with a task for
deferred work, 204 on delete, 400 with {"message", "errors"} for refusals ("No changes to
deploy"), 404 for unknown ids; nodes go discover -> provisioning -> provisioned ->
deploying -> ready; a `deploy` supertask runs `provision` then `deployment` subtasks.
Tasks advance one step each time a client reads a task by id (fake mode's tick).

Switches (attributes of Simulator): `fail_at` + `fail_message` fail the deployment subtask
once it reaches that progress; `hang_at` stops it there forever; `verify_error` fails
network verification; `token` requires X-Auth-Token; `keystone_user` requires a token from
the simulated master Keystone at /keystone/v3/auth/tokens.
"""

import itertools
import json
import re
import secrets
import threading
import uuid
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import ip_address, ip_network
from typing import Any
from urllib.parse import parse_qs, urlsplit

GiB = 1 << 30
RELEASES = [
    {"id": 1, "name": "Havana on CentOS 6.4", "version": "2013.2-5.0", "state": "available",
     "operating_system": "CentOS", "is_deployable": True,
     "description": "This option will install the OpenStack Havana packages using a CentOS "
                    "based operating system.",
     "modes_metadata": {"multinode": {"description": "Multinode"},
                        "ha_compact": {"description": "HA compact"},
                        "ha_full": {"description": "HA full"}},
     "roles_metadata": {r: {"name": r.title()} for r in ("controller", "compute", "cinder",
                                                          "ceph-osd", "mongo", "base-os")}},
    {"id": 2, "name": "Mitaka on Ubuntu 14.04", "version": "mitaka-9.0", "state": "available",
     "operating_system": "Ubuntu", "is_deployable": True, "description": "Mitaka",
     "modes_metadata": {"ha_compact": {"description": "HA compact"}},
     "roles_metadata": {r: {"name": r.title()} for r in ("controller", "compute", "cinder",
                                                          "ceph-osd", "mongo", "base-os",
                                                          "virt", "ironic")}},
]
DEPLOY_STEP = 50       # progress a subtask makes per tick: few ticks, as polls back off
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
    """State of one simulated master; `serve()` starts the HTTP server on a free port."""

    def __init__(self, nodes: list[dict] | None = None) -> None:
        self.lock = threading.RLock()
        self.nodes: dict[int, dict] = {n["id"]: n for n in (nodes or default_nodes())}
        self.clusters: dict[int, dict] = {}
        self.tasks: dict[int, dict] = {}
        self.ids = itertools.count(1)
        self.node_ids = itertools.count(max(self.nodes, default=0) + 1)
        self.fail_at: int | None = None
        self.fail_message = "Puppet run failed on node-1: Could not start nova-api"
        self.hang_at: int | None = None
        self.verify_error: str | None = None
        self.token: str | None = None
        self.keystone_user: tuple[str, str] | None = None
        self.issued: set[str] = set()
        self.admin_password = "admin"
        self.requests: list[tuple[str, str, Any]] = []
        self.answers: list[tuple[str, str, Any]] = []  # method, path, answer
        self.server: ThreadingHTTPServer | None = None

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
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}/api/v1/"

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

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
                    if parts.path.startswith("/keystone/"):
                        status, answer, headers = self.keystone(request.command, parts.path,
                                                                body)
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

    def authorize(self, token: str | None) -> None:
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

    def get_releases(self, **_: Any) -> tuple[int, Any]:
        return 200, RELEASES

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
        release = next((r for r in RELEASES if r["id"] == release_id), None)
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
            "fuel_version": "5.0", "changes": [{"name": "attributes", "node_id": None},
                                               {"name": "networks", "node_id": None}],
            "is_customized": False, "is_locked": False, "components": [], "ui_settings": {},
            "net_segment_type": body.get("net_segment_type", "gre"),
            "network": self._default_network(cluster_id, provider,
                                             body.get("net_segment_type", "gre")),
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
        return 202, self._task("cluster_deletion", cluster_id, status="running", progress=0)

    def get_attributes(self, cluster_id: int, **_: Any) -> tuple[int, Any]:
        self._cluster(cluster_id)
        field = lambda value, kind="text": {"value": value, "type": kind, "weight": 10}  # noqa
        return 200, {"editable": {
            "access": {"metadata": {"label": "OpenStack Access", "weight": 10},
                       "user": field("admin"), "email": field("admin@localhost"),
                       "tenant": field("admin"),
                       "password": field(self.admin_password, "password")},
            "public_ssl": {"metadata": {"label": "Public TLS", "weight": 110},
                           "horizon": field(False, "checkbox"),
                           "services": field(False, "checkbox"),
                           "hostname": field("public.fuel.local")},
            "common": {"metadata": {"label": "Common", "weight": 30},
                       "debug": field(False, "checkbox")}}}

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
        return 202, self._task("verify_networks", cluster_id, status="running", progress=0)

    def put_changes(self, cluster_id: int, **_: Any) -> tuple[int, Any]:
        """ApplyChangesTaskManager: `deploy` with `provision` and `deployment` subtasks."""
        cluster = self._cluster(cluster_id)
        if not any(n["pending_addition"] for n in self._cluster_nodes(cluster_id)):
            raise Refused(400, "No changes to deploy")
        cluster["status"] = "deployment"
        deploy = self._task("deploy", cluster_id, status="pending", progress=0)
        self._task("provision", cluster_id, parent=deploy["id"])
        self._task("deployment", cluster_id, parent=deploy["id"])
        return 202, deploy

    def put_stop_deployment(self, cluster_id: int, **_: Any) -> tuple[int, Any]:
        self._cluster(cluster_id)
        if not any(t["cluster"] == cluster_id and t["name"] in ("provision", "deployment")
                   and t["status"] == "running" for t in self.tasks.values()):
            raise Refused(400, f"Nothing to stop - deployment is not running on environment "
                               f"'{cluster_id}'")
        return 202, self._task("stop_deployment", cluster_id, status="running", progress=0)

    def get_tasks(self, *, query: dict, **_: Any) -> tuple[int, Any]:
        tasks = list(self.tasks.values())
        if query.get("cluster_id"):
            tasks = [t for t in tasks if str(t["cluster"]) == query["cluster_id"][0]]
        return 200, tasks

    def get_task(self, task_id: int, **_: Any) -> tuple[int, Any]:
        self.tick()
        if task_id not in self.tasks:
            raise Refused(404, "Task not found")
        return 200, self.tasks[task_id]

    # -- the state machines -------------------------------------------------------------------

    def tick(self) -> None:
        """One step of every unfinished task (fake mode's tick)."""
        for task in list(self.tasks.values()):
            if task["status"] in ("pending", "running") and task["parent_id"] is None:
                getattr(self, f"_tick_{task['name']}")(task)

    def _tick_verify_networks(self, task: dict) -> None:
        if task["progress"] < 30:
            task["progress"] = 30
        elif self.verify_error:
            self._finish(task, "error", self.verify_error)
        else:
            self._finish(task, "ready", "")

    def _tick_deploy(self, task: dict) -> None:
        subtasks = [t for t in self.tasks.values() if t["parent_id"] == task["id"]]
        current = next((t for t in subtasks if t["status"] != "ready"), None)
        task["status"] = "running"
        if current is None:
            cluster = self.clusters[task["cluster"]]
            cluster["status"] = "operational"
            self._finish(task, "ready", f"Deployment of environment '{cluster['name']}' is "
                                        f"done. Access the OpenStack dashboard (Horizon) at "
                                        f"http://{self._public_address(cluster)}/")
            return
        # the deploy task stops at `fail_at` or `hang_at` percent for one poll to see it; then
        # it fails there, or stays there for ever
        limit = self.fail_at if self.fail_at is not None else self.hang_at
        held = current["name"] == "deployment" and limit is not None and \
            task["progress"] >= limit
        if held and self.fail_at is not None:
            nodes = self._cluster_nodes(task["cluster"])
            nodes[0]["status"], nodes[0]["error_type"] = "error", "deploy"
            self._finish(current, "error", self.fail_message)
            self._finish(task, "error", f"Deployment has failed. {self.fail_message}")
            self.clusters[task["cluster"]]["status"] = "error"
            return
        if current["status"] == "pending":
            current["status"] = "running"
        elif not held:
            current["progress"] = min(100, current["progress"] + DEPLOY_STEP)
        running, done = NODE_PHASES[current["name"]]
        for node in self._cluster_nodes(task["cluster"]):
            node["status"] = done if current["progress"] == 100 else running
            node["progress"] = current["progress"]
        # TaskHelper.calculate_parent_task_progress, with provision's weight of 0.4
        progress = round(sum(WEIGHTS[t["name"]] * t["progress"] for t in subtasks)
                         / sum(WEIGHTS[t["name"]] for t in subtasks))
        task["progress"] = min(progress, limit) if current["name"] == "deployment" and \
            limit is not None else progress
        if current["progress"] == 100 and not (limit is not None and progress >= limit):
            current["status"] = "ready"
            if current["name"] == "deployment":
                self._deployed(task["cluster"])

    def _tick_stop_deployment(self, task: dict) -> None:
        """stop_deployment_resp: deploy tasks deleted, nodes reset to discover."""
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

    def _tick_cluster_deletion(self, task: dict) -> None:
        """remove_cluster_resp: nodes removed, then rediscovered (new ids, same MACs)."""
        if task["progress"] < 50:
            task["progress"] = 50
            return
        cluster_id = task["cluster"]
        for node in self._cluster_nodes(cluster_id):
            del self.nodes[node["id"]]
            fresh = make_node(next(self.node_ids), node["mac"], 1, 1, [1])
            fresh["meta"] = node["meta"]
            self.nodes[fresh["id"]] = fresh
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
        self.tasks[task_id] = {
            "id": task_id, "uuid": str(uuid.uuid4()), "name": name, "cluster": cluster_id,
            "status": status, "progress": progress, "message": None, "result": {},
            "parent_id": parent, "dry_run": False, "graph_type": None,
            "time_start": datetime.now(UTC).isoformat(), "time_end": None}
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

    @staticmethod
    def _release(release_id: int) -> dict:
        return next(r for r in RELEASES if r["id"] == release_id)

    @staticmethod
    def _public(cluster: dict) -> dict:
        return {k: v for k, v in cluster.items() if k not in ("network", "net_segment_type")}

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
