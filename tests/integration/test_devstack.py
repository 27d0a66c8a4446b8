"""DevstackEngine end to end: real DevStack (stable/2025.1) from shared/upstream.

Root, real LXC. The repositories of shared/upstream are served by benchbed's git daemon and
PyPI by its devpi mirror, both on the bridge address; the guests have no other way out. One
whole single-node cloud through LxcProvider (Keystone, Glance, Placement, Nova with the fake
driver, Neutron with OVN) is handed to the real clients: `check`, `openstack server create`
reaching ACTIVE, Rally's boot_and_delete_server and create_and_list_networks without a
failure, and a destroy that leaves no container, ledger row, bridge or mirror daemon. On a
keystone-only stack in a container made with raw
LXC commands (a clone of benchbed's cached base image on a bridge of the test's own),
ExistingServers is killed with -9 during stack.sh and destroyed, and what cleanup leaves is
compared with the container as it was. The failure cases (branch, repository, a stack.sh
failing halfway) and a later create on the same server are in tests/long/test_devstack.py.
"""

import ipaddress
import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from benchbed.hostnet import bridge_name
from benchbed.server import Server
from tests import upstream
from tests.conftest import (
    CLIENTS,
    Cli,
    cli_for,
    client,
    kill_when,
    ledger_rows,
    log_says,
    rally_env,
    rally_task_without_failures,
    write_yaml,
)
from tests.integration.debian_lab import ImageLab, containers_named, lxc_here, sh
from tests.integration.devstack_lab import (
    HOSTILE,
    KEYSTONE_ONLY,
    RALLY_TASK,
    SERVICES,
    WHOLE_CLOUD,
    create_fails,
    daemons,
    existing,
    leftovers,
    mirror_processes,
    raw_server,
)

pytestmark = pytest.mark.root

LXC_NETWORK = "10.254.160.0/24"
LXC_PREFIX = "bbdst"
LAB_SUBNET = "10.254.161"


# -- LxcProvider: check, openstack, rally, destroy ------------------------------------------


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cli, Path]]:
    """One whole single-node DevStack cloud in an LXC container, shared by the client tests;
    an image in its Glance for the servers."""
    work = tmp_path_factory.mktemp("devstack-cloud")
    cli = cli_for(work / "home")
    config = {"type": "DevstackEngine", "git_mirror": str(upstream.git_mirror()),
              "local_conf": {**WHOLE_CLOUD, "BENCHBED_HOSTILE": HOSTILE},
              "provider": lxc_here(LXC_NETWORK, LXC_PREFIX)}
    try:
        cli.ok("deployment", "create", "--file", write_yaml(work / "cloud.yaml", config),
               "--name", "cloud", timeout=3600)
        for fmt, name in (("clouds.yaml", "clouds.yaml"), ("rally-spec", "spec.json")):
            cli.ok("deployment", "export", "cloud", "--format", fmt,
                   "--output", str(work / name))
        image = work / "tiny.img"
        image.write_bytes(os.urandom(64 * 1024))
        client("openstack", "--os-cloud", "cloud", "image", "create", "--file", str(image),
               "--disk-format", "raw", "--container-format", "bare", "--public", "bb-tiny",
               env={"OS_CLIENT_CONFIG_FILE": str(work / "clouds.yaml")})
        yield cli, work
    finally:
        cli.destroy_all()


def test_check_and_the_real_clients(cloud: tuple[Cli, Path], tmp_path: Path) -> None:
    cli, work = cloud
    results = cli.json("deployment", "check", "cloud")
    assert all(r["ok"] for r in results), results
    catalogue = next(r for r in results if r["target"] == "service catalogue")["detail"]
    assert set(catalogue.split(", ")) >= SERVICES, catalogue
    env = {"OS_CLIENT_CONFIG_FILE": str(work / "clouds.yaml")}
    _boot_with_a_port("cloud", env,
                      cli.json("deployment", "show", "cloud")["endpoints"]["servers"][0]["name"])
    assert _agents_alive(env) == {"OVN Controller Gateway agent", "OVN Metadata agent"}
    rally = rally_env(tmp_path, work / "spec.json")
    assert "OK!" in client("rally", "env", "check", env=rally).stdout


def _boot_with_a_port(cloud: str, env: dict[str, str], container: str) -> None:
    """A server with a port on a network of its own reaches ACTIVE on the fake compute of
    `container` (its host name and 1), its port bound there (Neutron binds only to a chassis
    of the port's host name); then the server and the network go."""
    def openstack(*args: str, check: bool = True) -> str:
        return client("openstack", "--os-cloud", cloud, *args, env=env, timeout=600,
                      check=check).stdout

    host = f"{container}1"
    openstack("network", "create", "bb-net")
    try:
        openstack("subnet", "create", "--network", "bb-net", "--subnet-range",
                  "192.0.2.0/24", "bb-subnet")
        openstack("server", "create", "--flavor", "m1.tiny", "--image", "bb-tiny",
                  "--network", "bb-net", "--wait", "bb-server", check=False)
        server = json.loads(openstack("server", "show", "bb-server", "-f", "json"))
        assert server["status"] == "ACTIVE", (
            server.get("fault"), openstack("network", "agent", "list", "-c", "Host",
                                           "-c", "Agent Type", "-c", "Alive"),
            sh(f"lxc-attach -n {container} -- sh -c 'ovs-vsctl get open . external_ids; "
               f"ovn-sbctl --columns=name,hostname list chassis'", check=False),
            sh(f"lxc-attach -n {container} -- journalctl --no-pager -u devstack@q-svc "
               f"-u devstack@n-cpu-1 -u devstack@n-cond-cell1 | grep -E 'ERROR|WARNING' "
               f"| tail -n 20", check=False))
        port_id = openstack("port", "list", "--server", server["id"], "-f", "value",
                            "-c", "ID").split()
        assert len(port_id) == 1, port_id
        port = json.loads(openstack("port", "show", port_id[0], "-f", "json"))
        assert (port["binding_host_id"], port["binding_vif_type"]) == (host, "ovs"), port
    finally:
        client("openstack", "--os-cloud", cloud, "server", "delete", "--wait", "bb-server",
               env=env, timeout=600, check=False)
        client("openstack", "--os-cloud", cloud, "network", "delete", "bb-net", env=env,
               timeout=600, check=False)


def _agents_alive(env: dict[str, str]) -> set[str]:
    """The types of Neutron's agents, once every one is alive (OVN's report within a minute:
    ovn-controller answers each nb_cfg that Neutron raises)."""
    deadline = time.monotonic() + 120
    while True:
        agents = json.loads(client("openstack", "--os-cloud", next(iter(_clouds(env))),
                                   "network", "agent", "list", "-f", "json", env=env).stdout)
        if agents and all(agent["Alive"] for agent in agents):
            return {agent["Agent Type"] for agent in agents}
        assert time.monotonic() < deadline, agents
        time.sleep(5)


def _clouds(env: dict[str, str]) -> dict[str, Any]:
    return dict(yaml.safe_load(Path(env["OS_CLIENT_CONFIG_FILE"]).read_text())["clouds"])


def test_rally_boots_servers_and_creates_networks_without_failures(
        cloud: tuple[Cli, Path], tmp_path: Path) -> None:
    _, work = cloud
    rally_task_without_failures(tmp_path, work / "spec.json", RALLY_TASK, timeout=1200)


SNAPSHOT = "bb-devstack-snapshot"
BOOT_AND_DELETE = {key: value for key, value in RALLY_TASK.items() if key.startswith("Nova")}


def _host_key(deployment: dict[str, Any]) -> str:
    container = deployment["endpoints"]["servers"][0]["name"]
    return sh(f"lxc-attach -n {container} -- cat /etc/ssh/ssh_host_ed25519_key.pub "
              f"/etc/machine-id")


def test_two_deployments_from_one_snapshot_at_once_resume_each_with_its_own_identity(
        cloud: tuple[Cli, Path], tmp_path: Path) -> None:
    """`image save` of the whole cloud; two deployments from it at once skip stack.sh,
    each with its own address, passwords, host key and machine-id; both pass `check` and
    boot a server, one runs Rally; the origin still works; the old admin password does not
    open a clone. Then the clones and the image go, leaving the origin."""
    cli, work = cloud
    origin = cli.json("deployment", "show", "cloud")
    exported = {"cloud": work / "clouds.yaml"}
    config = {"type": "DevstackEngine", "git_mirror": str(upstream.git_mirror()),
              "image": SNAPSHOT, "local_conf": {**WHOLE_CLOUD, "BENCHBED_HOSTILE": HOSTILE},
              "provider": lxc_here(LXC_NETWORK, LXC_PREFIX)}
    file = write_yaml(tmp_path / "snapshot.yaml", config)
    try:
        cli.ok("image", "save", "cloud", "--name", SNAPSHOT, timeout=600)
        creating = [cli.popen("deployment", "create", "--file", file, "--name", name)
                    for name in ("first", "second")]
        for process in creating:
            _, stderr = process.communicate(timeout=900)
            assert process.returncode == 0, stderr
        clones = [cli.json("deployment", "show", name) for name in ("first", "second")]
        for clone in clones:
            log = Path(clone["log"]).read_text()
            assert "resume: done in" in log and "step started: stack.sh" not in log
            exported[clone["name"]] = tmp_path / f"{clone['name']}.yaml"
            cli.ok("deployment", "export", clone["name"], "--format", "clouds.yaml",
                   "--output", str(exported[clone["name"]]))
        urls = {d["endpoints"]["openstack"]["auth_url"] for d in [origin, *clones]}
        passwords = {yaml.safe_load(path.read_text())["clouds"][name]["auth"]["password"]
                     for name, path in exported.items()}
        host_keys = {_host_key(d) for d in [origin, *clones]}
        assert len(urls) == len(passwords) == len(host_keys) == 3, (urls, host_keys)
        for name in ("cloud", "first", "second"):
            results = cli.json("deployment", "check", name)
            assert all(r["ok"] for r in results), (name, results)
        for name in ("first", "second"):
            env = {"OS_CLIENT_CONFIG_FILE": str(exported[name])}
            host = next(d for d in clones if d["name"] == name)["endpoints"]["servers"][0]
            _boot_with_a_port(name, env, host["name"])
            hosts = client("openstack", "--os-cloud", name, "compute", "service", "list",
                           "--service", "nova-compute", "-f", "value", "-c", "Host",
                           "-c", "State", env=env).stdout.split("\n")
            assert [line for line in hosts if line] == [f"{host['name']}1 up"], hosts
            assert _agents_alive(env) == {"OVN Controller Gateway agent", "OVN Metadata agent"}
        stale = yaml.safe_load(exported["first"].read_text())
        stale["clouds"]["first"]["auth"]["password"] = yaml.safe_load(
            exported["cloud"].read_text())["clouds"]["cloud"]["auth"]["password"]
        (tmp_path / "stale.yaml").write_text(yaml.safe_dump(stale))
        refused = subprocess.run(
            [str(CLIENTS / "openstack"), "--os-cloud", "first", "token", "issue"],
            capture_output=True, text=True, timeout=300,
            env={**os.environ, "OS_CLIENT_CONFIG_FILE": str(tmp_path / "stale.yaml")})
        assert refused.returncode != 0 and "(HTTP 401)" in refused.stderr, refused.stderr
        cli.ok("deployment", "export", "first", "--format", "rally-spec",
               "--output", str(tmp_path / "spec.json"))
        rally_task_without_failures(tmp_path, tmp_path / "spec.json", BOOT_AND_DELETE,
                                    timeout=900)
    finally:
        for name in ("first", "second"):
            cli("deployment", "destroy", "--force", name, timeout=600)
        cli("image", "delete", SNAPSHOT, "--provider", "lxc")
    assert [d["name"] for d in cli.json("deployment", "list")] == ["cloud"]
    assert len(containers_named(LXC_PREFIX)) == 1
    assert SNAPSHOT not in sh("lxc-ls -1").split()


def test_a_snapshot_under_other_settings_is_refused_in_one_line(
        cloud: tuple[Cli, Path], tmp_path: Path) -> None:
    cli, _ = cloud
    config = {"type": "DevstackEngine", "git_mirror": str(upstream.git_mirror()),
              "image": SNAPSHOT, "local_conf": {"VIRT_DRIVER": "fake"},
              "provider": lxc_here(LXC_NETWORK, LXC_PREFIX)}
    try:
        cli.ok("image", "save", "cloud", "--name", SNAPSHOT, timeout=600)
        error = create_fails(cli, write_yaml(tmp_path / "other.yaml", config), "other")
        assert re.fullmatch(r"benchbed: error: root@[\d.]+:22: step 'resume from snapshot' "
                            r"failed: the image holds a DevStack stacked from [\d.]+ with "
                            r"other settings .*base image", error), error
        cli.ok("deployment", "destroy", "other", timeout=600)
    finally:
        cli("deployment", "destroy", "--force", "other", timeout=600)
        cli("image", "delete", SNAPSHOT, "--provider", "lxc")
    assert len(containers_named(LXC_PREFIX)) == 1


def test_generated_passwords_are_masked(cloud: tuple[Cli, Path]) -> None:
    cli, work = cloud
    password = yaml.safe_load((work / "clouds.yaml").read_text())[
        "clouds"]["cloud"]["auth"]["password"]
    assert len(password) == 32
    for command in (("deployment", "show", "cloud"), ("deployment", "show", "cloud", "--json")):
        assert password not in cli.ok(*command).stdout
    log = next((work / "home").glob("deployments/*/deployment.log")).read_text()
    assert "stack.sh completed in" in log or "This is your host IP address" in log
    assert password not in log


def test_a_value_with_shell_syntax_arrives_literally(cloud: tuple[Cli, Path]) -> None:
    read_back = subprocess.run(
        ["lxc-attach", "-n", containers_named(LXC_PREFIX)[0], "--", "bash", "-c",
         '. /opt/stack/devstack/.localrc.auto; printf %s "$BENCHBED_HOSTILE"; '
         "ls /tmp/bb-pwned 2>/dev/null; true"],
        capture_output=True, text=True, check=True, timeout=60).stdout
    assert read_back == HOSTILE


def test_destroy_leaves_no_container_row_or_mirror(cloud: tuple[Cli, Path]) -> None:
    cli, work = cloud
    cli.ok("deployment", "destroy", "cloud", timeout=600)
    assert cli.json("deployment", "list") == []
    assert ledger_rows(work / "home") == 0
    assert [n for n in sh("lxc-ls -1").split() if n.startswith(LXC_PREFIX)] == []
    bridge = bridge_name(ipaddress.IPv4Network(LXC_NETWORK))
    assert bridge not in sh("ip -br link")
    assert mirror_processes("10.254.160.1") == []


# -- mirrors: shared, and they survive the bridge going and coming back ---------------------


def test_mirrors_survive_the_bridge_and_stop_with_the_last_user() -> None:
    from benchbed.hostnet.mirrors import GuestMirrors

    bridge, address = "bbdsmbr0", "10.254.161.201"
    sh(f"ip link delete {bridge}", check=False)  # left by an interrupted earlier run
    sh(f"ip link add {bridge} type bridge && ip addr add {address}/32 dev {bridge} && "
       f"ip link set {bridge} up")
    mirrors = GuestMirrors(Server(host="localhost"), address)
    try:
        mirrors.acquire("user-a", str(upstream.git_mirror()), pypi=False)
        mirrors.acquire("user-b", str(upstream.git_mirror()), pypi=False)
        sh(f"ip link delete {bridge}")
        sh(f"ip link add {bridge} type bridge && ip addr add {address}/32 dev {bridge} && "
           f"ip link set {bridge} up")
        listed = sh(f"git ls-remote git://{address}/openstack/devstack.git", timeout=60)
        assert "refs/heads/stable/2025.1" in listed
        mirrors.release("user-a")
        assert len(mirror_processes(address)) == 1
        mirrors.release("user-b")
        assert mirror_processes(address) == []
    finally:
        mirrors.release("user-a")
        mirrors.release("user-b")
        sh(f"ip link delete {bridge}", check=False)


# -- ExistingServers on a container made with raw LXC commands ------------------------------


@pytest.fixture(scope="module")
def raw() -> Iterator[tuple[ImageLab, str]]:
    with raw_server("bbdsx", LAB_SUBNET) as lab_and_address:
        yield lab_and_address


def test_kill_9_during_stack_then_destroy_leaves_the_server_as_it_was(
        raw: tuple[ImageLab, str], tmp_path: Path) -> None:
    lab, address = raw
    before = leftovers(lab, address)
    home = tmp_path / "home"
    cli = cli_for(home)
    try:
        # kill -9 once stack.sh has Keystone running under uwsgi behind apache2 with its
        # MySQL, then destroy: no stack user, drop-in, service, daemon or ledger row is left
        config = write_yaml(tmp_path / "ok.yaml", existing(lab, address, localrc=KEYSTONE_ONLY))
        validated = cli("deployment", "validate", "--file", config)
        assert validated.returncode == 0, validated.stderr
        assert "'localrc' is deprecated" in validated.stderr
        killed = cli.popen("deployment", "create", "--file", config, "--name", "killed")
        kill_when(killed, lambda: log_says(home, ":create_keystone_accounts:"), timeout=2700,
                  never="stack.sh never reached create_keystone_accounts", interval=0.5)
        running = daemons(lab, address).split()
        assert {"apache2", "uwsgi", "memcached"} <= set(running), running
        assert {"mysqld", "mariadbd"} & set(running), running
        assert ledger_rows(home) > 0
        cli.ok("deployment", "destroy", "--force", "killed", timeout=900)
        assert leftovers(lab, address) == before
        assert ledger_rows(home) == 0
    finally:
        cli.destroy_all()
    assert mirror_processes(f"{LAB_SUBNET}.1") == []
