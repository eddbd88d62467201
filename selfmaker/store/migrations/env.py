"""Alembic environment: SelfMaker runs migrations itself at start-up, on the connection it passes."""

from alembic import context

from selfmaker.store.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # `alembic revision --autogenerate` from a developer's shell
    from sqlalchemy import create_engine

    url = context.config.get_main_option("sqlalchemy.url")
    if url is None:
        raise RuntimeError("no database to compare with: set sqlalchemy.url in the Alembic configuration")
    connection = create_engine(url).connect()

context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
