"""An optional dependency that is not installed is refused at validation, with the pip line
of benchbed's extra that installs it: exit 2, one line, no deployment row.

The modules are hidden from a real `benchbed` process by a meta path finder that refuses
them, as Python refuses a module that is not installed.
"""

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest

from benchbed import plugin

HIDE = """
import os, sys
HIDDEN = set(os.environ["HIDDEN_MODULES"].split(","))
class Hide:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HIDDEN:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, Hide())
"""


def benchbed(tmp_path: Path, hidden: str, *args: str, **env: str
             ) -> subprocess.CompletedProcess[str]:
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(HIDE)
    return subprocess.run([sys.executable, "-m", "benchbed", *args], capture_output=True,
                          text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(site),
                               "HIDDEN_MODULES": hidden,
                               "BENCHBED_HOME": str(tmp_path / "home"), **env})


@pytest.mark.parametrize("hidden, config, line", [
    ("boto3", "type: ServersEngine\nprovider: {type: Ec2Provider, region: eu-west-1}\n",
     "benchbed: error: config provider.type: Ec2Provider needs boto3, which is not "
     "installed: pip install 'benchbed[ec2]'"),
    ("libvirt", "type: ServersEngine\nprovider: {type: VirshProvider, "
                "network: 10.254.210.224/28}\n",
     "benchbed: error: config provider.type: VirshProvider needs libvirt, which is not "
     "installed: pip install 'benchbed[libvirt]'"),
    ("boto3", "type: MultihostEngine\ncontroller: {type: ExistingCloud, auth_url: "
              "'http://127.0.0.1:9/v3', admin: {username: a, password: b, project_name: p}}\n"
              "nodes:\n- type: ServersEngine\n  provider: {type: Ec2Provider, "
              "region: eu-west-1}\n",
     "benchbed: error: config nodes[0].provider.type: Ec2Provider needs boto3, which is not "
     "installed: pip install 'benchbed[ec2]'"),
])
def test_a_missing_extra_is_refused_at_validation(tmp_path: Path, hidden: str, config: str,
                                                  line: str) -> None:
    (tmp_path / "c.yaml").write_text(config)
    for verb in (("validate",), ("create", "--name", "x")):
        result = benchbed(tmp_path, hidden, "deployment", *verb, "--file",
                          str(tmp_path / "c.yaml"))
        assert result.returncode == 2, result.stderr
        assert result.stderr.strip().splitlines()[-1] == line
        assert [x for x in result.stderr.splitlines() if x.startswith("benchbed:")] == [line]
    listed = benchbed(tmp_path, hidden, "deployment", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.strip() == "[]"


@pytest.mark.parametrize("url", [
    "postgresql+psycopg2://bench:Pa55-not-shown@127.0.0.1:9/benchbed",
    "postgresql+psycopg2://127.0.0.1:9/other",
])
def test_a_missing_database_driver_names_its_extra(tmp_path: Path, url: str) -> None:
    for args in (("deployment", "list"), ("deployment", "show", "x")):
        result = benchbed(tmp_path, "psycopg2", *args, BENCHBED_DATABASE_URL=url)
        assert result.returncode == 2, result.stderr
        assert result.stderr.strip().splitlines() == [
            f"benchbed: error: the database {url.replace('bench:Pa55-not-shown', '***')} "
            f"needs psycopg2, which is not installed: pip install 'benchbed[postgres]'"]
        assert "Pa55" not in result.stderr


def test_missing_extra_sees_refused_and_absent_modules() -> None:
    assert plugin.missing_extra({"json": "none"}) is None
    assert plugin.missing_extra({"benchbed_no_such_module": "x"}) == \
        "needs benchbed_no_such_module, which is not installed: pip install 'benchbed[x]'"
    assert plugin.missing_extra({"json": "a", "benchbed.no_such": "b"}) == \
        "needs benchbed.no_such, which is not installed: pip install 'benchbed[b]'"


def test_every_declared_extra_exists_and_names_an_importable_module() -> None:
    """Each EXTRAS entry names an extra benchbed has, and a module that extra provides
    here (the test environment installs every extra)."""
    extras = set(importlib.metadata.metadata("benchbed").get_all("Provides-Extra") or [])
    declared = {}
    for group in (plugin.ENGINES, plugin.PROVIDERS):
        for name in plugin.names(group):
            declared.update(plugin.get(group, name).EXTRAS)
    assert declared == {"boto3": "ec2", "libvirt": "libvirt"}
    for module, extra in declared.items():
        assert extra in extras
        assert plugin.missing_extra({module: extra}) is None
