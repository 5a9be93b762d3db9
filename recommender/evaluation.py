"""Offline evaluation: temporal split per user, full ranking, the feed vs baselines.

For each user, events are ordered by time and the last ``test_share`` of them is held
out; the held-out *positives* (complete, like, share, save, replay, or a view of at least
half the item) are what a good feed should surface. Every user's earlier events are
replayed, at their own timestamps, into the real pipeline in this process (catalog,
profiles, counters, collaborative models, channels, ranker, re-ranking): the state's
clock reads the log's time (``OnlineState.now``), so decay and trending are as of the
events. Each user's feed is then asked for the top K out of the whole catalog minus the
items that user already engaged with (full ranking, no sampled negatives).

The feed is measured twice in the same run: as configured (exploration, MMR and caps
on; the exploration draws are seeded, so the run is repeatable) and with exploration,
MMR and caps off, so their cost is a number; and ranked by the learned path, the online
ranker's model trained on the training events alone (``learned_ranker``: each user's
feed candidates before their last share of training events, labelled by what they
engaged with in it). Three baselines are fitted on the same
training events and rank the same catalog minus the same seen items: popularity (users
engaged), ItemKNN (cosine, 100 neighbours) and EASE (Steck 2019, ``lambda`` 500), on the
binary user × item matrix of training engagements.

Metrics: Recall@K (held-out positives found / held-out positives), NDCG@K (binary
relevance), catalogue coverage (share of the catalog recommended to anyone) and novelty
(mean self-information -log2 p(i), p(i) the share of training users engaged with i).

``movielens_log`` turns a MovieLens directory (``movies.csv``, ``ratings.csv``) into
items and events the way the issue's protocol does: a movie is an item with its title
and genres (genres are its tags and categories; its release year, from the title, is
its creation time; its creator is the movie itself); a rating is a ``view`` with watch
ratio rating / 5, plus a ``like`` one second later for 4 stars and up.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import re
import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel
from scipy import sparse

from core.contracts import Event
from core.errors import InvalidInput
from recommender.catalog import Catalog, CatalogItem, categories_from_labels, epoch, normalise_tag
from recommender.collaborative import item_knn
from recommender.events import parse_events
from recommender.impressions import ImpressionLog
from recommender.online_ranker import RankerStore, RankerTrainer
from recommender.profiles import ENGAGEMENT_TYPES, watch_ratio
from recommender.ranking import Ranker, load_ranker
from recommender.service import FeedService
from recommender.settings import RecommenderSettings
from recommender.state import OnlineState

POSITIVE_TYPES = frozenset({"complete", "like", "share", "save", "replay"})


EASE_LAMBDA = 500.0
KNN_NEIGHBOURS = 100
MOVIELENS_DURATION_MS = 100_000
TextEncoder = Callable[[list[str]], np.ndarray]


class ModelMetrics(BaseModel):
    model: str
    users: int
    metrics: dict[str, float]


class EvaluationReport(BaseModel):
    items: int
    events: int
    users_evaluated: int
    results: list[ModelMetrics]
    notes: list[str] = []


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
    progress: Callable[[int, int], None] | None = None, validation: bool = False,
) -> EvaluationReport:
    """The JSON Lines form: items (with precomputed fused vectors) and events."""
    records = list(read_jsonl(items_path))
    events = parse_events(read_jsonl(events_path))
    return evaluate_log(records, events, settings=settings, ks=ks, test_share=test_share,
                        ranker=ranker, progress=progress, validation=validation)


def movie_year(title: str) -> int | None:
    match = re.search(r"\((\d{4})(?:[-–]\d{0,4})?\)\s*$", title.strip())
    return int(match.group(1)) if match else None


def movielens_log(directory: Path) -> tuple[list[dict[str, Any]], list[Event]]:
    """Items and events from ``movies.csv`` and ``ratings.csv`` (see the module doc)."""
    movies_path, ratings_path = directory / "movies.csv", directory / "ratings.csv"
    for path in (movies_path, ratings_path):
        if not path.is_file():
            raise InvalidInput(f"{path} is missing: not a MovieLens directory")
    records: list[dict[str, Any]] = []
    with movies_path.open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            genres = [g for g in row["genres"].split("|") if g and g != "(no genres listed)"]
            year = movie_year(row["title"])
            created = datetime(year or 1900, 1, 1, tzinfo=UTC)
            item_id = f"ml-{row['movieId']}"
            records.append({
                "id": item_id, "creator_id": item_id, "created_at": created.isoformat(),
                "title": row["title"], "tags": genres,
                "labels": [{"id": f"genre-{g.lower()}", "name": g, "confidence": 1.0}
                           for g in genres],
            })
    events: list[Event] = []
    with ratings_path.open(encoding="utf-8", newline="") as handle:
        for n, row in enumerate(csv.DictReader(handle)):
            user, item = f"ml-user-{row['userId']}", f"ml-{row['movieId']}"
            rating, ts = float(row["rating"]), int(row["timestamp"])
            when = datetime.fromtimestamp(ts, tz=UTC)
            events.append(Event(
                event_id=f"ml-{n}-view", user_id=user, item_id=item, type="view", ts=when,
                watch_ms=int(rating / 5.0 * MOVIELENS_DURATION_MS),
                item_duration_ms=MOVIELENS_DURATION_MS))
            if rating >= 4.0:
                events.append(Event(
                    event_id=f"ml-{n}-like", user_id=user, item_id=item, type="like",
                    ts=datetime.fromtimestamp(ts + 1, tz=UTC)))
    return records, events


def item_text(record: dict[str, Any]) -> str:
    """What the text embedder reads for an item: title, then tags."""
    tags = ", ".join(str(t) for t in record.get("tags") or [])
    return f"{record.get('title') or record['id']}. {tags}".strip()


def attach_text_vectors(
    records: list[dict[str, Any]], encode: TextEncoder, cache: Path | None = None,
    model_id: str = "text",
) -> None:
    """Give each record ``embeddings.fused`` = the text embedder's vector of its title and
    tags (what the pipeline fuses for a text-only item); cached by content hash."""
    texts = [item_text(r) for r in records]
    digest = hashlib.sha256("\n".join([model_id, *texts]).encode()).hexdigest()[:16]
    path = cache / f"item-text-{digest}.npy" if cache is not None else None
    if path is not None and path.exists():
        vectors = np.load(path)
    else:
        vectors = np.asarray(encode(texts), dtype=np.float32)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, vectors)
    for record, vector in zip(records, vectors, strict=True):
        record["embeddings"] = {"fused": vector.tolist(), "model_id": model_id}


def engagement_matrix(
    events: list[Event], users: list[str], item_ids: list[str],
) -> sparse.csr_matrix:
    """Binary users × items: 1 where the user engaged with the item (any engagement)."""
    user_row = {u: r for r, u in enumerate(users)}
    item_col = {i: c for c, i in enumerate(item_ids)}
    pairs = {(user_row[e.user_id], item_col[e.item_id]) for e in events
             if e.type in ENGAGEMENT_TYPES and e.user_id in user_row and e.item_id in item_col}
    if not pairs:
        return sparse.csr_matrix((len(users), len(item_ids)), dtype=np.float32)
    rows, cols = zip(*pairs, strict=True)
    return sparse.csr_matrix(
        (np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(len(users), len(item_ids)))


def ease_scores(train: sparse.csr_matrix, users: np.ndarray, lam: float) -> np.ndarray:
    """EASE (Steck 2019): B = I - P diagMat(1 / diag P), P = (XᵀX + λI)⁻¹; scores X_u B.
    Fitted on the items anyone engaged with; the others score 0."""
    active = np.flatnonzero(np.asarray(train.sum(axis=0)).ravel() > 0)
    x = train[:, active]
    gram = (x.T @ x).toarray().astype(np.float64)
    gram[np.diag_indices_from(gram)] += lam
    inverse = np.linalg.inv(gram)
    weights = -inverse / np.diag(inverse)
    weights[np.diag_indices_from(weights)] = 0.0
    scores = np.zeros((len(users), train.shape[1]))
    scores[:, active] = x[users].toarray() @ weights
    return scores


def _top_unseen(scores: np.ndarray, seen: sparse.csr_matrix, item_ids: list[str],
                k: int) -> list[list[str]]:
    """Per row, the ``k`` best item ids that the row's user has not engaged with."""
    out: list[list[str]] = []
    for r in range(scores.shape[0]):
        row = scores[r].astype(np.float64).copy()
        row[seen[r].indices] = -np.inf
        best = np.argpartition(-row, k)[:k]
        best = best[np.argsort(-row[best], kind="stable")]
        out.append([item_ids[c] for c in best.tolist() if np.isfinite(row[c])])
    return out


def feed_variants(settings: RecommenderSettings) -> dict[str, RecommenderSettings]:
    """The feed as configured, and with exploration, MMR and caps off."""
    plain = settings.model_copy(update={
        "exploration_epsilon": 0.0, "mmr_lambda": 1.0, "max_per_creator": MAX_CAP,
        "max_per_category": MAX_CAP})
    return {"feed": settings, "feed, no exploration/diversity": plain}


MAX_CAP = 10_000


def evaluate_log(
    records: list[dict[str, Any]], events: list[Event], *,
    settings: RecommenderSettings | None = None, ks: tuple[int, ...] = (10, 20),
    test_share: float = 0.2, ranker: Ranker | None = None,
    progress: Callable[[int, int], None] | None = None, validation: bool = False,
    baselines: bool = True, notes: list[str] | None = None, learn_ranker: bool = True,
) -> EvaluationReport:
    """``validation``: hold out each user's last ``test_share`` first and evaluate on the
    rest, split again the same way (for choosing settings without the test events).
    ``learn_ranker``: also measure the feed ranked by the learned (online) ranker,
    trained on the training events only (``learned_ranker``)."""
    settings = (settings or RecommenderSettings()).model_copy(
        update={"background_refits": False})
    notes = list(notes or [])
    if validation:
        events, _ = split_per_user(list(events), test_share)
        notes.append("validation split: each user's last share of events dropped first")
    catalog = catalog_from_records(records, settings)
    train, tests = split_per_user(list(events), test_share)
    state = OnlineState.create(settings, catalog)
    ranker = ranker or load_ranker(settings)
    learned: Ranker | None = None
    replay = train
    if learn_ranker:
        # The learned path: the online ranker's model trained on what the feed's own
        # candidates led to. Each user's last share of training events is replayed after
        # the rest; candidates are taken before it and labelled by it.
        early, window = split_per_user(train, test_share)
        _replay(state, early)
        learned, note = learned_ranker(state, ranker, window, settings)
        notes.append(note)
        in_early = {id(e) for e in early}
        replay = [e for e in train if id(e) not in in_early]
    _replay(state, replay)
    services = {name: FeedService(state, ranker, settings=variant)
                for name, variant in feed_variants(settings).items()}
    if learned is not None:
        services["feed, learned ranker"] = FeedService(state, learned, settings=settings)

    item_ids = catalog.item_ids()
    users = sorted({e.user_id for e in train} | set(tests))
    user_row = {u: r for r, u in enumerate(users)}
    matrix = engagement_matrix(train, users, item_ids)
    engaged_users = np.asarray(matrix.sum(axis=0)).ravel()
    n_train_users = max(len({e.user_id for e in train}), 1)
    novelty_of = dict(zip(item_ids, -np.log2((engaged_users + 1) / (n_train_users + 1)),
                          strict=True))

    k_max = max(ks)
    test_users = sorted(tests)
    lists: dict[str, dict[str, list[str]]] = {name: {} for name in services}
    total = len(test_users) * len(services)
    done = 0
    for name, service in services.items():
        for user in test_users:
            lists[name][user] = [i.item_id for i in service.feed(user, k_max).items]
            done += 1
            if progress is not None:
                progress(done, total)
    if baselines and test_users:
        rows = np.asarray([user_row[u] for u in test_users])
        seen = matrix[rows]
        popularity = np.tile(engaged_users.astype(np.float64), (len(rows), 1))
        models = {
            "popularity": popularity,
            "itemknn": np.asarray((matrix[rows] @ item_knn(matrix, KNN_NEIGHBOURS, 0.0).T)
                                  .todense()),
            "ease": ease_scores(matrix, rows, EASE_LAMBDA),
        }
        for name, scores in models.items():
            ranked = _top_unseen(scores, seen, item_ids, k_max)
            lists[name] = dict(zip(test_users, ranked, strict=True))

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
            float(np.mean([novelty_of.get(i, 0.0) for i in recommended]))
            if recommended else 0.0)
        if model in services:
            info = services[model].ranker.info
            name = f"{model} ({info.name} v{info.version})"
        else:
            name = model
        results.append(ModelMetrics(model=name, users=len(per_user), metrics=metrics))
    return EvaluationReport(items=len(records), events=len(events),
                            users_evaluated=len(tests), results=results, notes=notes)


def _replay(state: OnlineState, events: list[Event]) -> None:
    """Apply events in order and refit what the background workers would have."""
    for event in events:
        state.apply(event)
    state.collaborative.refresh()
    if events:
        state.cohorts.refresh(state.profiles, state.now())


LEARN_NEGATIVES_PER_USER = 100


def learned_ranker(
    state: OnlineState, heuristic: Ranker, window: dict[str, Any],
    settings: RecommenderSettings,
) -> tuple[Ranker | None, str]:
    """The online ranker's model (``RankerTrainer.learn``: standardised logistic SGD)
    trained on each user's feed candidates as of ``state``, labelled 1 for the items the
    user engaged with in ``window`` (user -> (cutoff, positives)) and 0 otherwise (up to
    ``LEARN_NEGATIVES_PER_USER`` per user, drawn with the settings' seed). None, with the
    reason, when there are too few rows or one class only."""
    service = FeedService(state, heuristic, settings=settings)
    rng = np.random.default_rng(settings.seed)
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    for user in sorted(window):
        ids, rows = service.candidate_rows(user)
        if not ids:
            continue
        positives = window[user][1]
        label = np.fromiter((i in positives for i in ids), dtype=bool, count=len(ids))
        negative = np.flatnonzero(~label)
        if len(negative) > LEARN_NEGATIVES_PER_USER:
            negative = rng.choice(negative, LEARN_NEGATIVES_PER_USER, replace=False)
        keep = np.sort(np.concatenate([np.flatnonzero(label), negative]))
        xs.append(rows[keep])
        ys.append(label[keep].astype(np.int64))
    y = np.concatenate(ys) if ys else np.zeros(0, np.int64)
    if len(y) < settings.online_ranker.min_rows or y.min(initial=0) == y.max(initial=0):
        return None, (f"learned ranker not assessed: {len(y)} candidate rows with "
                      f"{int(y.sum())} positives (needs {settings.online_ranker.min_rows} "
                      "and both classes)")
    with tempfile.TemporaryDirectory() as directory:
        trainer = RankerTrainer(settings, ImpressionLog(1.0), RankerStore(Path(directory)),
                                fallback=heuristic)
        model = trainer.learn(np.vstack(xs), y)
    return model, (f"learned ranker: the online ranker's model trained on {len(y)} feed "
                   f"candidate rows ({int(y.sum())} engaged) of {len(ys)} users, taken "
                   "before each user's last share of training events and labelled by it")


def plot_report(report: EvaluationReport, path: Path) -> None:
    """Bars of each NDCG and recall figure per model, written as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [m for m in report.results[0].metrics if m.startswith(("ndcg", "recall"))]
    fig, ax = plt.subplots(figsize=(10, 4.5))
    width = 0.8 / max(len(report.results), 1)
    for n, result in enumerate(report.results):
        ax.bar(np.arange(len(names)) + n * width, [result.metrics[m] for m in names], width,
               label=result.model)
    ax.set_xticks(np.arange(len(names)) + width * (len(report.results) - 1) / 2, names)
    ax.set_title(f"{report.users_evaluated} users, {report.items} items, "
                 f"{report.events} events (temporal split)")
    ax.legend(fontsize=8, loc="lower center", framealpha=0.9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
