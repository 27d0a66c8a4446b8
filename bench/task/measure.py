"""bench/task: one Rally task through `benchbed task run` against plain Rally, interleaved.

Both run the same task file against one DebianEngine Keystone deployment in an LXC container
on this machine, with the same `rally` (.venv-clients). The plain side is what a Rally user
does with the rally-spec benchbed exports: an environment made once (`rally db create`,
`rally env create`, not timed), then per round `rally task start` and `rally task report
--json` (the results, which benchbed reads too). benchbed's side is the whole `benchbed task
run`: the task in the Rally home benchbed keeps for the deployment, its report read into
benchbed's database, the deployed versions, and the system's CPU and memory sampled every
second. That home is made by the deployment's first run: a one-iteration run before the
rounds makes it, outside the timing, as the plain side's environment is made. The sides
alternate (benchbed, plain, plain, benchbed, ...) so drift hits both; ROUNDS (at least 3)
pairs, medians compared, exit 1 on a miss. What benchbed adds per run is fixed (its start,
the record, the sampler), so the ratio depends on the task's length: TIMES (default 300)
iterations of KeystoneBasic.authenticate_user_and_validate_token at concurrency 2. Target
(issue 22): benchbed at most 1.05x plain Rally. NETWORK (default 10.254.248.0/24) and
PREFIX (bbbt) keep the run off others' networks and names.
"""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from bench.common import Target, Timings, finish, rounds, time_command

ROOT = Path(__file__).resolve().parents[2]
BENCHBED = str(ROOT / ".venv" / "bin" / "benchbed")
RALLY = str(ROOT / ".venv-clients" / "bin" / "rally")
TARGET = 1.05
NAME = "bench-task"


def main() -> int:
    count = rounds()
    times = int(os.environ.get("TIMES", "300"))
    network = os.environ.get("NETWORK", "10.254.248.0/24")
    prefix = os.environ.get("PREFIX", "bbbt")
    with tempfile.TemporaryDirectory(prefix="bench-task-") as work:
        base = Path(work)
        env = {**os.environ, "BENCHBED_HOME": str(base / "home")}
        config = {"type": "DebianEngine", "services": ["keystone"],
                  "provider": {"type": "LxcProvider", "container_name_prefix": prefix,
                               "start_lxc_network": network,
                               "host_provider": {"type": "ExistingServers", "credentials": [
                                   {"host": "localhost", "user": "root"}]}}}
        (base / "deployment.yaml").write_text(yaml.safe_dump(config))
        task = base / "task.yaml"
        task.write_text(yaml.safe_dump({"KeystoneBasic.authenticate_user_and_validate_token": [
            {"runner": {"type": "constant", "times": times, "concurrency": 2},
             "sla": {"failure_rate": {"max": 0}}}]}))
        print(f"bench/task: deploying Keystone in LXC ({network}), then {count} rounds of "
              f"{times} iterations per side", flush=True)
        subprocess.run([BENCHBED, "deployment", "create", "--file",
                        str(base / "deployment.yaml"), "--name", NAME], env=env, check=True)
        try:
            rally_env = _plain_rally(base, env)
            warm = base / "warm.yaml"
            warm.write_text(yaml.safe_dump({
                "KeystoneBasic.authenticate_user_and_validate_token": [
                    {"runner": {"type": "constant", "times": 1}}]}))
            subprocess.run([BENCHBED, "task", "run", str(warm), "--deployment", NAME,
                            "--rally", RALLY], env=env, check=True, stdout=subprocess.DEVNULL)
            plain = [[RALLY, "task", "start", "--task", str(task)],
                     [RALLY, "task", "report", "--json", "--out", str(base / "report.json")]]
            ours = [BENCHBED, "task", "run", str(task), "--deployment", NAME, "--rally", RALLY]
            timings = Timings()
            for index in range(count):
                order = ("benchbed", "rally") if index % 2 == 0 else ("rally", "benchbed")
                for side in order:
                    if side == "benchbed":
                        timings.add("benchbed task run", time_command(ours, env))
                    else:
                        timings.add("rally task start + report",
                                    sum(time_command(argv, rally_env) for argv in plain))
            timings.show()
            ratio = timings.ratio("benchbed task run", "rally task start + report")
        finally:
            subprocess.run([BENCHBED, "deployment", "destroy", NAME], env=env, check=True)
    return finish("task", [Target("benchbed task run / plain rally", ratio, TARGET)])


def _plain_rally(base: Path, env: dict[str, str]) -> dict[str, str]:
    """A Rally home with its environment made from benchbed's exported rally-spec, as a Rally
    user would make it once; the variables every plain `rally` call needs."""
    home = base / "rally-home"
    (home / ".rally").mkdir(parents=True)
    (home / ".rally" / "rally.conf").write_text(
        f"[database]\nconnection = sqlite:///{home}/rally.sqlite\n")
    spec = base / "spec.json"
    spec.write_text(subprocess.run([BENCHBED, "deployment", "export", NAME, "--format",
                                    "rally-spec"], env=env, check=True, capture_output=True,
                                   text=True).stdout)
    rally_env = {**os.environ, "HOME": str(home)}
    subprocess.run([RALLY, "db", "create"], env=rally_env, check=True, capture_output=True)
    subprocess.run([RALLY, "env", "create", "--name", "plain", "--spec", str(spec)],
                   env=rally_env, check=True, capture_output=True)
    return rally_env


if __name__ == "__main__":
    sys.exit(main())
