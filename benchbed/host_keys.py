"""Trust on first use: the first host key a server shows is recorded with the deployment."""

from typing import TYPE_CHECKING

import paramiko

from benchbed.db.sql import transaction
from benchbed.errors import HostKeyChangedError

if TYPE_CHECKING:
    from benchbed.deployment import Deployment


def verify_or_record(deployment: "Deployment | None", address: str, key: paramiko.PKey) -> None:
    """Record an unknown host's key; raise HostKeyChangedError if a recorded key differs."""
    if deployment is None:
        return
    presented = key.get_base64()
    with transaction() as db:
        known = db.first("SELECT key_type, key_base64 FROM host_keys WHERE "
                         "deployment_uuid = :uuid AND address = :address",
                         uuid=deployment.uuid, address=address)
        if known is None:
            db.execute("INSERT INTO host_keys (deployment_uuid, address, key_type, key_base64) "
                       "VALUES (:uuid, :address, :key_type, :key_base64)",
                       uuid=deployment.uuid, address=address, key_type=key.get_name(),
                       key_base64=presented)
            deployment.logger.info("recorded host key of %s (%s %s)", address, key.get_name(),
                                   key.fingerprint)
            return
        if known.key_type == key.get_name() and known.key_base64 == presented:
            return
    raise HostKeyChangedError(
        f"host key of {address} has changed since first contact (now {key.get_name()} "
        f"{key.fingerprint}); refusing to connect. If the server was rebuilt on purpose, "
        f"run 'benchbed deployment forget-host-key {deployment.name} {address}'"
    )


def known_hosts_lines(deployment: "Deployment") -> list[str]:
    """OpenSSH known_hosts lines for the deployment's recorded keys."""
    with transaction() as db:
        rows = db.execute("SELECT address, key_type, key_base64 FROM host_keys "
                          "WHERE deployment_uuid = :uuid", uuid=deployment.uuid)
    lines = []
    for row in rows:
        host, port = row.address.rsplit(":", 1)
        name = host if port == "22" else f"[{host}]:{port}"
        lines.append(f"{name} {row.key_type} {row.key_base64}")
    return lines


def forget(deployment: "Deployment", address: str) -> bool:
    with transaction() as db:
        return bool(db.count("DELETE FROM host_keys WHERE deployment_uuid = :uuid AND "
                             "address = :address", uuid=deployment.uuid, address=address))
