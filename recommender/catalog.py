"""The catalog: approved items only, their vector index and inverted indexes.

The database is the source of truth; the catalog is rebuilt from it at start
(``Catalog.load``), reusing a persisted vector index under ``index_dir`` when it matches
the fused-vector model. It follows item state changes through
``ItemStore.subscribe(catalog.on_state_changes)``: an approved item is added, and an item
that leaves ``approved`` is dropped from the vector index (alive bitmap) and every
inverted index before the listener returns, so the next feed cannot show it.

A listener hears only its own process. Changes other processes make (another worker,
another replica) reach this catalog through ``follow``, which reads the items whose
``updated_at`` moved since the last call and adds or drops them the same way; it looks
``FOLLOW_OVERLAP`` back, for transactions that committed after a later one. Feeds served
by several processes also confirm each page against ``items.state``
(``confirm_approved``), so a takedown never waits for the next follow.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session, sessionmaker

from core.contracts import ItemState
from core.storage.db import engine_of
from core.storage.items import StateChange
from core.storage.tables import AnalysisRow, EmbeddingRow, ItemRow, as_utc, utcnow
from recommender.columns import ItemColumns, Vocabulary
from recommender.settings import RecommenderSettings
from recommender.vector_index import VectorIndex

log = logging.getLogger(__name__)

FUSED = "fused"
NO_MODEL = "none"
# How far back ``follow`` looks past the newest change it has seen: a transaction may
# commit this long after it stamped ``updated_at``, or replicas' clocks differ this much.
FOLLOW_OVERLAP = timedelta(seconds=30)
# The per-request page check, built once: a statement built per call spends more CPU in
# SQLAlchemy than in the database (170 us against 70 on SQLite at 100k items).
_STATE_OF_IDS = select(ItemRow.id, ItemRow.state).where(
    ItemRow.id.in_(bindparam("ids", expanding=True)))


@dataclass(slots=True, frozen=True)
class CatalogItem:
    """What matching and ranking need to know about one approved item."""

    id: str
    creator_id: str
    created_at: float  # epoch seconds
    tags: tuple[str, ...] = ()
    # (label id, confidence) for the leaf and each ancestor, as the taxonomy returns them
    categories: tuple[tuple[str, float], ...] = ()

    @property
    def top_category(self) -> str | None:
        return self.categories[-1][0] if self.categories else None


def epoch(ts: datetime) -> float:
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.timestamp()


def normalise_tag(tag: str) -> str:
    return sys.intern(tag.strip().lstrip("#").lower())


def categories_from_labels(labels: Iterable[dict[str, Any]]) -> tuple[tuple[str, float], ...]:
    """Label dicts (``core.contracts.Label``) to (id, confidence), best confidence per id.

    The order keeps the taxonomy's (ancestors first, leaf last) so ``top_category`` is the
    most specific label.
    """
    best: dict[str, float] = {}
    for label in labels:
        label_id = str(label.get("id", "")).strip()
        if not label_id:
            continue
        conf = float(label.get("confidence", 1.0))
        best[label_id] = max(conf, best.get(label_id, 0.0))
    return tuple((sys.intern(k), v) for k, v in best.items())


class Catalog:
    def __init__(self, settings: RecommenderSettings, dim: int, model_id: str) -> None:
        self.settings = settings
        self._lock = threading.RLock()
        self._reset_index(dim, model_id)
        # dicts used as insertion-ordered sets: O(1) removal, newest last
        self._items: dict[str, CatalogItem] = {}
        self.by_tag: dict[str, dict[str, None]] = {}
        self.by_category: dict[str, dict[str, None]] = {}
        self.by_creator: dict[str, dict[str, None]] = {}
        self.category_names: dict[str, str] = {}
        self.newest_created_at = 0.0  # of any item added (the feed's clock reads it)
        self.removals = 0  # items taken out so far (cached candidates check it)
        self.vocab = Vocabulary()
        self.columns = ItemColumns(self.vocab)  # replaced whole when rebuilt
        self._sessions: sessionmaker[Session] | None = None
        # ``follow``: when the last read began, and what was applied within the overlap
        self._read_at: datetime | None = None
        self._followed: dict[str, datetime] = {}

    def _reset_index(self, dim: int, model_id: str) -> None:
        s = self.settings
        self.index = VectorIndex(dim, model_id, **index_options(s))

    def save(self) -> None:
        """Persist the vector index under ``settings.index_dir`` (a cache of the database)."""
        self.index.save(self.settings.index_dir)

    # -- reads --------------------------------------------------------------------------
    def __contains__(self, item_id: object) -> bool:
        return item_id in self._items

    def __len__(self) -> int:
        return len(self._items)

    def get(self, item_id: str) -> CatalogItem | None:
        return self._items.get(item_id)

    @property
    def items(self) -> Mapping[str, CatalogItem]:
        """Read-only view by id: lookups in a loop over candidates skip a method call."""
        return self._items

    def newest(self, limit: int) -> Iterator[CatalogItem]:
        """Items in reverse insertion order (creation order for a bulk load)."""
        with self._lock:
            ids = list(_take(reversed(self._items), limit))
        for item_id in ids:
            item = self._items.get(item_id)
            if item is not None:
                yield item

    def newest_in(
        self, bucket: dict[str, None], limit: int, skip: Collection[str] = ()
    ) -> list[str]:
        """The newest ``limit`` ids of ``bucket`` that are not in ``skip``."""
        with self._lock:
            if not skip:
                return list(_take(reversed(bucket), limit))
            out: list[str] = []
            for item_id in reversed(bucket):
                if item_id not in skip:
                    out.append(item_id)
                    if len(out) >= limit:
                        break
            return out

    def vectors(self, item_ids: list[str]) -> tuple[list[str], np.ndarray]:
        return self.index.vectors(item_ids)

    def item_ids(self) -> list[str]:
        with self._lock:
            return list(self._items)

    # -- updates ------------------------------------------------------------------------
    def add(self, item: CatalogItem, vector: np.ndarray | None = None) -> None:
        with self._lock:
            if item.id in self._items:
                self._unindex(self._items[item.id])
            self._items[item.id] = item
            self.newest_created_at = max(self.newest_created_at, item.created_at)
            self.columns.append(item)
            self._maybe_rebuild_columns()
            for tag in item.tags:
                self.by_tag.setdefault(tag, {})[item.id] = None
            for cat, _ in item.categories:
                self.by_category.setdefault(cat, {})[item.id] = None
            self.by_creator.setdefault(item.creator_id, {})[item.id] = None
            if vector is not None:
                self.index.add([item.id], vector)

    def add_many(self, items: list[CatalogItem], vectors: np.ndarray | None) -> None:
        """Bulk add; ``vectors`` aligned with ``items`` (rows for all of them) or None."""
        with self._lock:
            for item in items:
                self.add(item)
            if vectors is not None and len(items):
                self.index.add([i.id for i in items], vectors)

    def remove(self, item_id: str) -> bool:
        with self._lock:
            item = self._items.pop(item_id, None)
            self.index.remove(item_id)
            if item is None:
                return False
            self.removals += 1
            self._unindex(item)
            self.columns.discard(item_id)
            self._maybe_rebuild_columns()
            return True

    def _maybe_rebuild_columns(self) -> None:
        """Rows of removed or replaced items are garbage; drop them once they outnumber
        the live ones."""
        dead = self.columns.dead
        if dead >= 1024 and dead > len(self._items):
            self.columns = ItemColumns.of(self.vocab, list(self._items.values()))

    def _unindex(self, item: CatalogItem) -> None:
        for tag in item.tags:
            _discard(self.by_tag, tag, item.id)
        for cat, _ in item.categories:
            _discard(self.by_category, cat, item.id)
        _discard(self.by_creator, item.creator_id, item.id)

    def on_state_changes(self, changes: Sequence[StateChange]) -> None:
        """``ItemStore`` listener: runs synchronously inside ``transition``, with the
        changes of one transaction. Items that end it approved are read in one query."""
        final = {change.item_id: change.after for change in changes}
        left = {change.item_id for change in changes if change.before == ItemState.APPROVED}
        approved = [item_id for item_id, state in final.items() if state == ItemState.APPROVED]
        for item_id, state in final.items():
            if state != ItemState.APPROVED and (item_id in left or item_id in self._items):
                self.remove(item_id)
        if not approved:
            return
        if self._sessions is None:
            log.warning("catalog has no database to load approved items %s", approved[:10])
            return
        with self._sessions() as session:
            self._load_items(session, approved)

    # -- loading ------------------------------------------------------------------------
    @classmethod
    def load(
        cls, sessions: sessionmaker[Session], settings: RecommenderSettings, *,
        default_dim: int = 256,
    ) -> Catalog:
        """Build from the database: approved items, latest labels, one model's vectors."""
        with sessions() as session:
            model_id, dim = _pick_fused_model(session, settings.fused_model_id, default_dim)
            catalog = cls(settings, dim, model_id)
            catalog._sessions = sessions
            if VectorIndex.saved_in(settings.index_dir) is not None:
                try:
                    loaded = VectorIndex.load(settings.index_dir, **index_options(settings))
                    if loaded.model_id == model_id and loaded.dim == dim:
                        catalog.index = loaded
                    else:
                        log.info("persisted index is for %s; rebuilding", loaded.model_id)
                except Exception as exc:  # a corrupt cache is rebuilt, never fatal
                    log.warning("could not load persisted index (%s); rebuilding", exc)
            catalog._start_following(session)
            approved = select(ItemRow.id).where(ItemRow.state == ItemState.APPROVED.value)
            ids = list(session.scalars(approved.order_by(ItemRow.created_at, ItemRow.id)))
            # Vectors are added in one call at the end, so the index is built once, of
            # the kind for the whole catalog, rather than grown (and switched) chunk by
            # chunk.
            pending = (_PendingVectors(len(ids), catalog.index.dim)
                       if catalog.index.model_id != NO_MODEL else None)
            for start in range(0, len(ids), 5000):
                catalog._load_items(session, ids[start : start + 5000], pending)
            if pending is not None and pending.ids:
                catalog.index.add(pending.ids, pending.matrix())
            catalog.index.retain_only(set(catalog._items))
        return catalog

    def _start_following(self, session: Session) -> None:
        """Before the items are read: what they reflect, so ``follow`` skips it (a row
        that changes afterwards gets a new ``updated_at`` and is applied)."""
        self._read_at = utcnow()
        recent = select(ItemRow.id, ItemRow.updated_at).where(
            ItemRow.updated_at > self._read_at - FOLLOW_OVERLAP)
        self._followed = {item_id: ts for item_id, ts in session.execute(recent)}

    def follow(self) -> int:
        """Apply item state changes made by other processes since the last call (or the
        load); returns how many items were added, reloaded or dropped.

        Reads the rows stamped since ``FOLLOW_OVERLAP`` before the previous read began:
        every older change had committed by then and was read then. The window follows
        the clock, not the newest change, so a bulk import leaves it after the overlap.
        """
        if self._sessions is None:
            return 0
        started = utcnow()
        with self._sessions() as session:
            query = select(ItemRow.id, ItemRow.state, ItemRow.updated_at)
            if self._read_at is not None:
                query = query.where(ItemRow.updated_at > self._read_at - FOLLOW_OVERLAP)
            approved: list[str] = []
            dropped: list[str] = []
            for item_id, state, updated_at in session.execute(query):
                if self._followed.get(item_id) == updated_at:
                    continue  # already applied on an earlier call
                self._followed[item_id] = updated_at
                if state == ItemState.APPROVED.value:
                    approved.append(item_id)
                elif item_id in self._items:
                    dropped.append(item_id)
            for item_id in dropped:
                self.remove(item_id)
            for start in range(0, len(approved), 5000):
                self._load_items(session, approved[start : start + 5000])
        self._read_at = started
        horizon = started - FOLLOW_OVERLAP
        self._followed = {k: v for k, v in self._followed.items() if as_utc(v) > horizon}
        return len(approved) + len(dropped)

    def confirm_approved(self, item_ids: Sequence[str]) -> list[str]:
        """Check ``item_ids`` against ``items.state`` now; drop and return those that are
        no longer approved (another process took them down after this catalog last
        followed)."""
        if self._sessions is None or not item_ids:
            return []
        # A Core connection, not a session: this runs on every feed request.
        with engine_of(self._sessions).connect() as conn:
            # By primary key only: with the state in the WHERE clause SQLite's planner
            # walks the state index (every approved item: 11 ms at 100k, not 0.1).
            state_of: dict[str, str] = dict(
                conn.execute(_STATE_OF_IDS, {"ids": list(item_ids)}).all())
        approved = ItemState.APPROVED.value
        gone = [item_id for item_id in item_ids if state_of.get(item_id) != approved]
        for item_id in gone:
            self.remove(item_id)
        return gone

    def attach(self, sessions: sessionmaker[Session]) -> None:
        """Give a catalog built in memory a database to read newly approved items from."""
        self._sessions = sessions

    def _load_items(
        self, session: Session, ids: list[str], pending: _PendingVectors | None = None,
    ) -> None:
        """``pending``: collect the vectors there instead of adding them to the index."""
        rows = session.scalars(
            select(ItemRow).where(
                ItemRow.id.in_(ids), ItemRow.state == ItemState.APPROVED.value
            )
        ).all()
        order = {item_id: n for n, item_id in enumerate(ids)}
        rows = sorted(rows, key=lambda r: order[r.id])
        labels = _latest_labels(session, [r.id for r in rows])
        if self.index.model_id == NO_MODEL and self.index.rows == 0:
            # Started on an empty database: the first fused vectors pick the model.
            model_id, dim = _pick_fused_model(session, None, self.index.dim)
            if model_id != NO_MODEL:
                self._reset_index(dim, model_id)
                pending = None  # sized for the old dimension; add as they come
        vectors = _fused_vectors(session, [r.id for r in rows], self.index.model_id)
        with self._lock:
            for row in rows:
                item_labels = labels.get(row.id, [])
                for label in item_labels:
                    if label.get("id") and label.get("name"):
                        self.category_names[str(label["id"])] = str(label["name"])
                item = CatalogItem(
                    id=row.id, creator_id=sys.intern(row.creator_id),
                    created_at=epoch(row.created_at),
                    tags=tuple(dict.fromkeys(normalise_tag(t) for t in (row.tags or []) if t)),
                    categories=categories_from_labels(item_labels),
                )
                vec = vectors.get(row.id)
                if vec is not None and vec.shape[0] != self.index.dim:
                    log.warning("item %s fused vector has dim %d, index %d; not indexed",
                                row.id, vec.shape[0], self.index.dim)
                    vec = None
                # a row the persisted index already holds is revived, not re-added
                if pending is not None and vec is not None:
                    self.add(item)
                    pending.append(row.id, vec)
                else:
                    self.add(item, vec)


def index_options(s: RecommenderSettings) -> dict[str, Any]:
    return {
        "exact_below": s.exact_index_below, "ivf_above": s.ivf_index_above,
        "hnsw_m": s.hnsw_m, "ef_construction": s.hnsw_ef_construction,
        "ef_search": s.hnsw_ef_search, "nprobe": s.ivf_nprobe,
        "rebuild_fraction": s.rebuild_tombstone_fraction,
    }


class _PendingVectors:
    """Vectors read while loading, in one preallocated block (no list of rows)."""

    def __init__(self, capacity: int, dim: int) -> None:
        self.ids: list[str] = []
        self._block = np.empty((capacity, dim), dtype=np.float32)

    def append(self, item_id: str, vector: np.ndarray) -> None:
        self._block[len(self.ids)] = vector
        self.ids.append(item_id)

    def matrix(self) -> np.ndarray:
        return self._block[: len(self.ids)]


def _take(it: Iterator[str], limit: int) -> Iterator[str]:
    for n, value in enumerate(it):
        if n >= limit:
            return
        yield value


def _discard(index: dict[str, dict[str, None]], key: str, item_id: str) -> None:
    bucket = index.get(key)
    if bucket is not None:
        bucket.pop(item_id, None)
        if not bucket:
            del index[key]


def _pick_fused_model(
    session: Session, configured: str | None, default_dim: int
) -> tuple[str, int]:
    if configured:
        dim = session.scalar(
            select(EmbeddingRow.dim).where(
                EmbeddingRow.kind == FUSED, EmbeddingRow.model_id == configured
            ).limit(1)
        )
        return configured, int(dim or default_dim)
    row = session.execute(
        select(EmbeddingRow.model_id, EmbeddingRow.dim, func.count())
        .where(EmbeddingRow.kind == FUSED)
        .group_by(EmbeddingRow.model_id, EmbeddingRow.dim)
        .order_by(func.count().desc())
        .limit(1)
    ).first()
    if row is None:
        return NO_MODEL, default_dim
    return str(row[0]), int(row[1])


def _latest_labels(session: Session, ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    if not ids:
        return {}
    latest = (
        select(func.max(AnalysisRow.id)).where(AnalysisRow.item_id.in_(ids))
        .group_by(AnalysisRow.item_id)
    )
    out: dict[str, list[dict[str, Any]]] = {}
    for row in session.scalars(select(AnalysisRow).where(AnalysisRow.id.in_(latest))):
        payload = row.payload or {}
        labels = payload.get("labels") or []
        out[row.item_id] = [lab for lab in labels if isinstance(lab, dict)]
    return out


def _fused_vectors(session: Session, ids: list[str], model_id: str) -> dict[str, np.ndarray]:
    if not ids:
        return {}
    rows = session.execute(
        select(EmbeddingRow.item_id, EmbeddingRow.vector).where(
            EmbeddingRow.item_id.in_(ids), EmbeddingRow.kind == FUSED,
            EmbeddingRow.model_id == model_id,
        )
    )
    return {item_id: np.frombuffer(vec, dtype=np.float32).copy() for item_id, vec in rows}
