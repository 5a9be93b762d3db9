"""Matching channels: each proposes scored candidates under its own name.

A channel implements ``match(request, limit) -> [(item_id, score)]``; scores are
comparable only within a channel, so the matcher rescales each channel's list to
(0, 1] by its best score before merging. Every candidate keeps the name and score of
each channel that proposed it: ranking uses them as features, re-ranking for reasons.
The feed reads them as one matrix (``Matcher.candidates``: a row per candidate, a column
per channel) so that nothing downstream loops over candidates in Python.

Channels never spend their quota on what the request excludes (what the user has seen,
hidden or reported): each one skips those items and goes on to the next best.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Collection, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from recommender.catalog import Catalog
from recommender.cohorts import Cohorts
from recommender.collaborative import Collaborative
from recommender.covisitation import CoVisitation
from recommender.popularity import ItemStats
from recommender.profiles import UserProfile
from recommender.settings import RecommenderSettings

Proposals = dict[str, list[tuple[str, float]]]  # channel -> (item id, score), best first


@dataclass
class MatchRequest:
    user_id: str
    profile: UserProfile | None
    now: float
    exclude: set[str] = field(default_factory=set)


@dataclass(slots=True)
class Candidate:
    item_id: str
    channels: dict[str, float] = field(default_factory=dict)  # name -> rescaled score

    @property
    def best(self) -> float:
        return max(self.channels.values(), default=0.0)


@dataclass
class CandidateSet:
    """Merged candidates, best first: ``scores[r, c]`` is channel ``c``'s rescaled score
    for ``item_ids[r]``, 0 when that channel did not propose it; ``rank_scores[r, c]``
    is ``1 / (1 + rank / rank_constant)`` for the item's rank in that channel's list (0
    when not proposed): the scale on which channels are compared. ``fresh`` lists what
    the fresh channel proposed, kept whole for exploration even where the merge cut it."""

    item_ids: list[str]
    scores: np.ndarray  # (n, len(channels)) float64
    channels: tuple[str, ...]
    rank_scores: np.ndarray | None = None  # (n, len(channels)) float64
    fresh: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.item_ids)

    def channels_of(self, row: int) -> dict[str, float]:
        names = self.channels
        return {names[c]: v for c, v in enumerate(self.scores[row].tolist()) if v}

    def row_channels(self, row: int) -> RowChannels:
        """``channels_of(row)``, computed when first read."""
        return RowChannels(self, row)

    def proposed_by(self, channel: str) -> list[str]:
        if channel not in self.channels:
            return []
        column = self.scores[:, self.channels.index(channel)]
        return [self.item_ids[r] for r in np.flatnonzero(column)]


class RowChannels(Mapping[str, float]):
    """One candidate's channels and scores, read from its candidate set on first use: a
    feed re-ranks a hundred candidates but names the channels of the ten it serves."""

    __slots__ = ("_candidates", "_found", "_row")

    def __init__(self, candidates: CandidateSet, row: int) -> None:
        self._candidates = candidates
        self._row = row
        self._found: dict[str, float] | None = None

    def _channels(self) -> dict[str, float]:
        if self._found is None:
            self._found = self._candidates.channels_of(self._row)
        return self._found

    def __getitem__(self, name: str) -> float:
        return self._channels()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._channels())

    def __len__(self) -> int:
        return len(self._channels())


MERGE_WEIGHT_FLOOR = 0.05


class Channel(Protocol):
    name: str

    def match(self, request: MatchRequest, limit: int) -> list[tuple[str, float]]: ...


class EmbeddingChannel:
    """ANN over fused item vectors with the user vector (cosine)."""

    name = "embedding"

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def match(self, request: MatchRequest, limit: int) -> list[tuple[str, float]]:
        profile = request.profile
        vector = profile.vector if profile is not None else None
        if vector is None or vector.shape[0] != self.catalog.index.dim:
            return []
        return self.catalog.index.search(vector, limit, exclude=request.exclude)


class TagCategoryChannel:
    """Newest items under the user's strongest tags and categories, by affinity."""

    name = "tag_category"

    def __init__(self, catalog: Catalog, top_tags: int = 8, top_categories: int = 5) -> None:
        self.catalog = catalog
        self.top_tags = top_tags
        self.top_categories = top_categories

    def match(self, request: MatchRequest, limit: int) -> list[tuple[str, float]]:
        profile = request.profile
        if profile is None:
            return []
        as_of = profile.as_of(request.now)
        keys = [
            (self.catalog.by_tag, k, v) for k, v in profile.tags.top(self.top_tags, as_of)
        ] + [
            (self.catalog.by_category, k, v)
            for k, v in profile.categories.top(self.top_categories, as_of)
        ]
        if not keys:
            return []
        per_key = max(8, 3 * limit // len(keys))
        scores: dict[str, float] = {}
        for index, key, affinity in keys:
            bucket = index.get(key)
            if not bucket:
                continue
            for item_id in self.catalog.newest_in(bucket, per_key, skip=request.exclude):
                scores[item_id] = scores.get(item_id, 0.0) + affinity
        return _top(scores, limit)


class CoVisitationChannel:
    """Items watched in the same sessions as the user's recent positives."""

    name = "covisitation"

    def __init__(self, covisitation: CoVisitation, recent: int = 10) -> None:
        self.covisitation = covisitation
        self.recent = recent

    def match(self, request: MatchRequest, limit: int) -> list[tuple[str, float]]:
        profile = request.profile
        if profile is None or not profile.recent_positives:
            return []
        scores: dict[str, float] = {}
        recent = list(profile.recent_positives)[-self.recent:]
        for rank, (seed, _) in enumerate(reversed(recent)):
            recency = 1.0 / (1.0 + rank)  # the latest positive speaks loudest
            for item_id, count in self.covisitation.neighbours_of(seed, limit):
                if item_id not in request.exclude:
                    scores[item_id] = scores.get(item_id, 0.0) + recency * count
        return _top(scores, limit)


class CohortChannel:
    """What users with similar vectors engage with (largest cohort for new users)."""

    name = "cohort"

    def __init__(self, cohorts: Cohorts) -> None:
        self.cohorts = cohorts

    def match(self, request: MatchRequest, limit: int) -> list[tuple[str, float]]:
        cohort = self.cohorts.cohort_of(request.profile)
        if cohort is None:
            return []
        items = self.cohorts.top(cohort, limit + len(request.exclude))
        return [(i, s) for i, s in items if i not in request.exclude][:limit]


class TrendingChannel:
    """Time-decayed popularity over everyone's positive feedback."""

    name = "trending"

    def __init__(self, stats: ItemStats) -> None:
        self.stats = stats

    def match(self, request: MatchRequest, limit: int) -> list[tuple[str, float]]:
        return self.stats.top_trending(limit, request.now, skip=request.exclude)


class FreshChannel:
    """The newest approved items within ``fresh_window_hours`` (cold start for items)."""

    name = "fresh"

    def __init__(self, catalog: Catalog, window_hours: float) -> None:
        self.catalog = catalog
        self.window_s = window_hours * 3600.0

    def match(self, request: MatchRequest, limit: int) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        for item in self.catalog.newest(4 * limit + len(request.exclude)):
            age = request.now - item.created_at
            # an item dated after the clock (a future release date in a replayed log)
            # is not new: it does not exist yet
            if item.id in request.exclude or age > self.window_s or age < 0:
                continue
            out.append((item.id, 1.0 - age / self.window_s))
            if len(out) >= limit:
                break
        out.sort(key=lambda kv: kv[1], reverse=True)
        return out


class FollowedCreatorsChannel:
    """Newest items of the creators the user follows."""

    name = "followed"

    def __init__(self, catalog: Catalog, window_hours: float) -> None:
        self.catalog = catalog
        self.window_s = window_hours * 3600.0

    def match(self, request: MatchRequest, limit: int) -> list[tuple[str, float]]:
        profile = request.profile
        if profile is None or not profile.followed:
            return []
        per_creator = max(4, limit // len(profile.followed))
        scores: dict[str, float] = {}
        for creator in profile.followed:
            bucket = self.catalog.by_creator.get(creator)
            if not bucket:
                continue
            for item_id in self.catalog.newest_in(bucket, per_creator + len(request.exclude)):
                item = self.catalog.get(item_id)
                if item is None or item_id in request.exclude:
                    continue
                age = max(request.now - item.created_at, 0.0)
                scores[item_id] = math.exp(-age / self.window_s)
        return _top(scores, limit)


class ItemKNNChannel:
    """Items engaged by the same users as the user's recent engagements (item kNN)."""

    name = "item_knn"

    def __init__(self, collaborative: Collaborative) -> None:
        self.collaborative = collaborative

    def match(self, request: MatchRequest, limit: int) -> list[tuple[str, float]]:
        return self.collaborative.knn(request.user_id, limit, request.exclude)


class EaseChannel:
    """Items EASE predicts from the user's recent engagements (item-to-item weights)."""

    name = "ease"

    def __init__(self, collaborative: Collaborative) -> None:
        self.collaborative = collaborative

    def match(self, request: MatchRequest, limit: int) -> list[tuple[str, float]]:
        return self.collaborative.ease(request.user_id, limit, request.exclude)


class MatrixFactorisationChannel:
    """Items with the highest predicted preference from implicit ALS factors (ANN)."""

    name = "mf"

    def __init__(self, collaborative: Collaborative) -> None:
        self.collaborative = collaborative

    def match(self, request: MatchRequest, limit: int) -> list[tuple[str, float]]:
        return self.collaborative.mf(request.user_id, limit, request.exclude)


def _top(scores: dict[str, float], limit: int) -> list[tuple[str, float]]:
    return sorted(scores.items(), key=lambda kv: kv[1], reverse=True)[:limit]


class Matcher:
    """Runs every channel within its quota and merges to ``candidate_limit`` candidates."""

    def __init__(self, channels: Sequence[Channel], settings: RecommenderSettings,
                 catalog: Catalog) -> None:
        self.channels = list(channels)
        self.settings = settings
        self.catalog = catalog

    @property
    def channel_names(self) -> list[str]:
        return [c.name for c in self.channels]

    def match(self, request: MatchRequest) -> list[Candidate]:
        found = self.candidates(request)
        return [Candidate(item_id, found.channels_of(r))
                for r, item_id in enumerate(found.item_ids)]

    def propose(self, request: MatchRequest, only: Collection[str] | None = None,
                ) -> Proposals:
        """Each channel's proposals within its quota (of the ``only`` channels if given)."""
        proposals: Proposals = {}
        for channel in self.channels:
            quota = self.settings.quotas.for_channel(channel.name)
            if quota > 0 and (only is None or channel.name in only):
                proposals[channel.name] = channel.match(request, quota)
        return proposals

    def candidates(self, request: MatchRequest) -> CandidateSet:
        """Every channel within its quota, merged and cut to ``candidate_limit``."""
        return self.merge(request, self.propose(request))

    def merge(self, request: MatchRequest, proposals: Mapping[str, list[tuple[str, float]]],
              ) -> CandidateSet:
        """Channels' proposals merged and cut to ``candidate_limit``.

        Channels' scores are on different scales (a cosine, a co-engagement sum, a
        decayed count), and dividing each by its own best would put a channel's weakest
        candidate level with another's best; so the merge compares ranks: each proposal
        earns ``weight / (1 + rank / rank_constant)`` (``settings.weights``; at least
        ``MERGE_WEIGHT_FLOOR`` so no channel is silenced here), summed over channels
        (ties: first proposed first)."""
        return self.cut(self.lay_out(request, proposals))

    def lay_out(self, request: MatchRequest, proposals: Mapping[str, list[tuple[str, float]]],
                ) -> MergeRows:
        """The proposals the request may see, one row per item (in channel order, first
        proposed first), each channel's rescaled and rank score in its column."""
        names = tuple(c.name for c in self.channels)
        rank_constant = self.settings.weights.rank_constant
        row_of: dict[str, int] = {}
        rows: list[int] = []
        columns: list[int] = []
        values: list[np.ndarray] = []
        ranks: list[np.ndarray] = []
        fresh: list[str] = []
        exclude, items = request.exclude, self.catalog.items
        for column, channel in enumerate(self.channels):
            hits = proposals.get(channel.name)
            if hits is None:
                continue
            top = max((s for _, s in hits), default=0.0)
            usable = [(i, s) for i, s in hits if i in items and i not in exclude]
            if channel.name == "fresh":
                fresh = [i for i, _ in usable]
            # setdefault reads len(row_of) before inserting: a new id gets the next row
            rows.extend([row_of.setdefault(i, len(row_of)) for i, _ in usable])
            kept = [s for _, s in usable]
            columns.extend([column] * len(kept))
            rescaled = (np.asarray(kept, dtype=np.float64) / top if top > 0
                        else np.zeros(len(kept)))
            values.append(np.maximum(rescaled, 1e-6))
            ranks.append(1.0 / (1.0 + np.arange(len(kept)) / rank_constant))
        scores = np.zeros((len(row_of), len(names)), dtype=np.float64)
        rank_scores = np.zeros_like(scores)
        if rows:
            scores[rows, columns] = np.concatenate(values)
            rank_scores[rows, columns] = np.concatenate(ranks)
        return MergeRows(row_of, scores, rank_scores, fresh)

    def cut(self, laid_out: MergeRows) -> CandidateSet:
        """Rank the rows by their weighted rank scores; keep ``candidate_limit``."""
        names = tuple(c.name for c in self.channels)
        weights = self.settings.weights
        merge_weights = np.asarray(
            [max(weights.channels.get(n, 0.0), MERGE_WEIGHT_FLOOR) for n in names])
        rank = laid_out.rank_scores @ merge_weights
        order = np.argsort(-rank, kind="stable")[: self.settings.candidate_limit]
        ids = list(laid_out.row_of)
        return CandidateSet([ids[r] for r in order.tolist()], laid_out.scores[order], names,
                            laid_out.rank_scores[order], laid_out.fresh)


@dataclass(frozen=True, slots=True)
class MergeRows:
    """Some channels' proposals laid out for the merge (``Matcher.lay_out``): item id ->
    row, and per row each channel's rescaled score and rank score (0: not proposed).
    Read-only once made: the candidate cache hands the same one to many requests."""

    row_of: dict[str, int]
    scores: np.ndarray  # (rows, channels) float64
    rank_scores: np.ndarray
    fresh: list[str]

    def joined(self, later: MergeRows) -> MergeRows:
        """These rows, then ``later``'s items not among them: what laying out both
        channel sets at once gives, when ``later``'s channels come after these in the
        matcher's order (their columns are disjoint, so scores add)."""
        row_of = dict(self.row_of)
        rows = [row_of.setdefault(i, len(row_of)) for i in later.row_of]
        scores = np.zeros((len(row_of), self.scores.shape[1]), dtype=np.float64)
        rank_scores = np.zeros_like(scores)
        scores[: len(self.row_of)] = self.scores
        rank_scores[: len(self.row_of)] = self.rank_scores
        if rows:
            scores[rows] += later.scores
            rank_scores[rows] += later.rank_scores
        return MergeRows(row_of, scores, rank_scores, [*self.fresh, *later.fresh])


VOLATILE_CHANNELS = frozenset({"fresh", "trending", "followed"})
"""Channels whose proposals follow the catalog and the clock more than the user: read on
every request, never cached (new uploads, a creator's new item, what is rising now)."""


class CandidateCache:
    """A user's proposals from the personal channels, laid out for the merge
    (``MergeRows``), reused while nothing they were made from changed. Matching is most
    of a feed request's CPU (ten channels, several ANN searches); a user paging or
    refreshing within seconds gets the same proposals, so recomputing them is waste. An
    entry is valid while the user's profile stamp (events applied, last event time), the
    collaborative fit version and the catalog's takedown count are the ones it was made
    with, the exclusions are the same and the feed clock has not moved on by ``ttl_s``
    (or back): the user's own events, a refit and a takedown take effect on the next
    request. ``VOLATILE_CHANNELS`` are not cached: they are read and joined to the
    cached rows on every request, so new items reach the feed through them at once."""

    def __init__(self, ttl_s: float, max_users: int) -> None:
        self.ttl_s = ttl_s
        self.max_users = max_users
        self._entries: OrderedDict[str, tuple[Hashable, float, MergeRows]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, user_id: str, stamp: Hashable, now: float) -> MergeRows | None:
        with self._lock:
            entry = self._entries.get(user_id)
            if entry is not None and entry[0] == stamp and 0 <= now - entry[1] < self.ttl_s:
                self._entries.move_to_end(user_id)
                self.hits += 1
                return entry[2]
            self.misses += 1
            return None

    def put(self, user_id: str, stamp: Hashable, now: float, rows: MergeRows) -> None:
        with self._lock:
            self._entries[user_id] = (stamp, now, rows)
            self._entries.move_to_end(user_id)
            while len(self._entries) > self.max_users:
                self._entries.popitem(last=False)


def profile_stamp(profile: UserProfile | None) -> Hashable:
    """What changes whenever an event is applied to the profile: every event, a hide or
    a follow included, counts in ``n_events`` (``OnlineState.apply_to_profile``)."""
    if profile is None:
        return None
    return (profile.n_events, profile.last_ts)


def default_channels(
    settings: RecommenderSettings, catalog: Catalog, stats: ItemStats,
    covisitation: CoVisitation, cohorts: Cohorts, collaborative: Collaborative | None = None,
) -> list[Channel]:
    learned: list[Channel] = [] if collaborative is None else [
        ItemKNNChannel(collaborative), EaseChannel(collaborative),
        MatrixFactorisationChannel(collaborative)]
    return [
        *learned,
        EmbeddingChannel(catalog),
        TagCategoryChannel(catalog),
        CoVisitationChannel(covisitation),
        CohortChannel(cohorts),
        TrendingChannel(stats),
        FreshChannel(catalog, settings.fresh_window_hours),
        FollowedCreatorsChannel(catalog, settings.fresh_window_hours * 4),
    ]
