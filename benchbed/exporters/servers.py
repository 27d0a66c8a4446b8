"""Ansible inventory and ssh_config for deployments that expose servers.

Both pin the host keys recorded on first contact, so the real `ssh` and `ansible`
check them exactly as benchbed does. Both readers evaluate what they read (ssh expands `%`
tokens and `${VAR}` in paths, Ansible renders Jinja in every variable), so every value
from a config or a server passes one writer per format that leaves nothing to evaluate.
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


# What each name-like ssh_config value may hold. Anything else (white space, quotes, '#',
# '=', '%' and '$' expansions, '*' and '!' patterns, a newline that starts a directive of its
# own) is refused: a name that needs them is no name ssh or Ansible can use as written
# (Ansible's inventory reads 'web[1:3]' as three hosts and 'web:2222' as a port).
SSH_TOKENS = {
    "Host": re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}"),
    "HostName": re.compile(r"[A-Za-z0-9][A-Za-z0-9.:-]{0,254}"),
    "User": re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}"),
    "Port": re.compile(r"[0-9]{1,5}"),
}
# Paths are quoted instead, so a space or a '#' in them is fine. What no quoting covers:
# control characters (a newline ends the directive), '"' and '\' (older ssh has no escape
# for them), '${' (ssh expands environment variables in paths and has no escape for that).
_UNQUOTABLE_PATH = re.compile(r'[\x00-\x1f\x7f"\\]|\$\{')


_READERS = {"ssh-config": "ssh_config", "ansible-inventory": "an Ansible inventory"}


def _refused(fmt: str, keyword: str, alias: str, text: str) -> InputError:
    return InputError(f"{fmt}: {keyword} of server {alias[:64]!r} is {text[:80]!r}, "
                      f"which {_READERS[fmt]} cannot hold safely")


def _alias(deployment: "Deployment", index: int, server: ServerEntry, fmt: str) -> str:
    """The server's host name in both exports: one ssh_config and Ansible take literally."""
    alias = str(server.get("name") or f"{deployment.name}-{index}")
    if not SSH_TOKENS["Host"].fullmatch(alias):
        raise _refused(fmt, "name", alias, alias)
    return alias


def _directive(keyword: str, value: Any, alias: str) -> str:
    text = str(value)
    if isinstance(value, bool) or not SSH_TOKENS[keyword].fullmatch(text):
        raise _refused("ssh-config", keyword, alias, text)
    if keyword == "Port" and not 0 < int(text) < 65536:
        raise InputError(f"ssh-config: Port of server {alias[:64]!r} is {text}")
    return f"    {keyword} {text}"


def ssh_path(value: Any, keyword: str, alias: str, fmt: str = "ssh-config") -> str:
    """`value` as one double-quoted ssh argument that ssh reads back as exactly that path:
    '%' doubled so no token expands; what no quoting covers is refused."""
    text = str(value)
    if not text or _UNQUOTABLE_PATH.search(text):
        raise _refused(fmt, keyword, alias, text)
    return '"' + text.replace("%", "%%") + '"'


def _key_file(server: ServerEntry, alias: str, fmt: str) -> str | None:
    """The server's key file, if its key is one: a key given inline (not as a file) has no
    file for ssh to read, so the agent's keys or the user's own configuration apply then."""
    key = server.get("key")
    if not key or "PRIVATE KEY" in str(key):
        return None
    if not str(key).startswith(("/", "~/")):
        raise _refused(fmt, "key", alias, str(key))
    return str(key)


def ssh_config(deployment: "Deployment") -> str:
    known_hosts = known_hosts_file(deployment)
    blocks = []
    for index, server in enumerate(_servers(deployment)):
        alias = _alias(deployment, index, server, "ssh-config")
        lines = [f"Host {alias}",
                 _directive("HostName", server["host"], alias),
                 _directive("Port", server.get("port", 22), alias),
                 _directive("User", server.get("user", "root"), alias),
                 f"    UserKnownHostsFile {ssh_path(known_hosts, 'UserKnownHostsFile', alias)}",
                 "    StrictHostKeyChecking yes"]
        key = _key_file(server, alias, "ssh-config")
        if key:
            lines += [f"    IdentityFile {ssh_path(key, 'IdentityFile', alias)}",
                      "    IdentitiesOnly yes"]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


class AnsibleUnsafe(str):
    """A string Ansible must take as it is, never as a template: a password
    `{{ lookup('pipe', ...) }}` would run a command wherever Ansible renders it."""


_YAML_STR = "tag:yaml.org,2002:str"


def ansible_yaml(data: Any) -> str:
    """YAML of `data` (a safe dump) for Ansible's YAML inventory: each AnsibleUnsafe carries the
    `!unsafe` tag, which Ansible honours since 2.0, so Jinja in it is never rendered.

    Ansible (2.19) resolves an `!unsafe` scalar as if it were plain, quotes or not: `'1:30'`
    would become 90, `'yes'` true. A string that would not resolve to a string ('22', 'yes',
    '~', '0x1F') is therefore written quoted and untagged: no such string holds a '{', so none
    is a template."""
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    def unsafe(dumper: yaml.SafeDumper, value: AnsibleUnsafe) -> yaml.ScalarNode:
        text = str(value)
        if dumper.resolve(yaml.ScalarNode, text, (True, False)) != _YAML_STR:
            return dumper.represent_str(text)
        return dumper.represent_scalar("!unsafe", text, style="'")

    Dumper.add_representer(AnsibleUnsafe, unsafe)
    return yaml.dump(data, Dumper=Dumper, sort_keys=False)


def _unsafe(value: Any) -> Any:
    """Every string in `value` (keys aside: host variables' names are ours) as AnsibleUnsafe."""
    if isinstance(value, str):
        return AnsibleUnsafe(value)
    if isinstance(value, dict):
        return {key: _unsafe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_unsafe(item) for item in value]
    return value


def ansible_inventory(deployment: "Deployment") -> str:
    known_hosts = known_hosts_file(deployment)
    hosts: dict[str, dict[str, Any]] = {}
    for index, server in enumerate(_servers(deployment)):
        alias = _alias(deployment, index, server, "ansible-inventory")
        # ansible splits this with shlex and hands it to ssh, which reads it as a config line
        known_hosts_option = "UserKnownHostsFile=" + ssh_path(
            known_hosts, "UserKnownHostsFile", alias, "ansible-inventory")
        variables: dict[str, Any] = {
            "ansible_host": server["host"],
            "ansible_port": server.get("port", 22),
            "ansible_user": server.get("user", "root"),
            "ansible_ssh_common_args": "-o " + shlex.quote(known_hosts_option)
                                       + " -o StrictHostKeyChecking=yes",
        }
        key = _key_file(server, alias, "ansible-inventory")
        if key:
            # Ansible hands it to ssh as -o IdentityFile="...", where '%' would expand, and
            # to other connections as it is: no escape suits both
            if "%" in key:
                raise _refused("ansible-inventory", "key", alias, key)
            ssh_path(key, "key", alias, "ansible-inventory")
            variables["ansible_ssh_private_key_file"] = key
        if server.get("password"):
            variables["ansible_password"] = server["password"]
        hosts[alias] = _unsafe(variables)
    group = deployment.name.replace("-", "_")
    return ansible_yaml({"all": {"children": {group: {"hosts": hosts}}}})
