"""A Nova control plane sized for the compute nodes that join it, and the deployment-wide cap
on compute start-ups.

Every compute reports its state through nova-conductor every 10 s (report_interval) and its
resources every 60 s, so conductors grow with the nodes; the scheduler reads every
compute's state for each placement; each Nova process may hold oslo.db's pool of 5 plus an
overflow of 50 database connections, so the database's limit grows by that much for each
process added. A controller for a handful of computes runs one conductor and one scheduler
(what keeps its memory low). The rules below grow each knob from the number of computes,
never past the controller's cores (more workers than cores add memory and contention, not
throughput) and never below the engine's own choice; a value the config sets wins. The
ratios (a conductor per 100 computes, a scheduler or API process per 250) are benchbed's
choice: bench/scale proved 50 nodes on the small control plane, nothing here has measured
hundreds.

A compute start-up costs the controller too (a service record, a resource provider,
inventories, traits): hosts that each start their clones in batches sized by their own
cores would together start more than the controller takes, so a deployment's start-ups
across all its hosts go through one gate, sized from the controller's cores.
"""

import math
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

COMPUTES_PER_CONDUCTOR = 100
COMPUTES_PER_SCHEDULER = 250
COMPUTES_PER_API_PROCESS = 250
# each Nova process added may open oslo.db's max_pool_size 5 + max_overflow 50 connections
CONNECTIONS_PER_PROCESS = 55
STARTUPS_PER_CONTROLLER_CORE = 2  # one computing, one waiting on the database or the queue


@dataclass(frozen=True)
class ControlPlane:
    """What a Nova control plane runs: its processes and its database's connection limit."""

    conductor_workers: int
    scheduler_workers: int
    api_processes: int
    database_connections: int


def _grown(small: int, computes: int, per_process: int, cores: int) -> int:
    return max(small, min(math.ceil(computes / per_process), max(cores, 1)))


def control_plane_for(computes: int, cores: int, small: ControlPlane) -> ControlPlane:
    """The control plane for `computes` compute nodes on a controller of `cores` cores;
    `small` is the engine's own for a few computes (each value at least that)."""
    conductors = _grown(small.conductor_workers, computes, COMPUTES_PER_CONDUCTOR, cores)
    schedulers = _grown(small.scheduler_workers, computes, COMPUTES_PER_SCHEDULER, cores)
    api = _grown(small.api_processes, computes, COMPUTES_PER_API_PROCESS, cores)
    added = (conductors - small.conductor_workers) + (schedulers - small.scheduler_workers) \
        + (api - small.api_processes)
    return ControlPlane(conductors, schedulers, api,
                        small.database_connections + CONNECTIONS_PER_PROCESS * added)


class StartupGate:
    """At most `limit()` compute start-ups at once across a deployment's hosts. The limit
    is asked once, by the first start-up (the controller it depends on is deployed by then;
    an error it raises reaches every start-up that waits)."""

    def __init__(self, limit: Callable[[], int]) -> None:
        self._limit_of = limit
        self._limit: int | None = None
        self._running = 0
        self._changed = threading.Condition()

    @property
    def limit(self) -> int | None:
        """The limit, once a start-up has asked it."""
        return self._limit

    @contextmanager
    def slot(self) -> Iterator[None]:
        with self._changed:
            if self._limit is None:
                self._limit = max(1, self._limit_of())
            self._changed.wait_for(lambda: self._running < (self._limit or 1))
            self._running += 1
        try:
            yield
        finally:
            with self._changed:
                self._running -= 1
                self._changed.notify()
