"""bench/openstack_provider: N real guests created in parallel against 1, in one run.

A cloud that boots real guests under QEMU software emulation is made first
(tests/integration/guest_cloud.py: one DebianEngine container with nova-compute-qemu, a few
minutes on an idle machine, not timed). Each round then times, as whole processes from
outside, `deployment create` of a ServersEngine with OpenStackProvider for 1 server and for
N=4 (to SSH-ready, host keys recorded), each destroyed before the next; the order flips every
round. From each create's timeline it also reports the seconds Nova took to make the servers
ACTIVE and the seconds from ACTIVE to SSH (the guests' own boot under TCG), and from /proc the
CPU-seconds the guests' QEMU processes used by then: TCG boots are CPU-bound, so N guests on
two cores need N times one boot's CPU, which bounds the ratio from below whatever benchbed
does. ROUNDS (default 3, at least 3). Target (issue 23): N=4 at most 1.5x 1, median against
median. NETWORK (default 10.254.40.0/24), GUESTS (10.254.41) and PREFIX (bbosb) move the run
off the networks and names that others use.
"""

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import Target, Timings, finish, rounds
from tests.conftest import write_yaml
from tests.integration.guest_cloud import Cloud, guest_cloud

ROOT = Path(__file__).resolve().parents[2]
BENCHBED = str(ROOT / ".venv" / "bin" / "benchbed")
AMOUNT = 4


def create_and_destroy(cloud: Cloud, work: Path, amount: int, times: Timings) -> None:
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "BENCHBED_HOME": str(work / "home")}
    config = write_yaml(work / f"{amount}.yaml", {
        "type": "ServersEngine", "amount": amount, "ssh_timeout": 600,
        "provider": cloud.provider()})
    label = f"{amount} server(s)"
    start = time.monotonic()
    created = subprocess.run([BENCHBED, "deployment", "create", "--file", config, "--name",
                              f"n{amount}"], env=env, capture_output=True, text=True)
    elapsed = time.monotonic() - start
    try:
        if created.returncode != 0:
            sys.exit(f"bench/openstack_provider: create of {amount} failed: "
                     f"{created.stderr.strip()}")
        times.add(label, elapsed)
        shown = json.loads(subprocess.run(
            [BENCHBED, "deployment", "show", f"n{amount}", "--json"], env=env, check=True,
            capture_output=True, text=True).stdout)
        steps = {step["step"]: step["seconds"] for step in shown["timeline"]
                 if step["seconds"] is not None}
        times.add(f"{label}: Nova to ACTIVE", steps["wait for ACTIVE"])
        times.add(f"{label}: ACTIVE to SSH (boot)", steps["wait for SSH"])
        times.add(f"{label}: guests' CPU-seconds", guests_cpu_seconds(cloud.prefix))
    finally:
        subprocess.run([BENCHBED, "deployment", "destroy", f"n{amount}"], env=env,
                       capture_output=True, check=False)


def guests_cpu_seconds(prefix: str) -> float:
    """CPU-seconds the QEMU processes in the cloud's container have used: read as `create`
    returns, the guests' boot to SSH (user and system time, from /proc)."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
            cgroups = (stat.parent / "cgroup").read_text()
        except OSError:
            continue
        command = text[text.index("(") + 1:text.rindex(")")]
        if command.startswith("qemu-system") and f"lxc.payload.{prefix}-" in cgroups:
            fields = text.rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def main() -> int:
    runs = rounds()
    work = Path(tempfile.mkdtemp(prefix="bbos-bench-"))
    network = os.environ.get("NETWORK", "10.254.40.0/24")
    guests = os.environ.get("GUESTS", "10.254.41")
    times = Timings()
    with guest_cloud(work / "cloud", network, guests, os.environ.get("PREFIX", "bbosb")) \
            as cloud:
        for index in range(runs):
            order = (1, AMOUNT) if index % 2 == 0 else (AMOUNT, 1)
            for amount in order:
                create_and_destroy(cloud, work / f"r{index}", amount, times)
    times.show()
    cores = os.cpu_count() or 1
    floor = times.median(f"{AMOUNT} server(s): guests' CPU-seconds") / cores
    print(f"  the {AMOUNT} guests' boots alone need {floor:.1f}s of this machine's {cores} cores "
          f"(1 guest: {times.median('1 server(s): ACTIVE to SSH (boot)'):.1f}s to boot)",
          flush=True)
    ratio = times.ratio(f"{AMOUNT} server(s)", "1 server(s)")
    return finish("openstack_provider", [Target(f"{AMOUNT} servers / 1 server", ratio, 1.5)])


if __name__ == "__main__":
    sys.exit(main())
