"""benchbed.api from a plain Python script, without the CLI: create, list, show (masked),
export, destroy, with real sshd hosts in network namespaces (root). Network 10.254.151.0/29.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ledger_rows

pytestmark = pytest.mark.root

SCRIPT = r'''
import json, sys
from benchbed import api

password = "api-seeded-" + "s3cret-value"
cloud = {"type": "ExistingCloud", "auth_url": "http://192.0.2.10:5000/v3",
         "admin": {"username": "admin", "password": password, "project_name": "admin"}}
api.create("api-cloud", cloud, preflight=False)
hosts = {"type": "ServersEngine", "amount": 2,
         "provider": {"type": "NetnsProvider", "network": "10.254.151.0/29"}}
api.create("api-hosts", hosts)
listed = sorted(row["name"] for row in api.list_deployments())
shown = api.show("api-cloud")
openrc = api.export("api-cloud", "openrc")
checked = api.check("api-hosts")
resources = api.show("api-hosts")["resources"]
api.destroy("api-hosts")
api.destroy("api-cloud")
print(json.dumps({"listed": listed, "shown": shown, "openrc": openrc, "password": password,
                  "checked": [[r.target, r.ok] for r in checked], "resources": resources,
                  "after": api.list_deployments()}))
'''


def test_the_api_without_the_cli(home: Path) -> None:
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["listed"] == ["api-cloud", "api-hosts"]
    assert out["password"] not in json.dumps(out["shown"])
    assert out["shown"]["endpoints"]["openstack"]["admin"]["password"] != out["password"]
    assert f"OS_PASSWORD='{out['password']}'" in out["openrc"] or out["password"] in out["openrc"]
    assert [ok for _, ok in out["checked"]] == [True, True]
    assert {r["kind"] for r in out["resources"]} == {"bridge", "netns"}
    assert out["after"] == []
    assert ledger_rows(home) == 0
