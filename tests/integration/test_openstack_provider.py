"""OpenStackProvider end to end against a cloud that boots real guests, as root, from the CLI.

The cloud is one DebianEngine container (10.254.40.0/24, prefix bbosc) running Keystone,
Glance, Placement, Neutron, Nova and nova-compute-qemu: libvirt under QEMU software
emulation, Neutron's Linux bridge agent on the container's eth0. The guests' flat provider
network is 10.254.41.0/24 on that same segment: the host reaches them through a second
address on the LXC bridge (no router, no NAT). The guest image is the virsh template with a
config-drive seed (benchbed.images.openstack), uploaded as kernel, initrd and disk.

In `make test`: the whole file took 5 minutes on 2026-12-06 on an idle 2-core machine (the
cloud 2.5 minutes, DebianEngine's packages coming from its snapshot; one guest from `create`
to SSH in 41 s under emulation); at load average 20-29 the cloud alone took 25 minutes and a
guest 5 minutes to SSH.
"""

import hashlib
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import Cli, cli_for, client, kill_when, ledger_rows, refused, write_yaml
from tests.integration.guest_cloud import (
    FLAVOR,
    HUGE_FLAVOR,
    OVER_QUOTA_FLAVOR,
    Cloud,
    guest_cloud,
    openstack,
)

pytestmark = pytest.mark.root

NETWORK = "10.254.40.0/24"
GUESTS = "10.254.41"


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    with guest_cloud(tmp_path_factory.mktemp("openstack"), NETWORK, GUESTS, "bbosc") as made:
        yield made


def servers_config(cloud: Cloud, path: Path, amount: int, engine: dict[str, Any] | None = None,
                   **provider: Any) -> str:
    return write_yaml(path, {"type": "ServersEngine", "amount": amount, "ssh_timeout": 600,
                             **(engine or {}), "provider": cloud.provider(**provider)})


def test_one_guest_boots_and_answers_ssh_through_the_exported_config(
        cloud: Cloud, tmp_path: Path) -> None:
    before = cloud.state()
    cli = cli_for(tmp_path / "home")
    try:
        cli.ok("deployment", "create", "--file", servers_config(cloud, tmp_path / "s.yaml", 1),
               "--name", "one", timeout=1200)
        servers = cli.json("deployment", "show", "one")["endpoints"]["servers"]
        assert len(servers) == 1 and servers[0]["host"].startswith(f"{GUESTS}.")
        ssh_config = tmp_path / "ssh_config"
        cli.ok("deployment", "export", "one", "--format", "ssh-config", "--output",
               str(ssh_config))
        result = subprocess.run(["ssh", "-F", str(ssh_config), "-o", "BatchMode=yes",
                                 servers[0]["name"], "hostname; cat /proc/cmdline"],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        assert result.stdout.split()[0] == servers[0]["name"]
        made = cloud.state()
        assert len(made["servers"] - before["servers"]) == 1
        assert len(made["key_pairs"] - before["key_pairs"]) == 1
        assert len(made["groups"] - before["groups"]) == 1
        destroy_back_to(cloud, cli, "one", before, tmp_path / "home")
    finally:
        cli.destroy_all()


def test_a_multihost_deployments_servers_share_a_group_open_to_each_other_only(
        cloud: Cloud, tmp_path: Path) -> None:
    """Real Neutron and Nova take what OpenStackProvider sends for the peers' group: a bulk
    of rules whose remote group is the group itself, and the group named to Nova by id."""
    before = cloud.state()
    cli = cli_for(tmp_path / "home")
    servers = {"type": "ServersEngine", "amount": 1, "wait_for_ssh": False,
               "provider": cloud.provider()}
    config = {"type": "MultihostEngine",
              "controller": {**servers, "peer_ports": [{"port": 5672},
                                                       {"protocol": "udp", "port": 4789}]},
              "nodes": [servers]}
    try:
        cli.ok("deployment", "create", "--file", write_yaml(tmp_path / "m.yaml", config),
               "--name", "peers", timeout=1200)
        session = cloud.session()
        network = {"service_type": "network", "interface": "public"}
        groups = session.get("/v2.0/security-groups", endpoint_filter=network).json()
        [peers] = [g for g in groups["security_groups"] if g["name"].endswith("-peers")]
        ingress = {(r["protocol"], r["port_range_min"], r["port_range_max"],
                    r["remote_group_id"], r["remote_ip_prefix"], r["ethertype"])
                   for r in peers["security_group_rules"] if r["direction"] == "ingress"}
        assert ingress == {(protocol, port, port, peers["id"], None, ethertype)
                           for protocol, port in (("tcp", 5672), ("udp", 4789))
                           for ethertype in ("IPv4", "IPv6")}
        made = cloud.state()["servers"] - before["servers"]
        assert len(made) == 2
        for server in made:
            ports = session.get(f"/v2.0/ports?device_id={server}",
                                endpoint_filter=network).json()["ports"]
            assert [peers["id"] in port["security_groups"] for port in ports] == [True]
        destroy_back_to(cloud, cli, "peers", before, tmp_path / "home")
    finally:
        cli.destroy_all()


@pytest.mark.parametrize(("flavor", "said"), [
    (HUGE_FLAVOR, "is ERROR: No valid host was found"),
    (OVER_QUOTA_FLAVOR, "403 Quota exceeded for ram")])
def test_a_server_that_never_becomes_active_fails_with_one_line_and_leaves_nothing(
        cloud: Cloud, tmp_path: Path, flavor: str, said: str) -> None:
    """A flavor no compute can hold: Nova puts the server in ERROR (no valid host); one over
    the project's quota: Nova refuses the request."""
    before = cloud.state()
    cli = cli_for(tmp_path / "home")
    try:
        refused(cli("deployment", "create", "--file", servers_config(
            cloud, tmp_path / "s.yaml", 1, flavor_id=flavor), "--name", "huge",
            timeout=900), 1, said)
        # the failed deployment keeps its ledger, so that destroy removes what it made
        destroy_back_to(cloud, cli, "huge", before, tmp_path / "home")
    finally:
        cli.destroy_all()


@pytest.mark.parametrize(("change", "said"), [
    ({"password": "Not-The-Pa55word"}, "(HTTP 401)"),
    ({"auth_url": "http://127.0.0.1:9/v3"}, "127.0.0.1:9")])
def test_a_cloud_that_refuses_or_does_not_answer_fails_with_one_line_and_creates_nothing(
        cloud: Cloud, tmp_path: Path, change: dict[str, str], said: str) -> None:
    """Wrong credentials, and an auth_url where nothing listens (loopback): exit 1 (the
    world, not the input), one line, no secret in it, and nothing in the cloud or ledger."""
    before = cloud.state()
    cli = cli_for(tmp_path / "home")
    try:
        result = cli("deployment", "create", "--file", servers_config(
            cloud, tmp_path / "s.yaml", 1, **change), "--name", "refused", timeout=300)
        refused(result, 1, said)
        assert "Not-The-Pa55word" not in result.stderr + result.stdout
        assert cloud.state() == before and ledger_rows(tmp_path / "home") == 0
    finally:
        cli.destroy_all()


def test_gc_deletes_servers_of_deployments_that_no_longer_exist(
        cloud: Cloud, tmp_path: Path) -> None:
    before = cloud.state()
    cli = cli_for(tmp_path / "home")
    provider = tmp_path / "provider.yaml"
    provider.write_text(yaml.safe_dump(cloud.provider()))
    try:
        cli.ok("deployment", "create", "--file", servers_config(
            cloud, tmp_path / "s.yaml", 1, {"wait_for_ssh": False}), "--name", "live",
            timeout=1200)
        live = cloud.state()["servers"] - before["servers"]
        orphan = openstack(cloud.env, "server", "create", "--flavor", FLAVOR, "--image",
                           cloud.image_id, "--network", cloud.network_id, "--property",
                           f"benchbed_deployment={uuid.uuid4()}", "--property",
                           f"benchbed_database={_database_id(tmp_path / 'home')}",
                           "bbos-orphan")["id"]
        elsewhere = openstack(cloud.env, "server", "create", "--flavor", FLAVOR, "--image",
                              cloud.image_id, "--network", cloud.network_id, "--property",
                              f"benchbed_deployment={uuid.uuid4()}", "--property",
                              "benchbed_database=another-database", "bbos-elsewhere")["id"]
        listed = cli.json("gc", "--file", str(provider))
        assert [s["id"] for s in listed["strays"]] == [orphan]
        assert listed["strays"][0]["reason"] == "its deployment no longer exists"
        assert listed["left_alone_elsewhere"] == 1 and listed["deleted"] is False
        deleted = cli.json("gc", "--file", str(provider), "--delete")
        assert [s["id"] for s in deleted["strays"]] == [orphan] and deleted["deleted"]
        servers = cloud.state()["servers"]
        assert orphan not in servers and live | {elsewhere} <= servers
        openstack_delete(cloud.env, elsewhere)
        destroy_back_to(cloud, cli, "live", before, tmp_path / "home")
    finally:
        cli.destroy_all()


@pytest.fixture
def served(cloud: Cloud, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """An empty 1 GB qcow2 served over HTTP on the host's bridge address, port 80 (Glance's
    web-download accepts ports 80 and 443 only): its URL and MD5."""
    directory = tmp_path / "www"
    directory.mkdir()
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(directory / "empty.qcow2"),
                    "1G"], check=True)
    address = NETWORK.replace("0/24", "1")
    server = subprocess.Popen([sys.executable, "-m", "http.server", "--bind", address,
                               "--directory", str(directory), "80"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        md5 = hashlib.md5((directory / "empty.qcow2").read_bytes()).hexdigest()
        yield f"http://{address}/empty.qcow2", md5
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_an_image_uploaded_from_a_url_is_deleted_by_destroy(
        cloud: Cloud, tmp_path: Path, served: tuple[str, str]) -> None:
    """Glance fetches the image itself; the servers need not boot (the image is empty)."""
    url, md5 = served
    before = cloud.state()
    cli = cli_for(tmp_path / "home")
    image = {"name": "bb-from-url", "format": "qcow2", "url": url, "checksum": md5}
    try:
        cli.ok("deployment", "create", "--file", servers_config(
            cloud, tmp_path / "s.yaml", 1, {"wait_for_ssh": False}, image=image),
            "--name", "url", timeout=1200)
        uploaded = cloud.state()["images"] - before["images"]
        assert len(uploaded) == 1
        assert openstack(cloud.env, "image", "show", *uploaded)["checksum"] == md5
        destroy_back_to(cloud, cli, "url", before, tmp_path / "home")
    finally:
        cli.destroy_all()


def test_an_image_url_glance_cannot_fetch_fails_with_one_line_and_leaves_nothing(
        cloud: Cloud, tmp_path: Path, served: tuple[str, str]) -> None:
    url, md5 = served
    missing = url.replace("empty.qcow2", "missing.qcow2")
    before = cloud.state()
    cli = cli_for(tmp_path / "home")
    image = {"name": "bb-missing", "format": "qcow2", "url": missing, "checksum": md5}
    try:
        refused(cli("deployment", "create", "--file", servers_config(
            cloud, tmp_path / "s.yaml", 1, {"wait_for_ssh": False}, image=image),
            "--name", "missing", timeout=600), 1, "could not import image", missing)
        destroy_back_to(cloud, cli, "missing", before, tmp_path / "home")
    finally:
        cli.destroy_all()


def test_gc_after_the_database_is_lost_deletes_servers_images_and_groups(
        cloud: Cloud, tmp_path: Path, served: tuple[str, str]) -> None:
    """A deployment whose database is gone (its home removed): gc, from a new database at the
    same place, finds its server, uploaded image and security group, and deletes them; its
    key pair, which carries nothing to tell whose it is, stays."""
    url, md5 = served
    before = cloud.state()
    home = tmp_path / "home"
    cli = cli_for(home)
    provider = tmp_path / "provider.yaml"
    provider.write_text(yaml.safe_dump(cloud.provider()))
    image = {"name": "bb-lost", "format": "qcow2", "url": url, "checksum": md5}
    try:
        cli.ok("deployment", "create", "--file", servers_config(
            cloud, tmp_path / "s.yaml", 1, {"wait_for_ssh": False}, image=image),
            "--name", "lost", timeout=1200)
        lost = cli.json("deployment", "show", "lost")["uuid"]
        made = {kind: cloud.state()[kind] - ids for kind, ids in before.items()}
        assert {kind: len(ids) for kind, ids in made.items()} == {
            "servers": 1, "ports": 1, "key_pairs": 1, "groups": 1, "images": 1}
        shutil.rmtree(home)
        listed = cli.json("gc", "--file", str(provider))
        assert sorted((s["kind"], s["id"]) for s in listed["strays"]) == sorted(
            [("server", *made["servers"]), ("image", *made["images"]),
             ("security_group", *made["groups"])])
        assert {s["deployment"] for s in listed["strays"]} == {lost}
        cli.json("gc", "--file", str(provider), "--delete")
        assert cloud.state() == {**before, "key_pairs": before["key_pairs"] | made["key_pairs"]}
    finally:
        delete_what_is_new(cloud, before)


@pytest.mark.parametrize("moment", ["key pair imported", "servers building", "servers active"])
def test_kill_during_create_then_destroy_leaves_the_cloud_as_it_was(
        cloud: Cloud, tmp_path: Path, moment: str) -> None:
    before = cloud.state()
    cli = cli_for(tmp_path / "home")
    config = servers_config(cloud, tmp_path / "s.yaml", 2)

    def reached() -> bool:
        now = cloud.state()
        if moment == "key pair imported":
            return bool(now["key_pairs"] - before["key_pairs"])
        new = now["servers"] - before["servers"]
        if moment == "servers building":
            return bool(new)
        return len(new) == 2 and all(_status(cloud, server) == "ACTIVE" for server in new)

    process = cli.popen("deployment", "create", "--file", config, "--name", "killed")
    try:
        kill_when(process, reached, timeout=900, interval=0.3,
                  never=f"the create never reached '{moment}'")
        assert cloud.state() != before, "the kill must leave something to clean up"
        assert ledger_rows(tmp_path / "home") > 0
        destroy_back_to(cloud, cli, "killed", before, tmp_path / "home")
    finally:
        cli.destroy_all()


def destroy_back_to(cloud: Cloud, cli: Cli, name: str, before: dict[str, set[str]],
                    home: Path) -> None:
    """`destroy --force` (a killed create leaves its lease) leaves the cloud's servers,
    ports, key pairs, groups and images as they were, and no ledger row."""
    cli.ok("deployment", "destroy", "--force", name, timeout=900)
    assert cloud.state() == before
    assert ledger_rows(home) == 0


def _status(cloud: Cloud, server_id: str) -> str:
    found = cloud.session().get(f"/servers/{server_id}", endpoint_filter={
        "service_type": "compute", "interface": "public"}).json()
    return str(found["server"]["status"])


def _database_id(home: Path) -> str:
    """This home's database id, as gc computes it (benchbed.providers.ec2_api)."""
    result = subprocess.run([sys.executable, "-c", "from benchbed.providers.ec2_api import "
                             "database_id; print(database_id())"], capture_output=True,
                            text=True, check=True, env={**os.environ,
                                                        "BENCHBED_HOME": str(home)})
    return result.stdout.strip()


def openstack_delete(cloud_env: dict[str, str], server_id: str) -> None:
    client("openstack", "--os-cloud", "cloud", "server", "delete", "--wait", server_id,
           env=cloud_env, timeout=600)


def delete_what_is_new(cloud: Cloud, before: dict[str, set[str]]) -> None:
    """What a test made that no ledger knows any more, deleted by hand (servers first: they
    hold the ports and the group)."""
    now = cloud.state()
    for server in now["servers"] - before["servers"]:
        openstack_delete(cloud.env, server)
    for kind, command in (("key_pairs", "keypair"), ("groups", "security group"),
                          ("images", "image")):
        for found in now[kind] - before[kind]:
            client("openstack", "--os-cloud", "cloud", *command.split(), "delete", found,
                   env=cloud.env, timeout=600)
    assert cloud.state() == before
