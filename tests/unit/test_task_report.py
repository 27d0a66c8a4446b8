"""`task report`: the JSON form, the Vega-Lite spec on one time axis, masking and escaping.

Runs are stored through benchbed.tasks.store (SQLite and PostgreSQL), with synthetic
iterations, samples and deployment timeline; `seeded_run` is shared with the browser test.
"""

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from benchbed import api, masking
from benchbed import report as deployment_report
from benchbed.deployment import Deployment
from benchbed.errors import InputError, NotFoundError
from benchbed.tasks import report, store
from benchbed.tasks.model import Iteration, Sample, TaskRun

SEED = "Task-Report-Seed-S3cret"
DEPLOYMENT_SECRET = "Deployment-Admin-Pa55"
HOSTILE = "</script><script>alert(1)</script><!--"
T0 = datetime(2026, 12, 5, 21, 50, 0)
SERVICES = [("controller", "keystone"), ("controller", "mariadb"),
            ("controller", "rabbitmq-server"), ("glance", "glance-api")]
RUN_UUID = "7a5c0000-1111-2222-3333-444455556666"
TASK_TEXT = f"""---
version: 2
title: keystone and glance
subtasks:
  - title: users
    workloads:
      - scenario: {{KeystoneBasic.create_user: {{}}}}
        runner: {{constant: {{times: 30, concurrency: 2}}}}
        contexts: {{users: {{tenants: 1, users_per_tenant: 1}}}}
        args: {{enabled: true}}
    # the admin's password, as a careless task file holds it
    admin_password: {SEED}
"""


def synthetic_timeline(origin: datetime) -> list[dict[str, Any]]:
    """A deployment's timeline as benchbed.report.timeline gives it: deploy > three steps,
    two of them in a server's lane, one failed and retried."""
    spans = [("deploy", None, None, 0, 0, 240, "ok"),
             ("create servers", None, 1, 0, 2, 40, "ok"),
             ("install keystone", "controller", 1, 0, 42, 150, "ok"),
             ("install glance", "controller", 1, 0, 150, 200, "failed"),
             ("install glance", "controller", 1, 0, 201, 238, "ok")]
    steps = []
    for index, (name, lane, parent, depth, start, end, outcome) in enumerate(spans, 1):
        started, finished = origin + timedelta(seconds=start), origin + timedelta(seconds=end)
        steps.append({"id": index, "parent_id": parent, "lane": lane or "deployment",
                      "depth": depth, "step": name, "detail": f"{HOSTILE} & <b>x</b>"
                      if index == 4 else None, "outcome": outcome,
                      "started_at": started.isoformat(timespec="milliseconds"),
                      "finished_at": finished.isoformat(timespec="milliseconds"),
                      "start": float(start), "end": float(end),
                      "seconds": float(end - start)})
    return steps


def seeded_run(deployment_uuid: str = "d" * 36, iterations_per_workload: int = 30
               ) -> tuple[TaskRun, list[Iteration], list[Sample]]:
    """A finished run of two workloads (the second with failed iterations and a failed SLA)
    and two servers' samples, with a secret seeded in a tag, the task file and errors,
    and a hostile string in a scenario's name and an error."""
    start = T0 + timedelta(seconds=300)
    epoch = start.replace(tzinfo=UTC).timestamp()
    run = TaskRun(uuid=RUN_UUID, deployment_uuid=deployment_uuid, deployment_name="os",
                  task_name="keystone-glance.yaml", task_text=TASK_TEXT, task_digest="a" * 64,
                  config_digest="b" * 64, started_at=start, sample_interval=1.0,
                  tags={"build": "42", "os_password": SEED, "note": HOSTILE},
                  versions={"keystone": "2:22.0.0-1", "glance": "2:25.0.0-1"})
    iterations = []
    for workload, scenario in enumerate(("KeystoneBasic.create_user",
                                         f"GlanceImages.create_and_list_image{HOSTILE}")):
        for index in range(iterations_per_workload):
            started = epoch + 2 + workload * 40 + index * 1.2
            if workload == 0:
                atomic = [("keystone_v3.create_user", 0.3 + index % 5 * 0.04),
                          ("keystone_v3.create_user > post", 0.2)]
                error = None
            else:
                atomic = [("glance_v2.create_image", 0.6 + index % 3 * 0.1),
                          ("glance_v2.list_images", 0.15)]
                error = (f"Unauthorized: {{'password': '{SEED}'}} for {DEPLOYMENT_SECRET} "
                         f"{HOSTILE}") if index % 7 == 3 else None
            duration = sum(seconds for name, seconds in atomic if " > " not in name) + 0.05
            iterations.append(Iteration(scenario, workload, index, started, duration, error,
                                        atomic))
    samples, used = [], dict.fromkeys(SERVICES, 0.0)
    for second in range(90):
        for server, service in SERVICES:
            # CPU-seconds a second: 0.5 for the API services, 0.1 for the others, times 1,
            # 1.25 and 1.5 in turn
            used[server, service] += (0.5 if service in ("keystone", "glance-api") else 0.1) \
                * (1 + second % 3 / 4)
            samples.append(Sample(epoch + second, server, service, used[server, service],
                                  (120 + 40 * len(service) + second % 11) << 20))
    run.status, run.sla_ok = "finished", False
    run.finished_at = start + timedelta(seconds=90)
    run.rally_task_uuid = "e" * 36
    run.error = f"SLA failed; rally said password={SEED}"
    run.scenarios = [
        {"workload": 0, "scenario": "KeystoneBasic.create_user",
         "sla": [{"criterion": "failure_rate", "success": True, "detail": "0% <= 0%"}]},
        {"workload": 1, "scenario": f"GlanceImages.create_and_list_image{HOSTILE}",
         "sla": [{"criterion": "failure_rate", "success": False,
                  "detail": f"13% > 0% {HOSTILE}"}]}]
    run.deployment_timeline = synthetic_timeline(T0)
    return run, iterations, samples


def store_run(*parts: Any) -> TaskRun:
    run, iterations, samples = parts or seeded_run()
    store.add(run)
    store.finish(run, iterations, samples)
    return run


def test_json_form_holds_the_three_series_in_documented_keys(database: str) -> None:
    store_run()
    data = json.loads(api.task_report(RUN_UUID[:6], "json"))
    assert list(data) == ["run", "task_text", "workloads", "iterations", "atomic", "cpu",
                          "memory", "deployment_timeline"]
    assert data["run"]["uuid"] == RUN_UUID and data["run"]["seconds"] == 90.0
    assert data["run"]["started_at"] == "2026-12-05T21:55:00.000Z"
    assert data["run"]["versions"]["keystone"] == "2:22.0.0-1"
    assert len(data["iterations"]) == 60
    assert [i["iteration"] for i in data["iterations"] if i["failed"]] == [3, 10, 17, 24]
    workloads = {w["workload"]: w for w in data["workloads"]}
    assert (workloads[0]["sla_ok"], workloads[1]["sla_ok"]) == (True, False)
    assert (workloads[1]["iterations"], workloads[1]["failed"]) == (30, 4)
    assert workloads[0]["median"] == pytest.approx(0.43)
    # a bar's segments add up to the iteration's duration, nested actions not counted twice
    first = [bar for bar in data["atomic"] if bar["workload"] == 0 and bar["iteration"] == 0]
    assert [bar["action"] for bar in first] == ["keystone_v3.create_user", report.OUTSIDE]
    assert sum(bar["seconds"] for bar in first) == pytest.approx(data["iterations"][0]
                                                                 ["duration"])
    # 4 series, 90 samples each: 89 rates (the first sample of a series has none)
    assert {row["series"] for row in data["cpu"]} == {
        "controller/keystone", "controller/mariadb", "controller/rabbitmq-server",
        "glance/glance-api"}
    assert len(data["cpu"]) == 4 * 89 and len(data["memory"]) == 4 * 90
    keystone = [row["cpu"] for row in data["cpu"] if row["series"] == "controller/keystone"]
    assert keystone[:3] == [0.625, 0.75, 0.5]
    assert data["memory"][0]["mb"] == pytest.approx((120 + 40 * 8 << 20) / 1e6, abs=0.001)
    steps = data["deployment_timeline"]
    assert [s["outcome"] for s in steps].count("failed") == 1
    assert steps[0]["start"] == "2026-12-05T21:50:00.000Z"
    assert steps[0]["end"] == "2026-12-05T21:54:00.000Z"


def test_the_spec_draws_the_three_series_on_one_shared_time_axis(database: str) -> None:
    store_run()
    data = report.build(store.get(RUN_UUID), store.iterations(RUN_UUID),
                        store.samples(RUN_UUID))
    spec = report.chart_spec(data)
    assert spec["resolve"]["scale"]["x"] == "shared"
    iterations, resources, deployment = spec["vconcat"]
    cpu, memory = resources["vconcat"]
    assert resources["resolve"]["scale"]["x"] == "shared"
    # every panel's x is absolute time on the same (UTC) scale
    encodings = [layer["encoding"] for layer in iterations["layer"]] + [
        cpu["encoding"], memory["encoding"], deployment["encoding"]]
    assert {(e["x"]["type"], e["x"]["scale"]["type"]) for e in encodings} == {("temporal",
                                                                                "utc")}
    bars, failed = iterations["layer"]
    assert (bars["mark"]["type"], bars["data"]["name"]) == ("bar", "atomic")
    assert bars["encoding"]["y"]["stack"] == "zero"
    assert bars["encoding"]["color"]["field"] == "action"
    assert failed["transform"] == [{"filter": "datum.failed"}]
    assert (cpu["data"]["name"], cpu["encoding"]["y"]["field"]) == ("cpu", "cpu")
    assert (memory["data"]["name"], memory["encoding"]["y"]["field"]) == ("memory", "mb")
    assert deployment["data"]["name"] == "deployment_timeline"
    assert deployment["encoding"]["x2"]["field"] == "end"
    # the charts read exactly what the JSON form holds
    for name, rows in spec["datasets"].items():
        assert rows == data[name] and rows, name
    # one zoom, bound to the shared scale, from the panels that can start a drag
    assert [p["name"] for p in bars["params"]] == ["zoom"]
    assert cpu["params"][0]["bind"] == "scales" and memory["params"] == []


def test_secrets_appear_nowhere(database: str) -> None:
    deployment = Deployment.create("os", {"type": "ExistingCloud",
                                          "auth_url": "http://127.0.0.1:1/v3",
                                          "admin": {"username": "admin",
                                                    "password": DEPLOYMENT_SECRET}})
    store_run(*seeded_run(deployment.uuid))
    masking._known_secrets.clear()  # a fresh process: nothing is known until the report
    for fmt in ("json", "html"):
        text = api.task_report(RUN_UUID, fmt)
        assert SEED not in text and DEPLOYMENT_SECRET not in text, fmt
    data = json.loads(api.task_report(RUN_UUID, "json"))
    assert data["run"]["tags"]["os_password"] == "***"
    assert "admin_password: ***" in data["task_text"]
    assert "Unauthorized: {'password': ***} for *** " in data["iterations"][33]["error"]


def test_a_task_file_no_parser_reads_is_masked_line_by_line(database: str) -> None:
    run, iterations, samples = seeded_run()
    run.task_text = "{% set x = 1 %}\nargs:\n  - password: " + SEED + "\n  token: 'abc'\n"
    store_run(run, iterations, samples)
    text = json.loads(api.task_report(RUN_UUID, "json"))["task_text"]
    assert text == "{% set x = 1 %}\nargs:\n  - password: ***\n  token: ***\n"


def test_no_string_breaks_out_of_the_page(database: str) -> None:
    store_run()
    page = api.task_report(RUN_UUID, "html")
    # three vendored libraries, the spec and the boot script: no other script element
    assert page.count("</script>") == 5
    assert page.count("<script") == 5
    assert "<b>x</b>" not in page and "alert(1)" in page  # escaped, not dropped
    assert "&lt;/script&gt;&lt;script&gt;alert(1)" in page  # in the tables, as text
    spec_text = re.search(r'<script type="application/json" id="timeline-spec" '
                          r'data-chart="timeline">(.*?)</script>', page, re.S)
    assert spec_text is not None
    assert HOSTILE in json.dumps(json.loads(spec_text.group(1)))  # intact, as data
    assert "<" not in spec_text.group(1)


def test_a_real_deployment_timeline_is_drawn_as_stored(database: str) -> None:
    deployment = Deployment.create("real", {"type": "ExistingCloud",
                                            "auth_url": "http://127.0.0.1:1/v3"})
    with deployment.step("deploy"), deployment.step("probe", lane="host-a"):
        pass
    rows = deployment.timeline()
    run, iterations, samples = seeded_run(deployment.uuid)
    run.deployment_timeline = deployment_report.timeline(rows)
    store_run(run, iterations, samples)
    steps = json.loads(api.task_report(RUN_UUID, "json"))["deployment_timeline"]
    assert [(s["step"], s["lane"], s["depth"]) for s in steps] == [
        ("deploy", "deployment", 0), ("probe", "host-a", 0)]
    started = rows[0].started_at.replace(tzinfo=UTC)
    assert steps[0]["start"] == started.isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")
    assert steps[0]["end"] >= steps[1]["end"] >= steps[1]["start"] >= steps[0]["start"]


def test_a_run_with_nothing_to_draw_still_reports(database: str) -> None:
    run, _, _ = seeded_run()
    run.deployment_timeline = []
    store_run(run, [], [])
    data = json.loads(api.task_report(RUN_UUID, "json"))
    assert data["iterations"] == data["cpu"] == data["deployment_timeline"] == []
    assert [w["iterations"] for w in data["workloads"]] == [0, 0]
    assert "Nothing to draw: no iterations, no samples, no deployment steps" in \
        api.task_report(RUN_UUID, "html")


def test_bad_input_is_named(database: str) -> None:
    with pytest.raises(NotFoundError, match="no task run 'nope'"):
        api.task_report("nope")
    store_run()
    with pytest.raises(InputError, match="unknown report format 'pdf'"):
        api.task_report(RUN_UUID, "pdf")
