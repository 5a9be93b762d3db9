"""The self-training ranker: incremental updates, the promotion gate, versions, rollback."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from core.errors import Conflict
from core.storage.db import make_session_factory
from recommender.impressions import ImpressionLog
from recommender.online_ranker import (
    LEARNED_FEATURES,
    ONLINE,
    LinearRanker,
    RankerStore,
    RankerTrainer,
)
from recommender.ranking import HEURISTIC, HeuristicRanker
from recommender.simulation import SimulatedUser, SyntheticWorld
from recommender.simulation.harness import run_user

SIGNAL = LEARNED_FEATURES.index("completion_rate")  # the heuristic ignores it


def _serve(log: ImpressionLog, rng: np.random.Generator, n: int, start: int, *,
           inverted: bool = False) -> None:
    """``n`` served rows whose outcome follows the SIGNAL column (or its opposite)."""
    rows = rng.random((n, len(LEARNED_FEATURES))).astype(np.float32)
    items = [f"i{start + r}" for r in range(n)]
    log.record("u", items, rows, ts=float(start))
    for item, row in zip(items, rows, strict=True):
        clicked = (row[SIGNAL] + 0.2 * rng.normal()) > 0.5
        log.outcome("u", item, int(clicked != inverted))


def _trainer(h, tmp_path, **online):
    settings = h.make_settings(tmp_path, online_ranker={"min_rows": 200, **online})
    log = ImpressionLog(settings.online_ranker.outcome_window_seconds)
    store = RankerStore(tmp_path / "online")
    return RankerTrainer(settings, log, store, fallback=HeuristicRanker()), log, store


def test_learns_incrementally_promotes_only_a_better_model_and_rolls_back(h, tmp_path):
    trainer, log, store = _trainer(h, tmp_path, promote_margin=0.02)
    rng = np.random.default_rng(0)

    _serve(log, rng, 100, 0)
    first = trainer.update(now=0.0)
    assert first.promoted is None and "100 labelled rows < 200" in first.reason
    heuristic = trainer.serving()
    assert heuristic.info.name == HEURISTIC and "needs 200" in (heuristic.info.note or "")

    _serve(log, rng, 400, 100)
    promoted = trainer.update(now=0.0)
    assert promoted.promoted == 1, promoted
    assert promoted.candidate_metric > promoted.serving_metric + 0.02
    v1 = trainer.serving()
    assert isinstance(v1, LinearRanker) and v1.info.name == ONLINE and v1.info.version == "1"
    assert v1.coef[SIGNAL] == np.max(np.abs(v1.coef))  # it found the signal

    # more of the same: trained on (incremental), but no better by the margin: not promoted
    rows_before = promoted.trained_rows
    coef_before = v1.coef.copy()
    _serve(log, rng, 400, 500)
    same = trainer.update(now=0.0)
    assert same.trained_rows > rows_before and same.promoted is None, same
    assert not np.allclose(trainer._candidate().coef, coef_before)  # the update moved it
    assert trainer.serving().info.version == "1"

    # the world changes (outcomes flip): the serving model fails on the latest events and
    # a candidate that kept learning beats it
    for start in range(900, 4900, 500):
        _serve(log, rng, 500, start, inverted=True)
        changed = trainer.update(now=0.0)
        if changed.promoted is not None:
            break
    assert changed.promoted is not None and changed.serving_metric < 0.5, changed
    v2 = trainer.serving()
    assert v2.info.version == str(changed.promoted)
    assert [p["version"] for p in store.history()] == [1, changed.promoted]

    assert store.rollback() == 1
    assert trainer.serving().info.version == "1"
    assert store.rollback() is None
    assert trainer.serving().info.name == HEURISTIC
    with pytest.raises(LookupError):
        store.rollback()


def test_served_rows_score_the_same_as_the_features_they_were_ranked_on(h, tmp_path):
    trainer, log, store = _trainer(h, tmp_path)
    rng = np.random.default_rng(1)
    _serve(log, rng, 600, 0)
    assert trainer.update(now=0.0).promoted == 1
    loaded = store.load(1)
    rows = rng.random((50, len(LEARNED_FEATURES))).astype(np.float32)
    np.testing.assert_allclose(loaded.logits(rows), trainer.serving().logits(rows), rtol=1e-6)
    labels = rows[:, SIGNAL] > 0.5
    assert roc_auc_score(labels, loaded.logits(rows)) > 0.8


def test_feed_names_its_ranker_and_rollback_reaches_it(
        h, sqlite_engine, clock, open_recommender, tmp_path):
    world = SyntheticWorld(n_items=300, n_categories=6, dim=16, seed=3,
                           start=clock.dt - timedelta(days=5), hours=120)
    world.write_to_db(make_session_factory(sqlite_engine))
    rec, _ = open_recommender(sqlite_engine, clock, online_ranker={"min_rows": 50})
    first = rec.feed.feed("u0", 5)
    assert first.ranker.name == HEURISTIC and "0 labelled impressions" in first.ranker.note
    for n in range(6):
        run_user(rec, SimulatedUser(f"u{n}", world, seed=n), world, clock.advance,
                 min_events=30)
    assert rec.trainer is not None
    result = rec.update_ranker()
    assert result is not None and result.rows >= 50  # outcomes of served rows, labelled
    if result.promoted is None:  # the heuristic held: promote one by hand to test rollback
        rng = np.random.default_rng(0)
        dim = len(LEARNED_FEATURES)
        rec.trainer.store.promote(LinearRanker(1, np.zeros(dim), np.ones(dim),
                                               rng.normal(size=dim), 0.0), None, 0)
        rec.update_ranker()
    served = rec.feed.feed("u1", 5).ranker
    assert served.name == ONLINE and served.note is None
    version = served.version
    back = rec.rollback_ranker()
    assert back.name == HEURISTIC or back.version != version
    assert rec.feed.feed("u1", 5).ranker == back
    while rec.trainer.store.history():
        rec.rollback_ranker()
    with pytest.raises(Conflict):
        rec.rollback_ranker()
