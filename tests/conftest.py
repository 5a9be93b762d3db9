"""Shared fixtures: real databases (SQLite file and, when configured, PostgreSQL).

PostgreSQL tests need ``REELSIFT_TEST_POSTGRES_URL`` (``scripts/start-test-postgres.sh``
prints it). Without it they are skipped, unless ``REELSIFT_REQUIRE_POSTGRES=1`` (CI),
where a missing server is a failure rather than a silent skip.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine, text

from core.storage.db import Base, make_engine, upgrade
from core.storage.models_index import import_all_table_modules

PG_URL = os.environ.get("REELSIFT_TEST_POSTGRES_URL")
REQUIRE_PG = os.environ.get("REELSIFT_REQUIRE_POSTGRES") == "1"


def _migrated(engine: Engine) -> Engine:
    upgrade(engine)
    import_all_table_modules()
    # Tables of packages whose migrations are not written yet; a no-op for migrated ones.
    Base.metadata.create_all(engine)
    return engine


@pytest.fixture
def sqlite_engine(tmp_path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'reelsift.db'}")
    yield _migrated(engine)
    engine.dispose()


@pytest.fixture
def postgres_engine() -> Iterator[Engine]:
    if not PG_URL:
        if REQUIRE_PG:
            pytest.fail("REELSIFT_REQUIRE_POSTGRES=1 but REELSIFT_TEST_POSTGRES_URL is not set")
        pytest.skip("no PostgreSQL: set REELSIFT_TEST_POSTGRES_URL (scripts/start-test-postgres.sh)")
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_URL.rsplit("/", 1)[0] + "/" + name
    engine = make_engine(url)
    try:
        yield _migrated(engine)
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_engine(request) -> Engine:
    """The same test on both databases the design supports."""
    return request.getfixturevalue(f"{request.param}_engine")
