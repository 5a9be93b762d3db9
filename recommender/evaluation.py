"""Offline evaluation: temporal split per user, full ranking, the feed vs popularity.

For each user, events are ordered by time and the last ``test_share`` of them is held
out; the held-out *positives* (complete, like, share, save, replay, or a view of at least
half the item) are what a good feed should surface. Every user's earlier events are
replayed into the real pipeline (catalog, profiles, channels, ranker, re-ranking; the
vector index built from the items' precomputed embeddings); then each user's feed is
asked for the top K out of the whole catalog minus the items that user already saw
(full ranking, no sampled negatives), with exploration off so the run is repeatable.
The popularity baseline ranks the same catalog by training positives, minus seen items.

Metrics: Recall@K (held-out positives found / held-out positives), NDCG@K (binary
relevance), catalogue coverage (share of the catalog recommended to anyone) and novelty
(mean self-information -log2 p(i), p(i) the share of training users with a positive on i).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel

from core.contracts import Event
from core.errors import InvalidInput
from recommender.catalog import Catalog, CatalogItem, categories_from_labels, epoch, normalise_tag
from recommender.events import parse_events
from recommender.profiles import watch_ratio
from recommender.ranking import Ranker, load_ranker
from recommender.service import FeedService
from recommender.settings import RecommenderSettings
from recommender.state import OnlineState

POSITIVE_TYPES = frozenset({"complete", "like", "share", "save", "replay"})


class ModelMetrics(BaseModel):
    model: str
    users: int
    metrics: dict[str, float]


class EvaluationReport(BaseModel):
    items: int
    events: int
    users_evaluated: int
    results: list[ModelMetrics]


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        for n, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError as exc:
                raise InvalidInput(f"{path}:{n}: not JSON: {exc.msg}", line=n) from exc


def is_positive(event: Event) -> bool:
    if event.type in POSITIVE_TYPES:
        return True
    return event.type == "view" and (watch_ratio(event) or 0.0) >= 0.5


def _fused(record: dict[str, Any], n: int) -> np.ndarray | None:
    raw = record.get("embeddings")
    if isinstance(raw, dict):
        raw = raw.get("fused")
    if raw is None:
        return None
    if not isinstance(raw, list) or not raw:
        raise InvalidInput(f"item {n}: embeddings must be a list of floats or "
                           '{"fused": [...]}', index=n)
    return np.asarray(raw, dtype=np.float32)


def catalog_from_records(
    records: list[dict[str, Any]], settings: RecommenderSettings,
) -> Catalog:
    vectors: list[np.ndarray | None] = [_fused(r, n) for n, r in enumerate(records)]
    dims = {v.shape[0] for v in vectors if v is not None}
    if len(dims) > 1:
        raise InvalidInput(f"items carry fused vectors of different sizes: {sorted(dims)}")
    dim = dims.pop() if dims else 8
    model_ids = {str((r.get("embeddings") or {}).get("model_id", "precomputed"))
                 if isinstance(r.get("embeddings"), dict) else "precomputed" for r in records}
    catalog = Catalog(settings, dim, sorted(model_ids)[0])
    for n, (record, vec) in enumerate(zip(records, vectors, strict=True)):
        try:
            created = datetime.fromisoformat(str(record["created_at"]))
            item = CatalogItem(
                id=str(record["id"]), creator_id=str(record.get("creator_id") or "unknown"),
                created_at=epoch(created),
                tags=tuple(dict.fromkeys(normalise_tag(t) for t in record.get("tags") or [])),
                categories=categories_from_labels(record.get("labels") or []),
            )
        except (KeyError, ValueError) as exc:
            raise InvalidInput(f"item {n}: {exc}", index=n) from exc
        for label in record.get("labels") or []:
            if label.get("id") and label.get("name"):
                catalog.category_names[str(label["id"])] = str(label["name"])
        catalog.add(item, vec)
    return catalog


def split_per_user(events: list[Event], test_share: float) -> tuple[list[Event], dict[str, Any]]:
    """Train events (all users, time order) and per user (cutoff ts, held-out positives)."""
    by_user: dict[str, list[Event]] = {}
    for e in events:
        by_user.setdefault(e.user_id, []).append(e)
    train: list[Event] = []
    tests: dict[str, Any] = {}
    for user, own in by_user.items():
        own.sort(key=lambda e: e.ts)
        n_test = math.floor(len(own) * test_share)
        if n_test == 0 or n_test == len(own):
            train.extend(own)
            continue
        cut = len(own) - n_test
        train.extend(own[:cut])
        seen_before = {e.item_id for e in own[:cut]}
        held = {e.item_id for e in own[cut:] if is_positive(e)} - seen_before
        if held:
            tests[user] = (epoch(own[cut].ts), held)
    train.sort(key=lambda e: e.ts)
    return train, tests


def ranking_metrics(recommended: list[str], relevant: set[str], k: int) -> tuple[float, float]:
    top = recommended[:k]
    hits = [1.0 if item in relevant else 0.0 for item in top]
    recall = sum(hits) / len(relevant)
    dcg = sum(h / math.log2(r + 2) for r, h in enumerate(hits))
    ideal = sum(1.0 / math.log2(r + 2) for r in range(min(len(relevant), k)))
    return recall, dcg / ideal if ideal else 0.0


def evaluate(
    items_path: Path, events_path: Path, *, settings: RecommenderSettings | None = None,
    ks: tuple[int, ...] = (10, 20), test_share: float = 0.2, ranker: Ranker | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> EvaluationReport:
    settings = (settings or RecommenderSettings()).model_copy(
        update={"exploration_epsilon": 0.0})
    records = list(read_jsonl(items_path))
    events = parse_events(read_jsonl(events_path))
    catalog = catalog_from_records(records, settings)
    train, tests = split_per_user(events, test_share)
    clock_now = [0.0]
    state = OnlineState.create(settings, catalog, clock=lambda: clock_now[0])
    for event in train:
        state.apply(event)
    if train:
        state.cohorts.refresh(state.profiles, epoch(train[-1].ts))
    service = FeedService(state, ranker or load_ranker(settings))

    positive_users: dict[str, set[str]] = {}
    for e in train:
        if is_positive(e):
            positive_users.setdefault(e.item_id, set()).add(e.user_id)
    n_train_users = len({e.user_id for e in train}) or 1
    popularity = sorted(positive_users, key=lambda i: (-len(positive_users[i]), i))

    def novelty(item: str) -> float:
        share = (len(positive_users.get(item, ())) + 1) / (n_train_users + 1)
        return -math.log2(share)

    k_max = max(ks)
    lists: dict[str, dict[str, list[str]]] = {"feed": {}, "popularity": {}}
    for n, (user, (cutoff, _)) in enumerate(sorted(tests.items())):
        clock_now[0] = cutoff
        lists["feed"][user] = [i.item_id for i in service.feed(user, k_max).items]
        profile = state.profiles.get(user)
        seen = profile.excluded() if profile is not None else set()
        lists["popularity"][user] = [i for i in popularity if i not in seen][:k_max]
        if progress is not None:
            progress(n + 1, len(tests))

    results = []
    for model, per_user in lists.items():
        metrics: dict[str, float] = {}
        for k in ks:
            pairs = [ranking_metrics(per_user[u], tests[u][1], k) for u in per_user]
            metrics[f"recall@{k}"] = float(np.mean([p[0] for p in pairs])) if pairs else 0.0
            metrics[f"ndcg@{k}"] = float(np.mean([p[1] for p in pairs])) if pairs else 0.0
        recommended = [i for recs in per_user.values() for i in recs[:k_max]]
        metrics[f"coverage@{k_max}"] = len(set(recommended)) / max(len(catalog), 1)
        metrics[f"novelty@{k_max}"] = (
            float(np.mean([novelty(i) for i in recommended])) if recommended else 0.0)
        name = service.ranker.info.name if model == "feed" else "popularity"
        results.append(ModelMetrics(model=name, users=len(per_user), metrics=metrics))
    return EvaluationReport(items=len(records), events=len(events), users_evaluated=len(tests),
                            results=results)
