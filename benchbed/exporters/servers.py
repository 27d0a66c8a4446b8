"""Ansible inventory and ssh_config for deployments that expose servers.

Both pin the host keys recorded on first contact, so the real `ssh` and `ansible`
check them exactly as benchbed does.
"""

from typing import Any

import yaml

from benchbed import host_keys, paths
from benchbed.deployment import Deployment
from benchbed.errors import InputError


def _servers(deployment: Deployment) -> list[dict[str, Any]]:
    servers = deployment.endpoints.get("servers")
    if not servers:
        raise InputError(f"deployment '{deployment.name}' has no servers to export")
    return servers


def known_hosts_file(deployment: Deployment) -> str:
    path = deployment.directory / "known_hosts"
    paths.write_private(path, "\n".join(host_keys.known_hosts_lines(deployment)) + "\n")
    return str(path)


def _alias(deployment: Deployment, index: int, server: dict[str, Any]) -> str:
    return server.get("name") or f"{deployment.name}-{index}"


def ssh_config(deployment: Deployment) -> str:
    known_hosts = known_hosts_file(deployment)
    blocks = []
    for index, server in enumerate(_servers(deployment)):
        lines = [f"Host {_alias(deployment, index, server)}",
                 f"    HostName {server['host']}",
                 f"    Port {server.get('port', 22)}",
                 f"    User {server.get('user', 'root')}",
                 f"    UserKnownHostsFile {known_hosts}",
                 "    StrictHostKeyChecking yes"]
        if server.get("key"):
            lines += [f"    IdentityFile {server['key']}", "    IdentitiesOnly yes"]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def ansible_inventory(deployment: Deployment) -> str:
    known_hosts = known_hosts_file(deployment)
    hosts: dict[str, dict[str, Any]] = {}
    for index, server in enumerate(_servers(deployment)):
        variables: dict[str, Any] = {
            "ansible_host": server["host"],
            "ansible_port": server.get("port", 22),
            "ansible_user": server.get("user", "root"),
            "ansible_ssh_common_args": f"-o UserKnownHostsFile={known_hosts} "
                                       "-o StrictHostKeyChecking=yes",
        }
        if server.get("key"):
            variables["ansible_ssh_private_key_file"] = server["key"]
        if server.get("password"):
            variables["ansible_password"] = server["password"]
        hosts[_alias(deployment, index, server)] = variables
    group = deployment.name.replace("-", "_")
    return yaml.safe_dump({"all": {"children": {group: {"hosts": hosts}}}}, sort_keys=False)
