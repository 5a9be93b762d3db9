"""Tables of the human review queue: tasks, decisions, user reports and the audit log.

Invariants the database itself enforces, so that no code path (or second replica) can
break them:
- one decision per task: ``UNIQUE(task_id)`` on ``review_decisions``;
- one open task per item: a partial unique index on ``review_tasks.item_id``;
- a moderator's skip of a task is one row: ``UNIQUE(task_id, moderator)`` on
  ``review_skips``;
- a reporter's unresolved report counts once per item: a partial unique index;
- the audit log is append-only: triggers refuse UPDATE and DELETE on SQLite and
  PostgreSQL (Alembic autogenerate does not see triggers: the migration must copy
  ``AUDIT_APPEND_ONLY_DDL``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    DDL,
    JSON,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    event,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from core.storage.db import Base

OPEN = "open"
DECIDED = "decided"


class ReviewTaskRow(Base):
    __tablename__ = "review_tasks"
    __table_args__ = (
        # The claim query: open tasks of some tiers, best sort_key first.
        Index("ix_review_tasks_claim", "status", "tier", "sort_key"),
        Index(
            "uq_review_tasks_open_item", "item_id", unique=True,
            sqlite_where=text("status = 'open'"), postgresql_where=text("status = 'open'"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    item_id: Mapped[str] = mapped_column(
        ForeignKey("items.id", ondelete="CASCADE"), index=True
    )
    reason: Mapped[str] = mapped_column(String(32))  # TaskReason
    tier: Mapped[int] = mapped_column(Integer, default=1)
    category: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    categories: Mapped[list[str]] = mapped_column(JSON, default=list)
    # Risk scores at enqueue time (category -> score | null): calibration reads them.
    scores: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    reasons: Mapped[list[str]] = mapped_column(JSON, default=list)
    severity: Mapped[float] = mapped_column(Float, default=0.0)
    reach: Mapped[int] = mapped_column(Integer, default=0)
    report_count: Mapped[int] = mapped_column(Integer, default=0)
    report_weight: Mapped[float] = mapped_column(Float, default=0.0)
    # Inverse sampling probability: a QA-sampled approval stands for 1/rate approvals.
    sample_weight: Mapped[float] = mapped_column(Float, default=1.0)
    # Priority without its age term, minus age_weight x hours since the epoch at
    # creation: ordering by it equals ordering by priority at any moment (see priority.py).
    sort_key: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(16), default=OPEN)
    claimed_by: Mapped[str | None] = mapped_column(String(128), nullable=True, index=True)
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True
    )
    # Appeals: the moderator whose decision is appealed may not claim the appeal.
    excluded_moderator: Mapped[str | None] = mapped_column(String(128), nullable=True)
    parent_task_id: Mapped[int | None] = mapped_column(
        ForeignKey("review_tasks.id"), nullable=True
    )
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class ReviewSkipRow(Base):
    """A moderator skipped a task: their claims take it only after every other task.

    Per moderator, so another moderator still gets the task at its normal priority.
    The row lives until the task is decided (or until this moderator claims the task
    by name); skipping again replaces it with a newer row (a larger ``id``), which moves
    the task to the back of this moderator's skipped ones. ``id`` rather than
    ``skipped_at`` orders them: two skips may share a timestamp, never an id.
    """

    __tablename__ = "review_skips"
    __table_args__ = (
        UniqueConstraint("task_id", "moderator"),
        # The claim's second pass: this moderator's skipped tasks, least recent first.
        Index("ix_review_skips_moderator", "moderator", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("review_tasks.id", ondelete="CASCADE"))
    moderator: Mapped[str] = mapped_column(String(128))
    skipped_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ReviewDecisionRow(Base):
    __tablename__ = "review_decisions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    task_id: Mapped[int] = mapped_column(
        ForeignKey("review_tasks.id", ondelete="CASCADE"), unique=True
    )
    item_id: Mapped[str] = mapped_column(
        ForeignKey("items.id", ondelete="CASCADE"), index=True
    )
    moderator: Mapped[str] = mapped_column(String(128), index=True)
    action: Mapped[str] = mapped_column(String(16))  # approve | reject | escalate
    policy_codes: Mapped[list[str]] = mapped_column(JSON, default=list)
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    item_state_before: Mapped[str] = mapped_column(String(32))
    item_state_after: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class ReportRow(Base):
    __tablename__ = "review_reports"
    __table_args__ = (
        Index(
            "uq_review_reports_unresolved", "item_id", "reporter_id", unique=True,
            sqlite_where=text("resolved_task_id IS NULL"),
            postgresql_where=text("resolved_task_id IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    item_id: Mapped[str] = mapped_column(
        ForeignKey("items.id", ondelete="CASCADE"), index=True
    )
    reporter_id: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str] = mapped_column(Text)
    weight: Mapped[float] = mapped_column(Float)
    # Set when a moderator's final decision on the item answered this report.
    resolved_task_id: Mapped[int | None] = mapped_column(
        ForeignKey("review_tasks.id"), nullable=True
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class AuditRow(Base):
    """Append-only: who did what, when, with the record before and after."""

    __tablename__ = "review_audit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    # Not foreign keys: the log must outlive the rows it describes.
    item_id: Mapped[str | None] = mapped_column(String(128), nullable=True, index=True)
    task_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


AUDIT_APPEND_ONLY_DDL: dict[str, list[str]] = {
    "sqlite": [
        "CREATE TRIGGER review_audit_no_update BEFORE UPDATE ON review_audit "
        "BEGIN SELECT RAISE(ABORT, 'review_audit is append-only'); END",
        "CREATE TRIGGER review_audit_no_delete BEFORE DELETE ON review_audit "
        "BEGIN SELECT RAISE(ABORT, 'review_audit is append-only'); END",
    ],
    "postgresql": [
        "CREATE OR REPLACE FUNCTION review_audit_append_only() RETURNS trigger "
        "LANGUAGE plpgsql AS $$ BEGIN "
        "RAISE EXCEPTION 'review_audit is append-only'; END $$",
        "CREATE TRIGGER review_audit_no_change BEFORE UPDATE OR DELETE ON review_audit "
        "FOR EACH ROW EXECUTE FUNCTION review_audit_append_only()",
    ],
}

for _dialect, _statements in AUDIT_APPEND_ONLY_DDL.items():
    for _statement in _statements:
        event.listen(
            AuditRow.__table__, "after_create", DDL(_statement).execute_if(dialect=_dialect)
        )
