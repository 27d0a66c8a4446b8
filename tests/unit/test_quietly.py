"""tools/quietly.sh: one line per setup step, the log's path once, its tail on failure."""

import subprocess
from pathlib import Path

QUIETLY = str(Path(__file__).parents[2] / "tools" / "quietly.sh")


def quietly(log: Path, label: str, *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([QUIETLY, label, *command], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "BENCHBED_SETUP_LOG": str(log)})


def test_steps_print_one_line_each_and_the_log_path_once(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "setup.log"
    first = quietly(log, "packages", "sh", "-c", "seq 1 500")
    second = quietly(log, "virtualenv", "sh", "-c", "echo pip says a lot; echo more >&2")
    assert first.returncode == second.returncode == 0
    assert first.stdout.splitlines()[0] == f"== setup output (apt, dpkg, pip) goes to {log}"
    assert first.stdout.splitlines()[1].startswith("== packages: done (")
    assert len(second.stdout.splitlines()) == 1
    assert second.stdout.startswith("== virtualenv: done (")
    text = log.read_text()
    assert "\n500\n" in text and "pip says a lot" in text and "more" in text


def test_a_failed_step_prints_the_logs_tail_and_its_code(tmp_path: Path) -> None:
    log = tmp_path / "setup.log"
    failed = quietly(log, "packages", "sh", "-c", "seq 1 100; echo 'E: no such package' >&2; "
                                                  "exit 7")
    assert failed.returncode == 7
    lines = failed.stdout.splitlines()
    assert lines[1].startswith("== packages: FAILED (exit 7 after ")
    assert lines[1].endswith(f"s); the last lines of {log}:")
    assert lines[-1] == "   E: no such package"
    assert len(lines) == 2 + 30
