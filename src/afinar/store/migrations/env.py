"""Alembic environment: runs on the connection handed over by ``afinar.store.db.migrate``."""

from alembic import context

from afinar.store.tables import Base

connection = context.config.attributes.get("connection")
if connection is None:  # `alembic` CLI: build an engine from the configured URL
    from sqlalchemy import create_engine

    connection = create_engine(context.config.get_main_option("sqlalchemy.url") or "").connect()

context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
