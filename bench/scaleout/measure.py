"""bench/scaleout: fake compute nodes spread over several hosts, a controller on another.

The hosts are namespace hosts (tests/nshosts.py: an sshd in a network and mount namespace of
its own, its own LXC, on an underlay bridge, no route out); host 0 runs the controller
(DebianEngine: Keystone, Glance, Placement, Neutron, Nova) in an LXC container, hosts 1..H
an LxcEngine's nodes, one routed network between them (static routes, no NAT). benchbed runs
in host 0's network namespace, as on the first machine of a fleet; the hosts' apt proxies
fetch through one upstream cache on this machine's underlay address.

SHAPES (default "1x10 3x10": weak scaling, 10 nodes on one host against 10 on each of three;
"1x40 2x20 4x10": 40 nodes over 1, 2 and 4 hosts) are H x nodes per host; each round
deploys every shape from scratch, in turn. Printed per shape: seconds from `create` to a
passing `check`; the controller's CPU-seconds per join (its container's cgroup, from the
first nova-compute start to the passing check, divided by the nodes); the nodes' CPU-seconds
per node (the clones' cgroups at the check: boot, nova-compute's start, reporting; the
stopped templates' installs are not in them); the load averages. Target: the controller's
CPU-seconds per join of the last shape at most TARGET_RATIO times the first shape's, on the
medians of ROUNDS rounds (default 3, at least 3): a join costs the controller the same
however many hosts the nodes are on (one start-up gate, one discover_hosts).

What this cannot show: every host shares this machine's two cores, its kernel and its disk,
so wall time grows with the nodes, not with the hosts, and hosts do not add capacity; the
underlay is a bridge in one kernel (no latency, no loss). Per-node and per-join CPU-seconds
are the figures that carry over to separate machines.
Underlay 10.254.96.0/24, container networks 10.254.88.0/21, names `bbso`.
"""

import ipaddress
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.common import Target, Timings, bench_home, container_cpu, fail, finish, rounds, run
from tests.nshosts import NsHost, namespace_hosts, upstream_apt_cache

ROOT = Path(__file__).resolve().parents[2]
BENCHBED = str(ROOT / ".venv" / "bin" / "benchbed")
PREFIX = "bbso"
UNDERLAY = "10.254.96.0/24"
CONTROLLER_NETWORK = "10.254.88.0/24"
NODE_NETWORK = "10.254.89.0/24"  # host 1's; host i gets the (i-1)-th /24 after it
UPSTREAM_PORT = 3162
UPSTREAM_CACHE = Path("/var/cache/benchbed-bench/apt-cacher-ng-nshosts")
CONTROLLER_SERVICES = ["keystone", "glance", "placement", "neutron", "nova"]
TARGET_RATIO = 1.5
CGROUP_BASES = ("/sys/fs/cgroup/cpuacct", "/sys/fs/cgroup/unified", "/sys/fs/cgroup")


def shapes() -> list[tuple[int, int]]:
    """SHAPES as (hosts, nodes per host): "3x10" is 10 nodes on each of 3 hosts."""
    text = os.environ.get("SHAPES", "1x10 3x10")
    try:
        found = [(int(h), int(n)) for h, n in (shape.split("x") for shape in text.split())]
    except ValueError:
        found = []
    if len(found) < 2 or any(h < 1 or h > 4 or n < 1 or n > 60 for h, n in found):
        print(f"SHAPES={text!r}: at least two shapes HxN, 1 <= H <= 4 hosts, 1 <= N <= 60 "
              f"nodes per host (the first shape is the baseline)", file=sys.stderr)
        raise SystemExit(2)
    return found


def cgroup_cpu(prefix: str) -> float:
    """CPU-seconds of every running container named PREFIX-... (on any namespace host: they
    share this machine's cgroups)."""
    names = {path.name.removeprefix("lxc.payload.") for base in CGROUP_BASES
             for path in Path(base).glob(f"lxc.payload.{prefix}-*")}
    return sum(value for value in map(container_cpu, names) if value == value)


class Sampler(threading.Thread):
    """The controller's CPU-seconds every half second, with the wall clock."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.samples: list[tuple[float, float]] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(0.5):
            self.samples.append((time.time(), cgroup_cpu(f"{PREFIX}-c")))

    def between(self, start: float, end: float) -> float:
        """CPU-seconds from the last sample at or before `start` to the first at `end`."""
        before = [cpu for at, cpu in self.samples if at <= start] or [self.samples[0][1]]
        after = [cpu for at, cpu in self.samples if at >= end] or [self.samples[-1][1]]
        return after[0] - before[-1]


def config(machines: list[NsHost], key: Path, hosts: int, per_host: int,
           upstream: str) -> dict[str, Any]:
    def credentials(on: list[NsHost]) -> dict[str, Any]:
        return {"type": "ExistingServers",
                "credentials": [machine.credential(key) for machine in on]}

    return {"type": "MultihostEngine",
            "controller": {"type": "DebianEngine", "services": CONTROLLER_SERVICES,
                           "provider": {"type": "LxcProvider",
                                        "start_lxc_network": CONTROLLER_NETWORK,
                                        "container_name_prefix": f"{PREFIX}-c",
                                        "apt_upstream_proxy": upstream,
                                        "host_provider": credentials(machines[:1])}},
            "nodes": [{"type": "LxcEngine", "container_name": f"{PREFIX}-n",
                       "nodes_per_server": per_host, "start_lxc_network": NODE_NETWORK,
                       "apt_upstream_proxy": upstream,
                       "provider": credentials(machines[1:hosts + 1]),
                       "engine": {"type": "DebianEngine", "services": ["nova-compute"]}}]}


def measure(machines: list[NsHost], key: Path, hosts: int, per_host: int,
            upstream: str) -> dict[str, Any]:
    nodes = hosts * per_host
    work, env, config_file = bench_home("bench-scaleout-",
                                        config(machines, key, hosts, per_host, upstream))
    inside = ["nsenter", "-t", str(machines[0].sshd_pid), "-n", "--", BENCHBED]
    sampler = Sampler()
    sampler.start()
    load_before = os.getloadavg()
    start = time.monotonic()
    try:
        run([*inside, "deployment", "create", "--file", str(config_file), "--name", "scaleout"],
            env)
        checked = json.loads(run([*inside, "deployment", "check", "scaleout", "--json"], env))
        ready = time.monotonic() - start
        checked_at = time.time()
        if not all(result["ok"] for result in checked):
            fail(f"{hosts}x{per_host}: check failed: {[r for r in checked if not r['ok']]}")
        timeline = json.loads(run([*inside, "deployment", "show", "scaleout", "--json"],
                                  env))["timeline"]
        first_start = min(datetime.fromisoformat(step["started_at"]).timestamp()
                          for step in timeline if step["step"] == "start nova-compute")
        node_cpu = cgroup_cpu(f"{PREFIX}-n")
        time.sleep(1)  # one more sample after the check
        controller_cpu = sampler.between(first_start, checked_at)
    finally:
        sampler.stopping.set()
        sampler.join()
        destroyed = subprocess.run([*inside, "deployment", "destroy", "--force", "scaleout"],
                                   env=env, capture_output=True, text=True, timeout=3600)
        left = [name for machine in machines for name in machine.containers()
                if name.startswith(PREFIX)]
        if destroyed.returncode != 0 or left:
            fail(f"destroy failed ({destroyed.stderr.strip()[-1000:]}), containers left: "
                 f"{left}; the ledger is kept: BENCHBED_HOME={env['BENCHBED_HOME']}")
        subprocess.run(["rm", "-rf", str(work)], check=True)
    return {"shape": f"{hosts}x{per_host}", "nodes": nodes, "ready": ready,
            "controller_per_join": controller_cpu / nodes, "cpu_per_node": node_cpu / nodes,
            "load": (load_before, os.getloadavg())}


def main() -> int:
    wanted = shapes()
    runs = rounds()
    results: list[dict[str, Any]] = []
    widest = max(hosts for hosts, _ in wanted)
    with tempfile.TemporaryDirectory(prefix="bench-scaleout-") as lab, \
            namespace_hosts(PREFIX, UNDERLAY, widest + 1, Path(lab)) as (machines, key), \
            upstream_apt_cache(str(ipaddress.IPv4Network(UNDERLAY).network_address + 1),
                               UPSTREAM_PORT, UPSTREAM_CACHE, Path(lab) / "acng") as upstream:
        for _ in range(runs):
            for hosts, per_host in wanted:
                results.append(measure(machines, key, hosts, per_host, upstream))
                print(f"bench/scaleout: {json.dumps(results[-1])}", file=sys.stderr,
                      flush=True)

    def median(shape: str, key: str) -> float:
        return statistics.median(r[key] for r in results if r["shape"] == shape)

    labels = [f"{hosts}x{per_host}" for hosts, per_host in wanted]
    print(f"{'shape':>6} {'nodes':>5} {'ready s':>8} {'ctrl CPU-s/join':>16} "
          f"{'CPU-s/node':>11}  load before -> after (1 min)")
    for r in results:
        before, after = r["load"]
        print(f"{r['shape']:>6} {r['nodes']:>5} {r['ready']:>8.0f} "
              f"{r['controller_per_join']:>16.2f} {r['cpu_per_node']:>11.2f}  "
              f"{before[0]:.2f} -> {after[0]:.2f}")
    summary = Timings()
    for r in results:
        summary.add(f"{r['shape']} create to passing check", r["ready"])
    summary.show()
    base, last = labels[0], labels[-1]
    for label in labels[1:]:
        ratios = {key: median(label, key) / median(base, key)
                  for key in ("ready", "controller_per_join", "cpu_per_node")}
        print(f"  {label} against {base} (medians): ready {ratios['ready']:.2f}x, controller "
              f"CPU-s per join {ratios['controller_per_join']:.2f}x, CPU-s per node "
              f"{ratios['cpu_per_node']:.2f}x")
    print(f"targets on the medians of {runs} rounds:")
    return finish("scaleout", [
        Target(f"{last} controller CPU-s per join / {base}'s",
               median(last, "controller_per_join") / median(base, "controller_per_join"),
               TARGET_RATIO)])


if __name__ == "__main__":
    sys.exit(main())
