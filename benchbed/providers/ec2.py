"""Ec2Provider: Amazon EC2 instances (or any EC2-compatible API) that are never leaked.

Every resource is in the ledger before the call that creates it, its id is saved as soon
as the cloud answers, and it carries benchbed's tags from its creation on, so that
`destroy` finds it from the ledger and `benchbed gc` from the tags when a ledger is lost.
Credentials come from boto3's chain (environment, profile, instance role); a config that
gives them inline has them masked like every other secret.
"""

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from benchbed.errors import ConfigError, InputError
from benchbed.keys import deployment_key
from benchbed.ledger import Resource
from benchbed.parallel import run_parallel
from benchbed.plugin import ResourceKind, join_path
from benchbed.providers import ec2_api
from benchbed.providers.base import ServerProvider, Stray, Sweep, check_ssh_cidr
from benchbed.providers.ec2_api import CREATOR_TAG, TOKEN_TAG, Ec2Error
from benchbed.retry import wait_for
from benchbed.server import Server
from benchbed.settings import PluginConfig, setting

DEFAULT_INSTANCE_TYPE = "t3.micro"
AMI_PATTERN = re.compile(r"ami-[0-9a-f]{8,17}")
INSTANCE_TYPE_PATTERN = re.compile(r"[a-z][a-z0-9-]*\.[a-z0-9]+")
DURATION_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
RUNNING_TIMEOUT = 600
RESERVED_TAG_PREFIXES = ("aws:", "benchbed:")
# the ledger kind of the group shared by the deployment's servers (Ec2Provider._peer_group)
PEER_GROUP = "peer_group"


@dataclass(frozen=True, kw_only=True)
class Ec2ProviderConfig(PluginConfig):
    region: str = setting("The EC2 region, e.g. eu-west-1.",
                          pattern=r"^[a-z]{2}(-[a-z]+)+-[0-9]+$")
    endpoint_url: str | None = setting("An EC2-compatible API's URL (default: AWS's own).",
                                       None, pattern=r"^https?://[^\s]+$")
    subnet_id: str | None = setting("The subnet to start the instances in (default: the "
                                    "region's default VPC).", None,
                                    pattern=r"^subnet-[0-9a-f]{8,17}$")
    ssh_user: str = setting("The user the AMI lets in with the deployment's key.", "admin",
                            pattern=r"^[a-z_][a-z0-9_-]{0,31}$")
    ssh_cidr: str | None = setting("Where SSH is let in from, in CIDR form (e.g. "
                                   "203.0.113.7/32); required when the engine logs in, "
                                   "absent: no SSH rule.", None, minLength=1)
    expires_in: str = setting("When `benchbed gc` may take the resources for leftovers: a "
                              "number and s, m, h or d.", "4h",
                              pattern=r"^[1-9][0-9]{0,5}[smhd]$")
    tags: dict[str, str] = setting("Tags of your own put on every resource (aws:, benchbed: "
                                   "and 'creator' are reserved).", {}, maxProperties=40,
                                   additionalProperties={"type": "string", "maxLength": 256})
    aws_access_key_id: str | None = setting("An access key id (default: boto3's credential "
                                            "chain).", None, pattern=r"^[A-Z0-9]{4,128}$")
    aws_secret_access_key: str | None = setting("The secret of aws_access_key_id.", None,
                                                secret=True, minLength=1)
    aws_session_token: str | None = setting("A session token for temporary credentials.",
                                            None, secret=True, minLength=1)
    profile: str | None = setting("A profile of the AWS config files to take credentials "
                                  "from.", None, minLength=1)


class Ec2Provider(ServerProvider[Ec2ProviderConfig]):
    """Amazon EC2 instances (any EC2-compatible API), tagged, and swept by `benchbed gc`."""

    EXAMPLE = {"type": "Ec2Provider", "region": "eu-west-1"}
    EXTRAS = {"boto3": "ec2"}

    Config = Ec2ProviderConfig

    @classmethod
    def validate_config(cls, config: Ec2ProviderConfig, path: str, *,
                        has_parent: bool = False) -> None:
        if (config.aws_access_key_id is None) != (config.aws_secret_access_key is None):
            raise ConfigError(join_path(path, "aws_secret_access_key"),
                              "give aws_access_key_id and aws_secret_access_key together")
        check_ssh_cidr(config.ssh_cidr, path)
        for key in config.tags:
            if not 1 <= len(key) <= 128:
                raise ConfigError(join_path(path, "tags"), "tag keys have 1 to 128 characters")
            if key.lower().startswith(RESERVED_TAG_PREFIXES) or key == CREATOR_TAG:
                raise ConfigError(join_path(path, f"tags.{key}"),
                                  "aws:, benchbed: and 'creator' are reserved tag keys")

    @classmethod
    def validate_request(cls, config: Ec2ProviderConfig, image: str | None, size: str | None,
                         path: str) -> None:
        """AMI ids and instance type names pass through; the cloud checks them at create."""
        if image is None:
            raise ConfigError(join_path(path, "image"), "Ec2Provider needs an AMI id (ami-...)")
        if not AMI_PATTERN.fullmatch(image):
            raise ConfigError(join_path(path, "image"),
                              f"{image[:80]!r} is not an AMI id (ami-...)")
        if size is not None and not INSTANCE_TYPE_PATTERN.fullmatch(size):
            raise ConfigError(join_path(path, "flavor"),
                              f"{size[:80]!r} is not an EC2 instance type (e.g. t3.micro)")

    @classmethod
    def validate_ssh(cls, config: Ec2ProviderConfig, path: str) -> None:
        if config.ssh_cidr is None:
            raise ConfigError(join_path(path, "ssh_cidr"),
                              "is required (where SSH is allowed from, e.g. 203.0.113.7/32) "
                              "unless the engine's wait_for_ssh is false")

    # -- names and tags ------------------------------------------------------------------------

    @property
    def _name(self) -> str:
        """Unique per deployment and config scope (a multihost deployment has several)."""
        return f"benchbed-{self.deployment.uuid}-{re.sub(r'[^a-z0-9]+', '-', self.path)}"

    def _tags(self) -> dict[str, str]:
        expires_in = self.config.expires_in
        expires = datetime.now(UTC) + timedelta(**{DURATION_UNITS[expires_in[-1]]:
                                                   int(expires_in[:-1])})
        return {**self.config.tags,
                **ec2_api.benchbed_tags(self.deployment.uuid, self.deployment.name, expires),
                "Name": f"benchbed {self.deployment.name}"[:256]}

    # -- create --------------------------------------------------------------------------------

    _api: ec2_api.Ec2Api | None = None

    @property
    def ec2(self) -> ec2_api.Ec2Api:
        if self._api is None:
            self._api = ec2_api.Ec2Api(self.config, where=self.path)
        return self._api

    def create_servers(self, image_uuid: str | None = None, type_id: str | None = None,
                       amount: int = 1) -> list[Server]:
        ami, instance_type = image_uuid, type_id or DEFAULT_INSTANCE_TYPE
        if ami is None or amount < 1:
            raise InputError(f"{self.path}: Ec2Provider needs an AMI and at least one server")
        with self.deployment.step("check AMI and instance type", f"{ami}, {instance_type}"):
            vpc_id = self.ec2.check_request(ami, instance_type, self.config.subnet_id)
        tags = self._tags()
        steps: list[Callable[[], str | None]] = [lambda: self._key_pair(tags),
                                                 lambda: self._security_group(tags, vpc_id),
                                                 lambda: self._peer_group(tags, vpc_id)]
        key_name, group_id, peer_group_id = run_parallel(
            "creating key pair and security groups", steps, lambda step: step(),
            describe=lambda _: self._name)
        token = f"benchbed-{uuid.uuid4()}"
        params: dict[str, Any] = {
            "ImageId": ami, "InstanceType": instance_type, "MinCount": amount,
            "MaxCount": amount, "KeyName": key_name,
            "SecurityGroupIds": [group_id, *([peer_group_id] if peer_group_id else [])],
            "TagSpecifications": ec2_api.tag_specifications(
                ["instance", "volume"], {**tags, TOKEN_TAG: token})}
        if self.config.subnet_id is not None:
            params["SubnetId"] = self.config.subnet_id
        with self.ledger.creating("instance", token, client_token=token, instance_ids=[]) as row, \
                self.deployment.step("run instances", f"{amount} x {instance_type} ({ami})"):
            instances = self.ec2.run_instances(params, token, self.deployment.uuid)
            row.data["instance_ids"] = [instance["InstanceId"] for instance in instances]
            self.ledger.update(row)
        with self.deployment.step("wait for running", ", ".join(row.data["instance_ids"])):
            running = wait_for(lambda: self._running(row.data["instance_ids"]),
                               timeout=RUNNING_TIMEOUT, what="instances running with an address",
                               interval=0.2, max_interval=2.0)
        row.data["ssh_addresses"] = [f"{_ssh_host(instance)}:22" for instance in running]
        self.ledger.update(row)
        key_path, _ = deployment_key(self.deployment)
        return [Server(host=_ssh_host(instance), user=self.config.ssh_user,
                       key=str(key_path), name=instance["InstanceId"],
                       facts={"instance_id": instance["InstanceId"], "ami": ami,
                              "instance_type": instance_type, "region": self.config.region,
                              "availability_zone": instance["Placement"]["AvailabilityZone"]},
                       deployment=self.deployment) for instance in running]

    def _key_pair(self, tags: dict[str, str]) -> str:
        if not any(r.state == "created" for r in self.ledger.resources("key_pair")):
            _, public_key = deployment_key(self.deployment)
            with self.ledger.creating("key_pair", self._name) as row, \
                    self.deployment.step("import key pair", self._name):
                row.data["key_pair_id"] = self.ec2.import_key_pair(self._name, public_key, tags)
                self.ledger.update(row)
        return self._name

    def _security_group(self, tags: dict[str, str], vpc_id: str | None) -> str:
        created = [r for r in self.ledger.resources("security_group") if r.state == "created"]
        if created:
            return created[0].data["group_id"]
        with self.ledger.creating("security_group", self._name, vpc_id=vpc_id) as row, \
                self.deployment.step("create security group", self._name):
            row.data["group_id"] = self.ec2.create_security_group(
                self._name, f"benchbed deployment {self.deployment.uuid}", vpc_id, tags)
            self.ledger.update(row)
            if self.config.ssh_cidr is not None:
                self.ec2.allow_ssh(row.data["group_id"], self.config.ssh_cidr)
        return row.data["group_id"]

    def _peer_group(self, tags: dict[str, str], vpc_id: str | None) -> str | None:
        """The group that lets the deployment's servers reach each other on `open_to_peers`
        (nothing to open: none). Its rules' source is the group itself, and the deployment's
        Ec2Providers in one VPC share it (each records a row under one name: the last to go
        deletes it, and its rules go with it); the ports are in the row before any rule
        exists."""
        if not self.open_to_peers:
            return None
        group = f"benchbed-{self.deployment.uuid}-peers"

        def create(row: Resource) -> None:
            row.data["group_id"] = self.ec2.create_security_group(
                group, f"benchbed deployment {self.deployment.uuid}: its servers", vpc_id, tags)

        return self.shared_peer_group(
            PEER_GROUP, f"{group} in {self.ec2.endpoint}, {vpc_id or 'default VPC'}",
            {"group_name": group, "vpc_id": vpc_id}, create, self.ec2.allow_peers)

    def _running(self, instance_ids: list[str]) -> list[dict[str, Any]] | None:
        instances = self.ec2.instances(instance_ids)
        for instance in instances:
            if instance["State"]["Name"] in ("shutting-down", "terminated", "stopping", "stopped"):
                reason = instance.get("StateReason", {}).get("Message", "no reason given")
                raise Ec2Error(f"{self.path}: instance {instance['InstanceId']} is "
                               f"{instance['State']['Name']}: {reason}")
        if len(instances) == len(instance_ids) and all(
                i["State"]["Name"] == "running" and _address(i) for i in instances):
            return sorted(instances, key=lambda i: instance_ids.index(i["InstanceId"]))
        return None

    # -- destroy -------------------------------------------------------------------------------

    def delete_instances(self, resource: Resource) -> None:
        """Terminate exactly the ledger's instances: saved ids, or those of its client token."""
        found = self.ec2.instances_of_token(resource.data["client_token"], self.deployment.uuid)
        ids = sorted(set(resource.data.get("instance_ids", [])) | {i["InstanceId"] for i in found})
        self.ec2.terminate(ids)

    def delete_group(self, resource: Resource) -> None:
        group_id = resource.data.get("group_id")
        ids = [group_id] if group_id else self.ec2.groups_named(resource.name,
                                                                self.deployment.uuid)
        for found in ids:
            self.ec2.delete_security_group(found)

    def delete_peer_group(self, resource: Resource) -> None:
        """Only the last of the deployment's rows for the shared group deletes it (its rules
        go with it): the others' servers may still be in it."""
        with self.ledger.last_holder(resource) as last:
            if not last:
                return
            group_id = resource.data.get("group_id")
            for found in [group_id] if group_id else self.ec2.groups_named(
                    resource.data["group_name"], self.deployment.uuid, resource.data["vpc_id"]):
                self.ec2.delete_security_group(found)

    def delete_key_pair(self, resource: Resource) -> None:
        self.ec2.delete_key_pair(resource.name)

    # -- gc ------------------------------------------------------------------------------------

    @classmethod
    def find_strays(cls, config: Ec2ProviderConfig, live: Callable[[], set[str]]) -> Sweep:
        return ec2_api.Ec2Api(config, where="gc").find_strays(live)

    @classmethod
    def delete_strays(cls, config: Ec2ProviderConfig, strays: list[Stray]) -> None:
        ec2_api.Ec2Api(config, where="gc").delete_strays(strays)

    # One "instance" row per run_instances call (its client token; the ids once EC2 answers).
    RESOURCES = {
        "key_pair": ResourceKind(delete=delete_key_pair),
        "security_group": ResourceKind(delete=delete_group),
        PEER_GROUP: ResourceKind(delete=delete_peer_group),
        "instance": ResourceKind(delete=delete_instances,
                                 requires=("security_group", "key_pair", PEER_GROUP)),
    }


def _address(instance: dict[str, Any]) -> str | None:
    return instance.get("PublicIpAddress") or instance.get("PrivateIpAddress")


def _ssh_host(instance: dict[str, Any]) -> str:
    """The address of an instance that `_running` found running with one."""
    address = _address(instance)
    if address is None:
        raise Ec2Error(f"instance {instance['InstanceId']} has no address")
    return address
