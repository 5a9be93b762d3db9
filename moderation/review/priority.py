"""Queue priority: which open task a moderator gets next.

    priority = severity_weight · severity                   (0..1, from the policy)
             + reach_weight    · log10(1 + views so far)
             + report_weight   · log2(1 + weighted user reports)
             + age_weight      · hours since the task was opened
             + reason_bonus[reason]

With the default weights (100, 10, 15, 2; bonus appeal +20, user report +10, QA sample
-50) a certain hit on the gravest category is worth 100, a million views 60, seven
weighted reports 45, a day of waiting 48. Logarithms keep one viral item or one
report brigade from starving everything else; the linear age term guarantees that any
task, QA samples included, eventually reaches the front.

Because age enters linearly, ``priority(now) = base + w_age·(now_h - created_h)``, and
``now_h`` is the same for every task at one moment: ordering by the stored
``sort_key = base - w_age·created_h`` orders by priority at every moment, so the claim
query uses an index instead of recomputing priorities.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

from moderation.policy import PriorityWeights, TaskReason

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def hours_since_epoch(at: datetime) -> float:
    return (at - _EPOCH).total_seconds() / 3600.0


def base_priority(
    weights: PriorityWeights, *, reason: TaskReason, severity: float, reach: int,
    report_weight: float,
) -> float:
    """The priority without its age term."""
    return (
        weights.severity_weight * severity
        + weights.reach_weight * math.log10(1.0 + max(reach, 0))
        + weights.report_weight * math.log2(1.0 + max(report_weight, 0.0))
        + weights.reason_bonus.get(reason, 0.0)
    )


def sort_key(weights: PriorityWeights, base: float, created_at: datetime) -> float:
    return base - weights.age_weight * hours_since_epoch(created_at)


def priority_at(weights: PriorityWeights, key: float, now: datetime) -> float:
    """The priority a stored ``sort_key`` stands for at ``now``."""
    return key + weights.age_weight * hours_since_epoch(now)
