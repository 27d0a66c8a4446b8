"""bench/devstack_nodes: N compute nodes as LXC clones of a DevStack compute template, against
N clones of a DebianEngine nova-compute (the baseline), measured in the same run.

Each round deploys both from scratch, one after the other, each a MultihostEngine: a
controller in one LXC container (a whole DevStack cloud without a compute of its own; the
DebianEngine controller of bench/scale) and an LxcEngine of NODES clones (default 10) of one
prepared container (DevStack's multinode guide's compute without OVN's metadata agent, which
a fake compute never needs: nova-compute with the fake driver and OVN's chassis;
DebianEngine's nova-compute with the fake driver).
Both log at Nova's default level (DevStack's ENABLE_DEBUG_LOG_LEVEL off, as DebianEngine's).
Printed per kind: seconds from `create` to a passing `check`; the clones' part (from the
stopped template to every compute up, in Placement and mapped into the cell); resident
memory per compute node at rest (no user's systemd manager left from benchbed's SSH),
twice: its nova-compute processes alone (what LxcEngine reports as `resident_mb`), and every
process of the clone (a DevStack compute also runs its OVN chassis); each round's line on
stderr names the first clone's largest commands. Target (issue 21): a DevStack compute node
at most 1.2x the memory of a DebianEngine one, all its processes counted, on the medians of
ROUNDS rounds (default 3, at least 3); exit code 1 if missed.
Networks 10.254.207.0/24 (DevStack) and 10.254.208.0/24 (Debian). Each deployment is
destroyed whatever happens; a destroy that fails or leaves a container stops the run.
"""

import json
import os
import statistics
import sys
from pathlib import Path
from typing import Any

from bench.common import (
    Target,
    bench_home,
    container_at_rest,
    container_rss_by_command,
    container_rss_mb,
    create_and_check,
    destroy,
    finish,
    rounds,
)
from tests.integration.devstack_lab import WHOLE_CLOUD
from tests.long.devstack_nodes import CONTROLLER_DISABLED, FAKE_NODE_CONF

ROOT = Path(__file__).resolve().parents[2]
BENCHBED = str(ROOT / ".venv" / "bin" / "benchbed")
NODES = int(os.environ.get("NODES", "10"))
LOCALHOST = {"type": "ExistingServers", "credentials": [{"host": "localhost", "user": "root"}]}
GIT_MIRROR = os.environ.get("GIT_MIRROR", "/var/cache/benchbed-upstream/openstack-2025.1")
TARGET_MEMORY = 1.2
DEVSTACK_NETWORK, DEBIAN_NETWORK = "10.254.207.0/24", "10.254.208.0/24"
PREFIXES = {"devstack": ("bbbdc", "bbbdn"), "debian": ("bbbec", "bbben")}
# DevStack logs at debug level by default (ENABLE_DEBUG_LOG_LEVEL); DebianEngine's
# nova-compute at Nova's own (INFO): the same options on both sides
NODE_CONF = {**FAKE_NODE_CONF, "ENABLE_DEBUG_LOG_LEVEL": False}


def config(kind: str) -> dict[str, Any]:
    controller_prefix, node_prefix = PREFIXES[kind]
    network = DEVSTACK_NETWORK if kind == "devstack" else DEBIAN_NETWORK
    provider = {"type": "LxcProvider", "start_lxc_network": network,
                "container_name_prefix": controller_prefix, "host_provider": LOCALHOST}
    if kind == "devstack":
        controller = {"type": "DevstackEngine", "git_mirror": GIT_MIRROR,
                      "local_conf": WHOLE_CLOUD,
                      "disable_service": CONTROLLER_DISABLED, "provider": provider}
        engine = {"type": "DevstackEngine", "git_mirror": GIT_MIRROR, "local_conf": NODE_CONF}
    else:
        controller = {"type": "DebianEngine", "provider": provider,
                      "services": ["keystone", "glance", "placement", "neutron", "nova"]}
        engine = {"type": "DebianEngine", "services": ["nova-compute"]}
    return {"type": "MultihostEngine", "controller": controller,
            "nodes": [{"type": "LxcEngine", "container_name": node_prefix,
                       "nodes_per_server": NODES, "start_lxc_network": network,
                       "provider": LOCALHOST, "engine": engine}]}


def measure(kind: str) -> dict[str, Any]:
    work, env, config_file = bench_home(f"bench-devstack-nodes-{kind}-", config(kind))
    load_before = os.getloadavg()
    try:
        ready, shown = create_and_check(BENCHBED, kind, config_file, env)
        servers = shown["endpoints"]["nodes"][0]["servers"]
        steps = {step["step"]: step for step in shown["timeline"]}
        clones_part = steps["map compute nodes"]["end"] - steps["stop template"]["end"]
        for server in servers:
            container_at_rest(server["name"])
        whole = [container_rss_mb(server["name"]) for server in servers]
        largest = container_rss_by_command(servers[0]["name"])
    finally:
        destroy(BENCHBED, kind, env, PREFIXES[kind], work)
    return {"kind": kind, "ready": ready, "clones": clones_part,
            "nova_compute_mb": statistics.median(s["resident_mb"] for s in servers),
            "node_mb": statistics.median(whole), "first_node_largest_mb": largest,
            "load": (load_before, os.getloadavg())}


def main() -> int:
    results: dict[str, list[dict[str, Any]]] = {"devstack": [], "debian": []}
    for _ in range(rounds()):
        for kind in results:
            results[kind].append(measure(kind))
            print(f"bench/devstack_nodes: {json.dumps(results[kind][-1])}", file=sys.stderr,
                  flush=True)
    medians = {kind: {key: statistics.median(r[key] for r in runs)
                      for key in ("ready", "clones", "nova_compute_mb", "node_mb")}
               for kind, runs in results.items()}
    print(f"bench/devstack_nodes: {NODES} compute nodes, {len(results['debian'])} rounds "
          f"(medians; min in brackets)")
    for kind, runs in results.items():
        figures = medians[kind]
        print(f"  {kind:<8} ready {figures['ready']:7.1f}s "
              f"[{min(r['ready'] for r in runs):.1f}]  clones' part "
              f"{figures['clones']:6.1f}s [{min(r['clones'] for r in runs):.1f}]  "
              f"nova-compute {figures['nova_compute_mb']:6.1f} MB  "
              f"whole node {figures['node_mb']:6.1f} MB", flush=True)
    devstack, debian = medians["devstack"], medians["debian"]
    print(f"  nova-compute alone: {devstack['nova_compute_mb'] / debian['nova_compute_mb']:.2f}x"
          f"; clones' part: {devstack['clones'] / debian['clones']:.2f}x; ready: "
          f"{devstack['ready'] / debian['ready']:.2f}x", flush=True)
    return finish("devstack_nodes", [
        Target("memory per compute node, every process, DevStack / Debian",
               devstack["node_mb"] / debian["node_mb"], TARGET_MEMORY)])


if __name__ == "__main__":
    sys.exit(main())
