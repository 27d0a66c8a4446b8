"""A cloud that boots real guests, made with the CLI: for tests/integration/
test_openstack_provider.py and bench/openstack_provider.

One DebianEngine container (LxcProvider) runs Keystone, Glance, Placement, Neutron, Nova and
nova-compute-qemu: libvirt under QEMU software emulation, Neutron's Linux bridge agent on the
container's eth0. The guests' flat provider network is a second subnet on that same segment:
the host reaches them through a second address on the LXC bridge (no router, no NAT). The
guest image is the virsh template with a config-drive seed (benchbed.images.openstack),
uploaded as kernel (aki), initrd (ari) and disk.
"""

import json
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from keystoneauth1 import session as ks_session
from keystoneauth1.identity import v3

from benchbed.images import openstack as guest_image
from tests.conftest import Cli, cli_for, client, ledger_rows, write_yaml
from tests.integration.debian_lab import sh

LOCALHOST = {"type": "ExistingServers", "credentials": [{"host": "localhost", "user": "root"}]}
SERVICES = ["keystone", "glance", "placement", "neutron", "nova", "nova-compute-qemu"]
FLAVOR = "bb.guest"
# Debian with systemd under TCG: 384 MB boots; the template's disk is 8 GB
FLAVOR_SPEC = ["--ram", "384", "--vcpus", "1", "--disk", "8"]
# more disk than the compute has (Nova has no disk quota): the scheduler finds no host
HUGE_FLAVOR = "bb.huge"
# more memory than the project's quota (51200 MB): Nova refuses the request itself
OVER_QUOTA_FLAVOR = "bb.over-quota"


@dataclass
class Cloud:
    cli: Cli
    work: Path
    env: dict[str, str]
    auth: dict[str, str]
    network_id: str
    image_id: str
    prefix: str

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
        return {"type": "OpenStackProvider", "deployment_name": self.prefix,
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


@contextmanager
def guest_cloud(work: Path, network: str, guests: str, prefix: str) -> Iterator[Cloud]:
    """The cloud, its guest network (guests.0/24), flavors and image; all gone afterwards."""
    work.mkdir(parents=True, exist_ok=True)
    cli = cli_for(work / "home")
    config = {"type": "DebianEngine", "services": SERVICES,
              "provider": {"type": "LxcProvider", "start_lxc_network": network,
                           "container_name_prefix": prefix, "host_provider": LOCALHOST}}
    bridge = None
    try:
        cli.ok("deployment", "create", "--file", write_yaml(work / "cloud.yaml", config),
               "--name", "cloud", timeout=3600)
        cli.ok("deployment", "export", "cloud", "--format", "clouds.yaml", "--output",
               str(work / "clouds.yaml"))
        env = {"OS_CLIENT_CONFIG_FILE": str(work / "clouds.yaml")}
        auth = yaml.safe_load((work / "clouds.yaml").read_text())["clouds"]["cloud"]["auth"]
        bridge = bridge_of(network.replace("0/24", "1"))
        sh(f"ip addr replace {guests}.1/24 dev {bridge}")
        provider_network = openstack(env, "network", "create", "--share",
                                     "--provider-network-type", "flat",
                                     "--provider-physical-network", "provider", "guests")
        openstack(env, "subnet", "create", "--network", provider_network["id"],
                  "--subnet-range", f"{guests}.0/24", "--no-dhcp", "--gateway", "none",
                  "--allocation-pool", f"start={guests}.10,end={guests}.250", "guests")
        openstack(env, "flavor", "create", *FLAVOR_SPEC, FLAVOR)
        openstack(env, "flavor", "create", "--ram", "384", "--vcpus", "1", "--disk", "4000",
                  HUGE_FLAVOR)
        openstack(env, "flavor", "create", "--ram", "4000000", "--vcpus", "1", "--disk", "8",
                  OVER_QUOTA_FLAVOR)
        built = guest_image.build()
        kernel = openstack(env, "image", "create", "--disk-format", "aki", "--container-format",
                           "aki", "--file", str(built.kernel), "--public", "bb-kernel")
        initrd = openstack(env, "image", "create", "--disk-format", "ari", "--container-format",
                           "ari", "--file", str(built.initrd), "--public", "bb-initrd")
        disk = openstack(env, "image", "create", "--disk-format", "qcow2", "--container-format",
                         "bare", "--file", str(built.disk), "--public",
                         "--property", f"kernel_id={kernel['id']}",
                         "--property", f"ramdisk_id={initrd['id']}", "bb-debian")
        yield Cloud(cli, work, env, auth, provider_network["id"], disk["id"], prefix)
    finally:
        if bridge:
            subprocess.run(["ip", "addr", "del", f"{guests}.1/24", "dev", bridge], check=False)
        cli.destroy_all()
        assert not [n for n in sh("lxc-ls -1").split() if n.startswith(f"{prefix}-")]
        assert ledger_rows(work / "home") == 0
