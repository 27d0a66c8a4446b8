"""`task report` of a stored run, written by the real CLI and opened in headless Chromium.

The run (two workloads, failed iterations, four services' samples, a deployment timeline
with a failed step) is stored through benchbed.tasks.store in the test's home, beside a
deployment whose admin password, with a seeded secret in a tag and the task file, an
error message quotes. The page is checked through the browser's DOM: every panel drew its
marks, the panels share one time axis (and zoom together), no request left the page, no
Content-Security-Policy violation, and no secret is anywhere in it.
"""

import json
import time
from pathlib import Path
from typing import Any

import pytest

from benchbed.deployment import Deployment
from tests.browser import Browser, rendered, task_marks
from tests.conftest import Cli
from tests.unit.test_task_report import DEPLOYMENT_SECRET, RUN_UUID, SEED, seeded_run, store_run


@pytest.fixture
def reported(bb: Cli, tmp_path: Path) -> dict[str, Any]:
    """The run stored beside its deployment, and its report in both forms, by the CLI."""
    deployment = Deployment.create("os", {"type": "ExistingCloud",
                                          "auth_url": "http://127.0.0.1:1/v3",
                                          "admin": {"username": "admin",
                                                    "password": DEPLOYMENT_SECRET}})
    store_run(*seeded_run(deployment.uuid))
    html_path = tmp_path / "run.html"
    bb.ok("task", "report", RUN_UUID[:8], "--output", str(html_path))
    data = json.loads(bb.ok("task", "report", RUN_UUID, "--format", "json").stdout)
    missing = bb("task", "report", "00000000")
    return {"html": html_path, "data": data, "missing": missing}


def test_task_report_in_chromium(reported: dict[str, Any], tmp_path: Path) -> None:
    html_path, data = reported["html"], reported["data"]
    assert html_path.stat().st_mode & 0o777 == 0o600
    assert reported["missing"].returncode == 2
    assert reported["missing"].stderr.strip() == "benchbed: error: no task run '00000000'"
    text = html_path.read_text() + json.dumps(data)
    assert SEED not in text and DEPLOYMENT_SECRET not in text
    screenshot = tmp_path / "task-report.png"
    with rendered(html_path, screenshot, [SEED, DEPLOYMENT_SECRET], 50_000) as browser:
        marks = task_marks(browser)
        series = {row["series"] for row in data["memory"]}
        assert marks == {"atomic": len(data["atomic"]),
                         "failed": sum(i["failed"] for i in data["iterations"]),
                         "cpu": len(series), "memory": len(series),
                         "deployment": len(data["deployment_timeline"])}
        assert marks["failed"] == 4 and len(series) == 4
        # every line has a shape, not just an element: a path with many segments
        lengths = browser.evaluate("[...document.querySelectorAll('#timeline svg "
                                   "g.cpu_marks > path, #timeline svg g.memory_marks > path')]"
                                   ".map(p => p.getTotalLength())")
        assert len(lengths) == 8 and min(lengths) > 100
        before = _time_domains(browser)
        assert before[0].startswith("values from 21:49:") and before == [before[0]] * 4
        _zoom_in(browser)
        after = _time_domains(browser)
        deadline = time.monotonic() + 10
        while after[0] == before[0] and time.monotonic() < deadline:
            time.sleep(0.2)
            after = _time_domains(browser)
        assert after[0] != before[0] and after == [after[0]] * 4, (before, after)
        assert browser.evaluate("document.querySelectorAll('#failures tbody tr').length") == 4


def _time_domains(browser: Browser) -> list[str]:
    """The span each of the four panels' time axis shows, top to bottom, as Vega describes
    it to screen readers ("X-axis ... with values from 21:49:57 to 21:56:31")."""
    return browser.evaluate(
        "['iterations', 'cpu', 'memory', 'deployment'].map(name => [...document."
        "querySelectorAll(`#timeline svg g.${name}_group g.role-axis[aria-label^='X-axis']`)]"
        ".map(axis => axis.getAttribute('aria-label').split(' with ')[1]).join())")


def _zoom_in(browser: Browser) -> None:
    """Scroll up over the middle of the CPU panel, as a person zooms in."""
    box = browser.evaluate("(() => { const r = document.querySelector('#timeline svg "
                           "g.cpu_group').getBoundingClientRect(); window.scrollTo(0, r.top "
                           "+ window.scrollY - 100); const s = document.querySelector("
                           "'#timeline svg g.cpu_group').getBoundingClientRect(); "
                           "return [s.left + s.width / 2, s.top + s.height / 2]; })()")
    for _ in range(5):
        browser.call("Input.dispatchMouseEvent", session=browser.session, type="mouseWheel",
                     x=box[0], y=box[1], deltaX=0, deltaY=-300)
