"""Every module that declares tables, so Alembic and tests see the whole schema.

A package that adds tables appends its module here and adds a migration revision.
"""

from __future__ import annotations

import importlib

TABLE_MODULES = [
    "core.storage.tables",
    "moderation.review.tables",
    "serving.auth",
    "recommender.tables",
    "ingest.jobs",
    "core.storage.processes",
    "ingest.near_duplicates",
]


def import_all_table_modules() -> None:
    for name in TABLE_MODULES:
        importlib.import_module(name)
