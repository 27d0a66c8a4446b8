"""Timeline steps know their parent step and their lane (the server or node they worked on).

Revision ID: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.add_column("timeline", sa.Column("parent_id", sa.Integer))
    op.add_column("timeline", sa.Column("lane", sa.String(255)))


def downgrade() -> None:
    with op.batch_alter_table("timeline") as table:
        table.drop_column("lane")
        table.drop_column("parent_id")
