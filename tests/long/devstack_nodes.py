"""What the DevStack several-node tests share: the controller and compute configs, a
deployment with its exported clouds.yaml and Rally spec, and the real `openstack` client
against it."""

import json
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from benchbed.engines.devstack import DEFAULT_DISABLED
from tests import upstream
from tests.conftest import Cli, cli_for, client, write_yaml
from tests.integration.debian_lab import lxc_here
from tests.integration.devstack_lab import RALLY_TASK, WHOLE_CLOUD

# the controller: the whole cloud without nova-compute (DevstackEngine's defaults turned off,
# and n-cpu), so that every server Nova places lands on a node
CONTROLLER_DISABLED = [*DEFAULT_DISABLED, "n-cpu"]
# DevStack's multinode guide's compute node (guides/multinode-lab), without Cinder's volume
NODE_CONF = {"VIRT_DRIVER": "fake", "DATABASE_TYPE": "mysql",
             "SERVICE_HOST": "{controller_ip}", "MYSQL_HOST": "{controller_ip}",
             "RABBIT_HOST": "{controller_ip}", "GLANCE_HOSTPORT": "{controller_ip}:9292",
             "ENABLED_SERVICES": "n-cpu,placement-client,ovn-controller,ovs-vswitchd,"
                                 "ovsdb-server,q-ovn-metadata-agent"}
# a fake compute: the guide's node without OVN's metadata agent, which serves instances that
# the fake driver never boots (its chassis stays: DevstackEngine's with_neutron_for_chassis)
FAKE_NODE_CONF = {**NODE_CONF, "ENABLED_SERVICES": "n-cpu,placement-client,ovn-controller,"
                                                   "ovs-vswitchd,ovsdb-server"}

# Rally's boot_and_delete_server with a network of each tenant's own (Rally's `network`
# context, no router): every server gets a port, which Neutron's OVN driver binds only to a
# chassis of the compute host the server lands on, so a node without its own chassis (or
# with one named after another host) fails the server
BOOT_AND_DELETE = {key: [{**task, "context": {**task["context"], "network": {
    "networks_per_tenant": 1, "start_cidr": "10.2.0.0/24", "router": {}}}}
    for task in tasks] for key, tasks in RALLY_TASK.items() if key.startswith("Nova")}


def controller(network: str, prefix: str) -> dict[str, Any]:
    """A whole DevStack cloud without a compute, in an LXC container on `network`."""
    return {"type": "DevstackEngine", "git_mirror": str(upstream.git_mirror()),
            "local_conf": WHOLE_CLOUD, "disable_service": CONTROLLER_DISABLED,
            "provider": lxc_here(network, prefix)}


def compute(type_key: str = "type", local_conf: dict[str, Any] | None = None,
            **engine: Any) -> dict[str, Any]:
    """A DevstackEngine of DevStack's compute services (NODE_CONF unless given), joining
    `{controller_ip}` (named under `type_key`: LxcEngine's older format says `name`)."""
    return {type_key: "DevstackEngine", "git_mirror": str(upstream.git_mirror()),
            "local_conf": local_conf or NODE_CONF, **engine}


@contextmanager
def deployed(work: Path, name: str, config: dict[str, Any]) -> Iterator[Cli]:
    """`create` of `config` as `name` in a home under `work`, its clouds.yaml and Rally spec
    exported there and a tiny public image `bb-tiny` in its Glance; destroyed at the end."""
    cli = cli_for(work / "home")
    try:
        cli.ok("deployment", "create", "--file", write_yaml(work / f"{name}.yaml", config),
               "--name", name, timeout=5400)
        for fmt, exported in (("clouds.yaml", "clouds.yaml"), ("rally-spec", "spec.json")):
            cli.ok("deployment", "export", name, "--format", fmt,
                   "--output", str(work / exported))
        image = work / "tiny.img"
        image.write_bytes(b"\0" * 65536)
        openstack(work, "image", "create", "--file", str(image), "--disk-format", "raw",
                  "--container-format", "bare", "--public", "bb-tiny")
        yield cli
    finally:
        cli.destroy_all()


def openstack(work: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The real client on the one cloud of work/clouds.yaml."""
    clouds = work / "clouds.yaml"
    cloud = next(iter(yaml.safe_load(clouds.read_text())["clouds"]))
    return client("openstack", "--os-cloud", cloud, *args,
                  env={"OS_CLIENT_CONFIG_FILE": str(clouds)}, timeout=600)


def listed(work: Path, *args: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads(openstack(work, *args, "-f", "json").stdout)
    return rows


def agents_alive(work: Path) -> list[dict[str, Any]]:
    """Neutron's agents once every one is alive (OVN's report within a minute: each
    ovn-controller answers the nb_cfg that Neutron raises)."""
    deadline = time.monotonic() + 120
    while True:
        agents = listed(work, "network", "agent", "list")
        if agents and all(agent["Alive"] for agent in agents):
            return agents
        assert time.monotonic() < deadline, agents
        time.sleep(5)


def landed_hosts(work: Path) -> tuple[int, set[str]]:
    """How many servers were deleted, and the compute hosts they had run on."""
    deleted = listed(work, "server", "list", "--all-projects", "--deleted", "--long")
    return len(deleted), {server["Host"] for server in deleted}
