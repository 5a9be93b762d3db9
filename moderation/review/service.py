"""The review service: what the API routes and the console call, one method per action.

Every write is one transaction that also writes its audit entries; item state changes
happen inside it (``ItemStore.transition(session=…)``) and listeners such as the
recommender's catalog hear of them right after the commit. Callers pass an ``Actor``
(``serving.auth.Principal``); the service checks the review permissions itself as well,
so a route that forgets a check cannot hand tier-2 work to a tier-1 moderator.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from core.contracts import ItemState
from core.errors import Conflict, Forbidden, InvalidConfig, InvalidInput
from core.storage.db import write_transaction
from core.storage.items import ItemStore, StateChange
from moderation.policy import Policy, PolicyDecision, Route, TaskReason
from moderation.review import audit, calibration, decisions, reports, stats
from moderation.review.db import read_session
from moderation.review.models import (
    PERMISSION_REVIEW,
    PERMISSION_REVIEW_TIER2,
    Action,
    Actor,
    AuditEntry,
    CalibrationReport,
    DecisionView,
    ReportOutcome,
    ReviewStats,
    TaskFilter,
    TaskView,
)
from moderation.review.queue import TaskQueue
from moderation.review.tables import ReviewTaskRow

Clock = Callable[[], datetime]

_ROUTE_STATE = {
    Route.APPROVE: ItemState.APPROVED,
    Route.REVIEW: ItemState.PENDING_REVIEW,
    Route.REJECT: ItemState.REJECTED,
}


def system_clock() -> datetime:
    return datetime.now(UTC)


class ReviewService:
    def __init__(
        self, sessions: sessionmaker[Session], items: ItemStore, policy: Policy, *,
        clock: Clock = system_clock, reporter_weight: Callable[[str], float] | None = None,
    ) -> None:
        self.sessions = sessions
        self.items = items
        self.policy = policy
        self.queue = TaskQueue(policy.review)
        self._clock = clock
        self._reporter_weight = reporter_weight or self._configured_reporter_weight

    # -- plumbing --------------------------------------------------------------------

    def now(self) -> datetime:
        value = self._clock()
        if value.tzinfo is None:
            raise InvalidConfig("the review clock must return timezone-aware datetimes")
        return value.astimezone(UTC)

    def _configured_reporter_weight(self, reporter_id: str) -> float:
        settings = self.policy.review.reports
        return settings.reporter_weights.get(reporter_id, settings.default_weight)

    @contextmanager
    def _write(self) -> Iterator[Session]:
        try:
            with write_transaction(self.sessions) as session:
                yield session
        except IntegrityError as exc:
            # The constraints (one decision per task, one open task per item) caught a
            # race that the locks should have prevented; the caller may retry.
            raise Conflict(
                "a concurrent change got there first; reload and try again",
                constraint=str(exc.orig).splitlines()[0] if exc.orig else None,
            ) from exc

    def _announce(self, changes: Iterable[StateChange]) -> None:
        self.items.notify(list(changes))

    @staticmethod
    def _require(actor: Actor, permission: str) -> None:
        if not actor.allows(permission):
            raise Forbidden(f"{actor.name!r} may not {permission.replace('_', ' ')}",
                            permission=permission)

    @staticmethod
    def _tiers(actor: Actor) -> list[int]:
        return [1, 2] if actor.allows(PERMISSION_REVIEW_TIER2) else [1]

    # -- the pipeline's entry point ----------------------------------------------------

    def apply_policy(
        self, item_id: str, decision: PolicyDecision, *, reach: int = 0
    ) -> TaskView | None:
        """Move an analysed item to the state its policy route says, and queue it when
        the route is review or the QA sample picked it. Returns its task, if any."""
        return self.apply_policies([(item_id, decision)], reach=reach)[0]

    def apply_policies(
        self, routed: Sequence[tuple[str, PolicyDecision]], *, reach: int = 0
    ) -> list[TaskView | None]:
        """``apply_policy`` for a batch of items in one transaction (a bulk import routes
        what one analysis batch returned); their tasks, in the order given."""
        now = self.now()
        views: dict[str, TaskView | None] = {}
        changes: list[StateChange] = []
        with self._write() as session:
            # Items locked in id order, so two batches cannot deadlock on PostgreSQL.
            for item_id, decision in sorted(routed, key=lambda pair: pair[0]):
                decisions.lock_item(session, item_id)
                reason = "policy: " + "; ".join(decision.reasons)
                changes += decisions.move_item(
                    session, self.items, item_id, _ROUTE_STATE[decision.route], reason,
                    actor="policy", at=now,
                )
                audit.record(
                    session, at=now, actor="policy", action="policy.routed", item_id=item_id,
                    after=decision.model_dump(mode="json"),
                )
                task = None
                if decision.route is Route.REVIEW or (
                    decision.route is Route.APPROVE and decision.qa_sample
                ):
                    task = self._queue_policy_task(session, item_id, decision, reach, now)
                views[item_id] = self.queue.view(task, now) if task is not None else None
        self._announce(changes)
        return [views[item_id] for item_id, _ in routed]

    def _queue_policy_task(
        self, session: Session, item_id: str, decision: PolicyDecision, reach: int,
        now: datetime,
    ) -> ReviewTaskRow:
        reason = TaskReason.AUTO_RISK if decision.route is Route.REVIEW else TaskReason.QA_SAMPLE
        scores = {c.value: s for c, s in decision.scores.items()}
        existing = self.queue.open_task_for(session, item_id)
        if existing is None:
            rate = self.policy.config.qa_sample.rate
            return self.queue.open(
                session, item_id=item_id, reason=reason, now=now, created_by="policy",
                severity=decision.severity, categories=decision.categories, scores=scores,
                reasons=decision.reasons, reach=reach,
                sample_weight=1.0 / rate if reason is TaskReason.QA_SAMPLE else 1.0,
            )
        # Re-analysis of an item already waiting: refresh what it waits for.
        fields = ("reason", "category", "categories", "severity", "reach")
        before = audit.task_snapshot(existing, *fields)
        if reason is TaskReason.AUTO_RISK:
            existing.reason = reason.value
            existing.category = decision.categories[0].value if decision.categories else None
            existing.categories = [c.value for c in decision.categories]
            existing.reasons = list(decision.reasons)
            existing.sample_weight = 1.0
        existing.scores = scores
        existing.severity = decision.severity
        existing.reach = max(existing.reach, reach)
        self.queue.rerank(existing)
        audit.record(
            session, at=now, actor="policy", action="task.updated", item_id=item_id,
            task_id=existing.id, before=before, after=audit.task_snapshot(existing, *fields),
        )
        return existing

    # -- the queue -------------------------------------------------------------------

    def list_tasks(self, filters: TaskFilter | None = None) -> list[TaskView]:
        now = self.now()
        with read_session(self.sessions) as session:
            return self.queue.list_tasks(session, filters or TaskFilter(), now)

    def get_task(self, task_id: int) -> TaskView:
        now = self.now()
        with read_session(self.sessions) as session:
            return self.queue.view_with_preview(session, self.queue.get(session, task_id), now)

    def claim(self, principal: Actor) -> TaskView | None:
        """The highest-priority task this moderator may take, leased to them; None when
        the queue holds nothing they may claim."""
        self._require(principal, PERMISSION_REVIEW)
        now = self.now()
        with self._write() as session:
            task = self.queue.claim_next(session, principal.name, self._tiers(principal), now)
            return self.queue.view(task, now) if task is not None else None

    def claim_task(self, task_id: int, principal: Actor) -> TaskView:
        """Lease one named task, e.g. opened from the list of waiting tasks (409 while
        someone else holds it or the moderator holds another)."""
        self._require(principal, PERMISSION_REVIEW)
        now = self.now()
        with self._write() as session:
            task = self.queue.claim(session, task_id, principal.name, self._tiers(principal), now)
            return self.queue.view(task, now)

    def heartbeat(self, task_id: int, principal: Actor) -> TaskView:
        self._require(principal, PERMISSION_REVIEW)
        now = self.now()
        with self._write() as session:
            return self.queue.view(
                self.queue.heartbeat(session, task_id, principal.name, now), now
            )

    def release(self, task_id: int, principal: Actor) -> TaskView:
        self._require(principal, PERMISSION_REVIEW)
        now = self.now()
        with self._write() as session:
            return self.queue.view(self.queue.release(session, task_id, principal.name, now), now)

    def skip(self, task_id: int, principal: Actor) -> TaskView:
        """Give the task back; this moderator's next claims offer it only after every
        other task they may take. Other moderators still get it at its priority."""
        self._require(principal, PERMISSION_REVIEW)
        now = self.now()
        with self._write() as session:
            return self.queue.view(self.queue.skip(session, task_id, principal.name, now), now)

    def decide(
        self, task_id: int, principal: Actor, action: Action | str,
        policy_codes: Iterable[str] = (), note: str | None = None,
    ) -> DecisionView:
        self._require(principal, PERMISSION_REVIEW)
        try:
            chosen = Action(action)
        except ValueError:
            raise InvalidInput(
                f"action must be one of {[a.value for a in Action]}, got {action!r}",
                field="action",
            ) from None
        now = self.now()
        with self._write() as session:
            view, changes = decisions.decide(
                session, queue=self.queue, store=self.items, policy=self.policy,
                task_id=task_id, actor=principal, action=chosen,
                policy_codes=list(policy_codes), note=note, now=now,
            )
        self._announce(changes)
        return view

    def update_reach(self, item_id: str, views: int) -> TaskView | None:
        """Record an item's views so far on its open task (not audited: a metric)."""
        if views < 0:
            raise InvalidInput("views must not be negative", field="views")
        now = self.now()
        with self._write() as session:
            decisions.lock_item(session, item_id)
            task = self.queue.open_task_for(session, item_id)
            if task is None:
                return None
            task.reach = views
            self.queue.rerank(task)
            return self.queue.view(task, now)

    # -- reports and appeals -----------------------------------------------------------

    def report(
        self, item_id: str, reporter_id: str, reason: str = "", *, reach: int | None = None
    ) -> ReportOutcome:
        now = self.now()
        with self._write() as session:
            outcome, changes = reports.report(
                session, queue=self.queue, store=self.items, policy=self.policy,
                reporter_weight=self._reporter_weight, item_id=item_id,
                reporter_id=reporter_id, reason=reason, reach=reach, now=now,
            )
        self._announce(changes)
        return outcome

    def appeal(
        self, item_id: str, principal: Actor, note: str, *, reach: int | None = None
    ) -> TaskView:
        now = self.now()
        with self._write() as session:
            task = reports.appeal(
                session, queue=self.queue, policy=self.policy, item_id=item_id,
                appellant=principal.name, note=note, reach=reach, now=now,
            )
            return self.queue.view(task, now)

    # -- reading ---------------------------------------------------------------------

    def stats(self, moderator: str | None = None) -> ReviewStats:
        """Queue health; with ``moderator``, also that moderator's decisions today."""
        now = self.now()
        with read_session(self.sessions) as session:
            return stats.stats(session, now, moderator)

    def item_history(self, item_id: str) -> list[AuditEntry]:
        with read_session(self.sessions) as session:
            entries = audit.for_item(session, item_id)
            if not entries:
                self.items.get(session, item_id)  # NotFound for an unknown item
            return entries

    def calibration(self, target_recall: float = 0.95) -> CalibrationReport:
        with read_session(self.sessions) as session:
            return calibration.calibration(session, self.policy, target_recall)
