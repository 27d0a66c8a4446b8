"""Which database benchbed uses (no SQLAlchemy import: the fast read path needs this too)."""

import os

from benchbed import masking, paths


def database_url() -> str:
    """BENCHBED_DATABASE_URL, else a private SQLite file under BENCHBED_HOME."""
    url = os.environ.get("BENCHBED_DATABASE_URL")
    if url:
        # a driver's error may quote the URL or its password, whole or in part
        masking.register_url(url)
        return url
    db_file = paths.home() / "benchbed.sqlite"
    if not db_file.exists():
        paths.write_private(db_file, b"")
    return f"sqlite:///{db_file}"
