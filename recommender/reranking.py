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

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from recommender.catalog import Catalog
from recommender.profiles import UserProfile
from recommender.settings import RecommenderSettings

EXPLORATION = "exploration"
VectorLookup = Callable[[list[str]], tuple[list[str], np.ndarray]]


@dataclass
class ScoredCandidate:
    item_id: str
    score: float
    channels: dict[str, float] = field(default_factory=dict)


@dataclass
class Pick:
    item_id: str
    score: float
    channels: dict[str, float]
    reason: str


def allowed(
    candidates: Sequence[ScoredCandidate], catalog: Catalog, profile: UserProfile | None,
    exclude: set[str],
) -> list[ScoredCandidate]:
    blocked = profile.excluded() if profile is not None else set()
    return [
        c for c in candidates
        if c.item_id in catalog and c.item_id not in exclude and c.item_id not in blocked
    ]


def collapse_near_duplicates(
    ranked: Sequence[ScoredCandidate], catalog: Catalog, threshold: float,
    lookup: VectorLookup | None = None,
) -> list[ScoredCandidate]:
    """Keep the best-scored item of each group of near-identical vectors."""
    ids = [c.item_id for c in ranked]
    found, vectors = (lookup or catalog.vectors)(ids)
    if len(found) < 2:
        return list(ranked)
    row_of = {item_id: r for r, item_id in enumerate(found)}
    sims = vectors @ vectors.T
    kept: list[ScoredCandidate] = []
    kept_rows: list[int] = []
    for cand in ranked:
        row = row_of.get(cand.item_id)
        if row is not None:
            if kept_rows and float(sims[row, kept_rows].max()) > threshold:
                continue
            kept_rows.append(row)
        kept.append(cand)
    return kept


def mmr_select(
    ranked: Sequence[ScoredCandidate], catalog: Catalog, k: int, *, lam: float,
    max_per_creator: int, max_per_category: int, lookup: VectorLookup | None = None,
) -> list[ScoredCandidate]:
    """Maximal marginal relevance with per-creator and per-category caps.

    When every remaining item breaks a cap the caps are lifted rather than returning
    fewer than ``k`` items.
    """
    if not ranked:
        return []
    n = len(ranked)
    scores = np.asarray([c.score for c in ranked], dtype=np.float64)
    spread = scores.max() - scores.min()
    relevance = (scores - scores.min()) / spread if spread > 0 else np.ones(n)
    found, vectors = (lookup or catalog.vectors)([c.item_id for c in ranked])
    row_of = {item_id: r for r, item_id in enumerate(found)}
    vec_rows = np.asarray([row_of.get(c.item_id, -1) for c in ranked])
    has_vec = vec_rows >= 0
    sims: np.ndarray = np.zeros((n, n))
    if len(found):
        full = np.zeros((n, vectors.shape[1]), dtype=np.float32)
        full[has_vec] = vectors[vec_rows[has_vec]]
        sims = full @ full.T
    max_sim = np.zeros(n)
    taken = np.zeros(n, dtype=bool)
    creators: Counter[str] = Counter()
    categories: Counter[str] = Counter()
    meta = [catalog.get(c.item_id) for c in ranked]
    picked: list[ScoredCandidate] = []
    while len(picked) < min(k, n):
        mmr = lam * relevance - (1 - lam) * max_sim
        mmr[taken] = -np.inf
        order = np.argsort(-mmr)
        choice = -1
        for idx in order:
            if taken[idx]:
                break
            item = meta[idx]
            if item is None:
                continue
            category = item.top_category
            if creators[item.creator_id] >= max_per_creator:
                continue
            if category is not None and categories[category] >= max_per_category:
                continue
            choice = int(idx)
            break
        if choice < 0:  # every remaining item breaks a cap
            remaining = np.flatnonzero(~taken)
            choice = int(remaining[np.argmax(mmr[remaining])])
        taken[choice] = True
        item = meta[choice]
        if item is not None:
            creators[item.creator_id] += 1
            if item.top_category is not None:
                categories[item.top_category] += 1
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
        tag_scores = [(profile.tags.get(t, now), f"#{t}") for t in item.tags]
        cat_scores = [
            (profile.categories.get(c, now), catalog.category_names.get(c, c))
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


def rerank(
    candidates: Sequence[ScoredCandidate], *, k: int, catalog: Catalog,
    profile: UserProfile | None, exclude: set[str], settings: RecommenderSettings,
    fresh: Sequence[str], rng: np.random.Generator, now: float,
    extra_reasons: Mapping[str, str] | None = None, lookup: VectorLookup | None = None,
) -> list[Pick]:
    pool = allowed(candidates, catalog, profile, exclude)
    pool.sort(key=lambda c: c.score, reverse=True)
    # MMR under caps picks k items from near the top; looking further only costs time.
    pool = pool[: max(10 * k, 100)]
    pool = collapse_near_duplicates(pool, catalog, settings.near_duplicate_cosine, lookup)
    picked = mmr_select(
        pool, catalog, k, lam=settings.mmr_lambda, max_per_creator=settings.max_per_creator,
        max_per_category=settings.max_per_category, lookup=lookup,
    )
    blocked = (profile.excluded() if profile is not None else set()) | exclude
    fresh_ok = [i for i in fresh if i in catalog and i not in blocked]
    picked = explore(picked, fresh_ok, settings.exploration_epsilon, rng)
    return [
        Pick(c.item_id, float(c.score), dict(c.channels),
             (extra_reasons or {}).get(c.item_id) or reason_for(c, catalog, profile, now))
        for c in picked
    ]
