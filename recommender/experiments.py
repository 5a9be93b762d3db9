"""Online experiments: deterministic buckets, arms as configurations, exposures, reports.

- **Bucketing.** A user's arm is fixed by ``sha256(salt:experiment:user)`` read as a
  number in [0, 1) against the arms' cumulative traffic shares: no state, the same on
  every process and replica, and independent across experiments with different salts.
- **Arms are configurations.** An arm's ``settings`` override ``RecommenderSettings``
  (any field: quotas, weights, exploration, MMR, caps, the ranker by name); each arm gets
  its own ``FeedService`` over the one shared state, so arms differ only in what the
  configuration says.
- **Exposures.** A feed served to a user in an experiment names the experiment and arm
  in the response (``FeedResponse.experiments``) and stores the user's first exposure
  once (``experiment_exposures``): the report counts a user's events from then on.
- **Reports.** Per arm: users, impressions, CTR (views per impression), watch time per
  impression, completion rate (of views), likes and hides per impression; each a mean
  over users (the user is the unit that was randomised) with a 95% t interval, and for
  each arm after the first the difference from the first with Welch's t-test.

One experiment configures a user's feed at a time: the first active experiment a request
falls into decides its arm (experiments meant to run together use disjoint arms' shares
or run one after another).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.contracts import Event
from core.errors import NotFound
from core.storage.db import transaction
from recommender.events import _insert_statement, row_to_event
from recommender.settings import ArmConfig, ExperimentConfig, RecommenderSettings
from recommender.tables import EventRow, ExposureRow

log = logging.getLogger(__name__)
METRICS = ("ctr", "watch_ms_per_impression", "completion_rate", "likes_per_impression",
           "hides_per_impression")


def bucket(experiment: ExperimentConfig, user_id: str) -> str:
    """The user's arm: deterministic in (salt, experiment, user)."""
    digest = hashlib.sha256(f"{experiment.salt}:{experiment.id}:{user_id}".encode()).digest()
    point = int.from_bytes(digest[:8], "big") / 2.0**64
    total = sum(a.share for a in experiment.arms)
    edge = 0.0
    for arm in experiment.arms:
        edge += arm.share / total
        if point < edge:
            return arm.name
    return experiment.arms[-1].name


def arm_settings(base: RecommenderSettings, arm: ArmConfig) -> RecommenderSettings:
    merged = _deep_merge(base.model_dump(), arm.settings)
    merged["experiments"] = []  # an arm's service does not route again
    return type(base).model_validate(merged)


def _deep_merge(base: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


class ExposureLog:
    """First exposure of each (experiment, user), stored once (ignored if already there)."""

    def __init__(self, sessions: sessionmaker[Session] | None) -> None:
        self.sessions = sessions
        self._known: set[tuple[str, str]] = set()
        self._memory: dict[tuple[str, str], tuple[str, datetime]] = {}
        self._lock = threading.Lock()

    def expose(self, experiment_id: str, user_id: str, arm: str, ts: float) -> None:
        key = (experiment_id, user_id)
        with self._lock:
            if key in self._known:
                return
            self._known.add(key)
        when = datetime.fromtimestamp(ts, tz=UTC)
        if self.sessions is None:
            self._memory[key] = (arm, when)
            return
        try:
            with transaction(self.sessions) as session:
                session.execute(_insert_statement(session, [{
                    "experiment_id": experiment_id, "user_id": user_id, "arm": arm,
                    "first_at": when}], ExposureRow, ["experiment_id", "user_id"]))
        except Exception:  # the feed is served anyway; the next request tries again
            with self._lock:
                self._known.discard(key)
            log.exception("could not store an experiment exposure")

    def exposures(self, experiment_id: str) -> dict[str, tuple[str, datetime]]:
        if self.sessions is None:
            return {u: v for (e, u), v in self._memory.items() if e == experiment_id}
        with self.sessions() as session:
            rows = session.execute(
                select(ExposureRow.user_id, ExposureRow.arm, ExposureRow.first_at)
                .where(ExposureRow.experiment_id == experiment_id)).all()
        return {u: (a, _utc(t)) for u, a, t in rows}


def _utc(ts: datetime) -> datetime:
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


class Interval(BaseModel):
    mean: float
    low: float
    high: float


class ArmReport(BaseModel):
    arm: str
    users: int
    impressions: int
    metrics: dict[str, Interval]
    # vs the first arm: difference of means with its 95% interval and Welch's p-value
    difference: dict[str, Interval] = Field(default_factory=dict)
    p_value: dict[str, float] = Field(default_factory=dict)
    # The p-values adjusted for comparing several metrics at once (Benjamini-Hochberg over
    # this arm's metrics): five metrics at 0.05 each flag one by chance in about one A/A
    # test of five, so a winner is called on these.
    q_value: dict[str, float] = Field(default_factory=dict)


class ExperimentReport(BaseModel):
    experiment_id: str
    control: str
    arms: list[ArmReport]


@dataclass
class _UserTotals:
    impressions: int = 0
    views: int = 0
    watch_ms: int = 0
    completes: int = 0
    likes: int = 0
    hides: int = 0
    items_viewed: set[str] = field(default_factory=set)

    def rates(self) -> dict[str, float] | None:
        if self.impressions == 0:
            return None
        return {
            "ctr": min(self.views, self.impressions) / self.impressions,
            "watch_ms_per_impression": self.watch_ms / self.impressions,
            "completion_rate": self.completes / self.views if self.views else 0.0,
            "likes_per_impression": self.likes / self.impressions,
            "hides_per_impression": self.hides / self.impressions,
        }


def summarise(
    experiment: ExperimentConfig, exposures: Mapping[str, tuple[str, datetime]],
    events: Iterable[Event],
) -> ExperimentReport:
    """Per-arm metrics over exposed users' events since their first exposure."""
    from scipy import stats

    totals: dict[str, _UserTotals] = {}
    for event in events:
        exposure = exposures.get(event.user_id)
        if exposure is None or _utc(event.ts) < exposure[1]:
            continue
        t = totals.setdefault(event.user_id, _UserTotals())
        kind = event.type
        if kind == "impression":
            t.impressions += 1
        elif kind in ("view", "complete", "replay"):
            if event.item_id not in t.items_viewed:
                t.items_viewed.add(event.item_id)
                t.views += 1
            t.watch_ms += event.watch_ms or 0
            ratio = (event.watch_ms or 0) / max(event.item_duration_ms or 1, 1)
            if kind == "complete" or (event.item_duration_ms and ratio >= 0.9):
                t.completes += 1
        elif kind == "like":
            t.likes += 1
        elif kind in ("hide", "report"):
            t.hides += 1
    per_arm: dict[str, list[dict[str, float]]] = {a.name: [] for a in experiment.arms}
    impressions: dict[str, int] = dict.fromkeys(per_arm, 0)
    for user, (arm, _) in exposures.items():
        rates = totals.get(user, _UserTotals()).rates()
        if rates is not None and arm in per_arm:
            per_arm[arm].append(rates)
            impressions[arm] += totals[user].impressions
    control = experiment.arms[0].name
    reports = []
    for arm, rows in per_arm.items():
        report = ArmReport(arm=arm, users=len(rows), impressions=impressions[arm],
                           metrics={m: _interval([r[m] for r in rows], stats) for m in METRICS})
        if arm != control:
            for m in METRICS:
                a = np.asarray([r[m] for r in rows])
                b = np.asarray([r[m] for r in per_arm[control]])
                if len(a) >= 2 and len(b) >= 2:
                    test = stats.ttest_ind(a, b, equal_var=False)
                    low, high = test.confidence_interval(0.95)
                    report.difference[m] = Interval(mean=float(a.mean() - b.mean()),
                                                    low=float(low), high=float(high))
                    p = float(test.pvalue)
                    report.p_value[m] = p if np.isfinite(p) else 1.0
            if report.p_value:
                q = stats.false_discovery_control(list(report.p_value.values()), method="bh")
                report.q_value = dict(zip(report.p_value, map(float, q), strict=True))
        reports.append(report)
    return ExperimentReport(experiment_id=experiment.id, control=control, arms=reports)


def _interval(values: Sequence[float], stats: Any) -> Interval:
    if not values:
        return Interval(mean=0.0, low=0.0, high=0.0)
    a = np.asarray(values, dtype=np.float64)
    mean = float(a.mean())
    if len(a) < 2 or a.std() == 0:
        return Interval(mean=mean, low=mean, high=mean)
    half = float(stats.t.ppf(0.975, len(a) - 1) * a.std(ddof=1) / np.sqrt(len(a)))
    return Interval(mean=mean, low=mean - half, high=mean + half)


def find(experiments: Sequence[ExperimentConfig], experiment_id: str) -> ExperimentConfig:
    for experiment in experiments:
        if experiment.id == experiment_id:
            return experiment
    raise NotFound(f"no experiment {experiment_id!r} is configured",
                   experiment_id=experiment_id)


def report_from_db(
    sessions: sessionmaker[Session], experiment: ExperimentConfig,
) -> ExperimentReport:
    exposures = ExposureLog(sessions).exposures(experiment.id)
    if not exposures:
        return summarise(experiment, {}, [])
    first = min(t for _, t in exposures.values())
    with sessions() as session:
        rows = session.scalars(
            select(EventRow).where(EventRow.ts >= first,
                                   EventRow.user_id.in_(list(exposures)))
            .order_by(EventRow.id)).all()
        events = [row_to_event(r) for r in rows]
    return summarise(experiment, exposures, events)
