"""One risk score per category for an item with several parts (text, images, audio,
video): the highest calibrated score wins, and its evidence says which part it came
from.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from core.contracts import (
    Evidence,
    RiskCategory,
    RiskScore,
)

log = logging.getLogger(__name__)


def _prefixed(evidence: Evidence, prefix: str) -> Evidence:
    detail = f"{prefix}: {evidence.detail}" if evidence.detail else prefix
    return evidence.model_copy(update={"detail": detail})


def merge_risk(sources: Sequence[tuple[str, Sequence[RiskScore]]]) -> list[RiskScore]:
    """One score per category: the worst assessed score across modalities (as the policy
    reads them), with the evidence of every source that assessed the category, each
    labelled with its source; a category no source assessed keeps the first reason."""
    merged: list[RiskScore] = []
    for category in RiskCategory:
        assessed: list[tuple[str, RiskScore]] = []
        reasons: list[str] = []
        for source, scores in sources:
            for score in scores:
                if score.category != category:
                    continue
                if score.score is None:
                    if score.not_assessed_reason:
                        reasons.append(f"{source}: {score.not_assessed_reason}")
                else:
                    assessed.append((source, score))
        if not assessed:
            merged.append(RiskScore(
                category=category, score=None,
                not_assessed_reason="; ".join(reasons) or "no model assesses this category",
            ))
            continue
        _, worst = max(assessed, key=lambda pair: pair[1].score or 0.0)
        evidence = [_prefixed(e, source) for source, s in assessed for e in s.evidence]
        merged.append(RiskScore(
            category=category, score=worst.score, model=worst.model, evidence=evidence,
        ))
    return merged
