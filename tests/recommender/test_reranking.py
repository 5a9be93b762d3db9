from __future__ import annotations

from datetime import timedelta

import numpy as np

from recommender.catalog import CatalogItem
from recommender.reranking import (
    EXPLORATION,
    ScoredCandidate,
    collapse_near_duplicates,
    mmr_select,
    rerank,
)


def _state(h, clock, tmp_path, **overrides):
    settings = h.make_settings(tmp_path, **overrides)
    items = []
    basis = np.eye(6, dtype=np.float32)
    for i in range(12):
        item = CatalogItem(f"i{i}", f"c{i % 3}", (h.T0 - timedelta(hours=i)).timestamp(),
                           tags=(f"t{i % 2}",), categories=((f"k{i % 4}", 0.9),))
        items.append((item, basis[i % 6] + 0.05 * i * basis[(i + 1) % 6]))
    return h.memory_state(items, settings, clock, dim=6)


def _cands(n=12):
    return [ScoredCandidate(f"i{i}", 1.0 - i / 100, {"trending": 1.0}) for i in range(n)]


def test_seen_hidden_reported_excluded_and_removed_never_return(h, clock, tmp_path):
    state = _state(h, clock, tmp_path, max_per_creator=10, max_per_category=10)
    state.apply(h.ev("u", "i0", "view", h.T0, watch_ms=5000, item_duration_ms=10000))
    state.apply(h.ev("u", "i1", "hide", h.T0))
    state.apply(h.ev("u", "i2", "report", h.T0))
    state.catalog.remove("i3")
    picks = rerank(_cands(), k=12, catalog=state.catalog, profile=state.profiles.get("u"),
                   exclude={"i4"}, settings=state.settings, fresh=["i0", "i1"],
                   rng=np.random.default_rng(0), now=clock())
    ids = {p.item_id for p in picks}
    assert ids and not ids & {"i0", "i1", "i2", "i3", "i4"}
    assert all(p.reason and p.channels for p in picks)


def test_near_duplicates_collapse_to_the_best_scored(h, clock, tmp_path):
    state = _state(h, clock, tmp_path)
    vec = state.catalog.index.vector("i0")
    state.catalog.add(CatalogItem("dup", "c9", h.T0.timestamp()), vec + 0.01)
    ranked = [ScoredCandidate("i0", 0.9), ScoredCandidate("dup", 0.95), ScoredCandidate("i1", 0.5)]
    kept = collapse_near_duplicates(ranked, state.catalog, 0.97)
    assert [c.item_id for c in kept] == ["i0", "i1"] or [c.item_id for c in kept] == ["dup", "i1"]
    ranked.sort(key=lambda c: -c.score)
    assert [c.item_id for c in collapse_near_duplicates(ranked, state.catalog, 0.97)] == [
        "dup", "i1"]


def test_mmr_diversifies_and_caps_creators_and_categories(h, clock, tmp_path):
    state = _state(h, clock, tmp_path)
    ranked = _cands()
    relevance_only = mmr_select(ranked, state.catalog, 6, lam=1.0, max_per_creator=99,
                                max_per_category=99)
    assert [c.item_id for c in relevance_only] == [f"i{i}" for i in range(6)]
    capped = mmr_select(ranked, state.catalog, 6, lam=1.0, max_per_creator=1,
                        max_per_category=99)
    creators = [state.catalog.get(c.item_id).creator_id for c in capped]
    assert len(set(creators[:3])) == 3  # three creators exist: caps lift only after that
    capped = mmr_select(ranked, state.catalog, 4, lam=1.0, max_per_creator=99,
                        max_per_category=1)
    assert len({state.catalog.get(c.item_id).top_category for c in capped}) == 4

    e = np.eye(6, dtype=np.float32)
    state.catalog.add(CatalogItem("a", "x1", 0.0), e[0])
    state.catalog.add(CatalogItem("b", "x2", 0.0), e[0] + 0.3 * e[1])  # cosine 0.96 to a
    state.catalog.add(CatalogItem("c", "x3", 0.0), e[2])
    trio = [ScoredCandidate("a", 1.0), ScoredCandidate("b", 0.99), ScoredCandidate("c", 0.5)]
    kw = {"max_per_creator": 9, "max_per_category": 9}
    assert [c.item_id for c in mmr_select(trio, state.catalog, 3, lam=1.0, **kw)] == [
        "a", "b", "c"]
    assert [c.item_id for c in mmr_select(trio, state.catalog, 3, lam=0.3, **kw)] == [
        "a", "c", "b"]


def test_exploration_gives_slots_to_fresh_items(h, clock, tmp_path):
    kwargs = {"k": 5, "profile": None, "exclude": set(), "fresh": ["i10", "i11"],
              "now": clock()}
    state = _state(h, clock, tmp_path, exploration_epsilon=1.0, max_per_creator=9,
                   max_per_category=9)
    picks = rerank(_cands(8), catalog=state.catalog, settings=state.settings,
                   rng=np.random.default_rng(0), **kwargs)
    explored = [p for p in picks if EXPLORATION in p.channels]
    assert {p.item_id for p in explored} == {"i10", "i11"}
    assert all(p.reason == "something new to explore" for p in explored)
    state.settings.exploration_epsilon = 0.0
    picks = rerank(_cands(8), catalog=state.catalog, settings=state.settings,
                   rng=np.random.default_rng(0), **kwargs)
    assert not any(EXPLORATION in p.channels for p in picks)
