"""A ranker that trains itself from the stream: impressions, outcomes, versions, rollback.

Monolith's point is minutes, not days: the model serving feeds is updated from what the
feeds it served led to. Here:

1. **Impressions with their features.** Each feed response records the ranking features
   of the items it served (``ImpressionLog.record``; the same rows the ranker scored).
2. **Outcomes label them.** An event on a served item labels its row (``outcome``): 1
   for an engagement worth having (a view of at least half the item, complete, replay,
   like, share, save, comment), 0 for a skip, hide, report or bounce; a row with no
   outcome within ``outcome_window_seconds`` is labelled 0 (shown, ignored).
3. **Incremental updates.** ``RankerTrainer.update`` (a background thread in serving,
   every ``update_seconds``) takes the rows labelled since its last update, keeps the
   most recent ``holdout_share`` of them aside, continues training a copy of the latest
   candidate on the rest (scikit-learn ``SGDClassifier.partial_fit``, logistic loss, averaged, on
   standardised features), and compares the candidate's ROC AUC with the serving
   ranker's on the held-out rows, the most recent events.
4. **Promotion and versions.** Only a candidate whose AUC beats the serving ranker's by
   ``promote_margin`` is promoted: written as a new version under
   ``model_dir/online`` (``v000N.json``: standardisation, coefficients, its metric) and
   appended to ``history.json``; serving swaps it in at once. The heuristic stays until
   ``min_rows`` labelled rows exist, and the feed response says so (``RankerInfo.note``).
5. **Rollback.** ``RankerStore.rollback`` (``reelsift ranker rollback``, or the admin
   endpoint) removes the current version from the history: the previous one serves again
   (the heuristic when none is left). Other processes read the history on their next
   update tick.
"""

from __future__ import annotations

import copy
import json
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from core.storage.files import atomic_path
from recommender.features import CHANNELS, DENSE_FEATURES, FeatureBatch
from recommender.impressions import ImpressionLog
from recommender.ranking import HeuristicRanker, Ranker, RankerInfo
from recommender.settings import RecommenderSettings

log = logging.getLogger(__name__)

ONLINE = "reelsift.ranker.online_logistic.v1"
LEARNED_FEATURES = (*DENSE_FEATURES, *(f"rank_{c}" for c in CHANNELS))
HISTORY_FILE = "history.json"


def feature_rows(batch: FeatureBatch, rows: list[int] | None = None) -> np.ndarray:
    """The learned ranker's input: dense features, then each channel's rank score (of
    ``rows`` only, if given)."""
    dense = batch.dense if rows is None else batch.dense[rows]
    ranks = np.zeros((dense.shape[0], len(CHANNELS)), dtype=np.float32)
    if batch.channel_ranks is not None:
        source = batch.channel_ranks if rows is None else batch.channel_ranks[rows]
        for c, name in enumerate(batch.channel_names):
            if name in CHANNELS:
                ranks[:, CHANNELS.index(name)] = source[:, c]
    return np.hstack([dense.astype(np.float32), ranks])


def batch_of_rows(rows: np.ndarray) -> FeatureBatch:
    """A ``FeatureBatch`` holding stored rows, so any ranker can score them again."""
    n = rows.shape[0]
    dense = rows[:, : len(DENSE_FEATURES)]
    ranks = rows[:, len(DENSE_FEATURES):].astype(np.float64)
    return FeatureBatch([str(i) for i in range(n)], dense, np.zeros((n, 3), np.int64),
                        ranks.max(axis=1, initial=0.0).astype(np.float32), ranks, CHANNELS)


class LinearRanker:
    """Logistic regression over standardised ``LEARNED_FEATURES``; scores are logits."""

    def __init__(self, version: int, mean: np.ndarray, scale: np.ndarray, coef: np.ndarray,
                 intercept: float, metric: float | None = None) -> None:
        self.mean, self.scale = mean.astype(np.float32), scale.astype(np.float32)
        self.coef, self.intercept = coef.astype(np.float32), float(intercept)
        self.metric = metric
        self.version = version
        self.info = RankerInfo(name=ONLINE, version=str(version))

    def score(self, batch: FeatureBatch) -> np.ndarray:
        return self.logits(feature_rows(batch))

    def logits(self, rows: np.ndarray) -> np.ndarray:
        if not len(rows):
            return np.zeros(0, np.float32)
        return (((rows - self.mean) / self.scale) @ self.coef + self.intercept).astype(
            np.float32)

    def to_json(self) -> dict[str, Any]:
        return {"name": ONLINE, "version": self.version, "features": list(LEARNED_FEATURES),
                "mean": self.mean.tolist(), "scale": self.scale.tolist(),
                "coef": self.coef.tolist(), "intercept": self.intercept,
                "metric": self.metric}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LinearRanker:
        if list(data.get("features", [])) != list(LEARNED_FEATURES):
            raise ValueError("trained on another feature layout")
        return cls(int(data["version"]), np.asarray(data["mean"]), np.asarray(data["scale"]),
                   np.asarray(data["coef"]), float(data["intercept"]), data.get("metric"))


class RankerStore:
    """Promoted versions under one directory; the last entry of the history serves."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()

    def _history(self) -> list[dict[str, Any]]:
        path = self.directory / HISTORY_FILE
        if not path.exists():
            return []
        return list(json.loads(path.read_text()).get("promoted", []))

    def _write_history(self, history: list[dict[str, Any]]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.directory / HISTORY_FILE, suffix=".json") as tmp:
            tmp.write_text(json.dumps({"promoted": history}, indent=2))

    def history(self) -> list[dict[str, Any]]:
        with self._lock:
            return self._history()

    def next_version(self) -> int:
        existing = [int(p.stem[1:]) for p in self.directory.glob("v*.json")
                    if p.stem[1:].isdigit()]
        return max(existing, default=0) + 1

    def promote(self, ranker: LinearRanker, serving_metric: float | None, rows: int) -> None:
        with self._lock:
            self.directory.mkdir(parents=True, exist_ok=True)
            with atomic_path(self.directory / f"v{ranker.version:04d}.json",
                             suffix=".json") as tmp:
                tmp.write_text(json.dumps(ranker.to_json()))
            history = self._history()
            history.append({"version": ranker.version, "metric": ranker.metric,
                            "serving_metric": serving_metric, "rows": rows,
                            "promoted_at": datetime.now(UTC).isoformat()})
            self._write_history(history)

    def current(self) -> LinearRanker | None:
        with self._lock:
            history = self._history()
        if not history:
            return None
        return self.load(int(history[-1]["version"]))

    def load(self, version: int) -> LinearRanker:
        path = self.directory / f"v{version:04d}.json"
        return LinearRanker.from_json(json.loads(path.read_text()))

    def rollback(self) -> int | None:
        """Drop the serving version; returns the version that serves now (None: the
        heuristic). The dropped version's file stays, for the record."""
        with self._lock:
            history = self._history()
            if not history:
                raise LookupError("no promoted ranker version to roll back")
            history.pop()
            self._write_history(history)
            return int(history[-1]["version"]) if history else None

    def stamp(self) -> float:
        path = self.directory / HISTORY_FILE
        return path.stat().st_mtime if path.exists() else 0.0


@dataclass
class UpdateResult:
    rows: int  # labelled rows in this update
    trained_rows: int  # rows the candidate has learned from, in all
    candidate_metric: float | None = None
    serving_metric: float | None = None
    promoted: int | None = None  # the version promoted
    reason: str = ""


@dataclass
class RankerTrainer:
    """Incremental training, the promotion gate, and which ranker serves."""

    settings: RecommenderSettings
    impressions: ImpressionLog
    store: RankerStore
    fallback: Ranker = field(default_factory=HeuristicRanker)
    _model: Any = None  # the candidate SGDClassifier, trained incrementally
    _mean: np.ndarray | None = None
    _scale: np.ndarray | None = None
    _trained_rows: int = 0
    _recent: deque[tuple[np.ndarray, int, float]] = field(default_factory=deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stamp: float = -1.0
    _serving: LinearRanker | None = None

    @property
    def labelled_rows(self) -> int:
        return self._trained_rows + len(self._recent)

    def serving(self) -> Ranker:
        """The promoted version, or the heuristic with a note saying why."""
        stamp = self.store.stamp()
        if stamp != self._stamp:  # promoted or rolled back here or by another process
            self._stamp = stamp
            try:
                self._serving = self.store.current()
            except (OSError, ValueError) as exc:
                log.error("ranker history unreadable, serving the heuristic: %s", exc)
                self._serving = None
        if self._serving is not None:
            return self._serving
        need = self.settings.online_ranker.min_rows
        note = (f"heuristic: {self.labelled_rows} labelled impressions, the learned ranker "
                f"needs {need}" if self.labelled_rows < need else
                "heuristic: no learned version has beaten it yet")
        ranker = copy.copy(self.fallback)
        ranker.info = self.fallback.info.model_copy(update={"note": note})
        return ranker

    def update(self, now: float | None = None) -> UpdateResult:
        """One incremental step; see the module doc."""
        s = self.settings.online_ranker
        with self._lock:
            self.impressions.expire(time.time() if now is None else now)
            new = self.impressions.take()
            if not new:
                return UpdateResult(0, self._trained_rows, reason="no new outcomes")
            new.sort(key=lambda r: r[2])
            self._recent.extend(new)
            if self.labelled_rows < s.min_rows:
                return UpdateResult(len(new), self._trained_rows,
                                    reason=f"{self.labelled_rows} labelled rows < {s.min_rows}")
            rows = list(self._recent)
            n_hold = max(1, int(len(rows) * s.holdout_share))
            train, held = rows[:-n_hold], rows[-n_hold:]
            x_hold = np.vstack([r[0] for r in held])
            y_hold = np.asarray([r[1] for r in held])
            if train:
                self._partial_fit(np.vstack([r[0] for r in train]),
                                  np.asarray([r[1] for r in train]))
                self._trained_rows += len(train)
            # the held-out rows are the next update's training rows
            self._recent = deque(held, maxlen=None)
            if self._model is None or len(set(y_hold.tolist())) < 2:
                return UpdateResult(len(new), self._trained_rows,
                                    reason="held-out rows have one class only")
            candidate = self._candidate()
            serving = self.serving()
            from sklearn.metrics import roc_auc_score

            candidate_auc = float(roc_auc_score(y_hold, candidate.logits(x_hold)))
            serving_auc = float(roc_auc_score(y_hold, serving.score(batch_of_rows(x_hold))))
            result = UpdateResult(len(new), self._trained_rows, candidate_auc, serving_auc)
            if candidate_auc > serving_auc + s.promote_margin:
                candidate.metric = candidate_auc
                self.store.promote(candidate, serving_auc, self._trained_rows)
                result.promoted = candidate.version
                result.reason = "promoted"
            else:
                result.reason = "candidate did not beat the serving ranker"
            return result

    def learn(self, x: np.ndarray, y: np.ndarray) -> LinearRanker:
        """Train on rows labelled elsewhere (candidates of a replayed log, labelled by
        what the user engaged with next) with the same standardisation, learner and
        epochs as the incremental updates; the candidate is returned, not promoted."""
        with self._lock:
            self._partial_fit(x, y)
            self._trained_rows += len(y)
            return self._candidate()

    def _partial_fit(self, x: np.ndarray, y: np.ndarray) -> None:
        from sklearn.linear_model import SGDClassifier

        if self._model is None:
            # standardisation fixed from the first rows, so later updates stay comparable
            self._mean = x.mean(axis=0)
            self._scale = np.where(x.std(axis=0) > 1e-6, x.std(axis=0), 1.0)
            s = self.settings.online_ranker
            # averaged SGD (Polyak-Ruppert): the served weights are the mean over the updates,
            # not wherever the last noisy steps left them; without it the learned ranker
            # won or lost against the heuristic by up to 8% NDCG depending on the split
            self._model = SGDClassifier(loss="log_loss", alpha=s.l2, learning_rate="constant",
                                        eta0=s.learning_rate, random_state=self.settings.seed,
                                        average=True)
        assert self._mean is not None and self._scale is not None
        z = (x - self._mean) / self._scale
        for _ in range(self.settings.online_ranker.epochs_per_update):
            self._model.partial_fit(z, y, classes=np.asarray([0, 1]))

    def _candidate(self) -> LinearRanker:
        assert self._mean is not None and self._scale is not None
        return LinearRanker(self.store.next_version(), self._mean, self._scale,
                            np.asarray(self._model.coef_).ravel(),
                            float(np.asarray(self._model.intercept_).ravel()[0]))
