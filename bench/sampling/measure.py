"""bench/sampling: what sampling costs, in CPU, while a benchmark runs.

A real LXC container (LxcProvider through `benchbed deployment create`) runs systemd with
UNITS extra transient units (default 16: about what one server of a cloud runs, so the files
read per sample are as many). Each round measures this process's CPU time (every thread) over
WINDOW seconds (default 20) of sampling the container at the default 1 s interval from the host's
cgroup files, and over the same WINDOW seconds idle; the cost is the difference, as a share of one
core. Rounds alternate (ROUNDS, default 3, at least 3) so that machine drift hits both.

Target (issue 22): the local path costs at most 2 % of one core (median). The SSH path (the
same container read over SSH, as a remote server or VM is) is measured the same way and
stated, both on this side (paramiko, the parse) and in the container (sshd, sh, grep: the
container's own cgroup, against idle), without a target: its cost falls mostly on the server.
NETWORK (default 10.254.242.128/25) is the container's network.
"""

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.common import Target, finish, rounds
from benchbed.server import Server
from benchbed.tasks.sampler import Sampler

ROOT = Path(__file__).resolve().parents[2]
BENCHBED = str(ROOT / ".venv" / "bin" / "benchbed")
NETWORK = os.environ.get("NETWORK", "10.254.242.128/25")
LIMIT = 2.0  # % of one core


def whole_number(name: str, default: int, least: int) -> int:
    text = os.environ.get(name, str(default))
    if not text.isdigit() or int(text) < least:
        print(f"{name}={text!r}: must be a whole number of at least {least}", file=sys.stderr)
        raise SystemExit(2)
    return int(text)


def container_cpu(name: str) -> float:
    """CPU-seconds of the whole container (its cgroup v2 cpu.stat on this machine)."""
    for line in Path(f"/sys/fs/cgroup/unified/lxc.payload.{name}/cpu.stat").read_text() \
            .splitlines():
        if line.startswith("usage_usec "):
            return int(line.split()[1]) / 1e6
    raise SystemExit(f"bench/sampling: no CPU figure for container {name}")


def window(seconds: float, name: str, work: Callable[[], Callable[[], int]] | None
           ) -> tuple[float, float, int]:
    """CPU % of one core of this process and of the container over `seconds`, with `work`
    (which starts something and returns how to stop it, giving the number of samples) or
    idle."""
    cpu, inside, began = time.process_time(), container_cpu(name), time.monotonic()
    stop = work() if work else None
    time.sleep(seconds)
    taken = stop() if stop else 0
    elapsed = time.monotonic() - began
    return (100 * (time.process_time() - cpu) / elapsed,
            100 * (container_cpu(name) - inside) / elapsed, taken)


def sampling(server: Server, prefer_local: bool) -> Callable[[], Callable[[], int]]:
    def start() -> Callable[[], int]:
        sampler = Sampler([server], 1.0, prefer_local=prefer_local)
        sampler.start()
        return lambda: len(sampler.stop())
    return start


def main() -> int:
    runs = rounds(3)
    seconds = whole_number("WINDOW", 20, 5)
    units = whole_number("UNITS", 16, 0)
    work = Path(tempfile.mkdtemp(prefix="bbtsb-"))
    env = {**os.environ, "BENCHBED_HOME": str(work / "home")}
    config = work / "config.json"
    config.write_text(json.dumps({
        "type": "ServersEngine", "provider": {
            "type": "LxcProvider", "start_lxc_network": NETWORK,
            "container_name_prefix": "bbtsb", "host_provider": {
                "type": "ExistingServers",
                "credentials": [{"user": "root", "host": "localhost"}]}}}))
    created = False
    try:
        subprocess.run([BENCHBED, "deployment", "create", "--file", str(config), "--name",
                        "sampled"], env=env, check=True, capture_output=True)
        created = True
        shown = json.loads(subprocess.run([BENCHBED, "deployment", "show", "sampled",
                                           "--json"], env=env, check=True,
                                          capture_output=True, text=True).stdout)
        server = Server.from_dict(shown["endpoints"]["servers"][0])
        name = str(server.name)
        for index in range(units):
            subprocess.run(["lxc-attach", "-n", name, "--", "systemd-run",
                            f"--unit=bbtsb-{index}", "sleep", "infinity"], check=True,
                           capture_output=True)
        services = len({sample.service for sample in _once(server)})
        print(f"bench/sampling: container {name} with {services} services, {seconds}s "
              f"windows, {runs} rounds, load {os.getloadavg()[0]:.1f} on "
              f"{os.cpu_count()} cores", flush=True)
        figures: dict[str, list[float]] = {"idle": [], "local": [], "ssh": [],
                                           "ssh, in the container": []}
        window(2, name, sampling(server, False))  # the SSH session is up before it counts
        for _ in range(runs):
            idle, idle_inside, _ = window(seconds, name, None)
            local, _, taken = window(seconds, name, sampling(server, True))
            ssh, ssh_inside, _ = window(seconds, name, sampling(server, False))
            figures["idle"].append(idle)
            figures["local"].append(local - idle)
            figures["ssh"].append(ssh - idle)
            figures["ssh, in the container"].append(ssh_inside - idle_inside)
            assert taken >= services * (seconds - 1), f"only {taken} samples"
        server.close()
        for label, values in figures.items():
            print(f"  {label:<24} min {min(values):6.3f}%  median "
                  f"{statistics.median(values):6.3f}%  max {max(values):6.3f}% of one core"
                  f"  ({len(values)} rounds)", flush=True)
        return finish("sampling", [Target("local sampling, 1 s interval, CPU share of one "
                                          "core", statistics.median(figures["local"]), LIMIT,
                                          "%")])
    finally:
        if created:
            subprocess.run([BENCHBED, "deployment", "destroy", "sampled"], env=env,
                           capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


def _once(server: Server) -> list:
    sampler = Sampler([server], 1.0)
    sampler.start()
    time.sleep(0.5)
    return sampler.stop()


if __name__ == "__main__":
    sys.exit(main())
