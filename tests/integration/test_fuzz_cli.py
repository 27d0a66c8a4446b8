"""Property-based fuzzing of the CLI's input: generated configs and names, valid and broken.

Whatever the input, `deployment validate` and `deployment create` never print a traceback
or an internal error, exit with 0, 1 or 2 only, and leave no deployment row when they exit
with 2. The CLI runs in this process (its real entry point, `benchbed.cli.main._run`), so
the 900 examples take about 20 s; the configs that pass validation deploy fast (an existing
cloud, servers that refuse the connection at once) or create nothing (validate). Each run
draws new examples from the seed it prints at the end; BENCHBED_FUZZ_SEED=N draws run N's
again (tests/conftest.py). An example that takes over 2 s (the profile's deadline) fails:
validation and a refused create are bounded. Networks: 10.254.184.0/22 only.
"""

import contextlib
import copy
import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from benchbed.cli.main import _run

HOSTILE = ["$(touch /tmp/bb-fuzz-pwned)", "x\ny: z", "a\n    ProxyCommand touch /tmp/bb-fuzz",
           "'; reboot; '", "*", "%d${HOME}", "127.0.0.0/8", "224.0.0.0/24", "10.254.184.0/24",
           "10.254.184.0/30", "1e999", "-1", "bookworm\n", "http://u:p@h/", "\u202e", ""]
SCALARS = (st.none() | st.booleans() | st.integers(-(2 ** 63), 2 ** 63)
           | st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(HOSTILE)
           | st.text(max_size=12))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=8) | st.sampled_from(
                          ["type", "provider", "host_provider", "password", "amount"]),
                          inner, max_size=3), max_leaves=8)
CLOSED = {"host": "127.0.0.1", "port": 9, "user": "root"}  # refuses at once: fails fast
CLOUD = {"type": "ExistingCloud", "auth_url": "http://127.0.0.1:9/v3",
         "admin": {"username": "admin", "password": "Fuzz-Secret-1"}}
FAST = [  # valid configs whose create ends within about a second
    CLOUD,
    {"type": "ExistingCloud", "creds": {"openstack": {
        "auth_url": "http://127.0.0.1:9/v3", "users": [{"username": "u", "password": "p"}]}}},
    {"type": "ServersEngine", "ssh_timeout": 0.3,
     "provider": {"type": "ExistingServers", "credentials": [CLOSED]}},
]
NESTED = [  # valid configs with nested plugins: validated, never created here
    {"type": "ServersEngine", "amount": 2,
     "provider": {"type": "NetnsProvider", "network": "10.254.185.0/29", "amount": 2}},
    {"type": "ServersEngine", "provider": {
        "type": "LxcProvider", "containers_per_host": 2, "start_lxc_network": "10.254.186.0/24",
        "host_provider": {"type": "ExistingServers", "credentials": [CLOSED]}}},
    {"type": "DebianEngine", "region_name": "R1", "provider": {
        "type": "LxcProvider", "host_provider": {"type": "ExistingServers",
                                                 "credentials": [CLOSED]}}},
    {"type": "ServersEngine", "provider": {"type": "VirshProvider",
                                           "network": "10.254.187.0/24", "amount": 1}},
    {"type": "MultihostEngine",
     "controller": {"type": "ServersEngine", "provider": {"type": "NetnsProvider",
                                                          "network": "10.254.185.8/29"}},
     "nodes": [{"type": "ServersEngine", "provider": {
         "type": "ExistingServers", "credentials": [{"host": "{controller_ip}",
                                                     "user": "root"}]}}]},
]
# new examples each run from the run's printed seed (tests/conftest.py: BENCHBED_FUZZ_SEED
# draws them again), each within the profile's deadline
FUZZ = settings(max_examples=500,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow, HealthCheck.data_too_large])


def paths_of(data: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path in a config, so that edits land on real keys as well as new ones."""
    found = [prefix]
    if isinstance(data, dict):
        for key, value in data.items():
            found += paths_of(value, (*prefix, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            found += paths_of(value, (*prefix, index))
    return found


@st.composite
def configs(draw: st.DrawFn, bases: list[dict]) -> Any:
    """A base config, valid as it is or broken by up to three edits anywhere in its tree."""
    config = copy.deepcopy(draw(st.sampled_from(bases)))
    for _ in range(draw(st.integers(0, 3))):
        path = draw(st.sampled_from(paths_of(config)))
        if not path:
            if draw(st.booleans()):
                config = draw(VALUES)
            continue
        parent = config
        for part in path[:-1]:
            parent = parent[part]
        action = draw(st.sampled_from(["replace", "delete", "add", "nest"]))
        if action == "replace":
            parent[path[-1]] = draw(VALUES)
        elif action == "delete":
            del parent[path[-1]]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.text(max_size=8))] = draw(VALUES)
        elif action == "nest":
            parent[path[-1]] = copy.deepcopy(draw(st.sampled_from(FAST + NESTED)))
        if not isinstance(config, dict | list):
            break
    return config


@st.composite
def config_texts(draw: st.DrawFn, bases: list[dict]) -> bytes:
    """The config as a file: JSON, YAML, or YAML with raw text spliced in."""
    config = draw(configs(bases))
    form = draw(st.sampled_from(["json", "yaml", "spliced"]))
    if form == "json":
        return json.dumps(config).encode()
    text = yaml.safe_dump(config)
    if form == "spliced":
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.sampled_from(["&a", "*a", "!!binary ", ": ", "- ", "\t",
                                                 "{", "\n  ", "%YAML 1.1\n", "!!python/"])) \
            + text[at:]
    return text.encode("utf-8", "surrogatepass")


NAMES = (st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}", fullmatch=True)
         | st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"),
                   min_size=1, max_size=70)
         | st.sampled_from(["x\ntouch /tmp/bb-fuzz", "h\n  ProxyCommand id", "-rf", "a" * 64,
                            "00000000-0000-4000-8000-000000000000", " padded "]))


def cli(*args: str) -> tuple[int, str, str]:
    """The real CLI entry point in this process: exit code, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    argv = sys.argv
    sys.argv = ["benchbed", *args]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = _run()
    finally:
        sys.argv = argv
    return code, out.getvalue(), err.getvalue()


def assert_well_behaved(code: int, err: str) -> None:
    event(f"exit {code}")
    assert code in (0, 1, 2), (code, err)
    assert "Traceback" not in err, err
    assert "internal error" not in err, err
    if code == 2:
        assert err.strip(), "exit 2 without a message"


def names_in_database() -> list[str]:
    code, out, err = cli("deployment", "list", "--json")
    assert code == 0, err
    return [row["name"] for row in json.loads(out)]


@pytest.fixture
def fuzz_file(home: Path, tmp_path: Path) -> Path:
    return tmp_path / "fuzz.conf"


@FUZZ
@given(content=config_texts(FAST + NESTED))
def test_validate_never_crashes(fuzz_file: Path, content: bytes) -> None:
    fuzz_file.write_bytes(content)
    code, _, err = cli("deployment", "validate", "--file", str(fuzz_file))
    assert_well_behaved(code, err)
    assert code in (0, 2), err
    assert names_in_database() == []


@settings(FUZZ, max_examples=200)
@given(content=config_texts(FAST), name=NAMES)
def test_create_never_crashes_and_exit_2_leaves_no_row(fuzz_file: Path, content: bytes,
                                                       name: str) -> None:
    fuzz_file.write_bytes(content)
    code, _, err = cli("deployment", "create", "--no-preflight", "--no-use", "--name", name,
                       "--file", str(fuzz_file))
    assert_well_behaved(code, err)
    present = names_in_database()
    if code == 2:
        assert name not in present, err
    for existing in present:
        destroyed, _, destroy_err = cli("deployment", "destroy", "--force", existing)
        assert destroyed == 0, destroy_err
    assert names_in_database() == []


@settings(FUZZ, max_examples=200)
@given(name=NAMES)
def test_generated_names_through_create(fuzz_file: Path, name: str) -> None:
    fuzz_file.write_text(json.dumps(CLOUD))
    code, _, err = cli("deployment", "create", "--no-preflight", "--no-use", "--name", name,
                       "--file", str(fuzz_file))
    assert_well_behaved(code, err)
    if code == 0:
        assert names_in_database() == [name]
        shown, out, _ = cli("deployment", "show", "--json", name)
        assert shown == 0 and json.loads(out)["name"] == name
        assert cli("deployment", "destroy", name)[0] == 0
    else:
        assert code == 2, err
        assert names_in_database() == []
