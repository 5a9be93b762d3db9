"""Skipping a task, claiming a named task from the list, and the list's item previews.

Runs on SQLite and PostgreSQL (``db_engine``).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select

from core.contracts import ItemState, RiskCategory
from core.errors import Conflict, Forbidden
from core.storage.db import make_engine, make_session_factory, write_transaction
from core.storage.items import ItemStore
from core.storage.tables import ItemRow
from moderation.policy import TaskReason
from moderation.review import ReviewService, TaskFilter
from moderation.review.queue import PREVIEW_CHARS, item_preview
from moderation.review.tables import ReviewDecisionRow, ReviewSkipRow
from serving.auth import Principal, Role

from .conftest import add_items, flag


@pytest.fixture
def ranked(service, store, clock) -> list[int]:
    """Four tier-1 tasks, best first (the claim order without skips)."""
    add_items(store, ["s0", "s1", "s2", "s3"], ItemState.ANALYZING)
    ids = [flag(service, "s0", sexual=0.9), flag(service, "s1", hate=0.6),
           flag(service, "s2", spam=0.6), flag(service, "s3", clickbait=0.75)]
    assert [service.claim(Principal(f"probe{n}", Role.MODERATOR)).id for n in range(4)] == ids
    for n, task_id in enumerate(ids):
        service.release(task_id, Principal(f"probe{n}", Role.MODERATOR))
    return ids


def skip_count(store: ItemStore) -> int:
    with store.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(ReviewSkipRow)) or 0)


def test_release_hands_the_same_task_back_but_skip_does_not(service, alice, ranked):
    first = service.claim(alice)
    service.release(first.id, alice)
    assert service.claim(alice).id == first.id  # a plain release keeps the priority order
    seen = []
    for _ in range(9):
        task = service.claim(alice)
        seen.append(task.id)
        service.skip(task.id, alice)
    # Skips cycle through every task, the one skipped longest ago coming back first.
    assert seen == ranked + ranked + ranked[:1]


def test_a_skipped_task_comes_after_the_moderators_other_choices_only(service, alice, bob,
                                                                     ranked):
    top = service.claim(alice)
    assert top.id == ranked[0]
    skipped = service.skip(top.id, alice)
    assert skipped.claimed_by is None and skipped.status == "open"
    assert service.claim(alice).id == ranked[1]
    # Bob did not skip it: he gets it at its normal priority, ahead of everything else.
    assert service.claim(bob).id == ranked[0]
    history = service.item_history("s0")
    assert [e.action for e in history if e.actor == "alice"] == ["task.claimed", "task.skipped"]
    skip_entry = next(e for e in history if e.action == "task.skipped")
    assert skip_entry.before["claimed_by"] == "alice" and skip_entry.after["claimed_by"] is None


def test_skips_order_after_everything_else_even_tier_two(service, store, senior, alice):
    add_items(store, ["t0", "t1"], ItemState.ANALYZING)
    escalated_from = flag(service, "t0", violence=0.5)
    low = flag(service, "t1", clickbait=0.75)
    service.claim(alice)
    tier2 = service.decide(escalated_from, alice, "escalate", note="unsure").escalated_task_id
    assert service.claim(senior).id == tier2  # tier 2 first for seniors
    service.skip(tier2, senior)
    assert service.claim(senior).id == low
    service.skip(low, senior)
    assert service.claim(senior).id == tier2  # skipped longest ago


def test_skip_needs_the_lease_and_decisions_forget_skips(service, store, alice, bob, ranked):
    task = service.claim(alice)
    with pytest.raises(Conflict, match="not claimed by 'bob'"):
        service.skip(task.id, bob)
    service.skip(task.id, alice)
    with pytest.raises(Conflict, match="claim it first"):
        service.skip(task.id, alice)
    assert skip_count(store) == 1
    assert service.claim(bob).id == task.id
    service.decide(task.id, bob, "approve")
    assert skip_count(store) == 0


def test_claiming_a_named_task(service, store, alice, bob, senior, ranked):
    third = ranked[2]
    claimed = service.claim_task(third, alice)
    assert (claimed.id, claimed.claimed_by) == (third, "alice")
    assert service.claim_task(third, alice).lease_expires_at == claimed.lease_expires_at
    assert service.claim(alice).id == third  # the held task comes back to "claim next"
    with pytest.raises(Conflict, match="being reviewed by 'alice'") as taken:
        service.claim_task(third, bob)
    assert taken.value.details["claimed_by"] == "alice"
    with pytest.raises(Conflict, match="holds task") as busy:
        service.claim_task(ranked[0], alice)
    assert busy.value.details["held_task_id"] == third
    audit = [e.action for e in service.item_history("s2") if e.actor == "alice"]
    assert audit == ["task.claimed"]

    # Claiming a task by name undoes the moderator's skip of it.
    service.skip(third, alice)
    assert skip_count(store) == 1
    service.claim_task(third, alice)
    assert skip_count(store) == 0
    service.decide(third, alice, "approve")
    with pytest.raises(Conflict, match="already decided"):
        service.claim_task(third, bob)


def test_named_claims_keep_tier_and_appeal_rules(service, store, alice, bob, senior):
    add_items(store, ["u0", "u1"], ItemState.ANALYZING)
    task_id = flag(service, "u0", violence=0.5)
    service.claim(alice)
    tier2 = service.decide(task_id, alice, "escalate", note="unsure").escalated_task_id
    with pytest.raises(Forbidden, match="senior moderators only"):
        service.claim_task(tier2, bob)
    assert service.claim_task(tier2, senior).id == tier2
    service.decide(tier2, senior, "reject", ["violence.graphic"])
    appeal = service.appeal("u0", Principal("creator", Role.UPLOADER), "it was staged")
    assert appeal.excluded_moderator == "sam"
    assert appeal.tier == 2  # an appeal goes to the tier that decided
    with pytest.raises(Forbidden, match="under appeal"):
        service.claim_task(appeal.id, senior)
    other_senior = Principal("sue", Role.SENIOR_MODERATOR)
    assert service.claim_task(appeal.id, other_senior).claimed_by == "sue"


def test_lists_carry_a_one_line_preview_of_the_item(service, store, alice):
    with store.sessions() as session, session.begin():
        session.add_all([
            ItemRow(id="p0", creator_id="c", title="Cheap   watches", tags=[],
                    text="Buy\nnow,\tlimited offer " + "x" * 400,
                    state=ItemState.ANALYZING.value, content_sha256="0" * 64),
            ItemRow(id="p1", creator_id="c", title="", tags=[], text="only text here",
                    state=ItemState.ANALYZING.value, content_sha256="1" * 64),
        ])
    long_id = flag(service, "p0", spam=0.6)
    short_id = flag(service, "p1", spam=0.55)
    previews = {t.id: t.preview for t in service.list_tasks()}
    assert previews[short_id] == "only text here"
    assert previews[long_id].startswith("Cheap watches — Buy now, limited offer xxx")
    assert len(previews[long_id]) == PREVIEW_CHARS and previews[long_id].endswith("…")
    assert service.get_task(long_id).preview == previews[long_id]
    assert service.list_tasks(TaskFilter(status="unclaimed", limit=1))[0].preview
    assert service.claim(alice).preview is None  # claims answer without the item lookup
    assert item_preview(None, None) == "" and item_preview("T", "") == "T"


def test_moderators_skipping_at_once_never_share_a_task(db_engine, policy, clock):
    """Eight moderators on two engines skip every third task they get and decide the
    rest: no task is ever held by two, and every task is decided exactly once."""
    url = db_engine.url.render_as_string(hide_password=False)
    engines = [db_engine, make_engine(url)]
    stores = [ItemStore(make_session_factory(e)) for e in engines]
    services = [ReviewService(s.sessions, s, policy, clock=clock) for s in stores]
    item_ids = [f"k{n:04d}" for n in range(80)]
    add_items(stores[0], item_ids, ItemState.PENDING_REVIEW)
    with write_transaction(stores[0].sessions) as session:
        for n, item_id in enumerate(item_ids):
            services[0].queue.open(
                session, item_id=item_id, reason=TaskReason.AUTO_RISK, now=clock(),
                created_by="test", severity=(n % 13) / 13, categories=[RiskCategory.SPAM],
            )
    guard = threading.Lock()
    holders: dict[int, str] = {}
    double_claims: list[tuple[int, str, str]] = []

    def moderate(worker: int) -> int:
        service = services[worker % 2]
        me = Principal(f"mod{worker}", Role.MODERATOR)
        decided = 0
        claims = 0
        while (task := service.claim(me)) is not None:
            claims += 1
            with guard:
                if task.id in holders:
                    double_claims.append((task.id, holders[task.id], me.name))
                holders[task.id] = me.name
            skip = claims % 3 == 0
            with guard:
                holders.pop(task.id, None)
            if skip:
                service.skip(task.id, me)
            else:
                service.decide(task.id, me, "approve")
                decided += 1
        return decided

    try:
        with ThreadPoolExecutor(8) as pool:
            per_worker = list(pool.map(moderate, range(8)))
    finally:
        engines[1].dispose()
    assert double_claims == []
    assert sum(per_worker) == len(item_ids)
    with stores[0].sessions() as session:
        decided = session.scalars(select(ReviewDecisionRow.task_id)).all()
    assert len(decided) == len(set(decided)) == len(item_ids)
    assert skip_count(stores[0]) == 0
