"""bench/lxc: containers to SSH-ready through benchbed against raw LXC commands, in one run.

Rounds alternate raw 1, raw 8 (the raw script 8 times at once), benchbed 0 (ServersEngine on
ExistingServers: the CLI's fixed cost), benchbed 1 and benchbed 8, so machine drift hits them
alike; each is timed from outside as a whole process (CLI start-up and database included) and
torn down before the next. A holder deployment keeps the shared network up, as in steady use;
one cold run before it shows what starting bridge, dnsmasq and proxy adds. Raw containers
get their address from the bridge's dnsmasq, as LXC's own network does; raw-destroy.sh hands
the lease back (dhcp_release, from dnsmasq-utils), so any number of rounds fits the range.
Targets (issue 14, tightening issue 3's), medians of ROUNDS rounds (default 5, at least 3),
the exit code 1 if one is missed: benchbed 1 <= 1.1x raw 1, benchbed 8 <= 0.95x raw 8,
slowest benchbed 8 <= 1.5x its median (ROUNDS=20 for that one to mean much).
NETWORK (default 10.254.120.0/24) is the network the containers get; TIMELINES=FILE keeps
every round's times and the timeline of each benchbed 8 there as JSON.
"""

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import Target, finish, rounds, time_command, time_parallel

ROOT = Path(__file__).resolve().parents[2]
BENCHBED = str(ROOT / ".venv" / "bin" / "benchbed")
RAW = str(Path(__file__).resolve().parent / "raw.sh")
RAW_DESTROY = str(Path(__file__).resolve().parent / "raw-destroy.sh")
NETWORK = os.environ.get("NETWORK", "10.254.120.0/24")
IMAGE = "benchbed-base-bookworm"


def config(amount: int) -> dict:
    return {"type": "ServersEngine", "amount": amount,
            "provider": {"type": "LxcProvider", "containers_per_host": 8,
                         "start_lxc_network": NETWORK, "container_name_prefix": "bblxc-bench",
                         "host_provider": {"type": "ExistingServers", "credentials": [
                             {"user": "root", "host": "localhost"}]}}}


def main() -> int:
    runs = rounds(5)
    work = Path(tempfile.mkdtemp(prefix="bblxc-bench-"))
    env = {**os.environ, "BENCHBED_HOME": str(work / "home")}
    raw_names: list[str] = []
    try:
        subprocess.run([BENCHBED, "image", "build", "--provider", "lxc"], env=env, check=True,
                       capture_output=True)
        for amount in (1, 8):
            (work / f"{amount}.json").write_text(json.dumps(config(amount)))
        (work / "0.json").write_text(json.dumps({"type": "ServersEngine", "provider": {
            "type": "ExistingServers", "credentials": [{"user": "root", "host": "localhost"}]}}))
        key = work / "id"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)],
                       check=True)

        def benchbed(amount: int, name: str) -> float:
            return time_command([BENCHBED, "deployment", "create", "--file",
                          str(work / f"{amount}.json"), "--name", name], env)

        def destroy(name: str) -> float:
            return time_command([BENCHBED, "deployment", "destroy", name], env)

        def steps(name: str) -> list[dict]:
            return json.loads(subprocess.run(
                [BENCHBED, "deployment", "show", name, "--json"], env=env, check=True,
                capture_output=True, text=True).stdout)["timeline"]

        cold = benchbed(1, "cold")
        destroy("cold")
        benchbed(1, "holder")
        shown = json.loads(subprocess.run([BENCHBED, "deployment", "show", "holder", "--json"],
                                          env=env, check=True, capture_output=True,
                                          text=True).stdout)
        bridge = next(r["name"] for r in shown["resources"] if r["kind"] == "hostnet")
        bridge = bridge.split("@")[0]
        times: dict[str, list[float]] = {"raw 1": [], "raw 8": [], "benchbed 0": [],
                                         "benchbed 1": [], "benchbed 8": []}
        timelines: list[list[dict]] = []
        destroys: dict[int, list[float]] = {0: [], 1: [], 8: []}
        loads: list[float] = []
        for round_ in range(runs):
            loads.append(os.getloadavg()[0])
            for amount in (1, 8):
                names = [f"bblxc-raw-{os.getpid()}-{round_}-{i}" for i in range(amount)]
                raw_names.extend(names)
                times[f"raw {amount}"].append(time_parallel(
                    [["sh", RAW, name, IMAGE, bridge, str(key)] for name in names], env))
                for name in names:
                    subprocess.run(["sh", RAW_DESTROY, name, bridge], check=True,
                                   capture_output=True)
            for amount in (0, 1, 8):
                times[f"benchbed {amount}"].append(benchbed(amount, f"b{amount}-{round_}"))
                if amount == 8:
                    timelines.append(steps(f"b{amount}-{round_}"))
                destroys[amount].append(destroy(f"b{amount}-{round_}"))
        medians = {label: statistics.median(values) for label, values in times.items()}
        print(f"bench/lxc: {runs} rounds, {os.cpu_count()} cores, "
              f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
        for label, values in times.items():
            print(f"  {label:<11} median {medians[label]:6.2f}s  "
                  f"(min {min(values):.2f}s, max {max(values):.2f}s)")
        print(f"  benchbed 1, cold network (bridge + dnsmasq + proxy started): {cold:.2f}s")
        eights = times["benchbed 8"]
        slowest = max(range(runs), key=eights.__getitem__)
        print(f"  benchbed 8's slowest round {slowest}, its longest steps:")
        for step in sorted(timelines[slowest], key=lambda s: -s["seconds"])[:8]:
            print(f"    {step['seconds']:6.2f}s at {step['start']:5.2f}s  {step['lane']:<24} "
                  f"{step['step']} ({step['detail']})")
        print("  benchbed 8 by round: " + " ".join(f"{value:.2f}" for value in eights))
        # other work on the machine slows every column of a round alike, benchbed 0 included
        print("  load average (1 min) at each round's start: "
              + " ".join(f"{value:.1f}" for value in loads))
        if os.environ.get("TIMELINES"):
            Path(os.environ["TIMELINES"]).write_text(json.dumps(
                {"times": times, "destroys": destroys, "timelines": timelines,
                 "loads": loads}))
        for amount, values in destroys.items():
            print(f"  destroy of benchbed {amount}: median {statistics.median(values):.2f}s, "
                  f"max {max(values):.2f}s")
        own = medians["benchbed 1"] - medians["benchbed 0"]
        print(f"  benchbed 0 is the CLI's fixed cost (a deployment of no containers); "
              f"benchbed 1 less that = {own:.2f}s = {own / medians['raw 1']:.2f}x raw 1")
        return finish("lxc", [
            Target("benchbed 1 / raw 1", medians["benchbed 1"] / medians["raw 1"], 1.1),
            Target("benchbed 8 / raw 8 in parallel", medians["benchbed 8"] / medians["raw 8"],
                   0.95),
            Target("slowest benchbed 8 / its median", max(eights) / medians["benchbed 8"],
                   1.5)])
    finally:
        listed = subprocess.run([BENCHBED, "deployment", "list", "--json"], env=env,
                                capture_output=True, text=True)
        for deployment in json.loads(listed.stdout or "[]"):
            subprocess.run([BENCHBED, "deployment", "destroy", "--force", deployment["name"]],
                           env=env, capture_output=True)
        for name in raw_names:
            subprocess.run(["lxc-destroy", "-f", "-n", name], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
