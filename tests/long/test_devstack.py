"""DevstackEngine end to end, what does not fit CI's 45 minutes.

A whole single-node cloud (Keystone, Glance, Placement, Nova with the fake driver, Neutron
with OVN) in an LXC container from LxcProvider: `check`, `openstack server create` reaching
ACTIVE, Rally's boot_and_delete_server and create_and_list_networks (10 iterations each,
concurrency 2) without a failure, and a destroy that leaves no container, ledger row, bridge
or mirror daemon. The cloud took 6.5-7 minutes on an idle machine (2026-12-06), and was not
done after 58 minutes at load average 35-50.

The failures: a branch that does not exist, a repository that does not answer, a stack.sh
failing halfway. Each names the server and the step in one line, and destroy leaves the
server as it was; then a create on that same server succeeds. On a container made with raw
LXC commands, as in tests/integration/test_devstack.py (which runs keystone-only in CI);
these cost another ~15 minutes on an idle machine.
"""

import ipaddress
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from benchbed.hostnet import bridge_name
from tests import upstream
from tests.conftest import (
    Cli,
    cli_for,
    client,
    ledger_rows,
    rally_env,
    rally_task_without_failures,
    write_yaml,
)
from tests.integration.debian_lab import ImageLab, lxc_here, sh
from tests.integration.devstack_lab import (
    KEYSTONE_ONLY,
    create_fails,
    existing,
    leftovers,
    mirror_processes,
    raw_server,
)

pytestmark = pytest.mark.root

LAB_SUBNET = "10.254.163"
# the whole cloud: the network and prefix of tests/integration/test_devstack.py (never run
# at the same time: that one is in `make test`)
LXC_NETWORK = "10.254.160.0/24"
LXC_PREFIX = "bbdst"
WHOLE_CLOUD = {"VIRT_DRIVER": "fake"}  # the rest is DevstackEngine's defaults
SERVICES = {"identity", "image", "placement", "compute", "network"}
RALLY_TASK = {
    "NovaServers.boot_and_delete_server": [{
        "args": {"flavor": {"name": "m1.tiny"}, "image": {"name": "bb-tiny"}},
        "runner": {"type": "constant", "times": 10, "concurrency": 2},
        "context": {"users": {"tenants": 2, "users_per_tenant": 1}},
        "sla": {"failure_rate": {"max": 0}},
    }],
    "NeutronNetworks.create_and_list_networks": [{
        "args": {},
        "runner": {"type": "constant", "times": 10, "concurrency": 2},
        "context": {"users": {"tenants": 2, "users_per_tenant": 1}},
        "sla": {"failure_rate": {"max": 0}},
    }],
}


# -- a whole single-node cloud in LXC: check, a server, Rally, destroy ----------------------


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cli, Path]]:
    """One whole single-node DevStack cloud in an LXC container, shared by the client tests;
    an image in its Glance for the servers."""
    work = tmp_path_factory.mktemp("devstack-cloud")
    cli = cli_for(work / "home")
    config = {"type": "DevstackEngine", "git_mirror": str(upstream.git_mirror()),
              "local_conf": WHOLE_CLOUD,
              "provider": lxc_here(LXC_NETWORK, LXC_PREFIX)}
    try:
        cli.ok("deployment", "create", "--file", write_yaml(work / "cloud.yaml", config),
               "--name", "cloud", timeout=3900)
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
    server = json.loads(client(
        "openstack", "--os-cloud", "cloud", "server", "create", "--flavor", "m1.tiny",
        "--image", "bb-tiny", "--no-network", "--wait", "-f", "json", "bb-server",
        env=env, timeout=600).stdout)
    assert server["status"] == "ACTIVE", server
    client("openstack", "--os-cloud", "cloud", "server", "delete", "--wait", "bb-server",
           env=env, timeout=600)
    rally = rally_env(tmp_path, work / "spec.json")
    assert "OK!" in client("rally", "env", "check", env=rally).stdout


def test_rally_boots_servers_and_creates_networks_without_failures(
        cloud: tuple[Cli, Path], tmp_path: Path) -> None:
    _, work = cloud
    rally_task_without_failures(tmp_path, work / "spec.json", RALLY_TASK, timeout=1200)


def test_destroy_leaves_no_container_row_or_mirror(cloud: tuple[Cli, Path]) -> None:
    cli, work = cloud
    cli.ok("deployment", "destroy", "cloud", timeout=600)
    assert cli.json("deployment", "list") == []
    assert ledger_rows(work / "home") == 0
    assert [n for n in sh("lxc-ls -1").split() if n.startswith(LXC_PREFIX)] == []
    bridge = bridge_name(ipaddress.IPv4Network(LXC_NETWORK))
    assert bridge not in sh("ip -br link")
    assert mirror_processes("10.254.160.1") == []


# -- failures on a container made with raw LXC commands --------------------------------------


@pytest.fixture(scope="module")
def raw() -> Iterator[tuple[ImageLab, str]]:
    with raw_server("bbdsy", LAB_SUBNET) as lab_and_address:
        yield lab_and_address


@pytest.mark.parametrize(("engine", "pattern"), [
    ({"devstack_branch": "stable/no-such-branch"},
     r"step 'clone devstack' failed: .*Remote branch stable/no-such-branch not found"),
    ({"devstack_repo": f"git://{LAB_SUBNET}.1:9/openstack/devstack.git"},
     r"step 'clone devstack' failed: .*(unable to connect|did not answer)"),
])
def test_clone_failures_name_server_and_step(raw: tuple[ImageLab, str], tmp_path: Path,
                                             engine: dict[str, Any], pattern: str) -> None:
    lab, address = raw
    before = leftovers(lab, address)
    cli = cli_for(tmp_path / "home")
    try:
        error = create_fails(
            cli, write_yaml(tmp_path / "c.yaml", existing(lab, address, **engine)), "bad")
        assert re.search(rf"root@{address}:22: {pattern}", error), error
        cli.ok("deployment", "destroy", "bad", timeout=900)
        assert leftovers(lab, address) == before
        assert ledger_rows(tmp_path / "home") == 0
    finally:
        cli.destroy_all()


def test_failing_stack_names_server_function_and_command(raw: tuple[ImageLab, str],
                                                         tmp_path: Path) -> None:
    lab, address = raw
    before = leftovers(lab, address)
    cli = cli_for(tmp_path / "home")
    try:
        # stack.sh fails halfway: MySQL cannot bind an address the server does not have
        failing = existing(lab, address, local_conf={**KEYSTONE_ONLY,
                                                     "SERVICE_LISTEN_ADDRESS": "192.0.2.77"})
        error = create_fails(cli, write_yaml(tmp_path / "fail.yaml", failing), "fail")
        assert re.search(rf"root@{address}:22: step 'stack.sh' failed: stack.sh exited 1 in "
                         r"\S+ \(lib/databases/mysql:\d+: .*\); last lines: .+", error), error
        cli.ok("deployment", "destroy", "fail", timeout=900)
        assert leftovers(lab, address) == before
        assert ledger_rows(tmp_path / "home") == 0
    finally:
        cli.destroy_all()


def test_a_create_after_failed_and_destroyed_ones_succeeds(raw: tuple[ImageLab, str],
                                                           tmp_path: Path) -> None:
    """The server the failures above (and CI's kill -9) leave as it was takes a whole
    keystone-only stack, and its destroy leaves it as it was again."""
    lab, address = raw
    before = leftovers(lab, address)
    cli = cli_for(tmp_path / "home")
    try:
        config = write_yaml(tmp_path / "ok.yaml", existing(lab, address, local_conf=KEYSTONE_ONLY))
        cli.ok("deployment", "create", "--file", config, "--name", "ok", timeout=3600)
        assert all(r["ok"] for r in cli.json("deployment", "check", "ok"))
        assert "stack" in leftovers(lab, address)["stack user"]
        cli.ok("deployment", "destroy", "ok", timeout=900)
        assert leftovers(lab, address) == before
        assert ledger_rows(tmp_path / "home") == 0
    finally:
        cli.destroy_all()
