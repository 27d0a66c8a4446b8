"""A nova-compute that never reports in: the failure names the hosts that are not up and,
for a single server, what its unit and its log say."""

import subprocess
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import pytest

from benchbed.engines.debian_services import nova_compute
from benchbed.ssh import CommandResult

SHOWN = "ActiveState=activating\nSubState=auto-restart\nNRestarts=4\n"


class Catalogue:
    def compute_services(self, region: str) -> list[dict[str, Any]]:
        return [{"host": "node-a", "state": "up"}, {"host": "node-b", "state": "down"}]


class LocalShell:
    """systemctl's answer canned; every other command runs here, as the server's sh would."""

    def run(self, command: Any, *, timeout: float = 600, check: bool = True,
            stdin: str | None = None) -> CommandResult:
        if command[0] == "systemctl":
            return CommandResult(0, SHOWN, "")
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        return CommandResult(done.returncode, done.stdout, done.stderr)


class Server:
    ssh = LocalShell()


def test_a_join_that_times_out_names_the_hosts_not_up() -> None:
    with pytest.raises(TimeoutError) as timed_out:
        nova_compute.join(Catalogue(), "RegionOne",  # type: ignore[arg-type]
                          ["node-a", "node-b", "node-c"], timeout=0)
    assert str(timed_out.value) == ("timed out after 0s waiting for nova-compute up on 3 "
                                    "host(s) (not up: node-b, node-c)")


def test_the_unit_report_gives_state_restarts_and_the_last_problem(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "nova-compute.log"
    log.write_text(
        "2026-12-06 10:00:00.001 7 WARNING nova.conductor.api [-] Timed out waiting for "
        "nova-conductor.  Is it running? Or did this service start before nova-conductor?\n"
        "2026-12-06 10:00:01.002 7 INFO nova.service [-] Starting compute node\n"
        "2026-12-06 10:00:02.003 7 ERROR oslo.messaging._drivers.impl_rabbit [-] "
        "Connection failed: [Errno 113] EHOSTUNREACH" + " $(reboot)" * 60 + "\n"
        "2026-12-06 10:00:03.004 7 INFO nova.compute.manager [-] ERROR in a message\n")
    monkeypatch.setattr(nova_compute, "LOG_PATH", str(log))
    report = nova_compute.unit_report(Server())  # type: ignore[arg-type]
    prefix = (f"nova-compute here is activating/auto-restart after 4 restart(s); last problem "
              f"in {log}: 2026-12-06 10:00:02.003 7 ERROR oslo.messaging._drivers.impl_rabbit "
              f"[-] Connection failed: [Errno 113] EHOSTUNREACH $(reboot)")
    assert report.startswith(prefix)
    assert len(report) == len(report.split(": ", 1)[0]) + 2 + 300


def test_a_server_without_the_log_reports_none(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nova_compute, "LOG_PATH", str(tmp_path / "absent.log"))
    report = nova_compute.unit_report(Server())  # type: ignore[arg-type]
    assert report.endswith(f"last problem in {tmp_path / 'absent.log'}: none")


class RecordingShell:
    def __init__(self) -> None:
        self.commands: list[Any] = []

    def run(self, command: Any, *, timeout: float = 600, check: bool = True,
            stdin: str | None = None) -> CommandResult:
        self.commands.append(command)
        return CommandResult(0, "", "")


@pytest.mark.parametrize(("joins", "mapped"), [(False, True), (True, False)])
def test_a_server_running_nova_maps_its_own_compute_and_a_node_leaves_it_to_its_controller(
        joins: bool, mapped: bool) -> None:
    """A single server with nova and a compute has no MultihostEngine to map its host into
    the cell (a guest's server then failed: 'Host ... is not mapped to any cell')."""
    from types import SimpleNamespace

    from benchbed.engines.debian_services import Context
    from benchbed.scale import ControlPlane

    shell = RecordingShell()
    ctx = Context(server=SimpleNamespace(ssh=shell),  # type: ignore[arg-type]
                  address="192.0.2.7", region="RegionOne", passwords={},
                  step=lambda _name, _detail: nullcontext(),
                  control_plane=ControlPlane(1, 1, 4, 151),
                  database=SimpleNamespace(ssh=RecordingShell()) if joins else None)  # type: ignore[arg-type]
    nova_compute.map_own(ctx, "node-a")
    assert (nova_compute.DISCOVER_HOSTS in shell.commands) is mapped
