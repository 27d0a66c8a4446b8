"""What a benchmark run is made of: the types every part of `benchbed.tasks` shares."""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Iteration:
    """One iteration of one workload: when it started (epoch seconds), how long it took, the
    error it ended with (None: it passed) and its atomic actions in order, as
    (name, seconds) pairs (Rally nests atomic actions; nested names are joined with ' > ')."""

    scenario: str
    workload: int
    iteration: int
    started: float
    duration: float
    error: str | None = None
    atomic: list[tuple[str, float]] = field(default_factory=list)


@dataclass(frozen=True)
class Sample:
    """A service's resource use on a server at one moment: CPU-seconds used since it
    started (a counter: rates come from differences) and resident memory in bytes."""

    at: float
    server: str
    service: str
    cpu_seconds: float
    rss_bytes: int


@dataclass
class TaskRun:
    """One `benchbed task run`: what ran, against what, when, and how it ended.

    `scenarios` holds per workload what Rally reported besides the iterations: its position,
    scenario name, runner and context, the SLA criteria with their verdicts
    (`{"workload": 0, "scenario": "...", "sla": [{"criterion": ..., "success": ...,
    "detail": ...}], ...}`). `deployment_timeline` is the deployment's timeline as it was at
    the start (the deployment may be destroyed before the run is looked at)."""

    uuid: str
    deployment_uuid: str
    deployment_name: str
    task_name: str
    task_text: str
    task_digest: str
    config_digest: str
    started_at: datetime
    sample_interval: float
    tags: dict[str, str] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    status: str = "running"
    sla_ok: bool | None = None
    finished_at: datetime | None = None
    rally_task_uuid: str | None = None
    scenarios: list[dict[str, Any]] = field(default_factory=list)
    deployment_timeline: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
