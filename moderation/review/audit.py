"""The append-only audit log: every change to tasks, decisions, reports and item states.

Entries are written in the same transaction as the change they describe, so the log
never claims a change that rolled back nor misses one that committed. Lease renewals
(heartbeats) and reach updates are not logged: they move no decision forward and would
bury the entries that do.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from moderation.review.db import as_utc
from moderation.review.models import AuditEntry
from moderation.review.tables import AuditRow, ReviewTaskRow


def jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return as_utc(value).isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {str(jsonable(k)): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    return value


_TASK_FIELDS = (
    "id", "item_id", "reason", "tier", "category", "categories", "severity", "reach",
    "report_count", "report_weight", "status", "claimed_by", "lease_expires_at",
    "excluded_moderator", "parent_task_id", "note", "created_by", "created_at", "decided_at",
)


def task_snapshot(task: ReviewTaskRow, *fields: str) -> dict[str, Any]:
    return {f: jsonable(getattr(task, f)) for f in (fields or _TASK_FIELDS)}


def record(
    session: Session, *, at: datetime, actor: str, action: str, item_id: str | None,
    task_id: int | None = None, before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> None:
    session.add(
        AuditRow(
            at=at, actor=actor, action=action, item_id=item_id, task_id=task_id,
            before=jsonable(before) if before is not None else None,
            after=jsonable(after) if after is not None else None,
        )
    )


def to_entry(row: AuditRow) -> AuditEntry:
    return AuditEntry(
        id=row.id, at=as_utc(row.at), actor=row.actor, action=row.action,
        item_id=row.item_id, task_id=row.task_id, before=row.before, after=row.after,
    )


def for_item(session: Session, item_id: str) -> list[AuditEntry]:
    rows = session.scalars(
        select(AuditRow).where(AuditRow.item_id == item_id).order_by(AuditRow.id)
    )
    return [to_entry(r) for r in rows]
