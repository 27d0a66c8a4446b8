"""`deployment report` of a real deployment (three netns SSH hosts), opened in headless Chromium.

Runs as root. Network range of this file: 10.254.170.0/26. The page is checked through the
browser's DOM: the waterfall's bars were drawn, no request left the page, and a password
that the deployment holds (seeded into its endpoints and one step's detail, as a failing
command's message would carry it) is nowhere in the HTML.
"""

import json
from pathlib import Path

import pytest
import yaml

from benchbed.deployment import Deployment
from tests.browser import rendered
from tests.conftest import Cli

NETWORK = "10.254.170.0/26"
SEED_PASSWORD = "Report-Seed-Pa55-Hidden"
FAILED_COLOUR = "#e45756"


@pytest.fixture
def reported(bb: Cli, tmp_path: Path) -> dict:
    """A three-host deployment with a seeded secret and one failed step, and its reports."""
    config = tmp_path / "netns.yaml"
    config.write_text(yaml.safe_dump({"type": "ServersEngine", "provider": {
        "type": "NetnsProvider", "network": NETWORK, "amount": 3}}))
    bb.ok("deployment", "create", "--file", str(config), "--name", "reported")
    deployment = Deployment.get("reported")
    servers = [{**server, "password": SEED_PASSWORD}
               for server in deployment.endpoints["servers"]]
    deployment.set_endpoints({"servers": servers})
    first = servers[0]
    with pytest.raises(RuntimeError), deployment.step(
            "log in with password", f"root:{SEED_PASSWORD}@{first['host']}",
            lane=first["name"]):
        raise RuntimeError("refused")
    shown = bb.ok("deployment", "show", "reported").stdout
    every_step = bb.ok("deployment", "show", "reported", "--steps").stdout
    html_path = tmp_path / "report.html"
    bb.ok("deployment", "report", "reported", "--output", str(html_path))
    data = json.loads(bb.ok("deployment", "report", "reported", "--format", "json").stdout)
    return {"html": html_path, "data": data, "servers": servers, "shown": shown,
            "every_step": every_step}


def test_report_of_a_real_deployment(reported: dict, tmp_path: Path) -> None:
    """One deployment for both checks: creating it takes most of the test's time."""
    check_json_report(reported)
    check_show_folds_by_lane(reported)
    check_html_report_in_chromium(reported, tmp_path)


def check_json_report(reported: dict) -> None:
    """Lanes, nesting and masking, as other tools read them."""
    data = reported["data"]
    assert SEED_PASSWORD not in json.dumps(data)
    lanes = {lane["lane"]: lane for lane in data["lanes"]}
    assert next(iter(lanes)) == "deployment"
    assert {server["name"] for server in reported["servers"]} <= set(lanes)
    assert lanes[reported["servers"][0]["name"]]["failed"] == 1
    steps = {step["id"]: step for step in data["timeline"]}
    by_name = {step["step"]: step for step in data["timeline"]}
    # a netns host is created inside "create servers", which runs inside "deploy"
    created = [s for s in data["timeline"] if s["step"] == "create netns host"]
    assert len(created) == 3
    for step in created:
        parent = steps[step["parent_id"]]
        assert parent["step"] == "create servers"
        assert steps[parent["parent_id"]]["step"] == "deploy"
    assert by_name["SSH ready"]["parent_id"] == by_name["wait for SSH"]["id"]
    assert all(s["end"] >= s["start"] >= 0 for s in data["timeline"])
    assert all(server["password"] == "***" for server in data["endpoints"]["servers"])
    assert {r["kind"] for r in data["resources"]} == {"bridge", "netns"}


def check_show_folds_by_lane(reported: dict) -> None:
    """`show`: one line per lane with its total; `show --steps`: one line per step."""
    data = reported["data"]
    timeline = reported["shown"].split("timeline (", 1)[1].splitlines()[2:]
    assert [line.split()[0] for line in timeline] == [lane["lane"] for lane in data["lanes"]]
    failing = next(line for line in timeline if line.startswith(reported["servers"][0]["name"]))
    assert failing.split()[1:3] == ["3", "1"]  # create netns host, SSH ready, the failed login
    steps = reported["every_step"].split("\ntimeline\n", 1)[1].splitlines()[1:]
    assert len(steps) == len(data["timeline"])
    assert SEED_PASSWORD not in reported["shown"] + reported["every_step"]


def check_html_report_in_chromium(reported: dict, tmp_path: Path) -> None:
    """Drawn, offline, without the secret, as a person sees it."""
    html_path, data = reported["html"], reported["data"]
    assert SEED_PASSWORD not in html_path.read_text()
    with rendered(html_path, tmp_path / "report.png", [SEED_PASSWORD], 20_000) as browser:
        bars = "#waterfall svg path[aria-roledescription='bar']"
        assert browser.evaluate(f"document.querySelectorAll(\"{bars}\").length") == \
            len(data["timeline"])
        failed = browser.evaluate(f"[...document.querySelectorAll(\"{bars}\")].filter("
                                  f"b => b.getAttribute('fill') === '{FAILED_COLOUR}').length")
        assert failed == 1
        lanes = browser.evaluate("[...document.querySelectorAll('#waterfall svg text')]"
                                 ".map(t => t.textContent)")
        assert all(lane["lane"] in lanes for lane in data["lanes"])
        assert browser.evaluate("document.querySelectorAll('#steps tbody tr').length") == \
            len(data["timeline"])
        assert browser.evaluate("document.querySelectorAll('#steps tr.failed').length") == 1
