"""Turn a deployment's endpoints into what benchmark clients read."""

import json
from collections.abc import Callable

from benchbed.deployment import Deployment
from benchbed.errors import InputError
from benchbed.exporters import openstack, servers

FORMATS: dict[str, Callable[[Deployment], str]] = {
    "openrc": openstack.openrc,
    "clouds.yaml": openstack.clouds_yaml,
    "rally-spec": openstack.rally_spec,
    "json": lambda deployment: json.dumps(deployment.endpoints, indent=2, sort_keys=True) + "\n",
    "ansible-inventory": servers.ansible_inventory,
    "ssh-config": servers.ssh_config,
}


def render(deployment: Deployment, fmt: str) -> str:
    if fmt not in FORMATS:
        raise InputError(f"unknown export format '{fmt}' (known: {', '.join(FORMATS)})")
    return FORMATS[fmt](deployment)
