"""The feed service: matching, ranking, re-ranking; and ``Recommender`` that wires it all.

``Recommender.open(sessions, settings, item_store)`` rebuilds the catalog from the
database, subscribes it to item state changes, replays the event log into profiles and
counters, and picks the ranker. ``recommender.feed.feed(...)`` answers a feed request;
``recommender.events.ingest(...)`` takes event batches.

A feed request handles its few hundred candidates as arrays (``CandidateSet``: ids and
a channel-score matrix; one read of their vectors; features column by column) and makes
Python objects only for the hundred or so that re-ranking looks at.
"""

from __future__ import annotations

import logging
import threading
import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from sqlalchemy.orm import Session, sessionmaker

from core.contracts import JsonInt, json_integer
from core.errors import Conflict, InvalidInput
from core.storage.items import ItemStore
from recommender.catalog import Catalog
from recommender.channels import (
    VOLATILE_CHANNELS,
    CandidateCache,
    CandidateSet,
    Matcher,
    MatchRequest,
    default_channels,
    profile_stamp,
)
from recommender.events import EventLog
from recommender.experiments import (
    ExperimentReport,
    ExposureLog,
    arm_settings,
    bucket,
    report_from_db,
)
from recommender.experiments import find as find_experiment
from recommender.features import FeatureBatch, build_features
from recommender.online_ranker import RankerStore, RankerTrainer, UpdateResult, feature_rows
from recommender.profiles import UserProfile
from recommender.ranking import HeuristicRanker, Ranker, RankerInfo, load_ranker
from recommender.reranking import ScoredCandidate, pool_size, rerank
from recommender.settings import RecommenderSettings
from recommender.state import Clock, OnlineState
from recommender.stream.online import RedisOnline
from recommender.stream.protocols import EventLogProtocol

MAX_K = 100
# Re-rankings a request may do when its page held items another process took down.
CONFIRM_ATTEMPTS = 3
log = logging.getLogger(__name__)


class FeedContext(BaseModel):
    """What the client says about the request; extra keys are kept for logging."""

    model_config = ConfigDict(extra="allow")

    device: str | None = None
    hour: Annotated[int, Field(ge=0, le=23), BeforeValidator(json_integer)] | None = Field(
        default=None, description="local hour of day"
    )


class FeedRequest(BaseModel):
    user_id: str = Field(min_length=1, max_length=128)
    k: JsonInt = Field(default=10, ge=1, le=MAX_K)
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
    experiments: dict[str, str] = Field(
        default_factory=dict, description="experiment id -> the arm that served this feed")


@dataclass
class RankingInputs:
    """What one feed request ranks: the profile read, the candidates and their features."""

    profile: UserProfile | None
    now: float
    excluded: set[str]  # by the request
    seen: set[str]  # by the user's profile
    candidates: CandidateSet
    found: list[str]  # candidates with a vector, rows of ``matrix``
    matrix: np.ndarray
    batch: FeatureBatch

    @cached_property
    def row_of(self) -> dict[str, int]:
        return {item_id: r for r, item_id in enumerate(self.found)}

    def lookup(self, ids: list[str]) -> tuple[list[str], np.ndarray]:
        """Vectors of those of ``ids`` that have one (for re-ranking)."""
        row_of = self.row_of
        hits = [i for i in ids if i in row_of]
        return hits, self.matrix[[row_of[i] for i in hits]]


class FeedService:
    def __init__(
        self, state: OnlineState, ranker: Ranker, matcher: Matcher | None = None,
        events: EventLogProtocol | None = None, settings: RecommenderSettings | None = None,
        exposures: ExposureLog | None = None,
    ) -> None:
        """``events``: with ``settings.multi_process``, the log each request catches up on.
        ``settings``: matching and re-ranking settings of this service if not the state's
        (a variant over the same state: an evaluation's, an experiment arm's)."""
        self.state = state
        self.ranker = ranker
        self.events = events
        self.settings = settings = settings or state.settings
        self.exposures = exposures
        # experiment arms: (experiment, arm) -> (service, whether it inherits our ranker)
        self._arms: dict[tuple[str, str], tuple[FeedService, bool]] = {}
        self.matcher = matcher or Matcher(
            default_channels(settings, state.catalog, state.stats, state.covisitation,
                             state.cohorts, state.collaborative),
            settings, state.catalog,
        )
        self.candidate_cache = (
            CandidateCache(settings.candidate_cache_seconds, settings.candidate_cache_users)
            if settings.candidate_cache_seconds > 0 else None)
        self._requests = 0
        self._lock = threading.Lock()

    def set_ranker(self, ranker: Ranker) -> None:
        self.ranker = ranker
        for service, inherits in self._arms.values():
            if inherits:
                service.set_ranker(ranker)

    def _route(self, user_id: str) -> tuple[FeedService, dict[str, str]]:
        """The service of the user's arm in the first active experiment (or this one)."""
        for experiment in self.settings.experiments:
            if not experiment.active:
                continue
            arm = bucket(experiment, user_id)
            found = self._arms.get((experiment.id, arm))
            if found is None:
                config = next(a for a in experiment.arms if a.name == arm)
                settings = arm_settings(self.settings, config)
                inherits = not ({"ranker", "weights", "model_dir"} & set(config.settings))
                ranker = self.ranker if inherits else load_ranker(settings)
                found = (FeedService(self.state, ranker, events=self.events,
                                     settings=settings), inherits)
                self._arms[(experiment.id, arm)] = found
            return found[0], {experiment.id: arm}
        return self, {}

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
        if self.settings.experiments:
            target, arms = self._route(user_id)
            if arms:
                response = target.feed(user_id, k, ctx, exclude)
                response.experiments = arms
                if self.exposures is not None:
                    stamp = response.generated_at.timestamp()
                    for experiment_id, arm in arms.items():
                        self.exposures.expose(experiment_id, user_id, arm, stamp)
                return response
        state = self.state
        shared = self.settings.multi_process
        if shared and self.events is not None:
            self.events.catch_up()  # events another process stored since the last request
        inputs = self._ranking_inputs(user_id, ctx, exclude)
        profile, now, excluded, seen = inputs.profile, inputs.now, inputs.excluded, inputs.seen
        blocked = excluded | seen
        candidates, batch, lookup = inputs.candidates, inputs.batch, inputs.lookup
        candidate_ids = candidates.item_ids
        ranker = self.ranker
        scores = ranker.score(batch) if len(candidates) else np.zeros(0, np.float32)
        # Re-ranking sorts by score (stably) and looks at the best pool_size(k) allowed;
        # only those become objects.
        live = state.catalog.items
        scored: list[ScoredCandidate] = []
        for r in np.argsort(-scores, kind="stable").tolist():
            item_id = candidate_ids[r]
            if item_id in live and item_id not in blocked:
                scored.append(
                    ScoredCandidate(item_id, float(scores[r]), candidates.row_channels(r)))
                if len(scored) >= pool_size(k):
                    break
        fresh = candidates.fresh
        with self._lock:
            self._requests += 1
            counter = self._requests
        rng = np.random.default_rng(
            [self.settings.seed, zlib.crc32(user_id.encode()), counter])
        for _attempt in range(CONFIRM_ATTEMPTS):
            picks = rerank(
                scored, k=k, catalog=state.catalog, profile=profile, exclude=excluded,
                settings=self.settings, fresh=fresh, rng=rng, now=now, lookup=lookup,
                blocked=seen,
            )
            if not shared:
                break
            # A takedown committed by another process before this request must not show:
            # one indexed read of the page's ids; the rare stale pick is dropped and the
            # page re-ranked without it.
            gone = set(state.catalog.confirm_approved([p.item_id for p in picks]))
            if not gone:
                break
            scored = [c for c in scored if c.item_id not in gone]
            fresh = [i for i in fresh if i not in gone]
        if self.settings.online_ranker.enabled and picks:
            # what was served, with the features it was ranked on: outcomes label them
            position = {p.item_id: r for r, p in enumerate(picks)}
            found_rows = [r for r, item_id in enumerate(candidate_ids) if item_id in position]
            if found_rows:
                served = [candidate_ids[r] for r in found_rows]
                state.impressions.record(user_id, served, feature_rows(batch, found_rows),
                                         now)
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

    def _ranking_inputs(self, user_id: str, ctx: FeedContext,
                        exclude: Sequence[str] | None) -> RankingInputs:
        """Matching and the feature batch the ranker scores: one index read per request,
        which features and re-ranking slice from."""
        state = self.state
        now = state.now()
        profile = state.profiles.get(user_id)
        excluded = set(exclude or ())
        seen = profile.excluded() if profile is not None else set()
        request = MatchRequest(user_id=user_id, profile=profile, now=now,
                               exclude=excluded | seen)
        candidates = self._candidates(request, excluded)
        found, matrix = state.catalog.vectors(candidates.item_ids)
        batch = build_features(
            state, profile, candidates.item_ids, candidates.scores, ctx.model_dump(), now,
            vectors=(found, matrix), channel_names=candidates.channels,
            rank_scores=candidates.rank_scores,
        )
        return RankingInputs(profile, now, excluded, seen, candidates, found, matrix, batch)

    def candidate_rows(self, user_id: str) -> tuple[list[str], np.ndarray]:
        """The candidates a feed for the user would rank now, with the rows the learned
        ranker reads (what an impression records): training data from a replayed log."""
        inputs = self._ranking_inputs(user_id, FeedContext(), None)
        return inputs.candidates.item_ids, feature_rows(inputs.batch)

    def _candidates(self, request: MatchRequest, client_excluded: set[str]) -> CandidateSet:
        """The matcher's merged candidates; the personal channels' rows from
        ``candidate_cache`` while still valid, the volatile channels read now."""
        cache, matcher = self.candidate_cache, self.matcher
        if cache is None:
            return matcher.candidates(request)
        fit = self.state.collaborative.fit
        stamp = (profile_stamp(request.profile), fit.version if fit is not None else 0,
                 self.state.catalog.removals, frozenset(client_excluded))
        personal = cache.get(request.user_id, stamp, request.now)
        if personal is None:
            proposals = matcher.propose(request)
            personal = matcher.lay_out(request, {
                name: hits for name, hits in proposals.items()
                if name not in VOLATILE_CHANNELS})
            cache.put(request.user_id, stamp, request.now, personal)
            volatile = {name: hits for name, hits in proposals.items()
                        if name in VOLATILE_CHANNELS}
        else:
            volatile = matcher.propose(request, only=VOLATILE_CHANNELS)
        return matcher.cut(personal.joined(matcher.lay_out(request, volatile)))

    def handle(self, request: FeedRequest) -> FeedResponse:
        return self.feed(request.user_id, request.k, request.context, request.exclude)


def limit_threads(threads: int) -> None:
    """Cap this process's BLAS pools (numpy's and faiss's) and faiss's OpenMP threads.

    A feed request multiplies a few hundred vectors at a time: on a machine whose cores
    are busy serving other requests, waking BLAS threads for that costs milliseconds
    where one thread takes microseconds (100x measured on two shared cores). Other
    OpenMP runtimes (torch, onnxruntime) keep their own settings.
    """
    import faiss

    faiss.omp_set_num_threads(threads)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - scikit-learn, a dependency, requires it
        log.warning("threadpoolctl is missing: numpy's BLAS threads are not limited")
        return
    threadpool_limits(limits=threads, user_api="blas")


@dataclass
class Recommender:
    settings: RecommenderSettings
    state: OnlineState
    events: EventLogProtocol
    feed: FeedService
    trainer: RankerTrainer | None = None  # set when the online ranker picks the ranker
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _follower: threading.Thread | None = field(default=None, repr=False)
    _trainer_thread: threading.Thread | None = field(default=None, repr=False)
    online: RedisOnline | None = None

    @property
    def catalog(self) -> Catalog:
        return self.state.catalog

    @classmethod
    def open(
        cls, sessions: sessionmaker[Session], settings: RecommenderSettings | None = None,
        item_store: ItemStore | None = None, *, clock: Clock = time.time,
        ranker: Ranker | None = None, online: RedisOnline | None = None,
    ) -> Recommender:
        """``online``: profiles and events on Redis (``recommender.stream``), not here."""
        settings = settings or RecommenderSettings()
        catalog = Catalog.load(sessions, settings)
        if item_store is not None:
            item_store.subscribe(catalog.on_state_changes)
        state = OnlineState.create(settings, catalog, clock)
        events: EventLogProtocol
        if online is not None:  # the event workers write profiles; feeds read them there
            state.profiles = online.profiles(settings.profile)
            events = online.event_log(sessions, state)
            online.attach(catalog, item_store)
        else:
            events = EventLog(sessions, state)
        events.catch_up()
        trainer: RankerTrainer | None = None
        if ranker is None:
            ranker = load_ranker(settings)
            if (settings.online_ranker.enabled and settings.ranker == "auto"
                    and isinstance(ranker, HeuristicRanker)):
                # no offline-trained model: the online ranker (or the heuristic until it
                # has learned enough) ranks, and keeps learning
                trainer = RankerTrainer(settings, state.impressions,
                                        RankerStore(settings.model_dir / "online"),
                                        fallback=ranker)
                ranker = trainer.serving()
        feed = FeedService(state, ranker, events=events, exposures=ExposureLog(sessions))
        if settings.serving_threads is not None:
            limit_threads(settings.serving_threads)
        recommender = cls(settings=settings, state=state, events=events, feed=feed,
                          trainer=trainer, online=online)
        if settings.follow_seconds is not None:
            recommender.start_following(settings.follow_seconds)
        if trainer is not None:
            recommender.start_training(settings.online_ranker.update_seconds)
        return recommender

    def update_ranker(self) -> UpdateResult | None:
        """One online-ranker step now (the worker does this every ``update_seconds``)."""
        if self.trainer is None:
            return None
        result = self.trainer.update(self.state.now())
        self.feed.set_ranker(self.trainer.serving())
        return result

    def experiment_report(self, experiment_id: str) -> ExperimentReport:
        """Per-arm outcomes of a configured experiment (``recommender.experiments``)."""
        experiment = find_experiment(self.settings.experiments, experiment_id)
        return report_from_db(self.events.sessions, experiment)

    def rollback_ranker(self) -> RankerInfo:
        """Restore the previous promoted version (the heuristic if none is left)."""
        if self.trainer is None:
            raise Conflict("the online ranker is not in use here (a trained model or a "
                           "named ranker is configured)")
        try:
            self.trainer.store.rollback()
        except LookupError as exc:
            raise Conflict(str(exc)) from exc
        self.feed.set_ranker(self.trainer.serving())
        return self.feed.ranker.info

    def start_training(self, every_seconds: float) -> None:
        if self._trainer_thread is not None:
            return

        def loop() -> None:
            while not self._stop.wait(every_seconds):
                try:
                    self.update_ranker()
                except Exception:  # the serving version stays; retried on the next tick
                    log.exception("online ranker update failed")

        self._trainer_thread = threading.Thread(target=loop, name="ranker-update", daemon=True)
        self._trainer_thread.start()

    def sync(self) -> tuple[int, int]:
        """Apply what other processes wrote: item state changes, then events; returns
        (items changed, events applied)."""
        return self.catalog.follow(), self.events.catch_up()

    def start_following(self, every_seconds: float) -> None:
        """``sync`` on a background thread: with several workers or replicas, a takedown
        or an event posted to one reaches the others' feeds within ``every_seconds``."""
        if self._follower is not None:
            return

        def loop() -> None:
            while not self._stop.wait(every_seconds):
                try:
                    self.sync()
                except Exception:  # a failed poll is retried on the next tick
                    log.exception("recommender could not follow the database")

        self._follower = threading.Thread(target=loop, name="recommender-follow", daemon=True)
        self._follower.start()

    def reload_ranker(self) -> RankerInfo:
        """Pick up a newly trained model (``auto``) without restarting."""
        self.feed.set_ranker(load_ranker(self.settings))
        return self.feed.ranker.info

    def close(self) -> None:
        self._stop.set()
        if self._follower is not None:
            self._follower.join(timeout=30)
        if self._trainer_thread is not None:
            self._trainer_thread.join(timeout=30)
        if self.online is not None:
            self.online.close()
        self.state.catalog.save()
