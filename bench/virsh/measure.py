"""bench/virsh: VMs to SSH-ready through benchbed against raw virsh commands, in one run.

Each round times, as whole processes from outside (CLI start-up and database included):
benchbed 1 VM, benchbed 2 VMs, and raw.sh (one VM with plain virsh commands, the same template,
kernel command line and bridge); every run is torn down before the next, and the order flips
every round so machine drift hits all alike. The host network is held up for the whole run,
as in steady use. raw.sh boots the domain type benchbed picks (KVM exactly when
choose_domain_type, VirshProvider's own function, gives it for `auto`), and the run stops if
benchbed's deployments used another. ROUNDS (default 3, at least 3). Targets (issue 5), median
against median: benchbed 2 <= 1.3x benchbed 1; benchbed 1 <= 1.2x raw.
"""

import ipaddress
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import Target, Timings, finish, rounds, time_command
from benchbed.hostnet import HostNetwork
from benchbed.hostnet.bridge import STATE_DIR
from benchbed.images.virsh import connect
from benchbed.providers.virsh import VirshProviderConfig, choose_domain_type
from benchbed.server import Server

ROOT = Path(__file__).resolve().parents[2]
BENCHBED = str(ROOT / ".venv" / "bin" / "benchbed")
RAW = str(Path(__file__).resolve().parent / "raw.sh")
NETWORK = "10.254.131.0/24"
TEMPLATE = "debian-bookworm"
HOLDER = f"bbvirsh-bench-{os.getpid()}"


def config(amount: int) -> dict:
    return {"type": "ServersEngine", "amount": amount, "flavor": "small",
            "provider": {"type": "VirshProvider", "template_name": TEMPLATE,
                         "network": NETWORK, "domain_type": "auto"}}


def remove_raw(name: str) -> None:
    for argv in (["virsh", "destroy", name], ["virsh", "undefine", name],
                 ["virsh", "vol-delete", "--pool", "benchbed", f"{name}.qcow2"]):
        subprocess.run(argv, capture_output=True)


def main() -> int:
    runs = rounds()
    uri = VirshProviderConfig(type="VirshProvider").libvirt_uri
    # the same function and inputs as VirshProvider's create_servers with domain_type auto
    domain_type, reason = choose_domain_type(connect(uri), "auto", uri)
    work = Path(tempfile.mkdtemp(prefix="bbvirsh-bench-"))
    env = {**os.environ, "BENCHBED_HOME": str(work / "home")}
    network = HostNetwork(Server(host="localhost"), ipaddress.IPv4Network(NETWORK))
    raw_names: list[str] = []
    try:
        subprocess.run([BENCHBED, "image", "build", "--provider", "virsh", "--name", TEMPLATE],
                       env=env, check=True, capture_output=True)
        network.acquire(HOLDER)
        leases = f"{STATE_DIR}/{network.bridge}/dnsmasq.leases"
        for amount in (1, 2):
            (work / f"{amount}.json").write_text(json.dumps(config(amount)))
        key = work / "id"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)],
                       check=True)
        labels = ["raw 1", "benchbed 1", "benchbed 2"]
        times = Timings()

        def run(label: str, round_: int) -> None:
            if label == "raw 1":
                name = f"bbvirsh-raw-{os.getpid()}-{round_}"
                raw_names.append(name)
                times.add(label, time_command(["sh", RAW, name, TEMPLATE, network.bridge, str(key),
                                        leases, domain_type], env))
                remove_raw(name)
                return
            amount, name = label[-1], f"b{label[-1]}-{round_}"
            times.add(label, time_command([BENCHBED, "deployment", "create", "--file",
                                    str(work / f"{amount}.json"), "--name", name], env))
            shown = json.loads(subprocess.run([BENCHBED, "deployment", "show", name, "--json"],
                                              env=env, check=True, capture_output=True,
                                              text=True).stdout)
            used = {server["facts"]["domain_type"] for server in shown["endpoints"]["servers"]}
            if used != {domain_type}:
                sys.exit(f"bench/virsh: benchbed booted {', '.join(sorted(used))} where raw.sh "
                         f"boots {domain_type}: not the same work")
            subprocess.run([BENCHBED, "deployment", "destroy", name], env=env, check=True,
                           capture_output=True)

        for round_ in range(runs):
            for label in labels if round_ % 2 == 0 else reversed(labels):
                run(label, round_)
        print(f"bench/virsh: {runs} rounds, {os.cpu_count()} cores, domain type {domain_type} "
              f"({reason}), {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
        times.show()
        return finish("virsh", [
            Target("benchbed 2 / benchbed 1", times.ratio("benchbed 2", "benchbed 1"), 1.3),
            Target("benchbed 1 / raw 1", times.ratio("benchbed 1", "raw 1"), 1.2)])
    finally:
        listed = subprocess.run([BENCHBED, "deployment", "list", "--json"], env=env,
                                capture_output=True, text=True)
        for deployment in json.loads(listed.stdout or "[]"):
            subprocess.run([BENCHBED, "deployment", "destroy", "--force", deployment["name"]],
                           env=env, capture_output=True)
        for name in raw_names:
            remove_raw(name)
        network.release(HOLDER)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
