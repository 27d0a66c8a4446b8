"""The deployment list through the DB-API directly, for SQLite.

Importing SQLAlchemy alone costs more than `benchbed deployment list` may take in all
(docs/benchmarks.md); this path reads the same rows with the standard library's sqlite3.
It answers only when the schema is already at the head revision; otherwise (or for
another database) it returns None and the caller uses the SQLAlchemy models.
"""

import sqlite3
from datetime import datetime
from typing import Any

from benchbed.db.url import database_url

HEAD_REVISION = "0004"
LIST_COLUMNS = ("uuid", "name", "status", "created_at", "parent_uuid")


def list_deployments() -> list[dict[str, Any]] | None:
    url = database_url()
    if not url.startswith("sqlite:///"):
        return None
    try:
        with sqlite3.connect(f"file:{url.removeprefix('sqlite:///')}?mode=ro", uri=True,
                             timeout=30) as db:
            if db.execute("SELECT version_num FROM alembic_version").fetchone() != \
                    (HEAD_REVISION,):
                return None
            rows = db.execute(f"SELECT {', '.join(LIST_COLUMNS)} FROM deployments "
                              "ORDER BY created_at").fetchall()
    except sqlite3.Error:
        return None
    return [{**dict(zip(LIST_COLUMNS, row, strict=True)),
             "created_at": datetime.fromisoformat(row[3])} for row in rows]
