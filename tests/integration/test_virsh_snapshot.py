"""`image save` with VirshProvider, as root with real libvirt: one VM with data written over
SSH becomes a snapshot template, its deployment goes, and two deployments boot from the
snapshot at once, each a machine of its own that still has the data.

The engine is ServersEngine: under software emulation (no usable KVM here) an OpenStack install
inside a VM takes many minutes, and what is proven here is the VM's side (disk chain, identity,
ledger); DebianEngine's re-run path is proven on LXC (test_snapshot.py). The template is
test_virsh.py's, built once per machine and reused.
"""

import ipaddress
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from benchbed.deployment import Deployment
from benchbed.hostnet import HostNetwork
from benchbed.hostnet.bridge import STATE_DIR, bridge_name
from benchbed.images.virsh import POOL, POOL_PATH
from benchbed.server import Server
from tests.conftest import Cli, kill_when, ledger_rows
from tests.integration.test_virsh import ssh, template, virsh  # noqa: F401 (template: fixture)

pytestmark = pytest.mark.root

NETWORK = "10.254.210.0/24"
PREFIX = "bbvsnap"  # the deployments' domains and volumes; the snapshots are named apart
IMAGE = "vsnap-data"
KILLED = "vsnap-killed"
DATA = "written before the save"


def _config(home: Path, name: str, template_name: str, image: str | None = None) -> str:
    config = {"type": "ServersEngine", **({"image": image} if image else {}),
              "provider": {"type": "VirshProvider", "network": NETWORK,
                           "domain_name_prefix": PREFIX, "template_name": template_name}}
    path = home.parent / f"{name}.json"
    path.write_text(json.dumps(config))
    return str(path)


def _ours() -> dict[str, list[str]]:
    """Domains and volumes of this test's deployments (snapshots are listed apart)."""
    volumes = [line.split()[0] for line in virsh("vol-list", POOL)[2:]]
    return {"domains": [d for d in virsh("list", "--all", "--name") if d.startswith(PREFIX)],
            "volumes": [v for v in volumes if v.startswith(PREFIX)]}


def _images(bb: Cli) -> dict[str, dict[str, Any]]:
    return {image["name"]: image
            for image in bb.json("image", "list", "--provider", "VirshProvider")}


@pytest.fixture
def cleanup(bb: Cli) -> Iterator[None]:
    """Whatever the test leaves (it fails otherwise), with this test's names only."""
    yield
    listed = bb("deployment", "list", "--json")
    uuids = [d["uuid"] for d in json.loads(listed.stdout or "[]")]
    bb.destroy_all()
    for domain in _ours()["domains"]:
        subprocess.run(["virsh", "destroy", domain], capture_output=True)
        subprocess.run(["virsh", "undefine", domain], capture_output=True)
    for volume in _ours()["volumes"]:
        subprocess.run(["virsh", "vol-delete", "--pool", POOL, volume], capture_output=True)
    for image in (IMAGE, KILLED):
        bb("image", "delete", "--provider", "virsh", image)
    users = Path(f"{STATE_DIR}/{bridge_name(ipaddress.IPv4Network(NETWORK))}/users")
    network = HostNetwork(Server(host="localhost"), ipaddress.IPv4Network(NETWORK))
    for user in list(users.iterdir()) if users.exists() else []:
        if user.name.split("_")[0] in uuids:
            network.release(user.name)


def _facts(bb: Cli, home: Path, name: str) -> dict[str, str]:
    server = bb.json("deployment", "show", name)["endpoints"]["servers"][0]
    data, machine_id, hostname = ssh(server, home.parent / "known_hosts",
                                     "cat /root/bbvsnap-data; cat /etc/machine-id; hostname"
                                     ).splitlines()
    scan = subprocess.run(["ssh-keyscan", "-t", "ed25519", server["host"]], capture_output=True,
                          text=True, timeout=30).stdout.split()
    return {"address": server["host"], "data": data, "machine_id": machine_id,
            "hostname": hostname, "host_key": scan[-1], "name": server["name"]}


def _refused(bb: Cli, words: str, *args: str) -> None:
    result = bb(*args)
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and words in result.stderr, \
        result.stderr


def test_two_deployments_boot_from_one_snapshot_each_a_machine_of_its_own(
        bb: Cli, home: Path, cleanup: None, template: str) -> None:  # noqa: F811
    started = time.monotonic()
    bb.ok("deployment", "create", "--file", _config(home, "origin", template),
          "--name", f"{PREFIX}-origin", "--no-use")
    server = bb.json("deployment", "show", f"{PREFIX}-origin")["endpoints"]["servers"][0]
    ssh(server, home.parent / "known_hosts", f"echo '{DATA}' > /root/bbvsnap-data")
    origin = _facts(bb, home, f"{PREFIX}-origin")

    # bad input: one line, exit 2, nothing made
    Deployment.create(f"{PREFIX}-never", json.loads(Path(_config(
        home, "never", template)).read_text())).release()  # recorded, never deployed
    _refused(bb, "deploy->init", "image", "save", f"{PREFIX}-never", "--name", "vsnap-never")
    _refused(bb, "not a valid virsh image name", "image", "save", f"{PREFIX}-origin",
             "--name", "vsnap.dotted")
    _refused(bb, f"virsh image '{template}' exists already", "image", "save",
             f"{PREFIX}-origin", "--name", template)
    assert ledger_rows(home) == 3  # the origin's network, volume and domain

    bb.ok("image", "save", f"{PREFIX}-origin", "--name", IMAGE)
    saved = _images(bb)[IMAGE]
    assert saved["kind"] == "snapshot" and saved["base"] == template and saved["size"]
    assert saved["origin"]["deployment"] == f"{PREFIX}-origin"
    assert saved["origin"]["domain"] == origin["name"]
    assert virsh("domstate", origin["name"]) == ["running"]  # paused only while copied
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json",
                                      str(POOL_PATH / f"{IMAGE}.qcow2")], capture_output=True,
                                     text=True, check=True).stdout)
    assert info["backing-filename"].endswith(f"/{template}.qcow2")

    # kill -9 mid-save: listed as half-made, and destroy removes it
    killed = bb.popen("image", "save", f"{PREFIX}-origin", "--name", KILLED)
    kill_when(killed, (POOL_PATH / f"{KILLED}.json").exists, timeout=120,
              never="the killed save never claimed its name")
    assert _images(bb)[KILLED]["state"] == "half-made"
    bb.ok("deployment", "destroy", "--force", f"{PREFIX}-origin")
    assert KILLED not in _images(bb) and IMAGE in _images(bb)
    assert _ours() == {"domains": [], "volumes": []}

    creating = {name: bb.popen("deployment", "create", "--file",
                               _config(home, name, template, IMAGE), "--name", name, "--no-use")
                for name in (f"{PREFIX}-one", f"{PREFIX}-two")}
    for name, process in creating.items():
        _, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, f"create {name}: {stderr[-2000:]}"
    one, two = (_facts(bb, home, name) for name in creating)
    for clone in (one, two):
        assert clone["data"] == DATA and clone["hostname"] == clone["name"]
    for fact in ("address", "machine_id", "host_key"):
        assert one[fact] != two[fact], fact
        assert origin[fact] not in (one[fact], two[fact]) or fact == "address", fact

    _refused(bb, "is in use by domain", "image", "delete", "--provider", "virsh", IMAGE)
    _refused(bb, f"snapshot {IMAGE}", "image", "delete", "--provider", "virsh", template)
    for name in creating:
        bb.ok("deployment", "destroy", name)
    assert _ours() == {"domains": [], "volumes": []} and ledger_rows(home) == 0
    bb.ok("image", "delete", "--provider", "virsh", IMAGE)
    assert IMAGE not in _images(bb)
    print(f"snapshot round trip: {time.monotonic() - started:.0f} s")
