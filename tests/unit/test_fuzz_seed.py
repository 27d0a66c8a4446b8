"""Property-based tests draw new examples each run, from a seed the run prints, and that seed
(BENCHBED_FUZZ_SEED) draws the very same examples again, on one process or on xdist workers:
a real pytest runs a small Hypothesis test with tests/conftest.py as its plugin."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROBE = """
import os
from hypothesis import given, settings, strategies as st

@settings(max_examples=8)
@given(st.integers(), st.text())
def test_draws(number: int, text: str) -> None:
    with open(os.environ["PROBE_OUT"], "a") as out:
        out.write(f"{os.environ.get('PYTEST_XDIST_WORKER', '-')} {number} {text!r}\\n")
"""


def run(tmp_path: Path, name: str, seed: str | None, *args: str
        ) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """The probe under a real pytest: its result and the examples it drew (sorted)."""
    (tmp_path / "test_probe.py").write_text(PROBE)
    out = tmp_path / f"{name}.drawn"
    env = {key: value for key, value in os.environ.items()
           if key != "BENCHBED_FUZZ_SEED" and not key.startswith("PYTEST_")}
    env["PROBE_OUT"] = str(out)
    if seed is not None:
        env["BENCHBED_FUZZ_SEED"] = seed
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             "-p", "tests.conftest", "--rootdir", str(tmp_path), "-c",
                             os.devnull, *args, str(tmp_path / "test_probe.py")],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    drawn = out.read_text().splitlines() if out.exists() else []
    return result, sorted(line.split(" ", 1)[1] for line in drawn)


def printed_seed(result: subprocess.CompletedProcess[str]) -> str:
    found = re.findall(r"^fuzz seed: BENCHBED_FUZZ_SEED=(\d+) ", result.stdout, re.MULTILINE)
    assert len(found) == 1, result.stdout + result.stderr
    return found[0]


def test_each_run_draws_anew_and_its_printed_seed_draws_the_same_again(tmp_path: Path
                                                                        ) -> None:
    first, first_drawn = run(tmp_path, "first", None)
    second, second_drawn = run(tmp_path, "second", None)
    assert first.returncode == 0 and second.returncode == 0, first.stdout + second.stdout
    assert printed_seed(first) != printed_seed(second)
    assert first_drawn != second_drawn and len(first_drawn) >= 8
    again, again_drawn = run(tmp_path, "again", printed_seed(first))
    assert again.returncode == 0 and printed_seed(again) == printed_seed(first)
    assert again_drawn == first_drawn


def test_the_seed_holds_on_xdist_workers(tmp_path: Path) -> None:
    alone, alone_drawn = run(tmp_path, "alone", "424242")
    spread, spread_drawn = run(tmp_path, "spread", "424242", "-n", "2")
    assert alone.returncode == 0 and spread.returncode == 0, spread.stdout + spread.stderr
    assert printed_seed(spread) == "424242"
    assert spread_drawn == alone_drawn


@pytest.mark.parametrize("seed", ["not-a-number", "-5"])
def test_a_seed_that_is_not_a_number_is_refused_in_one_line(tmp_path: Path, seed: str) -> None:
    result, drawn = run(tmp_path, "bad", seed)
    assert result.returncode == 4  # pytest's usage error
    assert f"BENCHBED_FUZZ_SEED={seed!r}: the fuzz seed must be a number" in result.stderr
    assert drawn == []
