"""`benchbed deployment list` with 1,000 deployments vs `rally env list` on an empty database.

Target (issue 2): benchbed at least 10x faster (median against median). Both are measured in
this run, alternating, ROUNDS times (default 7, at least 3).
"""

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

from bench.common import Target, compare, finish, rounds

DEPLOYMENTS = 1000
TARGET = 10.0
RALLY = Path(".venv-clients/bin/rally")


def fill_benchbed(home: Path) -> dict[str, str]:
    env = {**os.environ, "BENCHBED_HOME": str(home)}
    os.environ["BENCHBED_HOME"] = str(home)
    from sqlalchemy import insert

    from benchbed.db.models import deployments, utcnow
    from benchbed.db.session import transaction

    now = utcnow()
    config = {"type": "ServersEngine",
              "provider": {"type": "ExistingServers",
                           "credentials": [{"host": "10.0.0.2", "user": "root",
                                            "password": "bench-secret"}]}}
    with transaction() as db:
        db.execute(insert(deployments), [
            {"uuid": str(uuid.uuid4()), "name": f"bench-{index:04d}", "config": config,
             "status": "deploy->finished", "endpoints": {"servers": [{"host": "10.0.0.2"}]},
             "created_at": now, "updated_at": now} for index in range(DEPLOYMENTS)])
    return env


def prepare_rally(home: Path) -> dict[str, str]:
    """Rally with its own empty database (it ignores HOME without rally.conf)."""
    (home / ".rally").mkdir(parents=True)
    (home / ".rally" / "rally.conf").write_text(
        f"[database]\nconnection = sqlite:///{home}/rally.sqlite\n")
    env = {**os.environ, "HOME": str(home)}
    subprocess.run([str(RALLY), "db", "create"], env=env, check=True, capture_output=True)
    return env


def main() -> int:
    runs = rounds(7)
    if not RALLY.exists():
        print("rally is not installed: run `make clients` first", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="benchbed-bench-cli-"))
    try:
        bb_env = fill_benchbed(work / "benchbed")
        rally_env = prepare_rally(work / "rally")
        listed = subprocess.run([sys.executable, "-m", "benchbed", "deployment", "list"],
                                env=bb_env, capture_output=True, text=True, check=True)
        assert listed.stdout.count("deploy->finished") == DEPLOYMENTS
        benchbed = f"benchbed deployment list ({DEPLOYMENTS})"
        rally = "rally env list (empty)"
        timings = compare(benchbed, [sys.executable, "-m", "benchbed", "deployment", "list"],
                          bb_env, rally, [str(RALLY), "env", "list"], rally_env, runs)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return finish("cli_latency", [Target("rally / benchbed", timings.ratio(rally, benchbed),
                                         TARGET, at_most=False)])

if __name__ == "__main__":
    sys.exit(main())
