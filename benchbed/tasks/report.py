"""The report of a benchmark run: its iterations, the system's CPU and memory and the
deployment's own timeline on one time axis, as a self-contained HTML page or as JSON.

One assembly (`build`) for both: the JSON form is exactly the data the charts read (the
spec names these lists as its datasets). Times are ISO 8601 in UTC (`...Z`), durations
seconds. The keys:

* `run`: uuid, task, task_digest, deployment, deployment_uuid, config_digest, status,
  started_at, finished_at, seconds, rally_task_uuid, sample_interval, sla_ok, tags,
  versions, error;
* `task_text`: the task file as it ran;
* `workloads`: per workload its scenario, iterations, failed, median (of the iterations that
  passed), sla_ok and `sla` (Rally's criteria: criterion, success, detail);
* `iterations`: scenario, workload, iteration, start, duration, failed, error;
* `atomic`: the stacked bars, per iteration its top-level atomic actions in order
  (action, seconds, order, start of the iteration); nested actions (`a > b`) are inside
  their parent's bar, and the time outside every action is `OUTSIDE`;
* `cpu`: per server and service (`series` is "server/service") the CPU-seconds used per
  second between two samples, at the later one (`at`); a counter that went back (the
  service restarted) gives no point;
* `memory`: resident memory in MB (10^6 bytes) at each sample;
* `deployment_timeline`: the deployment's steps (id, step, detail, lane, depth, outcome,
  start, end, seconds), as `benchbed.report.timeline` gives them.

Secrets: the tags' secret-named values, what the task file and the deployment (while it
exists) hold under secret-named keys are registered, then everything passes through
masking.mask, so an error message quoting a password shows `***`.
"""

import contextlib
import html
import json
import re
import statistics
from datetime import UTC, datetime
from typing import Any

import yaml

from benchbed import masking
from benchbed.errors import InputError, NotFoundError
from benchbed.report.html import OUTCOME_COLOURS, page
from benchbed.tasks import store
from benchbed.tasks.model import Iteration, Sample, TaskRun

FORMATS = ("html", "json")
OUTSIDE = "(outside atomic actions)"
FAILED_COLOUR = OUTCOME_COLOURS["failed"]
WIDTH = 900
STEP_PIXELS = 14
# `key: value` in a YAML task file (a Rally task is YAML or JSON, often a Jinja template that
# no parser reads): the value goes when the key names a secret.
YAML_ASSIGNMENT = re.compile(r"""^(\s*(?:-\s+)?["']?([\w.-]+)["']?\s*:[ \t]+)(\S.*)$""",
                             re.MULTILINE)

STYLE = """
.note { color: #666; font-size: .9em; }
#timeline { margin-top: 1em; }
"""


def render(run_id: str, fmt: str) -> str:
    """The report of a run (uuid or unique prefix): an HTML page or the same data as JSON."""
    if fmt not in FORMATS:
        raise InputError(f"unknown report format '{fmt}' (known: {', '.join(FORMATS)})")
    run = store.get(run_id)
    report = build(run, store.iterations(run.uuid), store.samples(run.uuid))
    if fmt == "json":
        return json.dumps(report, indent=2) + "\n"
    return render_html(report)


def build(run: TaskRun, iterations: list[Iteration], samples: list[Sample]) -> dict[str, Any]:
    """The whole report of one run, secrets masked."""
    _register_secrets(run)
    finished = run.finished_at
    return masking.mask({
        "run": {
            "uuid": run.uuid, "task": run.task_name, "task_digest": run.task_digest,
            "deployment": run.deployment_name, "deployment_uuid": run.deployment_uuid,
            "config_digest": run.config_digest, "status": run.status,
            "started_at": _iso_datetime(run.started_at),
            "finished_at": _iso_datetime(finished) if finished else None,
            "seconds": round((finished - run.started_at).total_seconds(), 3)
            if finished else None,
            "rally_task_uuid": run.rally_task_uuid, "sample_interval": run.sample_interval,
            "sla_ok": run.sla_ok, "tags": run.tags, "versions": run.versions,
            "error": run.error,
        },
        "task_text": _mask_task_text(run.task_text),
        "workloads": workloads(run, iterations),
        "iterations": [{
            "scenario": item.scenario, "workload": item.workload, "iteration": item.iteration,
            "start": _iso(item.started), "duration": round(item.duration, 6),
            "failed": item.error is not None, "error": item.error,
        } for item in iterations],
        "atomic": atomic_bars(iterations),
        "cpu": cpu_rates(samples),
        "memory": [{"series": f"{s.server}/{s.service}", "server": s.server,
                    "service": s.service, "at": _iso(s.at),
                    "mb": round(s.rss_bytes / 1e6, 3)} for s in samples],
        "deployment_timeline": deployment_steps(run.deployment_timeline),
    })


def workloads(run: TaskRun, iterations: list[Iteration]) -> list[dict[str, Any]]:
    """Per workload: how many iterations, how many failed, the median, the SLA's verdict."""
    reported = {entry.get("workload"): entry for entry in run.scenarios}
    numbers = sorted({item.workload for item in iterations} | {w for w in reported
                                                               if isinstance(w, int)})
    rows = []
    for number in numbers:
        mine = [item for item in iterations if item.workload == number]
        entry = reported.get(number, {})
        passed = [item.duration for item in mine if item.error is None]
        criteria = [{"criterion": c.get("criterion"), "success": c.get("success"),
                     "detail": c.get("detail")} for c in entry.get("sla", [])]
        rows.append({
            "workload": number,
            "scenario": entry.get("scenario") or (mine[0].scenario if mine else None),
            "iterations": len(mine), "failed": len(mine) - len(passed),
            "median": round(statistics.median(passed), 6) if passed else None,
            "sla_ok": all(c["success"] for c in criteria) if criteria else None,
            "sla": criteria,
        })
    return rows


def atomic_bars(iterations: list[Iteration]) -> list[dict[str, Any]]:
    """One bar segment per top-level atomic action; the segments of an iteration add up to
    its duration (what no action covers is `OUTSIDE`), so a bar's top is the iteration's."""
    bars = []
    for item in iterations:
        top = [(name, seconds) for name, seconds in item.atomic if " > " not in name]
        rest = item.duration - sum(seconds for _, seconds in top)
        if rest > 0.0005 or not top:
            top.append((OUTSIDE, max(rest, 0.0)))
        for order, (name, seconds) in enumerate(top):
            bars.append({"scenario": item.scenario, "workload": item.workload,
                         "iteration": item.iteration, "start": _iso(item.started),
                         "action": name, "seconds": round(seconds, 6), "order": order,
                         "failed": item.error is not None})
    return bars


def cpu_rates(samples: list[Sample]) -> list[dict[str, Any]]:
    """CPU-seconds per second of each service, from the differences of its counter."""
    last: dict[tuple[str, str], Sample] = {}
    rates = []
    for sample in sorted(samples, key=lambda s: s.at):
        key = (sample.server, sample.service)
        before = last.get(key)
        last[key] = sample
        if before is None or sample.at <= before.at or sample.cpu_seconds < before.cpu_seconds:
            continue
        rates.append({"series": f"{sample.server}/{sample.service}", "server": sample.server,
                      "service": sample.service, "at": _iso(sample.at),
                      "cpu": round((sample.cpu_seconds - before.cpu_seconds)
                                   / (sample.at - before.at), 4)})
    return rates


def deployment_steps(timeline: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The stored deployment timeline with absolute ends: a step still running (its
    process died) ends where its offsets say, or where it started."""
    steps = []
    for index, step in enumerate(timeline):
        if not step.get("started_at"):
            continue
        started = _naive_utc(step["started_at"])
        if step.get("finished_at"):
            ended = _naive_utc(step["finished_at"])
        else:
            ended = started + (_seconds_between(step) or 0.0)
        steps.append({
            "id": step.get("id", index), "step": step.get("step", ""),
            "detail": step.get("detail") or "", "lane": step.get("lane") or "deployment",
            "depth": step.get("depth", 0), "outcome": step.get("outcome", "ok"),
            "start": _iso(started), "end": _iso(ended), "seconds": round(ended - started, 3),
        })
    return steps


def chart_spec(report: dict[str, Any]) -> dict[str, Any]:
    """Vega-Lite: iterations, CPU, memory and the deployment's steps stacked on one shared
    absolute time axis (UTC); drag or scroll on any panel to pan or zoom all of them."""
    steps = report["deployment_timeline"]
    labels = {str(step["id"]): "\u2003" * step["depth"] + step["step"]
              + ("" if step["lane"] == "deployment" else f"  [{step['lane']}]")
              for step in steps}

    def time(field: str, bottom: bool = False) -> dict[str, Any]:
        return {"field": field, "type": "temporal", "scale": {"type": "utc"},
                "axis": {"title": "time (UTC)" if bottom else None, "format": "%H:%M:%S"}}

    zoom = [{"name": "zoom", "select": {"type": "interval", "encodings": ["x"]},
             "bind": "scales"}]
    iterations = {
        "name": "iterations", "width": WIDTH, "height": 220,
        "title": "iterations: seconds per atomic action, at each iteration's start "
                 "(\u25bc and faded: failed)",
        "layer": [
            {"data": {"name": "atomic"}, "params": zoom,
             "mark": {"type": "bar", "clip": True},
             "encoding": {
                 "x": time("start"),
                 "y": {"field": "seconds", "type": "quantitative", "stack": "zero",
                       "title": "seconds"},
                 "color": {"field": "action", "type": "nominal", "title": "atomic action"},
                 "order": {"field": "order"},
                 "opacity": {"condition": {"test": "datum.failed", "value": 0.45},
                             "value": 1},
                 "tooltip": [{"field": "scenario"}, {"field": "iteration"},
                             {"field": "action"}, {"field": "seconds"},
                             {"field": "start", "title": "started (UTC)"}]}},
            {"data": {"name": "iterations"}, "transform": [{"filter": "datum.failed"}],
             "mark": {"type": "point", "shape": "triangle-down", "filled": True, "size": 110,
                      "color": FAILED_COLOUR, "stroke": "#222", "strokeWidth": 1,
                      "clip": True},
             "encoding": {"x": time("start"),
                          "y": {"field": "duration", "type": "quantitative"},
                          "tooltip": [{"field": "scenario"}, {"field": "iteration"},
                                      {"field": "duration"}, {"field": "error"}]}},
        ],
    }

    def resource(name: str, field: str, title: str) -> dict[str, Any]:
        return {"name": name, "width": WIDTH, "height": 170, "title": title,
                "data": {"name": name}, "params": zoom if name == "cpu" else [],
                "mark": {"type": "line", "clip": True, "interpolate": "step-before"},
                "encoding": {"x": time("at"),
                             "y": {"field": field, "type": "quantitative", "title": title},
                             "color": {"field": "series", "type": "nominal",
                                       "title": "server/service"},
                             "tooltip": [{"field": "series"}]}}

    deployment = {
        "name": "deployment", "width": WIDTH, "height": {"step": STEP_PIXELS},
        "title": "the deployment's own timeline", "data": {"name": "deployment_timeline"},
        "mark": {"type": "bar", "cornerRadius": 2, "minBandSize": 2, "clip": True},
        "encoding": {
            "x": time("start", bottom=True), "x2": {"field": "end"},
            "y": {"field": "row", "type": "nominal", "sort": {"field": "id"},
                  "axis": {"title": None, "labelExpr": "labels[datum.value]",
                           "labelLimit": 300}},
            "color": {"field": "outcome", "type": "nominal", "title": "step outcome",
                      "scale": {"domain": list(OUTCOME_COLOURS),
                                "range": list(OUTCOME_COLOURS.values())}},
            "tooltip": [{"field": "step"}, {"field": "detail"}, {"field": "lane"},
                        {"field": "outcome"}, {"field": "seconds"},
                        {"field": "start", "title": "started (UTC)"}]},
        "transform": [{"calculate": "'' + datum.id", "as": "row"}],
    }
    return {
        "description": f"benchmark run {report['run']['uuid']}",
        "params": [{"name": "labels", "value": labels}],
        "datasets": {name: report[name] for name in
                     ("atomic", "iterations", "cpu", "memory", "deployment_timeline")},
        "vconcat": [
            iterations,
            {"vconcat": [resource("cpu", "cpu", "CPU-seconds per second"),
                         resource("memory", "mb", "resident memory (MB)")],
             "resolve": {"scale": {"x": "shared", "color": "shared"}}},
            deployment,
        ],
        "resolve": {"scale": {"x": "shared", "color": "independent"}},
        "config": {"legend": {"labelLimit": 280}},
    }


def render_html(report: dict[str, Any]) -> str:
    """The page of an assembled (and already masked) report."""
    run = report["run"]
    verdict = ("SLA held" if run["sla_ok"] else "SLA failed" if run["sla_ok"] is False
               else "no SLA verdict")
    status_class = "ok" if run["sla_ok"] and run["status"] == "finished" else "bad"
    facts = {key: value for key, value in run.items() if key not in ("tags", "versions")}
    facts["tags"] = ", ".join(f"{k}={v}" for k, v in run["tags"].items())
    facts["versions"] = ", ".join(f"{k} {v}" for k, v in run["versions"].items())
    facts["sla_ok"] = {True: "yes", False: "no", None: ""}[run["sla_ok"]]
    rows = "".join(f"<tr><th>{_e(key)}</th><td>{_e(value)}</td></tr>"
                   for key, value in facts.items() if value not in (None, ""))
    empty = [what for what, key in (("iterations", "iterations"), ("samples", "memory"),
                                    ("deployment steps", "deployment_timeline"))
             if not report[key]]
    missing = f'<p class="note">Nothing to draw: no {", no ".join(empty)}.</p>' if empty else ""
    body = f"""<h1>{_e(run["task"])} on {_e(run["deployment"])}
<span class="status {status_class}">{_e(run["status"])}: {_e(verdict)}</span></h1>
<table class="facts">{rows}</table>
<h2>Workloads</h2>
{_workloads_table(report["workloads"])}
<h2>On one time axis</h2>
<p class="note">Drag to pan, scroll to zoom (all panels together), double-click to reset.</p>
{missing}<div id="timeline"></div><p id="chart-error"></p>
<h2>Failed iterations</h2>
{_failures_table(report["iterations"])}
<h2>Task</h2>
<pre>{_e(report["task_text"])}</pre>"""
    return page(f"benchbed task report: {run['task']} ({run['uuid'][:8]})", body,
                {"timeline": chart_spec(report)}, STYLE)


def _workloads_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "<p>No workload ran.</p>"
    lines = []
    for row in rows:
        sla = "; ".join(f"{c['criterion']}: {'ok' if c['success'] else 'FAILED'}"
                        + (f" ({c['detail']})" if c["detail"] else "") for c in row["sla"])
        median = "" if row["median"] is None else f"{row['median']:.3f}"
        css = ' class="failed"' if row["sla_ok"] is False else ""
        lines.append(f"<tr{css}><td class=num>{row['workload']}</td>"
                     f"<td>{_e(row['scenario'])}</td><td class=num>{row['iterations']}</td>"
                     f"<td class=num>{row['failed']}</td><td class=num>{median}</td>"
                     f"<td>{_e(sla or 'none')}</td></tr>")
    return ('<table id="workloads"><thead><tr><th>workload</th><th>scenario</th>'
            "<th>iterations</th><th>failed</th><th>median (s)</th><th>SLA</th></tr></thead>"
            f"<tbody>{''.join(lines)}</tbody></table>")


def _failures_table(iterations: list[dict[str, Any]]) -> str:
    failed = [item for item in iterations if item["failed"]]
    if not failed:
        return "<p>None.</p>"
    lines = "".join(f"<tr><td class=num>{item['workload']}</td><td class=num>"
                    f"{item['iteration']}</td><td>{_e(item['start'])}</td>"
                    f"<td>{_e(item['error'])}</td></tr>" for item in failed)
    return ('<table id="failures"><thead><tr><th>workload</th><th>iteration</th>'
            f"<th>started (UTC)</th><th>error</th></tr></thead><tbody>{lines}</tbody></table>")


def _register_secrets(run: TaskRun) -> None:
    """Know the secrets this run may quote: in its tags, its task file, its deployment."""
    from benchbed.deployment import Deployment

    masking.register_from(run.tags)
    # a Jinja template no parser reads: its `key: value` lines are masked as text
    with contextlib.suppress(yaml.YAMLError):
        masking.register_from(yaml.safe_load(run.task_text))
    try:
        deployment = Deployment.get(run.deployment_uuid)
    except NotFoundError:
        return  # destroyed: what it held is no longer known here
    masking.register_from(deployment.config)
    masking.register_from(deployment.endpoints)


def _mask_task_text(text: str) -> str:
    return YAML_ASSIGNMENT.sub(
        lambda m: m.group(1) + masking.MASK if masking.is_secret_key(m.group(2))
        else m.group(0), text)


def _seconds_between(step: dict[str, Any]) -> float | None:
    start, end = step.get("start"), step.get("end")
    return float(end) - float(start) if start is not None and end is not None else None


def _naive_utc(value: str) -> float:
    """Epoch seconds of a stored timestamp: naive ones are UTC, as benchbed stores them."""
    moment = datetime.fromisoformat(value)
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds") \
        .replace("+00:00", "Z")


def _iso_datetime(moment: datetime) -> str:
    return _iso(moment.replace(tzinfo=UTC).timestamp() if moment.tzinfo is None
                else moment.timestamp())


def _e(value: Any) -> str:
    return html.escape(str(value))
