"""Secrets masked everywhere they are shown; exporters produce what clients read."""

import json

import yaml

from benchbed import masking
from benchbed.engines.existing_cloud import config_from_env, normalize_cloud


def test_mask_hides_secret_keys_but_not_key_paths() -> None:
    data = {"admin": {"username": "a", "password": "hunter22"}, "token": "tok-12345",
            "servers": [{"host": "h", "key": "/home/u/.ssh/id", "password": "pw-9999"}],
            "inline": {"key": "-----BEGIN OPENSSH PRIVATE KEY-----\nabc"}}
    masked = masking.mask(data)
    assert masked["admin"] == {"username": "a", "password": "***"}
    assert masked["token"] == "***"
    assert masked["servers"][0] == {"host": "h", "key": "/home/u/.ssh/id", "password": "***"}
    assert masked["inline"]["key"] == "***"


def test_registered_secrets_are_scrubbed_from_text() -> None:
    masking.register_from({"nested": [{"password": "Zebra-Secret-77"}]})
    assert masking.scrub("auth failed for Zebra-Secret-77!") == "auth failed for ***!"


def test_v2_config_normalizes_to_v3_endpoints() -> None:
    cloud = normalize_cloud({"auth_url": "http://k:5000/v3", "endpoint_type": "publicURL",
                             "admin": {"username": "admin", "password": "p",
                                       "tenant_name": "demo"}})
    assert cloud == {"openstack": {
        "auth_url": "http://k:5000/v3", "region_name": "RegionOne", "endpoint_type": "public",
        "https_insecure": False, "https_cacert": "",
        "admin": {"username": "admin", "password": "p", "project_name": "demo",
                  "user_domain_name": "Default", "project_domain_name": "Default"}}}


def test_fromenv_reads_an_openrc_environment() -> None:
    config = config_from_env({"OS_AUTH_URL": "http://k:5000/v3", "OS_USERNAME": "admin",
                              "OS_PASSWORD": "p", "OS_PROJECT_NAME": "admin",
                              "OS_USER_DOMAIN_NAME": "Default", "OS_REGION_NAME": "R2",
                              "OS_INTERFACE": "internal", "OS_INSECURE": "true"})
    assert config["region_name"] == "R2"
    assert config["endpoint_type"] == "internal"
    assert config["https_insecure"] is True
    assert config["admin"]["project_name"] == "admin"


def test_openstack_exports(database: str) -> None:
    from benchbed.deployment import Deployment
    from benchbed.exporters import render

    deployment = Deployment.create("exp", {"type": "ExistingCloud"})
    deployment.set_endpoints(normalize_cloud({
        "auth_url": "http://10.0.0.2:5000/v3",
        "admin": {"username": "admin", "password": "pa ss'word", "project_name": "admin"}}))
    openrc = render(deployment, "openrc")
    assert "export OS_PASSWORD='pa ss'\\''word'" in openrc
    assert "export OS_AUTH_URL='http://10.0.0.2:5000/v3'" in openrc
    clouds = yaml.safe_load(render(deployment, "clouds.yaml"))
    assert clouds["clouds"]["exp"]["auth"]["password"] == "pa ss'word"
    assert clouds["clouds"]["exp"]["identity_api_version"] == 3
    spec = json.loads(render(deployment, "rally-spec"))
    assert spec["existing@openstack"]["admin"]["project_name"] == "admin"
