"""The plugin author's guide's example, as a third party ships it: a separate package.

examples/benchbed-example-provider is pip-installed into a throwaway venv that sees this
repository's benchbed (and its dependencies) through a .pth file, so the test venv's own
plugin list never changes under the tests running beside this file. The provider then passes
the contract test, deploys a ServersEngine through the real CLI, answers SSH (`deployment
check`, and the real `ssh` through the exported ssh_config), and `destroy` leaves no sshd
and no ledger row. Root only (sshd on 127.0.0.1).
"""

import json
import os
import site
import sqlite3
import subprocess
import sys
import venv
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Cli, ledger_rows, write_yaml

pytestmark = pytest.mark.root

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "examples" / "benchbed-example-provider"


class VenvCli(Cli):
    """The `benchbed` CLI run by the throwaway venv's Python."""

    def __init__(self, python: Path, env: dict[str, str]) -> None:
        super().__init__(env)
        self.python = python

    def argv(self, *args: str) -> list[str]:
        return [str(self.python), "-m", "benchbed", *args]


@pytest.fixture(scope="module")
def python(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A venv holding the example package, installed as users install plugins; removed
    (pip uninstall) afterwards."""
    if os.geteuid() != 0:
        pytest.skip("needs root: sshd")
    where = tmp_path_factory.mktemp("example-venv") / "venv"
    # no pip or setuptools of its own: the test venv's (through the .pth) install into it
    venv.EnvBuilder(with_pip=False).create(where)
    bin_python = where / "bin" / "python"
    purelib = subprocess.run([str(bin_python), "-c", "import sysconfig; "
                              "print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    # this repository's benchbed and its dependencies, as the test venv has them
    Path(purelib, "benchbed-repo.pth").write_text(
        "\n".join([str(ROOT), *site.getsitepackages()]) + "\n")
    # as a user would: pip builds it (setuptools from the configured index, as for benchbed)
    subprocess.run([str(bin_python), "-m", "pip", "install", "-q", "--no-deps", str(PACKAGE)],
                   check=True, capture_output=True, text=True, timeout=300)
    yield bin_python
    subprocess.run([str(bin_python), "-m", "pip", "uninstall", "-y", "-q",
                    "benchbed-example-provider"], check=True, capture_output=True, timeout=120)


@pytest.fixture
def cli(python: Path, tmp_path: Path) -> Iterator[VenvCli]:
    env = {key: value for key, value in os.environ.items() if key != "BENCHBED_DATABASE_URL"}
    made = VenvCli(python, {**env, "BENCHBED_HOME": str(tmp_path / "home")})
    yield made
    made.destroy_all()


def sshd_runs(pid: int, config: str) -> bool:
    try:
        return (os.readlink(f"/proc/{pid}/exe") == os.path.realpath("/usr/sbin/sshd")
                and config in Path(f"/proc/{pid}/cmdline").read_bytes().decode())
    except OSError:
        return False


def test_the_example_keeps_the_contract(python: Path) -> None:
    subprocess.run([str(python), "-c", "from benchbed import contract, plugin; "
                    "contract.check_plugin(plugin.get(plugin.PROVIDERS, 'LoopbackSshd'))"],
                   check=True, timeout=120)
    assert "benchbed_example_provider" not in sys.modules  # the test venv never saw it


def test_a_deployment_on_it_answers_ssh_and_leaves_nothing(cli: VenvCli, tmp_path: Path
                                                            ) -> None:
    assert "LoopbackSshd" in cli.ok("plugin", "list").stdout
    config = write_yaml(tmp_path / "loop.yaml", {
        "type": "ServersEngine", "amount": 2, "provider": {"type": "LoopbackSshd"}})
    cli.ok("deployment", "create", "--file", config, "--name", "loop", timeout=300)
    home = tmp_path / "home"
    with sqlite3.connect(home / "benchbed.sqlite") as db:
        rows = [json.loads(data) if isinstance(data, str) else data for (data,) in
                db.execute("SELECT data FROM resources WHERE kind = 'sshd'")]
    assert len(rows) == 2
    sshds = [(row["pid"], f"{row['directory']}/sshd_config") for row in rows]
    assert all(sshd_runs(pid, path) for pid, path in sshds)

    checks = cli.json("deployment", "check", "loop")
    assert len(checks) == 2 and all(check["ok"] for check in checks), checks
    ssh_config = tmp_path / "ssh_config"
    cli.ok("deployment", "export", "loop", "--format", "ssh-config", "--output", str(ssh_config))
    servers = cli.json("deployment", "show", "loop")["endpoints"]["servers"]
    for server in servers:
        reached = subprocess.run(["ssh", "-F", str(ssh_config), "-o", "BatchMode=yes",
                                  server["name"], "echo", "reached"],
                                 capture_output=True, text=True, timeout=30)
        assert reached.returncode == 0, reached.stderr
        assert reached.stdout.strip() == "reached"

    cli.ok("deployment", "destroy", "loop", timeout=300)
    assert not any(sshd_runs(pid, path) for pid, path in sshds)
    assert ledger_rows(home) == 0
    assert not any(Path(path).parent.exists() for _, path in sshds)
