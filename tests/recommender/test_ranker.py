"""Heuristic until trained; DeepFM trained on simulated logs, served from ONNX."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

import core.storage.tables  # noqa: F401
import recommender.tables  # noqa: F401
from core.artifacts import CONFIG_FILE
from core.errors import InvalidConfig, ModelLoadFailed, ModelNotAvailable
from core.registry import rankers, resolve
from core.storage.db import Base, make_engine, make_session_factory
from core.storage.items import ItemStore
from recommender import deepfm
from recommender.features import CATEGORICAL_FIELDS, DENSE_FEATURES, FeatureBatch
from recommender.ranking import (
    DEEPFM,
    HEURISTIC,
    MODEL_FILE,
    HeuristicRanker,
    OnnxRanker,
    load_ranker,
)
from recommender.service import Recommender
from recommender.settings import RecommenderSettings
from recommender.simulation import SimulatedUser, SyntheticWorld
from recommender.simulation.harness import run_user

T0 = datetime(2025, 3, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """A database holding a simulated population's feed impressions and responses."""
    root = tmp_path_factory.mktemp("ranker")
    engine = make_engine(f"sqlite:///{root / 'db.sqlite'}")
    Base.metadata.create_all(engine)
    sessions = make_session_factory(engine)
    world = SyntheticWorld(n_items=400, n_categories=8, dim=16, seed=2,
                           start=T0 - timedelta(days=10), hours=240)
    world.write_to_db(sessions)
    now = [T0.timestamp()]
    # Logged with a half-exploring policy: outcomes then vary with the features, as a
    # ranker trained from logs needs (a feed that already ranks well logs few misses).
    settings = RecommenderSettings(index_dir=root / "index", model_dir=root / "model",
                                   exploration_epsilon=0.5, background_refits=False)
    rec = Recommender.open(sessions, settings, ItemStore(sessions), clock=lambda: now[0])

    def advance(seconds: float) -> None:
        now[0] += seconds

    for n in range(20):
        run_user(rec, SimulatedUser(f"u{n}", world, seed=n), world, advance, min_events=90)
    yield rec, sessions, settings, root
    engine.dispose()


def test_heuristic_ranks_until_a_model_is_trained(logged):
    rec, _, settings, _ = logged
    assert not (settings.model_dir / CONFIG_FILE).exists()
    response = rec.feed.feed("u1", 5)
    assert (response.ranker.name, response.ranker.version) == (HEURISTIC, "2")
    assert isinstance(load_ranker(settings), HeuristicRanker)
    with pytest.raises(ModelNotAvailable, match="train ranker"):
        resolve(rankers, DEEPFM)(settings)
    with pytest.raises(InvalidConfig, match="known names"):
        resolve(rankers, "reelsift.ranker.nope.v1")


def test_heuristic_prefers_relevant_items():
    n = 2
    dense = np.zeros((n, len(DENSE_FEATURES)), np.float32)
    dense[0, DENSE_FEATURES.index("cosine")] = 0.9
    dense[0, DENSE_FEATURES.index("tag_affinity")] = 0.5
    dense[1, DENSE_FEATURES.index("bounce_rate")] = 0.8
    batch = FeatureBatch(["a", "b"], dense, np.zeros((n, len(CATEGORICAL_FIELDS)), np.int64),
                         np.zeros(n, np.float32))
    scores = HeuristicRanker().score(batch)
    assert scores[0] > 0 > scores[1]


def test_training_rows_replay_the_log(logged):
    rec, sessions, settings, _ = logged
    events = deepfm.logged_events(sessions)
    rows = deepfm.training_rows(events, rec.catalog, settings)
    pairs = {(e.user_id, e.item_id) for e in events if e.type == "impression"}
    assert len(rows) == len(pairs)
    assert 0.05 < rows.completion.mean() < 0.9 and 0 < rows.like.mean() < 0.5
    # the first impression of each user comes before any feedback: a cold profile
    cold = rows.dense[:, DENSE_FEATURES.index("user_cold")]
    assert cold.max() == 1.0 and cold.min() == 0.0
    assert rows.dense[:, DENSE_FEATURES.index("channel_count")].max() >= 1


def test_deepfm_learns_and_onnx_serves_the_same_scores(logged, tmp_path):
    rec, sessions, settings, _ = logged
    rows = deepfm.training_rows(deepfm.logged_events(sessions), rec.catalog, settings)
    model, report = deepfm.train(rows, epochs=6, seed=0)
    assert report.valid_auc["completion"] is not None
    assert report.valid_auc["completion"] > 0.65, report
    version = deepfm.export(model, tmp_path, report)
    manifest = json.loads((tmp_path / CONFIG_FILE).read_text())
    assert manifest["version"] == version and manifest["name"] == DEEPFM
    assert (manifest["kind"], manifest["format"]) == ("recommender.ranker", 1)

    served = OnnxRanker(tmp_path, completion_weight=0.6, like_weight=0.4)
    sample = slice(0, 300)
    batch = FeatureBatch([str(i) for i in range(300)], rows.dense[sample],
                         rows.categorical[sample], np.zeros(300, np.float32))
    onnx_heads = served.heads(batch)
    torch_heads = deepfm.torch_scores(model, rows.dense[sample], rows.categorical[sample])
    for head in ("completion", "like"):
        np.testing.assert_allclose(onnx_heads[head], torch_heads[head], atol=1e-5)
    np.testing.assert_allclose(
        served.score(batch), 0.6 * torch_heads["completion"] + 0.4 * torch_heads["like"],
        atol=1e-5)


def test_trained_ranker_is_picked_up_and_named_in_responses(logged):
    rec, sessions, settings, _ = logged
    version, report = deepfm.train_from_log(sessions, settings, epochs=2)
    assert report.rows > 0
    info = rec.reload_ranker()
    assert (info.name, info.version) == (DEEPFM, version)
    response = rec.feed.feed("u3", 10)
    assert response.ranker.name == DEEPFM and response.ranker.version == version
    assert len(response.items) == 10
    assert isinstance(resolve(rankers, DEEPFM)(settings), OnnxRanker)


def test_a_changed_or_old_ranker_is_refused_with_what_to_do(logged, tmp_path):
    rec, sessions, settings, _ = logged
    rows = deepfm.training_rows(deepfm.logged_events(sessions), rec.catalog, settings)
    model, report = deepfm.train(rows, epochs=1, seed=0)
    deepfm.export(model, tmp_path, report)
    with (tmp_path / MODEL_FILE).open("ab") as handle:
        handle.write(b"\0")  # the model file no longer matches its config
    with pytest.raises(ModelLoadFailed, match="bytes"):
        OnnxRanker(tmp_path, completion_weight=0.6, like_weight=0.4)
    old = tmp_path / "old"
    old.mkdir()
    (old / "ranker.json").write_text(json.dumps({"name": DEEPFM, "version": "x"}))
    with pytest.raises(ModelLoadFailed, match="train ranker"):
        OnnxRanker(old, completion_weight=0.6, like_weight=0.4)
