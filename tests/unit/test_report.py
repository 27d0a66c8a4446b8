"""Timeline nesting and lanes, the report's assembly and its HTML, the schema upgrade to 0003."""

import json
import re
import sqlite3
import threading
from pathlib import Path

import pytest

from benchbed import report
from benchbed.db import session as db_session
from benchbed.deployment import Deployment
from benchbed.errors import InputError
from benchbed.parallel import run_parallel
from benchbed.report.html import render, waterfall_spec

CONFIG = {"type": "ExistingCloud", "auth_url": "http://127.0.0.1:1/v3",
          "admin": {"username": "admin", "password": "Report-Unit-Secret-1"}}


def nested_deployment(name: str) -> Deployment:
    """deploy > create servers > (one step per server, in parallel threads, in its lane)."""
    deployment = Deployment.create(name, CONFIG)
    with deployment.step("deploy"), deployment.step("create servers"):
        def create(server: str) -> None:
            with deployment.step("create host", server, lane=server), \
                    deployment.step("wait", server):
                assert threading.current_thread() is not threading.main_thread()

        run_parallel("creating", ["host-a", "host-b"], create)
        with pytest.raises(RuntimeError), deployment.step("probe", lane="host-b"):
            raise RuntimeError("no")
    return deployment


def test_steps_nest_across_threads_and_inherit_their_lane(database: str) -> None:
    deployment = nested_deployment("nest")
    rows = {row.id: row for row in deployment.timeline()}
    named = {(row.step, row.detail): row for row in rows.values()}
    deploy = named[("deploy", None)]
    servers = named[("create servers", None)]
    assert deploy.parent_id is None and deploy.lane is None
    assert servers.parent_id == deploy.id
    for host in ("host-a", "host-b"):
        created, waited = named[("create host", host)], named[("wait", host)]
        assert created.parent_id == servers.id and created.lane == host
        assert waited.parent_id == created.id and waited.lane == host
    # after the parallel work, the main thread's current step is "create servers" again
    assert named[("probe", None)].parent_id == servers.id


def test_report_folds_lanes_and_indents_within_a_lane(database: str) -> None:
    data = report.build(nested_deployment("fold"))
    lanes = {lane["lane"]: lane for lane in data["lanes"]}
    # the deployment's lane first, then by start: the two hosts start in parallel, either first
    assert next(iter(lanes)) == "deployment"
    assert set(lanes) == {"deployment", "host-a", "host-b"}
    assert lanes["deployment"]["steps"] == 2
    assert (lanes["host-b"]["steps"], lanes["host-b"]["failed"]) == (3, 1)
    assert lanes["host-a"]["seconds"] <= lanes["deployment"]["seconds"]
    depth = {(s["step"], s["lane"]): s["depth"] for s in data["timeline"]}
    assert depth[("deploy", "deployment")] == 0
    assert depth[("create servers", "deployment")] == 1
    assert depth[("create host", "host-a")] == 0
    assert depth[("wait", "host-a")] == 1
    assert "Report-Unit-Secret-1" not in json.dumps(data)


def test_html_cannot_be_broken_out_of_by_a_step_name(database: str) -> None:
    deployment = Deployment.create("hostile", CONFIG)
    hostile = "</script><script>alert(1)</script><!--"
    with deployment.step(hostile, "& <b>bold</b>"):
        pass
    page = render(report.build(deployment))
    # three vendored libraries, the spec and the boot script: no other script element
    assert page.count("</script>") == 5
    assert "<b>bold</b>" not in page
    assert "Report-Unit-Secret-1" not in page
    assert not re.search(r"https?://(?!127\.0\.0\.1:1/v3)", _without_vendored(page))
    spec = waterfall_spec(report.build(deployment))
    assert spec["params"][0]["value"] == {str(deployment.timeline()[0].id): hostile}


def _without_vendored(page: str) -> str:
    """The page minus the inlined libraries (whose licence comments name their homepages)."""
    return re.sub(r"<script>.*?</script>", "", page, flags=re.S)


def test_unknown_format_is_bad_input(database: str) -> None:
    with pytest.raises(InputError, match="unknown report format 'pdf'"):
        report.render(Deployment.create("fmt", CONFIG), "pdf")


def test_a_database_at_0001_is_upgraded_and_keeps_its_steps(home: Path) -> None:
    """An existing 0001 database reaches the head: its old steps have no parent nor lane."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine

    home.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{home / 'benchbed.sqlite'}"
    config = Config()
    config.set_main_option("script_location", str(db_session.MIGRATIONS))
    config.attributes["connection_engine"] = create_engine(url)
    command.upgrade(config, "0001")
    with sqlite3.connect(home / "benchbed.sqlite") as db:
        db.execute("INSERT INTO deployments (uuid, name, config, status, created_at, "
                   "updated_at) VALUES ('u1', 'old', '{}', 'deploy->finished', "
                   "'2026-01-01 00:00:00', '2026-01-01 00:00:00')")
        db.execute("INSERT INTO timeline (deployment_uuid, step, started_at, finished_at, "
                   "outcome) VALUES ('u1', 'deploy', '2026-01-01 00:00:00', "
                   "'2026-01-01 00:00:02', 'ok')")
    db_session.engine.cache_clear()
    data = report.build(Deployment.get("old"))
    assert [(s["step"], s["lane"], s["parent_id"], s["seconds"]) for s in data["timeline"]] == \
        [("deploy", "deployment", None, 2.0)]
