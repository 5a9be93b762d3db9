"""Measuring a classifier on labeled examples.

- tier-1 accuracy: the top tier-1 node (highest confidence, thresholds aside) is one of
  the item's gold tier-1 categories;
- hierarchical precision / recall / F1 (micro): returned labels against the gold labels,
  both ancestor-augmented, so a near miss under the right parent still earns credit;
- coverage: the share of items with at least one label;
- a tier-1 confusion table (gold's first tier-1 vs predicted), printable and plottable.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from taxonomy.classifier import TaxonomyClassifier
from taxonomy.dataset import LabeledExample


@dataclass
class EvaluationReport:
    items: int
    tier1_accuracy: float
    hierarchical_precision: float
    hierarchical_recall: float
    hierarchical_f1: float
    coverage: float
    mean_labels: float
    confusion_labels: list[str]
    confusion: np.ndarray  # (k, k): rows gold, columns predicted

    def summary(self) -> dict[str, float | int]:
        return {
            "items": self.items,
            "tier1_accuracy": round(self.tier1_accuracy, 4),
            "hierarchical_precision": round(self.hierarchical_precision, 4),
            "hierarchical_recall": round(self.hierarchical_recall, 4),
            "hierarchical_f1": round(self.hierarchical_f1, 4),
            "coverage": round(self.coverage, 4),
            "mean_labels": round(self.mean_labels, 2),
        }


def evaluate(
    classifier: TaxonomyClassifier,
    examples: Sequence[LabeledExample],
    text_vectors: np.ndarray | None = None,
) -> EvaluationReport:
    """Scores ``examples`` (embedding them unless ``text_vectors`` are given), their texts
    read by the heads' word head too, as served items are."""
    from sklearn.metrics import confusion_matrix

    if text_vectors is None:
        if classifier.text_embedder is None:
            raise ValueError("evaluation needs text vectors or a classifier with a text embedder")
        text_vectors = classifier.text_embedder.encode([e.text for e in examples])
    confidence = classifier.scores(text_vectors, texts=[e.text for e in examples]).confidence
    predicted = classifier.labels_from_confidence(confidence)
    tree = classifier.tree
    arrays = tree.arrays
    roots = np.flatnonzero(arrays.tier == 1)
    top_root = [tree.ids[c] for c in roots[np.argmax(confidence[:, roots], axis=1)]]

    correct = 0
    overlap = n_pred = n_gold = 0
    gold_first: list[str] = []
    pred_first: list[str] = []
    for example, labels, top in zip(examples, predicted, top_root, strict=True):
        gold = tree.with_ancestors(example.node_ids)
        gold_roots = [n for n in gold if tree.get(n).tier == 1]
        hit = top in gold_roots
        correct += hit
        # A correct prediction counts against its own gold root when an item has several.
        gold_first.append(tree.get(top if hit else sorted(gold_roots)[0]).name)
        pred_first.append(tree.get(top).name)
        got = {label.id for label in labels}
        overlap += len(got & gold)
        n_pred += len(got)
        n_gold += len(gold)
    n = len(examples)
    precision = overlap / n_pred if n_pred else 0.0
    recall = overlap / n_gold if n_gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    names = sorted(set(gold_first) | set(pred_first))
    matrix = confusion_matrix(gold_first, pred_first, labels=names)
    return EvaluationReport(
        items=n,
        tier1_accuracy=correct / n if n else 0.0,
        hierarchical_precision=precision,
        hierarchical_recall=recall,
        hierarchical_f1=f1,
        coverage=sum(1 for labels in predicted if labels) / n if n else 0.0,
        mean_labels=sum(len(labels) for labels in predicted) / n if n else 0.0,
        confusion_labels=names,
        confusion=matrix,
    )


def plot_confusion(report: EvaluationReport, path: str | Path, title: str = "") -> Path:
    """Writes the tier-1 confusion matrix as a PNG (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    size = max(6.0, 0.45 * len(report.confusion_labels) + 3)
    fig, ax = plt.subplots(figsize=(size, size))
    try:
        ConfusionMatrixDisplay(report.confusion, display_labels=report.confusion_labels).plot(
            ax=ax, xticks_rotation="vertical", colorbar=False, cmap="Blues"
        )
        ax.set_title(title or f"tier-1 confusion (accuracy {report.tier1_accuracy:.3f})")
        fig.tight_layout()
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)
    return path
