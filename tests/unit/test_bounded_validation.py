"""Validation costs little whatever the input, refuses what is wrong in one line naming where,
and never prints the value that is wrong (it may be a password).

The hostile inputs run through the real CLI in a subprocess under an address-space limit
(prlimit --as): each must end within a second of CPU time and under 100 MB."""

import ipaddress
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from benchbed import api, config, plugin
from benchbed.deployment import Deployment, Status
from benchbed.engines.base import Engine
from benchbed.engines.multihost import MultihostEngine
from benchbed.engines.servers import ServersEngine
from benchbed.errors import ConfigError, InputError

BENCHBED = str(Path(sys.executable).with_name("benchbed"))
MEMORY_LIMIT = 100 * 1000 * 1000  # bytes of address space the whole CLI process may map
CPU_LIMIT = 1.0  # seconds of CPU; wall time is not asserted: the CI machine is shared
DOCS = Path(__file__).resolve().parents[2] / "docs"


def netns(network: str) -> str:
    return f"type: ServersEngine\nprovider: {{type: NetnsProvider, network: {network}}}\n"


def virsh_remote(network: str) -> str:
    return (f"type: ServersEngine\nprovider: {{type: VirshProvider, connection: "
            f"root@10.254.1.1, network: {network}}}\n")


def lxc_remote(network: str) -> str:
    return (f"type: ServersEngine\nprovider:\n  type: LxcProvider\n  start_lxc_network: "
            f"{network}\n  host_provider: {{type: ExistingServers, credentials: "
            f"[{{host: 10.254.1.1, user: root}}, {{host: 10.254.1.2, user: root}}]}}\n")


def run_limited(home: Path, *args: str) -> tuple[int, str, float, int]:
    """The CLI under the memory limit: exit code, output, CPU seconds, peak RSS in bytes."""
    env = {**os.environ, "BENCHBED_HOME": str(home), "TERM": "dumb"}
    env.pop("BENCHBED_DATABASE_URL", None)
    output = home.parent / "output.txt"
    with output.open("w") as handle:
        # prlimit execs the CLI in its own process: wait4 reports the CLI's own usage
        process = subprocess.Popen(["prlimit", f"--as={MEMORY_LIMIT}", "--cpu=30", BENCHBED,
                                    *args], stdout=handle, stderr=subprocess.STDOUT, env=env)
    pid, deadline = 0, time.monotonic() + 120
    try:
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            assert time.monotonic() < deadline, "the CLI ran for two minutes"
            time.sleep(0.02)
    finally:
        if pid == 0:  # still running: ended here, by its own pid
            process.kill()
            os.waitpid(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    return (process.returncode, output.read_text().strip(), usage.ru_utime + usage.ru_stime,
            usage.ru_maxrss * 1024)


# -- what the limits prove -------------------------------------------------------------------

HOSTILE_FILES: list[tuple[str, str, str, int]] = [
    # (file name, text, what stderr says, exit code)
    ("slash0.yaml", virsh_remote("0.0.0.0/0"), "0.0.0.0/0 is not a private network range", 2),
    ("zero8.yaml", virsh_remote("0.0.0.0/8"), "0.0.0.0/8 is not a private network range", 2),
    ("class-e.yaml", lxc_remote("240.0.0.0/4"), "240.0.0.0/4, which is a reserved range", 2),
    ("slash31.yaml", netns("10.254.185.0/31"), "needs at least a /30", 2),
    ("slash32.yaml", virsh_remote("10.254.185.7/32"), "needs at least a /28", 2),
    ("multicast.yaml", virsh_remote("224.0.0.0/4"), "is a multicast range", 2),
    # a /8 is a usable private range: validated in constant time, however many addresses
    ("slash8.yaml", virsh_remote("10.0.0.0/8"), "valid ServersEngine config", 0),
    ("slash8-lxc.yaml", lxc_remote("10.0.0.0/8"), "host 1 would get 11.0.0.0/8", 2),
    ("int.json", json.dumps({"type": "ServersEngine", "provider": {
        "type": "NetnsProvider", "network": "10.254.185.0/29"}}).replace(
        '"network"', '"amount": ' + "9" * 4000 + ', "network"'),
     "invalid JSON at line 1, column 75: an integer of 4000 digits is out of range", 2),
    ("int.yaml", netns("10.254.185.0/29") + "amount: " + "7" * 5000 + "\n",
     "invalid YAML at line 3, column 9: an integer of 5000 digits is out of range", 2),
    ("hex.yaml", netns("10.254.185.0/29") + "amount: 0x" + "f" * 900_000 + "\n",
     "invalid YAML at line 3, column 9: an integer of 900000 digits is out of range", 2),
    ("long.json", '{"type": "ServersEngine", "x": [' + "1" * 1_000_000 + "]}",
     "invalid JSON at line 1, column 33: an integer of 1000000 digits", 2),
]


@pytest.mark.parametrize(("name", "text", "message", "code"), HOSTILE_FILES,
                         ids=[case[0] for case in HOSTILE_FILES])
def test_huge_inputs_cost_little_under_a_memory_limit(tmp_path: Path, name: str, text: str,
                                                      message: str, code: int) -> None:
    path = tmp_path / name
    path.write_text(text)
    home = tmp_path / "home"
    verbs = [["deployment", "validate", "--file", str(path)]]
    if code:  # a valid config would be deployed: only refused ones go through create
        verbs.append(["deployment", "create", "--file", str(path), "--name", "huge"])
    for args in verbs:
        returncode, output, cpu, peak = run_limited(home, *args)
        assert returncode == code, output
        assert message in output, output
        assert len(output.splitlines()) == 1, output
        assert "internal error" not in output and "Traceback" not in output
        assert cpu < CPU_LIMIT, f"{args[1]}: {cpu:.2f} s of CPU"
        assert peak < MEMORY_LIMIT, f"{args[1]}: {peak} bytes"
    if code:
        returncode, output, _, _ = run_limited(home, "deployment", "list", "--json")
        assert (returncode, json.loads(output)) == (0, [])


def test_a_slash_8_host_network_is_counted_not_listed(tmp_path: Path) -> None:
    """The bridge of a /8 (16 million addresses) is laid out in constant time and memory."""
    script = ("import ipaddress, resource\n"
              f"resource.setrlimit(resource.RLIMIT_AS, ({MEMORY_LIMIT}, {MEMORY_LIMIT}))\n"
              "from benchbed.hostnet import HostNetwork\n"
              "from benchbed.server import Server\n"
              "n = HostNetwork(Server(host='localhost'), ipaddress.IPv4Network('10.0.0.0/8'))\n"
              "print(n.gateway, *n.static_range, *n.dhcp_range)\n"
              "print(resource.getrusage(resource.RUSAGE_SELF).ru_utime)\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    layout, cpu = result.stdout.splitlines()
    first = int(ipaddress.IPv4Address("10.0.0.2"))
    assert layout.split() == ["10.0.0.1", str(first), str(first + (2**24 - 3) // 2 - 1),
                              str(ipaddress.IPv4Address(first + (2**24 - 3) // 2)),
                              "10.255.255.254"]
    assert float(cpu) < CPU_LIMIT


# -- gaps: what a config means is what it says ---------------------------------------------

@pytest.mark.parametrize(("text", "where"), [
    ("type: ServersEngine\namount: 1\namount: 2\n", "line 3, column 1: duplicate key 'amount'"),
    ("a:\n  b: 1\n  'b': 2\n", "line 3, column 3: duplicate key 'b'"),
    ('{"type": "x",\n "type": "y"}', "JSON at line 2, column 2: duplicate key 'type'"),
    ('{"a": {"k": 1, "k": 1}}', "JSON at line 1, column 16: duplicate key 'k'"),
])
def test_a_key_given_twice_is_refused_with_its_line(text: str, where: str) -> None:
    with pytest.raises(InputError, match=re.escape(where)):
        config.parse(text, "f")


def test_yaml_scalars_follow_the_1_2_core_schema() -> None:
    parsed = config.parse("a: 1:30\nb: 0:0:1\nc: yes\nd: off\ne: true\nf: 0x10\ng: 0o17\n"
                          "h: 1_000\ni: 010\nj: 2024-01-01\nk: -1.5e3\nl: ~\n")
    assert parsed == {"a": "1:30", "b": "0:0:1", "c": "yes", "d": "off", "e": True, "f": 16,
                      "g": 15, "h": "1_000", "i": 10, "j": "2024-01-01", "k": -1500.0,
                      "l": None}
    for text in ("a: !!int 1:30\n", "a: !!float 1:30.5\n", "a: !!bool yes\n"):
        with pytest.raises(InputError, match="line 1, column 4"):
            config.parse(text)


def test_the_docs_flow_style_gc_example_parses() -> None:
    examples = re.findall(r"`(\{type: Ec2Provider[^`]*\})`", (DOCS / "ec2.md").read_text())
    assert examples
    for example in examples:
        assert config.parse(example)["type"] == "Ec2Provider"
    assert config.parse("{type: NetnsProvider,\n network: 10.254.185.0/29}") == {
        "type": "NetnsProvider", "network": "10.254.185.0/29"}
    with pytest.raises(InputError, match=r"invalid JSON at line 1.*nor is it YAML"):
        config.parse("{type: [x}")


def test_nested_defaults_expand_and_only_when_needed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BBV_SET", "set")
    monkeypatch.delenv("BBV_UNSET", raising=False)
    monkeypatch.delenv("BBV_GONE", raising=False)
    assert config.expand_env({
        "a": "${BBV_UNSET:-${BBV_SET}}", "b": "x${BBV_UNSET:-${BBV_GONE:-deep}}y",
        "c": "${BBV_SET:-${BBV_GONE}}", "d": "${BBV_UNSET:-a}}", "e": "${1}${BBV_SET-x}",
    }) == {"a": "set", "b": "xdeepy", "c": "set", "d": "a}", "e": "${1}${BBV_SET-x}"}
    with pytest.raises(ConfigError, match=r"config u: environment variable BBV_GONE"):
        config.expand_env({"u": "${BBV_UNSET:-${BBV_GONE}}"})
    for text in ("${BBV_UNSET:-open", "${BBV_UNSET:-${BBV_SET}"):
        with pytest.raises(ConfigError, match="without its closing"):
            config.expand_env({"u": text})
    with pytest.raises(ConfigError, match="nested deeper than"):
        config.expand_env({"u": "${BBV_UNSET:-" * 20 + "}" * 20})


# -- secrets: an error says where, never the value ------------------------------------------

SECRET = "Hunter2_s3cr3t"  # also a valid variable name: `${...}` reads it as one


@pytest.mark.parametrize(("text", "message"), [
    (f"type: ServersEngine\npassword: !{SECRET}\n", "a tag a config cannot hold"),
    (f"type: ServersEngine\npassword: !!python/name:{SECRET}\n", "a tag a config cannot hold"),
    (f"type: ServersEngine\npassword: *{SECRET}\n", "an alias that names no anchor"),
    (f"type: ServersEngine\na: &{SECRET} 1\nb: &{SECRET} 2\n", "an anchor defined twice"),
    (f"type: ServersEngine\nprovider:\n  password: 'x${{{SECRET}}}y'\n",
     "config provider.password: names an environment variable that is not set"),
    (f"type: ServersEngine\npassword: ${{{SECRET}:-${{Q}}}}\n",
     "config password: names an environment variable"),
    ("type: MultihostEngine\ncontroller: {type: ServersEngine, provider: {type: "
     "ExistingServers, credentials: [{host: localhost, user: root}]}}\nnodes:\n- type: "
     "ServersEngine\n  provider: {type: ExistingServers, credentials: [{host: 10.254.1.1, "
     f"user: root, password: 'a{{{SECRET}'}}]}}\n",
     "nodes[0].provider.credentials[0].password: malformed placeholder (not shown"),
])
def test_errors_do_not_print_secrets(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "secret.yaml"
    path.write_text(text)
    env = {**os.environ, "BENCHBED_HOME": str(tmp_path / "home")}
    env.pop(SECRET, None)
    result = subprocess.run([BENCHBED, "deployment", "validate", "--file", str(path)],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    for part in (SECRET, SECRET[:7], SECRET[-6:]):
        assert part not in result.stdout + result.stderr


# -- a node is validated again once it has the controller's address ------------------------

def test_a_node_is_validated_again_with_the_controllers_address(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`template_name` takes `{controller_ip}`: fine with the IPv4 address validation uses,
    refused once the controller turns out to have an IPv6 one, before the node deploys."""
    node = {"type": "ServersEngine", "provider": {
        "type": "VirshProvider", "connection": "root@10.254.1.1",
        "template_name": "t-{controller_ip}"}}
    multihost = {"type": "MultihostEngine",
                 "controller": {"type": "ServersEngine", "provider": {
                     "type": "ExistingServers", "credentials": [{"host": "fd00::7",
                                                                 "user": "root"}]}},
                 "nodes": [node, {**node, "provider": {**node["provider"],
                                                       "template_name": "ok"}}]}
    api.validate(multihost, check_networks=False)
    deployed: list[str] = []

    def fake_deploy(engine: ServersEngine) -> dict[str, Any]:
        deployed.append(engine.path)
        return {"servers": [{"host": "fd00::7", "user": "root"}]}

    monkeypatch.setattr(ServersEngine, "deploy", fake_deploy)
    deployment = Deployment.create("mh", multihost)
    engine = plugin.build(deployment, multihost, Engine, plugin.ENGINES, "")
    assert isinstance(engine, MultihostEngine)
    deployment.set_status(Status.STARTED)
    with pytest.raises(ConfigError, match=r"config nodes\[0\]\.provider\.template_name: "):
        engine.deploy()
    assert deployed == ["controller"]  # neither node began
    assert deployment.remaining_resources() == 0
