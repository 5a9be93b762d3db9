"""Targets an issue sets for a measured figure, checked with a 95% interval beside them.

A figure on a few hundred held-out rows moves with the rows drawn: 14 errors in 882 SMS
(accuracy 0.984) is also what a model with accuracy 0.99 would show one time in a few.
So an evaluation prints each target's figure with its 95% interval, and says whether the
goal lies inside it: a target "met" or "not met" by less than the interval's width is
one the test set cannot tell apart from its goal. The verdict itself is always the point
figure against the goal, as the issues state their targets; the interval is what a
reader needs to weigh it.

Intervals come from ``scipy.stats``: a percentile bootstrap over the test rows
(stratified by class) for ranking figures (AUC, precision at a recall, macro-F1 at a
fixed threshold), over whole units for figures summed over them (entity F1 over
sentences), and Wilson's interval for shares (accuracy, the share of a clean set sent
to review).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0


@dataclass(frozen=True)
class Target:
    """A figure an issue asks for: at least ``goal``, or at most when ``at_most``."""

    figure: str  # what is measured, as printed ("hate AUC, Davidson test rows")
    goal: float
    at_most: bool = False
    issue: int | None = None

    @property
    def wording(self) -> str:
        return f"{'≤' if self.at_most else '≥'} {self.goal:g}"


@dataclass(frozen=True)
class TargetCheck:
    target: Target
    value: float
    low: float
    high: float
    n: int

    @property
    def met(self) -> bool:
        return self.value <= self.target.goal if self.target.at_most else (
            self.value >= self.target.goal
        )

    @property
    def goal_inside_interval(self) -> bool:
        """True when the test rows cannot tell the figure from the goal at 95%."""
        return self.low <= self.target.goal <= self.high

    @property
    def verdict(self) -> str:
        word = "met" if self.met else "not met"
        return f"{word} (goal inside the interval)" if self.goal_inside_interval else word

    def as_dict(self) -> dict[str, Any]:
        return {
            "figure": self.target.figure, "goal": self.target.wording,
            "issue": self.target.issue, "value": self.value, "n": self.n,
            "interval_95": [self.low, self.high], "met": self.met,
            "goal_inside_interval": self.goal_inside_interval,
        }


def _percentile_interval(
    samples: tuple[np.ndarray, ...], statistic: Callable[..., float], *, paired: bool,
    resamples: int, seed: int,
) -> tuple[float, float]:
    """scipy's percentile bootstrap, seeded: the same rows print the same interval."""
    interval = stats.bootstrap(
        samples, statistic, paired=paired, vectorized=False, n_resamples=resamples,
        confidence_level=CONFIDENCE, method="percentile",
        random_state=np.random.default_rng(seed),
    ).confidence_interval
    return float(interval.low), float(interval.high)


def bootstrap_check(
    target: Target,
    statistic: Callable[[np.ndarray, np.ndarray], float],
    y_true: np.ndarray,
    scores: np.ndarray,
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> TargetCheck:
    """``statistic(y_true, scores)`` and its percentile-bootstrap interval.

    Stratified: positives and negatives are resampled apart (scipy resamples unpaired
    samples independently), so every resample keeps the test rows' class counts and a
    ranking figure is defined in each."""
    y_true = np.asarray(y_true).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    value = float(statistic(y_true.astype(int), scores))
    positives, negatives = scores[y_true], scores[~y_true]
    labels = np.r_[np.ones(len(positives), dtype=int), np.zeros(len(negatives), dtype=int)]

    def resampled(pos: np.ndarray, neg: np.ndarray) -> float:
        return float(statistic(labels, np.r_[pos, neg]))

    low, high = _percentile_interval((positives, negatives), resampled, paired=False,
                                     resamples=resamples, seed=seed)
    return TargetCheck(target, value, low, high, len(y_true))


def rows_bootstrap_check(
    target: Target,
    statistic: Callable[..., float],
    *columns: np.ndarray,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> TargetCheck:
    """``statistic(*columns)`` over rows that are resampled whole (the columns stay
    paired), for figures summed over units such as sentences: entity F1 from each
    sentence's true positives, false positives and misses."""
    arrays = tuple(np.asarray(c) for c in columns)
    low, high = _percentile_interval(arrays, statistic, paired=True, resamples=resamples,
                                     seed=seed)
    return TargetCheck(target, float(statistic(*arrays)), low, high, len(arrays[0]))


def share_check(target: Target, count: int, n: int) -> TargetCheck:
    """A share ``count / n`` (an accuracy, a flag rate) with Wilson's interval."""
    if n <= 0:
        raise ValueError(f"{target.figure}: a share of no rows")
    interval = stats.binomtest(count, n).proportion_ci(CONFIDENCE, method="wilson")
    return TargetCheck(target, count / n, float(interval.low), float(interval.high), n)


def target_table(checks: list[TargetCheck], title: str) -> Any:
    """A ``rich`` table of the checks, as the evaluation commands print them."""
    from rich.table import Table

    table = Table(title=f"{title}: each figure with its 95% interval over the rows measured")
    for column in ("figure", "goal", "value", "95% interval", "n", "verdict"):
        table.add_column(column)
    for check in checks:
        table.add_row(
            check.target.figure, check.target.wording, f"{check.value:.4f}",
            f"{check.low:.4f}–{check.high:.4f}", str(check.n), check.verdict,
        )
    return table
