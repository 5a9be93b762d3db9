"""Calibration from decisions: did the flags hold up, and where should thresholds sit?

For each risk category, from tasks that carried risk scores and got a final decision:
- the share of items the category flagged that moderators rejected for it (a code of
  that category), i.e. the precision of the flag at the current threshold;
- the review threshold that would reach a target recall: the highest threshold whose
  estimated recall over confirmed positives reaches the target.

Positives are only known where a human looked: flagged items, plus approvals drawn by
the QA sample. A QA positive stands for ``1/rate`` unseen approvals, so it weighs
``sample_weight`` (set when the task opened); without it, recall below the current
threshold would be invisible and always look perfect.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.contracts import RiskCategory
from core.errors import InvalidInput
from moderation.policy import Policy
from moderation.review.models import Action, CalibrationReport, CategoryCalibration
from moderation.review.tables import ReviewDecisionRow, ReviewTaskRow


def weighted_recall(positives: list[tuple[float, float]], threshold: float) -> float | None:
    total = sum(w for _, w in positives)
    if total <= 0:
        return None
    return sum(w for s, w in positives if s >= threshold) / total


def threshold_for_recall(positives: list[tuple[float, float]], target: float) -> float | None:
    """Highest t with weighted recall(t) >= target: walk scores from the top down."""
    total = sum(w for _, w in positives)
    if total <= 0:
        return None
    covered = 0.0
    for score, weight in sorted(positives, key=lambda p: p[0], reverse=True):
        covered += weight
        # A small tolerance so a target met exactly is not missed by float rounding.
        if covered / total >= target - 1e-12:
            return score
    return min(s for s, _ in positives)


def calibration(session: Session, policy: Policy, target_recall: float) -> CalibrationReport:
    if not 0.0 < target_recall <= 1.0:
        raise InvalidInput(
            f"target_recall must be in (0, 1], got {target_recall}", field="target_recall"
        )
    rows = session.execute(
        select(
            ReviewTaskRow.scores, ReviewTaskRow.categories, ReviewTaskRow.sample_weight,
            ReviewDecisionRow.action, ReviewDecisionRow.policy_codes,
        )
        .join(ReviewDecisionRow, ReviewDecisionRow.task_id == ReviewTaskRow.id)
        .where(ReviewDecisionRow.action.in_([Action.APPROVE.value, Action.REJECT.value]))
    ).all()
    used = 0
    flagged = {c: 0 for c in RiskCategory}
    confirmed = {c: 0 for c in RiskCategory}
    positives: dict[RiskCategory, list[tuple[float, float]]] = {c: [] for c in RiskCategory}
    for scores, categories, sample_weight, action, codes in rows:
        if not scores:
            continue  # a report or appeal on an item no model scored
        used += 1
        rejected_for = (
            {policy.code_category(code) for code in codes} if action == Action.REJECT else set()
        )
        for category in RiskCategory:
            hit = category in rejected_for
            if category.value in categories:
                flagged[category] += 1
                confirmed[category] += int(hit)
            score = scores.get(category.value)
            if hit and score is not None:
                positives[category].append((float(score), float(sample_weight)))

    report = []
    for category in RiskCategory:
        current = policy.category(category).review
        found = positives[category]
        report.append(
            CategoryCalibration(
                category=category, review_threshold=current,
                flagged_decided=flagged[category], flagged_confirmed=confirmed[category],
                confirmed_share=(
                    confirmed[category] / flagged[category] if flagged[category] else None
                ),
                positives=len(found), weighted_positives=sum(w for _, w in found),
                recall_at_current=weighted_recall(found, current),
                threshold_for_target=threshold_for_recall(found, target_recall),
            )
        )
    return CalibrationReport(target_recall=target_recall, categories=report, decisions_used=used)
