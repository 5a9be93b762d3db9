"""Validation figures, all from ``sklearn.metrics``, computed on held-out rows only."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    brier_score_loss,
    precision_recall_curve,
    roc_auc_score,
)


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
