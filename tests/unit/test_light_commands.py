"""Commands that need little import little: the guard of the CLI's fixed cost (issue 14).

Timing a command in a test would be flaky; which libraries it loaded is not. Each command
runs in a fresh interpreter, as a user's would, and reports the heavy libraries it imported.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

# Each costs 10-100 ms to import; none is needed to record a deployment that creates nothing.
HEAVY = ("sqlalchemy", "alembic", "paramiko", "cryptography", "rich", "boto3", "botocore",
         "keystoneauth1", "requests", "libvirt", "yaml")
# Needed to validate a config, not to list deployments or print help.
VALIDATION = ("jsonschema", "importlib.metadata")

RUN_AND_REPORT = """
import json, sys
from benchbed.cli.main import _run
sys.argv = ["benchbed", *json.loads(sys.argv[1])]
code = _run()
print(json.dumps({"code": code, "modules": sorted(sys.modules)}), file=sys.stderr)
"""

NOOP_CONFIG = {"type": "ServersEngine", "provider": {
    "type": "ExistingServers", "credentials": [{"user": "root", "host": "localhost"}]}}


def imported(args: list[str], env: dict[str, str]) -> set[str]:
    """The modules `benchbed ARGS` imported; the command must succeed."""
    result = subprocess.run([sys.executable, "-c", RUN_AND_REPORT, json.dumps(args)],
                            env=env, capture_output=True, text=True, timeout=120)
    report = json.loads(result.stderr.strip().splitlines()[-1])
    assert report["code"] == 0, result.stderr
    return set(report["modules"])


def loaded(modules: set[str], names: tuple[str, ...]) -> list[str]:
    return [name for name in names if name in modules]


@pytest.fixture
def env(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A home whose database exists (the first command migrates it, with Alembic)."""
    (tmp_path / "noop.json").write_text(json.dumps(NOOP_CONFIG))
    environment = dict(os.environ)
    subprocess.run([sys.executable, "-m", "benchbed", "deployment", "list"], env=environment,
                   check=True, capture_output=True, timeout=120)
    return environment


def test_create_of_a_deployment_that_creates_nothing_imports_no_heavy_library(
        env: dict[str, str], tmp_path: Path) -> None:
    first, second = (imported(["deployment", "create", "--file", str(tmp_path / "noop.json"),
                               "--name", name], env) for name in ("noop", "again"))
    assert loaded(first, HEAVY) == []
    assert "jsonschema" in first
    assert "benchbed.engines.servers" in first  # it did deploy, through the entry point
    # the same config again: jsonschema's verdict on it is remembered (schema_passes)
    assert loaded(second, (*HEAVY, "jsonschema")) == []
    listed = subprocess.run([sys.executable, "-m", "benchbed", "deployment", "list", "--json"],
                            env=env, check=True, capture_output=True, text=True, timeout=120)
    assert [row["status"] for row in json.loads(listed.stdout)] == ["deploy->finished"] * 2


@pytest.mark.parametrize("args", [["deployment", "list"], ["--help"],
                                  ["deployment", "create", "--help"]])
def test_list_and_help_import_neither_heavy_libraries_nor_the_validator(
        env: dict[str, str], args: list[str]) -> None:
    modules = imported(args, env)
    assert loaded(modules, HEAVY + VALIDATION) == []
