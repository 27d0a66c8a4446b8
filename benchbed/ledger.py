"""Write-ahead resource ledger: a row exists before its resource, and outlives it until gone.

Every provider and engine records what it creates here. `destroy` needs nothing but
these rows to remove everything, even after the creating process was killed.
"""

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from benchbed.db.sql import transaction, utcnow
from benchbed.parallel import run_parallel

if TYPE_CHECKING:
    from benchbed.deployment import Deployment

CREATING = "creating"
CREATED = "created"

# One lock per resource shared by several scopes of one deployment (see Ledger.sharing).
_SHARED: dict[tuple[str, str, str], threading.Lock] = {}
_SHARED_GUARD = threading.Lock()


@dataclass
class Resource:
    id: int
    scope: str
    kind: str
    name: str
    state: str
    data: dict[str, Any] = field(default_factory=dict)


# A row whose removal runs on a server records that server (`Server.to_dict()`) under one of
# these keys: DebianEngine's and DevStack's installs ("server"), LxcProvider's containers,
# images and host networks ("host"). A row that only names an SSH address ("ssh_address":
# a netns host, a VM) is removed from elsewhere and does not live on the server.
SERVER_KEYS = ("server", "host")


def server_of(resource: Resource) -> tuple[str, int] | None:
    """The server (host, port) that removing `resource` needs, if it lives on one."""
    for key in SERVER_KEYS:
        server = resource.data.get(key)
        if isinstance(server, dict) and "host" in server:
            return str(server["host"]), int(server.get("port", 22))
    return None


def lives_on(resource: Resource, host: str) -> bool:
    """Whether `resource` lives on `host`, given as "HOST" or "HOST:PORT"."""
    server = server_of(resource)
    return server is not None and host in (server[0], f"{server[0]}:{server[1]}")


class Ledger:
    """The rows of one deployment that belong to one plugin instance (its config scope)."""

    def __init__(self, deployment: "Deployment", scope: str) -> None:
        self.deployment = deployment
        self.scope = scope

    @contextmanager
    def creating(self, kind: str, name: str, **data: Any) -> Iterator[Resource]:
        """Record the resource, then let the caller create it; mark it created on success.

        On failure the row stays (state `creating`): the resource may exist half-made,
        and destroy must try to remove it.
        """
        resource = self.record(kind, name, **data)
        yield resource
        with transaction() as db:
            db.count("UPDATE resources SET state = :state, data = :data WHERE id = :id",
                     state=CREATED, data=resource.data, id=resource.id)
        resource.state = CREATED

    def record(self, kind: str, name: str, **data: Any) -> Resource:
        """Write the row before the resource exists (state `creating`)."""
        with transaction() as db:
            resource_id = db.execute(
                "INSERT INTO resources (deployment_uuid, scope, kind, name, data, state, "
                "created_at) VALUES (:uuid, :scope, :kind, :name, :data, :state, :now) "
                "RETURNING id", uuid=self.deployment.uuid, scope=self.scope, kind=kind,
                name=name, data=data, state=CREATING, now=utcnow())[0].id
        self.deployment.logger.debug("ledger: recorded %s %s", kind, name)
        return Resource(resource_id, self.scope, kind, name, CREATING, dict(data))

    @contextmanager
    def sharing(self, kind: str, name: str) -> Iterator[list[Resource]]:
        """Hold the lock on a resource that several scopes of this deployment use (a cloud
        security group of the controller's and the nodes' providers), each with a row of
        its own of this kind and name; yields those rows, every scope's. Creating or
        adopting it, and letting it go, happen under this lock: one actor per deployment
        (invariant 2) makes a lock of this process enough."""
        with _SHARED_GUARD:
            lock = _SHARED.setdefault((self.deployment.uuid, kind, name), threading.Lock())
        with lock:
            with transaction() as db:
                rows = db.execute("SELECT * FROM resources WHERE deployment_uuid = :uuid AND "
                                  "kind = :kind AND name = :name ORDER BY id",
                                  uuid=self.deployment.uuid, kind=kind, name=name)
            yield [Resource(r.id, r.scope, r.kind, r.name, r.state, dict(r.data))
                   for r in rows]

    @contextmanager
    def last_holder(self, resource: Resource) -> Iterator[bool]:
        """For the delete hook of a shared resource's row: True (under the lock) when no
        other scope's row holds it, so the caller deletes it; otherwise this row is dropped
        at once, and the last holder's delete removes the resource."""
        with self.sharing(resource.kind, resource.name) as rows:
            last = all(row.id == resource.id for row in rows)
            if not last:
                self.forget(resource)
            yield last

    def update(self, resource: Resource) -> None:
        with transaction() as db:
            db.count("UPDATE resources SET data = :data WHERE id = :id", data=resource.data,
                     id=resource.id)

    def resources(self, kind: str | None = None) -> list[Resource]:
        """This scope's rows, newest first (the order they must be removed in)."""
        of_kind = {} if kind is None else {"kind": kind}
        with transaction() as db:
            rows = db.execute(f"SELECT * FROM resources WHERE deployment_uuid = :uuid AND "
                              f"scope = :scope {'AND kind = :kind ' if of_kind else ''}"
                              f"ORDER BY id DESC",
                              uuid=self.deployment.uuid, scope=self.scope, **of_kind)
        return [Resource(r.id, r.scope, r.kind, r.name, r.state, dict(r.data)) for r in rows]

    def forget(self, resource: Resource) -> None:
        """Drop the row: call only once the resource is confirmed gone.

        A server resource names its SSH address in `data["ssh_address"]` ("host:port"), a
        batch of servers theirs in `data["ssh_addresses"]`: their recorded host keys go with
        it, so a new server at such an address is trusted anew.
        """
        addresses = [*resource.data.get("ssh_addresses", []), resource.data.get("ssh_address")]
        with transaction() as db:
            db.count("DELETE FROM resources WHERE id = :id", id=resource.id)
            for address in filter(None, addresses):
                db.count("DELETE FROM host_keys WHERE deployment_uuid = :uuid AND "
                         "address = :address", uuid=self.deployment.uuid, address=address)
        self.deployment.logger.debug("ledger: %s %s is gone", resource.kind, resource.name)

    def destroy(self, remove: Callable[[Resource], None], label: str = "destroying",
                blocks: Callable[[Resource, Resource], bool] | None = None) -> None:
        """Remove every resource, newest first, independent ones in parallel.

        `blocks(newer, older)` says whether `older` must wait until `newer` is gone (a
        container before the network it sits on); by default a row waits for the newer
        rows of other kinds. Each wave holds every row that nothing pending blocks.
        `remove` must treat "already gone" as success. A failing wave stops the walk, so
        the resources that the failed ones depend on are left for a re-run.
        """
        must_wait = blocks or (lambda newer, older: newer.kind != older.kind)
        pending = self.resources()
        while pending:
            wave = [row for index, row in enumerate(pending)
                    if not any(must_wait(newer, row) for newer in pending[:index])]

            def remove_and_forget(resource: Resource) -> None:
                # a resource one reaches over SSH is a server: its deletion is in its lane
                lane = resource.name if resource.data.get("ssh_address") else None
                with self.deployment.step(f"delete {resource.kind}", resource.name, lane=lane):
                    remove(resource)
                self.forget(resource)

            kinds = ", ".join(sorted({row.kind for row in wave}))
            run_parallel(f"{label} {kinds}", wave, remove_and_forget,
                         describe=lambda r: f"{r.kind} {r.name}")
            done = {row.id for row in wave}
            pending = [row for row in pending if row.id not in done]
