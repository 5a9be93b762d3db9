"""The recommender's tables: the append-only event log, and experiment exposures.

``event_id`` is unique, so posting the same batch twice stores each event once; rows are
never updated or deleted, and the autoincrement ``id`` gives every replica one order in
which to apply them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from core.storage.db import Base
from core.storage.tables import utcnow


class EventRow(Base):
    __tablename__ = "events"

    # BigInteger on PostgreSQL, INTEGER PRIMARY KEY (rowid) on SQLite where only that
    # spelling autoincrements.
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    event_id: Mapped[str] = mapped_column(String(128), unique=True)
    user_id: Mapped[str] = mapped_column(String(128), index=True)
    item_id: Mapped[str] = mapped_column(String(128), index=True)
    type: Mapped[str] = mapped_column(String(16))
    ts: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    watch_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    item_duration_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    context: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ExposureRow(Base):
    """A user's first feed under an experiment (``recommender.experiments``)."""

    __tablename__ = "experiment_exposures"

    experiment_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    arm: Mapped[str] = mapped_column(String(64))
    first_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
