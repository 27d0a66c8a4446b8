"""Where benchbed keeps its files: everything lives under BENCHBED_HOME."""

import os
from pathlib import Path

from benchbed import private_files
from benchbed.errors import InputError


def home() -> Path:
    """Return (and create, mode 0700) the directory every benchbed file lives under.

    One that exists already is used only if it belongs to this user and no one else can
    write to it: the database and keys it holds would otherwise be another user's to read
    or replace (docs/guarantees.md).

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
    try:
        private_files.make_private_folder(path)
    except InputError as error:
        raise InputError(f"benchbed home (BENCHBED_HOME): {error}") from None
    return path


def deployment_dir(uuid: str, create: bool = True) -> Path:
    """Per-deployment directory for its SSH key, log and exported files."""
    path = home() / "deployments" / uuid
    if create:
        private_files.make_private_folder(path)
    return path


def write_private(path: Path, content: str | bytes) -> None:
    """Write a file that holds secrets: mode 0600 from its creation, never through a link
    nor into a file benchbed did not create (benchbed.private_files)."""
    private_files.write(path, content)
