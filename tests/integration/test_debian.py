"""DebianEngine end to end: a real Keystone + Glance, proven with the real clients from PyPI.

Root, real LXC. One deployment through LxcProvider is shared by the client tests (the
install takes minutes); the ExistingServers tests use containers made with raw LXC
commands (debian_lab), so that what the engine leaves behind can be compared with the
server as it was.
"""

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import Cli, cli_for, client, kill_when, log_says, rally_env, write_yaml
from tests.integration.debian_lab import NOTHING_LEFT, Lab, lxc_here, lxc_leftovers

pytestmark = pytest.mark.root

LXC_NETWORK = "10.254.141.0/24"
LXC_PREFIX = "bbdebt"
RALLY_TASK = {"KeystoneBasic.create_and_list_users": [{
    "args": {},
    "runner": {"type": "constant", "times": 6, "concurrency": 2},
    "sla": {"failure_rate": {"max": 0}},
}]}



# -- LxcProvider + DebianEngine, proven by openstack and rally ------------------------------


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cli, Path]]:
    """One Keystone + Glance deployment in an LXC container, shared by the client tests."""
    work = tmp_path_factory.mktemp("debian-cloud")
    cli = cli_for(work / "home")
    config = {"type": "DebianEngine", "services": ["keystone", "glance"],
              "provider": lxc_here(LXC_NETWORK, LXC_PREFIX)}
    try:
        cli.ok("deployment", "create", "--file", write_yaml(work / "cloud.yaml", config),
               "--name", "cloud", timeout=1200)
        for fmt, name in (("clouds.yaml", "clouds.yaml"), ("rally-spec", "spec.json"),
                          ("openrc", "openrc")):
            cli.ok("deployment", "export", "cloud", "--format", fmt,
                   "--output", str(work / name))
        yield cli, work
    finally:
        cli.destroy_all()


def test_check_proves_token_catalogue_and_endpoints(cloud: tuple[Cli, Path]) -> None:
    cli, _ = cloud
    results = cli.json("deployment", "check", "cloud")
    assert all(r["ok"] for r in results), results
    catalogue = next(r for r in results if r["target"] == "service catalogue")
    assert catalogue["detail"] == "identity, image"
    assert sum(r["target"].startswith(("identity ", "image ")) for r in results) == 2


def test_exports_are_mode_0600_and_hide_nothing_from_clients(cloud: tuple[Cli, Path]) -> None:
    cli, work = cloud
    for name in ("clouds.yaml", "spec.json", "openrc"):
        assert (work / name).stat().st_mode & 0o777 == 0o600
    shown = cli.ok("deployment", "show", "cloud").stdout
    password = yaml.safe_load((work / "clouds.yaml").read_text())[
        "clouds"]["cloud"]["auth"]["password"]
    assert password not in shown and len(password) >= 24


def test_openstack_client_token_and_images(cloud: tuple[Cli, Path], tmp_path: Path) -> None:
    _, work = cloud
    env = {"OS_CLIENT_CONFIG_FILE": str(work / "clouds.yaml")}
    token = client("openstack", "--os-cloud", "cloud", "token", "issue", "-f", "json",
                    env=env)
    assert json.loads(token.stdout)["id"]
    image_file = tmp_path / "tiny.img"
    image_file.write_bytes(os.urandom(256 * 1024))
    created = client("openstack", "--os-cloud", "cloud", "image", "create", "--file",
                      str(image_file), "--disk-format", "raw", "--container-format", "bare",
                      "bb-tiny", "-f", "json", env=env)
    image = json.loads(created.stdout)
    assert image["status"] == "active" and image["size"] == 256 * 1024
    listed = json.loads(client("openstack", "--os-cloud", "cloud", "image", "list",
                                "-f", "json", env=env).stdout)
    assert [i["Name"] for i in listed] == ["bb-tiny"]


def test_rally_env_and_keystone_task_without_failures(cloud: tuple[Cli, Path],
                                                      tmp_path: Path) -> None:
    _, work = cloud
    env = rally_env(tmp_path, work / "spec.json")
    assert "OK!" in client("rally", "env", "check", env=env).stdout
    task_file = tmp_path / "task.json"
    task_file.write_text(json.dumps(RALLY_TASK))
    client("rally", "task", "start", str(task_file), env=env, timeout=600)
    client("rally", "task", "sla-check", env=env)
    report = tmp_path / "report.json"
    client("rally", "task", "report", "--json", "--out", str(report), env=env)
    workload = json.loads(report.read_text())["tasks"][0]["subtasks"][0]["workloads"][0]
    assert workload["total_iteration_count"] == 6
    assert workload["failed_iteration_count"] == 0
    assert (Path(env["HOME"]) / "rally.sqlite").exists()


def test_destroy_leaves_nothing(cloud: tuple[Cli, Path]) -> None:
    cli, _ = cloud
    cli.ok("deployment", "destroy", "cloud", timeout=600)
    assert cli.json("deployment", "list") == []
    assert lxc_leftovers(LXC_NETWORK, LXC_PREFIX) == NOTHING_LEFT


# -- the same engine on servers made outside benchbed ---------------------------------------


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    lab = Lab("bbdebx", "10.77.6", "/var/cache/benchbed-tests/apt-cacher-ng")
    try:
        yield lab.start()
    finally:
        lab.stop()


def _existing(lab: Lab, address: str, **engine: Any) -> dict[str, Any]:
    return {"type": "DebianEngine", **engine,
            "provider": {"type": "ExistingServers", "credentials": [lab.credentials(address)]}}


def _server_state(lab: Lab, address: str) -> dict[str, str]:
    """What cleanup must give back: packages (any state), users, groups, service dirs.

    Versions are left out: a dependency the install upgraded (perl-base, say) cannot be
    downgraded again, as the archive no longer holds the older version.
    """
    return {
        "packages": lab.ssh(address, "dpkg-query -W -f='${db:Status-Status} ${binary:Package}"
                                     "\\n' | grep -v '^not-installed' | sort"),
        "users": lab.ssh(address, "getent passwd | sort"),
        "groups": lab.ssh(address, "getent group | sort"),
        "dirs": lab.ssh(address, "ls -d /etc/keystone /etc/glance /var/lib/mysql "
                                 "/var/lib/benchbed-debian /usr/sbin/policy-rc.d "
                                 "/etc/apt/apt.conf.d/00benchbed-proxy 2>/dev/null; true"),
        "apt": lab.ssh(address, "ls /etc/apt/apt.conf.d"),
    }


def test_rerun_on_half_installed_server_then_destroy_purges_it(lab: Lab, tmp_path: Path
                                                                ) -> None:
    address = lab.clone("bbdebx-purge")
    before = _server_state(lab, address)
    cli = cli_for(tmp_path / "home")
    config = write_yaml(tmp_path / "debian.yaml", _existing(lab, address, apt_proxy=lab.proxy,
                                                        admin_password="s3cret-Adm1n-pw"))
    # A first create is killed while its packages are being configured ...
    first = cli.popen("deployment", "create", "--file", config, "--name", "first")
    kill_when(first, lambda: log_says(tmp_path / "home", "step started: keystone: db_sync"),
              timeout=300, never="step 'keystone: db_sync' never started", interval=0.2)
    # ... and a second one on the same, half-installed server continues and finishes.
    created = cli("deployment", "create", "--file", config, "--name", "second", timeout=1200)
    assert created.returncode == 0, created.stderr
    assert all(r["ok"] for r in cli.json("deployment", "check", "second"))
    assert "s3cret-Adm1n-pw" not in cli.ok("deployment", "show", "second").stdout
    assert lab.ssh(address, "cat /etc/apt/apt.conf.d/00benchbed-proxy").strip() \
        == f'Acquire::http::Proxy "{lab.proxy}";'
    installed = _server_state(lab, address)
    assert "keystone" in installed["packages"] and "/etc/keystone" in installed["dirs"]

    cli.ok("deployment", "destroy", "second", timeout=900)
    cli.ok("deployment", "destroy", "--force", "first", timeout=300)
    assert _server_state(lab, address) == before
    assert cli.json("deployment", "list") == []
    lab.destroy("bbdebx-purge")


@pytest.fixture(scope="module")
def spare(lab: Lab) -> str:
    """A container for the failure tests: nothing gets installed on it."""
    return lab.clone("bbdebx-spare")


def _fails(cli: Cli, config: str, name: str) -> tuple[str, dict[str, Any]]:
    result = cli("deployment", "create", "--file", config, "--name", name, timeout=300)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    shown = cli.json("deployment", "show", name)
    return result.stderr.strip(), shown


def test_apt_proxy_that_does_not_answer(lab: Lab, spare: str, tmp_path: Path) -> None:
    before = _server_state(lab, spare)
    cli = cli_for(tmp_path / "home")
    config = write_yaml(tmp_path / "c.yaml", _existing(lab, spare,
                                                   apt_proxy=f"http://{lab.gateway}:3999"))
    error, shown = _fails(cli, config, "noproxy")
    assert re.search(rf"root@{spare}:22: step 'check apt' failed: apt proxy "
                     rf"http://{lab.gateway}:3999 does not answer", error), error
    assert shown["status"] == "deploy->failed"
    cli.ok("deployment", "destroy", "noproxy")
    assert _server_state(lab, spare) == before


def test_server_without_apt(lab: Lab, spare: str, tmp_path: Path) -> None:
    lab.ssh(spare, "mv /usr/bin/apt-get /usr/bin/apt-get.away")
    try:
        cli = cli_for(tmp_path / "home")
        error, shown = _fails(cli, write_yaml(tmp_path / "c.yaml", _existing(lab, spare)), "noapt")
        assert f"root@{spare}:22: step 'check apt' failed: apt-get not found" in error
        assert shown["status"] == "deploy->failed"
        cli.ok("deployment", "destroy", "noapt")
        assert cli.json("deployment", "list") == []
    finally:
        lab.ssh(spare, "mv /usr/bin/apt-get.away /usr/bin/apt-get")


@pytest.mark.parametrize(("engine", "message"), [
    ({"services": ["keystone", "swift"]},
     "config services[1]: unknown service 'swift' (known: keystone, glance, placement, "
     "neutron, nova, nova-compute, nova-compute-qemu)"),
    ({"services": ["keystone", "nova"]},
     "config services: 'nova' needs placement, glance, neutron in the same cloud: add them"),
    ({"services": ["glance"]}, "config services: must include 'keystone'"),
    ({"database": "sqlite"}, "config database: 'sqlite' is not supported: under uwsgi's "
                             "concurrent workers SQLite fails with 'database is locked'"),
    ({"apt_proxy": "proxy:3142"}, "config apt_proxy:"),
    ({"admin_password": "short"}, "config admin_password:"),
])
def test_bad_input_is_refused_before_anything_is_created(
        tmp_path: Path, engine: dict[str, Any], message: str) -> None:
    cli = cli_for(tmp_path / "home")
    config = write_yaml(tmp_path / "c.yaml", {
        "type": "DebianEngine", **engine,
        "provider": {"type": "ExistingServers",
                     "credentials": [{"host": "192.0.2.123", "user": "root"}]}})
    result = cli("deployment", "create", "--file", config, "--name", "bad")
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert cli.json("deployment", "list") == []
