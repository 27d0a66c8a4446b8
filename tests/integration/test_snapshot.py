"""`image save`: a DebianEngine deployment (Keystone, Glance) on LXC turned into a snapshot, two
deployments started from it at once, each a cloud of its own that shares no secret.

Root, real LXC, real Keystone and Glance, proven with the real `openstack` client. The costly
part is the one install the snapshot is made from; the bad-input tests create nothing.
"""

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from benchbed.deployment import Deployment
from tests.conftest import Cli, cli_for, kill_when, ledger_rows, write_yaml
from tests.integration.debian_lab import sh

pytestmark = pytest.mark.root

ROOT = Path(__file__).resolve().parents[2]
OPENSTACK = ROOT / ".venv-clients" / "bin" / "openstack"
NETWORK = "10.254.201.0/24"
PREFIX = "bbsnap"
IMAGE = "bbsnap-keystone-glance"
HALF_MADE = "bbsnap-killed"
# What must differ between two deployments of one snapshot (and from the snapshot's origin).
SECRETS = ("/etc/machine-id", "/etc/ssh/ssh_host_ed25519_key", "/etc/keystone/fernet-keys/0",
           "/etc/keystone/fernet-keys/1", "/etc/keystone/credential-keys/0",
           "/etc/keystone/credential-keys/1", "/etc/keystone/keystone.conf",
           "/etc/glance/glance-api.conf")


def _config(image: str | None = None) -> dict[str, Any]:
    return {"type": "DebianEngine", "services": ["keystone", "glance"],
            **({"image": image} if image else {}),
            "provider": {"type": "LxcProvider", "start_lxc_network": NETWORK,
                         "container_name_prefix": PREFIX,
                         "host_provider": {"type": "ExistingServers", "credentials": [
                             {"host": "localhost", "user": "root"}]}}}


def _containers() -> list[str]:
    return [name for name in sh("lxc-ls -1").split() if name.startswith(PREFIX + "-")
            and name not in (IMAGE, HALF_MADE)]


def _images(cli: Cli) -> dict[str, dict[str, Any]]:
    return {image["name"]: image for image in cli.json("image", "list", "--provider", "lxc")}


def _facts(cli: Cli, work: Path, name: str) -> dict[str, Any]:
    """The deployment's address, admin password and the secrets on its server."""
    cli.ok("deployment", "export", name, "--format", "clouds.yaml",
           "--output", str(work / f"{name}.yaml"))
    cloud = yaml.safe_load((work / f"{name}.yaml").read_text())["clouds"][name]
    shown = cli.json("deployment", "show", name)
    container = next(r["name"] for r in shown["resources"] if r["kind"] == "container")
    files = {path: sh(f"lxc-attach -n {container} -- cat {path}") for path in SECRETS}
    return {"auth_url": cloud["auth"]["auth_url"], "password": cloud["auth"]["password"],
            "container": container, "files": files}


def _openstack(work: Path, name: str, *args: str) -> Any:
    result = subprocess.run([str(OPENSTACK), "--os-cloud", name, *args, "-f", "json"],
                            capture_output=True, text=True, timeout=300,
                            env={**os.environ, "OS_CLIENT_CONFIG_FILE": str(work / f"{name}.yaml")})
    assert result.returncode == 0, f"openstack {' '.join(args)}: {result.stderr[-1500:]}"
    return json.loads(result.stdout)


def test_two_deployments_from_one_snapshot_share_no_secret(tmp_path: Path) -> None:
    home = tmp_path / "home"
    cli = cli_for(home)
    try:
        cli.ok("deployment", "create", "--file", write_yaml(tmp_path / "origin.yaml", _config()),
               "--name", "origin", "--no-use", timeout=1200)
        origin = _facts(cli, tmp_path, "origin")
        cli.ok("image", "save", "origin", "--name", IMAGE, timeout=900)
        saved = _images(cli)[IMAGE]
        assert saved["origin"]["deployment"] == "origin" and saved["size"]
        assert saved["origin"]["config"]["services"] == ["keystone", "glance"]
        assert cli.json("deployment", "check", "origin")  # the origin still answers
        # kill -9 mid-copy: the half-made image is listed as such, and destroy removes it
        killed = cli.popen("image", "save", "origin", "--name", HALF_MADE)
        kill_when(killed, Path(f"/var/lib/lxc/.benchbed-building-{HALF_MADE}").exists,
                  timeout=120, never="the killed save never started copying")
        assert _images(cli)[HALF_MADE]["state"] == "half-made"
        cli.ok("deployment", "destroy", "--force", "origin", timeout=600)
        assert HALF_MADE not in _images(cli) and not Path(f"/var/lib/lxc/{HALF_MADE}").exists()

        config = write_yaml(tmp_path / "clone.yaml", _config(IMAGE))
        creating = {name: cli.popen("deployment", "create", "--file", config, "--name", name,
                                    "--no-use") for name in ("one", "two")}
        for name, process in creating.items():
            _, stderr = process.communicate(timeout=600)
            assert process.returncode == 0, f"create {name}: {stderr[-2000:]}"
        facts = {name: _facts(cli, tmp_path, name) for name in creating}
        for name, found in facts.items():
            results = cli.json("deployment", "check", name)
            assert all(r["ok"] for r in results), results
            assert _openstack(tmp_path, name, "token", "issue")["id"]
            image_file = tmp_path / "tiny.img"
            image_file.write_bytes(os.urandom(64 * 1024))
            created = _openstack(tmp_path, name, "image", "create", "--file", str(image_file),
                                 "--disk-format", "raw", "--container-format", "bare", "tiny")
            assert created["status"] == "active"
            address = found["auth_url"].split("//")[1].split(":")[0]
            endpoints = _openstack(tmp_path, name, "endpoint", "list")
            assert {e["Service Type"] for e in endpoints} == {"identity", "image"}
            assert all(f"//{address}:" in e["URL"] for e in endpoints), endpoints
        one, two = facts["one"], facts["two"]
        # the origin is gone: its address may be one of theirs
        assert one["auth_url"] != two["auth_url"]
        assert len({one["password"], two["password"], origin["password"]}) == 3
        for path in SECRETS:
            assert len({one["files"][path], two["files"][path], origin["files"][path]}) == 3, \
                path

        refused = cli("image", "delete", "--provider", "lxc", IMAGE)
        assert refused.returncode == 2 and "in use" in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
        for name in creating:
            cli.ok("deployment", "destroy", name, timeout=600)
        assert _containers() == [] and ledger_rows(home) == 0
        cli.ok("image", "delete", "--provider", "lxc", IMAGE)
        assert IMAGE not in _images(cli)
    finally:
        cli.destroy_all()
        for image in (IMAGE, HALF_MADE):
            cli("image", "delete", "--provider", "lxc", image)


@pytest.mark.parametrize(("deployment", "image", "says"), [
    ("no-such-deployment", "bbsnap-fine", "no-such-deployment"),
    ("lab", "x;touch /tmp/bbsnap-pwned", "not a valid image name"),
    ("lab", "$(touch /tmp/bbsnap-pwned)", "not a valid image name"),
    ("lab", "bbsnap-not-deployed", "deploy->init"),
])
def test_bad_input_exits_2_with_one_line_and_creates_nothing(
        home: Path, deployment: str, image: str, says: str) -> None:
    Deployment.create("lab", _config()).release()  # recorded, never deployed
    result = cli_for(home)("image", "save", deployment, "--name", image)
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and says in result.stderr
    assert not Path("/tmp/bbsnap-pwned").exists()
    assert not [name for name in sh("lxc-ls -1").split() if name.startswith("bbsnap")]
    assert ledger_rows(home) == 0
