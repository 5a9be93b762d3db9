"""Re-ranking: the rules a feed obeys whatever the ranker said.

In order: (1) drop what the user may not see again — items seen, hidden or reported,
items in the request's ``exclude`` list, anything no longer in the catalog; (2) collapse
near-duplicates (cosine of fused vectors above ``near_duplicate_cosine``: the higher-scored
copy stays); (3) pick the top k by MMR over item vectors (``mmr_lambda`` trades relevance
for difference from what is already picked) under caps per creator and per category;
(4) give each slot, with probability ``exploration_epsilon``, to a fresh item the user has
not seen (ε-greedy exploration); (5) attach each item's channels and a short reason.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from recommender.catalog import Catalog
from recommender.columns import MISSING
from recommender.profiles import UserProfile
from recommender.settings import RecommenderSettings

EXPLORATION = "exploration"
VectorLookup = Callable[[list[str]], tuple[list[str], np.ndarray]]


@dataclass
class ScoredCandidate:
    item_id: str
    score: float
    channels: Mapping[str, float] = field(default_factory=dict)


@dataclass
class Pick:
    item_id: str
    score: float
    channels: dict[str, float]
    reason: str


def allowed(
    candidates: Sequence[ScoredCandidate], catalog: Catalog, profile: UserProfile | None,
    exclude: set[str], blocked: set[str] | None = None,
) -> list[ScoredCandidate]:
    """``blocked``: what the profile excludes, if the caller already has it."""
    if blocked is None:
        blocked = profile.excluded() if profile is not None else set()
    items = catalog.items
    return [
        c for c in candidates
        if c.item_id in items and c.item_id not in exclude and c.item_id not in blocked
    ]


@dataclass
class PoolVectors:
    """The fused vectors of a list of candidates, in its order, and their cosines."""

    has_vector: np.ndarray  # (n,) bool
    cosines: np.ndarray  # (n, n); 0 where either item has no vector

    @classmethod
    def of(cls, ids: list[str], catalog: Catalog, lookup: VectorLookup | None) -> PoolVectors:
        n = len(ids)
        found, vectors = (lookup or catalog.vectors)(ids)
        if not len(found):
            return cls(np.zeros(n, dtype=bool), np.zeros((n, n), dtype=np.float32))
        if len(found) == n and found == ids:
            has = np.ones(n, dtype=bool)
            full = vectors
        else:
            row_of = {item_id: r for r, item_id in enumerate(found)}
            rows = np.asarray([row_of.get(i, -1) for i in ids])
            has = rows >= 0
            full = np.zeros((n, vectors.shape[1]), dtype=np.float32)
            full[has] = vectors[rows[has]]
        # One small product per request: with BLAS limited to one thread
        # (``serving_threads``) it takes microseconds, threaded it can take milliseconds.
        return cls(has, full @ full.T)

    def subset(self, keep: np.ndarray) -> PoolVectors:
        return PoolVectors(self.has_vector[keep], self.cosines[np.ix_(keep, keep)])


def collapse_near_duplicates(
    ranked: Sequence[ScoredCandidate], catalog: Catalog, threshold: float,
    lookup: VectorLookup | None = None, *, vectors: PoolVectors | None = None,
) -> list[ScoredCandidate]:
    """Keep the best-scored item of each group of near-identical vectors."""
    if len(ranked) < 2:
        return list(ranked)
    pool = vectors or PoolVectors.of([c.item_id for c in ranked], catalog, lookup)
    return [ranked[i] for i in _distinct(pool, threshold)]


def _distinct(pool: PoolVectors, threshold: float) -> np.ndarray:
    """Indices kept: an item goes when an earlier kept item is above ``threshold``."""
    n = len(pool.has_vector)
    near = (pool.cosines > threshold) & pool.has_vector[:, None] & pool.has_vector[None, :]
    near = np.triu(near, 1)  # near[i, j]: i before j and alike
    keep = np.ones(n, dtype=bool)
    # Only items with an earlier look-alike need the ordered pass (rare).
    for j in np.flatnonzero(near.any(axis=0)).tolist():
        if (near[:j, j] & keep[:j]).any():
            keep[j] = False
    return np.flatnonzero(keep)


def mmr_select(
    ranked: Sequence[ScoredCandidate], catalog: Catalog, k: int, *, lam: float,
    max_per_creator: int, max_per_category: int, lookup: VectorLookup | None = None,
    vectors: PoolVectors | None = None,
) -> list[ScoredCandidate]:
    """Maximal marginal relevance with per-creator and per-category caps.

    When every remaining item breaks a cap the caps are lifted rather than returning
    fewer than ``k`` items.
    """
    if not ranked:
        return []
    n = len(ranked)
    pool = vectors or PoolVectors.of([c.item_id for c in ranked], catalog, lookup)
    scores = np.asarray([c.score for c in ranked], dtype=np.float64)
    spread = scores.max() - scores.min()
    relevance = (scores - scores.min()) / spread if spread > 0 else np.ones(n)
    has_vec, sims = pool.has_vector, pool.cosines
    max_sim = np.zeros(n)
    taken = np.zeros(n, dtype=bool)
    # Caps as counts over small integer codes (the catalog's column codes of creator and
    # top category, compacted to 0..m-1), so eligibility is one vector expression.
    columns = catalog.columns
    slots = columns.slots([c.item_id for c in ranked])  # before reading the columns
    present = slots != MISSING
    creator = np.unique(columns.creator[slots], return_inverse=True)[1]
    top_category = columns.top_category[slots]
    uncategorised = ~present | (top_category < 0)
    category = np.unique(top_category, return_inverse=True)[1]
    per_creator = np.zeros(n, dtype=np.int64)
    per_category = np.zeros(n, dtype=np.int64)
    picked: list[ScoredCandidate] = []
    while len(picked) < min(k, n):
        mmr = lam * relevance - (1 - lam) * max_sim
        mmr[taken] = -np.inf
        order = np.argsort(-mmr)
        eligible = (
            ~taken & present & (per_creator[creator] < max_per_creator)
            & (uncategorised | (per_category[category] < max_per_category))
        )
        in_order = eligible[order]
        if in_order.any():  # the best by MMR that breaks no cap
            choice = int(order[int(np.argmax(in_order))])
        else:  # every remaining item breaks a cap
            remaining = np.flatnonzero(~taken)
            choice = int(remaining[np.argmax(mmr[remaining])])
        taken[choice] = True
        if present[choice]:
            per_creator[creator[choice]] += 1
            if not uncategorised[choice]:
                per_category[category[choice]] += 1
        if has_vec[choice]:
            max_sim = np.maximum(max_sim, sims[choice])
        picked.append(ranked[choice])
    return picked


def explore(
    picked: list[ScoredCandidate], fresh: Sequence[str], epsilon: float,
    rng: np.random.Generator,
) -> list[ScoredCandidate]:
    """ε-greedy: each slot independently goes to an unseen fresh item with prob ε."""
    if epsilon <= 0 or not fresh:
        return picked
    chosen = {c.item_id for c in picked}
    pool = [i for i in fresh if i not in chosen]
    rng.shuffle(pool)
    out = list(picked)
    for slot in range(len(out)):
        if pool and rng.random() < epsilon:
            out[slot] = ScoredCandidate(pool.pop(), 0.0, {EXPLORATION: 1.0})
    return out


REASON_PRIORITY = (
    "followed", "covisitation", "embedding", "tag_category", "cohort", "trending", "fresh",
    EXPLORATION,
)


def reason_for(
    candidate: ScoredCandidate, catalog: Catalog, profile: UserProfile | None, now: float,
) -> str:
    channels = candidate.channels
    if not channels:
        return "recommended for you"
    best = max(channels.items(), key=lambda kv: (kv[1], -REASON_PRIORITY.index(kv[0])
                                                  if kv[0] in REASON_PRIORITY else -99))[0]
    item = catalog.get(candidate.item_id)
    if best == "tag_category" and item is not None and profile is not None:
        as_of = profile.as_of(now)
        tag_scores = [(profile.tags.get(t, as_of), f"#{t}") for t in item.tags]
        cat_scores = [
            (profile.categories.get(c, as_of), catalog.category_names.get(c, c))
            for c, _ in item.categories
        ]
        top = max(tag_scores + cat_scores, default=(0.0, ""))
        if top[0] > 0:
            return f"because you watch {top[1]}"
    return {
        "followed": "new from a creator you follow",
        "covisitation": "watched together with videos you liked",
        "embedding": "similar to videos you liked",
        "tag_category": "matches your interests",
        "cohort": "popular with viewers like you",
        "trending": "trending now",
        "fresh": "new upload",
        EXPLORATION: "something new to explore",
    }.get(best, "recommended for you")


def pool_size(k: int) -> int:
    """MMR under caps picks k items from near the top; looking further only costs time."""
    return max(10 * k, 100)


def rerank(
    candidates: Sequence[ScoredCandidate], *, k: int, catalog: Catalog,
    profile: UserProfile | None, exclude: set[str], settings: RecommenderSettings,
    fresh: Sequence[str], rng: np.random.Generator, now: float,
    extra_reasons: Mapping[str, str] | None = None, lookup: VectorLookup | None = None,
    blocked: set[str] | None = None,
) -> list[Pick]:
    """``blocked``: what the profile excludes (seen, hidden, reported), if the caller
    already has it."""
    if blocked is None:
        blocked = profile.excluded() if profile is not None else set()
    pool = allowed(candidates, catalog, profile, exclude, blocked)
    pool.sort(key=lambda c: c.score, reverse=True)
    pool = pool[: pool_size(k)]
    vectors = PoolVectors.of([c.item_id for c in pool], catalog, lookup)
    distinct = _distinct(vectors, settings.near_duplicate_cosine)
    pool = [pool[i] for i in distinct]
    picked = mmr_select(
        pool, catalog, k, lam=settings.mmr_lambda, max_per_creator=settings.max_per_creator,
        max_per_category=settings.max_per_category, vectors=vectors.subset(distinct),
    )
    items = catalog.items
    fresh_ok = [i for i in fresh if i in items and i not in blocked and i not in exclude]
    picked = explore(picked, fresh_ok, settings.exploration_epsilon, rng)
    return [
        Pick(c.item_id, float(c.score), dict(c.channels),
             (extra_reasons or {}).get(c.item_id) or reason_for(c, catalog, profile, now))
        for c in picked
    ]
