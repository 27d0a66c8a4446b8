"""Where benchbed keeps its files: everything lives under BENCHBED_HOME."""

import os
from pathlib import Path


def home() -> Path:
    """Return (and create, mode 0700) the directory every benchbed file lives under.

    Always absolute: the paths derived from it are stored (ledger rows, endpoints' key
    files) and handed to daemons that change directory, so a relative BENCHBED_HOME is
    read against the directory it was given in, once.
    """
    configured = os.environ.get("BENCHBED_HOME")
    if configured:
        path = Path(configured).absolute()
    else:
        import platformdirs

        path = Path(platformdirs.user_data_dir("benchbed", appauthor=False))
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def deployment_dir(uuid: str, create: bool = True) -> Path:
    """Per-deployment directory for its SSH key, log and exported files."""
    path = home() / "deployments" / uuid
    if create:
        path.parent.mkdir(exist_ok=True, mode=0o700)
        path.mkdir(exist_ok=True, mode=0o700)
    return path


def write_private(path: Path, content: str | bytes) -> None:
    """Write a file that holds secrets: created with mode 0600 before any byte is written."""
    data = content.encode() if isinstance(content, str) else content
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
    finally:
        os.close(fd)
