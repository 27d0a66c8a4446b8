"""A DevStack server started from a snapshot of another gets its own identity, then its
services: `PYTHON - STATE < resume.py`, as root, with the Python DevStack installed into.

STATE/stacked.json is what the origin recorded when its stack.sh ended (address, host name,
machine-id, passwords, RabbitMQ's definitions); STATE/target.json is this server's address,
host name and passwords (benchbed writes it, mode 0600). The units that would reach the
origin or hold its secrets (every devstack@ unit, ovn-controller, RabbitMQ with the origin's
Erlang cookie) were skipped at boot by drop-ins naming the origin's machine-id (guest.sh
seal), which name this server's by now; this starts them. At the end stacked.json describes
this server.

What is rewritten, old value to new wherever DevStack wrote it: the address and the host
name (also as nova-compute's host, the host name followed by a number) and each password,
in the files under /etc and devstack's own, in the database columns that hold them, in
Keystone's password hashes (Keystone's own hashing), MariaDB's root user, RabbitMQ's user;
Keystone's fernet and credential keys, the Erlang cookie and the OVN chassis are new.
"""

import base64
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

# guest.sh seal's drop-in: the units it guards are the ones this starts
ORIGIN_DROP_IN = "50-benchbed-origin.conf"
UNITS = Path("/etc/systemd/system")
RABBITMQ = "rabbitmq-server.service"
WITHOUT_RABBITMQ = {"devstack@keystone.service", "devstack@placement-api.service",
                    "devstack@g-api.service"}
TEXT_ROOTS = (Path("/etc"), Path("/opt/stack/devstack"))
OWN_FILES = {Path("/etc/machine-id"), Path("/etc/hostname"), Path("/etc/hosts")}
MAX_TEXT = 4 * 1024 * 1024
SYSTEM_ID = Path("/etc/openvswitch/system-id.conf")
# OVN's southbound socket: from Debian's packages, or built from source (OVN_BUILD_FROM_SOURCE)
SOUTHBOUND = (Path("/var/run/ovn/ovnsb_db.sock"), Path("/usr/local/var/run/ovn/ovnsb_db.sock"))
# (database, table, column) holding an address, a host name or a password; a missing
# database or table (a service that is not enabled) is skipped
COLUMNS = [
    ("keystone", "endpoint", "url"),
    ("nova_api", "cell_mappings", "transport_url"),
    ("nova_api", "cell_mappings", "database_connection"),
    ("nova_api", "host_mappings", "host"),
    *[(cell, table, column) for cell in ("nova_cell0", "nova_cell1")
      for table, column in (("services", "host"), ("compute_nodes", "host"),
                            ("compute_nodes", "hypervisor_hostname"),
                            ("compute_nodes", "host_ip"), ("instances", "host"),
                            ("instances", "node"), ("instances", "launched_on"))],
    ("placement", "resource_providers", "name"),
    ("neutron", "agents", "host"),
    ("neutron", "ml2_port_bindings", "host"),
    ("neutron", "ml2_port_binding_levels", "host"),
    ("neutron", "ovn_hash_ring", "hostname"),
]
WAIT = 180.0


def log(message: str) -> None:
    print(f"resume: {message}", flush=True)


def run(*command: str, check: bool = True, stdin: str | None = None) -> str:
    done = subprocess.run(command, capture_output=True, text=True, check=False, input=stdin)
    if check and done.returncode != 0:
        raise SystemExit(f"{' '.join(command[:3])} exited {done.returncode}: "
                         f"{(done.stderr or done.stdout).strip()[-300:]}")
    return done.stdout.strip()


def rewriter(origin: dict[str, Any], target: dict[str, Any]) -> Callable[[str], str]:
    """old -> new for the address, the host name (alone or followed by digits, as
    nova-compute's host is; also as a queue's suffix or a domain name's first label) and
    each password."""
    pairs = [(re.compile(r"(?<![0-9.])" + re.escape(origin["address"]) + r"(?!\.?[0-9])"),
              target["address"]),
             (re.compile(r"(?<![A-Za-z0-9-])" + re.escape(origin["hostname"])
                         + r"(?=[0-9]*(?![A-Za-z0-9-]))"), target["hostname"])]
    for key, old in origin["passwords"].items():
        new = target["passwords"][key]
        if old != new:
            pairs.append((re.compile(re.escape(old)), new))

    def rewrite(text: str) -> str:
        for pattern, new in pairs:
            text = pattern.sub(new.replace("\\", "\\\\"), text)
        return text
    return rewrite


def text_files() -> Iterator[Path]:
    for root in TEXT_ROOTS:
        walk = os.walk(root) if root == Path("/etc") else [(str(root), [], os.listdir(root))]
        for folder, _, names in walk:
            for name in names:
                path = Path(folder, name)
                if path in OWN_FILES or path.is_symlink() or not path.is_file():
                    continue
                if path.stat().st_size <= MAX_TEXT:
                    yield path


def rewrite_files(rewrite: Callable[[str], str]) -> int:
    changed = 0
    for path in text_files():
        data = path.read_bytes()
        if b"\0" in data:
            continue
        try:
            text = data.decode()
        except UnicodeDecodeError:
            continue
        new = rewrite(text)
        if new != text:
            status = path.stat()
            temporary = path.with_name(f".{path.name}.benchbed")
            temporary.write_text(new)
            os.chown(temporary, status.st_uid, status.st_gid)
            os.chmod(temporary, status.st_mode & 0o7777)
            os.replace(temporary, path)
            changed += 1
    return changed


def wait_for(what: str, ready: Callable[[], bool], timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise SystemExit(f"{what} not ready within {timeout:.0f} s")
        time.sleep(0.2)


def database(password: str) -> Any:
    import pymysql

    connection: list[Any] = []

    def connected() -> bool:
        try:
            connection.append(pymysql.connect(unix_socket="/run/mysqld/mysqld.sock",
                                              user="root", password=password,
                                              autocommit=True))
        except pymysql.err.OperationalError:
            return False
        return True
    wait_for("MariaDB", connected)
    return connection[0]


def rewrite_database(cursor: Any, rewrite: Callable[[str], str]) -> int:
    cursor.execute("SELECT table_schema, table_name, column_name FROM "
                   "information_schema.columns")
    present = set(cursor.fetchall())
    changed = 0
    for schema, table, column in COLUMNS:
        if (schema, table, column) not in present:
            continue
        cursor.execute(f"SELECT DISTINCT `{column}` FROM `{schema}`.`{table}` "
                       f"WHERE `{column}` IS NOT NULL")
        for (value,) in cursor.fetchall():
            new = rewrite(value)
            if new != value:
                changed += cursor.execute(f"UPDATE `{schema}`.`{table}` SET `{column}` = %s "
                                          f"WHERE `{column}` = %s", (new, value))
    return changed


def keystone_passwords(cursor: Any, origin: dict[str, str], target: dict[str, str]) -> int:
    """Each Keystone user whose password was one of the origin's gets this server's, hashed
    by Keystone's own code under its config (DevStack makes every user's password the admin
    or the service password)."""
    import keystone.conf
    from keystone.common import password_hashing

    logging.disable(logging.WARNING)  # "Truncating password to ... 72 characters", per user
    keystone.conf.configure()
    keystone.conf.CONF([], project="keystone",
                       default_config_files=["/etc/keystone/keystone.conf"])
    cursor.execute("SELECT id, password_hash FROM keystone.password "
                   "WHERE password_hash IS NOT NULL")
    changed = 0
    for row_id, hashed in cursor.fetchall():
        for key in ("ADMIN_PASSWORD", "SERVICE_PASSWORD"):
            if password_hashing.check_password(origin[key], hashed):
                cursor.execute("UPDATE keystone.password SET password_hash = %s WHERE id = %s",
                               (password_hashing.hash_password(target[key]), row_id))
                changed += 1
                break
    return changed


def own_compute(hostname: str) -> Callable[[str], bool]:
    """Is `host` one of this server's nova-compute hosts (the host name, or it followed by
    a number, as DevStack names fake computes)?"""
    return lambda host: re.fullmatch(re.escape(hostname) + "[0-9]*", host) is not None


def forget_computes(cursor: Any, hostname: str) -> int:
    """The fake driver's compute node uuid is new in every process (Nova's uuidsentinel),
    so a restarted fake nova-compute cannot find its record and refuses to start: this
    server's computes start as new ones instead. Their service and compute node records are
    soft-deleted as Nova deletes them, their resource providers removed from Placement."""
    cursor.execute("SELECT id, uuid, host FROM nova_cell1.compute_nodes WHERE deleted = 0")
    own = own_compute(hostname)
    nodes = [(node_id, node) for node_id, node, host in cursor.fetchall() if own(host)]
    cursor.execute("SELECT id, host FROM nova_cell1.services "
                   "WHERE `binary` = 'nova-compute' AND deleted = 0")
    services = [service_id for service_id, host in cursor.fetchall() if own(host)]
    for table, ids in (("compute_nodes", [node_id for node_id, _ in nodes]),
                       ("services", services)):
        for row_id in ids:
            cursor.execute(f"UPDATE nova_cell1.{table} SET deleted = id, "
                           f"deleted_at = UTC_TIMESTAMP() WHERE id = %s", (row_id,))
    for _, node in nodes:
        cursor.execute("SELECT id FROM placement.resource_providers WHERE uuid = %s", (node,))
        for (provider,) in cursor.fetchall():
            for table in ("inventories", "allocations", "resource_provider_traits",
                          "resource_provider_aggregates"):
                cursor.execute(f"DELETE FROM placement.{table} "
                               f"WHERE resource_provider_id = %s", (provider,))
            # a root provider references itself (root_provider_id)
            cursor.execute("SET SESSION foreign_key_checks = 0")
            cursor.execute("DELETE FROM placement.resource_providers WHERE id = %s",
                           (provider,))
            cursor.execute("SET SESSION foreign_key_checks = 1")
    return len(nodes)


def computes_ready(connection: Any, hostname: str) -> bool:
    """Can the scheduler place a server here: does each of this server's nova-computes have
    its service record and its resource provider with inventory in Placement?"""
    own = own_compute(hostname)
    with connection.cursor() as cursor:
        cursor.execute("SELECT host FROM nova_cell1.services "
                       "WHERE `binary` = 'nova-compute' AND deleted = 0")
        hosts = {host for (host,) in cursor.fetchall() if own(host)}
        cursor.execute("SELECT DISTINCT p.name FROM placement.resource_providers p "
                       "JOIN placement.inventories i ON i.resource_provider_id = p.id")
        providers = {name for (name,) in cursor.fetchall() if own(name)}
    return bool(hosts) and hosts <= providers


def new_keys(directory: str, owner: str) -> None:
    """What keystone-manage fernet_setup and credential_setup write: 0 staged, 1 primary."""
    path = Path(directory)
    if not path.is_dir():
        return
    for key in path.iterdir():
        key.unlink()
    for name in ("0", "1"):
        key = path / name
        key.write_bytes(base64.urlsafe_b64encode(secrets.token_bytes(32)))
        key.chmod(0o600)
        shutil.chown(key, owner, owner)


def rabbit_definitions(definitions: dict[str, Any], password: str,
                       rewrite: Callable[[str], str]) -> dict[str, Any]:
    """The origin's definitions (DevStack's user, vhosts and permissions, and the queues
    that outlive a consumer, their exchanges and bindings: a service's first call then
    waits in its queue for the service instead of timing out) with this server's password
    (RabbitMQ's salted SHA-256: base64 of salt + sha256(salt + password)) and host name."""
    kept = json.loads(rewrite(json.dumps(definitions)))
    kept["queues"] = [queue for queue in kept.get("queues", [])
                      if not queue.get("auto_delete")]
    kept["exchanges"] = [exchange for exchange in kept.get("exchanges", [])
                         if not exchange.get("auto_delete")]
    queues = {(queue["vhost"], queue["name"]) for queue in kept["queues"]}
    exchanges = {(exchange["vhost"], exchange["name"]) for exchange in kept["exchanges"]}
    kept["bindings"] = [binding for binding in kept.get("bindings", [])
                        if binding.get("destination_type") == "queue"
                        and (binding["vhost"], binding["destination"]) in queues
                        and (binding["vhost"], binding["source"]) in exchanges]
    for user in kept.get("users", []):
        salt = secrets.token_bytes(4)
        digest = hashlib.sha256(salt + password.encode()).digest()
        user["password_hash"] = base64.b64encode(salt + digest).decode()
        user["hashing_algorithm"] = "rabbit_password_hashing_sha256"
    return kept


def openvswitch(origin: dict[str, Any], target: dict[str, Any],
                rewrite: Callable[[str], str]) -> str:
    """The chassis: a new system-id, the address and host name in its external_ids, the
    origin's chassis gone from the southbound database, its gateways moved to the new one."""
    old_id = run("ovs-vsctl", "get", "open", ".", "external_ids:system-id", check=False)
    if not old_id:
        return ""
    old_id = old_id.strip('"')
    new_id = str(uuid.uuid4())
    settings = [f"external_ids:system-id={new_id}"]
    for key in ("hostname", "ovn-encap-ip", "ovn-remote"):
        value = run("ovs-vsctl", "get", "open", ".", f"external_ids:{key}", check=False)
        if value:
            settings.append(f"external_ids:{key}={rewrite(value.strip(chr(34)))}")
    run("ovs-vsctl", "set", "open", ".", *settings)
    if SYSTEM_ID.exists():  # what Open vSwitch's start-up sets the system-id from
        SYSTEM_ID.write_text(f"{new_id}\n")
    # the southbound database is on this server only on a whole cloud; a compute node's
    # old chassis leaves through Neutron (benchbed forgets the template's agents)
    if shutil.which("ovn-sbctl") and any(socket.exists() for socket in SOUTHBOUND):
        run("ovn-sbctl", "--if-exists", "chassis-del", old_id)
        for table in ("Gateway_Chassis", "HA_Chassis"):
            for row in run("ovn-nbctl", "--bare", "--columns=_uuid", "find", table,
                           f"chassis_name={old_id}", check=False).split():
                run("ovn-nbctl", "set", table, row, f"chassis_name={new_id}")
    return new_id


def rewrite_databases(connection: Any, passwords: dict[str, str], new: dict[str, str],
                      hostname: str, rewrite: Callable[[str], str]) -> None:
    """The rows, Keystone's password hashes and MariaDB's root password."""
    with connection.cursor() as cursor:
        log(f"{rewrite_database(cursor, rewrite)} database rows rewritten")
        cursor.execute("SELECT schema_name FROM information_schema.schemata")
        schemas = {name for (name,) in cursor.fetchall()}
        if {"nova_cell1", "placement"} <= schemas:
            log(f"{forget_computes(cursor, hostname)} compute nodes to register anew")
        if "keystone" in schemas:
            log(f"{keystone_passwords(cursor, passwords, new)} Keystone passwords new")
        cursor.execute("SELECT user, host FROM mysql.user WHERE user = 'root'")
        for user, host in cursor.fetchall():
            cursor.execute("ALTER USER %s@%s IDENTIFIED BY %s",
                           (user, host, new["DATABASE_PASSWORD"]))


def main(state: Path) -> None:
    started = time.monotonic()
    origin = json.loads((state / "stacked.json").read_text())
    target = json.loads((state / "target.json").read_text())
    machine_id = Path("/etc/machine-id").read_text().strip()
    rewrite = rewriter(origin, target)
    sealed = sorted(path.parent.name.removesuffix(".d")
                    for path in UNITS.glob(f"*.service.d/{ORIGIN_DROP_IN}"))
    services = [unit for unit in sealed if unit.startswith("devstack@")]
    guarded = [unit for unit in sealed if unit not in services and unit != RABBITMQ]

    # RabbitMQ first, so that it starts while the rest is rewritten: a new cookie; its
    # database is named after the host, so the origin's is dropped and its users imported
    rabbit = Path("/var/lib/rabbitmq")
    if rabbit.is_dir():
        cookie = rabbit / ".erlang.cookie"
        cookie.unlink(missing_ok=True)
        cookie.write_text("".join(secrets.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
                                  for _ in range(20)))
        cookie.chmod(0o400)
        shutil.chown(cookie, "rabbitmq", "rabbitmq")
        for old in (rabbit / "mnesia").glob(f"rabbit@{origin['hostname']}*"):
            shutil.rmtree(old) if old.is_dir() else old.unlink()
        run("systemctl", "start", "--no-block", RABBITMQ)

    log(f"{rewrite_files(rewrite)} files rewritten")
    passwords, new = origin["passwords"], target["passwords"]
    # a compute node (LxcEngine's clone) uses its controller's database: nothing to do there
    connection = None
    if origin.get("database", True):
        connection = database(passwords["DATABASE_PASSWORD"])
        rewrite_databases(connection, passwords, new, target["hostname"], rewrite)
    new_keys("/etc/keystone/fernet-keys", "stack")
    new_keys("/etc/keystone/credential-keys", "stack")
    log(f"chassis {openvswitch(origin, target, rewrite) or 'none'}")

    # what does not use RabbitMQ loads while RabbitMQ starts
    early = [unit for unit in services if unit in WITHOUT_RABBITMQ]
    run("systemctl", "start", "--no-block", *guarded, *early)
    if rabbit.is_dir() and origin.get("rabbitmq"):
        wait_for("RabbitMQ", lambda: subprocess.run(
            ["rabbitmqctl", "--timeout", "5", "await_startup"],
            capture_output=True, check=False).returncode == 0)
        run("rabbitmqctl", "import_definitions", stdin=json.dumps(
            rabbit_definitions(origin["rabbitmq"], new["RABBIT_PASSWORD"], rewrite)))
        log(f"RabbitMQ ready at {time.monotonic() - started:.1f} s")
    run("systemctl", "start", *[unit for unit in services if unit not in early])
    wait_for("the services", lambda: all(
        state == "active" for state in run("systemctl", "is-active", *services,
                                           check=False).split()))
    if connection is not None:
        if any(service.startswith("devstack@n-cpu") for service in services):
            wait_for("nova-compute in Placement",
                     lambda: computes_ready(connection, target["hostname"]))
            log(f"nova-compute in Placement at {time.monotonic() - started:.1f} s")
        connection.close()

    stacked = {**target, "machine_id": machine_id, "settings": origin["settings"],
               "python": origin["python"], "rabbitmq": origin.get("rabbitmq"),
               "database": origin.get("database", True)}
    marker = state / "stacked.json.new"
    marker.write_text(json.dumps(stacked))
    marker.chmod(0o600)
    os.replace(marker, state / "stacked.json")
    (state / "target.json").unlink()
    log(f"done in {time.monotonic() - started:.1f} s")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
