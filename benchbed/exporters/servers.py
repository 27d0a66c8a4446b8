"""Ansible inventory and ssh_config for deployments that expose servers.

Both pin the host keys recorded on first contact, so the real `ssh` and `ansible`
check them exactly as benchbed does.
"""

import re
import shlex
from typing import TYPE_CHECKING, Any

from benchbed import endpoints, paths
from benchbed.endpoints import ServerEntry
from benchbed.errors import InputError

if TYPE_CHECKING:
    from benchbed.deployment import Deployment


def _servers(deployment: "Deployment") -> list[ServerEntry]:
    servers = endpoints.stored(deployment.endpoints).get("servers")
    if not servers:
        raise InputError(f"deployment '{deployment.name}' has no servers to export")
    return servers


def known_hosts_file(deployment: "Deployment") -> str:
    from benchbed import host_keys

    path = deployment.directory / "known_hosts"
    paths.write_private(path, "\n".join(host_keys.known_hosts_lines(deployment)) + "\n")
    return str(path)


def _alias(deployment: "Deployment", index: int, server: ServerEntry) -> str:
    return server.get("name") or f"{deployment.name}-{index}"


# What each ssh_config value may hold. Anything else (white space, quotes, '#', '=', '%' and
# '$' expansions, '*' and '!' patterns, a newline that starts a directive of its own) is
# refused rather than escaped: ssh_config has no quoting that covers all of them.
SSH_TOKENS = {
    "Host": re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}"),
    "HostName": re.compile(r"[A-Za-z0-9][A-Za-z0-9.:-]{0,254}"),
    "User": re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}"),
    "Port": re.compile(r"[0-9]{1,5}"),
    "UserKnownHostsFile": re.compile(r"/[A-Za-z0-9._/+-]{1,4095}"),
    "IdentityFile": re.compile(r"(/|~/)[A-Za-z0-9._/+-]{1,4095}"),
}


def _directive(keyword: str, value: Any, alias: str) -> str:
    text = str(value)
    if isinstance(value, bool) or not SSH_TOKENS[keyword].fullmatch(text):
        raise InputError(f"ssh-config: {keyword} of server {alias[:64]!r} is "
                         f"{text[:80]!r}, which ssh_config cannot hold safely")
    if keyword == "Port" and not 0 < int(text) < 65536:
        raise InputError(f"ssh-config: Port of server {alias[:64]!r} is {text}")
    return f"    {keyword} {text}"


def ssh_config(deployment: "Deployment") -> str:
    known_hosts = known_hosts_file(deployment)
    blocks = []
    for index, server in enumerate(_servers(deployment)):
        alias = str(_alias(deployment, index, server))
        _directive("Host", alias, alias)
        lines = [f"Host {alias}",
                 _directive("HostName", server["host"], alias),
                 _directive("Port", server.get("port", 22), alias),
                 _directive("User", server.get("user", "root"), alias),
                 _directive("UserKnownHostsFile", known_hosts, alias),
                 "    StrictHostKeyChecking yes"]
        # a key given inline (not as a file) has no file for ssh to read: the agent's keys
        # or the user's own configuration apply then
        if server.get("key") and "PRIVATE KEY" not in str(server["key"]):
            lines += [_directive("IdentityFile", server["key"], alias), "    IdentitiesOnly yes"]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def ansible_inventory(deployment: "Deployment") -> str:
    import yaml

    known_hosts = known_hosts_file(deployment)
    hosts: dict[str, dict[str, Any]] = {}
    for index, server in enumerate(_servers(deployment)):
        variables: dict[str, Any] = {
            "ansible_host": server["host"],
            "ansible_port": server.get("port", 22),
            "ansible_user": server.get("user", "root"),
            # ansible splits this with shlex: the path is quoted for it
            "ansible_ssh_common_args": "-o " + shlex.quote(f"UserKnownHostsFile={known_hosts}")
                                       + " -o StrictHostKeyChecking=yes",
        }
        if server.get("key"):
            variables["ansible_ssh_private_key_file"] = server["key"]
        if server.get("password"):
            variables["ansible_password"] = server["password"]
        hosts[_alias(deployment, index, server)] = variables
    group = deployment.name.replace("-", "_")
    return yaml.safe_dump({"all": {"children": {group: {"hosts": hosts}}}}, sort_keys=False)
