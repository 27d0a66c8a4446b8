"""VirshProvider end to end, as root, with real libvirt: the CLI deploys two VMs, real `ssh`
reaches them, destroy leaves no domain, volume or network, kill -9 during create leaks
nothing, and bad input is refused in one line with nothing left behind.

The template is built once per machine (`benchbed image build --provider virsh`, about two
minutes) and reused, as users keep it; everything else the tests make is removed.
"""

import ipaddress
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from benchbed.hostnet import HostNetwork, bridge_name
from benchbed.hostnet.bridge import STATE_DIR
from benchbed.images.virsh import POOL, VirshImageStore
from benchbed.server import Server
from tests.conftest import kill_when, ledger_rows

pytestmark = pytest.mark.root

NETWORK = "10.254.130.0/24"
BRIDGE = bridge_name(ipaddress.IPv4Network(NETWORK))
TEMPLATE = "debian-bookworm"
PREFIX = "bbvirsh"  # VirshProvider's default domain_name_prefix


def virsh(*args: str) -> list[str]:
    listed = subprocess.run(["virsh", "-c", "qemu:///system", *args], capture_output=True,
                            text=True, check=True).stdout
    return [line.strip() for line in listed.splitlines() if line.strip()]


def libvirt_state() -> dict[str, set[str]]:
    """Our domains and pool volumes (named PREFIX-...: other test files' VMs may run at the
    same time), libvirt's networks, and our bridge."""
    volumes = {line.split()[0] for line in virsh("vol-list", POOL)[2:]
               if line.startswith(f"{PREFIX}-")}
    bridge = subprocess.run(["ip", "link", "show", "dev", BRIDGE], capture_output=True)
    domains = {name for name in virsh("list", "--all", "--name") if name.startswith(f"{PREFIX}-")}
    return {"domains": domains, "volumes": volumes,
            "networks": set(virsh("net-list", "--all", "--name")),
            "bridges": {BRIDGE} if bridge.returncode == 0 else set()}


def new_since(before: dict[str, set[str]]) -> dict[str, set[str]]:
    now = libvirt_state()
    return {kind: now[kind] - before[kind] for kind in now if now[kind] - before[kind]}


def write_config(home: Path, engine: dict[str, Any], **provider: Any) -> str:
    config = {"type": "ServersEngine", **engine,
              "provider": {"type": "VirshProvider", "network": NETWORK, **provider}}
    home.mkdir(parents=True, exist_ok=True)
    path = home.parent / "config.json"
    path.write_text(json.dumps(config))
    return str(path)


@pytest.fixture(scope="session")
def template() -> str:
    """The template every test clones from: built on first use, then reused."""
    return VirshImageStore().build(TEMPLATE, "bookworm", rebuild=False)["name"]


@pytest.fixture
def before(bb: Any) -> Iterator[dict[str, set[str]]]:
    """libvirt's state before the test; whatever the test adds is removed after, even on failure."""
    state = libvirt_state()
    yield state
    listed = bb("deployment", "list", "--json")
    uuids = [d["uuid"] for d in json.loads(listed.stdout or "[]")]
    bb.destroy_all()
    leaked = new_since(state)
    for domain in leaked.get("domains", ()):
        subprocess.run(["virsh", "destroy", domain], capture_output=True)
        subprocess.run(["virsh", "undefine", domain], capture_output=True)
    for volume in leaked.get("volumes", ()):
        subprocess.run(["virsh", "vol-delete", "--pool", POOL, volume], capture_output=True)
    users = Path(f"{STATE_DIR}/{BRIDGE}/users")
    network = HostNetwork(Server(host="localhost"), ipaddress.IPv4Network(NETWORK))
    for user in list(users.iterdir()) if users.exists() else []:
        if user.name in uuids:
            network.release(user.name)


def ssh(server: dict[str, Any], known_hosts: Path, command: str) -> str:
    argv = ["ssh", "-i", server["key"], "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
            "-o", f"UserKnownHostsFile={known_hosts}", "-o", "LogLevel=ERROR",
            f"{server['user']}@{server['host']}", command]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_two_vms_reachable_over_ssh_then_nothing_left(
        bb: Any, home: Path, before: dict[str, set[str]], template: str) -> None:
    config = write_config(home, {"amount": 2, "flavor": "small"}, template_name=template)
    bb.ok("deployment", "create", "--file", config, "--name", "vms")
    servers = bb.json("deployment", "show", "vms")["endpoints"]["servers"]
    assert len(servers) == 2
    made = new_since(before)
    assert len(made["domains"]) == 2 and len(made["volumes"]) == 2 and made["bridges"]
    expected_type = "qemu" if Path("/sys/module/kvm_pvm").exists() else None
    identities = set()
    for server in servers:
        facts = server["facts"]
        assert facts["domain_type"] in {"kvm", "qemu"} and facts["domain_type_reason"]
        assert expected_type in (None, facts["domain_type"])
        assert (facts["vcpus"], facts["memory_mib"]) == (1, 1024)
        hostname, machine_id, proxy, *routes = ssh(
            server, home.parent / "known_hosts",
            "hostname; cat /etc/machine-id; cat /etc/apt/apt.conf.d/01benchbed-proxy; "
            "ip -4 route show default").splitlines()
        assert hostname == server["name"]
        assert proxy == f'Acquire::http::Proxy "http://{ipaddress.IPv4Network(NETWORK)[1]}:3142";'
        assert routes == [], "VMs must have no default route"
        identities.add(machine_id)
    assert len(identities) == 2, "each clone needs its own machine-id"
    host_keys = {subprocess.run(["ssh-keyscan", "-t", "ed25519", s["host"]], capture_output=True,
                                text=True, timeout=30).stdout.split()[-1] for s in servers}
    assert len(host_keys) == 2, "each clone needs its own SSH host key"
    for volume in made["volumes"]:
        info = subprocess.run(["qemu-img", "info", "-U", "--output=json",
                               f"/var/lib/benchbed/images/{volume}"], capture_output=True,
                              text=True, check=True).stdout
        assert json.loads(info)["backing-filename"].endswith(f"{template}.qcow2")

    refused = bb("image", "delete", "--provider", "virsh", template)
    assert refused.returncode == 2 and "in use" in refused.stderr

    bb.ok("deployment", "check", "vms")
    bb.ok("deployment", "destroy", "vms")
    assert new_since(before) == {}
    assert ledger_rows(home) == 0


def test_kill_during_create_then_destroy_leaks_nothing(
        bb: Any, home: Path, before: dict[str, set[str]], template: str) -> None:
    config = write_config(home, {"amount": 2}, template_name=template)
    process = bb.popen("deployment", "create", "--file", config, "--name", "killed")
    kill_when(process, lambda: bool(new_since(before).get("domains")), timeout=120,
              never="no domain was ever defined")
    assert new_since(before).get("domains"), "the kill must leave something to clean up"
    bb.ok("deployment", "destroy", "--force", "killed")
    assert new_since(before) == {}
    assert ledger_rows(home) == 0


def _refused(bb: Any, home: Path, config: str, code: int, words: str) -> None:
    result = bb("deployment", "create", "--file", config, "--name", "bad")
    assert result.returncode == code, result.stderr
    assert words in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("benchbed: ")]
    assert len(errors) == 1 and words in errors[0] and "Traceback" not in result.stderr
    assert ledger_rows(home) == 0


def test_missing_template_is_refused(bb: Any, home: Path, before: dict[str, set[str]]) -> None:
    config = write_config(home, {"image": "bbvirsh-no-such-template"})
    _refused(bb, home, config, 2, "virsh template 'bbvirsh-no-such-template' does not exist")
    assert new_since(before) == {}


def test_unreachable_libvirt_is_refused(bb: Any, home: Path,
                                        before: dict[str, set[str]]) -> None:
    config = write_config(home, {}, uri="qemu+tcp://127.0.0.1:1/system")
    _refused(bb, home, config, 1, "cannot reach libvirt at qemu+tcp://127.0.0.1:1/system")
    assert new_since(before) == {}


def test_more_memory_than_the_host_has_is_refused(
        bb: Any, home: Path, before: dict[str, set[str]], template: str) -> None:
    host_mib = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2**20
    config = write_config(home, {"flavor": "xlarge", "amount": host_mib // 8192 + 1},
                          template_name=template)
    _refused(bb, home, config, 2, "more than the host's")
    assert new_since(before) == {}


@pytest.mark.parametrize(("provider", "words"), [
    ({"domain_type": "xen"}, "provider.domain_type"),
    ({"uri": "qemu:///system", "connection": "root@host"}, "give either uri or connection"),
    ({"network": "10.254.130.0/30"}, "needs at least a /28"),
    ({"connection": "no-user-here"}, "provider.connection"),
])
def test_bad_config_is_refused_before_anything(bb: Any, home: Path, provider: dict[str, Any],
                                               words: str) -> None:
    config = write_config(home, {}, **provider)
    _refused(bb, home, config, 2, words)
    assert bb.json("deployment", "list") == []
