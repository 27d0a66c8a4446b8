"""The kill -9 helpers every kill test goes through: they pass only when the kill is what
ended the process, so a test cannot claim "killed mid-work" of a process that had finished
(or failed) by itself."""

import os
import subprocess
import sys

import pytest

from tests.conftest import kill_now, kill_when

# a process that is running until killed, and two that end by themselves at once
RUNS = [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(60)"]
ENDS = {"succeeds": [sys.executable, "-c", "print('done')"],
        "fails": [sys.executable, "-c", "import sys; sys.exit('broken: 3')"]}


def popen(argv: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_kill_now_passes_on_a_running_process_and_reaps_it() -> None:
    process = popen(RUNS)
    assert process.stdout is not None and process.stdout.readline() == "up\n"
    kill_now(process)
    assert process.returncode == -9


@pytest.mark.parametrize("how", list(ENDS))
def test_kill_now_fails_on_a_process_that_ended_by_itself(how: str) -> None:
    process = popen(ENDS[how])
    process.wait(timeout=30)
    with pytest.raises(AssertionError, match=r"ended by itself \(exit [01]\)"):
        kill_now(process)


@pytest.mark.parametrize("how", list(ENDS))
def test_kill_now_fails_when_the_process_ends_between_check_and_signal(
        how: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The race a check before the signal cannot see: the exit status tells."""
    process = popen(ENDS[how])
    os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOWAIT)  # ended, left unreaped
    monkeypatch.setattr(process, "poll", lambda: None)  # "still running" at the check
    with pytest.raises(AssertionError, match=r"ended by itself \(exit [01]\), not by the kill"):
        kill_now(process)


def test_kill_when_kills_at_the_moment() -> None:
    process = popen(RUNS)
    seen: list[str] = []

    def moment() -> bool:
        assert process.stdout is not None
        seen.append(process.stdout.readline())
        return seen[-1] == "up\n"

    kill_when(process, moment, timeout=30, never="never up")
    assert process.returncode == -9 and seen == ["up\n"]


@pytest.mark.parametrize("how", list(ENDS))
def test_kill_when_fails_if_the_process_ends_before_the_moment(how: str) -> None:
    process = popen(ENDS[how])
    with pytest.raises(AssertionError, match="ended by itself"):
        kill_when(process, lambda: False, timeout=30, never="never")
    assert process.returncode in (0, 1)


@pytest.mark.parametrize("timeout", [0.0, 0.2])
def test_kill_when_fails_with_never_when_the_moment_does_not_come_and_kills(
        timeout: float) -> None:
    process = popen(RUNS)
    with pytest.raises(AssertionError, match="the moment never came"):
        kill_when(process, lambda: False, timeout=timeout, never="the moment never came")
    assert process.returncode == -9  # killed and reaped all the same
