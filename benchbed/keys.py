"""The deployment's own SSH key pair, generated once and kept mode 0600 under BENCHBED_HOME."""

import threading
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from benchbed import paths

if TYPE_CHECKING:
    from benchbed.deployment import Deployment


# Providers of one deployment ask for its key from parallel threads (a multihost controller
# and its nodes): two first uses each wrote a pair, and a container got one pair's public
# key while the other's private key stayed on disk (CI: "authentication failed").
# One process drives a deployment (its lease), so a lock in the process is enough.
_generating = threading.Lock()


def deployment_key(deployment: "Deployment") -> tuple[Path, str]:
    """Return (private key path, public key line), creating the pair on first use."""
    private_path = deployment.directory / "id_ed25519"
    public_path = deployment.directory / "id_ed25519.pub"
    with _generating:
        if not private_path.exists() or not public_path.exists():
            _generate(deployment, private_path, public_path)
        return private_path, public_path.read_text().strip()


def _generate(deployment: "Deployment", private_path: Path, public_path: Path) -> None:
    """Write a new pair, the private half first: a public file means the pair is whole."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH)
    paths.write_private(private_path, private)
    paths.write_private(public_path, public + f" benchbed-{deployment.name}\n".encode())
