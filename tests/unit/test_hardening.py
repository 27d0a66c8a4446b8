"""Hostile input, class by class: it is refused at validation, quoted, or masked.

Each class has at least two hostile values; exported files are read back by the real
programs that consume them (bash sources the openrc, `ssh -G` parses the ssh-config).
"""

import json
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from benchbed import api, config, masking, networks
from benchbed.deployment import Deployment, validate_name
from benchbed.engines.existing_cloud import normalize_cloud
from benchbed.errors import BenchbedError, ConfigError, InputError

SERVERS = {"type": "ServersEngine",
           "provider": {"type": "ExistingServers",
                        "credentials": [{"host": "10.0.0.2", "user": "root"}]}}
SHELL_VALUES = ["$(touch {marker})", "`touch {marker}`", "'; touch {marker}; '",
                "x\ntouch {marker}\n", "a\"; touch {marker}; \"b"]


def netns(network: str, amount: int = 1) -> dict:
    return {"type": "ServersEngine",
            "provider": {"type": "NetnsProvider", "network": network, "amount": amount}}


# -- strict validation --------------------------------------------------------------------

@pytest.mark.parametrize(("text", "message"), [
    ("type: ServersEngine\nssh_timeout: .nan\nprovider: {type: NetnsProvider, "
     "network: 10.254.180.0/24}\n", "config ssh_timeout: must be a finite number"),
    ("type: ServersEngine\nssh_timeout: .inf\nprovider: {type: NetnsProvider, "
     "network: 10.254.180.0/24}\n", "config ssh_timeout: must be a finite number"),
    ("type: ServersEngine\namount: 2.0\nprovider: {type: NetnsProvider, "
     "network: 10.254.180.0/24}\n", "config amount: must be of type integer"),
    ("type: ServersEngine\namount: true\nprovider: {type: NetnsProvider, "
     "network: 10.254.180.0/24}\n", "config amount: must be of type integer"),
    ("type: ServersEngine\nprovider: {type: NetnsProvider, network: 10.254.180.0/24, "
     "amount: 2.0}\n", "config provider.amount: must be of type integer"),
    ("type: ServersEngine\nprovider: {type: NetnsProvider, network: !!binary aGk=}\n",
     "config provider.network: holds a value of type bytes"),
    ("type: ServersEngine\nprovider: {type: NetnsProvider, network: 10.254.180.0/24}\n"
     "1: one\n", "has a key of type int"),
    ("type: ServersEngine\nwhen: !!timestamp 2024-01-01\nprovider: {type: NetnsProvider}\n",
     "config when: holds a value of type date"),
])
def test_values_json_cannot_hold_or_of_the_wrong_type_are_refused(text: str, message: str
                                                                    ) -> None:
    with pytest.raises(ConfigError, match=message):
        api.validate(config.parse(text))


@pytest.mark.parametrize("text", ['{"type": "ServersEngine", "ssh_timeout": NaN}',
                                  '{"type": "ServersEngine", "ssh_timeout": -Infinity}'])
def test_json_nan_and_infinity_are_refused(text: str) -> None:
    with pytest.raises(InputError, match=r"is not a number a config may hold"):
        config.parse(text)


@pytest.mark.parametrize(("bad", "message"), [
    (netns("10.254.180.0/28", 14), r"config provider.amount: 10.254.180.0/28 has room for 13"),
    ({**netns("10.254.180.0/29"), "amount": 6},
     r"config amount: 6 server\(s\) requested, but NetnsProvider can give 5"),
    ({**SERVERS, "amount": 2},
     r"config amount: 2 server\(s\) requested, but ExistingServers can give 1"),
    ({"type": "ServersEngine", "amount": 5, "provider": {
        "type": "LxcProvider", "containers_per_host": 2, "host_provider": {
            "type": "ExistingServers", "credentials": [{"host": "10.0.0.9", "user": "root"},
                                                       {"host": "10.0.0.8", "user": "root"}]}}},
     r"config amount: 5 server\(s\) requested, but LxcProvider can give 4"),
])
def test_capacity_is_checked_at_validation(bad: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        api.validate(bad)


def nested_aliases(levels: int, width: int) -> str:
    lines = ["a0: &a0 [x]"]
    for level in range(1, levels):
        lines.append(f"a{level}: &a{level} [{', '.join([f'*a{level - 1}'] * width)}]")
    return "\n".join(lines) + "\ntype: ServersEngine\n"


@pytest.mark.parametrize(("text", "message"), [
    (nested_aliases(9, 9), "more than 100000 values once its YAML aliases are expanded"),
    (nested_aliases(30, 2), "more than 100000 values once its YAML aliases are expanded"),
    ("a: " + "[" * 5000 + "]" * 5000 + "\n", "nest(ed deeper than 64 levels|ing depth)"),
    ("a:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, 200)) + "type: x\n",
     "nested deeper than 64 levels"),
    ('{"a": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested deeper than 64 levels"),
    ("a: " + "x" * (1 << 20) + "\n", "larger than 1 MiB"),
])
def test_hostile_yaml_and_json_are_refused_within_a_second(text: str, message: str) -> None:
    started = time.monotonic()
    with pytest.raises(InputError, match=message):
        api.validate(config.parse(text))
    assert time.monotonic() - started < 1


def test_a_real_config_with_aliases_still_loads() -> None:
    text = ("creds: &c {host: 10.0.0.2, user: root}\ntype: ServersEngine\n"
            "provider: {type: ExistingServers, credentials: [*c]}\n")
    assert config.parse(text)["provider"]["credentials"] == [{"host": "10.0.0.2",
                                                               "user": "root"}]


def test_unreadable_files_are_input_errors(tmp_path: Path) -> None:
    latin = tmp_path / "latin1.yaml"
    latin.write_bytes("type: ServersEngine\nname: caf\xe9\n".encode("latin-1"))
    with pytest.raises(InputError, match=r"latin1.yaml is not UTF-8 text \(byte 29\)"):
        config.load_file(latin)
    with pytest.raises(InputError, match=r"does not exist"):
        config.load_file(tmp_path / "missing.yaml")
    with pytest.raises(InputError, match=r"cannot read config file"):
        config.load_file(tmp_path)


@pytest.mark.parametrize(("key", "value", "needs"), [
    ("host", "h; touch /tmp/x", "does not match"),
    ("host", "h\nProxyCommand x", "does not match"),
    ("user", "root -oProxyCommand=x", "does not match"),
    ("user", "$(id)", "does not match"),
])
def test_names_of_things_on_a_host_match_strict_patterns(key: str, value: str, needs: str
                                                         ) -> None:
    bad = {"type": "ServersEngine", "provider": {
        "type": "ExistingServers", "credentials": [{"host": "10.0.0.2", "user": "root",
                                                     key: value}]}}
    with pytest.raises(ConfigError, match=needs):
        api.validate(bad)


@pytest.mark.parametrize(("extra", "path"), [
    ({"apt_proxy": "http://x';touch${IFS}/tmp/p;'"}, "apt_proxy"),
    ({"apt_proxy": "http://h:3142/\";Dir::Etc \"/tmp"}, "apt_proxy"),
    ({"apt_proxy": "http://h$(reboot)"}, "apt_proxy"),
    ({"region_name": "R1 --bootstrap-admin-url x"}, "region_name"),
    ({"image": "../../etc"}, "image"),
    ({"admin_password": "abcdefgh\n[DEFAULT]"}, "admin_password"),
    ({"service_password": "abc$defghij"}, "service_password"),
])
def test_debian_engine_refuses_values_a_shell_or_file_would_misread(extra: dict, path: str
                                                                     ) -> None:
    bad = {"type": "DebianEngine", **extra, "provider": {
        "type": "ExistingServers", "credentials": [{"host": "10.0.0.2", "user": "root"}]}}
    with pytest.raises(ConfigError, match=rf"config {path}: .*does not match"):
        api.validate(bad)


def test_lxc_and_virsh_names_on_the_host_are_strict(home: Path) -> None:
    lxc = {"type": "ServersEngine", "provider": {
        "type": "LxcProvider", "release": "bookworm; reboot", "host_provider": {
            "type": "ExistingServers", "credentials": [{"host": "10.0.0.2", "user": "root"}]}}}
    with pytest.raises(ConfigError, match=r"config provider.release: .*is not one of"):
        api.validate(lxc)
    for key, value in (("template_name", "t'; virsh destroy x"), ("template_user", "root\n"),
                       ("template_name", "debian\n"),
                       ("uri", "qemu:///system?x=$(id)")):
        with pytest.raises(ConfigError, match=rf"config provider.{key}: "):
            api.validate({"type": "ServersEngine",
                          "provider": {"type": "VirshProvider", key: value}})


# -- secrets ------------------------------------------------------------------------------

@pytest.mark.parametrize("password", [98765432, ["Listed-Secret-1", "Listed-Secret-2"],
                                      {"nested": "Nested-Secret-3"}, b"Binary-Secret-4", 12.5])
def test_a_password_of_the_wrong_type_is_never_printed(password: object) -> None:
    bad = {"type": "ServersEngine", "provider": {"type": "ExistingServers", "credentials": [
        {"host": "10.0.0.2", "user": "root", "password": password}]}}
    with pytest.raises(InputError) as raised:
        api.validate(bad)
    message = str(raised.value)
    for shown in (str(password), repr(password), "Listed-Secret", "Nested-Secret",
                  "Binary-Secret", "98765432", "12.5"):
        assert shown not in message, message
    assert "credentials[0].password" in message


@pytest.mark.parametrize("password", ["ab", "q$", "short-1", "Bad Pass\nword-2", 1234567890])
def test_a_refused_password_is_never_printed(password: object) -> None:
    bad = {"type": "DebianEngine", "admin_password": password, "provider": {
        "type": "ExistingServers", "credentials": [{"host": "10.0.0.2", "user": "root"}]}}
    with pytest.raises(ConfigError, match=r"config admin_password: ") as raised:
        api.validate(bad)
    assert repr(password) not in str(raised.value)
    assert str(password) not in str(raised.value).removeprefix("config admin_password: ")


def test_a_password_of_the_wrong_type_from_yaml_is_never_printed() -> None:
    text = ("type: DebianEngine\nadmin_password: !!binary U2VjcmV0LUJpbmFyeS05\n"
            "provider: {type: ExistingServers, credentials: [{host: h, user: root}]}\n")
    with pytest.raises(InputError) as raised:
        api.validate(config.parse(text))
    assert "Secret-Binary-9" not in str(raised.value)
    assert "U2VjcmV0" not in str(raised.value)


def test_a_structure_holding_a_secret_is_never_printed_by_an_error() -> None:
    bad = {"type": "ExistingCloud", "admin": {"username": "a", "password": "Whole-Object-77"}}
    with pytest.raises(ConfigError) as raised:
        api.validate(bad)
    assert "Whole-Object-77" not in str(raised.value)


def test_every_value_under_a_secret_key_is_masked_whatever_its_type() -> None:
    data = {"password": 123456, "token": ["t1", "t2"], "secret": {"a": "b"}, "api_key": True,
            "key": "/home/u/.ssh/id", "private_key": b"raw",
            "inline": {"key": "line1\nline2"}, "name": "shown"}
    masked = masking.mask(data)
    assert masked == {"password": "***", "token": "***", "secret": "***", "api_key": "***",
                      "key": "/home/u/.ssh/id", "private_key": "***",
                      "inline": {"key": "***"}, "name": "shown"}
    masking.register_from({"password": 77889911, "token": ["Listed-Token-55"]})
    assert masking.scrub("got 77889911 and Listed-Token-55") == "got *** and ***"


@pytest.mark.parametrize(("url", "shown"), [
    ("http://admin:Url-Pass-1@10.0.0.2:3142/", "http://***@10.0.0.2:3142/"),
    ("see https://user@keystone:5000/v3 now", "see https://***@keystone:5000/v3 now"),
    ("postgresql+psycopg2://bb:Pg-Pass-2@db/benchbed", "postgresql+psycopg2://***@db/benchbed"),
])
def test_userinfo_in_urls_is_masked(url: str, shown: str) -> None:
    assert masking.scrub(url) == shown
    assert masking.mask({"auth_url": url}) == {"auth_url": shown}


# -- names and lookups --------------------------------------------------------------------

@pytest.mark.parametrize("name", [
    "x\ntouch /tmp/pwned", "a; rm -rf /", "n\n    ProxyCommand touch /tmp/p", "$(id)",
    "-rf", ".hidden", "", "a" * 64, "with space", "6f1c2d3e-0000-4000-8000-000000000000",
    "6F1C2D3E000040008000000000000000", "caf\u00e9", "tab\tname",
])
def test_hostile_deployment_names_are_refused(name: str) -> None:
    with pytest.raises(InputError):
        validate_name(name)


@pytest.mark.parametrize("name", ["a", "Bench-1.run_2", "0" * 63, "9lives"])
def test_ordinary_names_pass(name: str) -> None:
    validate_name(name)


def test_uuid_lookups_and_name_lookups_are_distinct(home: Path) -> None:
    victim = Deployment.create("victim", {"type": "ExistingCloud"})
    squatter = Deployment.create("squatter", {"type": "ExistingCloud"})
    # a row from before names were checked, named after the victim's uuid
    with sqlite3.connect(home / "benchbed.sqlite") as db:
        db.execute("UPDATE deployments SET name = ? WHERE uuid = ?",
                   (victim.uuid, squatter.uuid))
    assert Deployment.get(victim.uuid).uuid == victim.uuid
    assert Deployment.get(victim.uuid.upper()).uuid == victim.uuid
    assert Deployment.get("victim").uuid == victim.uuid
    with pytest.raises(InputError, match=r"no deployment named ' victim'"):
        Deployment.get(" victim")


# -- exporters ----------------------------------------------------------------------------

def cloud_deployment(name: str, **user: str) -> Deployment:
    deployment = Deployment.create(name, {"type": "ExistingCloud"})
    deployment.set_endpoints(normalize_cloud({
        "auth_url": user.pop("auth_url", "http://10.0.0.2:5000/v3"),
        "region_name": user.pop("region", "RegionOne"),
        "admin": {"username": "admin", "password": "p", "project_name": "admin", **user}}))
    return deployment


def test_openrc_is_read_back_exactly_by_bash(home: Path, tmp_path: Path) -> None:
    from benchbed.exporters import render

    marker = tmp_path / "ran"
    values = [value.format(marker=marker) for value in SHELL_VALUES]
    deployment = cloud_deployment("rc", password=values[0] + values[3], username=values[2],
                                  project_name=values[4], region=values[1],
                                  auth_url="http://10.0.0.2:5000/v3?$(touch " + str(marker) + ")")
    # and a name from before names were checked: a newline and a command
    with sqlite3.connect(home / "benchbed.sqlite") as db:
        db.execute("UPDATE deployments SET name = ? WHERE uuid = ?",
                   (f"rc\ntouch {marker}\n", deployment.uuid))
    openrc = tmp_path / "openrc"
    openrc.write_text(render(Deployment.get(deployment.uuid), "openrc"))
    shown = subprocess.run(
        ["bash", "-c", 'set -eu; . "$1"; printf "%s\\0" "$OS_PASSWORD" "$OS_USERNAME" '
                       '"$OS_PROJECT_NAME" "$OS_REGION_NAME" "$OS_AUTH_URL"', "bash", str(openrc)],
        capture_output=True, text=True, timeout=30, check=True)
    assert shown.stdout.split("\0")[:5] == [values[0] + values[3], values[2], values[4],
                                           values[1], f"http://10.0.0.2:5000/v3?$(touch {marker})"]
    assert not marker.exists()


def test_yaml_and_json_exports_round_trip_hostile_values(home: Path) -> None:
    from benchbed.exporters import render

    hostile = "a: b\n- c\n'\"{x}: !!python/object:os.system [id]"
    deployment = cloud_deployment("yml", password=hostile, project_name="&anchor *alias")
    clouds = yaml.safe_load(render(deployment, "clouds.yaml"))
    assert clouds["clouds"]["yml"]["auth"]["password"] == hostile
    assert clouds["clouds"]["yml"]["auth"]["project_name"] == "&anchor *alias"
    spec = json.loads(render(deployment, "rally-spec"))
    assert spec["existing@openstack"]["admin"]["password"] == hostile
    assert json.loads(render(deployment, "json"))["openstack"]["admin"]["password"] == hostile


def servers_deployment(name: str, servers: list[dict]) -> Deployment:
    deployment = Deployment.create(name, {"type": "ServersEngine"})
    deployment.set_endpoints({"servers": servers})
    return deployment


@pytest.mark.parametrize("server", [
    {"host": "10.0.0.2", "name": "x\n    ProxyCommand touch /tmp/bb-pwn"},
    {"host": "10.0.0.2 ProxyCommand=touch /tmp/bb-pwn"},
    {"host": "10.0.0.2", "user": "root\nProxyCommand touch /tmp/bb-pwn"},
    {"host": "10.0.0.2", "key": "/tmp/%d/${HOME}/id"},
    {"host": "10.0.0.2", "name": "*"},
    {"host": "10.0.0.2", "port": "22\nProxyCommand x"},
])
def test_ssh_config_refuses_what_ssh_config_cannot_hold(home: Path, server: dict) -> None:
    from benchbed.exporters import render

    deployment = servers_deployment("sshbad", [server])
    with pytest.raises(InputError, match=r"ssh-config: .* which ssh_config cannot hold|Port"):
        render(deployment, "ssh-config")


def test_ssh_config_is_parsed_by_ssh_as_written(home: Path, tmp_path: Path) -> None:
    from benchbed.exporters import render

    deployment = servers_deployment("sshok", [
        {"host": "10.0.0.2", "port": 2222, "user": "bench", "key": "/k/id_ed25519",
         "name": "web-1"},
        {"host": "fd00::5", "user": "root", "key": "~/.ssh/id_rsa"},
        {"host": "10.0.0.3", "key": "-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n"}])
    path = tmp_path / "ssh_config"
    path.write_text(render(deployment, "ssh-config"))
    for alias, expected in (("web-1", {"hostname": "10.0.0.2", "port": "2222", "user": "bench",
                                       "identityfile": "/k/id_ed25519"}),
                            ("sshok-1", {"hostname": "fd00::5", "port": "22", "user": "root",
                                         "identityfile": "~/.ssh/id_rsa"}),
                            ("sshok-2", {"hostname": "10.0.0.3", "identitiesonly": "no"})):
        parsed = subprocess.run(["ssh", "-G", "-F", str(path), alias], capture_output=True,
                                text=True, timeout=30, check=True).stdout
        options: dict[str, str] = {}
        for line in parsed.splitlines():
            key, _, value = line.partition(" ")
            options.setdefault(key, value)
        assert {key: options[key] for key in expected} == expected
        assert "proxycommand" not in options
        assert options["stricthostkeychecking"] == "true"
        assert options["userknownhostsfile"].endswith("/known_hosts")


# -- networks -----------------------------------------------------------------------------

@pytest.mark.parametrize(("network", "message"), [
    ("127.0.0.0/24", "is a loopback range"), ("224.0.0.0/24", "is a multicast range"),
    ("169.254.0.0/24", "is a link-local range"), ("8.8.8.0/24", "not a private network"),
    ("240.0.0.0/24", "is a reserved range"),
])
def test_special_ranges_are_refused(home: Path, network: str, message: str) -> None:
    for config_ in (netns(network), {"type": "ServersEngine", "provider": {
            "type": "VirshProvider", "network": network}}):
        with pytest.raises(ConfigError, match=message):
            api.validate(config_)


def lxc_local(network: str) -> dict:
    return {"type": "ServersEngine", "provider": {
        "type": "LxcProvider", "start_lxc_network": network, "host_provider": {
            "type": "ExistingServers", "credentials": [{"host": "localhost", "user": "root"}]}}}


def test_networks_of_other_deployments_are_refused(home: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(networks, "_taken_here", lambda: [])  # only the database matters here
    Deployment.create("first", netns("10.254.182.0/24"))
    Deployment.create("shared", lxc_local("10.254.183.0/24"))
    for overlapping in ("10.254.182.0/24", "10.254.182.128/25", "10.254.180.0/22"):
        with pytest.raises(ConfigError, match=r"overlaps .* of deployment '(first|shared)'"):
            api.validate(netns(overlapping))
    api.validate(lxc_local("10.254.183.0/24"))  # the same network: LXC shares its bridge
    with pytest.raises(ConfigError, match=r"overlaps 10.254.183.0/24 of deployment 'shared'"):
        api.validate(lxc_local("10.254.183.0/25"))
    with pytest.raises(ConfigError, match=r"overlaps 10.254.183.0/24 of deployment 'shared'"):
        api.validate(netns("10.254.183.0/24"))


def test_addresses_already_on_this_machine_are_refused(home: Path) -> None:
    if shutil.which("ip") is None or subprocess.run(["id", "-u"], capture_output=True,
                                                    text=True).stdout.strip() != "0":
        pytest.fail("needs root and iproute2 (CI runs as root)")
    link = "bbhardtest0"
    subprocess.run(["ip", "link", "add", link, "type", "bridge"], check=True)
    try:
        subprocess.run(["ip", "addr", "add", "10.254.181.1/24", "dev", link], check=True)
        subprocess.run(["ip", "addr", "add", "10.254.180.77/32", "dev", link], check=True)
        for network in ("10.254.181.0/24", "10.254.181.64/26", "10.254.180.64/26"):
            with pytest.raises(ConfigError, match=rf"overlaps .* on {link} on this machine"):
                api.validate(netns(network))
            with pytest.raises(ConfigError, match=rf"overlaps .* on {link} on this machine"):
                api.validate(lxc_local(network))
        api.validate(netns("10.254.180.128/26"))
    finally:
        subprocess.run(["ip", "link", "delete", link], check=True)


# -- errors that must not be swallowed ----------------------------------------------------

def test_a_corrupt_database_is_an_error_not_a_fresh_schema(home: Path) -> None:
    from benchbed.db import session

    home.mkdir(parents=True, exist_ok=True)
    (home / "benchbed.sqlite").write_bytes(b"this is not a database" * 100)
    with pytest.raises(BenchbedError, match=r"cannot open the database sqlite:///.*: file is "
                                            "not a database"):
        session.engine()
    assert (home / "benchbed.sqlite").read_bytes().startswith(b"this is not a database")


def test_a_refused_postgresql_login_is_an_error_not_a_fresh_schema(
        home: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from benchbed.db import session

    for wrong in (postgres_url.replace("postgres@", "nobody:Pg-Login-3@"),
                  postgres_url.replace("/benchbed", "/no_such_db")):
        monkeypatch.setenv("BENCHBED_DATABASE_URL", wrong)
        session.engine.cache_clear()
        with pytest.raises(BenchbedError, match=r"cannot open the database") as raised:
            session.engine()
        assert "Pg-Login-3" not in str(raised.value)
    session.engine.cache_clear()


def test_virsh_template_in_use_check_propagates_libvirt_errors() -> None:
    import libvirt

    from benchbed.images.virsh_snapshot import backing_of, users

    # libvirt's own test driver: a real libvirt, with an in-memory hypervisor
    conn = libvirt.open("test:///default")
    pool = conn.storagePoolLookupByName("default-pool")
    pool.createXML("<volume><name>base.img</name><capacity>1048576</capacity></volume>", 0)
    volume = pool.storageVolLookupByName("base.img")
    path = volume.path()
    assert backing_of(volume) is None
    assert users(conn, pool, path) == []
    pool.destroy()  # an inactive pool: libvirt refuses to answer, which is not a "no"
    with pytest.raises(BenchbedError, match=r"cannot tell what volume base.img is backed by"):
        backing_of(volume)
    with pytest.raises(BenchbedError, match=r"cannot tell what uses"):
        users(conn, pool, path)
    conn.close()


@pytest.mark.parametrize("bad", [{"type": []}, {"type": "ServersEngine", "provider": {
    "type": {"a": 1}}}, {"type": "MultihostEngine", "controller": {"type": [1]}, "nodes": [{}]}])
def test_a_type_that_is_not_a_string_is_a_config_error(bad: dict) -> None:
    """Found by the fuzzing in tests/integration/test_fuzz_cli.py: it was an internal error."""
    with pytest.raises(ConfigError, match=r"type: (is required and must name a plugin|must be)"):
        api.validate(bad)


@pytest.mark.parametrize("uri", ['http://m/debian" "x', "http://u:p@m/debian", "ftp://m/debian",
                                 "http://m/$(id)"])
def test_host_mirror_uris_that_would_break_the_image_are_refused(uri: str) -> None:
    from benchbed.images.lxc import parse_mirrors

    with pytest.raises(BenchbedError, match="is not a plain http"):
        parse_mirrors(f"Types: deb\nURIs: {uri}\nSuites: bookworm\n", "h")


@pytest.mark.parametrize("name", ["caf\u00e9", "a;b", "x\n", "../t", "-t"])
def test_virsh_template_names_are_ascii_tokens(name: str) -> None:
    from benchbed.images.virsh import VirshImageStore

    with pytest.raises(InputError, match="template name"):
        VirshImageStore("qemu:///system").build(name, "bookworm", rebuild=False)
