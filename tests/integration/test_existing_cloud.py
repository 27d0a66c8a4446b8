"""ExistingCloud against a live Keystone: v3 and v2-style configs, `users`, `--fromenv`, TLS.

Root, real LXC. One DebianEngine Keystone (in its own benchbed home) is made for the module;
uwsgi, which already serves it, gets a second socket for HTTPS (its own `https-socket`, with
a CA and server certificate made here), so that the same Keystone answers over plain HTTP on
5000 and over TLS on 5001. Each test then registers that cloud with ExistingCloud in a fresh
home of its own, and proves it with `deployment check`, the exports and the real clients.
"""

import datetime
import ipaddress
import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import CLIENTS, Cli, cli_for, client, ledger_rows, rally_env, write_yaml
from tests.integration.debian_lab import containers_named, lxc_here

pytestmark = pytest.mark.root

LXC_NETWORK = "10.254.20.0/24"
LXC_PREFIX = "bbxk"
# an address of the test's own bridge that no container has: nothing answers there
NOBODY = "10.254.20.99"
TLS_PORT = 5001
TLS_DIR = "/etc/keystone/bbxk-tls"
UWSGI_INI = "/etc/keystone/keystone-uwsgi.ini"
DEMO_PASSWORD = "demo-Pa55-word-of-bbxk"


@dataclass
class Keystone:
    """The module's Keystone: its admin's OS_* variables, address and TLS material."""

    admin: dict[str, str]
    address: str
    ca: Path
    other_ca: Path

    def url(self, tls: bool = False, path: str = "/v3") -> str:
        return (f"https://{self.address}:{TLS_PORT}{path}" if tls
                else f"http://{self.address}:5000{path}")

    def admin_user(self) -> dict[str, str]:
        return {"username": self.admin["OS_USERNAME"], "password": self.admin["OS_PASSWORD"],
                "project_name": self.admin["OS_PROJECT_NAME"],
                "user_domain_name": "Default", "project_domain_name": "Default"}


DEMO = {"username": "bbxk-demo", "password": DEMO_PASSWORD, "project_name": "bbxk-demo"}


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _ca(common: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(_name(common)).issuer_name(_name(common))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                         False), critical=True)
            .sign(key, hashes.SHA256()))
    return key, cert


def _server_cert(ca_key: ec.EllipticCurvePrivateKey, ca: x509.Certificate, address: str
                 ) -> tuple[bytes, bytes]:
    """A server key and certificate for `address` (an IP SAN), signed by the CA; PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(_name(address)).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(address))]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def _attach(container: str, command: str, stdin: bytes | None = None) -> None:
    subprocess.run(["lxc-attach", "-n", container, "--", "sh", "-c", command], input=stdin,
                   check=True, capture_output=True, timeout=300)


def _serve_tls(container: str, address: str, work: Path) -> tuple[Path, Path]:
    """uwsgi's own https-socket beside its http-socket; returns (the CA, an unrelated CA)."""
    ca_key, ca = _ca("bbxk test CA")
    cert, key = _server_cert(ca_key, ca, address)
    ca_file, other_file = work / "ca.pem", work / "other-ca.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    other_file.write_bytes(_ca("bbxk unrelated CA")[1].public_bytes(serialization.Encoding.PEM))
    _attach(container, f"mkdir -p {TLS_DIR} && cat > {TLS_DIR}/server.pem", cert)
    _attach(container, f"umask 077 && cat > {TLS_DIR}/server.key && "
                       f"chgrp keystone {TLS_DIR}/server.key && chmod 0640 {TLS_DIR}/server.key",
            key)
    _attach(container, f"sed -i '/^https-socket = /d; /^\\[uwsgi\\]/a https-socket = "
                       f":{TLS_PORT},{TLS_DIR}/server.pem,{TLS_DIR}/server.key' {UWSGI_INI} && "
                       f"service keystone restart")
    deadline = time.monotonic() + 180
    while True:
        try:
            if requests.get(f"https://{address}:{TLS_PORT}/v3", verify=str(ca_file),
                            timeout=5).status_code == 200:
                return ca_file, other_file
        except requests.RequestException:
            if time.monotonic() > deadline:
                raise
        time.sleep(1)


def _openrc_variables(openrc: Path) -> dict[str, str]:
    """The OS_* variables an exported openrc sets, as a shell that sources it sees them."""
    listed = subprocess.run(["sh", "-c", '. "$1" && env', "sh", str(openrc)],
                            capture_output=True, text=True, check=True,
                            env={"PATH": os.environ["PATH"]}).stdout
    return dict(line.split("=", 1) for line in listed.splitlines() if line.startswith("OS_"))


@pytest.fixture(scope="module")
def keystone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Keystone]:
    """One DebianEngine Keystone in an LXC container, behind HTTP and HTTPS."""
    work = tmp_path_factory.mktemp("xk-keystone")
    cli = cli_for(work / "home")
    config = {"type": "DebianEngine", "services": ["keystone"],
              "provider": lxc_here(LXC_NETWORK, LXC_PREFIX)}
    try:
        cli.ok("deployment", "create", "--file", write_yaml(work / "keystone.yaml", config),
               "--name", "bbxk-keystone", timeout=1200)
        cli.ok("deployment", "export", "bbxk-keystone", "--format", "openrc",
               "--output", str(work / "openrc"))
        admin = _openrc_variables(work / "openrc")
        address = urlsplit(admin["OS_AUTH_URL"]).hostname or ""
        env = {**admin, "PATH": os.environ["PATH"]}
        for args in (("project", "create", DEMO["project_name"]),
                     ("user", "create", "--project", DEMO["project_name"], "--password",
                      DEMO_PASSWORD, DEMO["username"]),
                     ("role", "add", "--project", DEMO["project_name"], "--user",
                      DEMO["username"], "member")):
            client("openstack", *args, env=env)
        container = containers_named(LXC_PREFIX)[0]
        ca, other_ca = _serve_tls(container, address, work)
        yield Keystone(admin, address, ca, other_ca)
    finally:
        cli.destroy_all()


# -- helpers ---------------------------------------------------------------------------------


def _create(bb: Cli, home: Path, name: str, config: dict[str, Any]) -> None:
    home.mkdir(parents=True, exist_ok=True)
    bb.ok("deployment", "create", "--file", write_yaml(home.parent / f"{name}.yaml", config),
          "--name", name, timeout=120)


def _all_checks_pass(bb: Cli, name: str) -> list[dict[str, Any]]:
    results = bb.json("deployment", "check", name)
    assert results and all(r["ok"] for r in results), results
    return results


def _export(bb: Cli, name: str, out: Path) -> dict[str, Path]:
    files = {}
    for fmt, file_name in (("openrc", "openrc"), ("clouds.yaml", "clouds.yaml"),
                           ("rally-spec", "spec.json")):
        files[fmt] = out / f"{name}-{file_name}"
        bb.ok("deployment", "export", name, "--format", fmt, "--output", str(files[fmt]))
        assert files[fmt].stat().st_mode & 0o777 == 0o600
    return files


def _token_by_clouds_yaml(clouds: Path, name: str) -> str:
    issued = client("openstack", "--os-cloud", name, "token", "issue", "-f", "json",
                    env={"OS_CLIENT_CONFIG_FILE": str(clouds)})
    token: str = json.loads(issued.stdout)["id"]
    assert token
    return token


def _token_by_openrc(openrc: Path) -> str:
    """`openstack token issue` in a shell that has sourced the openrc (and nothing else)."""
    result = subprocess.run(
        ["sh", "-c", '. "$1" && exec "$2" token issue -f json', "sh", str(openrc),
         str(CLIENTS / "openstack")], capture_output=True, text=True, timeout=120,
        env={"PATH": os.environ["PATH"], "HOME": str(openrc.parent)})
    assert result.returncode == 0, result.stderr[-1500:]
    token: str = json.loads(result.stdout)["id"]
    return token


def _rally_checks(tmp_path: Path, spec: Path) -> str:
    env = rally_env(tmp_path, spec)
    checked = client("rally", "env", "check", "--detailed", env=env).stdout
    assert "OK!" in checked, checked
    return checked


def _refused(result: subprocess.CompletedProcess[str], code: int, says: str) -> str:
    """The exit code, no traceback, and one line of error (besides the progress note)."""
    assert result.returncode == code, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.strip().splitlines()
             if not line.startswith("creating deployment")]
    assert len(lines) == 1 and says in lines[0], lines
    return lines[0]


def _nothing_left(bb: Cli, home: Path) -> None:
    assert bb.json("deployment", "list") == [] and ledger_rows(home) == 0


# -- plain HTTP ------------------------------------------------------------------------------


def test_v3_admin_and_users_check_export_and_clients(keystone: Keystone, bb: Cli, home: Path,
                                                     tmp_path: Path) -> None:
    _create(bb, home, "bbxk-v3", {"type": "ExistingCloud", "auth_url": keystone.url(),
                                  "admin": keystone.admin_user(), "users": [DEMO]})
    results = _all_checks_pass(bb, "bbxk-v3")
    assert next(r for r in results if r["target"] == "service catalogue")["detail"] == \
        "identity"
    shown = bb.ok("deployment", "show", "bbxk-v3").stdout
    assert keystone.admin["OS_PASSWORD"] not in shown and DEMO_PASSWORD not in shown
    files = _export(bb, "bbxk-v3", tmp_path)
    _token_by_clouds_yaml(files["clouds.yaml"], "bbxk-v3")
    _token_by_openrc(files["openrc"])
    spec = json.loads(files["rally-spec"].read_text())["existing@openstack"]
    assert spec["auth_url"] == keystone.url() and spec["users"][0]["username"] == DEMO["username"]
    assert "https_cacert" not in spec
    _rally_checks(tmp_path, files["rally-spec"])
    # a cloud registered as it is has no servers of benchbed's: those exports say so
    for fmt in ("ansible-inventory", "ssh-config"):
        result = bb("deployment", "export", "bbxk-v3", "--format", fmt)
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, \
            (fmt, result.returncode, result.stderr)


def test_users_only_no_admin(keystone: Keystone, bb: Cli, home: Path, tmp_path: Path) -> None:
    _create(bb, home, "bbxk-users", {"type": "ExistingCloud", "auth_url": keystone.url(),
                                     "users": [DEMO]})
    results = _all_checks_pass(bb, "bbxk-users")
    assert results[0]["detail"] == f"token issued for {DEMO['username']}"
    files = _export(bb, "bbxk-users", tmp_path)
    assert _openrc_variables(files["openrc"])["OS_USERNAME"] == DEMO["username"]
    _token_by_openrc(files["openrc"])
    _rally_checks(tmp_path, files["rally-spec"])


def test_v2_style_config_is_mapped_to_v3(keystone: Keystone, bb: Cli, home: Path,
                                         tmp_path: Path) -> None:
    """The older tool's v2.0 form: `/v2.0` URL and `tenant_name`, no domains."""
    admin = {"username": keystone.admin["OS_USERNAME"],
             "password": keystone.admin["OS_PASSWORD"],
             "tenant_name": keystone.admin["OS_PROJECT_NAME"]}
    _create(bb, home, "bbxk-v2", {"type": "ExistingCloud", "auth_url": keystone.url(path="/v2.0/"),
                                  "admin": admin,
                                  "users": [{"username": DEMO["username"],
                                             "password": DEMO_PASSWORD,
                                             "tenant_name": DEMO["project_name"]}]})
    _all_checks_pass(bb, "bbxk-v2")
    files = _export(bb, "bbxk-v2", tmp_path)
    variables = _openrc_variables(files["openrc"])
    assert variables["OS_AUTH_URL"] == keystone.url()
    assert variables["OS_PROJECT_NAME"] == "admin" and variables["OS_USER_DOMAIN_NAME"] == \
        "Default"
    _token_by_clouds_yaml(files["clouds.yaml"], "bbxk-v2")
    _rally_checks(tmp_path, files["rally-spec"])


def test_fromenv_from_the_exported_openrc(keystone: Keystone, bb: Cli, home: Path,
                                          tmp_path: Path) -> None:
    _create(bb, home, "bbxk-src", {"type": "ExistingCloud", "auth_url": keystone.url(),
                                   "admin": keystone.admin_user()})
    openrc = _export(bb, "bbxk-src", tmp_path)["openrc"]
    result = subprocess.run(
        ["sh", "-c", '. "$1" && shift && exec "$@"', "sh", str(openrc),
         *bb.argv("deployment", "create", "--fromenv", "--name", "bbxk-env")],
        capture_output=True, text=True, timeout=120,
        env={"PATH": os.environ["PATH"], "BENCHBED_HOME": str(home)})
    assert result.returncode == 0, result.stderr
    _all_checks_pass(bb, "bbxk-env")
    (tmp_path / "again").mkdir()
    again = _export(bb, "bbxk-env", tmp_path / "again")
    assert _openrc_variables(again["openrc"]) == _openrc_variables(openrc)


# -- TLS -------------------------------------------------------------------------------------


def test_tls_with_its_own_ca(keystone: Keystone, bb: Cli, home: Path, tmp_path: Path) -> None:
    """https_cacert, given relative to where `create` runs: the exports carry it, absolute."""
    (tmp_path / "ca.pem").write_bytes(keystone.ca.read_bytes())
    config = home.parent / "tls.yaml"
    home.mkdir(parents=True, exist_ok=True)
    write_yaml(config, {"type": "ExistingCloud", "auth_url": keystone.url(tls=True),
                        "https_cacert": "ca.pem", "admin": keystone.admin_user(),
                        "users": [DEMO]})
    created = subprocess.run(bb.argv("deployment", "create", "--file", str(config), "--name",
                                     "bbxk-tls"), capture_output=True, text=True, timeout=120,
                             cwd=tmp_path, env=bb.env)
    assert created.returncode == 0, created.stderr
    results = _all_checks_pass(bb, "bbxk-tls")
    assert results[0]["target"] == f"keystone {keystone.url(tls=True)}"
    out = tmp_path / "out"
    out.mkdir()
    files = _export(bb, "bbxk-tls", out)
    ca = str(tmp_path / "ca.pem")
    assert _openrc_variables(files["openrc"])["OS_CACERT"] == ca
    assert yaml.safe_load(files["clouds.yaml"].read_text())["clouds"]["bbxk-tls"]["cacert"] == ca
    assert json.loads(files["rally-spec"].read_text())["existing@openstack"][
        "https_cacert"] == ca
    _token_by_clouds_yaml(files["clouds.yaml"], "bbxk-tls")
    _token_by_openrc(files["openrc"])
    _rally_checks(tmp_path, files["rally-spec"])
    # the openrc registers the same cloud again, CA and all
    result = subprocess.run(
        ["sh", "-c", '. "$1" && shift && exec "$@"', "sh", str(files["openrc"]),
         *bb.argv("deployment", "create", "--fromenv", "--name", "bbxk-tls-env")],
        capture_output=True, text=True, timeout=120,
        env={"PATH": os.environ["PATH"], "BENCHBED_HOME": str(home)})
    assert result.returncode == 0, result.stderr
    _all_checks_pass(bb, "bbxk-tls-env")


def test_tls_insecure(keystone: Keystone, bb: Cli, home: Path, tmp_path: Path) -> None:
    _create(bb, home, "bbxk-insecure", {"type": "ExistingCloud",
                                        "auth_url": keystone.url(tls=True),
                                        "https_insecure": True,
                                        "admin": keystone.admin_user()})
    _all_checks_pass(bb, "bbxk-insecure")
    files = _export(bb, "bbxk-insecure", tmp_path)
    assert _openrc_variables(files["openrc"])["OS_INSECURE"] == "true"
    assert yaml.safe_load(files["clouds.yaml"].read_text())["clouds"]["bbxk-insecure"][
        "verify"] is False
    _token_by_clouds_yaml(files["clouds.yaml"], "bbxk-insecure")
    _token_by_openrc(files["openrc"])
    _rally_checks(tmp_path, files["rally-spec"])


# -- bad input and faults of the world: one line, nothing recorded ---------------------------


def _fails(bb: Cli, home: Path, config: dict[str, Any], code: int, says: str,
           bound: float = 60) -> str:
    home.mkdir(parents=True, exist_ok=True)
    path = write_yaml(home.parent / "bad.yaml", {"type": "ExistingCloud", **config})
    started = time.monotonic()
    line = _refused(bb("deployment", "create", "--file", path, "--name", "bbxk-bad"), code,
                    says)
    assert time.monotonic() - started < bound, line
    _nothing_left(bb, home)
    return line


def test_unreachable_auth_url(keystone: Keystone, bb: Cli, home: Path) -> None:
    """The world's fault (exit 1), within Keystone's timeout: an address nobody has, and a
    port nobody listens on."""
    admin = keystone.admin_user()
    line = _fails(bb, home, {"auth_url": f"http://{NOBODY}:5000/v3", "admin": admin}, 1,
                  "cannot be reached")
    assert NOBODY in line and re.search(r"reached: (\[Errno \d+\] [A-Za-z ]+|timed out)$",
                                        line), line
    line = _fails(bb, home, {"auth_url": f"http://{keystone.address}:5999/v3",
                             "admin": admin}, 1, "cannot be reached", bound=20)
    assert line.endswith("reached: [Errno 111] Connection refused"), line


def test_wrong_credentials(keystone: Keystone, bb: Cli, home: Path) -> None:
    """Keystone's own answer that the config is wrong: input (exit 2), naming the user's
    place in the config; the password is not shown."""
    bad = {**keystone.admin_user(), "password": "not-the-password-xk"}
    line = _fails(bb, home, {"auth_url": keystone.url(), "admin": bad}, 2, "config admin:")
    assert "refused the credentials of 'admin'" in line and "not-the-password" not in line
    line = _fails(bb, home, {"auth_url": keystone.url(), "admin": keystone.admin_user(),
                             "users": [DEMO, {**DEMO, "password": "wrong-xk"}]}, 2,
                  "config users[1]:")
    assert "wrong-xk" not in line


def test_ca_file_that_is_no_certificate(keystone: Keystone, bb: Cli, home: Path,
                                        tmp_path: Path) -> None:
    (tmp_path / "garbage.pem").write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n"
                                          "-----END CERTIFICATE-----\n")
    for path, says in ((tmp_path / "garbage.pem", "holds no PEM certificate"),
                       (tmp_path / "missing.pem", "cannot read")):
        line = _fails(bb, home, {"auth_url": keystone.url(tls=True), "https_cacert": str(path),
                                 "admin": keystone.admin_user()}, 2, "config https_cacert: ")
        assert says in line


def test_ca_that_does_not_match(keystone: Keystone, bb: Cli, home: Path) -> None:
    """A CA that did not sign the server's certificate, and no CA at all (the system's
    bundle): exit 1, the verification failure named."""
    admin = keystone.admin_user()
    for extra in ({"https_cacert": str(keystone.other_ca)}, {}):
        line = _fails(bb, home, {"auth_url": keystone.url(tls=True), "admin": admin, **extra},
                      1, "certificate verify failed")
        assert re.search(r"TLS failed: certificate verify failed: [a-z ]+$", line), line
