"""What a deployment report holds: status, masked config, endpoints and ledger, the timeline.

One assembly for every output: `deployment report --format json` prints it, the HTML report
draws it (benchbed/report/html.py), and `deployment show` folds its timeline by lane.
Everything leaves through masking.mask, so no secret reaches a report.
"""

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

from benchbed import masking
from benchbed.errors import InputError

if TYPE_CHECKING:
    from benchbed.deployment import Deployment

# The lane of steps that worked on the deployment as a whole rather than on one server.
DEPLOYMENT_LANE = "deployment"
FORMATS = ("html", "json")


def render(deployment: "Deployment", fmt: str) -> str:
    """The report as a self-contained HTML page, or as the same data in JSON."""
    if fmt not in FORMATS:
        raise InputError(f"unknown report format '{fmt}' (known: {', '.join(FORMATS)})")
    report = build(deployment)
    if fmt == "json":
        return json.dumps(report, indent=2, default=str) + "\n"
    from benchbed.report.html import render as render_html

    return render_html(report)


def build(deployment: "Deployment") -> dict[str, Any]:
    """The whole report of one deployment, secrets masked."""
    ledger = deployment.all_resources()
    steps = timeline(deployment.timeline())
    return masking.mask({
        "deployment": {
            "uuid": deployment.uuid, "name": deployment.name, "status": deployment.status.value,
            "type": deployment.config.get("type"), "parent_uuid": deployment.parent_uuid,
            "created_at": deployment.created_at.isoformat(timespec="seconds"),
            "updated_at": deployment.updated_at.isoformat(timespec="seconds"),
            "held_by": deployment.lease_owner, "error": deployment.error,
        },
        "config": deployment.config,
        "endpoints": deployment.endpoints,
        "resources": [{"scope": r.scope, "kind": r.kind, "name": r.name, "state": r.state,
                       "data": r.data} for r in ledger],
        "lanes": fold(steps),
        "timeline": steps,
    })


def timeline(rows: list[Any]) -> list[dict[str, Any]]:
    """Timeline rows as dicts, with times in seconds since the first step and nesting depth.

    A step still `running` (its process was killed, or it is under way) ends, for drawing,
    at the last moment the timeline knows of.
    """
    if not rows:
        return []
    origin = rows[0].started_at
    latest = max(row.finished_at or row.started_at for row in rows)
    by_id = {row.id: row for row in rows}
    steps = []
    for row in rows:
        end = row.finished_at or latest
        steps.append({
            "id": row.id, "parent_id": row.parent_id, "lane": row.lane or DEPLOYMENT_LANE,
            "depth": _depth(row, by_id), "step": row.step, "detail": row.detail,
            "outcome": row.outcome, "started_at": _iso(row.started_at),
            "finished_at": _iso(row.finished_at) if row.finished_at else None,
            "start": _seconds(row.started_at, origin), "end": _seconds(end, origin),
            "seconds": _seconds(row.finished_at, row.started_at) if row.finished_at else None,
        })
    return steps


def _depth(row: Any, by_id: dict[int, Any]) -> int:
    """How many enclosing steps of the same lane this step has (its indent in that lane)."""
    depth, parent = 0, by_id.get(row.parent_id)
    while parent is not None:
        depth += (parent.lane or DEPLOYMENT_LANE) == (row.lane or DEPLOYMENT_LANE)
        parent = by_id.get(parent.parent_id)
    return depth


def fold(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One line per lane: how many steps, how many failed, and the span they took.

    The span runs from the lane's first start to its last end (nested steps overlap their
    parent, so summing durations would count the same time twice). The deployment's lane
    comes first, the servers' in the order they started.
    """
    lanes: dict[str, dict[str, Any]] = {}
    for step in steps:
        lane = lanes.setdefault(step["lane"], {"lane": step["lane"], "steps": 0, "failed": 0,
                                               "running": 0, "start": step["start"],
                                               "end": step["end"]})
        lane["steps"] += 1
        lane["failed"] += step["outcome"] == "failed"
        lane["running"] += step["outcome"] == "running"
        lane["start"] = min(lane["start"], step["start"])
        lane["end"] = max(lane["end"], step["end"])
    ordered = sorted(lanes.values(),
                     key=lambda lane: (lane["lane"] != DEPLOYMENT_LANE, lane["start"]))
    return [{**lane, "seconds": round(lane["end"] - lane["start"], 3)} for lane in ordered]


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds")


def _seconds(later: datetime, earlier: datetime) -> float:
    return round((later - earlier).total_seconds(), 3)
