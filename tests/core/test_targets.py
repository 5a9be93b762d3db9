"""Targets checked with 95% intervals (``core.targets``), on figures whose intervals are known."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from core.targets import Target, bootstrap_check, share_check, target_table


def _auc(y: np.ndarray, s: np.ndarray) -> float:
    return float(roc_auc_score(y, s))


def test_an_accuracy_short_of_its_goal_by_less_than_its_interval_says_so() -> None:
    # The shipped spam head's SMS figure: 14 errors in 882 test rows.
    check = share_check(Target("spam accuracy, SMS", 0.99), 868, 882)
    assert check.value == pytest.approx(0.98413, abs=1e-5)
    # Wilson's 95% interval for 868 / 882 (by hand: centre 0.98203, half-width 0.00849).
    assert (check.low, check.high) == pytest.approx((0.97353, 0.99052), abs=1e-4)
    assert not check.met and check.goal_inside_interval
    assert check.verdict == "not met (goal inside the interval)"


def test_a_share_far_under_an_upper_goal_is_met_outright() -> None:
    check = share_check(Target("clean posts sent to review", 0.01, at_most=True), 0, 2800)
    assert check.met and not check.goal_inside_interval and check.verdict == "met"
    assert check.low == 0.0 and check.high < 0.002
    over = share_check(Target("clean posts sent to review", 0.01, at_most=True), 60, 2800)
    assert not over.met and not over.goal_inside_interval and over.verdict == "not met"
    assert target_table([check, over], "demo").row_count == 2


def test_bootstrap_interval_brackets_the_figure_and_repeats_with_the_seed() -> None:
    rng = np.random.default_rng(5)
    y = rng.random(600) < 0.2
    scores = y * 0.8 + rng.normal(0.0, 0.5, 600)  # AUC about 0.87
    target = Target("AUC", 0.90)
    check = bootstrap_check(target, _auc, y, scores, resamples=400)
    assert check.low < check.value < check.high
    assert 0.03 < check.high - check.low < 0.15  # a few hundred rows: a few points wide
    assert check == bootstrap_check(target, _auc, y, scores, resamples=400)
    assert check.n == 600 and check.met == (check.value >= 0.90)


def test_every_resample_keeps_the_class_counts() -> None:
    # Stratified: a statistic that reads the labels sees the same positives every time,
    # so even 3 positives in 200 rows give an AUC in every resample.
    y = np.zeros(200, dtype=int)
    y[:3] = 1
    scores = np.linspace(0.0, 1.0, 200)
    prevalence = bootstrap_check(
        Target("positives", 0.0), lambda yy, _s: float(yy.mean()), y, scores, resamples=200
    )
    assert prevalence.low == prevalence.high == pytest.approx(3 / 200)
    auc = bootstrap_check(Target("AUC", 0.5), _auc, y, scores, resamples=200)
    assert np.isfinite([auc.low, auc.high]).all()
