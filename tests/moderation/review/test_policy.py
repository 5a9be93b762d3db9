from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from core.contracts import RiskCategory, RiskScore
from core.errors import InvalidConfig, InvalidInput
from moderation.policy import DEFAULT_POLICY_PATH, Policy, Route


def raw_defaults() -> dict:
    return yaml.safe_load(DEFAULT_POLICY_PATH.read_text())


def scores(**values: float | None) -> list[RiskScore]:
    return [RiskScore(category=RiskCategory(k), score=v) for k, v in values.items()]


def test_defaults_cover_every_category_and_favour_recall():
    policy = Policy.load()
    for category in RiskCategory:
        rule = policy.category(category)
        assert rule.review <= 0.8
        assert rule.reject is None or rule.reject >= 0.9


def test_routes_by_thresholds_and_names_the_driving_categories():
    policy = Policy.load()
    approve = policy.route(scores(sexual=0.05, spam=0.1, hate=None))
    assert approve.route is Route.APPROVE and approve.categories == []
    assert approve.scores[RiskCategory.HATE] is None

    review = policy.route(scores(sexual=0.5, spam=0.6, hate=0.01))
    assert review.route is Route.REVIEW
    assert review.categories == [RiskCategory.SEXUAL, RiskCategory.SPAM]
    assert any("sexual 0.500 >= review threshold 0.300" in r for r in review.reasons)
    # severity: the gravest driving category, severity x score
    assert review.severity == pytest.approx(max(0.9 * 0.5, 0.4 * 0.6))

    reject = policy.route(scores(violence=0.99, spam=0.6))
    assert reject.route is Route.REJECT
    assert reject.categories == [RiskCategory.VIOLENCE]
    assert reject.severity == pytest.approx(0.8 * 0.99)


def test_thresholds_are_inclusive_and_never_reject_categories_only_review():
    policy = Policy.load()
    assert policy.route(scores(sexual=0.30)).route is Route.REVIEW
    assert policy.route(scores(sexual=0.92)).route is Route.REJECT
    # self_harm has no reject threshold: even certainty goes to a human
    assert policy.route(scores(self_harm=1.0)).route is Route.REVIEW


def test_several_scores_for_one_category_use_the_highest():
    policy = Policy.load()
    decision = policy.route(
        [*scores(sexual=0.1), RiskScore(category=RiskCategory.SEXUAL, score=0.95)]
    )
    assert decision.route is Route.REJECT
    assert decision.scores[RiskCategory.SEXUAL] == 0.95


def test_not_assessed_handling_is_configurable_per_category():
    raw = raw_defaults()
    raw["categories"]["sexual"]["when_not_assessed"] = "review"
    policy = Policy.from_dict(raw)
    missing = RiskScore(category=RiskCategory.SEXUAL, score=None,
                        not_assessed_reason="no image model for this modality")
    decision = policy.route([missing, *scores(spam=0.1)])
    assert decision.route is Route.REVIEW
    assert decision.categories == [RiskCategory.SEXUAL]
    assert "no image model" in decision.reasons[0]
    # an absent category counts as not assessed too
    assert policy.route(scores(spam=0.1)).route is Route.REVIEW
    # the default ignores one missing category when others were assessed...
    assert Policy.load().route([missing, *scores(spam=0.1)]).route is Route.APPROVE
    # ...but an item no model assessed at all is unknown, not clean
    nothing = Policy.load().route([missing])
    assert nothing.route is Route.REVIEW
    assert "no risk category was assessed" in nothing.reasons[0]
    # an assessed score still wins over the not-assessed rule
    assert policy.route(scores(sexual=0.95)).route is Route.REJECT


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda r: r["categories"]["sexual"].update(review=1.5), "categories.sexual.review"),
        (lambda r: r["categories"]["hate"].update(reject=0.1), "categories.hate"),
        (lambda r: r["categories"]["spam"].update(when_not_assessed="maybe"),
         "categories.spam.when_not_assessed"),
        (lambda r: r["categories"]["spam"].update(reveiw=0.4), "categories.spam.reveiw"),
        (lambda r: r["categories"].pop("low_quality"), "categories"),
        (lambda r: r["categories"].update(gore={"review": 0.1, "severity": 1}),
         "categories.gore"),
        (lambda r: r["qa_sample"].update(rate=-0.1), "qa_sample.rate"),
        (lambda r: r["review"].update(lease_seconds=0), "review.lease_seconds"),
        (lambda r: r["review"]["reports"]["reporter_weights"].update(u1=-1),
         "review.reports"),
        (lambda r: r["codes"]["spam.scam"].update(category="scam"), "codes.spam.scam.category"),
    ],
)
def test_invalid_policy_files_fail_at_load_naming_the_field(tmp_path: Path, edit, field):
    raw = raw_defaults()
    edit(raw)
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(InvalidConfig) as info:
        Policy.load(path)
    assert info.value.code == "E301"
    assert info.value.details["field"].startswith(field)
    assert field in str(info.value)


def test_unreadable_policy_files_are_coded_errors(tmp_path: Path):
    with pytest.raises(InvalidConfig, match="does not exist"):
        Policy.load(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("categories: [unclosed")
    with pytest.raises(InvalidConfig, match="not valid YAML"):
        Policy.load(bad)
    bad.write_text("- a list\n")
    with pytest.raises(InvalidConfig, match="mapping"):
        Policy.load(bad)


def test_qa_sample_is_deterministic_and_close_to_its_rate():
    raw = raw_defaults()
    raw["qa_sample"] = {"rate": 0.1, "seed": "s1"}
    policy = Policy.from_dict(raw)
    ids = [f"item-{i}" for i in range(20_000)]
    picked = [policy.is_qa_sample(i) for i in ids]
    assert picked == [policy.is_qa_sample(i) for i in ids]
    share = sum(picked) / len(ids)
    assert 0.09 < share < 0.11  # binomial sd is 0.002
    raw["qa_sample"]["seed"] = "s2"
    other = Policy.from_dict(raw)
    assert [other.is_qa_sample(i) for i in ids] != picked  # the seed matters

    chosen = ids[picked.index(True)]
    decision = policy.route(scores(spam=0.1), item_id=chosen)
    assert decision.route is Route.APPROVE and decision.qa_sample
    assert decision.severity == pytest.approx(0.4 * 0.1)  # residual risk ranks the sample
    assert not policy.route(scores(spam=0.9), item_id=chosen).qa_sample  # reviews are not
    raw["qa_sample"]["rate"] = 0.0
    assert not any(Policy.from_dict(raw).is_qa_sample(i) for i in ids[:1000])


def test_policy_codes_are_checked():
    policy = Policy.load()
    assert policy.check_codes(["spam.scam", "spam.scam", "hate.slur"]) == ["spam.scam",
                                                                             "hate.slur"]
    assert policy.code_category("hate.slur") is RiskCategory.HATE
    assert policy.code_category("other.copyright") is None
    with pytest.raises(InvalidInput, match="unknown policy codes"):
        policy.check_codes(["spam.scam", "made.up"])
