"""Rankers: score candidates from their features; registered under versioned names.

``reelsift.ranker.heuristic.v1`` ranks until a model has been trained. It is a fixed,
documented blend (weights in ``HEURISTIC_WEIGHTS``): relevance to the user (cosine to the
user vector, tag/category/creator affinity, followed creator, the best channel score),
a little popularity and freshness, minus the bounce rate.

``reelsift.ranker.deepfm.v1`` serves the DeepFM model trained by
``recommender.deepfm.train_ranker`` from ONNX with onnxruntime; its two heads (completion,
like) are combined with ``completion_weight`` and ``like_weight`` from settings, so the
blend changes without retraining. ``auto`` (the default setting) picks the trained model
when ``model_dir`` holds one, the heuristic otherwise. Every feed response names the
ranker and its version.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from pydantic import BaseModel

from core.errors import ModelLoadFailed, ModelNotAvailable
from core.registry import rankers, resolve
from recommender.features import CATEGORICAL_FIELDS, DENSE_FEATURES, FeatureBatch
from recommender.settings import RecommenderSettings

HEURISTIC = "reelsift.ranker.heuristic.v1"
DEEPFM = "reelsift.ranker.deepfm.v1"
MODEL_FILE = "model.onnx"
MANIFEST_FILE = "ranker.json"

HEURISTIC_WEIGHTS: dict[str, float] = {
    "cosine": 0.30,
    "tag_affinity": 0.20,
    "category_affinity": 0.15,
    "creator_affinity": 0.10,
    "followed": 0.10,
    "channel_best": 0.10,
    "popularity": 0.05,  # tanh(log1p(positives) / 5)
    "freshness": 0.05,
    "bounce_rate": -0.20,
}


class RankerInfo(BaseModel):
    name: str
    version: str


class Ranker(Protocol):
    info: RankerInfo

    def score(self, batch: FeatureBatch) -> np.ndarray: ...


class HeuristicRanker:
    def __init__(self) -> None:
        self.info = RankerInfo(name=HEURISTIC, version="1")

    def score(self, batch: FeatureBatch) -> np.ndarray:
        w = HEURISTIC_WEIGHTS
        cosine = np.maximum(batch.column("cosine"), 0.0)
        popularity = np.tanh(batch.column("log_popularity") / 5.0)
        return (
            w["cosine"] * cosine
            + w["tag_affinity"] * batch.column("tag_affinity")
            + w["category_affinity"] * batch.column("category_affinity")
            + w["creator_affinity"] * batch.column("creator_affinity")
            + w["followed"] * batch.column("followed")
            + w["channel_best"] * batch.channel_best
            + w["popularity"] * popularity
            + w["freshness"] * batch.column("freshness")
            + w["bounce_rate"] * batch.column("bounce_rate")
        ).astype(np.float32)


class OnnxRanker:
    """A trained two-head ranker served with onnxruntime."""

    def __init__(self, model_dir: Path, completion_weight: float, like_weight: float) -> None:
        manifest_path = model_dir / MANIFEST_FILE
        if not manifest_path.exists():
            raise ModelNotAvailable(
                f"no trained ranker in {model_dir}: run `reelsift train ranker` first",
                model_dir=str(model_dir),
            )
        manifest = json.loads(manifest_path.read_text())
        if list(manifest.get("dense_features", [])) != list(DENSE_FEATURES) or list(
            manifest.get("categorical_fields", [])
        ) != list(CATEGORICAL_FIELDS):
            raise ModelLoadFailed(
                f"ranker in {model_dir} was trained on another feature layout; retrain it",
                model_dir=str(model_dir),
            )
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # candidates are few; threads cost more than they save
        options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(
                str(model_dir / MODEL_FILE), options, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise ModelLoadFailed(f"cannot load ranker model: {exc}") from exc
        self.manifest = manifest
        self.completion_weight = completion_weight
        self.like_weight = like_weight
        self.info = RankerInfo(name=str(manifest.get("name", DEEPFM)),
                               version=str(manifest["version"]))

    def heads(self, batch: FeatureBatch) -> dict[str, np.ndarray]:
        completion, like = self.session.run(
            ["completion", "like"],
            {"dense": batch.dense.astype(np.float32),
             "categorical": batch.categorical.astype(np.int64)},
        )
        return {"completion": np.asarray(completion).reshape(-1),
                "like": np.asarray(like).reshape(-1)}

    def score(self, batch: FeatureBatch) -> np.ndarray:
        if len(batch.item_ids) == 0:
            return np.zeros(0, np.float32)
        heads = self.heads(batch)
        return (self.completion_weight * heads["completion"]
                + self.like_weight * heads["like"]).astype(np.float32)


@rankers.register(HEURISTIC)
def make_heuristic_ranker(settings: RecommenderSettings | None = None) -> Ranker:
    return HeuristicRanker()


@rankers.register(DEEPFM)
def make_deepfm_ranker(settings: RecommenderSettings) -> Ranker:
    return OnnxRanker(settings.model_dir, settings.completion_weight, settings.like_weight)


def load_ranker(settings: RecommenderSettings) -> Ranker:
    """The configured ranker; ``auto`` falls back to the heuristic until one is trained."""
    if settings.ranker == "auto":
        if (settings.model_dir / MANIFEST_FILE).exists():
            return make_deepfm_ranker(settings)
        return HeuristicRanker()
    factory: Any = resolve(rankers, settings.ranker)
    ranker: Ranker = factory(settings)
    return ranker
