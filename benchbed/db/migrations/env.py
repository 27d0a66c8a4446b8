"""Alembic environment: runs against the engine benchbed hands in."""

from alembic import context

from benchbed.db.models import metadata

db_engine = context.config.attributes["connection_engine"]
with db_engine.begin() as connection:
    context.configure(connection=connection, target_metadata=metadata,
                      render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
