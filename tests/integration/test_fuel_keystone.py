"""FuelEngine's endpoints proven by a real Keystone: the simulated cluster's controller has
the public address of a Keystone that DebianEngine installed in an LXC container.

The Fuel master is the Nailgun simulator (a stand-in: no master can run here); the cloud
behind the endpoints is real, so `check` and the real `openstack` client prove that the
endpoints FuelEngine computes (address, port, credentials from `editable.access`) work.
"""

import ipaddress
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from benchbed.hostnet.bridge import bridge_name
from tests.conftest import Cli
from tests.integration.test_fuel import assert_all_gone, fuel_config, write
from tests.nailgun_sim import Simulator

pytestmark = pytest.mark.root

CLIENTS = Path(__file__).resolve().parents[2] / ".venv-clients" / "bin"
LXC_NETWORK = "10.254.162.0/24"
LXC_PREFIX = "bbfuelks"
ADMIN_PASSWORD = "Fuel-Keystone-Admin-Pa55"


def _leftovers() -> list[str]:
    bridge = bridge_name(ipaddress.IPv4Network(LXC_NETWORK))
    containers = subprocess.run(["lxc-ls", "-1"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True).stdout
    return [n for n in containers.split() if n.startswith(LXC_PREFIX + "-")] + \
        [line for line in links.splitlines() if line.startswith(bridge + " ")]


@pytest.fixture(scope="module")
def keystone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The address of a real Keystone (DebianEngine, one LXC container)."""
    work = tmp_path_factory.mktemp("fuel-keystone")
    env = {k: v for k, v in os.environ.items() if k != "BENCHBED_DATABASE_URL"}
    cli = Cli({**env, "BENCHBED_HOME": str(work / "home")})
    config = {"type": "DebianEngine", "services": ["keystone"], "admin_password": ADMIN_PASSWORD,
              "provider": {"type": "LxcProvider", "start_lxc_network": LXC_NETWORK,
                           "container_name_prefix": LXC_PREFIX,
                           "host_provider": {"type": "ExistingServers", "credentials": [
                               {"host": "localhost", "user": "root"}]}}}
    try:
        cli.ok("deployment", "create", "--name", "keystone", "--file",
               write(work, config, "keystone.yaml"), timeout=1200)
        endpoints = cli.json("deployment", "show", "keystone")["endpoints"]
        yield urlsplit(endpoints["openstack"]["auth_url"]).hostname
    finally:
        cli.destroy_all()
        assert _leftovers() == []


@pytest.mark.parametrize("mode", ["multinode", "ha_compact"])
def test_check_and_openstack_client_on_fuel_endpoints(bb: Cli, keystone: str, tmp_path: Path,
                                                      home: Path, mode: str) -> None:
    """Multinode: Keystone on the controller's public address; HA: on the public VIP."""
    sim = Simulator(release="5.0")  # multinode and HA, no token
    sim.serve()
    sim.admin_password = ADMIN_PASSWORD
    try:
        network = str(ipaddress.IPv4Network(LXC_NETWORK))
        config = fuel_config(sim, mode=mode, networks={"public": {
            "cidr": network, "gateway": LXC_NETWORK.replace(".0/24", ".1"),
            "ip_ranges": [[keystone, keystone]]}})
        if mode == "ha_compact":
            config["nodes"] = {"controller": {"amount": 3, "filters": ["ram>=16G", "cpus>4"]},
                               "compute": {"amount": 1, "filters": ["storage>80G"]}}
        bb.ok("deployment", "create", "--name", "fuelks", "--file", write(tmp_path, config))
        results = bb.json("deployment", "check", "fuelks")
        assert results and all(r["ok"] for r in results), results
        clouds = tmp_path / "clouds.yaml"
        bb.ok("deployment", "export", "fuelks", "--format", "clouds.yaml",
              "--output", str(clouds))
        assert yaml.safe_load(clouds.read_text())["clouds"]["fuelks"]["auth"]["auth_url"] == \
            f"http://{keystone}:5000/v3"
        token = subprocess.run(
            [str(CLIENTS / "openstack"), "--os-cloud", "fuelks", "token", "issue", "-f", "json"],
            capture_output=True, text=True, timeout=120,
            env={**os.environ, "OS_CLIENT_CONFIG_FILE": str(clouds)})
        assert token.returncode == 0, token.stderr
        assert json.loads(token.stdout)["id"]
        bb.ok("deployment", "destroy", "fuelks")
        assert_all_gone(sim, home)
    finally:
        sim.stop()
