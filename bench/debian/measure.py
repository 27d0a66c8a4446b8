"""bench/debian: Keystone + Glance to a passing check, benchbed against a plain script.

Both install on fresh overlay clones of one Debian 12 container made with raw LXC
commands (tests/integration/debian_lab.py), reaching the mirror only through an
apt-cacher-ng on the bridge address. benchbed is timed from `deployment create` (CLI
start-up, database, ledger and SSH included) to the end of a passing `deployment
check`; the script (script.sh) runs the same steps over plain `ssh` and ends with the
same proof through curl. Cold runs start from an emptied apt cache; warm runs reuse it.
The order is script, benchbed, benchbed, script, so that drift hits both alike; ROUNDS
(default 1) repeats that and the medians are compared. Target (issue 4): benchbed at
most 1.15x the script.
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from tests.integration.debian_lab import Lab

ROOT = Path(__file__).resolve().parents[2]
BENCHBED = str(ROOT / ".venv" / "bin" / "benchbed")
SCRIPT = str(Path(__file__).resolve().parent / "script.sh")
TARGET = 1.15
ROUNDS = int(os.environ.get("ROUNDS", "1"))


def timed(argvs: list[list[str]], env: dict[str, str] | None = None) -> float:
    start = time.monotonic()
    for argv in argvs:
        result = subprocess.run(argv, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            sys.exit(f"bench/debian: {' '.join(argv)} failed: "
                     f"{(result.stderr or result.stdout).strip()[-2000:]}")
    return time.monotonic() - start


def run_script(lab: Lab, address: str) -> tuple[float, str]:
    return timed([[SCRIPT, address, str(lab.key)]]), ""


def run_benchbed(lab: Lab, address: str) -> tuple[float, str]:
    with tempfile.TemporaryDirectory(prefix="bench-debian-") as home:
        env = {**os.environ, "BENCHBED_HOME": home}
        env.pop("BENCHBED_DATABASE_URL", None)
        config = Path(home) / "debian.yaml"
        config.write_text(yaml.safe_dump({
            "type": "DebianEngine", "services": ["keystone", "glance"],
            "provider": {"type": "ExistingServers",
                         "credentials": [lab.credentials(address)]}}))
        elapsed = timed([[BENCHBED, "deployment", "create", "--file", str(config),
                          "--name", "bench", "--no-use"],
                         [BENCHBED, "deployment", "check", "bench"]], env)
        shown = json.loads(subprocess.run([BENCHBED, "deployment", "show", "bench", "--json"],
                                          env=env, capture_output=True, text=True,
                                          check=True).stdout)
        steps = {row["step"]: row for row in shown["timeline"]}
        detail = ", ".join(f"{name} {steps[name]['seconds']:.0f}s"
                           for name in ("download packages", "install packages")
                           if name in steps)
        subprocess.run([BENCHBED, "deployment", "destroy", "bench"], env=env, check=True,
                       capture_output=True)
    return elapsed, detail


def main() -> None:
    lab = Lab("bbdebb", "10.77.7", "/var/cache/benchbed-bench/apt-cacher-ng")
    runners = {"script": run_script, "benchbed": run_benchbed}
    results: dict[tuple[str, str], list[float]] = {}
    try:
        lab.start()
        plan = [("cold", "script"), ("cold", "benchbed"), ("warm", "benchbed"),
                ("warm", "script")]
        for cache, who in plan * ROUNDS:
            if cache == "cold":
                lab.clear_cache()
            name = f"bbdebb-{who}-{cache}"
            address = lab.clone(name)
            elapsed, detail = runners[who](lab, address)
            lab.destroy(name)
            results.setdefault((cache, who), []).append(elapsed)
            print(f"{cache:<5} {who:<9} {elapsed:7.1f}s  {detail}", flush=True)
    finally:
        lab.stop()
    verdicts = []
    for cache in ("cold", "warm"):
        ours, theirs = (statistics.median(results[(cache, who)])
                        for who in ("benchbed", "script"))
        ratio = ours / theirs
        verdicts.append(ratio <= TARGET)
        print(f"{cache} cache: benchbed {ours:.1f}s, script {theirs:.1f}s (medians of "
              f"{ROUNDS}), ratio {ratio:.2f}x "
              f"(target <= {TARGET}x: {'met' if ratio <= TARGET else 'MISSED'})")
    sys.exit(0 if all(verdicts) else 1)


if __name__ == "__main__":
    main()
