"""Config parsing, ${ENV} expansion and whole-config validation with the path at fault."""

import pytest

from benchbed import api, config
from benchbed.errors import ConfigError, InputError

SERVERS = {"type": "ServersEngine",
           "provider": {"type": "ExistingServers",
                        "credentials": [{"host": "10.0.0.2", "user": "root"}]}}


@pytest.mark.parametrize(("text", "message"), [
    ("{\"type\": ", "invalid JSON at line 1"),
    ("type: [unclosed\n", "invalid YAML at line"),
    ("- just\n- a list\n", "must be a mapping"),
])
def test_malformed_files_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        config.parse(text, "f.yaml")


def test_yaml_and_json_give_the_same_config() -> None:
    yaml_text = "type: ServersEngine\nprovider:\n  type: ExistingServers\n" \
                "  credentials:\n  - host: 10.0.0.2\n    user: root\n"
    import json

    assert config.parse(yaml_text) == config.parse(json.dumps(SERVERS)) == SERVERS


def test_env_references_are_expanded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BB_PASS", "from-env")
    expanded = config.expand_env({"a": ["x-${BB_PASS}", "${BB_UNSET:-dflt}"], "n": 3})
    assert expanded == {"a": ["x-from-env", "dflt"], "n": 3}


def test_missing_env_reference_names_the_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BB_MISSING", raising=False)
    with pytest.raises(ConfigError, match=r"config admin.user: environment variable "
                                          r"BB_MISSING is not set"):
        config.expand_env({"admin": {"user": "${BB_MISSING}"}})
    # under a secret key the name is not shown: `${` may be part of the password itself
    with pytest.raises(ConfigError, match=r"config admin.password: names an environment "
                                          r"variable that is not set") as raised:
        config.expand_env({"admin": {"password": "pa${BB_MISSING}ss"}})
    assert "BB_MISSING" not in str(raised.value)


@pytest.mark.parametrize(("bad", "message"), [
    ({"type": "NoSuchEngine"}, r"config type: unknown engine type 'NoSuchEngine'"),
    ({}, r"config type: is required"),
    ({**SERVERS, "amount": "two"}, r"config amount: must be of type integer"),
    ({**SERVERS, "amount": 0}, r"config amount: 0 is less than the minimum of 1"),
    ({"type": "ServersEngine"}, r"'provider' is required"),
    ({**SERVERS, "colour": "red"}, r"unknown key\(s\) \('colour' was unexpected\)"),
    ({"type": "ServersEngine", "provider": {"type": "Nope"}},
     r"config provider.type: unknown server provider type 'Nope'"),
    ({"type": "ServersEngine", "provider": {"type": "ExistingServers",
                                             "credentials": [{"host": "h", "user": 5}]}},
     r"config provider.credentials\[0\].user: must be of type string"),
    ({"type": "ServersEngine", "provider": {"type": "ExistingServers", "credentials": [
        {"host": "h", "user": "u"}, {"host": "h", "user": "v"}]}},
     r"config provider.credentials\[1\]: server h:22 is listed twice"),
    ({"type": "ServersEngine", "provider": {"type": "NetnsProvider", "network": "10.1.1.1/24"}},
     r"config provider.network: not an IPv4 network"),
    ({"type": "ExistingCloud", "auth_url": "ftp://x"}, r"config"),
])
def test_bad_configs_are_refused_with_their_path(bad: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        api.validate(bad)


def test_both_existing_cloud_formats_validate() -> None:
    v2 = {"type": "ExistingCloud", "auth_url": "http://k:5000/v2.0/",
          "region_name": "RegionOne", "endpoint_type": "public",
          "admin": {"username": "admin", "password": "p", "tenant_name": "demo"}}
    v3 = {"type": "ExistingCloud", "auth_url": "http://k:5000/v3/",
          "admin": {"username": "admin", "password": "p", "user_domain_name": "Default",
                    "project_name": "admin", "project_domain_name": "Default"},
          "users": [{"username": "u", "password": "p", "project_name": "p"}]}
    creds = {"type": "ExistingCloud", "creds": {"openstack": {
        "auth_url": "http://k:5000/v3/", "admin": {"username": "a", "password": "p"}}}}
    for good in (v2, v3, creds):
        api.validate(good)


@pytest.mark.parametrize(("bad", "message"), [
    ({**SERVERS, "flavor": "small"}, r"config flavor: ExistingServers cannot choose a size"),
    ({**SERVERS, "image": "bookworm"}, r"config image: ExistingServers cannot choose an image"),
    ({"type": "ServersEngine", "flavor": "huge", "provider": {
        "type": "LxcProvider", "host_provider": {
            "type": "ExistingServers", "credentials": [{"host": "localhost", "user": "root"}]}}},
     r"config flavor: unknown size 'huge' \(known: tiny \(1 vCPU, 512 MiB\)"),
])
def test_engine_requests_the_provider_cannot_serve(bad: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        api.validate(bad)
