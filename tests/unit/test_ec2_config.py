"""Ec2Provider configs that must be refused at validation, naming the config path."""

from typing import Any

import pytest

from benchbed import api
from benchbed.errors import ConfigError

GOOD: dict[str, Any] = {"type": "ServersEngine", "wait_for_ssh": False,
                        "image": "ami-0123456789abcdef0",
                        "provider": {"type": "Ec2Provider", "region": "eu-west-1"}}


def config(engine: dict[str, Any], provider: dict[str, Any]) -> dict[str, Any]:
    provider = {key: value for key, value in {**GOOD["provider"], **provider}.items()
                if value is not None}
    merged = {**GOOD, **engine, "provider": provider}
    return {key: value for key, value in merged.items() if value is not None}


def test_a_good_config_passes() -> None:
    api.validate(config({"flavor": "m7i-flex.large"}, {
        "endpoint_url": "https://ec2.example.test", "subnet_id": "subnet-0123456789abcdef0",
        "ssh_user": "admin", "ssh_cidr": "2001:db8::/32", "expires_in": "90m",
        "tags": {"team": "perf"}}))
    api.validate(config({"wait_for_ssh": True}, {"ssh_cidr": "203.0.113.7/32"}))


@pytest.mark.parametrize(("engine", "provider", "words"), [
    ({"image": None}, {}, "config image: Ec2Provider needs an AMI id"),
    # the engine's own pattern for names that reach a host refuses these first
    ({"image": "ami-1;rm -rf /"}, {}, "config image: 'ami-1;rm -rf /' does not match"),
    ({"image": "ami-0123456789abcdef0\n"}, {}, "config image: 'ami-0123456789abcdef0\\n' does "
                                              "not match"),
    ({"flavor": "t3.micro\n--x"}, {}, "config flavor: 't3.micro\\n--x' does not match"),
    ({"flavor": "small"}, {}, "config flavor: 'small' is not an EC2 instance type"),
    ({"wait_for_ssh": True}, {}, "config provider.ssh_cidr: is required"),
    ({"wait_for_ssh": None}, {}, "config provider.ssh_cidr: is required"),
    ({}, {"ssh_cidr": "10.0.0.1/8"}, "config provider.ssh_cidr: not a network"),
    ({}, {"ssh_cidr": "0.0.0.0/0 -j ACCEPT"}, "config provider.ssh_cidr: not a network"),
    ({}, {"region": "us-east-1 $(true)"}, "config provider.region"),
    ({}, {"region": None}, "config provider: 'region' is required"),
    ({}, {"tags": {"benchbed:deployment": "x"}}, "provider.tags.benchbed:deployment: aws:"),
    ({}, {"tags": {"aws:cloudformation": "x"}}, "reserved tag keys"),
    ({}, {"tags": {"creator": "me"}}, "reserved tag keys"),
    ({}, {"tags": {"team": 7}}, "config provider.tags.team"),
    ({}, {"tags": {"k" * 129: "x"}}, "tag keys have 1 to 128 characters"),
    ({}, {"expires_in": "4 hours"}, "config provider.expires_in"),
    ({}, {"expires_in": "0h"}, "config provider.expires_in"),
    ({}, {"aws_secret_access_key": "x"}, "give aws_access_key_id and aws_secret_access_key"),
    ({}, {"aws_access_key_id": "AKIA'; x"}, "config provider.aws_access_key_id"),
    ({}, {"endpoint_url": "file:///etc/passwd"}, "config provider.endpoint_url"),
    ({}, {"endpoint_url": "http://a b"}, "config provider.endpoint_url"),
    ({}, {"subnet_id": "subnet-1'x"}, "config provider.subnet_id"),
    ({}, {"ssh_user": "root;id"}, "config provider.ssh_user"),
    ({}, {"colour": "red"}, "config provider: unknown key(s)"),
])
def test_bad_config_is_refused(engine: dict[str, Any], provider: dict[str, Any],
                               words: str) -> None:
    with pytest.raises(ConfigError) as refused:
        api.validate(config(engine, provider))
    assert words in str(refused.value)
