"""Turning node similarities into calibrated probabilities, per tier.

Features per node (after the skip-connection lift): its per-item z-score across all nodes,
and its margin below the best of its siblings. A logistic model per tier maps them to
the probability that the node is in the item's ancestor-augmented label set. The
coefficients are fitted on labeled data (``fit_calibration``) and stored as JSON; the
project ships a fit for all-MiniLM-L6-v2 on ``data/train`` (regenerate with
``uv run python -m taxonomy.calibration``). Because the features are z-scores, that fit
is also the fallback for models without their own (a CLIP model for images, say).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import InvalidConfig
from taxonomy.hierarchy import sibling_best, standardise_rows
from taxonomy.tree import DATA_DIR, TreeArrays

log = logging.getLogger(__name__)

SHIPPED_CALIBRATION = DATA_DIR / "zero_shot_calibration.json"
FORMAT = "reelsift.taxonomy_calibration.v1"


@dataclass(frozen=True)
class TierCoefficients:
    z: float
    margin: float
    bias: float


# Used where no fit exists for the tree (custom trees before `train`): the best of its
# siblings one standard deviation above the mean gets 0.5, a sibling one standard
# deviation behind it about 0.05. Small trees have small z-scores, hence the low bar.
UNFITTED = TierCoefficients(z=1.0, margin=3.0, bias=-1.0)


@dataclass
class Calibration:
    """Per-tier logistic coefficients; tiers without their own use the deepest fitted one."""

    tiers: dict[int, TierCoefficients]
    model: str = "unfitted"
    fitted_on: dict[str, Any] = field(default_factory=dict)

    def coefficient_arrays(self, arrays: TreeArrays) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        z = np.empty(len(arrays.tier), dtype=np.float32)
        margin = np.empty_like(z)
        bias = np.empty_like(z)
        for tier in range(1, arrays.max_tier + 1):
            coef = self.for_tier(tier)
            mask = arrays.tier == tier
            z[mask], margin[mask], bias[mask] = coef.z, coef.margin, coef.bias
        return z, margin, bias

    def for_tier(self, tier: int) -> TierCoefficients:
        if tier in self.tiers:
            return self.tiers[tier]
        known = [t for t in self.tiers if t <= tier] or list(self.tiers)
        return self.tiers[max(known)] if known else UNFITTED

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "model": self.model,
            "fitted_on": self.fitted_on,
            "tiers": {str(t): vars(c) for t, c in sorted(self.tiers.items())},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        if data.get("format") != FORMAT:
            raise InvalidConfig(f"calibration format {data.get('format')!r} is not {FORMAT!r}")
        tiers = {int(t): TierCoefficients(**c) for t, c in data["tiers"].items()}
        return cls(tiers=tiers, model=str(data.get("model")), fitted_on=dict(data["fitted_on"]))


def calibration_features(lifted: np.ndarray, arrays: TreeArrays) -> tuple[np.ndarray, np.ndarray]:
    z = standardise_rows(lifted)
    margin = z - sibling_best(z, arrays)
    return z, margin


def logits(lifted: np.ndarray, arrays: TreeArrays, calibration: Calibration) -> np.ndarray:
    z, margin = calibration_features(lifted, arrays)
    cz, cm, cb = calibration.coefficient_arrays(arrays)
    out: np.ndarray = z * cz + margin * cm + cb
    return out


def fit_calibration(
    lifted: np.ndarray,
    targets: np.ndarray,
    arrays: TreeArrays,
    model: str,
    min_positives: int = 10,
    fitted_on: dict[str, Any] | None = None,
) -> Calibration:
    """Fits one logistic model per tier. ``targets`` is ``(n, N)`` bool (ancestor-augmented)."""
    from sklearn.linear_model import LogisticRegression

    z, margin = calibration_features(lifted, arrays)
    tiers: dict[int, TierCoefficients] = {}
    for tier in range(1, arrays.max_tier + 1):
        cols = np.flatnonzero(arrays.tier == tier)
        y = targets[:, cols].ravel()
        if int(y.sum()) < min_positives or int((~y).sum()) < min_positives:
            continue
        features = np.stack([z[:, cols].ravel(), margin[:, cols].ravel()], axis=1)
        model_fit = LogisticRegression(C=1.0, max_iter=1000).fit(features, y)
        tiers[tier] = TierCoefficients(
            z=float(model_fit.coef_[0][0]),
            margin=float(model_fit.coef_[0][1]),
            bias=float(model_fit.intercept_[0]),
        )
    if not tiers:
        raise InvalidConfig(
            f"too few labeled examples to calibrate: need {min_positives} positives in a tier"
        )
    return Calibration(tiers=tiers, model=model, fitted_on=dict(fitted_on or {}))


def load_calibrations(path: Path = SHIPPED_CALIBRATION) -> dict[str, Calibration]:
    """The shipped calibrations by model name; empty when the file is absent."""
    if not path.exists():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return {name: Calibration.from_dict(entry) for name, entry in data.items()}


def calibration_for(
    model_name: str, tree_name: str, path: Path = SHIPPED_CALIBRATION
) -> Calibration:
    """The fit for this model on this tree, else another model's fit on this tree, else the
    unfitted default (z-score scales depend on the tree's size, so fits do not cross trees).
    """
    same_tree = {
        name: cal
        for name, cal in load_calibrations(path).items()
        if str(cal.fitted_on.get("tree_version", "")).split(":")[0] == tree_name
    }
    if model_name in same_tree:
        return same_tree[model_name]
    if same_tree:
        fallback = next(iter(same_tree.values()))
        log.info("no taxonomy calibration for %s; using the %s fit", model_name, fallback.model)
        return fallback
    log.info("no taxonomy calibration for tree %s; confidences use the unfitted default "
             "until `reelsift train taxonomy` fits one", tree_name)
    return Calibration(tiers={1: UNFITTED})


def save_calibrations(calibrations: Sequence[Calibration], path: Path) -> None:
    body = {c.model: c.to_dict() for c in calibrations}
    path.write_text(json.dumps(body, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _regenerate_shipped() -> None:
    """Refits the shipped all-MiniLM-L6-v2 calibration on ``data/train/labeled.jsonl``."""
    import tempfile

    from analyzers.model_registry import ModelRegistry
    from analyzers.text_embedding import make_onnx_text_embedder
    from taxonomy.classifier import TaxonomyClassifier
    from taxonomy.dataset import read_labeled_jsonl
    from taxonomy.tree import TaxonomyTree

    cache = Path(tempfile.gettempdir()) / "reelsift-taxonomy-cache"
    embedder = make_onnx_text_embedder(ModelRegistry(), cache, threads=1)
    tree = TaxonomyTree.default()
    examples = read_labeled_jsonl(DATA_DIR / "train" / "labeled.jsonl", tree)
    classifier = TaxonomyClassifier(tree, embedder, cache_dir=cache)
    vectors = embedder.encode([e.text for e in examples])
    calibration = classifier.fit_calibration(vectors, [e.node_ids for e in examples])
    save_calibrations([calibration], SHIPPED_CALIBRATION)
    print(json.dumps(calibration.to_dict(), indent=2))


if __name__ == "__main__":
    _regenerate_shipped()
