"""FuelEngine end to end through the real CLI, against the Nailgun simulator.

No Fuel master can run here (Fuel is retired and needs bare metal), so the master is
tests/nailgun_sim.py: a real HTTP(S) server on 127.0.0.1 answering as the Nailgun of one
Fuel release does (5.0 to 11.0, read in fuel-web at each tag), its tasks running on a wall
clock. It is a stand-in. The same create/export/destroy, failing-task and kill -9 cases run
against every release.
"""

import datetime
import http.server
import json
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import Cli, kill_when, ledger_rows
from tests.integration.test_core_cli import assert_one_clear_line
from tests.nailgun_sim import RELEASES, Simulator

ALL_MACS = {f"52:54:00:00:00:{i:02x}" for i in range(1, 7)}
TOKEN = "Fuel-T0ken-Never-Shown"
KEYSTONE_USER = ("fueladmin", "Keystone-Pa55")


@dataclass(frozen=True)
class Certificates:
    """A CA made here, a server certificate for 127.0.0.1 it signed, and a CA that did not."""

    ca: str
    cert: str
    key: str
    other_ca: str


def _make_certificates(directory: Path) -> Certificates:
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def certificate(name: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name,
                    signer: ec.EllipticCurvePrivateKey, ca: bool) -> x509.Certificate:
        """Key identifiers included: Python's default context verifies strictly (RFC 5280)."""
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
                   .issuer_name(issuer).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
                   .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                                  critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                       signer.public_key()), critical=False))
        if ca:
            builder = builder.add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        else:
            builder = builder.add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        return builder.sign(signer, hashes.SHA256())

    def pem(name: str, data: bytes) -> str:
        path = directory / name
        path.write_bytes(data)
        return str(path)

    paths = []
    for name in ("bbfu-ca", "bbfu-other-ca"):
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        paths.append((key, certificate(name, key, subject, key, True)))
    (ca_key, ca), (_, other) = paths
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = certificate("127.0.0.1", server_key, ca.subject, ca_key, False)
    return Certificates(
        ca=pem("ca.pem", ca.public_bytes(serialization.Encoding.PEM)),
        cert=pem("server.pem", server.public_bytes(serialization.Encoding.PEM)),
        key=pem("server.key", server_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption())),
        other_ca=pem("other-ca.pem", other.public_bytes(serialization.Encoding.PEM)))


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return _make_certificates(tmp_path_factory.mktemp("fuel-tls"))


@pytest.fixture
def simulators() -> Iterator[Callable[..., Simulator]]:
    """Start simulated masters; every one is stopped at the end, also on failure."""
    started: list[Simulator] = []

    def start(release: str, tls: Certificates | None = None) -> Simulator:
        simulator = Simulator(release=release,
                              tls=(tls.cert, tls.key) if tls is not None else None)
        if simulator.release.auth:
            simulator.keystone_user = KEYSTONE_USER
        started.append(simulator)
        simulator.serve()
        return simulator

    try:
        yield start
    finally:
        for simulator in started:
            simulator.stop()


@pytest.fixture
def sim(simulators: Callable[..., Simulator]) -> Simulator:
    """Fuel 5.0: multinode, nova-network, no authentication (the older tool's samples)."""
    return simulators("5.0")


@pytest.fixture(params=list(RELEASES))
def release_sim(request: pytest.FixtureRequest, simulators: Callable[..., Simulator],
                certificates: Certificates) -> Simulator:
    """One master per release; 7.0, whose public endpoints are TLS by default, on HTTPS with
    the test's own CA."""
    release = RELEASES[request.param]
    return simulators(request.param, certificates if release.public_tls else None)


def fuel_config(sim: Simulator, **overrides: Any) -> dict[str, Any]:
    """The older tool's multinode sample on a release that has multinode (5.0, 6.1), else
    HA with Neutron; Keystone credentials for a master that requires a token (6.1 on)."""
    multinode = "multinode" in sim.release.modes
    config: dict[str, Any] = {
        "type": "FuelEngine", "deploy_name": "bbfu multinode", "api_url": sim.url,
        "release": sim.release.names[0 if multinode else 1],
        "mode": "multinode" if multinode else "ha_compact",
        "net_provider": "nova_network" if multinode else "neutron",
        "dns_nameservers": ["10.20.0.2", "10.20.0.3"],
        "nodes": {"controller": {"amount": 1, "filters": ["ram>=16G"]},
                  "compute": {"amount": 2, "filters": ["storage>80G"]}},
        "networks": {"public": {"cidr": "10.3.3.0/24", "gateway": "10.3.3.1",
                                "ip_ranges": [["10.3.3.5", "10.3.3.254"]], "vlan_start": 14},
                     "floating": {"cidr": "10.3.4.0/24",
                                  "ip_ranges": [["10.3.4.5", "10.3.4.254"]]}},
        "timeout": 60,
    }
    if sim.keystone_user is not None:
        config["keystone"] = {"auth_url": sim.url.replace("/api/v1/", "/keystone/v3"),
                              "username": KEYSTONE_USER[0], "password": KEYSTONE_USER[1],
                              "project_name": "admin"}
    config.update(overrides)
    return config


def release_config(sim: Simulator, certificates: Certificates, **overrides: Any
                   ) -> dict[str, Any]:
    """fuel_config, with the test's CA for a master on HTTPS."""
    extra = {"https_cacert": certificates.ca} if sim.tls else {}
    return fuel_config(sim, **{**extra, **overrides})


def write(tmp_path: Path, config: dict[str, Any], name: str = "fuel.yaml") -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config))
    return str(path)


def free_macs(sim: Simulator) -> set[str]:
    with sim.lock:
        return {n["mac"] for n in sim.nodes.values()
                if n["cluster"] is None and n["status"] == "discover"}


def calls(sim: Simulator, method: str, path_end: str) -> list[Any]:
    """Bodies of the requests with this method whose path ends so."""
    with sim.lock:
        return [body for m, p, body in sim.requests
                if m == method and p.rstrip("/").endswith(path_end)]


def answers(sim: Simulator, method: str, pattern: str) -> list[Any]:
    """What the simulator answered to requests with this method whose path matches."""
    with sim.lock:
        return [answer for m, p, answer in sim.answers
                if m == method and re.fullmatch(pattern, p.rstrip("/"))]


def deployment_rows(home: Path) -> int:
    database = home / "benchbed.sqlite"
    if not database.exists():
        return 0
    with sqlite3.connect(database) as connection:
        return connection.execute("SELECT count(*) FROM deployments").fetchone()[0]


def assert_all_gone(sim: Simulator, home: Path) -> None:
    assert sim.clusters == {}
    assert free_macs(sim) == ALL_MACS
    assert ledger_rows(home) == 0


# -- every release --------------------------------------------------------------------------


def test_create_export_destroy_each_release(bb: Cli, release_sim: Simulator, home: Path,
                                            tmp_path: Path, certificates: Certificates
                                            ) -> None:
    sim = release_sim
    version = sim.release.version
    bb.ok("deployment", "create", "--name", "fuel", "--file",
          write(tmp_path, release_config(sim, certificates)))
    details = bb.json("deployment", "show", "fuel")
    assert details["status"] == "deploy->finished"
    # the release it found, in the timeline and the log
    [found] = [s for s in details["timeline"] if s["step"] == "Nailgun"]
    assert found["detail"] == f"Fuel {version} at {sim.url}"
    assert any(f"is Fuel {version}" in p.read_text() for p in home.rglob("*.log"))
    steps = [s["step"] for s in details["timeline"]]
    for step in ("find release", "create cluster", "assign nodes", "verify networks",
                 "save networks", "provision", "deployment"):
        assert step in steps, steps
    [cluster] = sim.clusters.values()
    assert cluster["status"] == "operational" and cluster["fuel_version"] == version
    exported = details["endpoints"]
    assert exported["fuel"]["release"] == version
    if sim.release.public_tls:
        # 7.0: public_ssl.services on by default, with the hostname Fuel signs for
        assert exported["openstack"]["auth_url"] == "https://public.fuel.local:5000/v3"
        assert exported["openstack"]["https_cacert"] == certificates.ca
    elif cluster["mode"] == "multinode":
        [controller] = [n for n in sim.nodes.values() if n["roles"] == ["controller"]]
        address = next(net["ip"] for net in controller["network_data"]
                       if net["name"] == "public").split("/")[0]
        assert exported["openstack"]["auth_url"] == f"http://{address}:5000/v3"
    else:
        assert exported["openstack"]["auth_url"] == "http://10.3.3.5:5000/v3"  # the VIP
    assert bool(sim.issued) == sim.release.auth
    bb.ok("deployment", "destroy", "fuel")
    assert_all_gone(sim, home)
    # what this release answers to DELETE clusters/ID/: {} up to 8.0, the task from 9.0
    [deleted] = answers(sim, "DELETE", r"/api/v1/clusters/\d+")
    if sim.release.delete_task:
        assert deleted["name"] == "cluster_deletion"
    else:
        assert deleted == {}
    # (the deletion task, once the cluster is gone, answers 404)
    tasks = [t for t in answers(sim, "GET", r"/api/v1/tasks/\d+") if "id" in t]
    assert tasks and all(("parent_id" in t) == ("parent_id" in sim.release.task_fields)
                         for t in tasks)


def test_failed_task_each_release(bb: Cli, release_sim: Simulator, home: Path, tmp_path: Path,
                                  certificates: Certificates) -> None:
    sim = release_sim
    sim.fail_at = 40
    result = bb("deployment", "create", "--name", "bad", "--file",
                write(tmp_path, release_config(sim, certificates, timeout=600)))
    assert_one_clear_line(result, 1, "deployment failed at ")
    assert "Deployment has failed. Puppet run failed on node-1: Could not start nova-api" \
        in result.stderr
    # the deploy task was read once in error, and never polled again
    with sim.lock:
        [deploy] = [t for t in sim.tasks.values() if t["name"] == "deploy"]
    reads = [answer["status"] for answer in answers(sim, "GET", f"/api/v1/tasks/{deploy['id']}")]
    assert reads[-1] == "error" and reads.count("error") == 1, reads
    details = bb.json("deployment", "show", "bad")
    assert details["status"] == "deploy->failed"
    assert [s["outcome"] for s in details["timeline"] if s["step"] == "deployment"] == ["failed"]
    bb.ok("deployment", "destroy", "bad")
    assert_all_gone(sim, home)


def test_kill_during_deploy_then_destroy_each_release(bb: Cli, release_sim: Simulator,
                                                      home: Path, tmp_path: Path,
                                                      certificates: Certificates) -> None:
    sim = release_sim
    sim.hang_at = 60
    process = bb.popen("deployment", "create", "--name", "killed", "--file",
                       write(tmp_path, release_config(sim, certificates, timeout=600)))

    def deploying() -> bool:
        with sim.lock:
            return any(t["name"] == "deployment" and t["status"] == "running"
                       for t in sim.tasks.values())

    kill_when(process, deploying, timeout=60, never="the Fuel deployment task never ran",
              interval=0.1)
    assert len(sim.clusters) == 1 and ledger_rows(home) == 1
    bb.ok("deployment", "destroy", "--force", "killed")
    assert calls(sim, "PUT", "/stop_deployment")
    assert_all_gone(sim, home)
    assert bb.json("deployment", "list") == []


def test_polls_politely_over_a_long_task_and_a_slow_rediscovery(bb: Cli, sim: Simulator,
                                                                tmp_path: Path,
                                                                home: Path) -> None:
    """A task that runs for long and nodes slow to come back cost a request every few
    seconds (backoff to LONGEST_POLL), not several a second."""
    sim.hang_at = 40
    sim.seconds["rediscover"] = 15
    result = bb("deployment", "create", "--name", "hang", "--file",
                write(tmp_path, fuel_config(sim, timeout=25)))
    assert_one_clear_line(result, 1, "deployment timed out after 25s: Nailgun task")
    assert "is still running at 40%" in result.stderr
    with sim.lock:
        [deploy] = [t for t in sim.tasks.values() if t["name"] == "deploy"]
        started, ended = deploy["started"], sim.times[-1]
        late = [t for t in sim.times if t > started + 10]
    # after the first 10 s of the task: one poll (the task and the cluster's tasks) per
    # LONGEST_POLL at most
    assert ended - started > 20
    assert len(late) <= 2 * ((ended - started - 10) / 5 + 2), len(late)
    assert sim.rate(1.0) <= 10
    before = len(sim.times)
    began = time.monotonic()
    bb.ok("deployment", "destroy", "hang")
    waited = time.monotonic() - began
    assert_all_gone(sim, home)
    with sim.lock:
        during = sim.times[before:]
    # the old client read three resources every 0.3 s while the nodes rebooted (150 in 15 s)
    assert waited > 15 and len(during) <= 45, (waited, len(during))


def test_tls_master_needs_its_ca(bb: Cli, simulators: Callable[..., Simulator],
                                 certificates: Certificates, tmp_path: Path,
                                 home: Path) -> None:
    sim = simulators("8.0", certificates)
    assert sim.url.startswith("https://127.0.0.1:")
    result = bb("deployment", "create", "--name", "noca", "--file",
                write(tmp_path, fuel_config(sim), "noca.yaml"))
    assert_one_clear_line(result, 2, f"config https_cacert: Nailgun's TLS certificate at "
                                     f"{sim.url} is not verified by the system's CAs "
                                     f"(give https_cacert, or https_insecure)")
    result = bb("deployment", "create", "--name", "otherca", "--file",
                write(tmp_path, fuel_config(sim, https_cacert=certificates.other_ca),
                      "other.yaml"))
    assert_one_clear_line(result, 2, f"is not verified by the CA in {certificates.other_ca}")
    assert sim.requests == [] and ledger_rows(home) == 0
    bb.ok("deployment", "create", "--name", "insecure", "--file",
          write(tmp_path, fuel_config(sim, https_insecure=True), "insecure.yaml"))
    bb.ok("deployment", "destroy", "insecure")
    assert_all_gone(sim, home)


def test_public_tls_release_refused_without_a_ca(bb: Cli, simulators: Callable[..., Simulator],
                                                 tmp_path: Path, home: Path) -> None:
    """7.0 turns TLS on for the public endpoints: without a CA (or https_insecure) the
    cloud could not be verified, so nothing is created."""
    sim = simulators("7.0")
    result = bb("deployment", "create", "--name", "tls", "--file",
                write(tmp_path, fuel_config(sim)))
    assert_one_clear_line(result, 2, "config https_cacert: release 'Kilo on Ubuntu 14.04' puts "
                                     "the public endpoints behind TLS with a self-signed "
                                     "certificate: give its CA (https_cacert) or "
                                     "https_insecure")
    assert calls(sim, "POST", "/clusters") == [] and ledger_rows(home) == 0


def test_cacert_that_is_not_a_ca(bb: Cli, sim: Simulator, tmp_path: Path, home: Path) -> None:
    bogus = tmp_path / "bogus.pem"
    bogus.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    result = bb("deployment", "create", "--name", "bogus", "--file",
                write(tmp_path, fuel_config(sim, https_cacert=str(bogus))))
    assert_one_clear_line(result, 2, f"config https_cacert: '{bogus}' is not a CA bundle")
    assert sim.requests == [] and deployment_rows(home) == 0


class _Answer(http.server.BaseHTTPRequestHandler):
    """Something at the API URL that is not Nailgun: a fixed body and content type."""

    body = b""
    content_type = ""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", self.content_type)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.mark.parametrize(("content_type", "body", "code", "message"), [
    ("text/html", b"<html><body>Fuel UI</body></html>", 2,
     "config api_url: GET {url}version/ answered with text/html, not JSON: not a Nailgun"),
    ("application/json", b'{"release": "8.0", garbage', 1,
     "Nailgun answered GET {url}version/ with invalid JSON"),
])
def test_not_a_nailgun(bb: Cli, tmp_path: Path, home: Path, content_type: str, body: bytes,
                       code: int, message: str) -> None:
    handler = type("Handler", (_Answer,), {"body": body, "content_type": content_type})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/api/v1/"
    try:
        result = bb("deployment", "create", "--name", "notnailgun", "--file",
                    write(tmp_path, {"type": "FuelEngine", "deploy_name": "bbfu x",
                                     "api_url": url, "release": "Kilo on Ubuntu 14.04",
                                     "mode": "ha_compact", "net_provider": "neutron",
                                     "networks": {}, "nodes": {"controller": {"amount": 1},
                                               "compute": {"amount": 1}}}))
        assert_one_clear_line(result, code, message.format(url=url))
        assert ledger_rows(home) == 0
    finally:
        server.shutdown()
        server.server_close()


def test_wrong_keystone_credentials(bb: Cli, simulators: Callable[..., Simulator],
                                    tmp_path: Path, home: Path) -> None:
    sim = simulators("9.0")
    config = fuel_config(sim)
    config["keystone"]["password"] = "not-the-password"
    result = bb("deployment", "create", "--name", "wrongks", "--file", write(tmp_path, config))
    assert_one_clear_line(result, 2, "config keystone: Keystone at ")
    assert "not-the-password" not in result.stderr
    assert sim.clusters == {} and ledger_rows(home) == 0


# -- one release ----------------------------------------------------------------------------


def test_multinode_create_endpoints_destroy(bb: Cli, sim: Simulator, tmp_path: Path,
                                            home: Path) -> None:
    bb.ok("deployment", "create", "--name", "fuel", "--file", write(tmp_path, fuel_config(sim)))
    details = bb.json("deployment", "show", "fuel")
    assert details["status"] == "deploy->finished"
    [cluster] = sim.clusters.values()
    assert cluster["status"] == "operational" and cluster["mode"] == "multinode"
    roles = sorted((n["roles"], n["meta"]["memory"]["total"] >> 30,
                    sum(d["size"] for d in n["meta"]["disks"]) >> 30)
                   for n in sim.nodes.values() if n["cluster"] == cluster["id"])
    # ram>=16G for the controller, storage>80G for the computes: nodes 1-3 (4-6 are smaller)
    assert roles == [(["compute"], 16, 200), (["compute"], 16, 200), (["controller"], 32, 500)]
    # one bulk assignment; the config's networks and DNS merged into what was saved
    [assignment] = calls(sim, "PUT", "/api/v1/nodes")
    assert sorted(item["id"] for item in assignment) == [1, 2, 3]
    assert all(item["pending_addition"] and item["cluster_id"] == cluster["id"]
               for item in assignment)
    [verified] = calls(sim, "PUT", "/network_configuration/nova_network/verify")
    [saved] = calls(sim, "PUT", "/network_configuration/nova_network")
    assert saved == verified
    public = next(n for n in saved["networks"] if n["name"] == "public")
    assert public["cidr"] == "10.3.3.0/24" and public["vlan_start"] == 14
    parameters = cluster["network"]["networking_parameters"]
    assert parameters["dns_nameservers"] == ["10.20.0.2", "10.20.0.3"]
    assert parameters["floating_ranges"] == [["10.3.4.5", "10.3.4.254"]]
    # the endpoints: ExistingCloud's shape, Keystone on the controller's public address
    exported = json.loads(bb.ok("deployment", "export", "fuel", "--format", "json").stdout)
    [controller] = [n for n in sim.nodes.values() if n["roles"] == ["controller"]]
    address = next(net["ip"] for net in controller["network_data"] if net["name"] == "public")
    assert address.startswith("10.3.3.")
    assert exported["openstack"]["auth_url"] == f"http://{address.split('/')[0]}:5000/v3"
    assert exported["openstack"]["admin"] == {
        "username": "admin", "password": "admin", "project_name": "admin",
        "user_domain_name": "Default", "project_domain_name": "Default"}
    assert "OS_AUTH_URL=" in bb.ok("deployment", "export", "fuel", "--format", "openrc").stdout
    steps = [s["step"] for s in details["timeline"]]
    for step in ("find release", "choose nodes", "create cluster", "assign nodes",
                 "verify networks", "save networks", "provision", "deployment"):
        assert step in steps, steps
    bb.ok("deployment", "destroy", "fuel")
    assert_all_gone(sim, home)


def test_ha_with_filters_uses_the_public_vip(bb: Cli, simulators: Callable[..., Simulator],
                                             tmp_path: Path, home: Path) -> None:
    sim = simulators("11.0")
    config = fuel_config(sim, deploy_name="bbfu ha", mode="ha_compact", nodes={
        "controller": {"amount": 3, "filters": ["ram>=16G", "cpus>4"]},
        "cinder+compute": {"amount": 1, "filters": ["mac=52:54:00:00:00:05"]}})
    bb.ok("deployment", "create", "--name", "ha", "--file", write(tmp_path, config))
    [cluster] = sim.clusters.values()
    roles = {n["mac"][-2:]: n["roles"] for n in sim.nodes.values()
             if n["cluster"] == cluster["id"]}
    assert roles == {"01": ["controller"], "02": ["controller"], "03": ["controller"],
                     "05": ["cinder", "compute"]}
    exported = json.loads(bb.ok("deployment", "export", "ha", "--format", "json").stdout)
    # the VIP is the first public address; the controllers have the ones after it
    assert exported["openstack"]["auth_url"] == "http://10.3.3.5:5000/v3"
    assert exported["fuel"]["mode"] == "ha_compact"
    bb.ok("deployment", "destroy", "ha")
    assert_all_gone(sim, home)


def test_too_few_matching_nodes_refused_before_the_cluster(bb: Cli, sim: Simulator,
                                                           tmp_path: Path, home: Path) -> None:
    config = fuel_config(sim, nodes={"controller": {"amount": 1},
                                     "compute": {"amount": 2,
                                                 "filters": ["storage>300G", "ram>=8G"]}})
    result = bb("deployment", "create", "--name", "few", "--file", write(tmp_path, config))
    assert_one_clear_line(result, 2, "config nodes.compute: 2 compute node(s) needed, 1 of 6 "
                                     "free node(s) available (storage>300G excluded 5, "
                                     "ram>=8G excluded 1)")
    assert calls(sim, "POST", "/clusters") == []
    assert ledger_rows(home) == 0


def test_kill_right_after_post_clusters_then_destroy(bb: Cli, sim: Simulator, tmp_path: Path,
                                                     home: Path) -> None:
    """The id never reached the ledger: destroy finds the cluster by its unique name."""
    from sqlalchemy import create_engine, text

    bb.ok("deployment", "create", "--name", "lost", "--file", write(tmp_path, fuel_config(sim)))
    with create_engine(f"sqlite:///{home / 'benchbed.sqlite'}").begin() as db:
        db.execute(text("UPDATE resources SET data = :data, state = 'creating'"),
                    {"data": json.dumps({"api_url": sim.url})})
    bb.ok("deployment", "destroy", "lost")
    assert_all_gone(sim, home)


def test_token_is_sent_and_never_shown(bb: Cli, simulators: Callable[..., Simulator],
                                       tmp_path: Path, home: Path) -> None:
    sim = simulators("6.1")
    sim.keystone_user, sim.token = None, TOKEN
    wrong = bb("deployment", "create", "--name", "wrong", "--file",
               write(tmp_path, fuel_config(sim, token="not-the-token"), "wrong.yaml"))
    assert_one_clear_line(wrong, 2, "config token: Nailgun refused GET "
                                    f"{sim.url}releases/: 401 Authentication required")
    assert sim.clusters == {} and ledger_rows(home) == 0
    bb.ok("deployment", "destroy", "wrong")
    bb.ok("deployment", "create", "--name", "tok", "--file",
          write(tmp_path, fuel_config(sim, token=TOKEN)))
    shown = "".join(bb.ok("deployment", *args).stdout for args in (
        ("show", "tok"), ("show", "tok", "--json"), ("config", "tok"), ("config", "tok", "--json"),
        ("list",)))
    assert TOKEN not in shown and "***" in shown
    logs = "".join(p.read_text() for p in home.rglob("*.log"))
    assert logs and TOKEN not in logs
    bb.ok("deployment", "destroy", "tok")
    assert_all_gone(sim, home)


@pytest.mark.parametrize(("change", "where"), [
    ({"mode": "single"}, "config mode:"),
    ({"net_provider": "quantum"}, "config net_provider:"),
    ({"nodes": {"controller": {"amount": 1, "filters": ["storage>>80G"]},
                "compute": {"amount": 1}}}, "config nodes.controller.filters[0]: malformed"),
    ({"nodes": {"controller": {"amount": 1}, "compute": {"amount": 1,
                                                         "filters": ["ram>=16Q"]}}},
     "config nodes.compute.filters[0]: malformed filter 'ram>=16Q'"),
    ({"nodes": {"controller": {"amount": 1}, "compute": {"amount": 1,
                                                         "filters": ["cpus>4G"]}}},
     "config nodes.compute.filters[0]: malformed filter 'cpus>4G': cpus takes a whole"),
    ({"nodes": {"controller": {"amount": 1}, "compute": {"amount": 1,
                                                         "filters": ["mac>52:54:00:00:00:01"]}}},
     "config nodes.compute.filters[0]: malformed filter"),
    ({"nodes": {"controller": {"amount": 1}, "compute": {
        "amount": 1, "filters": ["mac=$(reboot)"]}}}, "config nodes.compute.filters[0]"),
    ({"nodes": {"controller": {"amount": 1}, "cinder": {"amount": 1}}},
     "config nodes: at least one compute"),
    ({"nodes": {"controller": {"amount": 1}, "compute+rm": {"amount": 1}}},
     "config nodes.compute+rm: unknown role 'rm'"),
    ({"nodes": {"controller": {"amount": 0}, "compute": {"amount": 1}}},
     "config nodes.controller.amount:"),
    ({"api_url": "ftp://10.20.0.2/api/v1/"}, "config api_url: 'ftp://10.20.0.2/api/v1/' is not"),
    ({"api_url": "http://10.20.0.2:8000/api/v1/$(reboot)"}, "config api_url:"),
    ({"api_url": "http://10.20.0.2:99999/api/v1/"}, "config api_url:"),
    ({"api_url": "http://admin:pw@10.20.0.2:8000/"}, "config api_url:"),
    ({"deploy_name": "two\nlines"}, "config deploy_name:"),
    ({"dns_nameservers": ["8.8.8.8; reboot"]}, "config dns_nameservers[0]: '8.8.8.8; reboot'"),
    ({"networks": {"public": {"cidr": "10.0.0.0/33"}}}, "config networks.public:"),
    ({"networks": {"public": {"ip_ranges": [["10.0.0.9", "10.0.0.1"]]}}},
     "config networks.public.ip_ranges[0]: first address is after the last"),
    ({"networks": {"publik": {}}}, "config networks: unknown key(s)"),
    ({"timeout": 0}, "config timeout:"),
    ({"token": "t", "keystone": {"auth_url": "http://x/", "username": "u", "password": "p"}},
     "config token: give either a token or keystone credentials"),
])
def test_bad_input_one_line_nothing_created(bb: Cli, sim: Simulator, tmp_path: Path, home: Path,
                                            change: dict[str, Any], where: str) -> None:
    result = bb("deployment", "create", "--name", "bad", "--file",
                write(tmp_path, fuel_config(sim, **change)))
    assert_one_clear_line(result, 2, where)
    assert sim.requests == []
    assert deployment_rows(home) == 0


def test_unknown_release_and_dead_api_url(bb: Cli, sim: Simulator,
                                          simulators: Callable[..., Simulator], tmp_path: Path,
                                          home: Path) -> None:
    result = bb("deployment", "create", "--name", "rel", "--file",
                write(tmp_path, fuel_config(sim, release="Grizzly on Ubuntu 12.04")))
    assert_one_clear_line(result, 2, "config release: Nailgun has no release 'Grizzly on "
                                     "Ubuntu 12.04' (it has: 'Icehouse on CentOS 6.5', "
                                     "'Icehouse on Ubuntu 12.04.4')")
    newer = simulators("8.0")
    result = bb("deployment", "create", "--name", "mode", "--file",
                write(tmp_path, fuel_config(newer, mode="multinode")))
    assert_one_clear_line(result, 2, "config mode: release 'Liberty on Ubuntu 14.04' cannot "
                                     "deploy in multinode mode (it offers: ha_compact)")
    sim.stop()
    result = bb("deployment", "create", "--name", "dead", "--file",
                write(tmp_path, fuel_config(sim)))
    assert_one_clear_line(result, 1, f"cannot reach Nailgun at {sim.url}: ")
    assert "Connection refused" in result.stderr
    assert sim.clusters == {} and ledger_rows(home) == 0


def test_progress_on_a_terminal(bb: Cli, sim: Simulator, tmp_path: Path, home: Path) -> None:
    """On a terminal every phase prints its line and the deploy task has a progress bar."""
    import os
    import pty
    import subprocess

    primary, secondary = pty.openpty()
    process = subprocess.Popen(bb.argv("deployment", "create", "--name", "tty", "--file",
                                       write(tmp_path, fuel_config(sim))),
                               stdin=subprocess.DEVNULL, stdout=secondary, stderr=secondary,
                               env={**bb.env, "COLUMNS": "120"})
    os.close(secondary)
    output = b""
    try:
        while True:
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # the terminal closed with the process
                break
            if not chunk:
                break
            output += chunk
    finally:
        os.close(primary)
        assert process.wait(timeout=120) == 0, output.decode(errors="replace")
    text = output.decode(errors="replace")
    # nested steps show on one line that the next one overwrites (only top-level and failed
    # steps stay on the screen)
    for phase in ("verify networks", "provision", "deployment"):
        assert f"...    {phase}" in text, text
    assert re.search(r"deployment [^\r\n]*━[^\r\n]* +[1-9]\d*/100", text), text
    bb.ok("deployment", "destroy", "tty")
    assert_all_gone(sim, home)
