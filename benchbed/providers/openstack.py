"""OpenStackProvider: servers in an existing OpenStack cloud, in the older tool's config.

What the older tool got wrong is fixed here: every server, key pair, security group and
uploaded image is in the ledger before the call that creates it; servers are created and
awaited in parallel; destroy deletes exactly what the ledger names (never a key pair or a
security group found by a name someone else may use) and waits until it is gone.
"""

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

from benchbed.clients.openstack_cloud import CloudError, OpenStackCloud, server_address
from benchbed.errors import ConfigError, InputError
from benchbed.keys import deployment_key
from benchbed.ledger import Resource
from benchbed.parallel import run_parallel
from benchbed.plugin import ResourceKind, join_path
from benchbed.providers.base import ServerProvider, Stray, Sweep, check_ssh_cidr
from benchbed.providers.ec2_api import database_id
from benchbed.retry import wait_for
from benchbed.server import Server
from benchbed.settings import PluginConfig, Section, setting
from benchbed.tls import check_ca_file

ACTIVE_TIMEOUT = 600
# the ledger kind of the group shared by the deployment's servers (_peer_group)
PEER_GROUP = "peer_group"
# which benchbed database a server's deployment is in (gc touches only its own database's)
DATABASE_KEY = "benchbed_database"
# the same two facts as tags of images and security groups, which have no metadata
DEPLOYMENT_TAG = "benchbed:"
DATABASE_TAG = "benchbed-database:"
GONE_TIMEOUT = 300
IMAGE_TIMEOUT = 1800
# what a cloud calls its flavors and images: anything printable, no control characters
CLOUD_NAME = re.compile(r"[^\x00-\x1f\x7f]{1,255}")
NIC_KEYS = {"net-id": "uuid", "port-id": "port", "v4-fixed-ip": "fixed_ip",
            "v6-fixed-ip": "fixed_ip"}


URL_PATTERN = r"^https?://[^\s]+$"
# the older tool's image forms: uploaded from a URL, found by checksum, or named by uuid
IMAGE_FORMS = [{"required": ["name", "format", "url", "checksum"]}, {"required": ["checksum"]},
               {"required": ["uuid"]}]


@dataclass(frozen=True, kw_only=True)
class OpenStackImage(Section):
    checksum: str | None = setting("The image's MD5 checksum: an active image with it is "
                                   "used, else one is uploaded from `url`.", None,
                                   pattern=r"^[0-9a-f]{32}$")
    name: str | None = setting("The name of the image uploaded from `url`.", None,
                               minLength=1, maxLength=255)
    format: Literal["qcow2", "raw", "vmdk", "vdi", "iso", "vhd", "ami"] | None = setting(
        "The disk format of the image uploaded from `url`.", None)
    userdata: str | None = setting("User data (cloud-init) given to every server.", None)
    url: str | None = setting("Where the cloud's image service downloads the image from.",
                              None, pattern=URL_PATTERN)
    uuid: str | None = setting("An existing image's id.", None, minLength=1)


@dataclass(frozen=True, kw_only=True)
class OpenStackProviderConfig(PluginConfig):
    deployment_name: str = setting("The prefix of the names of what is created in the cloud.",
                                   minLength=1, maxLength=64)
    amount: int = setting("How many servers to create when the engine does not say.", 1,
                          minimum=1, maximum=1000)
    auth_url: str = setting("Keystone's URL.", pattern=URL_PATTERN)
    user: str = setting("The user to log in to the cloud as.", minLength=1, maxLength=255)
    password: str = setting("The user's password.", secret=True, minLength=1)
    tenant: str = setting("The project (tenant) the servers are created in.", minLength=1,
                          maxLength=255)
    user_domain_name: str = setting("The user's Keystone domain.", "Default", minLength=1)
    project_domain_name: str = setting("The project's Keystone domain.", "Default",
                                       minLength=1)
    region: str | None = setting("The cloud's region (default: the catalogue's only one).",
                                 None, minLength=1)
    https_insecure: bool = setting("Do not verify the cloud's TLS certificates.", False)
    https_cacert: str | None = setting("A CA bundle to verify the cloud's TLS certificates "
                                       "with.", None, minLength=1)
    flavor_id: str = setting("The flavor (id or name) when the engine names none.",
                             minLength=1, maxLength=255)
    nics: list[dict[str, str]] = setting(
        "The servers' networks, as nova boot's --nic takes them (net-id, port-id, "
        "v4-fixed-ip, v6-fixed-ip).", [],
        items={"type": "object", "minProperties": 1, "additionalProperties": False,
               "properties": {key: {"type": "string", "minLength": 1} for key in NIC_KEYS}})
    config_drive: bool = setting("Give the servers a config drive.", False)
    wait_for_cloud_init: bool = setting("Wait until cloud-init has finished on every server.",
                                        False)
    image: OpenStackImage = setting("The image the servers start from when the engine names "
                                    "none (by uuid, by checksum, or uploaded from a URL).",
                                    anyOf=IMAGE_FORMS)
    secgroup_name: str = setting("The prefix of the name of the security group that lets "
                                 "SSH in.", "benchbed", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    ssh_cidr: str = setting("Where SSH is let in from, in CIDR form.", "0.0.0.0/0",
                            minLength=1)
    ssh_user: str = setting("The user the image lets in with the deployment's key.", "root",
                            pattern=r"^[a-z_][a-z0-9_-]{0,31}$")


class OpenStackProvider(ServerProvider[OpenStackProviderConfig]):
    """Servers (Nova) in an existing OpenStack cloud, from an existing or uploaded image."""

    EXAMPLE = {
        "type": "OpenStackProvider", "deployment_name": "bench",
        "auth_url": "http://192.0.2.10:5000/v3/", "user": "admin", "password": "secret",
        "tenant": "admin", "flavor_id": "m1.small", "image": {"uuid": "debian-12"}}

    Config = OpenStackProviderConfig

    @classmethod
    def validate_config(cls, config: OpenStackProviderConfig, path: str, *,
                        has_parent: bool = False) -> None:
        check_ssh_cidr(config.ssh_cidr, path)
        if config.https_cacert:
            check_ca_file(config.https_cacert, join_path(path, "https_cacert"))

    @classmethod
    def validate_request(cls, config: OpenStackProviderConfig, image: str | None,
                         size: str | None, path: str) -> None:
        """The cloud's own flavor and image names pass through; the cloud checks them."""
        for key, value in (("image", image), ("flavor", size)):
            if value is not None and not CLOUD_NAME.fullmatch(value):
                raise ConfigError(join_path(path, key),
                                  f"{value[:80]!r} is not a name or id of the cloud's")

    def default_amount(self) -> int:
        return self.config.amount

    @property
    def _name(self) -> str:
        """Unique per deployment and config path; readable as the older tool's names were."""
        given = re.sub(r"[^A-Za-z0-9]+", "-", self.config.deployment_name).strip("-")
        return f"{given or 'benchbed'}-{self.tag}"

    @property
    def _owner_tags(self) -> list[str]:
        """Whose an image or security group is, for gc: the deployment and its database."""
        return [f"{DEPLOYMENT_TAG}{self.deployment.uuid}", f"{DATABASE_TAG}{database_id()}"]

    _cloud: OpenStackCloud | None = None

    @property
    def cloud(self) -> OpenStackCloud:
        if self._cloud is None:
            self._cloud = OpenStackCloud(self.config, where=self.path)
        return self._cloud

    # -- create --------------------------------------------------------------------------------

    def create_servers(self, image_uuid: str | None = None, type_id: str | None = None,
                       amount: int = 1) -> list[Server]:
        if amount < 1:
            raise InputError(f"{self.path}: OpenStackProvider needs at least one server")
        with self.deployment.step("check flavor and image", self.config.flavor_id):
            flavor = self.cloud.flavor_id(type_id or self.config.flavor_id)
            image = image_uuid or self._image()
        key_name = self._key_pair()
        groups = [*self._security_group(), *self._peer_group()]
        request: dict[str, Any] = {
            "imageRef": image, "flavorRef": flavor, "key_name": key_name,
            "metadata": {"benchbed_deployment": self.deployment.uuid, "benchbed_path": self.path,
                         DATABASE_KEY: database_id()},
            "config_drive": self.config.config_drive}
        if groups:
            # Nova takes a group's name or id here
            request["security_groups"] = [{"name": name} for name in groups]
        if self.config.nics:
            request["networks"] = [{NIC_KEYS[key]: value for key, value in nic.items()}
                                   for nic in self.config.nics]
        if self.config.image.userdata:
            request["user_data"] = self.config.image.userdata
        names = [f"{self._name}-{index}" for index in range(amount)]
        rows = run_parallel("creating servers", names,
                            lambda name: self._create_server(name, request))
        server_ids = [row.data["server_id"] for row in rows]
        with self.deployment.step("wait for ACTIVE", ", ".join(names)):
            active = wait_for(lambda: self._active(server_ids), timeout=ACTIVE_TIMEOUT,
                              what="servers ACTIVE with an address", interval=0.5,
                              max_interval=5.0)
        key_path, _ = deployment_key(self.deployment)
        servers = [Server(host=_ssh_host(found), user=self.config.ssh_user,
                          key=str(key_path), name=found["name"],
                          facts={"server_id": found["id"], "flavor": flavor, "image": image},
                          deployment=self.deployment) for found in active]
        for server, row in zip(servers, rows, strict=True):
            row.data["ssh_address"] = f"{server.host}:22"
            self.ledger.update(row)
        if self.config.wait_for_cloud_init:
            run_parallel("waiting for cloud-init", servers, _wait_for_cloud_init,
                         describe=lambda server: server.host)
        return servers

    def _image(self) -> str:
        """The config's image: by uuid, by checksum, or uploaded from its URL (and recorded)."""
        wanted = self.config.image
        if wanted.uuid is not None:
            if self.cloud.image(wanted.uuid) is None:
                raise CloudError(f"{self.path}: image {wanted.uuid} does not exist")
            return wanted.uuid
        matching = [i["id"] for i in self.cloud.images(status="active")
                    if i.get("checksum") == wanted.checksum]
        if matching:
            return str(matching[0])
        if wanted.url is None or wanted.name is None or wanted.format is None:
            raise CloudError(f"{self.path}: no image with checksum {wanted.checksum}")
        created = [r for r in self.ledger.resources("image") if r.data.get("image_id")]
        if created:
            return str(created[0].data["image_id"])
        url = wanted.url
        with self.ledger.creating("image", wanted.name) as row, \
                self.deployment.step("upload image", url):
            row.data["image_id"] = self.cloud.create_image(
                wanted.name, wanted.format, self._owner_tags)
            self.ledger.update(row)
            self.cloud.import_image(row.data["image_id"], url)
            uploaded = wait_for(lambda: self._image_ready(row.data["image_id"], url),
                                timeout=IMAGE_TIMEOUT, what="image active", max_interval=5.0)
            if uploaded.get("checksum") != wanted.checksum:
                raise CloudError(f"{self.path}: image from {url} has checksum "
                                 f"{uploaded.get('checksum')}, not {wanted.checksum}")
        return str(row.data["image_id"])

    def _image_ready(self, image_id: str, url: str) -> dict[str, Any] | None:
        image = self.cloud.image(image_id)
        if image is None or image["status"] in ("killed", "deleted"):
            raise CloudError(f"{self.path}: the cloud could not import image {image_id}")
        if image["status"] == "queued":
            failure = self.cloud.import_failure(image_id)
            if failure is not None:
                raise CloudError(f"{self.path}: the cloud could not import image {image_id} "
                                 f"from {url}: {failure}")
        return image if image["status"] == "active" else None

    def _key_pair(self) -> str:
        if not any(r.state == "created" for r in self.ledger.resources("key_pair")):
            _, public_key = deployment_key(self.deployment)
            with self.ledger.creating("key_pair", self._name), \
                    self.deployment.step("import key pair", self._name):
                self.cloud.import_key_pair(self._name, public_key)
        return self._name

    def _security_group(self) -> list[str]:
        """A group of our own that lets SSH in, where the cloud has Neutron."""
        if not self.cloud.has_service("network"):
            return []
        name = f"{self.config.secgroup_name}-{self._name}"
        if not any(r.state == "created" for r in self.ledger.resources("security_group")):
            with self.ledger.creating("security_group", name) as row, \
                    self.deployment.step("create security group", name):
                row.data["group_id"] = self.cloud.create_security_group(
                    name, f"benchbed deployment {self.deployment.uuid}",
                    self.config.ssh_cidr)
                self.ledger.update(row)
                self.cloud.tag_security_group(row.data["group_id"], self._owner_tags)
        return [name]

    def _peer_group(self) -> list[str]:
        """The group that lets the deployment's servers reach each other on `open_to_peers`
        (as Ec2Provider's: rules whose remote group is the group itself, shared by the
        deployment's OpenStackProviders of one project, a row each, the last to go deletes
        it and its rules with it); named to Nova by id, as its name is not unique."""
        if not self.open_to_peers or not self.cloud.has_service("network"):
            return []
        group = f"{self.config.secgroup_name}-{self.deployment.uuid[:8]}-peers"

        def create(row: Resource) -> None:
            row.data["group_id"] = self.cloud.create_group(group, self._peers_description)
            self.ledger.update(row)
            self.cloud.tag_security_group(row.data["group_id"], self._owner_tags)

        shared = (f"{group} in {self.config.auth_url}, project {self.config.tenant}, "
                  f"region {self.config.region or '(the only one)'}")
        return [self.shared_peer_group(
            PEER_GROUP, shared, {"group_name": group, "description": self._peers_description},
            create, self.cloud.allow_peers)]

    @property
    def _peers_description(self) -> str:
        return f"benchbed deployment {self.deployment.uuid}: its servers"

    def _create_server(self, name: str, request: dict[str, Any]) -> Resource:
        with self.ledger.creating("server", name) as row, \
                self.deployment.step("create server", name, lane=name):
            row.data["server_id"] = self.cloud.create_server({**request, "name": name})
            self.ledger.update(row)
        return row

    def _active(self, server_ids: list[str]) -> list[dict[str, Any]] | None:
        found = [self.cloud.server(server_id) for server_id in server_ids]
        for server_id, server in zip(server_ids, found, strict=True):
            if server is None:
                raise CloudError(f"{self.path}: server {server_id} disappeared")
            if server["status"] == "ERROR":
                fault = server.get("fault", {}).get("message", "no fault given")
                raise CloudError(f"{self.path}: server {server['name']} is ERROR: {fault}")
        if all(s and s["status"] == "ACTIVE" and server_address(s) for s in found):
            return [s for s in found if s]
        return None

    # -- destroy -------------------------------------------------------------------------------

    def delete_server(self, resource: Resource) -> None:
        """The saved id, or (after a crash before the cloud answered) the servers of that
        exact name that carry this deployment's metadata."""
        saved = resource.data.get("server_id")
        for server_id in [saved] if saved else self.cloud.servers_named(resource.name,
                                                                        self.deployment.uuid):
            self.cloud.delete_server(server_id)
            wait_for(partial(_gone, self.cloud, server_id), timeout=GONE_TIMEOUT,
                     what=f"server {server_id} deleted", interval=0.5, max_interval=5.0)


    def delete_group(self, resource: Resource) -> None:
        group_id = resource.data.get("group_id")
        for found in [group_id] if group_id else self.cloud.groups_named(
                resource.name, f"benchbed deployment {self.deployment.uuid}"):
            self.cloud.delete_security_group(found)

    def delete_peer_group(self, resource: Resource) -> None:
        """Only the last of the deployment's rows for the shared group deletes it (its rules
        go with it); after a crash before Neutron answered, the groups of that name whose
        description is this deployment's."""
        with self.ledger.last_holder(resource) as last:
            if not last:
                return
            group_id = resource.data.get("group_id")
            for found in [group_id] if group_id else self.cloud.groups_named(
                    resource.data["group_name"], resource.data["description"]):
                self.cloud.delete_security_group(found)

    def delete_key_pair(self, resource: Resource) -> None:
        self.cloud.delete_key_pair(resource.name)

    def delete_image(self, resource: Resource) -> None:
        """The saved id, or the images of that name with this deployment's tag."""
        saved = resource.data.get("image_id")
        for image_id in [saved] if saved else [
                image["id"] for image in self.cloud.images(
                    name=resource.name, tag=f"{DEPLOYMENT_TAG}{self.deployment.uuid}")]:
            self.cloud.delete_image(image_id)

    # -- gc ------------------------------------------------------------------------------------

    @classmethod
    def find_strays(cls, config: OpenStackProviderConfig, live: Callable[[], set[str]]
                    ) -> Sweep:
        """Servers (by metadata), images and security groups (by tags) that name a deployment
        gone from this database; those of another database, or of no known database, are
        counted and never touched. Key pairs carry neither, so gc leaves them."""
        sweep, alive = Sweep(), live()
        database = database_id()
        cloud = OpenStackCloud(config, where="gc")
        owned = [("server", server["id"], server["metadata"].get("benchbed_deployment"),
                  server["metadata"].get(DATABASE_KEY)) for server in cloud.tagged_servers()]
        for kind, found in (("image", cloud.images()),
                            ("security_group", cloud.security_groups())):
            for item in found:
                deployment, its_database = _owner(item.get("tags") or [])
                if deployment is not None:
                    owned.append((kind, item["id"], deployment, its_database))
        for kind, resource_id, deployment, its_database in owned:
            if its_database != database:
                sweep.elsewhere += 1
            elif deployment not in alive:
                sweep.strays.append(Stray(kind, resource_id, str(deployment),
                                          "its deployment no longer exists"))
        return sweep

    @classmethod
    def delete_strays(cls, config: OpenStackProviderConfig, strays: list[Stray]) -> None:
        """Servers first (Nova deletes the ports it made for them), waiting for each: a group
        still in use cannot be deleted; then the groups and images."""
        cloud = OpenStackCloud(config, where="gc")
        servers = [stray for stray in strays if stray.kind == "server"]
        for stray in servers:
            cloud.delete_server(stray.id)
        for stray in servers:
            wait_for(partial(_gone, cloud, stray.id), timeout=GONE_TIMEOUT,
                     what=f"server {stray.id} deleted", interval=0.5, max_interval=5.0)
        for stray in strays:
            if stray.kind == "security_group":
                cloud.delete_security_group(stray.id)
            elif stray.kind == "image":
                cloud.delete_image(stray.id)

    RESOURCES = {
        "image": ResourceKind(delete=delete_image),
        "key_pair": ResourceKind(delete=delete_key_pair),
        "security_group": ResourceKind(delete=delete_group),
        PEER_GROUP: ResourceKind(delete=delete_peer_group),
        "server": ResourceKind(delete=delete_server,
                               requires=("image", "key_pair", "security_group", PEER_GROUP)),
    }


def _owner(tags: list[str]) -> tuple[str | None, str | None]:
    """The deployment and database an image's or group's tags name (None where absent)."""
    def value(prefix: str) -> str | None:
        return next((tag[len(prefix):] for tag in tags if tag.startswith(prefix)), None)

    return value(DEPLOYMENT_TAG), value(DATABASE_TAG)


def _gone(cloud: OpenStackCloud, server_id: str) -> bool:
    return cloud.server(server_id) is None


def _ssh_host(server: dict[str, Any]) -> str:
    """The address of a server that `_active` found ACTIVE with one."""
    address = server_address(server)
    if address is None:
        raise CloudError(f"server {server['name']} has no address")
    return address


def _wait_for_cloud_init(server: Server) -> None:
    """cloud-init's result file: absent while it runs; its errors fail the server."""
    server.ssh.wait_ready(timeout=ACTIVE_TIMEOUT)

    def finished() -> bool:
        result = server.ssh.run(["cat", "/run/cloud-init/result.json"], check=False)
        if result.exit_code != 0:
            return False
        errors = json.loads(result.stdout)["v1"]["errors"]
        if errors:
            raise CloudError(f"{server.host}: cloud-init failed: {'; '.join(errors)}")
        return True

    wait_for(finished, timeout=ACTIVE_TIMEOUT, what=f"cloud-init on {server.host}",
             interval=1.0, max_interval=5.0)
