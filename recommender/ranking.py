"""Rankers: score candidates from their features; registered under versioned names.

``reelsift.ranker.heuristic.v1`` ranks until a model has been trained. It is a fixed,
documented blend (``settings.weights``, see ``HeuristicRanker``): each proposing channel
by the candidate's rank in it (collaborative channels first), a little content affinity,
popularity and freshness, minus the bounce rate.

``reelsift.ranker.deepfm.v1`` serves the DeepFM model trained by
``recommender.deepfm.train_ranker`` from ONNX with onnxruntime; its two heads (completion,
like) are combined with ``completion_weight`` and ``like_weight`` from settings, so the
blend changes without retraining. ``auto`` (the default setting) picks the trained model
when ``model_dir`` holds one, the heuristic otherwise. Every feed response names the
ranker and its version.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np
from pydantic import BaseModel

from core.artifacts import CONFIG_FILE, ArtifactKind
from core.errors import ModelLoadFailed
from core.registry import rankers, resolve
from recommender.features import CATEGORICAL_FIELDS, DENSE_FEATURES, FeatureBatch
from recommender.settings import RankerWeights, RecommenderSettings

HEURISTIC = "reelsift.ranker.heuristic.v1"
DEEPFM = "reelsift.ranker.deepfm.v1"
MODEL_FILE = "model.onnx"
# The project's artifact convention (core.artifacts): config.json + model.onnx, hashed.
RANKER_ARTIFACT = ArtifactKind(
    name="recommender.ranker", format=1, description="trained ranker",
    make_with="reelsift train ranker",
)
LEGACY_MANIFEST_FILE = "ranker.json"  # what rankers were saved as before the convention


class RankerInfo(BaseModel):
    name: str
    version: str
    note: str | None = None  # e.g. why the heuristic ranks (too few events to learn from)


class Ranker(Protocol):
    info: RankerInfo

    def score(self, batch: FeatureBatch) -> np.ndarray: ...


class HeuristicRanker:
    """A fixed blend (``RankerWeights``): channels by rank, plus a little content.

    Each channel that proposed a candidate adds ``weight / (1 + rank / rank_constant)``:
    the collaborative channels (item kNN, ALS) carry most weight because what other
    users engaged with predicts engagement best once events exist; content channels
    and affinities rank for users and items without events. Content features are in
    [0, 1]; the bounce rate subtracts.
    """

    def __init__(self, weights: RankerWeights | None = None) -> None:
        self.weights = weights or RankerWeights()
        self.info = RankerInfo(name=HEURISTIC, version="2")

    def score(self, batch: FeatureBatch) -> np.ndarray:
        w = self.weights
        n = len(batch.item_ids)
        channel_part = np.zeros(n)
        if batch.channel_ranks is not None and batch.channel_names:
            per_channel = np.asarray([w.channels.get(c, 0.0) for c in batch.channel_names])
            channel_part = batch.channel_ranks @ per_channel
        cosine = np.maximum(batch.column("cosine"), 0.0)
        popularity = np.tanh(batch.column("log_popularity") / 5.0)
        return (
            channel_part
            + w.cosine * cosine
            + w.tag_affinity * batch.column("tag_affinity")
            + w.category_affinity * batch.column("category_affinity")
            + w.creator_affinity * batch.column("creator_affinity")
            + w.followed * batch.column("followed")
            + w.popularity * popularity
            + w.freshness * batch.column("freshness")
            + w.bounce_rate * batch.column("bounce_rate")
        ).astype(np.float32)


class OnnxRanker:
    """A trained two-head ranker served with onnxruntime."""

    def __init__(self, model_dir: Path, completion_weight: float, like_weight: float) -> None:
        if (model_dir / LEGACY_MANIFEST_FILE).exists() and not (model_dir / CONFIG_FILE).exists():
            raise ModelLoadFailed(
                f"the ranker in {model_dir} was saved by an older reelsift "
                f"({LEGACY_MANIFEST_FILE}); run `reelsift train ranker` again",
                model_dir=str(model_dir),
            )
        manifest = RANKER_ARTIFACT.read_config(model_dir)
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
    return HeuristicRanker(settings.weights if settings is not None else None)


@rankers.register(DEEPFM)
def make_deepfm_ranker(settings: RecommenderSettings) -> Ranker:
    return OnnxRanker(settings.model_dir, settings.completion_weight, settings.like_weight)


def load_ranker(settings: RecommenderSettings) -> Ranker:
    """The configured ranker; ``auto`` falls back to the heuristic until one is trained."""
    if settings.ranker == "auto":
        if any((settings.model_dir / name).exists()
               for name in (CONFIG_FILE, LEGACY_MANIFEST_FILE)):
            return make_deepfm_ranker(settings)
        return HeuristicRanker(settings.weights)
    factory: Any = resolve(rankers, settings.ranker)
    ranker: Ranker = factory(settings)
    return ranker
