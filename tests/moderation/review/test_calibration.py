from __future__ import annotations

import pytest
import yaml

from core.contracts import ItemState, RiskCategory, RiskScore
from core.errors import InvalidInput
from moderation.policy import DEFAULT_POLICY_PATH, Policy
from moderation.review.calibration import threshold_for_recall, weighted_recall

from .conftest import add_items


@pytest.fixture
def policy() -> Policy:
    raw = yaml.safe_load(DEFAULT_POLICY_PATH.read_text())
    raw["qa_sample"] = {"rate": 0.5, "seed": "calibration"}
    return Policy.from_dict(raw)


def test_recall_helpers_on_hand_computed_cases():
    positives = [(0.9, 1.0), (0.7, 1.0), (0.3, 2.0)]
    assert weighted_recall(positives, 0.5) == pytest.approx(0.5)
    assert weighted_recall(positives, 0.0) == 1.0
    assert threshold_for_recall(positives, 0.25) == 0.9
    assert threshold_for_recall(positives, 0.5) == 0.7
    assert threshold_for_recall(positives, 0.51) == 0.3
    assert threshold_for_recall([], 0.9) is None and weighted_recall([], 0.5) is None


def test_calibration_from_decisions(service, store, policy, alice, senior):
    not_sampled = (f"n{i}" for i in range(1000) if not policy.is_qa_sample(f"n{i}"))
    sampled = (f"s{i}" for i in range(1000) if policy.is_qa_sample(f"s{i}"))
    # item -> (spam score, decision at tier 1, codes)
    plan = {
        next(not_sampled): (0.90, "reject", ["spam.scam"]),
        next(not_sampled): (0.70, "reject", ["spam.repetitive"]),
        next(not_sampled): (0.60, "approve", []),
        next(not_sampled): (0.55, "reject", ["other.illegal"]),   # not a spam confirmation
        next(not_sampled): (0.80, "escalate", []),                # tier 2 rejects for spam
        next(sampled): (0.30, "reject", ["spam.scam"]),           # a miss the QA sample found
        next(sampled): (0.20, "approve", []),
    }
    add_items(store, plan, ItemState.ANALYZING)
    for item_id, (score, _, _) in plan.items():
        decision = policy.route([RiskScore(category=RiskCategory.SPAM, score=score)],
                                item_id=item_id)
        assert service.apply_policy(item_id, decision) is not None
    while (task := service.claim(alice)) is not None:
        _, action, codes = plan[task.item_id]
        service.decide(task.id, alice, action, codes)
    tier2 = service.claim(senior)
    service.decide(tier2.id, senior, "reject", ["spam.scam"])

    report = service.calibration(target_recall=0.9)
    assert report.decisions_used == 7  # the escalation is not a final decision
    spam = next(c for c in report.categories if c.category is RiskCategory.SPAM)
    assert spam.review_threshold == 0.5
    assert (spam.flagged_decided, spam.flagged_confirmed) == (5, 3)
    assert spam.confirmed_share == pytest.approx(0.6)
    assert spam.positives == 4 and spam.weighted_positives == pytest.approx(5.0)
    assert spam.recall_at_current == pytest.approx(0.6)
    assert spam.threshold_for_target == pytest.approx(0.3)
    assert service.calibration(0.6).categories[
        list(RiskCategory).index(RiskCategory.SPAM)].threshold_for_target == pytest.approx(0.7)
    hate = next(c for c in report.categories if c.category is RiskCategory.HATE)
    assert (hate.flagged_decided, hate.positives, hate.confirmed_share,
            hate.threshold_for_target) == (0, 0, None, None)
    with pytest.raises(InvalidInput):
        service.calibration(target_recall=0.0)
