from __future__ import annotations

from alembic import context

import core.storage.tables  # noqa: F401  (registers the shared tables)
from core.storage.db import Base, make_engine
from core.storage.models_index import import_all_table_modules

import_all_table_modules()
target_metadata = Base.metadata
config = context.config


def run_migrations_online() -> None:
    engine = config.attributes.get("engine") or make_engine(
        config.get_main_option("sqlalchemy.url")
    )
    with engine.begin() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        context.run_migrations()


run_migrations_online()
