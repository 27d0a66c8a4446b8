"""The sampler against a real LXC container running systemd (LxcProvider through the real CLI):
a unit that burns CPU and holds memory is seen at the rate the kernel charges its process and
with its process's anonymous memory; a unit that stops disappears without an error; the SSH
path, forced for the same container, sees the same services and figures; a server that does
not answer is skipped and noted without holding anything up.
"""

import ipaddress
import itertools
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchbed.hostnet import HostNetwork, bridge_name
from benchbed.hostnet.bridge import STATE_DIR
from benchbed.server import Server
from benchbed.tasks.model import Sample
from benchbed.tasks.sampler import JOIN_TIMEOUT, Sampler
from tests.conftest import Cli, cli_for, write_yaml

pytestmark = pytest.mark.root

# this file's network: the lower half of 10.254.242.0/24 (bench/sampling has the upper)
NETWORK = "10.254.242.0/25"
PREFIX = "bbtst"
# nothing answers there: the upper half of this file's network, which no container gets
SILENT = "10.254.242.120"
MIB = 1024 * 1024
HELD = 64 * MIB
# a busy loop that holds at least HELD bytes of its own (a string of that many bytes, all
# written; perl keeps the operator's result too). No `$`: systemd expands it in ExecStart.
BURN = f"our @x = ('a' x {HELD}); 1 while 1"
SECONDS = 10
STOP_AT = 5


def containers() -> list[str]:
    listed = subprocess.run(["lxc-ls", "-1"], capture_output=True, text=True,
                            check=True).stdout.split()
    return [name for name in listed if name.startswith(f"{PREFIX}-")]


@pytest.fixture(scope="module")
def container(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One container of this module, made by `benchbed deployment create`; whatever is left
    of it (also after a failure) is removed afterwards."""
    home = tmp_path_factory.mktemp("sampler") / "home"
    cli: Cli = cli_for(home)
    home.mkdir(parents=True)
    config = write_yaml(home.parent / "config.yaml", {
        "type": "ServersEngine", "provider": {
            "type": "LxcProvider", "start_lxc_network": NETWORK,
            "container_name_prefix": PREFIX, "host_provider": {
                "type": "ExistingServers",
                "credentials": [{"user": "root", "host": "localhost"}]}}})
    try:
        cli.ok("deployment", "create", "--file", config, "--name", "sampled")
        entry = cli.json("deployment", "show", "sampled")["endpoints"]["servers"][0]
        server = Server.from_dict(entry)
        yield server
        server.close()
    finally:
        cli.destroy_all()
        for leftover in containers():
            subprocess.run(["lxc-destroy", "-f", "-n", leftover], capture_output=True)
        network = ipaddress.IPv4Network(NETWORK)
        users = Path(f"{STATE_DIR}/{bridge_name(network)}/users")
        for user in list(users.iterdir()) if users.exists() else []:
            HostNetwork(Server(host="localhost"), network).release(user.name)


def in_container(server: Server, *argv: str, check: bool = True) -> str:
    assert server.name
    return subprocess.run(["lxc-attach", "-n", server.name, "--", *argv], capture_output=True,
                          text=True, check=check, timeout=60).stdout


def host_pid(server: Server, unit: str) -> int:
    """The host's pid of the unit's one process (the container's pid namespace is its own)."""
    procs = Path(f"/sys/fs/cgroup/unified/lxc.payload.{server.name}/system.slice/{unit}"
                 f".service/cgroup.procs").read_text().split()
    assert len(procs) == 1, procs
    return int(procs[0])


def process_cpu(pid: int) -> float:
    """CPU-seconds the kernel charged to a process (utime + stime of /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_anon(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no RssAnon for {pid}")


def series(samples: list[Sample], service: str) -> list[Sample]:
    return [sample for sample in samples if sample.service == service]


def rate(samples: list[Sample]) -> float:
    return (samples[-1].cpu_seconds - samples[0].cpu_seconds) / (samples[-1].at - samples[0].at)


def nearest(samples: list[Sample], at: float) -> Sample:
    return min(samples, key=lambda sample: abs(sample.at - at))


@pytest.fixture(scope="module")
def sampled(container: Server) -> dict:
    """Both paths sampling the container at once for SECONDS, one second apart: a unit that
    burns and holds memory all along, one that stops after STOP_AT seconds; the kernel's own
    figures for the burner's process over the same window; and a silent server beside the
    container on the SSH path."""
    in_container(container, "systemd-run", "--unit=bbts-burn", "perl", "-e", BURN)
    in_container(container, "systemd-run", "--unit=bbts-idle", "sleep", "infinity")
    in_container(container, "systemd-run", "--slice=system-bbts", "--unit=bbts-nested",
                 "sleep", "infinity")
    time.sleep(1)  # the burner has written all it holds
    pid = host_pid(container, "bbts-burn")
    silent = Server(host=SILENT, name=f"{PREFIX}-silent", key=container.key)
    local = Sampler([container], 1.0)
    remote = Sampler([container, silent], 1.0, prefer_local=False)
    try:
        began, cpu_before = time.time(), process_cpu(pid)
        local.start()
        remote.start()
        time.sleep(STOP_AT)
        in_container(container, "systemctl", "stop", "bbts-idle")
        stopped = time.time()
        time.sleep(SECONDS - STOP_AT)
        cpu_after, anon, ended = process_cpu(pid), process_anon(pid), time.time()
        local_samples = local.stop()
        stop_began = time.monotonic()
        remote_samples = remote.stop()
        remote_stop = time.monotonic() - stop_began
    finally:
        in_container(container, "systemctl", "stop", "bbts-burn", "bbts-idle", "bbts-nested",
                     check=False)
        silent.close()
    return {"local": local_samples, "remote": remote_samples, "stopped": stopped,
            "kernel_rate": (cpu_after - cpu_before) / (ended - began), "anon": anon,
            "local_notes": local.notes, "remote_notes": remote.notes,
            "remote_stop": remote_stop}


def test_the_local_path_starts_no_process(container: Server) -> None:
    """Reading the host's cgroup files: no child process, no SSH channel."""
    fresh = Server.from_dict(container.to_dict())
    local = Sampler([fresh], 0.2)
    before = set(os.listdir("/proc"))
    children: list[str] = []
    local.start()
    for _ in range(10):
        children += [pid for pid in set(os.listdir("/proc")) - before if pid.isdigit()
                     and Path(f"/proc/{pid}/stat").exists()
                     and _parent(pid) == os.getpid()]
        time.sleep(0.1)
    taken = local.stop()
    assert children == []
    assert fresh._shell is None  # never opened
    assert len({sample.at for sample in taken}) >= 4
    assert {"ssh", "systemd-journald"} <= {sample.service for sample in taken}


def _parent(pid: str) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except OSError:
        return None


def test_a_burning_unit_rises_at_the_rate_it_burns_and_holds_its_memory(sampled: dict
                                                                         ) -> None:
    burn = series(sampled["local"], "bbts-burn")
    assert len(burn) >= SECONDS - 1
    remote = series(sampled["remote"], "bbts-burn")
    print(f"bbts-burn: {rate(burn):.3f} CPU-s/s sampled locally, {rate(remote):.3f} over "
          f"SSH, {sampled['kernel_rate']:.3f} charged to its process; resident "
          f"{burn[-1].rss_bytes / MIB:.1f} MiB sampled, {sampled['anon'] / MIB:.1f} MiB "
          f"RssAnon")
    # really burning (a loaded machine gives it less than a core), at the kernel's rate
    assert rate(burn) > 0.05
    assert rate(burn) == pytest.approx(sampled["kernel_rate"], rel=0.15)
    assert all(later.cpu_seconds >= earlier.cpu_seconds for earlier, later
               in itertools.pairwise(burn))
    # its memory: what it holds, as its process has it resident, not a page more
    assert burn[-1].rss_bytes >= HELD
    assert burn[-1].rss_bytes == pytest.approx(sampled["anon"], abs=8 * MIB)
    assert sampled["local_notes"] == []


def test_a_unit_that_stops_disappears_without_errors(sampled: dict) -> None:
    for path in ("local", "remote"):
        idle = series(sampled[path], "bbts-idle")
        assert idle, path
        assert any(sample.at < sampled["stopped"] - 1 for sample in idle), path
        assert all(sample.at < sampled["stopped"] + 1.5 for sample in idle), path
        # the others go on after it
        assert max(sample.at for sample in series(sampled[path], "bbts-burn")) > \
            sampled["stopped"] + 2
    assert sampled["local_notes"] == []


def test_template_like_units_one_slice_deeper_are_sampled(sampled: dict) -> None:
    assert series(sampled["local"], "bbts-nested")
    assert series(sampled["remote"], "bbts-nested")


def test_the_ssh_path_gives_the_same_services_and_figures(sampled: dict) -> None:
    local = sampled["local"]
    remote = [sample for sample in sampled["remote"] if sample.server != f"{PREFIX}-silent"]
    assert len({sample.at for sample in remote}) >= SECONDS - 1
    last_local = max(sample.at for sample in local)
    last_remote = max(sample.at for sample in remote)
    assert {s.service for s in local if s.at == last_local} == \
        {s.service for s in remote if s.at == last_remote}
    assert {s.service for s in local} == {s.service for s in remote}
    assert rate(series(remote, "bbts-burn")) == pytest.approx(
        rate(series(local, "bbts-burn")), rel=0.15)
    for service in {sample.service for sample in local} - {"bbts-burn"}:
        mine, theirs = series(local, service), series(remote, service)
        other = nearest(theirs, mine[-1].at)
        assert other.cpu_seconds == pytest.approx(mine[-1].cpu_seconds, abs=0.5), service
        assert other.rss_bytes == pytest.approx(mine[-1].rss_bytes, rel=0.1, abs=MIB), service
    burn_local, burn_remote = series(local, "bbts-burn")[-1], series(remote, "bbts-burn")[-1]
    assert burn_remote.rss_bytes == pytest.approx(burn_local.rss_bytes, rel=0.02)


def test_a_silent_server_is_skipped_noted_and_holds_nothing_up(sampled: dict) -> None:
    assert not [s for s in sampled["remote"] if s.server == f"{PREFIX}-silent"]
    notes = sampled["remote_notes"]
    assert len(notes) == 1 and notes[0].startswith(f"{PREFIX}-silent (ssh): skipped from ")
    assert SILENT in notes[0]
    assert sampled["remote_stop"] <= JOIN_TIMEOUT + 1
    stuck = [t for t in threading.enumerate() if t.name == f"benchbed-sampler-{PREFIX}-silent"]
    assert all(thread.daemon for thread in stuck)
