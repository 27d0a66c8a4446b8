"""The EC2 calls of Ec2Provider and `benchbed gc`, with botocore's errors made one clear line.

Everything benchbed creates carries its tags (CREATOR_TAG=benchbed, the deployment's uuid,
the database that records it, an expiry); what has no such tags is never listed or touched.
"""

import getpass
import hashlib
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar

from benchbed.errors import BenchbedError, InputError
from benchbed.ports import PeerPort, in_order
from benchbed.providers.base import Stray, Sweep
from benchbed.retry import retry, wait_for

if TYPE_CHECKING:
    from benchbed.providers.ec2 import Ec2ProviderConfig

CREATOR_TAG = "creator"
DEPLOYMENT_TAG = "benchbed:deployment"
NAME_TAG = "benchbed:deployment-name"
DATABASE_TAG = "benchbed:database"
EXPIRES_TAG = "benchbed:expires"
TOKEN_TAG = "benchbed:client-token"
LIVE_STATES = ["pending", "running", "stopping", "stopped", "shutting-down"]
AUTH_CODES = frozenset({"AuthFailure", "InvalidClientTokenId", "UnrecognizedClientException",
                        "SignatureDoesNotMatch", "InvalidAccessKeyId", "ExpiredToken"})
PERMISSION_CODES = frozenset({"UnauthorizedOperation", "OptInRequired"})
TRANSIENT_CODES = frozenset({"RequestLimitExceeded", "Throttling", "InternalError",
                             "ServiceUnavailable", "Unavailable"})
RUN_RETRY_TIMEOUT = 120
TERMINATE_TIMEOUT = 900
GROUP_IN_USE_TIMEOUT = 300
UNKNOWN_INSTANCE_GRACE = 20
Result = TypeVar("Result")


class Ec2Error(BenchbedError):
    """EC2 refused or failed a call at run time."""


class _Transient(Exception):
    """A call that may succeed if repeated (throttled, 5xx, connection lost)."""

    def __init__(self, original: Exception) -> None:
        super().__init__(str(original))
        self.original = original


def database_id() -> str:
    """Which benchbed database records a resource: gc judges only its own resources' owners.

    A SQLite file is local to its host; a server database is the same for every host using it.
    """
    from sqlalchemy.engine import make_url

    from benchbed.db.url import database_url

    url = make_url(database_url())
    where = (f"{socket.gethostname()}:{url.database}" if url.get_backend_name() == "sqlite"
             else url.render_as_string(hide_password=True))
    return hashlib.sha256(where.encode()).hexdigest()[:16]


def benchbed_tags(deployment_uuid: str, deployment_name: str, expires: datetime
                  ) -> dict[str, str]:
    return {CREATOR_TAG: "benchbed", DEPLOYMENT_TAG: deployment_uuid,
            NAME_TAG: deployment_name[:256], DATABASE_TAG: database_id(),
            "benchbed:user": getpass.getuser(), "benchbed:host": socket.gethostname(),
            EXPIRES_TAG: expires.strftime("%Y-%m-%dT%H:%M:%SZ")}


def tag_specifications(types: list[str], tags: dict[str, str]) -> list[dict[str, Any]]:
    listed = [{"Key": key, "Value": value} for key, value in tags.items()]
    return [{"ResourceType": kind, "Tags": listed} for kind in types]


def _tags_of(item: dict[str, Any]) -> dict[str, str]:
    return {tag["Key"]: tag["Value"] for tag in item.get("Tags", [])}


class Ec2Api:
    """One EC2 client per provider (from boto3's credential chain or inline credentials)."""

    def __init__(self, config: "Ec2ProviderConfig", where: str) -> None:
        import boto3
        from botocore.config import Config

        self.where = where
        self.region = config.region
        self.endpoint = config.endpoint_url or f"EC2 in {self.region}"
        self._endpoint_url = config.endpoint_url
        with self.errors("load credentials"):
            self._session = boto3.session.Session(
                aws_access_key_id=config.aws_access_key_id,
                aws_secret_access_key=config.aws_secret_access_key,
                aws_session_token=config.aws_session_token,
                profile_name=config.profile, region_name=self.region)
            self.client = self._client(Config(retries={"mode": "standard", "max_attempts": 4}))

    def _client(self, config: Any) -> Any:
        from botocore.config import Config

        options = Config(connect_timeout=10, read_timeout=60).merge(config)
        return self._session.client("ec2", endpoint_url=self._endpoint_url, config=options)

    @cached_property
    def run_client(self) -> Any:
        """For run_instances alone, which we retry ourselves: botocore must not repeat it."""
        from botocore.config import Config

        return self._client(Config(retries={"total_max_attempts": 1}))

    @contextmanager
    def errors(self, action: str) -> Iterator[None]:
        """botocore's exceptions as one line naming the scope, the action and the cloud."""
        from botocore import exceptions as boto

        try:
            yield
        except (boto.NoCredentialsError, boto.PartialCredentialsError,
                boto.ProfileNotFound) as error:
            raise InputError(f"{self.where}: no usable AWS credentials for {self.endpoint} "
                             f"(environment, profile or instance role): {error}") from None
        except boto.ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            message = error.response.get("Error", {}).get("Message", str(error))
            if code in AUTH_CODES:
                raise InputError(f"{self.where}: {self.endpoint} refused the credentials "
                                 f"({action}): {code}: {message}") from None
            if code in PERMISSION_CODES:
                raise InputError(f"{self.where}: the credentials may not {action} at "
                                 f"{self.endpoint}: {code}: {message}") from None
            raise Ec2Error(f"{self.where}: {action} failed: {code}: {message}") from None
        except boto.ConnectionError as error:
            raise Ec2Error(f"{self.where}: cannot reach {self.endpoint} ({action}): "
                           f"{error}") from None
        except boto.BotoCoreError as error:
            raise Ec2Error(f"{self.where}: {action} failed at {self.endpoint}: {error}") from None

    def call(self, action: str, attempt: Callable[[], Result]) -> Result:
        with self.errors(action):
            return attempt()

    # -- checks before anything is created ----------------------------------------------------

    def check_request(self, ami: str, instance_type: str, subnet_id: str | None) -> str | None:
        """Refuse an unknown AMI, instance type or subnet; return the subnet's VPC."""
        from botocore.exceptions import ClientError

        def find_images() -> list[dict[str, Any]]:
            try:
                return self.client.describe_images(ImageIds=[ami])["Images"]
            except ClientError as error:
                if error.response.get("Error", {}).get("Code", "").startswith("InvalidAMIID"):
                    return []
                raise

        images = self.call("describe images", find_images)
        if not images:
            raise InputError(f"{self.where}: AMI {ami} does not exist in {self.endpoint}")
        offered = self.call("describe instance type offerings",
                            lambda: self.client.describe_instance_type_offerings(
                                LocationType="region", Filters=[
                                    {"Name": "instance-type", "Values": [instance_type]}]))
        if not offered["InstanceTypeOfferings"]:
            raise InputError(f"{self.where}: instance type {instance_type} is not offered in "
                             f"{self.endpoint}")
        if subnet_id is None:
            return None
        subnets = self.call("describe subnets", lambda: self.client.describe_subnets(
            Filters=[{"Name": "subnet-id", "Values": [subnet_id]}])["Subnets"])
        if not subnets:
            raise InputError(f"{self.where}: subnet {subnet_id} does not exist in "
                             f"{self.endpoint}")
        return subnets[0]["VpcId"]

    # -- create --------------------------------------------------------------------------------

    def import_key_pair(self, name: str, public_key: str, tags: dict[str, str]) -> str:
        return self.call("import key pair", lambda: self.client.import_key_pair(
            KeyName=name, PublicKeyMaterial=public_key.encode(),
            TagSpecifications=tag_specifications(["key-pair"], tags)))["KeyPairId"]

    def create_security_group(self, name: str, description: str, vpc_id: str | None,
                              tags: dict[str, str]) -> str:
        where = {"VpcId": vpc_id} if vpc_id else {}
        return self.call("create security group", lambda: self.client.create_security_group(
            GroupName=name, Description=description, **where,
            TagSpecifications=tag_specifications(["security-group"], tags)))["GroupId"]

    def allow_ssh(self, group_id: str, cidr: str) -> None:
        ranges = ({"Ipv6Ranges": [{"CidrIpv6": cidr}]} if ":" in cidr
                  else {"IpRanges": [{"CidrIp": cidr}]})
        self.call("allow SSH", lambda: self.client.authorize_security_group_ingress(
            GroupId=group_id, IpPermissions=[{"IpProtocol": "tcp", "FromPort": 22,
                                              "ToPort": 22, **ranges}]))

    def allow_peers(self, group_id: str, ports: "list[PeerPort]") -> None:
        """Let the group's own members in on `ports`: rules whose source is the group itself
        (a self-referencing group), never an address range."""
        permissions = [{"IpProtocol": port.protocol, "FromPort": port.port, "ToPort": port.port,
                        "UserIdGroupPairs": [{"GroupId": group_id}]} for port in in_order(ports)]
        self.call("allow the deployment's servers in", lambda: self.client.
                  authorize_security_group_ingress(GroupId=group_id, IpPermissions=permissions))

    def run_instances(self, params: dict[str, Any], token: str, deployment: str
                      ) -> list[dict[str, Any]]:
        """One run_instances with a client token, repeated only if the answer was lost.

        Before each repeat the instances of the token are looked for and adopted, so a lost
        answer never creates twice, even from an EC2-compatible API that ignores the token.
        """
        from botocore.exceptions import ClientError, ConnectionError, HTTPClientError

        def attempt() -> list[dict[str, Any]]:
            found = self.instances_of_token(token, deployment)
            if found:
                return found
            try:
                return self.run_client.run_instances(**params, ClientToken=token)["Instances"]
            except (ConnectionError, HTTPClientError) as error:
                raise _Transient(error) from error
            except ClientError as error:
                status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
                if error.response.get("Error", {}).get("Code") in TRANSIENT_CODES or status >= 500:
                    raise _Transient(error) from error
                raise

        with self.errors("run instances"):
            try:
                return retry(attempt, timeout=RUN_RETRY_TIMEOUT, retry_on=(_Transient,),
                             initial_delay=0.5, max_delay=10)
            except _Transient as error:
                raise error.original from None

    # -- look up -------------------------------------------------------------------------------

    def _describe_instances(self, filters: list[dict[str, Any]]) -> list[dict[str, Any]]:
        pages = self.call("describe instances", lambda: list(
            self.client.get_paginator("describe_instances").paginate(Filters=filters)))
        return [instance for page in pages for reservation in page["Reservations"]
                for instance in reservation["Instances"]]

    def instances(self, ids: list[str]) -> list[dict[str, Any]]:
        return self._describe_instances([{"Name": "instance-id", "Values": ids}])

    def instances_of_token(self, token: str, deployment: str) -> list[dict[str, Any]]:
        """The live instances one run_instances call of ours made (token and deployment tags)."""
        return self._describe_instances([
            {"Name": f"tag:{TOKEN_TAG}", "Values": [token]},
            {"Name": f"tag:{DEPLOYMENT_TAG}", "Values": [deployment]},
            {"Name": "instance-state-name", "Values": LIVE_STATES}])

    def groups_named(self, name: str, deployment: str, vpc_id: str | None = None) -> list[str]:
        """This deployment's groups of that name (in that VPC, when it is known)."""
        where = [{"Name": "vpc-id", "Values": [vpc_id]}] if vpc_id else []
        groups = self.call("describe security groups", lambda: self.client.
                           describe_security_groups(Filters=[
                               {"Name": "group-name", "Values": [name]},
                               {"Name": f"tag:{DEPLOYMENT_TAG}", "Values": [deployment]},
                               *where]))
        return [group["GroupId"] for group in groups["SecurityGroups"]]

    # -- delete: "already gone" is success ----------------------------------------------------

    def terminate(self, ids: list[str]) -> None:
        """Terminate exactly these instances and wait until none of them is left running."""
        if not ids:
            return

        def left() -> list[str]:
            return [i["InstanceId"] for i in self.instances(ids)
                    if i["State"]["Name"] != "terminated"]

        shown = {i["InstanceId"]: i["State"]["Name"] for i in self.instances(ids)}
        live = [i for i in ids if shown.get(i) != "terminated"]
        with self.errors("terminate instances"):
            if live:
                self._terminate(live)
        wait_for(lambda: not left(), timeout=TERMINATE_TIMEOUT,
                 what=f"instances {', '.join(ids)} to terminate", interval=0.2, max_interval=5)

    def _terminate(self, ids: list[str]) -> None:
        """EC2 refuses the whole call if one id is unknown: then each id goes on its own.

        An unknown id was terminated long ago (EC2 forgets them after about an hour), or was
        created so recently that EC2 does not show it yet: a lone one is retried a while.
        """
        from botocore.exceptions import ClientError

        class Unknown(Exception):
            pass

        def attempt() -> None:
            try:
                self.client.terminate_instances(InstanceIds=ids)
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") != "InvalidInstanceID.NotFound":
                    raise
                raise Unknown() from error

        if len(ids) > 1:
            try:
                attempt()
            except Unknown:
                for one in ids:
                    self._terminate([one])
            return
        try:
            retry(attempt, timeout=UNKNOWN_INSTANCE_GRACE, retry_on=(Unknown,), initial_delay=1,
                  max_delay=5)
        except Unknown:
            return

    def delete_security_group(self, group_id: str) -> None:
        """Delete; a group still attached to a terminating instance's interface is waited for."""
        from botocore.exceptions import ClientError

        class InUse(Exception):
            def __init__(self, original: Exception) -> None:
                super().__init__(str(original))
                self.original = original

        def attempt() -> None:
            try:
                self.client.delete_security_group(GroupId=group_id)
            except ClientError as error:
                code = error.response.get("Error", {}).get("Code")
                if code == "InvalidGroup.NotFound":
                    return
                if code == "DependencyViolation":
                    raise InUse(error) from error
                raise

        with self.errors(f"delete security group {group_id}"):
            try:
                retry(attempt, timeout=GROUP_IN_USE_TIMEOUT, retry_on=(InUse,),
                      initial_delay=1, max_delay=10)
            except InUse as error:
                raise error.original from None

    def delete_key_pair(self, name: str) -> None:
        from botocore.exceptions import ClientError

        with self.errors(f"delete key pair {name}"):
            try:
                self.client.delete_key_pair(KeyName=name)
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") != "InvalidKeyPair.NotFound":
                    raise

    # -- gc ------------------------------------------------------------------------------------

    def find_strays(self, live: Callable[[], set[str]]) -> Sweep:
        """benchbed's resources whose deployment is gone from this database, or expired."""
        mine = [{"Name": f"tag:{CREATOR_TAG}", "Values": ["benchbed"]},
                {"Name": "tag-key", "Values": [DEPLOYMENT_TAG]}]
        found: list[tuple[str, str, dict[str, Any]]] = [
            ("instance", i["InstanceId"], i) for i in self._describe_instances(
                [*mine, {"Name": "instance-state-name", "Values": LIVE_STATES[:-1]}])]
        groups = self.call("describe security groups",
                           lambda: self.client.describe_security_groups(Filters=mine))
        found += [("security_group", g["GroupId"], g) for g in groups["SecurityGroups"]]
        pairs = self.call("describe key pairs", lambda: self.client.describe_key_pairs(
            Filters=mine))
        found += [("key_pair", k["KeyName"], k) for k in pairs["KeyPairs"]]
        sweep, alive = Sweep(), live()
        database, now = database_id(), datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        for kind, resource_id, item in found:
            tags = _tags_of(item)
            if tags.get(CREATOR_TAG) != "benchbed" or not tags.get(DEPLOYMENT_TAG):
                continue
            reasons = []
            if tags.get(EXPIRES_TAG, "9999") < now:
                reasons.append(f"expired at {tags[EXPIRES_TAG]}")
            if tags.get(DATABASE_TAG) == database and tags[DEPLOYMENT_TAG] not in alive:
                reasons.insert(0, "its deployment no longer exists")
            elif tags.get(DATABASE_TAG) != database and not reasons:
                sweep.elsewhere += 1
            if reasons:
                sweep.strays.append(Stray(kind, resource_id, tags[DEPLOYMENT_TAG],
                                          "; ".join(reasons)))
        return sweep

    def delete_strays(self, strays: list[Stray]) -> None:
        """Instances first (their groups and key pairs are in use until they are gone)."""
        self.terminate([s.id for s in strays if s.kind == "instance"])
        for stray in strays:
            if stray.kind == "security_group":
                self.delete_security_group(stray.id)
            elif stray.kind == "key_pair":
                self.delete_key_pair(stray.id)
