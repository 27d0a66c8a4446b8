"""bench/scale: a controller plus N fake compute nodes (LxcEngine), for N in SIZES.

For each N, one MultihostEngine deployment from scratch: the controller (Keystone, Glance,
Placement, Neutron, Nova) in one LXC container, the nodes as clones of one prepared
container. Printed per N: seconds from `deployment create` to a passing `deployment check`,
the controller's own deploy, the nodes' part (their LxcEngine's deploy, whose template
install runs alongside the controller's) and the seconds after the controller was ready
("after"); host memory used (MemAvailable before create minus after); resident memory per
compute node (its nova-compute processes); seconds for a Rally
NovaServers.boot_and_delete_server task of ITERATIONS iterations at concurrency 5, and its
failures; seconds to destroy; then the nodes' part against the 1-node run's (the baseline,
measured in the same run) and where the nodes' time went (the timeline). Targets (issue 13):
N=50 ready within 15 minutes, the nodes' part at most 3x N=1's, at most 150 MB resident per
node, each on the medians of ROUNDS rounds (default 3, at least 3; a round runs every size),
the exit code 1 if one is missed. SIZES (default "1 10 50") and ITERATIONS (default 50) from
the environment. Networks
10.254.204.0/24-10.254.206.0/24 (each N its own /24 in turn; NETWORKS overrides them). Host
memory is given twice: MemAvailable before minus after (moved by any other work), and what
the run's containers' cgroups are charged (processes and page cache). Each deployment is
destroyed whatever happens (a failed step, Ctrl-C); a destroy that fails or leaves a
container stops the run. Load averages before and after each N are printed: the machine may
be shared.
"""

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import (
    Target,
    Timings,
    bench_home,
    destroy,
    fail,
    finish,
    lxc_containers,
    rally_workloads,
    rounds,
    run,
)

ROOT = Path(__file__).resolve().parents[2]
BENCHBED = str(ROOT / ".venv" / "bin" / "benchbed")
CLIENTS = ROOT / ".venv-clients" / "bin"
SIZES = [int(n) for n in os.environ.get("SIZES", "1 10 50").split()]
ITERATIONS = int(os.environ.get("ITERATIONS", "50"))
# two runs at once (other SIZES) need other networks: NETWORKS="10.254.206.0/24"
NETWORKS = os.environ.get("NETWORKS", "10.254.204.0/24 10.254.205.0/24 10.254.206.0/24").split()
LOCALHOST = {"type": "ExistingServers", "credentials": [{"host": "localhost", "user": "root"}]}
TARGET_SECONDS, TARGET_RATIO, TARGET_MB = 15 * 60, 3.0, 150


def config(nodes: int, network: str) -> dict[str, Any]:
    return {"type": "MultihostEngine",
            "controller": {"type": "DebianEngine",
                           "services": ["keystone", "glance", "placement", "neutron", "nova"],
                           "provider": {"type": "LxcProvider", "start_lxc_network": network,
                                        "container_name_prefix": f"bbscc{nodes}",
                                        "host_provider": LOCALHOST}},
            "nodes": [{"type": "LxcEngine", "container_name": f"bbscn{nodes}",
                       "nodes_per_server": nodes, "start_lxc_network": network,
                       "provider": LOCALHOST,
                       "engine": {"type": "DebianEngine", "services": ["nova-compute"]}}]}


def available_mb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no MemAvailable in /proc/meminfo")


def rally(work: Path, spec: Path, clouds: Path) -> tuple[float, int, int]:
    """Seconds, iterations and failures of boot_and_delete_server at concurrency 5."""
    seconds, [workload] = rally_workloads(CLIENTS, work, "scale", clouds, spec, {
        "NovaServers.boot_and_delete_server": [{
            "args": {"flavor": {"name": "bb.tiny"}, "image": {"name": "bb-tiny"}},
            "runner": {"type": "constant", "times": ITERATIONS, "concurrency": 5},
            "context": {"users": {"tenants": 2, "users_per_tenant": 1},
                        "flavors": [{"name": "bb.tiny", "ram": 64, "vcpus": 1,
                                     "disk": 1}]}}]})
    return seconds, workload["total_iteration_count"], workload["failed_iteration_count"]


def measure(nodes: int, network: str) -> dict[str, Any]:
    work, env, config_file = bench_home("bench-scale-", config(nodes, network))
    before = available_mb()
    load_before = os.getloadavg()
    start = time.monotonic()
    try:
        run([BENCHBED, "deployment", "create", "--file", str(config_file),
             "--name", "scale"], env)
        checked = json.loads(run([BENCHBED, "deployment", "check", "scale", "--json"], env))
        ready = time.monotonic() - start
        failed = [r for r in checked if not r["ok"]]
        if failed:
            fail(f"check failed at N={nodes}: {failed}")
        used = before - available_mb()
        charged = containers_mb(nodes)
        cpu = containers_cpu(nodes)
        shown = json.loads(run([BENCHBED, "deployment", "show", "scale", "--json"], env))
        timeline = shown["timeline"]
        controller = next(t["seconds"] for t in timeline if t["step"] == "deploy controller")
        # the nodes' own deploy: the template's install runs alongside the controller's
        node_part = next(t["seconds"] for t in timeline if t["step"] == "deploy node")
        resident = [s["resident_mb"] for s in shown["endpoints"]["nodes"][0]["servers"]]
        clones = [s["name"] for s in shown["endpoints"]["nodes"][0]["servers"]]
        compute_cpu = [nova_compute_cpu(name) for name in clones]
        for fmt, name in (("clouds.yaml", "clouds.yaml"), ("rally-spec", "spec.json")):
            run([BENCHBED, "deployment", "export", "scale", "--format", fmt,
                 "--output", str(work / name)], env)
        rally_seconds, iterations, failures = rally(work, work / "spec.json",
                                                    work / "clouds.yaml")
    finally:
        destroy_seconds = destroy(BENCHBED, "scale", env, _prefixes(nodes), work)
    node_steps = [t for t in timeline if t["seconds"] is not None and t["step"] in (
        "deploy template", "stop template", "create container", "wait for SSH",
        "check identities", "start nova-compute", "join compute nodes", "measure memory",
        "map compute nodes")]
    return {"nodes": nodes, "ready": ready, "controller": controller,
            "node_part": node_part, "after_controller": ready - controller,
            "used_mb": used, "containers_mb": charged,
            "resident_median": statistics.median(resident), "resident_max": max(resident),
            "cpu_controller": sum(v for k, v in cpu.items() if k.startswith("bbscc")),
            "cpu_clone_median": statistics.median(cpu.get(name, 0.0) for name in clones),
            "cpu_compute_median": statistics.median(compute_cpu),
            "rally": rally_seconds, "iterations": iterations, "failures": failures,
            "destroy": destroy_seconds,
            "steps": _sum_steps(node_steps), "spans": _spans(timeline),
            "load": (load_before, os.getloadavg())}



def _prefixes(nodes: int) -> list[str]:
    """This run's container names for N nodes: the controller, the template and the clones."""
    return [f"bbscc{nodes}", f"bbscn{nodes}"]


def containers_mb(nodes: int) -> float:
    """Memory charged to this run's containers (their cgroups: processes and page cache),
    in MiB: unlike MemAvailable, not moved by other work on the machine."""
    total = 0
    for name in lxc_containers(_prefixes(nodes)):
        for key in ("memory.usage_in_bytes", "memory.current"):
            found = subprocess.run(["lxc-cgroup", "-n", name, key], capture_output=True,
                                   text=True)
            if found.returncode == 0 and found.stdout.strip().isdigit():
                total += int(found.stdout)
                break
    return total / 2**20


def containers_cpu(nodes: int) -> dict[str, float]:
    """CPU-seconds each running container of this run has used since it started (its
    cgroup's cpuacct.usage, or cpu.stat's usage_usec on cgroup v2)."""
    used = {}
    for name in lxc_containers(_prefixes(nodes)):
        for key, scale in (("cpuacct.usage", 1e-9), ("cpu.stat", 1e-6)):
            found = subprocess.run(["lxc-cgroup", "-n", name, key], capture_output=True,
                                   text=True)
            words = found.stdout.split()
            if found.returncode == 0 and words:
                value = words[words.index("usage_usec") + 1] if "usage_usec" in words \
                    else words[0]
                used[name] = int(value) * scale
                break
    return used


def nova_compute_cpu(name: str) -> float:
    """CPU-seconds a clone's nova-compute has used (its start-up, then idle reporting)."""
    found = subprocess.run(["lxc-attach", "-n", name, "--", "ps", "-o", "times=", "-C",
                            "nova-compute"], capture_output=True, text=True)
    return float(sum(int(word) for word in found.stdout.split()))


def _spans(timeline: list[dict[str, Any]]) -> dict[str, tuple[float, float, int]]:
    """Per step name: first start, last end (seconds from create's first step), count."""
    spans: dict[str, tuple[float, float, int]] = {}
    for step in timeline:
        first, last, count = spans.get(step["step"], (step["start"], step["end"], 0))
        spans[step["step"]] = (min(first, step["start"]), max(last, step["end"]), count + 1)
    return spans


def _sum_steps(steps: list[dict[str, Any]]) -> dict[str, float]:
    sums: dict[str, float] = {}
    for step in steps:
        sums[step["step"]] = sums.get(step["step"], 0.0) + step["seconds"]
    return sums


def main() -> int:
    runs = rounds()
    results = []
    for _ in range(runs):
        for index, nodes in enumerate(SIZES):
            results.append(measure(nodes, NETWORKS[index % len(NETWORKS)]))
            print(f"bench/scale: N={nodes}: {json.dumps(results[-1])}", file=sys.stderr,
                  flush=True)

    def median(nodes: int, key: str) -> float:
        return statistics.median(r[key] for r in results if r["nodes"] == nodes)

    smallest, largest = SIZES[0], SIZES[-1]
    baseline = {"nodes": smallest, "node_part": median(smallest, "node_part")}
    ratio = f"x N={baseline['nodes']}"
    print(f"{'N':>3} {'ready s':>8} {'ctrl s':>7} {'nodes s':>8} {ratio:>6} {'after':>6}"
          f" {'host MB':>8}"
          f" {'ctr MB':>7}"
          f" {'RSS/node MB':>12} {'rally s':>8} {'fail':>5} {'destroy s':>9}")
    for r in results:
        print(f"{r['nodes']:>3} {r['ready']:>8.0f} {r['controller']:>7.0f} {r['node_part']:>8.0f}"
              f" {r['node_part'] / baseline['node_part']:>6.2f} {r['after_controller']:>6.0f}"
              f" {r['used_mb']:>8.0f}"
              f" {r['containers_mb']:>7.0f}"
              f" {r['resident_median']:>6.0f} (max {r['resident_max']:.0f})"
              f" {r['rally']:>7.0f} {r['failures']:>3}/{r['iterations']} {r['destroy']:>9.0f}")
    for r in results:
        steps = ", ".join(f"{name} {seconds:.0f}s" for name, seconds in r["steps"].items())
        print(f"N={r['nodes']} nodes' timeline (summed over parallel steps): {steps}")
        print(f"N={r['nodes']} CPU-s: controller container {r['cpu_controller']:.0f} (its "
              f"install and services until check), per clone {r['cpu_clone_median']:.1f} "
              f"(median: boot, nova-compute start, idle), of which nova-compute "
              f"{r['cpu_compute_median']:.1f}")
        before, after = r["load"]
        print(f"N={r['nodes']} load average (1, 5, 15 min) before "
              f"{' '.join(f'{x:.2f}' for x in before)}, after "
              f"{' '.join(f'{x:.2f}' for x in after)}")
    print(f"N={results[-1]['nodes']} timeline, wall clock per step (from .. to s, count):")
    for name, (first, last, count) in sorted(results[-1]["spans"].items(),
                                             key=lambda item: item[1][0]):
        print(f"  {first:7.1f} .. {last:7.1f}  x{count:<3} {name}")
    summary = Timings()
    for r in results:
        summary.add(f"N={r['nodes']} create to passing check", r["ready"])
        summary.add(f"N={r['nodes']} nodes' part", r["node_part"])
    summary.show()
    print(f"targets on the medians of {runs} rounds:")
    return finish("scale", [
        Target(f"N={largest} create to passing check", median(largest, "ready"),
               TARGET_SECONDS, "s"),
        Target(f"N={largest} nodes' part / N={smallest}'s",
               median(largest, "node_part") / baseline["node_part"], TARGET_RATIO),
        Target(f"N={largest} resident memory per node", median(largest, "resident_median"),
               TARGET_MB, " MB")])

if __name__ == "__main__":
    sys.exit(main())
