"""No cascading deletes: ledger, timeline and host-key rows outlive nothing by accident.

A cascade would drop a nested plugin's (or a sub-deployment's) ledger rows with their
deployment row, and with them the only record of what still exists. Rows now refuse to be
orphaned: a deployment row can be deleted only once every row that names it is gone.

Revision ID: 0002
"""

from alembic import op

revision = "0002"
down_revision = "0001"

# (table, column) of every reference to a deployment
REFERENCES = (
    ("resources", "deployment_uuid"),
    ("timeline", "deployment_uuid"),
    ("host_keys", "deployment_uuid"),
    ("deployments", "parent_uuid"),
)
NAMING = {"fk": "fk_%(table_name)s_%(column_0_name)s"}


def _rebuild(table: str, column: str, ondelete: str | None, old_name: str) -> None:
    with op.batch_alter_table(table, naming_convention=NAMING) as batch:
        batch.drop_constraint(old_name, type_="foreignkey")
        batch.create_foreign_key(f"fk_{table}_{column}", "deployments", [column], ["uuid"],
                                 ondelete=ondelete)


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for table, column in REFERENCES:
        # PostgreSQL named 0001's constraints itself; SQLite's are unnamed, and batch mode
        # names them through the naming convention while it rebuilds the table.
        old_name = f"{table}_{column}_fkey" if postgres else f"fk_{table}_{column}"
        _rebuild(table, column, None, old_name)


def downgrade() -> None:
    for table, column in REFERENCES:
        _rebuild(table, column, "CASCADE", f"fk_{table}_{column}")
