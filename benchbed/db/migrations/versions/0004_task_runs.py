"""Benchmark runs (`benchbed task run`): the run, its iterations, and the system's samples.

A run keeps the deployment's name, uuid, config digest and timeline as they were, without a
foreign key: runs are compared long after the deployment they measured is destroyed.

Revision ID: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    op.create_table(
        "task_runs",
        sa.Column("uuid", sa.String(36), primary_key=True),
        sa.Column("deployment_uuid", sa.String(36), nullable=False, index=True),
        sa.Column("deployment_name", sa.String(255), nullable=False),
        sa.Column("task_name", sa.String(255), nullable=False),
        sa.Column("task_text", sa.Text, nullable=False),
        sa.Column("task_digest", sa.String(64), nullable=False),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.Column("config_digest", sa.String(64), nullable=False),
        sa.Column("versions", sa.JSON, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("sla_ok", sa.Boolean),
        sa.Column("started_at", sa.DateTime, nullable=False),
        sa.Column("finished_at", sa.DateTime),
        sa.Column("rally_task_uuid", sa.String(36)),
        sa.Column("scenarios", sa.JSON, nullable=False),
        sa.Column("deployment_timeline", sa.JSON, nullable=False),
        sa.Column("sample_interval", sa.Float, nullable=False),
        sa.Column("error", sa.Text),
    )
    op.create_table(
        "task_iterations",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_uuid", sa.String(36), sa.ForeignKey("task_runs.uuid"), nullable=False,
                  index=True),
        sa.Column("scenario", sa.String(255), nullable=False),
        sa.Column("workload", sa.Integer, nullable=False),
        sa.Column("iteration", sa.Integer, nullable=False),
        sa.Column("started", sa.Float, nullable=False),
        sa.Column("duration", sa.Float, nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("atomic", sa.JSON, nullable=False),
    )
    op.create_table(
        "task_samples",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_uuid", sa.String(36), sa.ForeignKey("task_runs.uuid"), nullable=False,
                  index=True),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("server", sa.String(255), nullable=False),
        sa.Column("service", sa.String(255), nullable=False),
        sa.Column("cpu_seconds", sa.Float, nullable=False),
        sa.Column("rss_bytes", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("task_samples")
    op.drop_table("task_iterations")
    op.drop_table("task_runs")
