"""Initial schema: deployments, resources (ledger), timeline, host_keys.

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "deployments",
        sa.Column("uuid", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False, unique=True),
        sa.Column("config", sa.JSON, nullable=False),
        sa.Column("status", sa.String(32), nullable=False, index=True),
        sa.Column("endpoints", sa.JSON),
        sa.Column("parent_uuid", sa.String(36),
                  sa.ForeignKey("deployments.uuid", ondelete="CASCADE")),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.Column("lease_owner", sa.String(255)),
        sa.Column("lease_since", sa.DateTime),
        sa.Column("error", sa.Text),
    )
    op.create_table(
        "resources",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("deployment_uuid", sa.String(36),
                  sa.ForeignKey("deployments.uuid", ondelete="CASCADE"), index=True),
        sa.Column("scope", sa.String(255), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("data", sa.JSON, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "timeline",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("deployment_uuid", sa.String(36),
                  sa.ForeignKey("deployments.uuid", ondelete="CASCADE"), index=True),
        sa.Column("step", sa.String(255), nullable=False),
        sa.Column("detail", sa.Text),
        sa.Column("started_at", sa.DateTime, nullable=False),
        sa.Column("finished_at", sa.DateTime),
        sa.Column("outcome", sa.String(16), nullable=False),
    )
    op.create_table(
        "host_keys",
        sa.Column("deployment_uuid", sa.String(36),
                  sa.ForeignKey("deployments.uuid", ondelete="CASCADE"), primary_key=True),
        sa.Column("address", sa.String(255), primary_key=True),
        sa.Column("key_type", sa.String(64), nullable=False),
        sa.Column("key_base64", sa.Text, nullable=False),
    )


def downgrade() -> None:
    for table in ("host_keys", "timeline", "resources", "deployments"):
        op.drop_table(table)
