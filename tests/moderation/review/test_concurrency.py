"""Many moderators at once: every task decided exactly once, never held by two.

Runs on SQLite and PostgreSQL. The services are spread over several engines on the same
database, as separate replicas would be: the guarantee rests on the database alone
(SKIP LOCKED row locks and guarded UPDATEs; BEGIN IMMEDIATE on SQLite). The benchmark
(benchmarks/review_queue.py) runs the full 2,000 tasks; this test uses 600 to keep the
suite quick on a 2-core machine, with the same 32 workers.
"""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import func, select

from core.contracts import ItemState, RiskCategory
from core.storage.db import make_engine, make_session_factory, write_transaction
from core.storage.items import ItemStore
from core.storage.tables import ItemRow
from moderation.policy import TaskReason
from moderation.review import ReviewService
from moderation.review.tables import AuditRow, ReviewDecisionRow, ReviewTaskRow
from serving.auth import Principal, Role

from .conftest import add_items

TASKS = 600
WORKERS = 32
REPLICAS = 3


def test_32_moderators_decide_every_task_exactly_once(db_engine, policy, clock):
    url = db_engine.url.render_as_string(hide_password=False)
    engines = [db_engine] + [make_engine(url) for _ in range(REPLICAS - 1)]
    stores = [ItemStore(make_session_factory(e)) for e in engines]
    services = [ReviewService(s.sessions, s, policy, clock=clock) for s in stores]
    item_ids = [f"c{n:05d}" for n in range(TASKS)]
    add_items(stores[0], item_ids, ItemState.PENDING_REVIEW)
    with write_transaction(stores[0].sessions) as session:
        for n, item_id in enumerate(item_ids):
            services[0].queue.open(
                session, item_id=item_id, reason=TaskReason.AUTO_RISK, now=clock(),
                created_by="test", severity=(n % 97) / 97, categories=[RiskCategory.SPAM],
            )

    guard = threading.Lock()
    holders: dict[int, str] = {}
    claimed_by: dict[int, str] = {}
    double_claims: list[tuple[int, str, str]] = []

    def moderate(worker: int) -> int:
        service = services[worker % REPLICAS]
        me = Principal(f"mod{worker:02d}", Role.MODERATOR)
        done = 0
        while (task := service.claim(me)) is not None:
            with guard:
                if task.id in holders:
                    double_claims.append((task.id, holders[task.id], me.name))
                holders[task.id] = me.name
                claimed_by.setdefault(task.id, me.name)
            if task.id % 3:
                service.decide(task.id, me, "approve")
            else:
                service.decide(task.id, me, "reject", ["spam.scam"])
            with guard:
                holders.pop(task.id, None)
            done += 1
        return done

    try:
        with ThreadPoolExecutor(WORKERS) as pool:
            per_worker = list(pool.map(moderate, range(WORKERS)))
    finally:
        for engine in engines[1:]:
            engine.dispose()

    assert double_claims == []
    assert sum(per_worker) == TASKS
    with stores[0].sessions() as session:
        decisions = session.execute(
            select(ReviewDecisionRow.task_id, ReviewDecisionRow.moderator)).all()
        assert len(decisions) == TASKS
        assert {t: m for t, m in decisions} == claimed_by  # the claimant decided
        open_left = session.scalar(
            select(func.count()).where(ReviewTaskRow.status != "decided"))
        assert open_left == 0
        claims = Counter(session.scalars(
            select(AuditRow.task_id).where(AuditRow.action == "task.claimed")))
        assert len(claims) == TASKS and set(claims.values()) == {1}
        rows = session.execute(
            select(ReviewTaskRow.id, ItemRow.state)
            .join(ItemRow, ItemRow.id == ReviewTaskRow.item_id)
        ).all()
    assert all(state == ("approved" if task_id % 3 else "rejected") for task_id, state in rows)
    assert len(rows) == TASKS
