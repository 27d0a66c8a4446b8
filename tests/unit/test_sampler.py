"""The sampler's reading of cgroup files (v1, v2, hybrid: layouts captured on this machine, see
tests/data/cgroups/README.md), the remote script against the same files, counters that reset,
units that come and go, and servers that fail or hang."""

import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from benchbed.errors import SSHError
from benchbed.server import Command, CommandResult, Server, script_text
from benchbed.tasks import sampler
from benchbed.tasks.sampler import Sampler, parse_script_output, read_tree

DATA = Path(__file__).resolve().parents[1] / "data" / "cgroups"
CAPTURED = "lxc.payload.bbts-captured/system.slice"
SCRIPT = Path(sampler.__file__).resolve().parents[1] / "scripts" / "tasks" / "sample.sh"


def value(path: Path, key: str) -> int:
    """A key's value in a captured file, found the plain way."""
    for line in path.read_text().splitlines():
        if line.split()[0] == key:
            return int(line.split()[1])
    raise AssertionError(f"{key} not in {path}")


def run_script(root: Path, slice_: str) -> str:
    return subprocess.run(["sh", str(SCRIPT), str(root), slice_], capture_output=True,
                          text=True, check=True).stdout


def test_hybrid_layout_cpu_from_v2_and_memory_from_v1() -> None:
    root = DATA / "hybrid"
    found = read_tree(str(root), CAPTURED)
    assert set(found) == {"apache2", "mariadb", "ssh"}
    assert found["ssh"] == (76.011032, 83578880)
    for service in found:
        unified = root / "unified" / CAPTURED / f"{service}.service" / "cpu.stat"
        memory = root / "memory" / CAPTURED / f"{service}.service" / "memory.stat"
        assert found[service][0] == pytest.approx(value(unified, "usage_usec") / 1e6)
        # total_rss, not rss_huge, cache or mapped_file
        assert found[service][1] == value(memory, "total_rss")
    assert found["mariadb"][1] == 79310848


def test_legacy_layout_cpuacct_usage_in_nanoseconds() -> None:
    found = read_tree(str(DATA / "legacy"), "system.slice")
    assert found == {"cron": (pytest.approx(77.672412518), 83578880)}


def test_v2_layout_anon_memory_and_template_instances_one_slice_deeper() -> None:
    found = read_tree(str(DATA / "v2"), "system.slice")
    # anon only: not anon_thp (part of it), not file or file_mapped (page cache)
    assert found["nginx"][1] == 10485760
    # a unit without memory accounting still counts its CPU
    assert set(found) == {"nginx", "getty@tty1"}
    assert found["getty@tty1"] == (76.011032, 0)


@pytest.mark.parametrize("layout, slice_", [("hybrid", CAPTURED), ("legacy", "system.slice"),
                                            ("v2", "system.slice")])
def test_the_remote_script_reads_what_the_local_reader_reads(layout: str, slice_: str) -> None:
    output = run_script(DATA / layout, slice_)
    assert output.endswith("end\n")
    # one line per counter that matters (the v1 memory.stat has some forty lines)
    assert len(output.splitlines()) <= 2 * 3 + 1
    assert parse_script_output(output) == read_tree(str(DATA / layout), slice_)
    assert parse_script_output(output)


def test_the_script_without_a_cgroup_root_says_so() -> None:
    result = subprocess.run(["sh", str(SCRIPT), "/nonexistent-bbts", "system.slice"],
                            capture_output=True, text=True)
    assert result.returncode == 3


def test_the_script_takes_values_as_arguments_only() -> None:
    text = script_text("tasks/sample.sh")
    assert "$1" in text and "$2" in text
    # a slice with shell syntax in it is a path, never a command
    output = run_script(DATA / "v2", "system.slice; touch /tmp/bbts-injected")
    assert output == "end\n"
    assert not Path("/tmp/bbts-injected").exists()


def test_a_cut_off_answer_is_an_error() -> None:
    output = run_script(DATA / "v2", "system.slice")
    with pytest.raises(sampler.SampleError, match="cut off"):
        parse_script_output(output.removesuffix("end\n"))


def test_unknown_or_broken_lines_are_ignored() -> None:
    assert sampler.parse([("system.slice/a.service/cpu.stat", "usage_usec"),
                          ("system.slice/a.service/cpu.stat", "usage_usec x"),
                          ("system.slice/cpu.stat", "usage_usec 5"),
                          ("system.slice/b.service/cpu.stat", "user_usec 5"),
                          ("system.slice/c.service/cpu.stat", "usage_usec 7")]) \
        == {"c": (7e-6, 0)}


def source(tmp_path: Path) -> sampler._Source:
    return sampler._Source(Server(host="10.254.242.99", name="bbts-fake"), False,
                           str(tmp_path))


def test_a_counter_that_resets_keeps_counting_up(tmp_path: Path) -> None:
    counts = source(tmp_path)
    seen = [counts.samples(at, {"a": (cpu, 1)})[0].cpu_seconds
            for at, cpu in enumerate([10.0, 12.0, 3.0, 4.0])]
    assert seen == [10.0, 12.0, 15.0, 16.0]


def test_a_unit_that_goes_and_comes_back_counts_from_where_it_was(tmp_path: Path) -> None:
    counts = source(tmp_path)
    assert [s.service for s in counts.samples(0, {"a": (10.0, 1), "b": (1.0, 2)})] == \
        ["a", "b"]
    assert [s.service for s in counts.samples(1, {"b": (2.0, 2)})] == ["b"]
    # a new cgroup, whose count (here 20 s already) started from zero
    again = counts.samples(2, {"a": (20.0, 5), "b": (3.0, 2)})
    assert [(s.service, s.cpu_seconds, s.rss_bytes) for s in again] == \
        [("a", 30.0, 5), ("b", 3.0, 2)]


def test_units_appearing_and_disappearing_on_disk(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    shutil.copytree(DATA / "hybrid", root)
    assert set(read_tree(str(root), CAPTURED)) == {"apache2", "mariadb", "ssh"}
    shutil.rmtree(root / "unified" / CAPTURED / "apache2.service")
    shutil.rmtree(root / "memory" / CAPTURED / "apache2.service")
    new = root / "unified" / CAPTURED / "bbts-new.service"
    new.mkdir()
    (new / "cpu.stat").write_text("usage_usec 1500000\nuser_usec 1\n")
    found = read_tree(str(root), CAPTURED)
    assert set(found) == {"mariadb", "ssh", "bbts-new"}
    assert found["bbts-new"] == (1.5, 0)


def test_a_local_container_is_found_by_its_cgroup(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    shutil.copytree(DATA / "hybrid", root)
    assert sampler.local_container(Server(host="10.0.0.2", name="bbts-captured"),
                                   str(root)) == "lxc.payload.bbts-captured"
    assert sampler.local_container(Server(host="10.0.0.2", name="bbts-other"),
                                   str(root)) is None
    assert sampler.local_container(Server(host="10.0.0.2"), str(root)) is None
    # and sampled there without any command
    server = Server(host="10.0.0.2", name="bbts-captured")
    server._shell = FakeShell(error=True)
    taken = sample_for(Sampler([server], 0.05, cgroup_root=str(root)), 0.3)
    assert {s.service for s in taken} == {"apache2", "mariadb", "ssh"}
    assert len(taken) >= 9


class FakeShell:
    """A server's shell that answers the sampling script from a captured tree, fails, or
    hangs."""

    def __init__(self, *, error: bool = False, hang: float = 0.0) -> None:
        self.error = error
        self.hang = hang
        self.calls = 0

    def run(self, command: Command, *, timeout: float = 600, check: bool = True,
            stdin: str | None = None) -> CommandResult:
        self.calls += 1
        assert command[:3] == ["sh", "-s", "--"] and stdin == script_text("tasks/sample.sh")
        if self.hang:
            time.sleep(self.hang)
        if self.error:
            raise SSHError("root@10.254.242.98:22: unreachable after 30s: timed out")
        return CommandResult(0, run_script(DATA / "v2", "system.slice"), "")

    def put_file(self, content: str | bytes, remote_path: str, mode: int = 0o644) -> None:
        raise AssertionError("the sampler writes nothing")

    def wait_ready(self, timeout: float = 120) -> None:
        return None

    def close(self) -> None:
        return None


def fake_server(name: str, shell: FakeShell) -> Server:
    server = Server(host="10.254.242.98", name=name)
    server._shell = shell
    return server


def sample_for(running: Sampler, seconds: float) -> list[sampler.Sample]:
    running.start()
    time.sleep(seconds)
    return running.stop()


def test_one_command_per_sample_and_a_failing_server_is_skipped_and_noted() -> None:
    good, bad = FakeShell(), FakeShell(error=True)
    running = Sampler([fake_server("bbts-good", good), fake_server("bbts-bad", bad)], 0.05)
    taken = sample_for(running, 0.6)
    assert {s.server for s in taken} == {"bbts-good"}
    # one command per sample, two services each (a read under way at stop() is not kept)
    assert len(taken) // 2 in (good.calls, good.calls - 1) and good.calls >= 6
    # retried with a growing pause: far fewer tries than ticks
    assert 1 <= bad.calls <= 4
    assert len(running.notes) == 1
    assert running.notes[0].startswith("bbts-bad (ssh): skipped from ")
    assert "unreachable" in running.notes[0]
    assert taken == sorted(taken, key=lambda s: (s.at, s.server, s.service))


def test_a_server_that_answers_again_is_noted_and_sampled() -> None:
    shell = FakeShell(error=True)
    running = Sampler([fake_server("bbts-flaky", shell)], 0.05)
    running.start()
    time.sleep(0.15)
    shell.error = False
    time.sleep(0.6)
    taken = running.stop()
    assert taken
    assert "answers again" in running.notes[-1]


def test_a_hanging_server_does_not_hold_stop_or_the_others() -> None:
    good, hung = FakeShell(), FakeShell(hang=5)
    running = Sampler([fake_server("bbts-good", good), fake_server("bbts-hung", hung)], 0.05)
    running.start()
    time.sleep(0.5)
    began = time.monotonic()
    taken = running.stop()
    assert time.monotonic() - began <= sampler.JOIN_TIMEOUT + 0.5
    assert {s.server for s in taken} == {"bbts-good"} and good.calls >= 5
    hung_threads = [t for t in threading.enumerate() if t.name == "benchbed-sampler-bbts-hung"]
    assert all(t.daemon for t in hung_threads)


def test_a_sampler_starts_once_and_needs_a_positive_interval() -> None:
    with pytest.raises(ValueError, match="positive"):
        Sampler([], 0)
    running = Sampler([], 1.0)
    running.start()
    with pytest.raises(RuntimeError):
        running.start()
    assert running.stop() == []
