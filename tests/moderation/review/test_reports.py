from __future__ import annotations

import pytest
import yaml

from core.contracts import ItemState, RiskCategory, RiskScore
from core.errors import Conflict, Forbidden, InvalidInput, NotFound
from moderation.policy import DEFAULT_POLICY_PATH, Policy, TaskReason
from moderation.review import ReviewService
from serving.auth import Principal, Role

from .conftest import add_items, item_state


@pytest.fixture
def policy() -> Policy:
    raw = yaml.safe_load(DEFAULT_POLICY_PATH.read_text())
    raw["review"]["reports"] = {"threshold": 3.0, "default_weight": 1.0,
                                "reporter_weights": {"trusted": 2.0, "brigader": 0.0}}
    return Policy.from_dict(raw)


@pytest.fixture
def approved(store):
    add_items(store, ["v1", "v2"], ItemState.APPROVED)


def test_weighted_reports_past_the_threshold_pull_the_item_at_once(service, store, changes,
                                                                   approved):
    first = service.report("v1", "u1", "spam link")
    assert (first.weight, first.total_weight, first.pulled, first.task_id) == (1.0, 1.0,
                                                                               False, None)
    assert service.report("v1", "brigader", "x").total_weight == 1.0  # weight 0
    repeat = service.report("v1", "u1", "again!")
    assert repeat.duplicate and repeat.total_weight == 1.0  # one voice per reporter
    assert item_state(store, "v1") == "approved" and changes == []

    pulled = service.report("v1", "trusted", "scam", reach=5000)
    assert pulled.pulled and pulled.total_weight == 3.0
    assert item_state(store, "v1") == "pending_review"
    assert [(c.item_id, c.before, c.after) for c in changes] == [
        ("v1", ItemState.APPROVED, ItemState.PENDING_REVIEW)]
    task = service.get_task(pulled.task_id)
    assert task.reason is TaskReason.USER_REPORT
    assert (task.report_count, task.report_weight, task.reach) == (3, 3.0, 5000)

    more = service.report("v1", "u2", "")
    assert not more.pulled and more.task_id == task.id
    raised = service.get_task(task.id)
    assert raised.report_count == 4 and raised.priority > task.priority


def test_a_final_decision_answers_the_reports_so_far(service, store, alice, approved):
    for reporter in ("u1", "u2", "u3"):
        service.report("v1", reporter, "")
    task = service.claim(alice)
    service.decide(task.id, alice, "approve", note="satire, allowed")
    assert item_state(store, "v1") == "approved"
    # Old reports no longer count; the same reporters may report again.
    again = service.report("v1", "u1", "still bad")
    assert not again.duplicate and again.total_weight == 1.0 and not again.pulled


def test_reports_on_queued_items_raise_their_task(service, store, approved):
    add_items(store, ["a1"], ItemState.ANALYZING)
    decision = service.policy.route([RiskScore(category=RiskCategory.SPAM, score=0.6)])
    task = service.apply_policy("a1", decision)
    for reporter in ("u1", "u2", "u3"):
        outcome = service.report("a1", reporter, "")
    assert outcome.task_id == task.id and not outcome.pulled
    after = service.get_task(task.id)
    assert after.reason is TaskReason.AUTO_RISK and after.report_weight == 3.0


def test_reports_past_threshold_turn_a_qa_sample_into_a_report_task(service, store):
    item_id = next(f"qa{n}" for n in range(10_000) if service.policy.is_qa_sample(f"qa{n}"))
    add_items(store, [item_id], ItemState.ANALYZING)
    sample = service.apply_policy(item_id, service.policy.route(
        [RiskScore(category=RiskCategory.SPAM, score=0.01)], item_id=item_id
    ))
    outcome = service.report(item_id, "trusted", "")
    assert outcome.task_id == sample.id
    assert service.get_task(sample.id).reason is TaskReason.QA_SAMPLE
    outcome = service.report(item_id, "u1", "")
    assert outcome.pulled and outcome.task_id == sample.id
    assert service.get_task(sample.id).reason is TaskReason.USER_REPORT


def test_report_input_is_checked(service, approved):
    with pytest.raises(NotFound):
        service.report("nope", "u1", "")
    with pytest.raises(InvalidInput, match="reporter_id"):
        service.report("v1", "  ", "")
    with pytest.raises(InvalidInput, match="reason"):
        service.report("v1", "u1", "x" * 5000)


def test_reporter_weights_can_come_from_a_callable(store, policy, clock, approved):
    reputations = {"veteran": 5.0}
    service = ReviewService(store.sessions, store, policy, clock=clock,
                            reporter_weight=lambda r: reputations.get(r, 0.5))
    assert service.report("v1", "newbie", "").weight == 0.5
    assert service.report("v1", "veteran", "").pulled


def test_appeals_go_to_another_moderator(service, store, alice, bob, approved):
    uploader = Principal("pipeline", Role.UPLOADER)
    for reporter in ("u1", "u2", "u3"):
        service.report("v1", reporter, "")
    task = service.claim(alice)
    service.decide(task.id, alice, "reject", ["harassment.targeted"])
    with pytest.raises(Conflict, match="only rejected items"):
        service.appeal("v2", uploader, "why?")
    with pytest.raises(InvalidInput, match="note"):
        service.appeal("v1", uploader, "  ")

    appeal = service.appeal("v1", uploader, "it is a parody account")
    assert (appeal.reason, appeal.excluded_moderator, appeal.created_by) == (
        TaskReason.APPEAL, "alice", "pipeline")
    assert item_state(store, "v1") == "rejected"  # stays out of feeds while appealed
    with pytest.raises(Conflict, match="already under review"):
        service.appeal("v1", uploader, "again")
    assert service.claim(alice) is None
    assert service.claim(bob).id == appeal.id
    service.decide(appeal.id, bob, "approve", note="parody is allowed")
    assert item_state(store, "v1") == "approved"


def test_a_rejected_appeal_cannot_be_appealed_again(service, store, alice, bob):
    add_items(store, ["r1"], ItemState.ANALYZING)
    decision = service.policy.route([RiskScore(category=RiskCategory.SPAM, score=1.0)])
    service.apply_policy("r1", decision)  # auto-rejected: anyone may take the appeal
    uploader = Principal("pipeline", Role.UPLOADER)
    appeal = service.appeal("r1", uploader, "not spam")
    assert appeal.excluded_moderator is None
    assert service.claim(alice).id == appeal.id
    with pytest.raises(Forbidden):
        service.release(appeal.id, Principal("feed", Role.FEED))
    service.decide(appeal.id, alice, "reject", ["spam.repetitive"])
    with pytest.raises(Conflict, match="appealed once"):
        service.appeal("r1", uploader, "please")
    history = [e.action for e in service.item_history("r1")]
    assert history.count("task.opened") == 1 and history[-1] == "task.decided"
