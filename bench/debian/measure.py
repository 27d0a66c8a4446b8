"""bench/debian: Keystone + Glance to a passing check, benchbed against a plain script.

Both install on fresh overlay clones of one Debian 12 container made with raw LXC
commands (tests/integration/debian_lab.py), reaching the mirror only through an
apt-cacher-ng on the bridge address. benchbed is timed from `deployment create` (CLI
start-up, database, ledger and SSH included) to the end of a passing `deployment
check`; the script (script.sh) runs the same steps over plain `ssh` and ends with the
same proof through curl. Cold runs start from an emptied apt cache; warm runs reuse it.
Wall time on this shared 2-core machine is noisy, so each run also prints the CPU
seconds spent inside the container (its cgroup) and by the local processes (the CLI or
ssh/curl): equal server CPU with unequal wall time means contention, not overhead.
The order is script, benchbed, benchbed, script, so that drift hits both alike; ROUNDS
(default 3, at least 3) repeats that and the medians are compared. Target (issue 4): benchbed
at most 1.15x the script. The script installs through benchbed's own apt.sh: the same apt and
dpkg options on both sides.

The third column (issue 14) is benchbed from a snapshot: one deployment through LxcProvider,
`image save`, destroyed; then ROUNDS deployments whose `image` is that snapshot, each timed
from `deployment create` to a passing `deployment check`. Target: at most 10 s and at most
0.15x benchbed's warm install.
LAB_SUBNET (default 10.77.7), LAB_PREFIX (bbdebb), SNAPSHOT_NETWORK (10.254.202.0/24) and
SNAPSHOT_PREFIX (bbsnapb) move the run off the networks and names that others use.
"""

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from bench.common import Target, Timings, container_cpu, finish, rounds
from tests.integration.debian_lab import Lab

ROOT = Path(__file__).resolve().parents[2]
BENCHBED = str(ROOT / ".venv" / "bin" / "benchbed")
SCRIPT = str(Path(__file__).resolve().parent / "script.sh")
TARGET = 1.15
SNAPSHOT_TARGET_SECONDS = 10.0
SNAPSHOT_TARGET_RATIO = 0.15
# the raw lab's /24 (its first three octets) and name prefix, and the snapshot column's
# network and container prefix: overridable, so that runs beside other work use their own
LAB_SUBNET = os.environ.get("LAB_SUBNET", "10.77.7")
LAB_PREFIX = os.environ.get("LAB_PREFIX", "bbdebb")
SNAPSHOT_NETWORK = os.environ.get("SNAPSHOT_NETWORK", "10.254.202.0/24")
SNAPSHOT_PREFIX = os.environ.get("SNAPSHOT_PREFIX", "bbsnapb")
SNAPSHOT_IMAGE = f"{SNAPSHOT_PREFIX}-keystone-glance"


Run = tuple[float, float, float, str]  # wall, server CPU, local CPU seconds; detail


def timed(name: str, argvs: list[list[str]], env: dict[str, str] | None = None
          ) -> tuple[float, float, float]:
    """Wall time of the commands, with the CPU they cost in the container and locally."""
    local = _children_cpu()
    start = time.monotonic()
    for argv in argvs:
        result = subprocess.run(argv, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            sys.exit(f"bench/debian: {' '.join(argv)} failed: "
                     f"{(result.stderr or result.stdout).strip()[-2000:]}")
    return time.monotonic() - start, container_cpu(name), _children_cpu() - local


def run_script(lab: Lab, name: str, address: str) -> Run:
    return (*timed(name, [[SCRIPT, address, str(lab.key)]]), "")


def run_benchbed(lab: Lab, name: str, address: str) -> Run:
    with tempfile.TemporaryDirectory(prefix="bench-debian-") as home:
        env = {**os.environ, "BENCHBED_HOME": home}
        env.pop("BENCHBED_DATABASE_URL", None)
        config = Path(home) / "debian.yaml"
        config.write_text(yaml.safe_dump({
            "type": "DebianEngine", "services": ["keystone", "glance"],
            "provider": {"type": "ExistingServers",
                         "credentials": [lab.credentials(address)]}}))
        measured = timed(name, [[BENCHBED, "deployment", "create", "--file", str(config),
                                 "--name", "bench", "--no-use"],
                                [BENCHBED, "deployment", "check", "bench"]], env)
        shown = json.loads(subprocess.run([BENCHBED, "deployment", "show", "bench", "--json"],
                                          env=env, capture_output=True, text=True,
                                          check=True).stdout)
        seconds: dict[str, float] = {}
        for row in shown["timeline"]:
            seconds[row["step"]] = seconds.get(row["step"], 0.0) + (row["seconds"] or 0.0)
        detail = ", ".join(f"{step} {seconds[step]:.0f}s"
                           for step in ("download packages", "install packages")
                           if step in seconds)
        subprocess.run([BENCHBED, "deployment", "destroy", "bench"], env=env, check=True,
                       capture_output=True)
    return (*measured, detail)


def run_snapshots(rounds: int) -> list[float]:
    """Install once through LxcProvider and save it; time `rounds` deployments from it."""
    with tempfile.TemporaryDirectory(prefix="bench-debian-snapshot-") as home:
        env = {**os.environ, "BENCHBED_HOME": home}
        env.pop("BENCHBED_DATABASE_URL", None)

        def benchbed(*args: str) -> None:
            timed("", [[BENCHBED, *args]], env)

        def config(image: str | None) -> str:
            path = Path(home) / f"{image or 'origin'}.yaml"
            path.write_text(yaml.safe_dump({
                "type": "DebianEngine", "services": ["keystone", "glance"],
                **({"image": image} if image else {}),
                "provider": {"type": "LxcProvider", "start_lxc_network": SNAPSHOT_NETWORK,
                             "container_name_prefix": SNAPSHOT_PREFIX,
                             "host_provider": {"type": "ExistingServers", "credentials": [
                                 {"host": "localhost", "user": "root"}]}}}))
            return str(path)

        seconds = []
        try:
            benchbed("deployment", "create", "--file", config(None), "--name", "origin",
                     "--no-use")
            benchbed("image", "save", "origin", "--name", SNAPSHOT_IMAGE)
            benchbed("deployment", "destroy", "origin")
            for round_number in range(rounds):
                name = f"snap{round_number}"
                elapsed, _, local_cpu = timed("", [
                    [BENCHBED, "deployment", "create", "--file", config(SNAPSHOT_IMAGE),
                     "--name", name, "--no-use"],
                    [BENCHBED, "deployment", "check", name]], env)
                seconds.append(elapsed)
                shown = json.loads(subprocess.run(
                    [BENCHBED, "deployment", "show", name, "--json"], env=env,
                    capture_output=True, text=True, check=True).stdout)
                container = next(r["name"] for r in shown["resources"]
                                 if r["kind"] == "container")
                # the container booted for this deployment: all it used is this run's
                print(f"snap  benchbed  {elapsed:7.1f}s  server CPU "
                      f"{container_cpu(container):5.1f}s  local CPU {local_cpu:4.1f}s",
                      flush=True)
                for row in sorted(shown["timeline"], key=lambda r: -(r["seconds"] or 0))[1:7]:
                    print(f"        {row['seconds'] or 0:6.2f}s at {row['start']:6.2f}s  "
                          f"{row['step']}", flush=True)
                benchbed("deployment", "destroy", name)
        finally:
            for name in ("origin", *(f"snap{n}" for n in range(rounds))):
                subprocess.run([BENCHBED, "deployment", "destroy", "--force", name], env=env,
                               capture_output=True)
            subprocess.run([BENCHBED, "image", "delete", "--provider", "lxc", SNAPSHOT_IMAGE],
                           env=env, capture_output=True)
    return seconds


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    runs = rounds()
    lab = Lab(LAB_PREFIX, LAB_SUBNET, "/var/cache/benchbed-bench/apt-cacher-ng")
    runners = {"script": run_script, "benchbed": run_benchbed}
    results, server = Timings(), Timings()  # wall and container CPU, by "cache who"
    try:
        lab.start()
        plan = [("cold", "script"), ("cold", "benchbed"), ("warm", "benchbed"),
                ("warm", "script")]
        for cache, who in plan * runs:
            if cache == "cold":
                lab.clear_cache()
            name = f"{LAB_PREFIX}-{who}-{cache}"
            address = lab.clone(name)
            elapsed, server_cpu, local_cpu, detail = runners[who](lab, name, address)
            lab.destroy(name)
            results.add(f"{cache} {who}", elapsed)
            server.add(f"{cache} {who}", server_cpu)
            print(f"{cache:<5} {who:<9} {elapsed:7.1f}s  server CPU {server_cpu:5.1f}s  "
                  f"local CPU {local_cpu:4.1f}s  {detail}", flush=True)
    finally:
        lab.stop()
    print(f"bench/debian: {runs} rounds, wall seconds:")
    results.show()
    targets = []
    for cache in ("cold", "warm"):
        targets.append(Target(f"{cache} cache: benchbed / script",
                              results.ratio(f"{cache} benchbed", f"{cache} script"), TARGET))
        print(f"  {cache} cache server CPU (medians): benchbed "
              f"{server.median(f'{cache} benchbed'):.1f}s against script "
              f"{server.median(f'{cache} script'):.1f}s")
    snapshots = Timings()
    for seconds in run_snapshots(runs):
        snapshots.add("snapshot benchbed", seconds)
    snapshots.show()
    snapshot = snapshots.median("snapshot benchbed")
    targets += [Target("snapshot: create + check", snapshot, SNAPSHOT_TARGET_SECONDS, "s"),
                Target("snapshot / warm install", snapshot / results.median("warm benchbed"),
                       SNAPSHOT_TARGET_RATIO)]
    return finish("debian", targets)

if __name__ == "__main__":
    sys.exit(main())
