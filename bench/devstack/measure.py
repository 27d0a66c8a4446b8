"""bench/devstack: a whole single-node DevStack cloud, benchbed against a plain script, and a
cloud from a snapshot of it.

The cloud is CI's: Keystone, Glance, Placement, Nova (VIRT_DRIVER=fake) and Neutron (OVN),
real DevStack (stable/2025.1 from shared/upstream) with warm mirrors: the bench holds a
reference on benchbed's bridge for 10.254.160.0/24 and on its git daemon and devpi mirror
for the whole run. benchbed is timed from `deployment create` (CLI start-up, LXC container,
ledger, SSH) to the end of a passing `deployment check`; the script (script.sh) gets a
container made with raw LXC commands on the same bridge (its creation is timed too), the
same local.conf (DevstackEngine's own rendering) and the same adaptations to a container,
runs the steps over plain `ssh` and ends with a Keystone token through curl. ROUNDS (default
3, at least 3) of each, alternating which goes first; beside each wall time, the CPU-seconds
its container used, so that a round slowed by other work shows. Target (issue 21):
benchbed's median at most 1.0x the script's.

Then the last benchbed cloud (an image uploaded to its Glance) is saved (`image save`) and
ROUNDS deployments are made from it, each timed from `create` to a passing `check` and a
first server ACTIVE (Nova's API polled every 0.2 s). Targets: the median at most 0.05x
benchbed's whole cloud, and at most 30 s.
"""

import ipaddress
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from bench.common import Target, Timings, container_cpu, finish, rounds
from benchbed.engines.devstack import PASSWORD_KEYS, DevstackEngine, render_local_conf
from benchbed.hostnet import HostNetwork
from benchbed.hostnet.mirrors import GuestMirrors
from benchbed.server import Server
from tests import upstream
from tests.integration.debian_lab import ImageLab, sh

ROOT = Path(__file__).resolve().parents[2]
BENCHBED = str(ROOT / ".venv" / "bin" / "benchbed")
OPENSTACK = str(ROOT / ".venv-clients" / "bin" / "openstack")
SCRIPT = str(Path(__file__).resolve().parent / "script.sh")
NETWORK = ipaddress.IPv4Network("10.254.160.0/24")
PREFIX = "bbdsbench"
HOLDER = "bench-devstack"
SNAPSHOT = "bb-bench-devstack"
WHOLE_CLOUD = {"VIRT_DRIVER": "fake"}
TARGET, SNAPSHOT_TARGET, SNAPSHOT_SECONDS = 1.0, 0.05, 30.0
SCRIPT_SIDE = "plain script over ssh (raw LXC)"
BENCHBED_SIDE = "benchbed create + check (LxcProvider)"
SNAPSHOT_SIDE = "from the snapshot: create + check + ACTIVE"


def run(argv: list[str], env: dict[str, str] | None = None, timeout: float = 3600) -> str:
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:4])} failed: "
                           f"{(result.stderr or result.stdout).strip()[-1500:]}")
    return result.stdout


def engine_config(image: str | None = None) -> dict[str, Any]:
    return {"type": "DevstackEngine", "git_mirror": str(upstream.git_mirror()),
            "local_conf": WHOLE_CLOUD, **({"image": image} if image else {}),
            "provider": {"type": "LxcProvider", "start_lxc_network": str(NETWORK),
                         "container_name_prefix": PREFIX,
                         "host_provider": {"type": "ExistingServers", "credentials": [
                             {"host": "localhost", "user": "root"}]}}}


class Home:
    """A BENCHBED_HOME of the bench's own; its deployments are destroyed at the end."""

    def __init__(self) -> None:
        self.path = Path(tempfile.mkdtemp(prefix="bench-devstack-"))
        self.env = {**os.environ, "BENCHBED_HOME": str(self.path)}

    def benchbed(self, *args: str, timeout: float = 3600) -> str:
        return run([BENCHBED, *args], self.env, timeout)

    def create(self, label: str, config: dict[str, Any]) -> None:
        file = self.path / f"{label}.yaml"
        file.write_text(yaml.safe_dump(config))
        self.benchbed("deployment", "create", "--file", str(file), "--name", label)

    def container(self, label: str) -> str:
        shown = json.loads(self.benchbed("deployment", "show", label, "--json"))
        return str(shown["endpoints"]["servers"][0]["name"])

    def destroy(self, label: str) -> None:
        destroyed = subprocess.run([BENCHBED, "deployment", "destroy", "--force", label],
                                   env=self.env, capture_output=True, text=True, timeout=1800)
        if destroyed.returncode != 0:
            raise RuntimeError(f"destroy failed, run again with BENCHBED_HOME={self.path}: "
                               f"{destroyed.stderr.strip()[-500:]}")

    def close(self) -> None:
        for deployment in json.loads(self.benchbed("deployment", "list", "--json")):
            self.destroy(deployment["name"])
        shutil.rmtree(self.path, ignore_errors=True)


def benchbed_cloud(home: Home, label: str) -> tuple[float, float]:
    """Seconds from create to a passing check, and the container's CPU-seconds."""
    start = time.monotonic()
    home.create(label, engine_config())
    home.benchbed("deployment", "check", label)
    return time.monotonic() - start, container_cpu(home.container(label))


def script_cloud(lab: ImageLab, mirrors: GuestMirrors) -> tuple[float, float]:
    """The plain script on a raw LXC container (its creation included): seconds, and the
    container's CPU-seconds."""
    name = "bbdsb-script"
    start = time.monotonic()
    try:
        address = lab.clone(name)
        passwords = {key: secrets.token_hex(16) for key in PASSWORD_KEYS}
        conf = Path(lab.state) / "local.conf"
        config = DevstackEngine.parse_config(engine_config())
        conf.write_text(render_local_conf(config, address, {
            "git_base": mirrors.git_base, "repo": "", "index": mirrors.pip_index_url},
            passwords))
        code = run([SCRIPT, address, str(lab.key), mirrors.git_base, mirrors.pip_index_url,
                    str(conf), passwords["ADMIN_PASSWORD"]]).strip()
        if code != "201":
            raise RuntimeError(f"script: Keystone answered {code}")
        return time.monotonic() - start, container_cpu(name)
    finally:
        lab.destroy(name)


def first_active_server(clouds: Path, cloud: str) -> None:
    """A server of the fake driver, ACTIVE, through Nova's API (no client start-up, polled
    every 0.2 s)."""
    from keystoneauth1 import session
    from keystoneauth1.identity import generic

    auth = yaml.safe_load(clouds.read_text())["clouds"][cloud]["auth"]
    ks = session.Session(auth=generic.Password(
        auth_url=auth["auth_url"], username=auth["username"], password=auth["password"],
        project_name=auth["project_name"], user_domain_name="Default",
        project_domain_name="Default"))
    compute = {"service_type": "compute", "interface": "public"}
    image = ks.get("/v2/images?name=bb-tiny", endpoint_filter={
        "service_type": "image", "interface": "public"}).json()["images"][0]["id"]
    flavors = ks.get("/flavors", endpoint_filter=compute).json()["flavors"]
    flavor = next(f["id"] for f in flavors if f["name"] == "m1.tiny")
    created = ks.post("/servers", endpoint_filter=compute,
                      headers={"OpenStack-API-Version": "compute 2.37"},
                      json={"server": {"name": "bench", "imageRef": image,
                                       "flavorRef": flavor, "networks": "none"}})
    server = created.json()["server"]["id"]
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        status = ks.get(f"/servers/{server}", endpoint_filter=compute).json()["server"]
        if status["status"] == "ACTIVE":
            return
        if status["status"] == "ERROR":
            raise RuntimeError(f"server ERROR: {status.get('fault')}")
        time.sleep(0.2)
    raise RuntimeError("server not ACTIVE within 300 s")


def snapshot_cloud(home: Home, label: str) -> tuple[float, float]:
    """Seconds from create (from the snapshot) to a passing check and an ACTIVE server."""
    start = time.monotonic()
    home.create(label, engine_config(SNAPSHOT))
    home.benchbed("deployment", "check", label)
    clouds = home.path / f"{label}-clouds.yaml"
    home.benchbed("deployment", "export", label, "--format", "clouds.yaml",
                  "--output", str(clouds))
    first_active_server(clouds, label)
    seconds = time.monotonic() - start
    cpu = container_cpu(home.container(label))
    home.destroy(label)
    return seconds, cpu


def save_snapshot(home: Home, label: str) -> None:
    """An image in the cloud's Glance, then the cloud saved as SNAPSHOT."""
    clouds = home.path / "origin-clouds.yaml"
    home.benchbed("deployment", "export", label, "--format", "clouds.yaml",
                  "--output", str(clouds))
    tiny = home.path / "tiny.img"
    tiny.write_bytes(os.urandom(64 * 1024))
    run([OPENSTACK, "--os-cloud", label, "image", "create", "--file", str(tiny),
         "--disk-format", "raw", "--container-format", "bare", "--public", "bb-tiny"],
        {**os.environ, "OS_CLIENT_CONFIG_FILE": str(clouds)})
    home.benchbed("image", "save", label, "--name", SNAPSHOT)


def main() -> int:
    runs = rounds()
    local = Server(host="localhost")
    network = HostNetwork(local, NETWORK)
    mirrors = GuestMirrors(local, network.gateway)
    lab = ImageLab("bbdsb", "10.254.160", "/var/cache/benchbed-tests/unused")
    lab.bridge, lab.proxy = network.bridge, network.apt_proxy
    lab.state.mkdir(parents=True, exist_ok=True)
    if not lab.key.exists():
        sh(f"ssh-keygen -q -t ed25519 -N '' -f {lab.key}")
    lab._create_base()
    network.acquire(HOLDER)
    home = Home()
    try:
        mirrors.acquire(HOLDER, str(upstream.git_mirror()), pypi=True)
        times, cpu = Timings(), Timings()
        last = ""
        for round_ in range(runs):
            for label in (SCRIPT_SIDE, BENCHBED_SIDE)[::1 if round_ % 2 == 0 else -1]:
                if last == BENCHBED_SIDE:
                    home.destroy("whole")  # no idle cloud beside the next measurement
                seconds, used = (script_cloud(lab, mirrors) if label == SCRIPT_SIDE
                                 else benchbed_cloud(home, "whole"))
                last = label
                times.add(label, seconds)
                cpu.add(label, used)
                print(f"  round {round_ + 1}: {label} {seconds:7.1f} s, container "
                      f"{used:6.1f} CPU-s, load {os.getloadavg()[0]:.1f}", flush=True)
        if last != BENCHBED_SIDE:
            benchbed_cloud(home, "whole")  # the snapshot's origin, not timed
        save_snapshot(home, "whole")
        home.destroy("whole")
        for round_ in range(runs):
            seconds, used = snapshot_cloud(home, f"snap-{round_}")
            times.add(SNAPSHOT_SIDE, seconds)
            cpu.add(SNAPSHOT_SIDE, used)
            print(f"  round {round_ + 1}: {SNAPSHOT_SIDE} {seconds:7.1f} s, container "
                  f"{used:6.1f} CPU-s, load {os.getloadavg()[0]:.1f}", flush=True)
        times.show()
        print("  container CPU-seconds:")
        cpu.show()
        return finish("devstack", [
            Target("benchbed / script", times.ratio(BENCHBED_SIDE, SCRIPT_SIDE), TARGET),
            Target("snapshot / whole cloud", times.ratio(SNAPSHOT_SIDE, BENCHBED_SIDE),
                   SNAPSHOT_TARGET),
            Target("snapshot to check and ACTIVE", times.median(SNAPSHOT_SIDE),
                   SNAPSHOT_SECONDS, unit=" s")])
    finally:
        home.close()
        subprocess.run([BENCHBED, "image", "delete", SNAPSHOT, "--provider", "lxc"],
                       capture_output=True, env=home.env)
        mirrors.release(HOLDER)
        network.release(HOLDER)
        sh(f"rm -rf {lab.state}")


if __name__ == "__main__":
    sys.exit(main())
