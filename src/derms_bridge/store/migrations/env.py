"""Alembic environment: migrations run on a plain synchronous connection."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from derms_bridge.store.tables import Base

config = context.config
connection = config.attributes.get("connection")
if connection is not None:
    context.configure(
        connection=connection, target_metadata=Base.metadata, transaction_per_migration=True
    )
    with context.begin_transaction():
        context.run_migrations()
else:
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.connect() as conn:
        context.configure(
            connection=conn, target_metadata=Base.metadata, transaction_per_migration=True
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()
