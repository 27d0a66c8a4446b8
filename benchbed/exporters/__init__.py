"""Turn a deployment's endpoints into what benchmark clients read.

`FORMATS` is the one list of export formats: `deployment export --format` offers its keys.
The exporters import their libraries (yaml, paramiko) when they run, so the CLI reads this
list without paying for them.
"""

import json
from collections.abc import Callable
from typing import TYPE_CHECKING

from benchbed.errors import InputError
from benchbed.exporters import openstack, servers

if TYPE_CHECKING:
    from benchbed.deployment import Deployment


def _json(deployment: "Deployment") -> str:
    return json.dumps(deployment.endpoints, indent=2, sort_keys=True) + "\n"


FORMATS: dict[str, Callable[["Deployment"], str]] = {
    "openrc": openstack.openrc,
    "clouds.yaml": openstack.clouds_yaml,
    "rally-spec": openstack.rally_spec,
    "json": _json,
    "ansible-inventory": servers.ansible_inventory,
    "ssh-config": servers.ssh_config,
}


def render(deployment: "Deployment", fmt: str) -> str:
    if fmt not in FORMATS:
        raise InputError(f"unknown export format '{fmt}' (known: {', '.join(FORMATS)})")
    return FORMATS[fmt](deployment)
