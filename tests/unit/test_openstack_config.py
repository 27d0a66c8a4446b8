"""OpenStackProvider configs: the older tool's form passes, bad and hostile values are refused
at validation with one line naming the config path, and the password never shows."""

import json
from pathlib import Path
from typing import Any

import pytest

from benchbed import api, masking
from benchbed.errors import ConfigError

PROVIDER: dict[str, Any] = {
    "type": "OpenStackProvider", "deployment_name": "Rally sample deployment",
    "user": "admin", "tenant": "admin", "password": "Cloud-Admin-Pa55", "region": "RegionOne",
    "flavor_id": "2", "nics": [{"net-id": "97936015-128a-42f1-a3f2-1868ceeeeb6f"}],
    "auth_url": "http://192.0.2.10:5000/v2.0", "amount": 1, "wait_for_cloud_init": True,
    "image": {"checksum": "5101b2013b31d9f2f96f64f728926054", "name": "Debian 12",
              "format": "qcow2", "userdata": "#cloud-config\r\n disable_root: false\r\n",
              "url": "http://192.0.2.10:8080/debian-12.qcow2"}}


def config(engine: dict[str, Any], provider: dict[str, Any]) -> dict[str, Any]:
    merged = {key: value for key, value in {**PROVIDER, **provider}.items() if value is not None}
    return {"type": "ServersEngine", **engine, "provider": merged}


def test_the_older_tools_form_and_ours_pass() -> None:
    api.validate(config({}, {}))
    api.validate(config({"flavor": "m1.small", "image": "debian-12-bookworm",
                         "wait_for_ssh": False},
                        {"image": {"uuid": "6d2b7f3c-5a10-4c3e-9d56-0a2f3f1c9b1e"},
                         "auth_url": "https://cloud.example.test:5000/v3",
                         "user_domain_name": "Default", "project_domain_name": "perf",
                         "ssh_cidr": "198.51.100.0/24", "ssh_user": "debian",
                         "secgroup_name": "perf-ssh", "https_insecure": True}))


@pytest.mark.parametrize(("engine", "provider", "words"), [
    ({}, {"image": None}, "config provider: 'image' is required"),
    ({}, {"image": {"name": "x"}}, "config provider.image: matches none of the forms"),
    ({}, {"image": {"checksum": "not-a-md5"}}, "config provider.image.checksum"),
    ({}, {"image": {"uuid": "u", "url": "ftp://x"}}, "config provider.image.url"),
    ({}, {"password": None}, "config provider: 'password' is required"),
    ({}, {"auth_url": "file:///etc/passwd"}, "config provider.auth_url"),
    ({}, {"auth_url": "http://a b"}, "config provider.auth_url"),
    ({}, {"amount": 0}, "config provider.amount"),
    ({}, {"amount": 2.0}, "config provider.amount"),
    ({}, {"nics": [{"net_id": "x"}]}, "config provider.nics[0]"),
    ({}, {"secgroup_name": "g; rm -rf /"}, "config provider.secgroup_name"),
    ({}, {"ssh_cidr": "0.0.0.0/0 -j ACCEPT"}, "config provider.ssh_cidr: not a network"),
    ({}, {"ssh_user": "root\nProxyCommand id"}, "config provider.ssh_user"),
    ({"flavor": "m1.small\n--x"}, {}, "config flavor"),
    ({"image": "$(id)"}, {}, "config image"),
    ({}, {"colour": "red"}, "config provider: unknown key(s)"),
])
def test_bad_config_is_refused(engine: dict[str, Any], provider: dict[str, Any],
                               words: str) -> None:
    with pytest.raises(ConfigError) as refused:
        api.validate(config(engine, provider))
    text = str(refused.value)
    assert words in text, text
    assert "\n" not in text
    assert PROVIDER["password"] not in text


@pytest.mark.parametrize(("content", "words"), [
    (None, "cannot read"), (b"not a certificate\n", "holds no PEM certificate")])
def test_a_ca_file_that_is_not_one_is_refused(tmp_path: Path, content: bytes | None,
                                             words: str) -> None:
    path = tmp_path / "ca.pem"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError) as refused:
        api.validate(config({}, {"https_cacert": str(path)}))
    text = str(refused.value)
    assert text.startswith("config provider.https_cacert: ") and words in text, text


def test_the_password_is_masked_where_a_config_is_shown() -> None:
    shown = json.dumps(masking.mask(config({}, {})))
    assert PROVIDER["password"] not in shown
    assert '"password": "***"' in shown
