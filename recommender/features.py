"""Ranking features of (user, item, context) and their crosses, in a fixed layout.

The same function builds features when serving and when building training rows from the
log, so a model sees at serving time exactly what it was trained on. Channels enter as
membership flags (was the item proposed by channel X), which the impression's
``context["channels"]`` records at training time.

Dense features (in order, ``DENSE_FEATURES``): cosine(user vector, item vector); tag,
category and creator affinity (tanh-squashed decayed profile scores summed over the
item's tags/categories); followed creator; log popularity; log trending; freshness
(exp(-age / 1 day)); bounce rate; completion rate; hour of day as sine/cosine; user
activity (log events); cold user flag; number of channels; one flag per channel.
Categorical fields (``CATEGORICAL_FIELDS``): device, hour, item top category (hashed).
"""

from __future__ import annotations

import functools
import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from recommender.catalog import CatalogItem
from recommender.profiles import UserProfile
from recommender.state import OnlineState

CHANNELS = (
    "embedding", "tag_category", "covisitation", "cohort", "trending", "fresh", "followed",
)
DENSE_FEATURES = (
    "cosine", "tag_affinity", "category_affinity", "creator_affinity", "followed",
    "log_popularity", "log_trending", "freshness", "bounce_rate", "completion_rate",
    "hour_sin", "hour_cos", "user_activity", "user_cold", "channel_count",
    *(f"channel_{c}" for c in CHANNELS),
)
DEVICES = ("unknown", "mobile", "desktop", "tablet", "tv")
CATEGORY_BUCKETS = 1024
CATEGORICAL_FIELDS = ("device", "hour", "item_category")
CATEGORICAL_SIZES = (len(DEVICES), 24, CATEGORY_BUCKETS)
FRESHNESS_SECONDS = 86_400.0
CHANNEL_COLUMN = {name: 15 + c for c, name in enumerate(CHANNELS)}


@dataclass
class FeatureBatch:
    item_ids: list[str]
    dense: np.ndarray  # (n, len(DENSE_FEATURES)) float32
    categorical: np.ndarray  # (n, len(CATEGORICAL_FIELDS)) int64
    channel_best: np.ndarray  # (n,) best rescaled channel score; heuristic ranker only

    def column(self, name: str) -> np.ndarray:
        return self.dense[:, DENSE_FEATURES.index(name)]


def device_code(context: Mapping[str, object]) -> int:
    device = str(context.get("device") or "unknown").lower()
    return DEVICES.index(device) if device in DEVICES else 0


def context_hour(context: Mapping[str, object], now: float) -> int:
    hour = context.get("hour")
    if isinstance(hour, int) and 0 <= hour < 24:
        return hour
    return datetime.fromtimestamp(now, tz=UTC).hour


@functools.lru_cache(maxsize=65_536)
def category_bucket(category: str | None) -> int:
    if not category:
        return 0
    return 1 + zlib.crc32(category.encode()) % (CATEGORY_BUCKETS - 1)


def build_features(
    state: OnlineState, profile: UserProfile | None, item_ids: Sequence[str],
    channels: Sequence[Mapping[str, float]], context: Mapping[str, object], now: float,
    vectors: tuple[list[str], np.ndarray] | None = None,
) -> FeatureBatch:
    """``vectors``: the candidates' (ids found, vectors) if the caller already has them."""
    n = len(item_ids)
    dense = np.zeros((n, len(DENSE_FEATURES)), dtype=np.float32)
    cats = np.zeros((n, len(CATEGORICAL_FIELDS)), dtype=np.int64)
    best = np.zeros(n, dtype=np.float32)
    hour = context_hour(context, now)
    angle = 2 * math.pi * hour / 24.0
    dense[:, 10] = math.sin(angle)
    dense[:, 11] = math.cos(angle)
    cats[:, 0] = device_code(context)
    cats[:, 1] = hour
    if profile is not None:
        dense[:, 12] = math.log1p(profile.n_events)
        dense[:, 13] = float(profile.is_cold)
        user_vec = profile.vector
    else:
        dense[:, 13] = 1.0
        user_vec = None

    if user_vec is not None and user_vec.shape[0] == state.catalog.index.dim:
        found, vecs = vectors if vectors is not None else state.catalog.vectors(list(item_ids))
        if len(found):
            row_of = {item_id: r for r, item_id in enumerate(item_ids)}
            rows = np.asarray([row_of[i] for i in found])
            dense[rows, 0] = vecs @ user_vec

    # Decay the user's interests once per request, not once per (item, key).
    tags = profile.tags.snapshot(now) if profile is not None else {}
    categories = profile.categories.snapshot(now) if profile is not None else {}
    creators = profile.creators.snapshot(now) if profile is not None else {}
    followed = profile.followed if profile is not None else set()
    catalog_get = state.catalog.get
    stats_get = state.stats.get
    tanh, exp, log1p = math.tanh, math.exp, math.log1p
    for r, item_id in enumerate(item_ids):
        item: CatalogItem | None = catalog_get(item_id)
        counters = stats_get(item_id)
        row = dense[r]
        if item is not None:
            if profile is not None:
                row[1] = tanh(sum(tags.get(t, 0.0) for t in item.tags) / 2.0)
                row[2] = tanh(sum(c * categories.get(k, 0.0) for k, c in item.categories) / 2.0)
                row[3] = tanh(creators.get(item.creator_id, 0.0) / 2.0)
                row[4] = float(item.creator_id in followed)
            row[7] = exp(-max(now - item.created_at, 0.0) / FRESHNESS_SECONDS)
            cats[r, 2] = category_bucket(item.top_category)
        if counters is not None:
            row[5] = log1p(counters.positives)
            row[6] = log1p(state.stats.trending_score(item_id, now))
            row[8] = counters.bounce_rate
            row[9] = counters.completion_rate
        proposed = channels[r] if r < len(channels) else {}
        row[14] = len(proposed)
        for name in proposed:
            column = CHANNEL_COLUMN.get(name)
            if column is not None:
                row[column] = 1.0
        best[r] = max(proposed.values(), default=0.0)
    return FeatureBatch(list(item_ids), dense, cats, best)
