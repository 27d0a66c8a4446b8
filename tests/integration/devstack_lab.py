"""What the DevstackEngine tests share: keystone-only local.conf, configs for a server made
outside benchbed, and what DevStack leaves on one (to compare before and after a destroy)."""

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tests import upstream
from tests.conftest import Cli
from tests.integration.debian_lab import ImageLab, Lab, sh

KEYSTONE_ONLY = {"ENABLED_SERVICES": "key,mysql"}
# a whole cloud: Keystone, Glance, Placement, Nova (fake driver), Neutron (OVN); the rest is
# DevstackEngine's defaults
WHOLE_CLOUD = {"VIRT_DRIVER": "fake"}
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
# what a keystone-only stack.sh leaves running (uwsgi is devstack@keystone's)
DAEMONS = ("mysqld", "mariadbd", "apache2", "uwsgi", "memcached", "beam.smp", "etcd")
HOSTILE = "$(touch /tmp/bb-pwned); `id` 'q' \"d\" \\ $HOME"  # ${VAR} is config syntax


@contextmanager
def raw_server(prefix: str, subnet: str) -> Iterator[tuple[ImageLab, str]]:
    """A lab of its own and one container made with raw LXC commands: (lab, its address)."""
    lab = ImageLab(prefix, subnet, "/var/cache/benchbed-tests/apt-cacher-ng-devstack")
    try:
        lab.start()
        yield lab, lab.clone(f"{prefix}-server")
    finally:
        lab.stop()


def mirror_processes(address: str) -> list[str]:
    """benchbed's git daemon and PyPI mirror listening on `address`."""
    return [line for line in sh("ps -ww -eo args").splitlines()
            if f"--listen={address}" in line or f"--host={address}" in line]


def existing(lab: Lab, address: str, **engine: Any) -> dict[str, Any]:
    """A DevstackEngine config on the lab's server `address`, from shared/upstream."""
    return {"type": "DevstackEngine", "git_mirror": str(upstream.git_mirror()), **engine,
            "provider": {"type": "ExistingServers", "credentials": [lab.credentials(address)]}}


def daemons(lab: Lab, address: str) -> str:
    """DevStack's daemons by process name, whoever runs them (mysql, www-data, stack)."""
    return lab.ssh(address, "ps -eo comm= | grep -xE '" + "|".join(DAEMONS) + "' | sort -u; true")


def leftovers(lab: Lab, address: str) -> dict[str, str]:
    """What DevStack adds that cleanup must take away again."""
    return {
        "stack user": lab.ssh(address, "getent passwd stack; true"),
        "drop-ins": lab.ssh(address, "ls /etc/sudoers.d 2>/dev/null | grep -v README; true"),
        "services": lab.ssh(address, "systemctl list-units --state=running --no-legend "
                                     "--plain 'devstack@*' apache2.service mariadb.service "
                                     "mysql.service memcached.service; true"),
        "processes": lab.ssh(address, "ps -eo user=,args= | grep -E '^stack |stack.sh' "
                                      "| grep -v grep; true"),
        "daemons": daemons(lab, address),
        "files": lab.ssh(address, "ls -d /opt/stack /etc/openstack /etc/pip.conf "
                                  "/var/lib/benchbed-devstack 2>/dev/null; true"),
        "packages": lab.ssh(address, "dpkg-query -W -f='${db:Status-Status} "
                                     "${binary:Package}\\n' | grep -v '^not-installed' | sort"),
    }


def create_fails(cli: Cli, config: str, name: str) -> str:
    """Create that must fail with exit 1 and one line of error; returns that line."""
    result: subprocess.CompletedProcess[str] = cli(
        "deployment", "create", "--file", config, "--name", name, timeout=1800)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.strip().splitlines()
             if not line.startswith("creating deployment")]
    assert len(lines) == 1, lines
    return lines[0]
