"""Write transactions that serialise correctly on SQLite and PostgreSQL.

PostgreSQL: READ COMMITTED plus explicit row locks (``SELECT … FOR UPDATE``, and
``SKIP LOCKED`` for claims) taken in one order: the item row first, then its tasks.

SQLite has no row locks and SQLAlchemy's pysqlite driver runs a transaction's first
reads before its BEGIN, so a read-check-write would race. ``BEGIN IMMEDIATE`` takes the
database's write lock before the first read, making each write transaction atomic
across threads and processes; other writers wait in SQLite's busy handler (the engine
sets a 30 s busy timeout). An in-process writer queue in front of it was measured
(benchmarks/review_queue.py) and bought no throughput, so there is none.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from core.storage.db import engine_of
from core.storage.tables import as_utc


def is_sqlite(sessions: sessionmaker[Session]) -> bool:
    return engine_of(sessions).dialect.name == "sqlite"


@contextmanager
def read_session(sessions: sessionmaker[Session]) -> Iterator[Session]:
    session = sessions()
    try:
        yield session
    finally:
        session.rollback()
        session.close()


def as_utc_or_none(value: datetime | None) -> datetime | None:
    return None if value is None else as_utc(value)
