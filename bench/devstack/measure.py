"""bench/devstack: keystone-only DevStack to a passing check, benchbed against a plain script.

Both run real DevStack (stable/2025.1 from shared/upstream) with warm mirrors: the bench
holds a reference on benchbed's bridge for 10.254.160.0/24 and on its git daemon and devpi
mirror for the whole run, so both sides find them running with their caches filled by
earlier runs. benchbed is timed from `deployment create` (CLI start-up, LXC container,
ledger, SSH) to the end of a passing `deployment check`; the script (script.sh) gets a
container made with raw LXC commands on the same bridge (its creation is timed too), runs
the same steps over plain `ssh` and ends with a Keystone token through curl. ROUNDS (default
3, at least 3) of each, alternating which goes first (a DevStack run takes minutes); target
(issue 16): benchbed's median at most 1.1x the script's.
`--full` then times Keystone, Glance, Placement and Nova (VIRT_DRIVER=fake) with benchbed,
or prints where DevStack stopped.
"""

import ipaddress
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from bench.common import Target, Timings, finish, rounds
from benchbed.engines import devstack_conf
from benchbed.hostnet import HostNetwork
from benchbed.hostnet.mirrors import GuestMirrors
from benchbed.server import Server
from tests import upstream
from tests.integration.debian_lab import ImageLab, sh

ROOT = Path(__file__).resolve().parents[2]
BENCHBED = str(ROOT / ".venv" / "bin" / "benchbed")
SCRIPT = str(Path(__file__).resolve().parent / "script.sh")
NETWORK = ipaddress.IPv4Network("10.254.160.0/24")
HOLDER = "bench-devstack"
TARGET = 1.1
KEYSTONE = {"ENABLED_SERVICES": "key,mysql"}
FULL = {"ENABLED_SERVICES": "key,mysql,rabbit,g-api,placement-api,n-api,n-cond,n-sch,n-cpu",
        "VIRT_DRIVER": "fake"}


def run(argv: list[str], env: dict[str, str] | None = None, timeout: float = 3600) -> str:
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:4])} failed: "
                           f"{(result.stderr or result.stdout).strip()[-1500:]}")
    return result.stdout


def benchbed(local_conf: dict[str, str], label: str) -> float:
    """Seconds from create to a passing check; destroys the deployment afterwards."""
    home = tempfile.mkdtemp(prefix="bench-devstack-")
    env = {**os.environ, "BENCHBED_HOME": home}
    config = Path(home) / "devstack.yaml"
    config.write_text(yaml.safe_dump({
        "type": "DevstackEngine", "git_mirror": str(upstream.git_mirror()),
        "local_conf": local_conf,
        "provider": {"type": "LxcProvider", "start_lxc_network": str(NETWORK),
                     "container_name_prefix": "bbdsbench",
                     "host_provider": {"type": "ExistingServers", "credentials": [
                         {"host": "localhost", "user": "root"}]}}}))
    start = time.monotonic()
    try:
        run([BENCHBED, "deployment", "create", "--file", str(config), "--name", label], env)
        run([BENCHBED, "deployment", "check", label], env)
        return time.monotonic() - start
    finally:
        # an interrupted create (Ctrl-C) is destroyed too; its home is kept if that fails,
        # so that `benchbed deployment destroy` can be run again on it
        destroyed = subprocess.run([BENCHBED, "deployment", "destroy", "--force", label],
                                   env=env, capture_output=True, text=True, timeout=1800)
        if destroyed.returncode == 0:
            shutil.rmtree(home, ignore_errors=True)
        else:
            print(f"destroy failed, run again with BENCHBED_HOME={home}: "
                  f"{destroyed.stderr.strip()[-500:]}", file=sys.stderr)


def script(lab: ImageLab, mirrors: GuestMirrors) -> float:
    """Seconds for the plain script on a raw LXC container, its creation included."""
    name = "bbdsb-script"
    start = time.monotonic()
    try:
        address = lab.clone(name)
        passwords = {key: secrets.token_hex(16) for key in
                     ("ADMIN_PASSWORD", "DATABASE_PASSWORD", "RABBIT_PASSWORD",
                      "SERVICE_PASSWORD")}
        conf = Path(lab.state) / "local.conf"
        conf.write_text(devstack_conf.render({
            "HOST_IP": address, **passwords, "LOGFILE": "/opt/stack/logs/stack.sh.log",
            "ENABLE_KSMTUNED": False, "GIT_BASE": mirrors.git_base,
            "DOWNLOAD_DEFAULT_IMAGES": False, **KEYSTONE}).replace("'", ""))
        code = run([SCRIPT, address, str(lab.key), mirrors.git_base, mirrors.pip_index_url,
                    str(conf)]).strip()
        if code != "201":
            raise RuntimeError(f"script: Keystone answered {code}")
        return time.monotonic() - start
    finally:
        lab.destroy(name)


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
    try:
        mirrors.acquire(HOLDER, str(upstream.git_mirror()), pypi=True)
        times = Timings()
        sides = {"plain script over ssh (raw LXC)": lambda: script(lab, mirrors),
                 "benchbed create + check (LxcProvider)": lambda: benchbed(KEYSTONE, "bench")}
        for round_ in range(runs):
            for label in sides if round_ % 2 == 0 else reversed(list(sides)):
                times.add(label, sides[label]())
                print(f"  round {round_ + 1}: {label} {times.values[label][-1]:7.1f} s",
                      flush=True)
        times.show()
        code = finish("devstack", [Target("benchbed / script", times.ratio(
            "benchbed create + check (LxcProvider)", "plain script over ssh (raw LXC)"),
            TARGET)])
        if "--full" in sys.argv:
            try:
                full = benchbed(FULL, "full")
                print(f"keystone+glance+placement+nova (fake) {full:7.1f} s")
            except RuntimeError as error:
                print(f"keystone+glance+placement+nova (fake) stopped: {error}")
    finally:
        mirrors.release(HOLDER)
        network.release(HOLDER)
        sh(f"rm -rf {lab.state}")
    return code


if __name__ == "__main__":
    sys.exit(main())
