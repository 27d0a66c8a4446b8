"""The report as one self-contained HTML file: a Vega-Lite waterfall plus plain HTML tables.

Vega-Lite draws the waterfall from a declarative spec built here, so the chart is data
that Python writes and tests can read; Vega, Vega-Lite and vega-embed (BSD-3, vendored
from npm by tools/vendor-report-js.sh) are inlined, and a Content-Security-Policy forbids
the page any request: the file opens the same offline, from a mail or an archive. The
tables are rendered here, so they read without JavaScript too.
"""

import html
import json
from importlib.resources import files
from typing import Any

import yaml

VENDORED = ("vega.min.js", "vega-lite.min.js", "vega-embed.min.js")
# Vega compiles its expressions with Function(): 'unsafe-eval', and nothing may be fetched.
CSP = ("default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; "
       "style-src 'unsafe-inline'; img-src data:")
OUTCOME_COLOURS = {"ok": "#4c78a8", "failed": "#e45756", "running": "#bab0ac"}
ROW_PIXELS = 18

STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }
h1 { font-size: 1.5em; margin-bottom: .2em; }
h2 { font-size: 1.15em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; }
th, td { text-align: left; padding: 2px 10px 2px 0; vertical-align: top; }
th { border-bottom: 1px solid #aaa; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.failed td { color: #b00; font-weight: 600; }
pre { background: #f6f6f6; padding: .8em; overflow-x: auto; }
.status { padding: 1px 8px; border-radius: 4px; background: #ddd; }
.status.ok { background: #cfe8cf; } .status.bad { background: #f4c7c7; }
#chart-error { color: #b00; }
"""

# Draws every chart whose spec a `data-chart` script element holds, into the element it names;
# body[data-chart] says when all are drawn (or that one failed), for people and tests alike.
BOOT = """
const specs = [...document.querySelectorAll("script[data-chart]")];
Promise.all(specs.map(spec => vegaEmbed("#" + spec.dataset.chart, JSON.parse(spec.textContent),
                                        {renderer: "svg", actions: false})))
  .then(() => document.body.dataset.chart = "rendered")
  .catch(error => {
    document.body.dataset.chart = "failed";
    document.getElementById("chart-error").textContent = "the chart failed: " + error;
  });
"""


def render(report: dict[str, Any]) -> str:
    """The HTML page of an assembled (and already masked) report."""
    deployment = report["deployment"]
    status = deployment["status"]
    status_class = "ok" if status.endswith("finished") else "bad" if "fail" in status or \
        "inconsistent" in status else ""
    facts = "".join(f"<tr><th>{_e(key)}</th><td>{_e(value)}</td></tr>"
                    for key, value in deployment.items() if value)
    name = _e(deployment["name"])
    body = f"""<h1>{name} <span class="status {status_class}">{_e(status)}</span></h1>
<table class="facts">{facts}</table>
<h2>Where the time went</h2>
<div id="waterfall"></div><p id="chart-error"></p>
{_steps_table(report["timeline"])}
<h2>Resources in the ledger</h2>
{_resources_table(report["resources"])}
<h2>Endpoints</h2>
<pre>{_e(_yaml(report["endpoints"]))}</pre>
<h2>Config</h2>
<pre>{_e(_yaml(report["config"]))}</pre>"""
    return page(f"benchbed report: {deployment['name']}", body,
                {"waterfall": waterfall_spec(report)})


def page(title: str, body: str, charts: dict[str, dict[str, Any]], style: str = "") -> str:
    """A self-contained page: `body` (HTML, escaped by the caller), then one Vega-Lite chart
    per entry of `charts` (element id: spec), drawn into the element of that id that `body`
    holds, with the vendored scripts inlined and a policy that forbids every request.

    `body` holds an element `chart-error`, where a chart that fails says so. Every page of
    benchbed is made here: the scripts and the policy have this one place.
    """
    specs = "\n".join(f'<script type="application/json" id="{_e(element)}-spec" '
                      f'data-chart="{_e(element)}">{_script_json(spec)}</script>'
                      for element, spec in charts.items())
    scripts = "\n".join(f"<script>{_vendored(name)}</script>" for name in VENDORED)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<title>{_e(title)}</title>
<style>{STYLE}{style}</style>
</head>
<body>
{body}
{specs}
{scripts}
<script>{BOOT}</script>
</body>
</html>
"""


def waterfall_spec(report: dict[str, Any]) -> dict[str, Any]:
    """Vega-Lite: one bar per step on a time axis, one panel (lane) per server or node.

    Rows are keyed by step id (two steps may share a name); their axis labels, indented by
    depth, come from a lookup in the `labels` parameter.
    """
    steps = report["timeline"]
    labels = {str(step["id"]): "\u2003" * step["depth"] + ("\u2514 " if step["depth"] else "")
              + step["step"] for step in steps}
    values = [{**step, "row": str(step["id"]), "detail": step["detail"] or "",
               "duration": "still running" if step["seconds"] is None
               else f"{step['seconds']:.2f} s"} for step in steps]
    return {
        "description": f"timeline of deployment {report['deployment']['name']}",
        "params": [{"name": "labels", "value": labels}],
        "data": {"values": values},
        "facet": {"row": {"field": "lane", "type": "nominal",
                          "sort": [lane["lane"] for lane in report["lanes"]],
                          "header": {"title": None, "labelAngle": 0, "labelAlign": "left",
                                     "labelFontWeight": "bold"}}},
        "spacing": 8,
        "resolve": {"scale": {"y": "independent"}},
        "spec": {
            "width": 760,
            "height": {"step": ROW_PIXELS},
            "mark": {"type": "bar", "cornerRadius": 2, "minBandSize": 2},
            "encoding": {
                "y": {"field": "row", "type": "nominal", "sort": {"field": "id"},
                      "axis": {"title": None, "labelExpr": "labels[datum.value]",
                               "labelLimit": 320}},
                "x": {"field": "start", "type": "quantitative",
                      "title": "seconds since the first step"},
                "x2": {"field": "end"},
                "color": {"field": "outcome", "type": "nominal", "title": "outcome",
                          "scale": {"domain": list(OUTCOME_COLOURS),
                                    "range": list(OUTCOME_COLOURS.values())}},
                "tooltip": [
                    {"field": "step"}, {"field": "detail"}, {"field": "lane"},
                    {"field": "outcome"}, {"field": "duration"},
                    {"field": "start", "title": "starts at (s)"},
                    {"field": "started_at", "title": "started (UTC)"},
                ],
            },
        },
    }


def _steps_table(steps: list[dict[str, Any]]) -> str:
    rows = []
    for step in steps:
        indent = "\u2003" * step["depth"]
        seconds = "running" if step["seconds"] is None else f"{step['seconds']:.2f}"
        css = ' class="failed"' if step["outcome"] == "failed" else ""
        rows.append(f"<tr{css}><td>{_e(step['lane'])}</td><td>{indent}{_e(step['step'])}</td>"
                    f"<td>{_e(step['detail'] or '')}</td><td>{_e(step['outcome'])}</td>"
                    f"<td class=num>{step['start']:.2f}</td><td class=num>{seconds}</td></tr>")
    if not rows:
        return "<p>No steps recorded.</p>"
    return ('<table id="steps"><thead><tr><th>lane</th><th>step</th><th>detail</th>'
            "<th>outcome</th><th>starts at (s)</th><th>seconds</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")


def _resources_table(resources: list[dict[str, Any]]) -> str:
    if not resources:
        return "<p>None: nothing of this deployment is left to remove.</p>"
    rows = "".join(f"<tr><td>{_e(r['scope'])}</td><td>{_e(r['kind'])}</td>"
                   f"<td>{_e(r['name'])}</td><td>{_e(r['state'])}</td></tr>" for r in resources)
    return ('<table id="resources"><thead><tr><th>scope</th><th>kind</th><th>name</th>'
            f"<th>state</th></tr></thead><tbody>{rows}</tbody></table>")


def _vendored(name: str) -> str:
    return files("benchbed.report").joinpath("vendor", name).read_text(encoding="utf-8")


def _script_json(data: Any) -> str:
    """JSON that cannot end its <script> element early, whatever the strings in it hold."""
    return (json.dumps(data, default=str).replace("<", "\\u003c").replace(">", "\\u003e")
            .replace("&", "\\u0026"))


def _yaml(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False).strip() if data else "(none)"


def _e(value: Any) -> str:
    return html.escape(str(value))
