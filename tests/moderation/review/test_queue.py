from __future__ import annotations

import math

import pytest
from sqlalchemy import insert, text, update
from sqlalchemy.exc import DBAPIError, IntegrityError

from core.contracts import ItemState, RiskCategory, RiskScore
from core.errors import Conflict, Forbidden, InvalidInput, NotFound
from moderation.policy import TaskReason
from moderation.review import Action, TaskFilter
from moderation.review.tables import AuditRow, ReviewDecisionRow
from serving.auth import Principal, Role

from .conftest import add_items, flag, item_state


@pytest.fixture
def analysing(store):
    add_items(store, [f"i{n}" for n in range(6)], ItemState.ANALYZING)


def test_policy_routes_move_the_item_and_queue_reviews(service, store, changes, analysing):
    policy = service.policy
    approve = policy.route([RiskScore(category=RiskCategory.SPAM, score=0.1)])
    assert service.apply_policy("i0", approve) is None
    reject = policy.route([RiskScore(category=RiskCategory.SEXUAL, score=0.99)])
    assert service.apply_policy("i1", reject) is None
    task_id = flag(service, "i2", hate=0.6, spam=0.55)
    assert [item_state(store, i) for i in ("i0", "i1", "i2")] == [
        "approved", "rejected", "pending_review"]
    assert [(c.item_id, c.after) for c in changes] == [
        ("i0", ItemState.APPROVED), ("i1", ItemState.REJECTED), ("i2", ItemState.PENDING_REVIEW)]
    task = service.get_task(task_id)
    assert task.reason is TaskReason.AUTO_RISK and task.tier == 1
    assert task.category is RiskCategory.HATE
    assert task.categories == [RiskCategory.HATE, RiskCategory.SPAM]
    assert task.scores["hate"] == 0.6 and task.scores["sexual"] is None


def test_a_batch_is_routed_in_one_transaction_and_announced_together(
    service, store, analysing
):
    batches: list[list[tuple[str, ItemState]]] = []
    store.subscribe(lambda made: batches.append([(c.item_id, c.after) for c in made]))
    policy = service.policy
    approve = policy.route([RiskScore(category=RiskCategory.SPAM, score=0.1)])
    review = policy.route([RiskScore(category=RiskCategory.HATE, score=0.6)], item_id="i0")
    reject = policy.route([RiskScore(category=RiskCategory.SEXUAL, score=0.99)])
    views = service.apply_policies([("i3", approve), ("i0", review), ("i1", reject)])
    # Tasks come back in the order given (the items are locked in id order).
    assert views[0] is None and views[2] is None
    assert views[1] is not None and views[1].item_id == "i0"
    assert [item_state(store, i) for i in ("i3", "i0", "i1")] == [
        "approved", "pending_review", "rejected"]
    assert batches == [[("i0", ItemState.PENDING_REVIEW), ("i1", ItemState.REJECTED),
                        ("i3", ItemState.APPROVED)]]


def test_a_batch_with_a_missing_item_routes_nothing(service, store, analysing):
    approve = service.policy.route([RiskScore(category=RiskCategory.SPAM, score=0.1)])
    with pytest.raises(NotFound):
        service.apply_policies([("i0", approve), ("gone", approve)])
    assert item_state(store, "i0") == "analyzing"  # one transaction: rolled back


def test_the_import_routes_the_rest_of_a_batch_when_one_item_cannot_move(service, store):
    from core.storage.items import InvalidTransition
    from ingest.analysis import route_analysed
    from serving.wiring import policy_gate

    add_items(store, ["a0", "a2"], ItemState.ANALYZING)
    add_items(store, ["a1"], ItemState.RECEIVED)  # another process put it back meanwhile
    clean = [RiskScore(category=RiskCategory.SPAM, score=0.1)]
    with pytest.raises(InvalidTransition):
        route_analysed(policy_gate(service), [("a0", clean), ("a1", clean), ("a2", clean)])
    assert [item_state(store, i) for i in ("a0", "a1", "a2")] == [
        "approved", "received", "approved"]


def test_qa_sampled_approvals_are_queued_and_stay_live(service, store, analysing):
    item_id = next(f"qa{n}" for n in range(10_000) if service.policy.is_qa_sample(f"qa{n}"))
    add_items(store, [item_id], ItemState.ANALYZING)
    decision = service.policy.route(
        [RiskScore(category=RiskCategory.SPAM, score=0.1)], item_id=item_id)
    task = service.apply_policy(item_id, decision)
    assert task is not None and task.reason is TaskReason.QA_SAMPLE
    assert item_state(store, item_id) == "approved"


def test_priority_follows_the_documented_formula(service, clock, analysing):
    weights = service.policy.review.priority
    task_id = flag(service, "i0", sexual=0.5)
    clock.advance(hours=3)
    service.update_reach("i0", 999)
    task = service.get_task(task_id)
    expected = (weights.severity_weight * 0.9 * 0.5 + weights.reach_weight * math.log10(1000)
                + weights.age_weight * 3 + weights.reason_bonus[TaskReason.AUTO_RISK])
    assert task.priority == pytest.approx(expected)


def test_claims_go_by_priority_and_age_lets_old_tasks_catch_up(service, clock, alice, bob,
                                                               senior, analysing):
    old_mild = flag(service, "i0", clickbait=0.75)         # severity 0.15
    clock.advance(hours=20)
    fresh_grave = flag(service, "i1", self_harm=0.5)        # severity 0.5
    fresh_viral = flag(service, "i2", clickbait=0.75)
    service.update_reach("i2", 1_000_000)                    # +60
    listed = [t.id for t in service.list_tasks()]
    assert listed == [fresh_viral, old_mild, fresh_grave]  # 75 vs 15+40 vs 50
    assert [service.claim(p).id for p in (alice, bob, senior)] == listed
    assert service.claim(Principal("carol", Role.MODERATOR)) is None


def test_a_moderator_holding_a_lease_gets_the_same_task_back(service, alice, analysing):
    flag(service, "i0", spam=0.6)
    flag(service, "i1", spam=0.6)
    first = service.claim(alice)
    assert service.claim(alice).id == first.id


def test_an_expired_lease_returns_the_task_to_the_queue(service, clock, alice, bob, analysing):
    task_id = flag(service, "i0", spam=0.6)
    claimed = service.claim(alice)
    assert claimed.claimed_by == "alice"
    assert claimed.lease_expires_at == clock.now + service.queue.lease
    assert service.claim(bob) is None
    clock.advance(seconds=599)
    assert service.claim(bob) is None
    clock.advance(seconds=2)
    assert service.list_tasks(TaskFilter(status="unclaimed"))[0].id == task_id
    assert service.claim(bob).id == task_id
    with pytest.raises(Conflict, match="not claimed by 'alice'"):
        service.heartbeat(task_id, alice)
    with pytest.raises(Conflict):
        service.decide(task_id, alice, "approve")
    assert service.decide(task_id, bob, "approve").moderator == "bob"
    takeover = [e for e in service.item_history("i0") if e.action == "task.claimed"][-1]
    assert (takeover.actor, takeover.before["claimed_by"]) == ("bob", "alice")


def test_heartbeats_renew_the_lease_and_release_frees_it_at_once(service, clock, alice, bob,
                                                                analysing):
    task_id = flag(service, "i0", spam=0.6)
    service.claim(alice)
    for _ in range(3):
        clock.advance(seconds=500)
        assert service.heartbeat(task_id, alice).lease_expires_at == clock.now + service.queue.lease
        assert service.claim(bob) is None
    assert service.list_tasks(TaskFilter(status="claimed"))[0].claimed_by == "alice"
    with pytest.raises(Conflict):
        service.release(task_id, bob)
    service.release(task_id, alice)
    assert service.claim(bob).id == task_id
    with pytest.raises(NotFound):
        service.heartbeat(9999, bob)


def test_decisions_move_items_and_notify_after_commit(service, store, alice, analysing):
    seen = []
    # The listener reads the database: it must already see the committed state.
    store.subscribe(lambda changes: seen.extend(
        (change.after, item_state(store, change.item_id)) for change in changes))
    approve_id = flag(service, "i0", spam=0.6)
    reject_id = flag(service, "i1", spam=0.6)
    seen.clear()
    service.claim(alice)
    decision = service.decide(approve_id, alice, Action.APPROVE, note="fine")
    assert (decision.item_state_before, decision.item_state_after) == ("pending_review",
                                                                       "approved")
    service.claim(alice)
    service.decide(reject_id, alice, "reject", ["spam.scam"])
    assert seen == [(ItemState.APPROVED, "approved"), (ItemState.REJECTED, "rejected")]
    assert service.get_task(reject_id).status == "decided"


def test_rejecting_a_qa_sample_takes_the_item_out_through_pending_review(
        service, store, changes, alice):
    item_id = next(f"qa{n}" for n in range(10_000) if service.policy.is_qa_sample(f"qa{n}"))
    add_items(store, [item_id], ItemState.ANALYZING)
    service.apply_policy(item_id, service.policy.route(
        [RiskScore(category=RiskCategory.SPAM, score=0.01)], item_id=item_id
    ))
    changes.clear()
    task = service.claim(alice)
    service.decide(task.id, alice, "reject", ["low_quality.unwatchable"])
    assert [(c.before, c.after) for c in changes] == [
        (ItemState.APPROVED, ItemState.PENDING_REVIEW),
        (ItemState.PENDING_REVIEW, ItemState.REJECTED)]


def test_decision_input_is_validated(service, alice, analysing):
    task_id = flag(service, "i0", spam=0.6)
    service.claim(alice)
    with pytest.raises(InvalidInput, match="at least one policy code"):
        service.decide(task_id, alice, "reject")
    with pytest.raises(InvalidInput, match="unknown policy codes"):
        service.decide(task_id, alice, "reject", ["spam.scam", "nope"])
    with pytest.raises(InvalidInput, match="no policy codes"):
        service.decide(task_id, alice, "approve", ["spam.scam"])
    with pytest.raises(InvalidInput, match="action must be one of"):
        service.decide(task_id, alice, "delete")
    with pytest.raises(Forbidden):
        service.claim(Principal("up", Role.UPLOADER))
    assert service.get_task(task_id).status == "open"  # nothing half-done


def test_exactly_one_decision_per_task_is_enforced_by_the_database(service, store, alice,
                                                                  analysing):
    task_id = flag(service, "i0", spam=0.6)
    service.claim(alice)
    service.decide(task_id, alice, "approve")
    with pytest.raises(Conflict, match="already decided"):
        service.decide(task_id, alice, "approve")
    # The guard is a UNIQUE constraint, not only the check above.
    with store.sessions() as session, pytest.raises(IntegrityError):
        session.execute(insert(ReviewDecisionRow).values(
            task_id=task_id, item_id="i0", moderator="mallory", action="reject",
            policy_codes=[], item_state_before="approved", item_state_after="rejected",
            created_at=service.now()))
        session.commit()


def test_escalated_tasks_go_to_senior_moderators_only(service, store, alice, bob, senior,
                                                      analysing):
    task_id = flag(service, "i0", violence=0.5)
    service.claim(alice)
    escalation = service.decide(task_id, alice, "escalate", note="graphic, unsure")
    assert escalation.escalated_task_id is not None
    tier2 = service.get_task(escalation.escalated_task_id)
    assert (tier2.tier, tier2.parent_task_id, tier2.reason) == (2, task_id, TaskReason.AUTO_RISK)
    assert tier2.scores == service.get_task(task_id).scores
    assert item_state(store, "i0") == "pending_review"
    assert service.claim(bob) is None
    assert service.claim(senior).id == tier2.id
    with pytest.raises(Conflict, match="already tier 2"):
        service.decide(tier2.id, senior, "escalate")
    service.decide(tier2.id, senior, "reject", ["violence.graphic"])
    assert item_state(store, "i0") == "rejected"


def test_audit_log_tells_an_items_history_and_is_append_only(service, store, alice,
                                                             analysing):
    task_id = flag(service, "i0", spam=0.6)
    service.claim(alice)
    service.decide(task_id, alice, "reject", ["spam.scam"], note="phishing link")
    history = service.item_history("i0")
    assert [(e.actor, e.action) for e in history] == [
        ("policy", "item.state"), ("policy", "policy.routed"), ("policy", "task.opened"),
        ("alice", "task.claimed"), ("alice", "item.state"), ("alice", "task.decided")]
    state = history[4]
    assert (state.before, state.after["state"]) == ({"state": "pending_review"}, "rejected")
    decided = history[5]
    assert decided.before["status"] == "open"
    assert decided.after["decision"]["policy_codes"] == ["spam.scam"]
    assert decided.after["decision"]["note"] == "phishing link"
    with pytest.raises(NotFound):
        service.item_history("unknown")
    for statement in (update(AuditRow).values(actor="mallory"), text("DELETE FROM review_audit")):
        with store.sessions() as session, pytest.raises(DBAPIError, match="append-only"):
            session.execute(statement)
            session.commit()
    assert len(service.item_history("i0")) == len(history)


def test_list_tasks_filters(service, alice, analysing):
    flag(service, "i0", spam=0.6)
    flag(service, "i1", hate=0.5)
    claimed = service.claim(alice)
    assert {t.item_id for t in service.list_tasks(TaskFilter(category=RiskCategory.SPAM))} == {
        "i0"}
    assert [t.id for t in service.list_tasks(TaskFilter(status="claimed"))] == [claimed.id]
    assert [t.id for t in service.list_tasks(TaskFilter(claimed_by="alice"))] == [claimed.id]
    assert len(service.list_tasks(TaskFilter(status="unclaimed"))) == 1
    assert service.list_tasks(TaskFilter(tier=2)) == []
    assert len(service.list_tasks(TaskFilter(status=None, limit=1))) == 1
    service.decide(claimed.id, alice, "approve")
    assert [t.id for t in service.list_tasks(TaskFilter(status="decided"))] == [claimed.id]


def test_stats_report_depth_age_and_throughput(service, clock, alice, senior, analysing):
    flag(service, "i0", spam=0.6)
    clock.advance(minutes=10)
    flag(service, "i1", spam=0.6)
    clock.advance(minutes=10)
    flag(service, "i2", hate=0.5)
    clock.advance(minutes=10)
    flag(service, "i3", hate=0.5)
    clock.advance(minutes=10)
    hate = service.claim(alice)                 # hate ranks first: severity
    service.decide(hate.id, alice, "escalate")  # opens a tier-2 task, age 0
    service.claim(alice)
    stats = service.stats()
    assert stats.open_total == 4
    depth = {(d.category, d.tier): (d.unclaimed, d.claimed) for d in stats.depth}
    assert depth == {("spam", 1): (2, 0), ("hate", 1): (0, 1), ("hate", 2): (1, 0)}
    ages = sorted([40, 30, 10, 0])               # minutes: i0, i1, i3 (open), tier-2 copy
    assert stats.age_p50_s == pytest.approx((ages[1] + ages[2]) / 2 * 60)
    assert stats.age_p95_s == pytest.approx((ages[2] + 0.85 * (ages[3] - ages[2])) * 60)
    assert stats.decisions_last_hour == 1
    assert stats.oldest_open_age_s == pytest.approx(40 * 60)
    assert stats.my_decisions_today is None  # only when a moderator asks
    assert service.stats(alice.name).my_decisions_today == 1
    assert service.stats(senior.name).my_decisions_today == 0
    clock.advance(hours=2)
    later = service.stats()
    assert later.decisions_last_hour == 0
    assert later.decisions_per_hour_24h == pytest.approx(1 / 24)


def test_a_decision_on_an_item_taken_down_meanwhile_still_closes_the_task(service, store,
                                                                         changes, alice,
                                                                         analysing):
    task_id = flag(service, "i0", spam=0.6)
    service.claim(alice)
    store.transition("i0", ItemState.REMOVED, "court order")
    changes.clear()
    decision = service.decide(task_id, alice, "approve")
    assert (decision.item_state_before, decision.item_state_after) == ("removed", "removed")
    assert item_state(store, "i0") == "removed" and changes == []
    assert service.get_task(task_id).status == "decided"
