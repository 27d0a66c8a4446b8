"""The deployment's own SSH key pair, generated once and kept mode 0600 under BENCHBED_HOME."""

from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from benchbed import paths

if TYPE_CHECKING:
    from benchbed.deployment import Deployment


def deployment_key(deployment: "Deployment") -> tuple[Path, str]:
    """Return (private key path, public key line), creating the pair on first use."""
    private_path = deployment.directory / "id_ed25519"
    public_path = deployment.directory / "id_ed25519.pub"
    if not private_path.exists() or not public_path.exists():
        key = Ed25519PrivateKey.generate()
        private = key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.OpenSSH,
                                    serialization.NoEncryption())
        public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                               serialization.PublicFormat.OpenSSH)
        paths.write_private(private_path, private)
        paths.write_private(public_path, public + f" benchbed-{deployment.name}\n".encode())
    return private_path, public_path.read_text().strip()
