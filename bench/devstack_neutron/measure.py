"""bench/devstack_neutron: which Neutron backend DevstackEngine's whole cloud runs by default,
decided by measurement: OVN (DevStack's default, benchbed's) against ML2/OVS, the same
single-node cloud otherwise, measured in the same run.

Each round stacks both from scratch in one LXC container each (the order alternating per
round): the CI cloud (Keystone, Glance, Placement, Nova with the fake driver, Neutron), once
with DevStack's OVN services and once with ML2/OVS's (q-agt, q-dhcp, q-l3, q-meta; VXLAN
tenant networks, OVS on its userspace datapath as for OVN). Printed per backend: seconds
from `create` to a passing `check`, the container's CPU-seconds for it, the resident memory
of every process in the container once it is ready, and Rally's load duration of
`NovaServers.boot_and_delete_server` and `NeutronNetworks.create_and_list_networks` (10
iterations each, concurrency 2; a failed iteration stops the run). Targets (issue 21): the
default (OVN) at most 1.0x ML2/OVS in ready time and in memory, on the medians of ROUNDS
rounds (default 3, at least 3); exit code 1 if either is missed. Network 10.254.209.0/24;
each deployment is destroyed whatever happens, and a destroy that fails or leaves a
container stops the run.
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
    container_cpu,
    container_rss_by_command,
    container_rss_mb,
    create_and_check,
    destroy,
    fail,
    finish,
    rally_workloads,
    rounds,
    run,
)
from benchbed.engines.devstack import DEFAULT_DISABLED
from tests.integration.devstack_lab import RALLY_TASK, WHOLE_CLOUD

ROOT = Path(__file__).resolve().parents[2]
BENCHBED = str(ROOT / ".venv" / "bin" / "benchbed")
CLIENTS = ROOT / ".venv-clients" / "bin"
GIT_MIRROR = os.environ.get("GIT_MIRROR", "/var/cache/benchbed-upstream/openstack-2025.1")
LOCALHOST = {"type": "ExistingServers", "credentials": [{"host": "localhost", "user": "root"}]}
NETWORK = "10.254.209.0/24"
PREFIXES = {"ovn": "bbbnn", "ovs": "bbbnv"}
DEFAULT = "ovn"
TARGET = 1.0
# ML2/OVS as Neutron's DevStack guide sets it up: the OVS agent with DHCP, L3 and metadata
# agents instead of OVN's services
ML2_OVS = {"Q_AGENT": "openvswitch", "Q_ML2_PLUGIN_MECHANISM_DRIVERS": "openvswitch",
           "Q_ML2_TENANT_NETWORK_TYPE": "vxlan", "ENABLED_SERVICES+": ",q-agt,q-dhcp,q-l3,q-meta"}
OVN_SERVICES = ["ovn-controller", "ovn-northd", "ovs-vswitchd", "ovsdb-server",
                "q-ovn-metadata-agent"]
WORKLOADS = ("NovaServers.boot_and_delete_server", "NeutronNetworks.create_and_list_networks")


def config(backend: str) -> dict[str, Any]:
    ml2_ovs = backend == "ovs"
    return {"type": "DevstackEngine", "git_mirror": GIT_MIRROR,
            "local_conf": {**WHOLE_CLOUD, **(ML2_OVS if ml2_ovs else {})},
            "disable_service": [*DEFAULT_DISABLED, *(OVN_SERVICES if ml2_ovs else [])],
            "provider": {"type": "LxcProvider", "start_lxc_network": NETWORK,
                         "container_name_prefix": PREFIXES[backend],
                         "host_provider": LOCALHOST}}


def rally(work: Path, backend: str) -> dict[str, float]:
    """Rally's load duration of each workload of RALLY_TASK, in seconds."""
    _, workloads = rally_workloads(CLIENTS, work, backend, work / "clouds.yaml",
                                   work / "spec.json",
                                   {name: RALLY_TASK[name] for name in WORKLOADS})
    durations = {}
    for workload in workloads:
        [name] = workload["scenario"]
        done = (workload["total_iteration_count"], workload["failed_iteration_count"])
        if done != (10, 0):
            fail(f"{backend}: {name}: {done[1]} of {done[0]} iterations failed")
        durations[name] = workload["load_duration"]
    return durations


def measure(backend: str) -> dict[str, Any]:
    work, env, config_file = bench_home(f"bench-devstack-neutron-{backend}-", config(backend))
    load_before = os.getloadavg()
    try:
        ready, shown = create_and_check(BENCHBED, backend, config_file, env)
        container = shown["endpoints"]["servers"][0]["name"]
        cpu, memory = container_cpu(container), container_rss_mb(container)
        by_process = container_rss_by_command(container, top=15)
        for fmt, name in (("clouds.yaml", "clouds.yaml"), ("rally-spec", "spec.json")):
            run([BENCHBED, "deployment", "export", backend, "--format", fmt,
                 "--output", str(work / name)], env)
        durations = rally(work, backend)
    finally:
        destroy(BENCHBED, backend, env, [PREFIXES[backend]], work)
    return {"backend": backend, "ready": ready, "cpu": cpu, "memory": memory,
            **durations, "load": (load_before, os.getloadavg()), "processes_mb": by_process}


def main() -> int:
    results: dict[str, list[dict[str, Any]]] = {"ovn": [], "ovs": []}
    for round_number in range(rounds()):
        order = list(results) if round_number % 2 == 0 else list(reversed(results))
        for backend in order:
            results[backend].append(measure(backend))
            print(f"bench/devstack_neutron: {json.dumps(results[backend][-1])}",
                  file=sys.stderr, flush=True)
    keys = ("ready", "cpu", "memory", *WORKLOADS)
    medians = {backend: {key: statistics.median(r[key] for r in runs) for key in keys}
               for backend, runs in results.items()}
    print(f"bench/devstack_neutron: a whole single-node DevStack cloud, "
          f"{len(results['ovn'])} rounds (medians; min in brackets)")
    for backend, runs in results.items():
        figures = medians[backend]
        print(f"  {backend:<4} ready {figures['ready']:6.1f}s "
              f"[{min(r['ready'] for r in runs):.1f}] ({figures['cpu']:.0f} CPU-s)  "
              f"memory {figures['memory']:6.1f} MB  "
              f"boot_and_delete {figures[WORKLOADS[0]]:5.1f}s "
              f"[{min(r[WORKLOADS[0]] for r in runs):.1f}]  "
              f"create_and_list_networks {figures[WORKLOADS[1]]:5.1f}s "
              f"[{min(r[WORKLOADS[1]] for r in runs):.1f}]", flush=True)
    default, other = medians[DEFAULT], medians["ovs"]
    print(f"  OVN / ML2-OVS: CPU-s {default['cpu'] / other['cpu']:.2f}x; boot_and_delete "
          f"{default[WORKLOADS[0]] / other[WORKLOADS[0]]:.2f}x; create_and_list_networks "
          f"{default[WORKLOADS[1]] / other[WORKLOADS[1]]:.2f}x", flush=True)
    return finish("devstack_neutron", [
        Target("ready time, OVN / ML2-OVS", default["ready"] / other["ready"], TARGET),
        Target("memory, OVN / ML2-OVS", default["memory"] / other["memory"], TARGET)])


if __name__ == "__main__":
    sys.exit(main())
