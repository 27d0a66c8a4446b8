"""DevstackEngine end to end, what does not fit CI's 45 minutes.

The failures: a branch that does not exist, a repository that does not answer, a stack.sh
failing halfway. Each names the server and the step in one line, and destroy leaves the
server as it was; then a create on that same server succeeds. On a container made with raw
LXC commands, as in tests/integration/test_devstack.py (which runs the whole single-node
cloud in CI); these cost about 15 minutes on an idle machine.
"""

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import (
    cli_for,
    ledger_rows,
    write_yaml,
)
from tests.integration.debian_lab import ImageLab
from tests.integration.devstack_lab import (
    KEYSTONE_ONLY,
    create_fails,
    existing,
    leftovers,
    raw_server,
)

pytestmark = pytest.mark.root

LAB_SUBNET = "10.254.163"


# -- failures on a container made with raw LXC commands --------------------------------------


@pytest.fixture(scope="module")
def raw() -> Iterator[tuple[ImageLab, str]]:
    with raw_server("bbdsy", LAB_SUBNET) as lab_and_address:
        yield lab_and_address


@pytest.mark.parametrize(("engine", "pattern"), [
    ({"devstack_branch": "stable/no-such-branch"},
     r"step 'clone devstack' failed: .*Remote branch stable/no-such-branch not found"),
    ({"devstack_repo": f"git://{LAB_SUBNET}.1:9/openstack/devstack.git"},
     r"step 'clone devstack' failed: .*(unable to connect|did not answer)"),
])
def test_clone_failures_name_server_and_step(raw: tuple[ImageLab, str], tmp_path: Path,
                                             engine: dict[str, Any], pattern: str) -> None:
    lab, address = raw
    before = leftovers(lab, address)
    cli = cli_for(tmp_path / "home")
    try:
        error = create_fails(
            cli, write_yaml(tmp_path / "c.yaml", existing(lab, address, **engine)), "bad")
        assert re.search(rf"root@{address}:22: {pattern}", error), error
        cli.ok("deployment", "destroy", "bad", timeout=900)
        assert leftovers(lab, address) == before
        assert ledger_rows(tmp_path / "home") == 0
    finally:
        cli.destroy_all()


def test_failing_stack_names_server_function_and_command(raw: tuple[ImageLab, str],
                                                         tmp_path: Path) -> None:
    lab, address = raw
    before = leftovers(lab, address)
    cli = cli_for(tmp_path / "home")
    try:
        # stack.sh fails halfway: MySQL cannot bind an address the server does not have
        failing = existing(lab, address, local_conf={**KEYSTONE_ONLY,
                                                     "SERVICE_LISTEN_ADDRESS": "192.0.2.77"})
        error = create_fails(cli, write_yaml(tmp_path / "fail.yaml", failing), "fail")
        assert re.search(rf"root@{address}:22: step 'stack.sh' failed: stack.sh exited 1 in "
                         r"\S+ \(lib/databases/mysql:\d+: .*\); last lines: .+", error), error
        cli.ok("deployment", "destroy", "fail", timeout=900)
        assert leftovers(lab, address) == before
        assert ledger_rows(tmp_path / "home") == 0
    finally:
        cli.destroy_all()


def test_a_create_after_failed_and_destroyed_ones_succeeds(raw: tuple[ImageLab, str],
                                                           tmp_path: Path) -> None:
    """The server the failures above (and CI's kill -9) leave as it was takes a whole
    keystone-only stack, and its destroy leaves it as it was again."""
    lab, address = raw
    before = leftovers(lab, address)
    cli = cli_for(tmp_path / "home")
    try:
        config = write_yaml(tmp_path / "ok.yaml", existing(lab, address, local_conf=KEYSTONE_ONLY))
        cli.ok("deployment", "create", "--file", config, "--name", "ok", timeout=3600)
        assert all(r["ok"] for r in cli.json("deployment", "check", "ok"))
        assert "stack" in leftovers(lab, address)["stack user"]
        cli.ok("deployment", "destroy", "ok", timeout=900)
        assert leftovers(lab, address) == before
        assert ledger_rows(tmp_path / "home") == 0
    finally:
        cli.destroy_all()
