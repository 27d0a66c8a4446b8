"""Ec2Provider and `benchbed gc` end to end, from the CLI, against a real moto server.

EC2 cannot be reached from here: moto in server mode on loopback is the stand-in (started
by these tests, stopped after), behind a proxy that can hold or drop chosen calls. What a
first run against real AWS must still confirm is in the README.
"""

import getpass
import json
import socket
import sqlite3
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from benchbed.providers.ec2_api import database_id
from tests.conftest import kill_when, ledger_rows, refused
from tests.moto import DEBIAN_AMI, FaultProxy, moto_server

REGION = "us-east-1"
SECRET = "benchbed-test-secret-8c1f0e2a9d"
LIVE = ["pending", "running", "stopping", "stopped", "shutting-down"]


@pytest.fixture(scope="module")
def moto() -> Iterator[str]:
    with moto_server() as url:
        yield url


@pytest.fixture(scope="module")
def proxy(moto: str) -> Iterator[FaultProxy]:
    with FaultProxy(moto) as running:
        yield running


@pytest.fixture
def ec2(moto: str, proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A fresh moto, credentials in the environment (boto3's chain), and a client to look."""
    urllib.request.urlopen(urllib.request.Request(f"{moto}/moto-api/reset", method="POST"),
                           timeout=30).read()
    proxy.reset()
    for name, value in {"AWS_ACCESS_KEY_ID": "AKIABENCHBEDTEST", "AWS_SECRET_ACCESS_KEY": SECRET,
                        "AWS_EC2_METADATA_DISABLED": "true",
                        "AWS_CONFIG_FILE": "/nonexistent/config",
                        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/credentials"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    client = boto3.client("ec2", region_name=REGION, endpoint_url=moto)
    yield client
    proxy.release.set()


@pytest.fixture
def ami(ec2: Any) -> str:
    return DEBIAN_AMI["ami_id"]


def write_config(home: Path, engine: dict[str, Any], provider: dict[str, Any]) -> str:
    config = {"type": "ServersEngine", "wait_for_ssh": False, **engine,
              "provider": {"type": "Ec2Provider", "region": REGION, **provider}}
    home.mkdir(parents=True, exist_ok=True)
    path = home.parent / "config.json"
    path.write_text(json.dumps(config))
    return str(path)


def cloud(ec2: Any) -> dict[str, dict[str, dict[str, str]]]:
    """What exists in moto: live instances, key pairs, non-default groups, each with tags."""
    def tags(item: dict[str, Any]) -> dict[str, str]:
        return {tag["Key"]: tag["Value"] for tag in item.get("Tags", [])}

    instances = {i["InstanceId"]: tags(i) for r in ec2.describe_instances(Filters=[
        {"Name": "instance-state-name", "Values": LIVE}])["Reservations"] for i in r["Instances"]}
    pairs = {k["KeyName"]: tags(k) for k in ec2.describe_key_pairs()["KeyPairs"]}
    groups = {g["GroupId"]: tags(g) for g in ec2.describe_security_groups()["SecurityGroups"]
              if g["GroupName"] != "default"}
    return {"instances": instances, "key_pairs": pairs, "groups": groups}


EMPTY = {"instances": {}, "key_pairs": {}, "groups": {}}


def test_two_instances_tagged_at_creation_then_destroy_leaves_nothing(
        bb: Any, home: Path, ec2: Any, proxy: FaultProxy, ami: str) -> None:
    config = write_config(home, {"amount": 2, "image": ami, "flavor": "t3.micro"},
                          {"endpoint_url": proxy.url, "tags": {"team": "perf"}})
    outputs = [bb.ok("deployment", "create", "--file", config, "--name", "ec2")]
    shown = bb.json("deployment", "show", "ec2")
    deployment = shown["uuid"]
    servers = shown["endpoints"]["servers"]
    made = cloud(ec2)
    assert len(servers) == 2 and set(made["instances"]) == {s["name"] for s in servers}
    assert len(made["key_pairs"]) == 1 and len(made["groups"]) == 1
    expected = {"creator": "benchbed", "benchbed:deployment": deployment,
                "benchbed:deployment-name": "ec2", "benchbed:user": getpass.getuser(),
                "benchbed:host": socket.gethostname(), "benchbed:database": database_id(),
                "team": "perf"}
    for tags in [*made["instances"].values(), *made["key_pairs"].values(),
                 *made["groups"].values()]:
        assert expected.items() <= tags.items(), tags
        expires = datetime.strptime(tags["benchbed:expires"], "%Y-%m-%dT%H:%M:%SZ")
        assert abs(expires.replace(tzinfo=UTC) - datetime.now(UTC) - timedelta(hours=4)) \
            < timedelta(minutes=5)
    described = [i for r in ec2.describe_instances(InstanceIds=list(made["instances"]))[
        "Reservations"] for i in r["Instances"]]
    assert {i["KeyName"] for i in described} == set(made["key_pairs"])
    assert {g["GroupId"] for i in described for g in i["SecurityGroups"]} == set(made["groups"])
    assert {s["host"] for s in servers} == {i["PublicIpAddress"] for i in described}
    # tagged by the creating calls themselves, never afterwards
    assert "CreateTags" not in proxy.actions and proxy.count("RunInstances") == 1
    for action in ("RunInstances", "ImportKeyPair", "CreateSecurityGroup"):
        body = next(fields for name, fields in proxy.bodies if name == action)
        assert "TagSpecification.1.Tag.1.Key" in body, action
    assert {r["kind"] for r in shown["resources"]} == {"instance", "key_pair", "security_group"}

    log = Path(shown["log"]).read_text()
    outputs += [bb.ok("deployment", "config", "ec2"), bb.ok("deployment", "show", "ec2")]
    outputs.append(bb.ok("deployment", "destroy", "ec2"))
    assert cloud(ec2) == EMPTY
    assert ledger_rows(home) == 0
    for text in [log, *(o.stdout + o.stderr for o in outputs)]:
        assert SECRET not in text
    for database in home.glob("benchbed.sqlite*"):
        assert SECRET.encode() not in database.read_bytes()


def test_lost_run_instances_answer_does_not_create_twice(
        bb: Any, home: Path, ec2: Any, proxy: FaultProxy, ami: str) -> None:
    proxy.drop_once.add("RunInstances")
    config = write_config(home, {"amount": 2, "image": ami}, {"endpoint_url": proxy.url})
    bb.ok("deployment", "create", "--file", config, "--name", "retried")
    servers = bb.json("deployment", "show", "retried")["endpoints"]["servers"]
    assert len(cloud(ec2)["instances"]) == 2
    assert {s["name"] for s in servers} == set(cloud(ec2)["instances"])
    tokens = {fields["ClientToken"][0] for name, fields in proxy.bodies if name == "RunInstances"}
    assert len(tokens) == 1
    bb.ok("deployment", "destroy", "retried")
    assert cloud(ec2) == EMPTY


def _instance_ids_saved(home: Path) -> bool:
    with sqlite3.connect(home / "benchbed.sqlite") as connection:
        rows = connection.execute("SELECT data FROM resources WHERE kind='instance'").fetchall()
    return any(json.loads(data).get("instance_ids") for (data,) in rows)


@pytest.mark.parametrize("point", ["before run_instances", "during run_instances",
                                   "after run_instances"])
def test_kill_during_create_then_destroy_leaks_nothing(
        bb: Any, home: Path, ec2: Any, proxy: FaultProxy, ami: str, point: str) -> None:
    held = {"before run_instances": "CreateSecurityGroup",
            "during run_instances": "RunInstances",
            "after run_instances": "DescribeInstances"}[point]
    if point == "after run_instances":
        proxy.hold_once_seen[held] = "RunInstances"
    else:
        proxy.hold_after.add(held)
    config = write_config(home, {"amount": 2, "image": ami}, {"endpoint_url": proxy.url})
    process = bb.popen("deployment", "create", "--file", config, "--name", "killed")
    try:
        # held at the proxy: the create cannot move on between the moment and the kill
        kill_when(process, proxy.event(f"held {held}").is_set, timeout=120,
                  never=f"the create never reached {held}")
    finally:
        proxy.release.set()
    if point == "after run_instances":
        assert _instance_ids_saved(home), "ids must be saved as soon as EC2 answers"
    made = cloud(ec2)
    assert made["groups"], "the kill must leave something to clean up"
    if point != "before run_instances":
        assert len(made["instances"]) == 2
    assert ledger_rows(home) > 0
    bb.ok("deployment", "destroy", "--force", "killed")
    assert cloud(ec2) == EMPTY
    assert ledger_rows(home) == 0


@pytest.mark.parametrize(("engine", "words"), [
    ({"image": "ami-0000000000000000f"}, "provider: AMI ami-0000000000000000f does not exist"),
    ({"flavor": "t9.colossal"}, "provider: instance type t9.colossal is not offered"),
])
def test_unknown_ami_or_instance_type_is_refused(
        bb: Any, home: Path, ec2: Any, proxy: FaultProxy, ami: str, engine: dict[str, Any],
        words: str) -> None:
    config = write_config(home, {"image": ami, **engine}, {"endpoint_url": proxy.url})
    refused(bb("deployment", "create", "--file", config, "--name", "bad"), 2, words)
    assert cloud(ec2) == EMPTY and ledger_rows(home) == 0
    assert not {"ImportKeyPair", "CreateSecurityGroup", "RunInstances"} & set(proxy.actions)


def test_wrong_credentials_are_refused(bb: Any, home: Path, ec2: Any, ami: str) -> None:
    with moto_server(INITIAL_NO_AUTH_ACTION_COUNT="0") as strict:
        config = write_config(home, {"image": ami}, {"endpoint_url": strict})
        refused(bb("deployment", "create", "--file", config, "--name", "bad"), 2,
                "provider: " + strict + " refused the credentials")
    assert ledger_rows(home) == 0


def test_missing_credentials_are_refused(bb: Any, home: Path, ec2: Any, proxy: FaultProxy,
                                         ami: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    config = write_config(home, {"image": ami}, {"endpoint_url": proxy.url})
    refused(bb("deployment", "create", "--file", config, "--name", "bad"), 2,
            "provider: no usable AWS credentials")
    assert cloud(ec2) == EMPTY and ledger_rows(home) == 0 and proxy.actions == []


def test_endpoint_that_does_not_answer(bb: Any, home: Path, ec2: Any, ami: str) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    config = write_config(home, {"image": ami}, {"endpoint_url": closed})
    refused(bb("deployment", "create", "--file", config, "--name", "bad"), 1,
            f"provider: cannot reach {closed}")
    assert ledger_rows(home) == 0


def test_inline_credentials_are_masked(bb: Any, home: Path, ec2: Any, proxy: FaultProxy,
                                       ami: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    token = "inline-session-token-5e0b7"
    config = write_config(home, {"image": ami}, {
        "endpoint_url": proxy.url, "aws_access_key_id": "AKIAINLINE",
        "aws_secret_access_key": SECRET, "aws_session_token": token})
    outputs = [bb.ok("deployment", "create", "--file", config, "--name", "inline")]
    for args in (("show", "inline"), ("show", "inline", "--json"), ("config", "inline"),
                 ("config", "inline", "--json")):
        outputs.append(bb.ok("deployment", *args))
    assert json.loads(outputs[-1].stdout)["provider"]["aws_secret_access_key"] == "***"
    log = Path(json.loads(outputs[2].stdout)["log"]).read_text()
    bad = write_config(home, {"image": "ami-0000000000000000f"}, {
        "endpoint_url": proxy.url, "aws_access_key_id": "AKIAINLINE",
        "aws_secret_access_key": SECRET})
    outputs.append(bb("deployment", "create", "--file", bad, "--name", "inline-bad"))
    assert outputs[-1].returncode == 2
    for text in [log, *(o.stdout + o.stderr for o in outputs)]:
        assert SECRET not in text and token not in text
    bb.ok("deployment", "destroy", "inline")
    assert cloud(ec2) == EMPTY


def _plant(ec2: Any, ami: str, tags: dict[str, str], with_group_and_key: bool = False
           ) -> set[str]:
    """Resources made behind benchbed's back, as another run or machine would leave them."""
    listed = [{"Key": key, "Value": value} for key, value in tags.items()]
    name = f"planted-{uuid.uuid4().hex[:8]}"
    made, extra = set(), {}
    if with_group_and_key:
        made.add(ec2.create_key_pair(KeyName=name, TagSpecifications=[
            {"ResourceType": "key-pair", "Tags": listed}])["KeyName"])
        group = ec2.create_security_group(GroupName=name, Description="planted",
                                          TagSpecifications=[{"ResourceType": "security-group",
                                                              "Tags": listed}])["GroupId"]
        made.add(group)
        extra = {"KeyName": name, "SecurityGroupIds": [group]}
    instances = ec2.run_instances(ImageId=ami, InstanceType="t3.micro", MinCount=1, MaxCount=1,
                                  **extra, TagSpecifications=[{"ResourceType": "instance",
                                                               "Tags": listed}] if listed else [])
    return made | {instances["Instances"][0]["InstanceId"]}


def _tags(deployment: str, database: str, expires: datetime) -> dict[str, str]:
    return {"creator": "benchbed", "benchbed:deployment": deployment,
            "benchbed:database": database,
            "benchbed:expires": expires.strftime("%Y-%m-%dT%H:%M:%SZ")}


def test_gc_removes_orphans_and_expired_and_nothing_else(
        bb: Any, home: Path, ec2: Any, proxy: FaultProxy, ami: str) -> None:
    bb.ok("deployment", "create", "--file", write_config(
        home, {"image": ami}, {"endpoint_url": proxy.url}), "--name", "live")
    live = set(cloud(ec2)["instances"]) | set(cloud(ec2)["groups"]) | set(
        cloud(ec2)["key_pairs"])
    later, earlier = datetime.now(UTC) + timedelta(hours=4), datetime.now(UTC) - timedelta(hours=1)
    here = database_id()
    orphan = _plant(ec2, ami, _tags(str(uuid.uuid4()), here, later), with_group_and_key=True)
    expired = _plant(ec2, ami, _tags(str(uuid.uuid4()), "another-database", earlier))
    elsewhere = _plant(ec2, ami, _tags(str(uuid.uuid4()), "another-database", later))
    untagged = _plant(ec2, ami, {})
    foreign = _plant(ec2, ami, {"creator": "someone-else", "benchbed:deployment": "x"})
    provider = home.parent / "provider.yaml"
    provider.write_text(f"type: Ec2Provider\nregion: {REGION}\nendpoint_url: {proxy.url}\n")

    listed = bb.json("gc", "--file", str(provider))
    assert {s["id"] for s in listed["strays"]} == orphan | expired
    assert listed["deleted"] is False and listed["left_alone_elsewhere"] == 1
    reasons = {s["id"]: s["reason"] for s in listed["strays"]}
    assert all(reasons[i] == "its deployment no longer exists" for i in orphan)
    assert reasons[next(iter(expired))].startswith("expired at ")
    assert orphan | expired <= set().union(*(set(v) for v in cloud(ec2).values()))

    deleted = bb.json("gc", "--file", str(provider), "--delete")
    assert {s["id"] for s in deleted["strays"]} == orphan | expired and deleted["deleted"]
    left = set().union(*(set(v) for v in cloud(ec2).values()))
    assert left == live | elsewhere | untagged | foreign
    assert bb.json("gc", "--file", str(provider))["strays"] == []
    bb.ok("deployment", "destroy", "live")
    assert set().union(*(set(v) for v in cloud(ec2).values())) == elsewhere | untagged | foreign


def test_gc_refuses_a_provider_that_tags_nothing(bb: Any, home: Path) -> None:
    provider = home.parent / "provider.yaml"
    home.mkdir(parents=True, exist_ok=True)
    provider.write_text("type: ExistingServers\ncredentials: [{host: localhost, user: root}]\n")
    refused(bb("gc", "--file", str(provider)), 2, "ExistingServers tags no cloud resources")
    provider.write_text("type: Ec2Provider\nregion: 'us-east-1; true'\n")
    refused(bb("gc", "--file", str(provider)), 2, "config region")


def test_hostile_config_is_refused_before_anything(bb: Any, home: Path) -> None:
    """From the CLI: exit 2, one line, no deployment row (the rest in tests/unit)."""
    config = write_config(home, {"image": "ami-1;rm -rf /"}, {"endpoint_url": "http://127.0.0.1:9"})
    refused(bb("deployment", "create", "--file", config, "--name", "bad"), 2,
            "config image: 'ami-1;rm -rf /' does not match")
    assert bb.json("deployment", "list") == [] and ledger_rows(home) == 0


def test_wait_for_ssh_false_skips_the_login(bb: Any, home: Path) -> None:
    """wait_for_ssh: false hands servers over without logging in (for any provider)."""
    config = {"type": "ServersEngine", "wait_for_ssh": False, "provider": {
        "type": "ExistingServers", "credentials": [{"host": "192.0.2.1", "user": "root"}]}}
    path = home.parent / "servers.json"
    home.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config))
    bb.ok("deployment", "create", "--file", str(path), "--name", "nossh")
    steps = [t["step"] for t in bb.json("deployment", "show", "nossh")["timeline"]]
    assert "create servers" in steps and "wait for SSH" not in steps


def _permissions(group: dict[str, Any]) -> set[tuple[str, int, str]]:
    """A group's ingress rules as (protocol, port, source): a group id or a CIDR."""
    return {(rule["IpProtocol"], rule["FromPort"], source)
            for rule in group["IpPermissions"]
            for source in [*(pair["GroupId"] for pair in rule.get("UserIdGroupPairs", [])),
                           *(r["CidrIp"] for r in rule.get("IpRanges", [])),
                           *(r["CidrIpv6"] for r in rule.get("Ipv6Ranges", []))]}


def test_multihost_servers_reach_each_other_on_the_engines_ports_only(
        bb: Any, home: Path, ec2: Any, proxy: FaultProxy, ami: str) -> None:
    provider = {"type": "Ec2Provider", "region": REGION, "endpoint_url": proxy.url,
                "ssh_cidr": "203.0.113.7/32"}
    node = {"type": "ServersEngine", "wait_for_ssh": False, "image": ami, "provider": provider,
            "peer_ports": [{"protocol": "udp", "port": 4789}]}
    config = {"type": "MultihostEngine",
              "controller": {**node, "peer_ports": [{"port": 5672}, {"port": 3306}]},
              "nodes": [node, {**node, "peer_ports": [{"port": 5672}]}]}
    path = home.parent / "multihost.json"
    home.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config))
    bb.ok("deployment", "create", "--file", str(path), "--name", "mesh")
    deployment = bb.json("deployment", "show", "mesh")["uuid"]

    groups = {g["GroupName"]: g for g in ec2.describe_security_groups()["SecurityGroups"]
              if g["GroupName"] != "default"}
    peers = groups.pop(f"benchbed-{deployment}-peers")
    assert _permissions(peers) == {("tcp", 3306, peers["GroupId"]),
                                   ("tcp", 5672, peers["GroupId"]),
                                   ("udp", 4789, peers["GroupId"])}
    # one group per provider scope lets SSH in from ssh_cidr, and nothing else
    assert len(groups) == 3
    for group in groups.values():
        assert _permissions(group) == {("tcp", 22, "203.0.113.7/32")}, group["GroupName"]
    assert not [g for g in ec2.describe_security_groups()["SecurityGroups"]
                for rule in g["IpPermissions"] for r in rule.get("IpRanges", [])
                if r["CidrIp"] == "0.0.0.0/0"]
    instances = [i for r in ec2.describe_instances(Filters=[
        {"Name": "instance-state-name", "Values": LIVE}])["Reservations"] for i in r["Instances"]]
    assert len(instances) == 3
    for instance in instances:
        assert peers["GroupId"] in {g["GroupId"] for g in instance["SecurityGroups"]}
    with sqlite3.connect(home / "benchbed.sqlite") as connection:
        rows = connection.execute("SELECT scope, data FROM resources WHERE kind = 'peer_group'"
                                  ).fetchall()
    assert sorted(scope for scope, _ in rows) == [
        "controller.provider", "nodes[0].provider", "nodes[1].provider"]
    for _, data in rows:
        assert json.loads(data)["ports"] == ["3306/tcp", "5672/tcp", "4789/udp"]
        assert json.loads(data)["group_id"] == peers["GroupId"]

    bb.ok("deployment", "destroy", "mesh")
    assert cloud(ec2) == EMPTY
    assert ledger_rows(home) == 0


def test_a_lone_server_opens_nothing_to_peers(bb: Any, home: Path, ec2: Any,
                                              proxy: FaultProxy, ami: str) -> None:
    config = write_config(home, {"image": ami, "peer_ports": [{"port": 5672}]},
                          {"endpoint_url": proxy.url, "ssh_cidr": "203.0.113.7/32"})
    bb.ok("deployment", "create", "--file", config, "--name", "alone")
    groups = [g for g in ec2.describe_security_groups()["SecurityGroups"]
              if g["GroupName"] != "default"]
    assert len(groups) == 1 and _permissions(groups[0]) == {("tcp", 22, "203.0.113.7/32")}
    bb.ok("deployment", "destroy", "alone")
    assert cloud(ec2) == EMPTY and ledger_rows(home) == 0


def test_kill_after_the_peers_group_then_destroy_leaks_nothing(
        bb: Any, home: Path, ec2: Any, proxy: FaultProxy, ami: str) -> None:
    """Killed once the shared group exists and before its rules: destroy finds it."""
    proxy.hold_after.add("AuthorizeSecurityGroupIngress")
    provider = {"type": "Ec2Provider", "region": REGION, "endpoint_url": proxy.url}
    node = {"type": "ServersEngine", "wait_for_ssh": False, "image": ami, "provider": provider,
            "peer_ports": [{"port": 5672}]}
    path = home.parent / "killed.json"
    home.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"type": "MultihostEngine", "controller": node, "nodes": [node]}))
    process = bb.popen("deployment", "create", "--file", str(path), "--name", "killed")
    try:
        kill_when(process, proxy.event("held AuthorizeSecurityGroupIngress").is_set,
                  timeout=120, never="the create never opened the peers' ports")
    finally:
        proxy.release.set()
    assert cloud(ec2)["groups"] and ledger_rows(home) > 0
    bb.ok("deployment", "destroy", "--force", "killed")
    assert cloud(ec2) == EMPTY
    assert ledger_rows(home) == 0
