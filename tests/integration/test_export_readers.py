"""Each export is read by its real reader, which must take hostile values as they are.

The readers evaluate what they read: Ansible renders Jinja in every inventory variable, ssh
expands `%` tokens and `${VAR}` in paths, bash runs what an openrc holds, openstacksdk runs
`str.format` over clouds.yaml and environment values, YAML loaders honour tags and aliases.
Every hostile value below comes from a deployment's endpoints, as a config gives them; the
marker files prove that nothing ran.
"""

import json
import os
import shlex
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from benchbed.deployment import Deployment
from benchbed.engines.existing_cloud import normalize_cloud
from benchbed.errors import InputError
from benchbed.exporters import render
from tests.conftest import CLIENTS, _reset_db_caches, client, rally_env, read_inventory


@pytest.fixture
def markers(tmp_path: Path) -> Iterator[Path]:
    """A folder for the files a hostile value would create if it ran; none may appear."""
    folder = tmp_path / "markers"
    folder.mkdir()
    yield folder
    assert sorted(path.name for path in folder.iterdir()) == []


def servers(name: str, entries: list[dict[str, Any]]) -> Deployment:
    deployment = Deployment.create(name, {"type": "ServersEngine"})
    deployment.set_endpoints({"servers": entries})
    return deployment


def cloud(name: str, auth_url: str = "http://127.0.0.1:9/v3", region: str = "RegionOne",
          cacert: str = "", **user: str) -> Deployment:
    deployment = Deployment.create(name, {"type": "ExistingCloud"})
    deployment.set_endpoints(normalize_cloud({
        "auth_url": auth_url, "region_name": region, "https_cacert": cacert,
        "admin": {"username": "admin", "password": "p", "project_name": "admin", **user}}))
    return deployment


# -- Ansible ------------------------------------------------------------------------------

def jinja(markers: Path) -> dict[str, str]:
    """Values that run a command wherever Ansible renders them, and values it would read
    as something else (YAML 1.1 reads 1:30 as 90, yes as true, 0123 as 83)."""
    values = {"password": "{{ lookup('pipe', 'touch MARK/password') }}",
              "user": "{% set x = lookup('pipe', 'touch MARK/user') %}{{ x }}",
              "key": "/keys/{{ lookup('pipe', 'touch MARK/key') }}/{# c #}id",
              "host": "{{ lookup('pipe', 'touch MARK/host') }}"}
    return {name: value.replace("MARK", str(markers)) for name, value in values.items()}


def ansible(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ANSIBLE_LOCAL_TEMP": str(cwd / "ansible-tmp"),
           "ANSIBLE_HOME": str(cwd / "ansible-home"), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_HOST_KEY_CHECKING": "True", "ANSIBLE_TIMEOUT": "5"}
    return subprocess.run([str(CLIENTS / args[0]), *args[1:]], capture_output=True, text=True,
                          timeout=120, cwd=cwd, env=env)


def test_ansible_inventory_values_are_never_rendered(home: Path, tmp_path: Path,
                                                     markers: Path) -> None:
    values = jinja(markers)
    deployment = servers("ans", [
        {"host": values["host"], "name": "h1", "user": values["user"],
         "password": values["password"], "key": values["key"]},
        {"host": "127.0.0.1", "name": "h2", "user": "1:30", "password": "0123", "port": 9}])
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(render(deployment, "ansible-inventory"))

    listed = ansible("ansible-inventory", "-i", str(inventory), "--list", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    hostvars = json.loads(listed.stdout)["_meta"]["hostvars"]
    # Ansible lists what it must not template as {"__ansible_unsafe": value}
    assert hostvars["h1"]["ansible_password"] == {"__ansible_unsafe": values["password"]}
    assert hostvars["h1"]["ansible_user"] == {"__ansible_unsafe": values["user"]}
    assert hostvars["h1"]["ansible_ssh_private_key_file"] == {"__ansible_unsafe": values["key"]}
    assert hostvars["h1"]["ansible_host"] == {"__ansible_unsafe": values["host"]}
    assert (hostvars["h2"]["ansible_user"], hostvars["h2"]["ansible_password"]) == \
        ("1:30", "0123")

    for var in ("ansible_password", "ansible_user", "ansible_host",
                "ansible_ssh_private_key_file"):
        shown = ansible("ansible", "-i", str(inventory), "h1", "-m", "debug", "-a",
                        f"var={var}", cwd=tmp_path)
        assert shown.returncode == 0, shown.stdout + shown.stderr
        assert json.dumps(hostvars["h1"][var]["__ansible_unsafe"]) in shown.stdout
    # a real connection attempt: every connection variable is read, and none is rendered
    ping = ansible("ansible", "-i", str(inventory), "all", "-m", "ping", cwd=tmp_path)
    assert ping.returncode != 0
    assert "UNREACHABLE" in ping.stdout


def test_ansible_inventory_ssh_options_reach_ssh_literally(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    """ansible hands ansible_ssh_common_args to ssh: a home with a space, a '%' token and a
    '#' still names the deployment's known_hosts."""
    for index, home in enumerate([tmp_path / "home %d #1", tmp_path / "it's %u"]):
        monkeypatch.setenv("BENCHBED_HOME", str(home))
        _reset_db_caches()
        try:
            deployment = servers(f"opt{index}", [{"host": "127.0.0.1", "name": "h"}])
            hosts = read_inventory(render(deployment, "ansible-inventory"))
            variables = hosts["all"]["children"][f"opt{index}"]["hosts"]["h"]
            options = shlex.split(variables["ansible_ssh_common_args"])
            parsed = subprocess.run(["ssh", "-G", *options, "127.0.0.1"], capture_output=True,
                                    text=True, timeout=30, check=True).stdout
            assert f"userknownhostsfile {deployment.directory / 'known_hosts'}\n" in parsed
            assert "stricthostkeychecking true\n" in parsed
        finally:
            _reset_db_caches()


# -- ssh_config ---------------------------------------------------------------------------

def identity_files(config: Path, alias: str) -> list[str]:
    """The key files the real ssh loads for `alias`, tokens expanded: `ssh -G` prints
    IdentityFile unexpanded, so ssh is let connect to a listener that never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        result = subprocess.run(["ssh", "-v", "-F", str(config), "-p", str(port), "-o",
                                 "BatchMode=yes", "-o", "ConnectTimeout=2", alias, "true"],
                                capture_output=True, text=True, timeout=60)
    prefix = "debug1: identity file "
    return [line[len(prefix):].rsplit(" type ", 1)[0] for line in result.stderr.splitlines()
            if line.startswith(prefix) and not line.endswith("-cert type -1")]


def test_ssh_config_paths_reach_ssh_literally(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              markers: Path) -> None:
    home = tmp_path / "home %d %h #x"
    monkeypatch.setenv("BENCHBED_HOME", str(home))
    _reset_db_caches()
    try:
        keys = ["/k/%d/%u %h/id", "~/.ssh/#it's %%r"]
        deployment = servers("sshq", [{"host": "127.0.0.1", "name": f"k{i}", "key": key}
                                      for i, key in enumerate(keys)])
        config = tmp_path / "ssh_config"
        config.write_text(render(deployment, "ssh-config"))
        for index, key in enumerate(keys):
            parsed = subprocess.run(["ssh", "-G", "-F", str(config), f"k{index}"],
                                    capture_output=True, text=True, timeout=30, check=True)
            options = parsed.stdout.splitlines()
            assert f"userknownhostsfile {deployment.directory / 'known_hosts'}" in options
            assert not [o for o in options if o.split(" ")[0] in ("proxycommand", "localcommand")]
            loaded = identity_files(config, f"k{index}")
            assert loaded == [key.replace("~", str(Path.home()), 1)], loaded
    finally:
        _reset_db_caches()


@pytest.mark.parametrize("server", [
    {"host": "10.0.0.2", "key": '/k/id"\n    ProxyCommand touch {m}/a'},
    {"host": "10.0.0.2", "key": "/k/${{HOME}}/id"},
    {"host": "10.0.0.2", "key": "/k/id\\\" ProxyCommand=touch {m}/b"},
    {"host": "10.0.0.2", "user": "%d"},
    {"host": "10.0.0.2\n Match exec \"touch {m}/c\""},
    {"host": "10.0.0.2", "name": "h:2222"},
    {"host": "10.0.0.2", "name": "web[1:3]"},
])
def test_what_no_quoting_covers_is_refused(home: Path, markers: Path,
                                           server: dict[str, str]) -> None:
    entry = {key: value.format(m=markers) for key, value in server.items()}
    deployment = servers("sshbad", [entry])
    refused = 0
    for fmt in ("ssh-config", "ansible-inventory"):
        try:
            text = render(deployment, fmt)
        except InputError as error:
            assert "cannot hold safely" in str(error)
            assert "\n" not in str(error)
            refused += 1
            continue
        # a user or host Ansible takes literally (!unsafe) is no hazard in the inventory
        assert fmt == "ansible-inventory"
        assert "!unsafe" in text
    assert refused >= 1


# -- openrc -------------------------------------------------------------------------------

def test_openrc_sourced_by_bash_gives_back_the_exact_values(home: Path, tmp_path: Path,
                                                          markers: Path) -> None:
    password = f"$(touch {markers}/a)`touch {markers}/b`'\"\n; touch {markers}/c #\\"
    username = f"it's\n$(touch {markers}/d)"
    deployment = cloud("rc", password=password, username=username, project_name="a'b'c")
    openrc = tmp_path / "openrc"
    openrc.write_text(render(deployment, "openrc"))
    shown = subprocess.run(
        ["bash", "-c", 'set -eu; source "$1"; printf "%s\\0" "$OS_PASSWORD" "$OS_USERNAME" '
                       '"$OS_PROJECT_NAME"', "bash", str(openrc)],
        capture_output=True, text=True, timeout=30, check=True)
    assert shown.stdout.split("\0")[:3] == [password, username, "a'b'c"]


@pytest.mark.parametrize("hostile", [{"region": "R{auth}"}, {"username": "u{0}"},
                                     {"cacert": "/c/{auth[password]}"}])
def test_values_the_openstack_client_would_format_are_refused(home: Path,
                                                              hostile: dict[str, str]) -> None:
    deployment = cloud("fmt", password="Sekret-77", **hostile)
    with pytest.raises(InputError, match=r"openrc: OS_\w+ is .* \(str.format\)") as error:
        render(deployment, "openrc")
    assert "Sekret-77" not in str(error.value)
    if "username" not in hostile:  # clouds.yaml keeps auth values out of the formatting
        with pytest.raises(InputError, match=r"clouds.yaml: \w+ is .* \(str.format\)"):
            render(deployment, "clouds.yaml")


def test_openstack_client_reads_the_openrc_literally(home: Path, tmp_path: Path) -> None:
    deployment = cloud("rcos", password="{region_name}%(x)s", username="it's $HOME")
    openrc = tmp_path / "openrc"
    openrc.write_text(render(deployment, "openrc"))
    shown = subprocess.run(
        ["bash", "-c", 'source "$1"; exec "$2" configuration show --unmask -f json', "bash",
         str(openrc), str(CLIENTS / "openstack")],
        capture_output=True, text=True, timeout=120,
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)})
    assert shown.returncode == 0, shown.stderr
    config = json.loads(shown.stdout)
    assert config["password"] == "{region_name}%(x)s"
    assert config["username"] == "it's $HOME"
    assert config["region_name"] == "RegionOne"


# -- clouds.yaml and the Rally spec -------------------------------------------------------

TAGS = ["!!python/object/apply:os.system ['touch {m}/y']", "*alias", "&anchor x",
        "{{{{ x }}}}: [1]\n- y", "yes", "1:30"]


def test_clouds_yaml_read_by_openstack_client_literally(home: Path, tmp_path: Path,
                                                        markers: Path) -> None:
    values = [value.format(m=markers) for value in TAGS]
    deployment = cloud("cy", password=values[0], username=values[1], project_name=values[2],
                       user_domain_name=values[3], project_domain_name=values[4],
                       region="1:30")
    clouds = tmp_path / "clouds.yaml"
    clouds.write_text(render(deployment, "clouds.yaml"))
    auth = yaml.safe_load(clouds.read_text())["clouds"]["cy"]["auth"]
    assert [auth["password"], auth["username"], auth["project_name"], auth["user_domain_name"],
            auth["project_domain_name"]] == values[:5]
    shown = client("openstack", "--os-cloud", "cy", "configuration", "show", "--unmask",
                   "-f", "json", env={"OS_CLIENT_CONFIG_FILE": str(clouds),
                                      "HOME": str(tmp_path)})
    config = json.loads(shown.stdout)
    assert [config["auth.password"], config["auth.username"], config["auth.project_name"],
            config["auth.user_domain_name"], config["auth.project_domain_name"]] == values[:5]
    assert config["region_name"] == "1:30"


def test_rally_spec_read_by_rally_literally(home: Path, tmp_path: Path, markers: Path) -> None:
    values = [value.format(m=markers) for value in TAGS]
    deployment = cloud("rs", password=values[0], username=values[1], project_name=values[5])
    spec = tmp_path / "spec.json"
    spec.write_text(render(deployment, "rally-spec"))
    env = rally_env(tmp_path, spec)
    shown = client("rally", "env", "show", "--only-spec", "--json", env=env)
    admin = json.loads(shown.stdout)["existing@openstack"]["admin"]
    assert (admin["password"], admin["username"], admin["project_name"]) == \
        (values[0], values[1], values[5])
