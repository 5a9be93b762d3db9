"""Moderator decisions and the item state changes they cause, in one transaction.

approve  → the item becomes ``approved`` (from pending review, or from rejected on appeal);
reject   → ``rejected``, citing at least one policy code;
escalate → the task closes and a tier-2 copy opens for senior moderators; the item
           keeps its state.
A QA-sampled item is live while audited, and ``approved → rejected`` is not a direct
transition, so a rejection passes through ``pending_review`` (two state changes, both
logged and both announced to listeners after the commit).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core.contracts import ITEM_TRANSITIONS, ItemState, RiskCategory
from core.errors import Conflict, Forbidden, InvalidInput, NotFound
from core.storage.items import InvalidTransition, ItemStore, StateChange
from core.storage.tables import ItemRow
from moderation.policy import Policy, TaskReason
from moderation.review import audit
from moderation.review.models import PERMISSION_REVIEW_TIER2, Action, Actor, DecisionView
from moderation.review.queue import TaskQueue
from moderation.review.tables import DECIDED, ReportRow, ReviewDecisionRow, ReviewTaskRow

_TARGET = {Action.APPROVE: ItemState.APPROVED, Action.REJECT: ItemState.REJECTED}
MAX_NOTE_CHARS = 4000


def lock_item(session: Session, item_id: str) -> ItemRow:
    """Lock the item row: every write touching an item's tasks takes this lock first,
    so writers queue in one order and cannot deadlock on PostgreSQL."""
    row = session.get(ItemRow, item_id, with_for_update=True, populate_existing=True)
    if row is None:
        raise NotFound(f"no item with id {item_id!r}", item_id=item_id)
    return row


def move_item(
    session: Session, store: ItemStore, item_id: str, target: ItemState, reason: str,
    *, actor: str, at: datetime,
) -> list[StateChange]:
    """Change the item's state (via pending_review where there is no direct edge).

    The caller holds the item's lock (``lock_item``)."""
    row = session.get(ItemRow, item_id)
    if row is None:
        raise NotFound(f"no item with id {item_id!r}", item_id=item_id)
    current = ItemState(row.state)
    if current == target:
        return []
    if target in ITEM_TRANSITIONS[current]:
        path = [target]
    elif (
        ItemState.PENDING_REVIEW in ITEM_TRANSITIONS[current]
        and target in ITEM_TRANSITIONS[ItemState.PENDING_REVIEW]
    ):
        path = [ItemState.PENDING_REVIEW, target]
    else:
        raise InvalidTransition(
            f"item {item_id!r} cannot go from {current.value} to {target.value}",
            item_id=item_id, state=current.value,
        )
    changes = []
    for step in path:
        change = store.transition(item_id, step, reason, session=session)
        audit.record(
            session, at=at, actor=actor, action="item.state", item_id=item_id,
            before={"state": change.before.value},
            after={"state": change.after.value, "reason": reason},
        )
        changes.append(change)
    return changes


def decide(
    session: Session, *, queue: TaskQueue, store: ItemStore, policy: Policy, task_id: int,
    actor: Actor, action: Action, policy_codes: list[str], note: str | None, now: datetime,
) -> tuple[DecisionView, list[StateChange]]:
    codes = _check_action(policy, action, policy_codes, note)
    item_id = queue.get(session, task_id).item_id
    item = lock_item(session, item_id)
    task = queue.held_task(session, task_id, actor.name)
    if task.tier >= 2 and not actor.allows(PERMISSION_REVIEW_TIER2):
        raise Forbidden(f"task {task_id} is tier 2: senior moderators only", task_id=task_id)
    if task.excluded_moderator == actor.name:
        raise Forbidden(
            f"{actor.name!r} made the decision under appeal and cannot decide the appeal",
            task_id=task_id,
        )
    if action is Action.ESCALATE and task.tier >= 2:
        # The task's state, not the request, rules this out: a conflict (409).
        raise Conflict(f"task {task_id} is already tier 2; approve or reject it",
                       task_id=task_id)

    state_before = ItemState(item.state)
    changes: list[StateChange] = []
    if action in _TARGET:
        target = _TARGET[action]
        if ITEM_TRANSITIONS[state_before]:
            changes = move_item(
                session, store, item_id, target,
                f"{action.value} by {actor.name} (task {task_id})", actor=actor.name, at=now,
            )
        # else: the item was taken down meanwhile; the decision still closes the task.

    task_before = audit.task_snapshot(task, "status", "claimed_by", "lease_expires_at")
    task.status = DECIDED
    task.decided_at = now
    task.lease_expires_at = None
    queue.forget_skips(session, task_id)
    state_after = changes[-1].after if changes else state_before
    decision = ReviewDecisionRow(
        task_id=task_id, item_id=item_id, moderator=actor.name, action=action.value,
        policy_codes=codes, note=note, item_state_before=state_before.value,
        item_state_after=state_after.value, created_at=now,
    )
    session.add(decision)
    session.flush()  # the UNIQUE(task_id) guard fires here, inside the transaction

    escalated: ReviewTaskRow | None = None
    if action is Action.ESCALATE:
        escalated = queue.open(
            session, item_id=item_id, reason=TaskReason(task.reason), now=now,
            created_by=actor.name, severity=task.severity,
            categories=[RiskCategory(c) for c in task.categories], scores=dict(task.scores),
            reasons=[*task.reasons, f"escalated by {actor.name}: {note or 'no note'}"],
            tier=2, reach=task.reach, report_count=task.report_count,
            report_weight=task.report_weight, sample_weight=task.sample_weight,
            excluded_moderator=task.excluded_moderator, parent_task_id=task.id, note=note,
        )
    else:
        # A final decision answers every report filed so far.
        session.execute(
            update(ReportRow)
            .where(ReportRow.item_id == item_id, ReportRow.resolved_task_id.is_(None))
            .values(resolved_task_id=task_id)
            .execution_options(synchronize_session=False)
        )

    view = DecisionView(
        id=decision.id, task_id=task_id, item_id=item_id, moderator=actor.name,
        action=action, policy_codes=codes, note=note, item_state_before=state_before.value,
        item_state_after=state_after.value, created_at=now,
        escalated_task_id=escalated.id if escalated is not None else None,
    )
    audit.record(
        session, at=now, actor=actor.name, action="task.decided", item_id=item_id,
        task_id=task_id, before=task_before,
        after={**audit.task_snapshot(task, "status", "decided_at"),
               "decision": view.model_dump(mode="json")},
    )
    return view, changes


def _check_action(
    policy: Policy, action: Action, policy_codes: list[str], note: str | None
) -> list[str]:
    if note is not None and len(note) > MAX_NOTE_CHARS:
        raise InvalidInput(f"note is longer than {MAX_NOTE_CHARS} characters", field="note")
    codes = policy.check_codes(policy_codes)
    if action is Action.REJECT and not codes:
        raise InvalidInput(
            "a rejection must cite at least one policy code", field="policy_codes"
        )
    if action is Action.APPROVE and codes:
        raise InvalidInput(
            "an approval cites no policy codes; reject instead if a policy is broken",
            field="policy_codes",
        )
    return codes


def last_final_decision(session: Session, item_id: str) -> ReviewDecisionRow | None:
    return session.scalars(
        select(ReviewDecisionRow)
        .where(
            ReviewDecisionRow.item_id == item_id,
            ReviewDecisionRow.action.in_([Action.APPROVE.value, Action.REJECT.value]),
        )
        .order_by(ReviewDecisionRow.id.desc())
        .limit(1)
    ).first()
