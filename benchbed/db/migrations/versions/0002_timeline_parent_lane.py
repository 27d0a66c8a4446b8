"""Timeline steps know their parent step and their lane (the server or node they worked on).

Revision ID: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    with op.batch_alter_table("timeline") as table:
        table.add_column(sa.Column("parent_id", sa.Integer))
        table.add_column(sa.Column("lane", sa.String(255)))


def downgrade() -> None:
    with op.batch_alter_table("timeline") as table:
        table.drop_column("lane")
        table.drop_column("parent_id")
