"""ExistingCloud without a cloud: the v2.0 mapping and the CA file checks (the live Keystone
cases are in tests/integration/test_existing_cloud.py)."""

from pathlib import Path

import pytest

from benchbed import api
from benchbed.engines.existing_cloud import config_from_env, normalize_cloud, v3_auth_url
from benchbed.engines.keystone_check import _reason
from benchbed.errors import ConfigError


@pytest.mark.parametrize(("given", "mapped"), [
    ("http://k:5000/v2.0", "http://k:5000/v3"),
    ("http://k:5000/v2.0/", "http://k:5000/v3"),
    ("https://k/identity/v2.0/", "https://k/identity/v3"),
    ("http://k:5000/v3/", "http://k:5000/v3/"),
    ("http://k:5000/v2.0x", "http://k:5000/v2.0x"),
])
def test_v2_urls_become_v3(given: str, mapped: str) -> None:
    assert v3_auth_url(given) == mapped


def test_v2_config_registers_as_v3_of_the_default_domain() -> None:
    cloud = normalize_cloud({"auth_url": "http://k:5000/v2.0/", "admin": {
        "username": "admin", "password": "p", "tenant_name": "demo"}})["openstack"]
    assert cloud["auth_url"] == "http://k:5000/v3"
    assert cloud["admin"] == {"username": "admin", "password": "p", "project_name": "demo",
                              "user_domain_name": "Default", "project_domain_name": "Default"}


def _cloud(cacert: str, nested: bool = False) -> dict:
    keys = {"auth_url": "https://k:5000/v3", "https_cacert": cacert,
            "admin": {"username": "a", "password": "p"}}
    return ({"type": "ExistingCloud", "creds": {"openstack": keys}} if nested
            else {"type": "ExistingCloud", **keys})


@pytest.mark.parametrize("nested", [False, True])
def test_a_ca_file_that_is_no_certificate_is_refused_by_path(tmp_path: Path,
                                                             nested: bool) -> None:
    where = "creds.openstack.https_cacert" if nested else "https_cacert"
    garbage = tmp_path / "ca.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    with pytest.raises(ConfigError, match=f"config {where}: '.*ca.pem' holds no PEM "
                                          f"certificate"):
        api.validate(_cloud(str(garbage), nested), check_networks=False)
    with pytest.raises(ConfigError, match=f"config {where}: cannot read '.*missing.pem': "
                                          f"No such file"):
        api.validate(_cloud(str(tmp_path / "missing.pem"), nested), check_networks=False)


def test_fromenv_keeps_the_ca_as_an_absolute_path(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = config_from_env({"OS_AUTH_URL": "https://k:5000/v3", "OS_USERNAME": "a",
                              "OS_PASSWORD": "p", "OS_CACERT": "ca.pem"})
    assert config["https_cacert"] == str(tmp_path / "ca.pem")


@pytest.mark.parametrize(("error", "reason"), [
    ("Unable to establish connection to http://10.0.0.9:5000/v3: HTTPConnectionPool(host="
     "'10.0.0.9', port=5000): Max retries exceeded with url: /v3 (Caused by NewConnectionError("
     "'<urllib3.connection.HTTPConnection object at 0x7f>: Failed to establish a new "
     "connection: [Errno 113] No route to host'))", "[Errno 113] No route to host"),
    ('SSL exception connecting to https://k:5001/v3: HTTPSConnectionPool(host=\'k\', port=5001)'
     ': Max retries exceeded (Caused by SSLError(SSLCertVerificationError(1, "[SSL: '
     'CERTIFICATE_VERIFY_FAILED] certificate verify failed: unable to get local issuer '
     'certificate (_ssl.c:992)")))',
     "certificate verify failed: unable to get local issuer certificate"),
    ("Connection to k timed out. (connect timeout=20)", "timed out"),
])
def test_a_keystone_error_is_reduced_to_its_cause(error: str, reason: str) -> None:
    assert _reason(Exception(error)) == reason
