"""Validation figures, all from ``sklearn.metrics``, computed on held-out rows only."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    brier_score_loss,
    f1_score,
    precision_recall_curve,
    roc_auc_score,
)

# The thresholds the encoder experiments (scripts/*risk_encoder*.py) try on probabilities.
PROBABILITY_GRID = np.linspace(0.02, 0.98, 97)


def precision_at_recall(y_true: np.ndarray, scores: np.ndarray, recall: float) -> float:
    """Best precision among operating points whose recall is at least ``recall``."""
    precision, achieved, _ = precision_recall_curve(y_true, scores)
    ok = achieved >= recall
    return float(precision[ok].max()) if ok.any() else 0.0


def recall_at_precision(y_true: np.ndarray, scores: np.ndarray, precision: float) -> float:
    achieved, recall, _ = precision_recall_curve(y_true, scores)
    ok = achieved >= precision
    return float(recall[ok].max()) if ok.any() else 0.0


def threshold_for_recall(y_true: np.ndarray, scores: np.ndarray, recall: float) -> float:
    """The highest score threshold that still reaches ``recall`` (an operating point)."""
    _, achieved, thresholds = precision_recall_curve(y_true, scores)
    ok = np.flatnonzero(achieved[:-1] >= recall)
    return float(thresholds[ok].max()) if ok.size else float(thresholds.min())


def best_macro_f1_threshold(
    y_true: np.ndarray, scores: np.ndarray, candidates: np.ndarray | None = None
) -> float:
    """The threshold with the best macro-F1 on these rows (choose it on calibration rows,
    apply it to test rows); ``candidates`` defaults to 197 quantiles of the scores."""
    if candidates is None:
        candidates = np.unique(np.quantile(scores, np.linspace(0.01, 0.99, 197)))
    f1s = [f1_score(y_true, scores >= t, average="macro") for t in candidates]
    return float(candidates[int(np.argmax(f1s))])


def held_out_figures(
    y_calib: np.ndarray, calib_scores: np.ndarray, y_test: np.ndarray, test_scores: np.ndarray,
    candidates: np.ndarray | None = None,
) -> dict[str, float]:
    """One score's test figures, its macro-F1 threshold chosen on the calibration rows."""
    threshold = best_macro_f1_threshold(y_calib, calib_scores, candidates)
    return {
        "auc": round(float(roc_auc_score(y_test, test_scores)), 4),
        "macro_f1_at_calib_threshold": round(float(
            f1_score(y_test, test_scores >= threshold, average="macro")), 4),
        "calib_threshold": round(threshold, 4),
        "precision_at_recall_0.95": round(precision_at_recall(y_test, test_scores, 0.95), 4),
        "recall_at_precision_0.50": round(recall_at_precision(y_test, test_scores, 0.50), 4),
        "accuracy_at_0.5": round(float(np.mean((test_scores >= 0.5) == y_test)), 4),
    }


def expected_calibration_error(y_true: np.ndarray, probs: np.ndarray, bins: int = 10) -> float:
    """Mean |observed rate - mean predicted| over equal-width bins, weighted by bin size."""
    y_true = np.asarray(y_true, dtype=np.float64)
    probs = np.asarray(probs, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(probs, edges[1:-1]), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            total += mask.sum() * abs(y_true[mask].mean() - probs[mask].mean())
    return float(total / max(len(probs), 1))


def binary_report(
    y_true: np.ndarray, probs: np.ndarray, threshold: float = 0.5
) -> dict[str, float | int | None]:
    """Figures of one score on one labelled set; ranking figures are ``None`` when the
    set holds one class only (a clean dev set: only its flag rate means anything)."""
    y_true = np.asarray(y_true)
    probs = np.asarray(probs, dtype=np.float64)
    single_class = len(np.unique(y_true)) < 2
    return {
        "n": len(y_true),
        "positives": int(y_true.sum()),
        "roc_auc": None if single_class else float(roc_auc_score(y_true, probs)),
        "precision_at_recall_0.95": None if single_class else precision_at_recall(
            y_true, probs, 0.95
        ),
        "recall_at_precision_0.50": None if single_class else recall_at_precision(
            y_true, probs, 0.50
        ),
        "accuracy_at_threshold": float(accuracy_score(y_true, probs >= threshold)),
        "threshold": float(threshold),
        "brier": float(brier_score_loss(y_true, probs, labels=[0, 1])),
        "ece": expected_calibration_error(y_true, probs),
    }


def ranking_report(y_true: np.ndarray, logits: np.ndarray) -> dict[str, float]:
    """Figures for an uncalibrated baseline given as logits (its own decision at 0)."""
    y_true = np.asarray(y_true)
    return {
        "roc_auc": float(roc_auc_score(y_true, logits)),
        "precision_at_recall_0.95": precision_at_recall(y_true, logits, 0.95),
        "recall_at_precision_0.50": recall_at_precision(y_true, logits, 0.50),
        "accuracy_at_threshold": float(accuracy_score(y_true, np.asarray(logits) >= 0.0)),
    }
