"""The task queue inside a transaction: open, rank, claim under a lease, renew, release.

A claim is a lease: ``claimed_by`` and ``lease_expires_at`` on the task row. A task is
claimable while it is open and unclaimed or its lease has expired, so an abandoned task
returns to the queue by itself when its lease runs out; nothing has to sweep it.

Claims are atomic on both databases:
- PostgreSQL: ``SELECT … FOR UPDATE SKIP LOCKED LIMIT 1`` picks the best task no other
  transaction is claiming; after the lock PostgreSQL re-checks the WHERE clause on the
  newest row version, so a task claimed and committed meanwhile is skipped.
- SQLite: the transaction holds the write lock from its start (``BEGIN IMMEDIATE``).
On both, the claiming UPDATE repeats the claimability condition in its WHERE clause and
must touch exactly one row, so even a caller outside these transactions cannot
double-claim a task.

Skips: a moderator who skips a task gives it back and records a ``review_skips`` row
(who, when). Their next claims pick from the tasks they have not skipped first (the
same index-ordered query, with ``NOT EXISTS`` on their skips); only when none is left
do they get a skipped one again, the one skipped longest ago first, so repeated skips
cycle through everything rather than returning the same task. Skips are per
moderator: everyone else still gets the task at its normal priority.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta

from sqlalchemy import (
    ColumnElement,
    Row,
    String,
    and_,
    delete,
    exists,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.orm import InstrumentedAttribute, Session
from sqlalchemy.sql.functions import Function

from core.contracts import RiskCategory
from core.errors import Conflict, Forbidden, NotFound
from core.storage.tables import ItemRow
from moderation.policy import ReviewSettings, TaskReason
from moderation.review import audit
from moderation.review.db import as_utc, as_utc_or_none
from moderation.review.models import TaskFilter, TaskView
from moderation.review.priority import base_priority, priority_at, sort_key
from moderation.review.tables import DECIDED, OPEN, ReviewSkipRow, ReviewTaskRow

# A one-line preview of the item in task lists: its title, then the start of its text.
PREVIEW_CHARS = 160


def claimable(now: datetime) -> list[ColumnElement[bool]]:
    return [
        ReviewTaskRow.status == OPEN,
        or_(ReviewTaskRow.claimed_by.is_(None), ReviewTaskRow.lease_expires_at <= now),
    ]


def skipped_by(moderator: str) -> ColumnElement[bool]:
    return exists().where(
        ReviewSkipRow.task_id == ReviewTaskRow.id, ReviewSkipRow.moderator == moderator
    )


def item_preview(title: str | None, text_head: str | None) -> str:
    """``title — text`` on one line, cut to ``PREVIEW_CHARS`` characters."""
    title = " ".join((title or "").split())
    text = " ".join((text_head or "").split())
    line = f"{title} — {text}" if title and text else title or text
    return line if len(line) <= PREVIEW_CHARS else line[: PREVIEW_CHARS - 1].rstrip() + "…"


def _preview_columns() -> tuple[InstrumentedAttribute[str], Function[str]]:
    # Twice the preview's length: collapsing whitespace may shorten what is read.
    return ItemRow.title, func.substr(ItemRow.text, 1, 2 * PREVIEW_CHARS, type_=String)


class TaskQueue:
    def __init__(self, settings: ReviewSettings) -> None:
        self.settings = settings

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=self.settings.lease_seconds)

    # -- ranking ---------------------------------------------------------------------

    def rerank(self, task: ReviewTaskRow) -> None:
        """Recompute ``sort_key`` after severity, reach, reports or reason changed."""
        base = base_priority(
            self.settings.priority, reason=TaskReason(task.reason), severity=task.severity,
            reach=task.reach, report_weight=task.report_weight,
        )
        task.sort_key = sort_key(self.settings.priority, base, as_utc(task.created_at))

    def view(
        self, task: ReviewTaskRow, now: datetime, preview: str | None = None
    ) -> TaskView:
        lease = as_utc_or_none(task.lease_expires_at)
        live = task.status == OPEN and task.claimed_by is not None and (
            lease is not None and lease > now
        )
        return TaskView(
            id=task.id, item_id=task.item_id, reason=TaskReason(task.reason), tier=task.tier,
            category=RiskCategory(task.category) if task.category else None,
            categories=[RiskCategory(c) for c in task.categories],
            scores=dict(task.scores), reasons=list(task.reasons), severity=task.severity,
            reach=task.reach, report_count=task.report_count,
            report_weight=task.report_weight,
            priority=round(priority_at(self.settings.priority, task.sort_key, now), 6),
            status="open" if task.status == OPEN else "decided",
            claimed_by=task.claimed_by if live else None,
            lease_expires_at=lease if live else None,
            excluded_moderator=task.excluded_moderator, parent_task_id=task.parent_task_id,
            note=task.note, created_by=task.created_by, created_at=as_utc(task.created_at),
            decided_at=as_utc_or_none(task.decided_at), preview=preview,
        )

    def view_with_preview(self, session: Session, task: ReviewTaskRow, now: datetime) -> TaskView:
        head = session.execute(
            select(*_preview_columns()).where(ItemRow.id == task.item_id)
        ).first()
        return self.view(task, now, item_preview(*head) if head is not None else None)

    # -- lookups ---------------------------------------------------------------------

    @staticmethod
    def get(session: Session, task_id: int, *, lock: bool = False) -> ReviewTaskRow:
        task = session.get(
            ReviewTaskRow, task_id, with_for_update=lock or None, populate_existing=lock
        )
        if task is None:
            raise NotFound(f"no review task with id {task_id}", task_id=task_id)
        return task

    @staticmethod
    def open_task_for(session: Session, item_id: str) -> ReviewTaskRow | None:
        return session.scalars(
            select(ReviewTaskRow)
            .where(ReviewTaskRow.item_id == item_id, ReviewTaskRow.status == OPEN)
            .with_for_update()
        ).first()

    def list_tasks(
        self, session: Session, filters: TaskFilter, now: datetime
    ) -> list[TaskView]:
        stmt = select(ReviewTaskRow, *_preview_columns()).join(
            ItemRow, ItemRow.id == ReviewTaskRow.item_id
        )
        if filters.status == "decided":
            stmt = stmt.where(ReviewTaskRow.status == DECIDED).order_by(
                ReviewTaskRow.decided_at.desc(), ReviewTaskRow.id.desc()
            )
        else:
            if filters.status == "unclaimed":
                stmt = stmt.where(*claimable(now))
            elif filters.status == "claimed":
                stmt = stmt.where(
                    ReviewTaskRow.status == OPEN, ReviewTaskRow.claimed_by.is_not(None),
                    ReviewTaskRow.lease_expires_at > now,
                )
            elif filters.status == "open":
                stmt = stmt.where(ReviewTaskRow.status == OPEN)
            stmt = stmt.order_by(ReviewTaskRow.sort_key.desc(), ReviewTaskRow.id)
        if filters.reason is not None:
            stmt = stmt.where(ReviewTaskRow.reason == filters.reason.value)
        if filters.tier is not None:
            stmt = stmt.where(ReviewTaskRow.tier == filters.tier)
        if filters.category is not None:
            stmt = stmt.where(ReviewTaskRow.category == filters.category.value)
        if filters.item_id is not None:
            stmt = stmt.where(ReviewTaskRow.item_id == filters.item_id)
        if filters.claimed_by is not None:
            stmt = stmt.where(
                ReviewTaskRow.claimed_by == filters.claimed_by,
                ReviewTaskRow.lease_expires_at > now,
            )
        stmt = stmt.limit(filters.limit).offset(filters.offset)
        return [
            self.view(task, now, item_preview(title, text_head))
            for task, title, text_head in session.execute(stmt)
        ]

    # -- changes ---------------------------------------------------------------------

    def open(
        self, session: Session, *, item_id: str, reason: TaskReason, now: datetime,
        created_by: str, severity: float, categories: list[RiskCategory] | None = None,
        scores: dict[str, float | None] | None = None, reasons: list[str] | None = None,
        tier: int = 1, reach: int = 0, report_count: int = 0, report_weight: float = 0.0,
        sample_weight: float = 1.0, excluded_moderator: str | None = None,
        parent_task_id: int | None = None, note: str | None = None,
    ) -> ReviewTaskRow:
        """Add a task; the caller holds the item's lock and checked it has no open task."""
        cats: list[RiskCategory] = list(categories or [])
        task = ReviewTaskRow(
            item_id=item_id, reason=reason.value, tier=tier,
            category=cats[0].value if cats else None, categories=[c.value for c in cats],
            scores=dict(scores or {}), reasons=list(reasons or []),
            severity=severity, reach=max(reach, 0), report_count=report_count,
            report_weight=report_weight, sample_weight=sample_weight, status=OPEN,
            excluded_moderator=excluded_moderator, parent_task_id=parent_task_id, note=note,
            created_by=created_by, created_at=now,
        )
        self.rerank(task)
        session.add(task)
        session.flush()
        audit.record(
            session, at=now, actor=created_by, action="task.opened", item_id=item_id,
            task_id=task.id, after=audit.task_snapshot(task),
        )
        return task

    def _held_by(self, session: Session, moderator: str, now: datetime) -> ReviewTaskRow | None:
        return session.scalars(
            select(ReviewTaskRow)
            .where(
                ReviewTaskRow.status == OPEN, ReviewTaskRow.claimed_by == moderator,
                ReviewTaskRow.lease_expires_at > now,
            )
            .order_by(ReviewTaskRow.id)
            .limit(1)
            .with_for_update()
        ).first()

    def claim_next(
        self, session: Session, moderator: str, tiers: Collection[int], now: datetime
    ) -> ReviewTaskRow | None:
        """Lease the best claimable task to ``moderator``; None when there is none.

        A moderator holding a live lease gets that task back with a renewed lease
        (a reloaded console must not grab a second task). Tier 2 ranks first for those
        allowed it: no one else can take those tasks. Tasks this moderator skipped come
        after all others (see the module docstring).
        """
        held = self._held_by(session, moderator, now)
        if held is not None:
            held.lease_expires_at = now + self.lease
            return held
        for _attempt in range(8):
            candidate = self._pick(session, moderator, tiers, now)
            if candidate is None:
                return None
            task_id, previous_holder, previous_lease = candidate
            task = session.scalars(
                update(ReviewTaskRow)
                .where(ReviewTaskRow.id == task_id, *claimable(now))
                .values(claimed_by=moderator, claimed_at=now, lease_expires_at=now + self.lease)
                .returning(ReviewTaskRow)
                .execution_options(synchronize_session=False, populate_existing=True)
            ).first()
            if task is None:
                continue  # taken between the pick and the update; pick again
            audit.record(
                session, at=now, actor=moderator, action="task.claimed", item_id=task.item_id,
                task_id=task_id,
                before={
                    "claimed_by": previous_holder,
                    "lease_expires_at": as_utc_or_none(previous_lease),
                },
                after=audit.task_snapshot(task, "claimed_by", "lease_expires_at"),
            )
            return task
        raise Conflict("the queue is too contended to claim a task now; try again")

    def _pick(
        self, session: Session, moderator: str, tiers: Collection[int], now: datetime
    ) -> Row[int, str | None, datetime | None] | None:
        """The best claimable task the moderator has not skipped, else the one they
        skipped longest ago; locked (skipping rows others are claiming) on PostgreSQL."""
        columns = (ReviewTaskRow.id, ReviewTaskRow.claimed_by, ReviewTaskRow.lease_expires_at)
        eligible = (
            *claimable(now), ReviewTaskRow.tier.in_(sorted(tiers)),
            or_(
                ReviewTaskRow.excluded_moderator.is_(None),
                ReviewTaskRow.excluded_moderator != moderator,
            ),
        )
        fresh = session.execute(
            select(*columns)
            .where(*eligible, ~skipped_by(moderator))
            .order_by(ReviewTaskRow.tier.desc(), ReviewTaskRow.sort_key.desc(), ReviewTaskRow.id)
            .limit(1)
            .with_for_update(skip_locked=True)
        ).first()
        if fresh is not None:
            return fresh
        return session.execute(
            select(*columns)
            .join(ReviewSkipRow, and_(
                ReviewSkipRow.task_id == ReviewTaskRow.id, ReviewSkipRow.moderator == moderator
            ))
            .where(*eligible)
            .order_by(
                ReviewSkipRow.id,
            )
            .limit(1)
            .with_for_update(skip_locked=True, of=ReviewTaskRow)
        ).first()

    def claim(
        self, session: Session, task_id: int, moderator: str, tiers: Collection[int],
        now: datetime,
    ) -> ReviewTaskRow:
        """Lease one named task (opened from the task list) to ``moderator``.

        Refused (409) while someone else holds it or while the moderator holds another
        task: one task at a time, as with ``claim_next``. Claiming a task by name undoes
        the moderator's skip of it.
        """
        task = self.get(session, task_id, lock=True)
        if task.status != OPEN:
            raise Conflict(f"task {task_id} is already decided", task_id=task_id)
        if task.tier not in tiers:
            raise Forbidden(f"task {task_id} is tier {task.tier}: senior moderators only",
                            task_id=task_id)
        if task.excluded_moderator == moderator:
            raise Forbidden(
                f"{moderator!r} made the decision under appeal and cannot review the appeal",
                task_id=task_id,
            )
        lease = as_utc_or_none(task.lease_expires_at)
        live = task.claimed_by is not None and lease is not None and lease > now
        if live and task.claimed_by == moderator:
            task.lease_expires_at = now + self.lease
            return task
        if live:
            raise Conflict(
                f"task {task_id} is being reviewed by {task.claimed_by!r}", task_id=task_id,
                claimed_by=task.claimed_by,
            )
        held = self._held_by(session, moderator, now)
        if held is not None:
            raise Conflict(
                f"{moderator!r} holds task {held.id}; decide, skip or release it first",
                task_id=task_id, held_task_id=held.id,
            )
        before = {"claimed_by": task.claimed_by, "lease_expires_at": lease}
        task.claimed_by = moderator
        task.claimed_at = now
        task.lease_expires_at = now + self.lease
        session.execute(
            delete(ReviewSkipRow).where(
                ReviewSkipRow.task_id == task_id, ReviewSkipRow.moderator == moderator
            )
        )
        audit.record(
            session, at=now, actor=moderator, action="task.claimed", item_id=task.item_id,
            task_id=task_id, before=before,
            after=audit.task_snapshot(task, "claimed_by", "lease_expires_at"),
        )
        return task

    def heartbeat(
        self, session: Session, task_id: int, moderator: str, now: datetime
    ) -> ReviewTaskRow:
        """Renew a lease. An expired lease renews too while nobody else claimed it."""
        task = self.held_task(session, task_id, moderator)
        task.lease_expires_at = now + self.lease
        return task

    def release(
        self, session: Session, task_id: int, moderator: str, now: datetime
    ) -> ReviewTaskRow:
        """Give the task back to the queue at its normal priority, for everyone."""
        return self._unclaim(session, task_id, moderator, now, "task.released")

    def skip(
        self, session: Session, task_id: int, moderator: str, now: datetime
    ) -> ReviewTaskRow:
        """Give the task back and put it behind everything else in this moderator's
        later claims (see the module docstring); others still get it as before."""
        task = self._unclaim(session, task_id, moderator, now, "task.skipped")
        # Skipped again: a new row (a new id) puts it at the back of the skipped ones.
        session.execute(delete(ReviewSkipRow).where(
            ReviewSkipRow.task_id == task_id, ReviewSkipRow.moderator == moderator
        ))
        session.add(ReviewSkipRow(task_id=task_id, moderator=moderator, skipped_at=now))
        session.flush()
        return task

    @staticmethod
    def forget_skips(session: Session, task_id: int) -> None:
        """A decided task is claimable by no one: its skips have nothing left to order."""
        session.execute(delete(ReviewSkipRow).where(ReviewSkipRow.task_id == task_id))

    def _unclaim(
        self, session: Session, task_id: int, moderator: str, now: datetime, action: str
    ) -> ReviewTaskRow:
        task = self.held_task(session, task_id, moderator)
        before = audit.task_snapshot(task, "claimed_by", "lease_expires_at")
        task.claimed_by = None
        task.claimed_at = None
        task.lease_expires_at = None
        audit.record(
            session, at=now, actor=moderator, action=action, item_id=task.item_id,
            task_id=task.id, before=before,
            after=audit.task_snapshot(task, "claimed_by", "lease_expires_at"),
        )
        return task

    def held_task(self, session: Session, task_id: int, moderator: str) -> ReviewTaskRow:
        """The task, locked, if ``moderator`` holds it; a coded error otherwise."""
        task = self.get(session, task_id, lock=True)
        if task.status != OPEN:
            raise Conflict(f"task {task_id} is already decided", task_id=task_id)
        if task.claimed_by != moderator:
            holder = task.claimed_by
            raise Conflict(
                f"task {task_id} is not claimed by {moderator!r}"
                + (" (another moderator holds it)" if holder else "; claim it first"),
                task_id=task_id,
            )
        return task
