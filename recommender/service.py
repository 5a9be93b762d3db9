"""The feed service: matching, ranking, re-ranking; and ``Recommender`` that wires it all.

``Recommender.open(sessions, settings, item_store)`` rebuilds the catalog from the
database, subscribes it to item state changes, replays the event log into profiles and
counters, and picks the ranker. ``recommender.feed.feed(...)`` answers a feed request;
``recommender.events.ingest(...)`` takes event batches.
"""

from __future__ import annotations

import threading
import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session, sessionmaker

from core.errors import InvalidInput
from core.storage.items import ItemStore
from recommender.catalog import Catalog
from recommender.channels import Matcher, MatchRequest, default_channels
from recommender.events import EventLog
from recommender.features import build_features
from recommender.ranking import Ranker, RankerInfo, load_ranker
from recommender.reranking import ScoredCandidate, rerank
from recommender.settings import RecommenderSettings
from recommender.state import Clock, OnlineState

MAX_K = 100


class FeedContext(BaseModel):
    """What the client says about the request; extra keys are kept for logging."""

    model_config = ConfigDict(extra="allow")

    device: str | None = None
    hour: int | None = Field(default=None, ge=0, le=23, description="local hour of day")


class FeedRequest(BaseModel):
    user_id: str = Field(min_length=1, max_length=128)
    k: int = Field(default=10, ge=1, le=MAX_K)
    context: FeedContext = Field(default_factory=FeedContext)
    exclude: list[str] = Field(default_factory=list)


class FeedItem(BaseModel):
    item_id: str
    score: float
    channels: list[str]
    reason: str
    creator_id: str | None = None


class FeedResponse(BaseModel):
    user_id: str
    items: list[FeedItem]
    ranker: RankerInfo
    cold_start: bool
    candidates: int
    generated_at: datetime


class FeedService:
    def __init__(self, state: OnlineState, ranker: Ranker, matcher: Matcher | None = None) -> None:
        self.state = state
        self.ranker = ranker
        self.matcher = matcher or Matcher(
            default_channels(state.settings, state.catalog, state.stats, state.covisitation,
                             state.cohorts),
            state.settings, state.catalog,
        )
        self._requests = 0
        self._lock = threading.Lock()

    def set_ranker(self, ranker: Ranker) -> None:
        self.ranker = ranker

    def feed(
        self, user_id: str, k: int = 10, context: FeedContext | Mapping[str, Any] | None = None,
        exclude: Sequence[str] | None = None,
    ) -> FeedResponse:
        if not user_id or len(user_id) > 128:
            raise InvalidInput("user_id must be 1 to 128 characters", field="user_id")
        if not 1 <= k <= MAX_K:
            raise InvalidInput(f"k must be between 1 and {MAX_K}, got {k}", field="k")
        ctx = context if isinstance(context, FeedContext) else FeedContext.model_validate(
            dict(context or {}))
        state = self.state
        now = state.clock()
        profile = state.profiles.get(user_id)
        excluded = set(exclude or ())
        blocked = excluded | (profile.excluded() if profile is not None else set())
        request = MatchRequest(user_id=user_id, profile=profile, now=now, exclude=blocked)
        candidates = self.matcher.match(request)
        candidate_ids = [c.item_id for c in candidates]
        # One index read per request; features and re-ranking slice from it.
        found, matrix = state.catalog.vectors(candidate_ids)
        row_of = {item_id: r for r, item_id in enumerate(found)}

        def lookup(ids: list[str]) -> tuple[list[str], np.ndarray]:
            hits = [i for i in ids if i in row_of]
            return hits, matrix[[row_of[i] for i in hits]]

        batch = build_features(
            state, profile, candidate_ids, [c.channels for c in candidates],
            ctx.model_dump(), now, vectors=(found, matrix),
        )
        ranker = self.ranker
        scores = ranker.score(batch) if candidates else np.zeros(0, np.float32)
        scored = [
            ScoredCandidate(c.item_id, float(s), c.channels)
            for c, s in zip(candidates, scores, strict=True)
        ]
        fresh = [c.item_id for c in candidates if "fresh" in c.channels]
        with self._lock:
            self._requests += 1
            counter = self._requests
        rng = np.random.default_rng(
            [state.settings.seed, zlib.crc32(user_id.encode()), counter])
        picks = rerank(
            scored, k=k, catalog=state.catalog, profile=profile, exclude=excluded,
            settings=state.settings, fresh=fresh, rng=rng, now=now, lookup=lookup,
        )
        items = []
        for pick in picks:
            item = state.catalog.get(pick.item_id)
            if item is None:  # taken down while this request ran
                continue
            items.append(FeedItem(
                item_id=pick.item_id, score=round(pick.score, 6),
                channels=sorted(pick.channels, key=lambda c: -pick.channels[c]),
                reason=pick.reason, creator_id=item.creator_id,
            ))
        return FeedResponse(
            user_id=user_id, items=items, ranker=ranker.info,
            cold_start=profile is None or profile.is_cold, candidates=len(candidates),
            generated_at=datetime.fromtimestamp(now, tz=UTC),
        )

    def handle(self, request: FeedRequest) -> FeedResponse:
        return self.feed(request.user_id, request.k, request.context, request.exclude)


@dataclass
class Recommender:
    settings: RecommenderSettings
    state: OnlineState
    events: EventLog
    feed: FeedService

    @property
    def catalog(self) -> Catalog:
        return self.state.catalog

    @classmethod
    def open(
        cls, sessions: sessionmaker[Session], settings: RecommenderSettings | None = None,
        item_store: ItemStore | None = None, *, clock: Clock = time.time,
        ranker: Ranker | None = None,
    ) -> Recommender:
        settings = settings or RecommenderSettings()
        catalog = Catalog.load(sessions, settings)
        if item_store is not None:
            item_store.subscribe(catalog.on_state_change)
        state = OnlineState.create(settings, catalog, clock)
        events = EventLog(sessions, state)
        events.catch_up()
        feed = FeedService(state, ranker or load_ranker(settings))
        return cls(settings=settings, state=state, events=events, feed=feed)

    def reload_ranker(self) -> RankerInfo:
        """Pick up a newly trained model (``auto``) without restarting."""
        self.feed.set_ranker(load_ranker(self.settings))
        return self.feed.ranker.info

    def close(self) -> None:
        self.state.catalog.save()
