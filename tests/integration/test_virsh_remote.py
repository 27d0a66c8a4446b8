"""VirshProvider with a libvirt host of its own (`connection`): a namespace host of
tests/nshosts runs its own libvirtd, with its own pool directory, reached over SSH. A
snapshot and the template it backs onto are copied there from this machine's pool on first
use, base first; the VM boots in that libvirtd, on that host's bridge, and is reached
through an SSH jump over the host; destroy leaves nothing on the host but the images. A
copy killed halfway is made again by the next deployment, and removed by its own destroy
only while it is still half-made.

The snapshot is made here as `benchbed image save` leaves one (a qcow2 overlay on the
template, its marker naming its base): its VM's contents do not matter to the copy, and a
real save is test_virsh_snapshot's.
"""

import ipaddress
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from benchbed.hostnet import bridge_name
from benchbed.images import virsh as images
from benchbed.images.virsh import POOL, POOL_PATH, VirshImageStore
from tests.conftest import kill_when, ledger_rows
from tests.nshosts import NsHost, namespace_hosts

pytestmark = pytest.mark.root

UNDERLAY = "10.254.97.0/24"
NETWORK = "10.254.98.0/24"
BRIDGE = bridge_name(ipaddress.IPv4Network(NETWORK))
PREFIX = "bbvr"
TEMPLATE = "debian-bookworm"
SNAPSHOT = "bbvr-snap"


@pytest.fixture(scope="module")
def snapshot() -> Iterator[str]:
    """A snapshot of the template in this machine's pool, removed after the tests."""
    store = VirshImageStore()
    store.build(TEMPLATE, "bookworm", rebuild=False)
    if any(image["name"] == SNAPSHOT for image in store.list()):
        store.delete(SNAPSHOT)
    base = POOL_PATH / f"{TEMPLATE}.qcow2"
    try:
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b",
                        str(base), str(POOL_PATH / f"{SNAPSHOT}.qcow2")], check=True)
        for suffix in ("vmlinuz", "initrd"):
            (POOL_PATH / f"{SNAPSHOT}.{suffix}").write_bytes(
                (POOL_PATH / f"{TEMPLATE}.{suffix}").read_bytes())
        meta = json.loads((POOL_PATH / f"{TEMPLATE}.json").read_text())
        images._write_marker(SNAPSHOT, {
            "name": SNAPSHOT, "kind": "snapshot", "base": TEMPLATE, "release": "bookworm",
            "kernel": meta["kernel"], "created_at": images._now(),
            "origin": {"deployment": "test_virsh_remote", "provider": "provider",
                       "domain": "none"}})
        images.refresh_pool(images.ensure_pool(images.connect(images.DEFAULT_URI)))
        yield SNAPSHOT
    finally:
        store.delete(SNAPSHOT)


@pytest.fixture(scope="module")
def libvirt_host(tmp_path_factory: pytest.TempPathFactory, snapshot: str
                 ) -> Iterator[tuple[NsHost, Path]]:
    """One namespace host with its own libvirtd, and the key that logs in to it."""
    work = tmp_path_factory.mktemp("virsh-remote")
    with namespace_hosts(PREFIX, UNDERLAY, 1, work, without_image=frozenset({0})) as (
            hosts, key):
        hosts[0].start_libvirtd()
        yield hosts[0], key


def virsh(host: NsHost, key: Path, *args: str) -> list[str]:
    listed = subprocess.run(["virsh", "-c", host.libvirt_uri(key), *args],
                            capture_output=True, text=True, timeout=60, check=True).stdout
    return [line.strip() for line in listed.splitlines() if line.strip()]


def remote_state(host: NsHost, key: Path) -> dict[str, set[str]]:
    """The host's domains, pool volumes and bridges; its pool directory's files."""
    volumes = {line.split()[0] for line in virsh(host, key, "vol-list", POOL)[2:]}
    return {"domains": set(virsh(host, key, "list", "--all", "--name")),
            "volumes": volumes,
            "files": {path.name for path in (host.directory / "libvirt-benchbed" / "images"
                                             ).glob("*")},
            "bridges": {BRIDGE} & set(host.links())}


def image_volumes(*names: str) -> set[str]:
    return {f"{name}.{suffix}" for name in names
            for suffix in ("qcow2", "vmlinuz", "initrd", "json")}


def without_images(host: NsHost, key: Path) -> None:
    """The host's pool as on a new host: neither image is there yet."""
    store = VirshImageStore(host.libvirt_uri(key))
    for name in (SNAPSHOT, TEMPLATE):
        if any(image["name"] == name for image in store.list()):
            store.delete(name)


def marker(host: NsHost, name: str) -> dict[str, Any]:
    return json.loads((host.directory / "libvirt-benchbed" / "images" / f"{name}.json"
                       ).read_text())


def write_config(home: Path, host: NsHost, key: Path, **provider: Any) -> str:
    config = {"type": "ServersEngine", "amount": 1,
              "provider": {"type": "VirshProvider", "connection": f"root@{host.address}",
                           "key": str(key), "network": NETWORK, "domain_name_prefix": PREFIX,
                           **provider}}
    home.mkdir(parents=True, exist_ok=True)
    path = home.parent / "config.json"
    path.write_text(json.dumps(config))
    return str(path)


def steps(bb: Any, name: str) -> list[str]:
    return [f"{step['step']}: {step.get('detail')}"
            for step in bb.json("deployment", "show", name)["timeline"]]


def test_a_vm_on_a_remote_libvirt_host_then_nothing_left_but_the_images(
        bb: Any, home: Path, libvirt_host: tuple[NsHost, Path]) -> None:
    host, key = libvirt_host
    without_images(host, key)
    config = write_config(home, host, key, template_name=SNAPSHOT)
    bb.ok("deployment", "create", "--file", config, "--name", "remote")
    copies = [step for step in steps(bb, "remote") if step.startswith("copy virsh template")]
    assert copies == [f"copy virsh template: {TEMPLATE} to {host.address}",
                      f"copy virsh template: {SNAPSHOT} to {host.address}"]
    (server,) = bb.json("deployment", "show", "remote")["endpoints"]["servers"]
    assert server["jump"]["host"] == host.address, "the VM is behind its host's bridge"
    made = remote_state(host, key)
    assert made["domains"] == {server["name"]}
    assert made["volumes"] == image_volumes(TEMPLATE, SNAPSHOT) | {f"{server['name']}.qcow2"}
    assert made["files"] == made["volumes"], "the pool is the host's own directory"
    assert made["bridges"] == {BRIDGE}
    local = subprocess.run(["virsh", "-c", "qemu:///system", "list", "--all", "--name"],
                           capture_output=True, text=True, check=True).stdout.split()
    assert server["name"] not in local, "the VM must run in the host's libvirtd"
    assert "state" not in marker(host, TEMPLATE)
    assert marker(host, SNAPSHOT)["base"] == TEMPLATE
    chain = host.run(f"qemu-img info -U --backing-chain --output=json "
                     f"{POOL_PATH}/{server['name']}.qcow2").stdout
    assert [layer["filename"] for layer in json.loads(chain)] == [
        f"{POOL_PATH}/{name}.qcow2" for name in (server["name"], SNAPSHOT, TEMPLATE)]

    jump = f"ssh -i {key} -o BatchMode=yes -o StrictHostKeyChecking=no " \
           f"-o UserKnownHostsFile=/dev/null -W %h:%p root@{host.address}"
    hostname = subprocess.run(
        ["ssh", "-i", server["key"], "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
         "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o",
         f"ProxyCommand={jump}", f"{server['user']}@{server['host']}", "hostname"],
        capture_output=True, text=True, timeout=60)
    assert hostname.stdout.strip() == server["name"], hostname.stderr
    bb.ok("deployment", "check", "remote")

    bb.ok("deployment", "destroy", "remote")
    images_only = image_volumes(TEMPLATE, SNAPSHOT)
    assert remote_state(host, key) == {"domains": set(), "volumes": images_only,
                                       "files": images_only, "bridges": set()}
    assert ledger_rows(home) == 0


def test_a_copy_killed_halfway_is_made_again_then_destroy_leaves_nothing(
        bb: Any, home: Path, libvirt_host: tuple[NsHost, Path]) -> None:
    host, key = libvirt_host
    without_images(host, key)
    pool = host.directory / "libvirt-benchbed" / "images"
    config = write_config(home, host, key)
    process = bb.popen("deployment", "create", "--file", config, "--name", "killed")
    kill_when(process, lambda: (pool / f"{TEMPLATE}.qcow2").exists(), timeout=120,
              never="the template's disk never appeared on the host")
    assert marker(host, TEMPLATE)["state"] == "half-made", \
        "the kill must land in the middle of the copy"

    bb.ok("deployment", "create", "--file", config, "--name", "again")
    assert f"copy virsh template: {TEMPLATE} to {host.address}" in steps(bb, "again")
    assert "state" not in marker(host, TEMPLATE)
    bb.ok("deployment", "destroy", "again")
    bb.ok("deployment", "destroy", "--force", "killed")
    template_only = image_volumes(TEMPLATE)
    assert remote_state(host, key) == {"domains": set(), "volumes": template_only,
                                       "files": template_only, "bridges": set()}, \
        "the killed copy's destroy must keep the template the next copy completed"
    assert ledger_rows(home) == 0

    process = bb.popen("deployment", "create", "--file", config, "--name", "killed-again")
    kill_when(process, lambda: bool(remote_state(host, key)["domains"]), timeout=120,
              never="no domain was ever defined on the host")
    bb.ok("deployment", "destroy", "--force", "killed-again")
    assert remote_state(host, key) == {"domains": set(), "volumes": template_only,
                                       "files": template_only, "bridges": set()}
    assert ledger_rows(home) == 0


def _refused(bb: Any, home: Path, config: str, words: str) -> None:
    result = bb("deployment", "create", "--file", config, "--name", "bad")
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("benchbed: ")]
    assert len(errors) == 1 and words in errors[0] and "Traceback" not in result.stderr, \
        result.stderr
    assert ledger_rows(home) == 0


def test_a_template_on_neither_machine_is_refused_with_nothing_made(
        bb: Any, home: Path, libvirt_host: tuple[NsHost, Path]) -> None:
    host, key = libvirt_host
    before = remote_state(host, key)
    config = write_config(home, host, key, template_name="bbvr-nowhere")
    _refused(bb, home, config, f"virsh template 'bbvr-nowhere' is neither on {host.address} "
                               f"nor on this machine")
    assert remote_state(host, key) == before


def test_a_key_without_a_remote_host_is_refused(bb: Any, home: Path) -> None:
    home.mkdir(parents=True, exist_ok=True)
    config = home.parent / "config.json"
    config.write_text(json.dumps({"type": "ServersEngine", "provider": {
        "type": "VirshProvider", "key": "/root/.ssh/id_ed25519", "network": NETWORK}}))
    _refused(bb, home, str(config), "provider.key: only for a remote libvirt host")
    assert bb.json("deployment", "list") == []
