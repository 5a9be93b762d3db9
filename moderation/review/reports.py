"""User reports and appeals: the two ways people outside the queue put an item into it.

Reports are weighted (trusted reporters count more) and counted once per reporter
until a moderator's final decision answers them. When the unresolved weight reaches
the threshold, an approved item moves to ``pending_review`` in the same transaction,
which removes it from every feed, and a ``user_report`` task opens (or the item's open
task gains the reports' priority). Appeals reopen a rejected item for a moderator other
than the one who rejected it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.contracts import ItemState
from core.errors import Conflict, InvalidInput
from core.storage.items import ItemStore, StateChange
from moderation.policy import Policy, TaskReason
from moderation.review import audit
from moderation.review.decisions import last_final_decision, lock_item, move_item
from moderation.review.models import Action, ReportOutcome
from moderation.review.queue import TaskQueue
from moderation.review.tables import ReportRow, ReviewTaskRow

MAX_REASON_CHARS = 2000
ReporterWeight = Callable[[str], float]


def check_text(value: str, field: str, max_chars: int, *, required: bool) -> str:
    value = value.strip()
    if required and not value:
        raise InvalidInput(f"{field} must not be empty", field=field)
    if len(value) > max_chars:
        raise InvalidInput(f"{field} is longer than {max_chars} characters", field=field)
    return value


def _unresolved(session: Session, item_id: str) -> tuple[int, float]:
    count, weight = session.execute(
        select(func.count(ReportRow.id), func.coalesce(func.sum(ReportRow.weight), 0.0)).where(
            ReportRow.item_id == item_id, ReportRow.resolved_task_id.is_(None)
        )
    ).one()
    return int(count), float(weight)


def report(
    session: Session, *, queue: TaskQueue, store: ItemStore, policy: Policy,
    reporter_weight: ReporterWeight, item_id: str, reporter_id: str, reason: str,
    reach: int | None, now: datetime,
) -> tuple[ReportOutcome, list[StateChange]]:
    reporter_id = check_text(reporter_id, "reporter_id", 128, required=True)
    reason = check_text(reason, "reason", MAX_REASON_CHARS, required=False)
    settings = policy.review.reports
    item = lock_item(session, item_id)

    repeated = session.scalar(
        select(ReportRow.id).where(
            ReportRow.item_id == item_id, ReportRow.reporter_id == reporter_id,
            ReportRow.resolved_task_id.is_(None),
        )
    )
    if repeated is not None:
        # One voice per reporter: repeating a report must not push an item out.
        count, total = _unresolved(session, item_id)
        open_task = queue.open_task_for(session, item_id)
        return ReportOutcome(
            report_id=None, item_id=item_id, duplicate=True, weight=0.0, total_weight=total,
            threshold=settings.threshold, pulled=False,
            task_id=open_task.id if open_task else None,
        ), []

    weight = float(reporter_weight(reporter_id))
    row = ReportRow(
        item_id=item_id, reporter_id=reporter_id, reason=reason, weight=weight,
        created_at=now,
    )
    session.add(row)
    session.flush()
    audit.record(
        session, at=now, actor=reporter_id, action="report.received", item_id=item_id,
        after={"report_id": row.id, "reason": reason, "weight": weight},
    )
    count, total = _unresolved(session, item_id)

    changes: list[StateChange] = []
    state = ItemState(item.state)
    reached = total >= settings.threshold
    pulled = False
    if reached and state is ItemState.APPROVED:
        changes = move_item(
            session, store, item_id, ItemState.PENDING_REVIEW,
            f"user reports reached {total:g} (threshold {settings.threshold:g})",
            actor="reports", at=now,
        )
        pulled = True
        state = ItemState.PENDING_REVIEW

    task = queue.open_task_for(session, item_id)
    if task is not None:
        before = audit.task_snapshot(task, "reason", "report_count", "report_weight", "reach")
        task.report_count = count
        task.report_weight = total
        if reach is not None:
            task.reach = max(reach, task.reach)
        if reached and task.reason == TaskReason.QA_SAMPLE.value:
            # The audit sample no longer describes why the item waits: reports do.
            task.reason = TaskReason.USER_REPORT.value
        queue.rerank(task)
        audit.record(
            session, at=now, actor=reporter_id, action="task.updated", item_id=item_id,
            task_id=task.id, before=before,
            after=audit.task_snapshot(task, "reason", "report_count", "report_weight", "reach"),
        )
    elif reached and state is ItemState.PENDING_REVIEW:
        task = queue.open(
            session, item_id=item_id, reason=TaskReason.USER_REPORT, now=now,
            created_by="reports", severity=policy.review.report_severity,
            reasons=[f"weighted user reports {total:g} >= {settings.threshold:g}"],
            reach=reach or 0, report_count=count, report_weight=total,
        )
    return ReportOutcome(
        report_id=row.id, item_id=item_id, duplicate=False, weight=weight,
        total_weight=total, threshold=settings.threshold, pulled=pulled,
        task_id=task.id if task is not None else None,
    ), changes


def appeal(
    session: Session, *, queue: TaskQueue, policy: Policy, item_id: str, appellant: str,
    note: str, reach: int | None, now: datetime,
) -> ReviewTaskRow:
    note = check_text(note, "note", MAX_REASON_CHARS, required=True)
    item = lock_item(session, item_id)
    if ItemState(item.state) is not ItemState.REJECTED:
        raise Conflict(
            f"only rejected items can be appealed; item {item_id!r} is {item.state}",
            item_id=item_id, state=item.state,
        )
    if queue.open_task_for(session, item_id) is not None:
        raise Conflict(f"item {item_id!r} is already under review", item_id=item_id)
    last = last_final_decision(session, item_id)
    tier = 1
    excluded: str | None = None
    if last is not None:
        decided_task = queue.get(session, last.task_id)
        if decided_task.reason == TaskReason.APPEAL.value and last.action == Action.REJECT:
            raise Conflict(
                f"the appeal for item {item_id!r} was already decided (task "
                f"{decided_task.id}); a rejection can be appealed once",
                item_id=item_id,
            )
        excluded = last.moderator
        tier = decided_task.tier
    return queue.open(
        session, item_id=item_id, reason=TaskReason.APPEAL, now=now, created_by=appellant,
        severity=policy.review.appeal_severity, reasons=[f"appeal by {appellant}"],
        tier=tier, reach=reach or 0, excluded_moderator=excluded, note=note,
    )
