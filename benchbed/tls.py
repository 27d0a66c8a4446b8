"""TLS settings that engines and providers talking to a cloud share."""

from pathlib import Path

from benchbed.errors import ConfigError


def check_ca_file(path: str, config_path: str) -> None:
    """A CA bundle must be a readable file of PEM certificates: clients would otherwise fail
    at their first request, each with its own words."""
    from cryptography import x509

    try:
        data = Path(path).expanduser().read_bytes()
    except OSError as error:
        raise ConfigError(config_path, f"cannot read {path!r}: {error.strerror}") from None
    try:
        x509.load_pem_x509_certificates(data)
    except ValueError:
        raise ConfigError(config_path, f"{path!r} holds no PEM certificate") from None
