"""The system's own resource use while a benchmark runs: CPU-seconds and resident memory of
every systemd service of every server, every `interval` seconds.

A service is a systemd unit's cgroup: `system.slice/*.service`, and the instances of template
units one slice deeper (`system.slice/system-getty.slice/getty@tty1.service`), named without
`.service`. Whatever units run are sampled; units that come and go are followed.

Where the counters come from:
* an LXC container of this machine (a server whose name is a container with a cgroup here)
  and this machine itself (`localhost`): the host's cgroup files, read directly, with no
  process started per sample;
* any other server: ONE command per sample over its SSH session (scripts/tasks/sample.sh, a
  single `grep` over the same files), whatever the number of services.
Both give `FILE:LINE` pairs that one parser reads: CPU from cgroup v2's `cpu.stat`
(`usage_usec`), else v1's `cpuacct.usage` (ns); memory from v2's `memory.stat` `anon`, else
v1's `total_rss`: the anonymous memory of the service's processes, what it holds resident of
its own (page cache is the kernel's and shared, so it is left out).

A restarted unit gets a new cgroup whose count starts from zero: the sampler keeps each
service's CPU-seconds a counter that never goes back (CPU used since it was first seen
running plus before), so rates are differences whatever happened in between. A server that
stops answering is skipped, retried with a growing pause (at most MAX_BACKOFF), and noted in
`notes`; each server has its own thread, so one that hangs delays no other.
"""

import glob
import logging
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from benchbed import masking
from benchbed.errors import BenchbedError
from benchbed.server import Server, run_script
from benchbed.tasks.model import Sample

CGROUP_ROOT = "/sys/fs/cgroup"
SLICE = "system.slice"
SCRIPT = "tasks/sample.sh"
# the files the script greps, relative to the cgroup root, `{slice}` the services' slice;
# the same list as scripts/tasks/sample.sh (tests/unit/test_sampler.py holds them equal)
PATTERNS = tuple(f"{tree}{{slice}}/{unit}/{name}"
                 for tree, name in (("", "cpu.stat"), ("", "memory.stat"),
                                    ("unified/", "cpu.stat"), ("memory/", "memory.stat"),
                                    ("cpuacct/", "cpuacct.usage"))
                 for unit in ("*.service", "*.slice/*.service"))
# the lines that count; a v1 memory.stat has some forty
WANTED = (b"usage_usec ", b"anon ", b"total_rss ")
# the trees a container's cgroup may be in on this machine (v2, or hybrid/v1)
CONTAINER_TREES = ("", "unified/", "memory/", "cpuacct/")
# key -> (what it measures, unit in seconds or bytes, priority: lower wins)
KEYS = {"usage_usec": ("cpu", 1e-6, 0), "cpuacct.usage": ("cpu", 1e-9, 1),
        "anon": ("rss", 1, 0), "total_rss": ("rss", 1, 1)}
REMOTE_TIMEOUT = 10.0
# reaching a server that does not answer: tried this long per read, not SSH's usual 30 s,
# which would also hold the server's SSH handle (closing it waits for the attempt)
CONNECT_TIMEOUT = 5.0
MAX_BACKOFF = 30.0
# how long stop() waits for a server's thread still in a read (then it leaves it behind)
JOIN_TIMEOUT = 2.0

Readings = dict[str, tuple[float, int]]


class SampleError(BenchbedError):
    """A server's counters could not be read this time."""


def parse(lines: Iterable[tuple[str, str]]) -> Readings:
    """Per service, (CPU-seconds, resident bytes) from (file, line) pairs of its cgroup files.

    A service without a CPU figure is left out; one without a memory figure has 0 bytes (its
    memory is not accounted). Lines that say nothing known are ignored."""
    best: dict[tuple[str, str], tuple[int, float]] = {}
    for path, line in lines:
        parts = path.split("/")
        units = [part for part in parts[:-1] if part.endswith(".service")]
        if not units:
            continue
        words = line.split()
        key = parts[-1] if parts[-1] == "cpuacct.usage" else (words[0] if words else "")
        if key not in KEYS or not words or not words[-1].isdigit():
            continue
        what, scale, priority = KEYS[key]
        service = units[-1].removesuffix(".service")
        found = best.get((service, what))
        if found is None or priority < found[0]:
            best[(service, what)] = (priority, int(words[-1]) * scale)
    return {service: (value, int(best.get((service, "rss"), (0, 0))[1]))
            for (service, what), (_, value) in best.items() if what == "cpu"}


def parse_script_output(text: str) -> Readings:
    """What scripts/tasks/sample.sh printed: FILE:LINE lines, then `end`."""
    lines = text.splitlines()
    if not lines or lines[-1] != "end":
        raise SampleError("the sampling script's answer was cut off")
    pairs = []
    for line in lines[:-1]:
        path, _, content = line.rpartition(":")
        pairs.append((path, content))
    return parse(pairs)


def read_tree(root: str, slice_: str) -> Readings:
    """The counters of the services of `slice_` under the cgroup mount `root`, read here."""
    pairs: list[tuple[str, str]] = []
    escaped = glob.escape(slice_)
    for pattern in PATTERNS:
        for path in glob.glob(pattern.format(slice=escaped), root_dir=root):
            try:
                with open(f"{root}/{path}", "rb") as file:
                    data = file.read()
            except OSError:
                continue  # the unit went away since it was listed
            pairs.extend((path, line.decode()) for line in data.splitlines()
                         if line.startswith(WANTED) or line.isdigit())
    return parse(pairs)


def local_container(server: Server, root: str = CGROUP_ROOT) -> str | None:
    """The cgroup of `server`'s LXC container on this machine (`lxc.payload.NAME`), if it is
    one. Container names carry their deployment's tag, so a same-named container of another
    host is not mistaken for it."""
    if not server.name or "/" in server.name:
        return None
    group = f"lxc.payload.{server.name}"
    return group if any(Path(root, tree, group).is_dir() for tree in CONTAINER_TREES) else None


class _Source:
    """One server's counters, read locally or over SSH, kept as counters that never go back."""

    def __init__(self, server: Server, prefer_local: bool, root: str) -> None:
        self.server = server
        self.label = server.name or server.host
        self.root = root
        self.slice: str | None = None
        if prefer_local:
            container = local_container(server, root)
            if container is not None:
                self.slice = f"{container}/{SLICE}"
            elif server.is_local:
                self.slice = SLICE
        self.offset: dict[str, float] = {}
        self.last: dict[str, float] = {}

    @property
    def local(self) -> bool:
        return self.slice is not None

    def read(self) -> Readings:
        if self.slice is not None:
            group = self.slice.split("/")[0]
            if self.slice != SLICE and not any(Path(self.root, tree, group).is_dir()
                                               for tree in CONTAINER_TREES):
                raise SampleError(f"container {self.server.name} has no cgroup on this "
                                  f"machine (stopped?)")
            return read_tree(self.root, self.slice)
        self.server.ssh.wait_ready(timeout=CONNECT_TIMEOUT)
        result = run_script(self.server.ssh, SCRIPT, [CGROUP_ROOT, SLICE],
                            timeout=REMOTE_TIMEOUT, check=False)
        if result.exit_code == 3:
            raise SampleError(f"no cgroup file system at {CGROUP_ROOT}")
        return parse_script_output(result.stdout)

    def samples(self, at: float, readings: Readings) -> list[Sample]:
        """Samples of one reading; a count that went back, or a service that was not there
        the last time, is a new cgroup: what the old one counted is carried over."""
        found = []
        for service, (cpu, rss) in sorted(readings.items()):
            last = self.last.get(service)
            if last is not None and cpu < last:
                self.offset[service] = self.offset.get(service, 0.0) + last
            self.last[service] = cpu
            found.append(Sample(at=at, server=self.label, service=service,
                                cpu_seconds=self.offset.get(service, 0.0) + cpu,
                                rss_bytes=rss))
        for service in set(self.last) - set(readings):
            # gone: a later cgroup of that name counts from zero again
            self.offset[service] = self.offset.get(service, 0.0) + self.last.pop(service)
        return found


class Sampler:
    """Samples CPU-seconds and resident memory per service of `servers` every `interval`
    seconds, from `start()` until `stop()`, which returns every sample taken.

    `prefer_local=False` reads every server over SSH, even a container of this machine (the
    two paths must agree, and tests compare them). `notes` says, in words, which servers were
    skipped when and why."""

    def __init__(self, servers: list[Server], interval: float, *, prefer_local: bool = True,
                 cgroup_root: str = CGROUP_ROOT) -> None:
        if not interval > 0:
            raise ValueError(f"sampling interval must be positive, not {interval}")
        self.servers = servers
        self.interval = interval
        self.notes: list[str] = []
        self._sources = [_Source(server, prefer_local, cgroup_root) for server in servers]
        self._found: list[list[Sample]] = [[] for _ in servers]
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._started = False

    def start(self) -> None:
        """Begin sampling in the background: the first samples now, then every interval."""
        if self._started:
            raise RuntimeError("this sampler has already started")
        self._started = True
        first = time.monotonic()
        for index, source in enumerate(self._sources):
            thread = threading.Thread(target=self._run, args=(source, self._found[index],
                                                              first),
                                      name=f"benchbed-sampler-{source.label}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def stop(self) -> list[Sample]:
        """End sampling; every sample taken, oldest first. A server still in a read after
        JOIN_TIMEOUT is left to its timeout, and what it reads after this is not kept."""
        self._stopping.set()
        deadline = time.monotonic() + JOIN_TIMEOUT
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        taken = [sample for found in self._found for sample in list(found)]
        return sorted(taken, key=lambda sample: (sample.at, sample.server, sample.service))

    def _run(self, source: _Source, found: list[Sample], first: float) -> None:
        tick, failures, failed_at = 0, 0, 0.0
        while not self._stopping.is_set():
            began = time.time()
            try:
                readings = source.read()
            except Exception as error:  # any failure skips this server for now, never the run
                if failures == 0:
                    failed_at = began
                    self._note(source, f"skipped from {_clock(began)}: {error}")
                failures += 1
                pause = min(self.interval * 2 ** failures, MAX_BACKOFF)
                tick = _next_tick(first, self.interval, time.monotonic() + pause)
            else:
                ended = time.time()
                if self._stopping.is_set():
                    return
                if failures:
                    self._note(source, f"answers again at {_clock(ended)} after "
                                       f"{ended - failed_at:.0f}s ({failures} failed reads)")
                    failures = 0
                at = (began + ended) / 2 if not source.local else ended
                found.extend(source.samples(at, readings))
                tick = _next_tick(first, self.interval, time.monotonic(), tick + 1)
            self._stopping.wait(max(0.0, first + tick * self.interval - time.monotonic()))

    def _note(self, source: _Source, text: str) -> None:
        note = masking.scrub(f"{source.label} ({'local cgroups' if source.local else 'ssh'}): "
                             f"{text}")
        self.notes.append(note)
        # the log, not the terminal: what to show of `notes` is the caller's choice
        logger = (source.server.deployment.logger if source.server.deployment
                  else logging.getLogger("benchbed.sampler"))
        logger.info("sampler: %s", note)


def _next_tick(first: float, interval: float, now: float, at_least: int = 0) -> int:
    """The first tick not before `now` (ticks missed while a read took long are skipped)."""
    return max(at_least, int((now - first) / interval) + 1 if now > first else 0)


def _clock(epoch: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(epoch))
