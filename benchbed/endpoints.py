"""The shapes of what engines deploy: a deployment's endpoints, as the exporters, the health
probes and MultihostEngine read them.

An engine's `deploy()` returns one `Endpoints` mapping; benchbed stores it as JSON with the
deployment (secrets included, masked wherever they are shown) and hands it to
`deployment export`, `deployment check` and, for a MultihostEngine, to the nodes as their
`parent_endpoints`. Each key is optional: an engine sets those it has. Who sets what:

* `openstack` (an `OpenStackCloud`): ExistingCloud, DevstackEngine, FuelEngine,
  DebianEngine; LxcEngine and DebianEngine nodes repeat their controller's;
* `servers` (`ServerEntry` list): ServersEngine, DevstackEngine, DebianEngine, LxcEngine;
* `services`, `compute_hosts`: DebianEngine, LxcEngine and a DevstackEngine node;
  `templates`: LxcEngine;
* `devstack`: DevstackEngine; `fuel`: FuelEngine;
* `controller_ip`, `nodes`: MultihostEngine, whose own keys are its controller's.

Only the standard library is imported here: the CLI reads these types at no cost.
"""

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NotRequired, TypedDict, cast

if TYPE_CHECKING:
    from benchbed.server import Server


class User(TypedDict):
    """Keystone v3 credentials of one user (ExistingCloud's normalize_user makes them from the
    v2 or v3 form the user wrote)."""

    username: str
    password: str
    project_name: str
    user_domain_name: str
    project_domain_name: str


class OpenStackCloud(TypedDict):
    """An OpenStack cloud: the shape of Rally's `existing@openstack` spec, which exporters
    write out as openrc, clouds.yaml and the Rally spec. At least one of `admin` and
    `users` is there; clients use `admin`, else the first of `users`."""

    # Keystone's URL (http or https, usually ending in /v3)
    auth_url: str
    region_name: str
    # the interface clients use: public, internal or admin (never with "URL")
    endpoint_type: str
    # true: clients do not verify the TLS certificate
    https_insecure: bool
    # path of the CA bundle clients verify with; "" for the system's
    https_cacert: str
    admin: NotRequired[User]
    users: NotRequired[list[User]]


class ServerEntry(TypedDict):
    """One server, as `Server.to_dict()` writes it and `Server.from_dict()` reads it: how to
    reach it over SSH. Only `host` is always there."""

    host: str
    port: NotRequired[int]  # 22 when absent
    user: NotRequired[str]  # root when absent
    # a private key: a path, or the key itself ("-----BEGIN ... PRIVATE KEY-----")
    key: NotRequired[str]
    password: NotRequired[str]
    # the provider's name for it (a container's, a VM's), unique in the deployment
    name: NotRequired[str]
    # what the provider knows of it (its image, size, host), as it reported it
    facts: NotRequired[dict[str, Any]]
    # LxcEngine: resident memory of the clone's nova-compute, in MiB
    resident_mb: NotRequired[float]


class DevstackInfo(TypedDict):
    """What DevstackEngine ran, so its nodes join with the same passwords."""

    branch: str
    # local.conf's *_PASSWORD values by name (ADMIN_PASSWORD, DATABASE_PASSWORD, ...)
    passwords: dict[str, str]


class FuelInfo(TypedDict):
    """Where FuelEngine's cluster lives, so cleanup and check can find it."""

    api_url: str
    cluster_id: int
    mode: str


class LostHost(TypedDict):
    """A host that stopped answering while its nodes deployed (LxcEngine's `tolerate`)."""

    host: str
    error: str


class Endpoints(TypedDict, total=False):
    """What an engine deployed. Every key is optional: see the module's docstring for which
    engine sets which."""

    # the cloud to benchmark, with admin (or user) credentials
    openstack: OpenStackCloud
    # the servers the engine made or used, the controller's first (MultihostEngine reads the
    # first one's `host` as the controller's address)
    servers: list[ServerEntry]
    # the services the engine runs on its servers (DebianEngine's `services`, as deployed)
    services: list[str]
    # Nova's names of the compute hosts this engine added (checked by `deployment check`)
    compute_hosts: list[str]
    # LxcEngine: the template container of each host, which the clones are layered on
    templates: list[str]
    # LxcEngine: the hosts lost while their nodes deployed, tolerated; their nodes are not
    # in `servers` or `compute_hosts`
    lost_hosts: list[LostHost]
    devstack: DevstackInfo
    fuel: FuelInfo
    # MultihostEngine: the address the nodes' `{controller_ip}` became
    controller_ip: str
    # MultihostEngine: each node's own endpoints, in the order of the config's `nodes`
    nodes: list["Endpoints"]


def cloud_user(cloud: OpenStackCloud) -> User:
    """The credentials clients use: the admin's, else the first user's."""
    if "admin" in cloud:
        return cloud["admin"]
    return cloud["users"][0]


def stored(data: Mapping[str, Any]) -> Endpoints:
    """A mapping taken to have the Endpoints shape: the JSON the database gives back of what
    an engine's `deploy()` returned, or endpoints an engine assembled from a service's own
    answers (Keystone's catalogue, Nailgun's attributes). The one cast to Endpoints."""
    return cast(Endpoints, data)


def server_entry(server: "Server") -> ServerEntry:
    """A server as endpoints hold it (`Server.to_dict()`, typed)."""
    return cast(ServerEntry, server.to_dict())
