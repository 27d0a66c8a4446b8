"""OpenStackProvider end to end against a cloud that boots real guests, as root, from the CLI.

The cloud is one DebianEngine container (10.254.40.0/24, prefix bbosc) running Keystone,
Glance, Placement, Neutron, Nova and nova-compute-qemu: libvirt under QEMU software
emulation, Neutron's Linux bridge agent on the container's eth0. The guests' flat provider
network is 10.254.41.0/24 on that same segment: the host reaches them through a second
address on the LXC bridge (no router, no NAT). The guest image is the virsh template with a
config-drive seed (benchbed.images.openstack), uploaded as kernel, initrd and disk.
"""

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from keystoneauth1 import session as ks_session
from keystoneauth1.identity import v3

from benchbed.images import openstack as guest_image
from tests.conftest import Cli, cli_for, client, ledger_rows, write_yaml
from tests.integration.debian_lab import sh

pytestmark = pytest.mark.root

NETWORK = "10.254.40.0/24"
GUESTS = "10.254.41"
LOCALHOST = {"type": "ExistingServers", "credentials": [{"host": "localhost", "user": "root"}]}
SERVICES = ["keystone", "glance", "placement", "neutron", "nova", "nova-compute-qemu"]
FLAVOR = "bb.guest"
# Debian with systemd under TCG: 384 MB boots; the template's disk is 8 GB
FLAVOR_SPEC = ["--ram", "384", "--vcpus", "1", "--disk", "8"]


@dataclass
class Cloud:
    cli: Cli
    work: Path
    env: dict[str, str]
    auth: dict[str, str]
    network_id: str
    image_id: str

    def session(self) -> ks_session.Session:
        return ks_session.Session(auth=v3.Password(
            auth_url=self.auth["auth_url"], username=self.auth["username"],
            password=self.auth["password"], project_name=self.auth["project_name"],
            user_domain_name="Default", project_domain_name="Default"))

    def state(self) -> dict[str, set[str]]:
        """What a provider may leave behind: servers, ports, key pairs, groups, images."""
        s = self.session()

        def get(service: str, path: str, key: str) -> list[dict[str, Any]]:
            body = s.get(path, endpoint_filter={"service_type": service,
                                                "interface": "public"}).json()
            return list(body[key])

        return {
            "servers": {x["id"] for x in get("compute", "/servers?all_tenants=1", "servers")},
            "ports": {x["id"] for x in get("network", "/v2.0/ports", "ports")},
            "key_pairs": {x["keypair"]["name"]
                          for x in get("compute", "/os-keypairs", "keypairs")},
            "groups": {x["id"] for x in get("network", "/v2.0/security-groups",
                                            "security_groups") if x["name"] != "default"},
            "images": {x["id"] for x in get("image", "/v2/images", "images")},
        }

    def provider(self, **extra: Any) -> dict[str, Any]:
        return {"type": "OpenStackProvider", "deployment_name": "bbos",
                "auth_url": self.auth["auth_url"], "user": self.auth["username"],
                "password": self.auth["password"], "tenant": self.auth["project_name"],
                "flavor_id": FLAVOR, "image": {"uuid": self.image_id},
                "nics": [{"net-id": self.network_id}], "ssh_user": "root", **extra}


def openstack(cloud_env: dict[str, str], *args: str) -> Any:
    out = client("openstack", "--os-cloud", "cloud", *args, "-f", "json", env=cloud_env,
                 timeout=900).stdout
    return json.loads(out)


def bridge_of(gateway: str) -> str:
    return sh(f"ip -o -4 addr show to {gateway}").split()[1]


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    work = tmp_path_factory.mktemp("openstack")
    cli = cli_for(work / "home")
    config = {"type": "DebianEngine", "services": SERVICES,
              "provider": {"type": "LxcProvider", "start_lxc_network": NETWORK,
                           "container_name_prefix": "bbosc", "host_provider": LOCALHOST}}
    bridge = None
    try:
        cli.ok("deployment", "create", "--file", write_yaml(work / "cloud.yaml", config),
               "--name", "cloud", timeout=3600)
        cli.ok("deployment", "export", "cloud", "--format", "clouds.yaml", "--output",
               str(work / "clouds.yaml"))
        env = {"OS_CLIENT_CONFIG_FILE": str(work / "clouds.yaml")}
        auth = yaml.safe_load((work / "clouds.yaml").read_text())["clouds"]["cloud"]["auth"]
        bridge = bridge_of(NETWORK.replace("0/24", "1"))
        sh(f"ip addr replace {GUESTS}.1/24 dev {bridge}")
        network = openstack(env, "network", "create", "--share", "--provider-network-type",
                            "flat", "--provider-physical-network", "provider", "guests")
        openstack(env, "subnet", "create", "--network", network["id"], "--subnet-range",
                  f"{GUESTS}.0/24", "--no-dhcp", "--gateway", "none", "--allocation-pool",
                  f"start={GUESTS}.10,end={GUESTS}.250", "guests")
        openstack(env, "flavor", "create", *FLAVOR_SPEC, FLAVOR)
        built = guest_image.build()
        kernel = openstack(env, "image", "create", "--disk-format", "aki", "--container-format",
                           "aki", "--file", str(built.kernel), "--public", "bb-kernel")
        initrd = openstack(env, "image", "create", "--disk-format", "ari", "--container-format",
                           "ari", "--file", str(built.initrd), "--public", "bb-initrd")
        disk = openstack(env, "image", "create", "--disk-format", "qcow2", "--container-format",
                         "bare", "--file", str(built.disk), "--public",
                         "--property", f"kernel_id={kernel['id']}",
                         "--property", f"ramdisk_id={initrd['id']}", "bb-debian")
        yield Cloud(cli, work, env, auth, network["id"], disk["id"])
    finally:
        cli.destroy_all()
        if bridge:
            subprocess.run(["ip", "addr", "del", f"{GUESTS}.1/24", "dev", bridge], check=False)
        assert not [n for n in sh("lxc-ls -1").split() if n.startswith("bbosc-")]
        assert ledger_rows(work / "home") == 0


def servers_config(cloud: Cloud, path: Path, amount: int, **provider: Any) -> str:
    return write_yaml(path, {"type": "ServersEngine", "amount": amount,
                             "ssh_timeout": 600, "provider": cloud.provider(**provider)})


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
        cli.ok("deployment", "destroy", "one", timeout=900)
        assert cloud.state() == before
        assert ledger_rows(tmp_path / "home") == 0
    finally:
        cli.destroy_all()
