"""The schema: deployments, their resource ledger, timeline and recorded host keys.

SQLAlchemy Core tables rather than ORM classes, for Alembic's migrations and for tests; the
commands' queries are SQL text that benchbed/db/sql.py runs without importing SQLAlchemy.
"""

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

from benchbed.db.sql import utcnow

metadata = MetaData()


def _owner() -> Column:
    """The owning deployment. No cascade: a deployment row can go only once its ledger
    rows (those of every nested plugin included) are gone, so a leak stays visible."""
    return Column("deployment_uuid", String(36), ForeignKey("deployments.uuid"), index=True)


deployments = Table(
    "deployments", metadata,
    Column("uuid", String(36), primary_key=True),
    Column("name", String(255), unique=True, nullable=False),
    Column("config", JSON, nullable=False),
    Column("status", String(32), nullable=False, index=True),
    Column("endpoints", JSON),
    Column("parent_uuid", String(36), ForeignKey("deployments.uuid")),
    Column("created_at", DateTime, default=utcnow, nullable=False),
    Column("updated_at", DateTime, default=utcnow, nullable=False),
    Column("lease_owner", String(255)),
    Column("lease_since", DateTime),
    Column("error", Text),
)

# One ledger row: written before the resource is created, deleted once it is gone.
resources = Table(
    "resources", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    _owner(),
    Column("scope", String(255), nullable=False),
    Column("kind", String(64), nullable=False),
    Column("name", String(255), nullable=False),
    Column("data", JSON, nullable=False, default=dict),
    Column("state", String(16), nullable=False),
    Column("created_at", DateTime, default=utcnow, nullable=False),
)

timeline = Table(
    "timeline", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    _owner(),
    Column("step", String(255), nullable=False),
    Column("detail", Text),
    Column("started_at", DateTime, nullable=False),
    Column("finished_at", DateTime),
    Column("outcome", String(16), nullable=False, default="running"),
    # the step this one ran inside (None: a top-level step), and the server or node it
    # worked on (None: the deployment as a whole); both only for reports
    Column("parent_id", Integer),
    Column("lane", String(255)),
)

# Host keys recorded on first contact (trust on first use).
host_keys = Table(
    "host_keys", metadata,
    Column("deployment_uuid", String(36), ForeignKey("deployments.uuid"), primary_key=True),
    Column("address", String(255), primary_key=True),
    Column("key_type", String(64), nullable=False),
    Column("key_base64", Text, nullable=False),
)

# A benchmark run (`benchbed task run`). No foreign key to its deployment: runs are compared
# long after it is destroyed, so the run keeps its name, config digest and timeline itself.
task_runs = Table(
    "task_runs", metadata,
    Column("uuid", String(36), primary_key=True),
    Column("deployment_uuid", String(36), nullable=False, index=True),
    Column("deployment_name", String(255), nullable=False),
    Column("task_name", String(255), nullable=False),
    Column("task_text", Text, nullable=False),
    Column("task_digest", String(64), nullable=False),
    Column("tags", JSON, nullable=False),
    Column("config_digest", String(64), nullable=False),
    Column("versions", JSON, nullable=False),
    Column("status", String(16), nullable=False),
    Column("sla_ok", Boolean),
    Column("started_at", DateTime, nullable=False),
    Column("finished_at", DateTime),
    Column("rally_task_uuid", String(36)),
    Column("scenarios", JSON, nullable=False),
    Column("deployment_timeline", JSON, nullable=False),
    Column("sample_interval", Float, nullable=False),
    Column("error", Text),
)

# One iteration of one workload (a scenario with its runner and context) of a run.
task_iterations = Table(
    "task_iterations", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_uuid", String(36), ForeignKey("task_runs.uuid"), nullable=False, index=True),
    Column("scenario", String(255), nullable=False),
    Column("workload", Integer, nullable=False),
    Column("iteration", Integer, nullable=False),
    Column("started", Float, nullable=False),
    Column("duration", Float, nullable=False),
    Column("error", Text),
    Column("atomic", JSON, nullable=False),
)

# The system's own resource use during a run: one row per server, service and sample.
task_samples = Table(
    "task_samples", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_uuid", String(36), ForeignKey("task_runs.uuid"), nullable=False, index=True),
    Column("at", Float, nullable=False),
    Column("server", String(255), nullable=False),
    Column("service", String(255), nullable=False),
    Column("cpu_seconds", Float, nullable=False),
    Column("rss_bytes", BigInteger, nullable=False),
)
