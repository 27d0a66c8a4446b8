"""benchbed inside Rally: the `benchbed@openstack` platform, driven by the real `rally`.

Root, real LXC. `.venv-clients` holds rally 5.1.1 and rally-openstack 4.1.0 with benchbed
installed beside them (the Makefile's `clients`), so Rally finds the platform through
benchbed's `rally_plugins` entry point. One DebianEngine Keystone deployment, made by
`rally env create`, serves the module's tests in order: check, info, a task, cleanup, and
`rally env destroy`; then a `rally env create` killed with -9 mid-deploy, which
`benchbed deployment destroy` finishes.
"""

import ipaddress
import json
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from benchbed.hostnet import bridge_name
from tests.conftest import CLIENTS, Cli, cli_for, client, kill_when, ledger_rows, log_says
from tests.integration.debian_lab import sh

pytestmark = pytest.mark.root

LXC_NETWORK = "10.254.246.0/24"
LXC_PREFIX = "bbtq"
CONFIG = {"type": "DebianEngine", "services": ["keystone"],
          "provider": {"type": "LxcProvider", "start_lxc_network": LXC_NETWORK,
                       "container_name_prefix": LXC_PREFIX,
                       "host_provider": {"type": "ExistingServers", "credentials": [
                           {"host": "localhost", "user": "root"}]}}}
RALLY_TASK = {"KeystoneBasic.create_and_list_users": [{
    "args": {},
    "runner": {"type": "constant", "times": 6, "concurrency": 2},
    "sla": {"failure_rate": {"max": 0}},
}]}


class Lab:
    """A Rally home of its own (rally.conf names its database) and a benchbed home."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.home = work / "benchbed-home"
        self.bb: Cli = cli_for(self.home)
        rally_home = work / "rally-home"
        (rally_home / ".rally").mkdir(parents=True)
        (rally_home / ".rally" / "rally.conf").write_text(
            f"[database]\nconnection = sqlite:///{rally_home}/rally.sqlite\n")
        self.env = {"HOME": str(rally_home), "BENCHBED_HOME": str(self.home)}
        self.rally("db", "create")

    def rally(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return client("rally", *args, env=self.env, timeout=timeout)

    def rally_json(self, *args: str) -> Any:
        return json.loads(self.rally(*args, "--json").stdout)

    def spec(self, file_name: str, **platform: Any) -> str:
        path = self.work / f"{file_name}.yaml"
        path.write_text(yaml.safe_dump({"benchbed@openstack": platform}))
        return str(path)

    def leftovers(self) -> dict[str, Any]:
        """Containers with our prefix, our bridge, benchbed deployments and ledger rows."""
        bridge = bridge_name(ipaddress.IPv4Network(LXC_NETWORK))
        listed = self.bb("deployment", "list", "--json")
        return {"containers": [n for n in sh("lxc-ls -1").split()
                               if n.startswith(LXC_PREFIX + "-")],
                "bridges": [line for line in sh("ip -br addr").splitlines()
                            if bridge in line or "10.254.246." in line],
                "deployments": json.loads(listed.stdout) if listed.returncode == 0 else listed,
                "ledger rows": ledger_rows(self.home)}


NOTHING = {"containers": [], "bridges": [], "deployments": [], "ledger rows": 0}


def test_bad_benchbed_config_fails_the_env_and_records_nothing(tmp_path: Path) -> None:
    """Rally's env manager logs a platform's error and marks the env (its exit status stays
    0): the error is benchbed's one line naming the config path, and no deployment exists."""
    bad = Lab(tmp_path)
    spec = bad.spec("bad", config={"type": "DebianEngine", "services": ["keystone"]},
                    name="bad")
    created = bad.rally("env", "create", "--name", "bad", "--spec", spec)
    assert "ConfigError: config: 'provider' is required" in created.stderr + created.stdout
    assert bad.rally_json("env", "show", "bad")["status"] == "FAILED TO CREATE"
    assert bad.bb.json("deployment", "list") == []


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """`rally env create` of a benchbed@openstack Keystone, by a config file."""
    lab = Lab(tmp_path_factory.mktemp("rally-platform"))
    config = lab.work / "keystone.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    try:
        lab.rally("env", "create", "--name", "bb",
                  "--spec", lab.spec("spec", file=str(config), name="rallied"), timeout=1500)
        yield lab
    finally:
        lab.bb.destroy_all()


def _platform(lab: Lab) -> dict[str, Any]:
    shown = lab.rally_json("env", "show", "bb")
    return next(iter(shown["platforms"].values()))


def test_env_create_deploys_through_benchbed(lab: Lab) -> None:
    deployments = lab.bb.json("deployment", "list")
    assert [(d["name"], d["status"]) for d in deployments] == [("rallied", "deploy->finished")]
    platform = _platform(lab)
    # filed under "openstack", where rally-openstack's contexts look for credentials
    assert platform["platform_name"] == "openstack"
    assert platform["plugin_name"] == "benchbed@openstack"
    admin = platform["platform_data"]["admin"]
    assert admin["username"] == "admin" and admin["tenant_name"] == "admin"
    assert admin["auth_url"].startswith("http://10.254.246.")
    assert platform["platform_data"]["users"] == []
    assert platform["plugin_data"]["uuid"] == deployments[0]["uuid"]
    assert platform["plugin_data"]["home"] == str(lab.home)
    assert ledger_rows(lab.home) > 0


def test_env_check_answers_from_benchbed_check(lab: Lab) -> None:
    checks = lab.rally_json("env", "check", "bb")
    assert checks == {"benchbed@openstack": {
        "available": True,
        "message": f"benchbed deployment rallied: "
                   f"{len(lab.bb.json('deployment', 'check', 'rallied'))} checks passed"}}


def test_env_info_names_deployment_services_and_identity_version(lab: Lab) -> None:
    info = lab.rally_json("env", "info", "bb")["benchbed@openstack"]["info"]
    assert info["benchbed"]["deployment"] == "rallied"
    assert info["benchbed"]["engine"] == "DebianEngine"
    assert info["benchbed"]["status"] == "deploy->finished"
    assert info["identity_version"].startswith("v3.")
    assert [s["type"] for s in info["services"]] == ["identity"]
    assert info["deployed_services"] == ["keystone"]
    assert [name.startswith(LXC_PREFIX + "-") for name in info["servers"]] == [True]
    password = _platform(lab)["platform_data"]["admin"]["password"]
    assert password not in json.dumps(info) and len(password) >= 24


def test_rally_task_runs_keystone_scenario_without_failures(lab: Lab) -> None:
    task_file = lab.work / "task.json"
    task_file.write_text(json.dumps(RALLY_TASK))
    lab.rally("task", "start", str(task_file), timeout=900)
    lab.rally("task", "sla-check")
    report = lab.work / "report.json"
    lab.rally("task", "report", "--json", "--out", str(report))
    workload = json.loads(report.read_text())["tasks"][0]["subtasks"][0]["workloads"][0]
    assert workload["total_iteration_count"] == 6
    assert workload["failed_iteration_count"] == 0


def _openstack(lab: Lab, *args: str) -> Any:
    clouds = lab.work / "clouds.yaml"
    if not clouds.exists():
        lab.bb.ok("deployment", "export", "rallied", "--format", "clouds.yaml",
                  "--output", str(clouds))
    result = client("openstack", "--os-cloud", "rallied", *args,
                    env={"OS_CLIENT_CONFIG_FILE": str(clouds)})
    return json.loads(result.stdout) if "json" in args else None


def test_env_cleanup_deletes_what_carries_rally_names_only(lab: Lab) -> None:
    """What a killed task leaves: a user, a project and a role with Rally's generated names
    (scenario `s_rally_`, context `c_rally_`); beside them resources of the same kinds that
    Rally did not name, which cleanup must leave alone."""
    def rally_name(prefix: str) -> str:
        return f"{prefix}_rally_{secrets.token_hex(4)}_{secrets.token_hex(4)}"

    ours = {"user": rally_name("s"), "project": rally_name("c"), "role": rally_name("s")}
    theirs = {kind: f"bystander-{kind}" for kind in ours}
    for names in (ours, theirs):
        for kind, name in names.items():
            _openstack(lab, kind, "create", name, "-f", "json")

    result = lab.rally_json("env", "cleanup", "bb")["benchbed@openstack"]
    assert result["errors"] == []
    assert result["resources"] == {f"keystone.{kind}": {"discovered": 1, "deleted": 1,
                                                       "failed": 0} for kind in ours}
    assert (result["discovered"], result["deleted"], result["failed"]) == (3, 3, 0)
    for kind in ours:
        names = {row["Name"] for row in _openstack(lab, kind, "list", "-f", "json")}
        assert ours[kind] not in names and theirs[kind] in names
        _openstack(lab, kind, "delete", theirs[kind])
    # and once more: nothing left to find
    again = lab.rally_json("env", "cleanup", "bb")["benchbed@openstack"]
    assert (again["discovered"], again["deleted"], again["errors"]) == (0, 0, [])


def test_env_destroy_leaves_nothing(lab: Lab) -> None:
    destroyed = lab.rally_json("env", "destroy", "bb")
    assert destroyed["destroy_info"]["platforms"]["benchbed@openstack"]["status"]["new"] \
        == "DESTROYED"
    assert lab.leftovers() == NOTHING
    assert lab.rally_json("env", "show", "bb")["status"] == "DESTROYED"


def test_killed_env_create_then_benchbed_destroy_leaves_nothing(
        lab: Lab) -> None:
    """kill -9 of `rally env create` while packages install (inline config this time);
    the deployment it made is benchbed's to destroy, and nothing is left after."""
    assert lab.leftovers() == NOTHING
    spec = lab.spec("killed", config=CONFIG, name="killed")
    process = subprocess.Popen([str(CLIENTS / "rally"), "env", "create", "--name", "killed",
                                "--spec", spec], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env={**lab.bb.env, **lab.env})
    kill_when(process, lambda: log_says(lab.home, "step started: install packages"),
              timeout=600, never="step 'install packages' never started", interval=0.2)
    left = lab.leftovers()
    assert [d["name"] for d in left["deployments"]] == ["killed"]
    assert left["containers"] and left["ledger rows"] > 0
    lab.bb.ok("deployment", "destroy", "--force", "killed", timeout=600)
    assert lab.leftovers() == NOTHING
