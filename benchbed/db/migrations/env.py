"""Alembic environment: runs against the engine benchbed hands in."""

from alembic import context

from benchbed.db.models import metadata

db_engine = context.config.attributes["connection_engine"]
with db_engine.connect() as connection:
    if connection.dialect.name == "sqlite":
        # Batch migrations rebuild tables; with foreign keys enforced, dropping the old
        # copy of a referenced table would fail (or, with a cascade, delete its children).
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
    context.configure(connection=connection, target_metadata=metadata,
                      render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
    if connection.dialect.name == "sqlite":
        connection.exec_driver_sql("PRAGMA foreign_keys=ON")
