"""A faiss index over fused item vectors with immediate removal and persistence.

Inner product over L2-normalised vectors, i.e. cosine. The kind of index follows the
catalog's size when the index is (re)built:

- below ``exact_below`` rows, exact search (``IndexFlatIP``: at that size a scan takes
  well under a millisecond);
- up to ``ivf_above`` rows, HNSW over float32 vectors (``IndexHNSWFlat``, M=16,
  efConstruction=80: 1 KB of vector plus about 140 B of graph links per 256-d item). It
  needs no training, so it grows one approved item at a time; but its build costs
  about 4,000 items a second on two cores, minutes for a million;
- from ``ivf_above`` rows, IVF over float32 vectors (``IndexIVFFlat``, about 2·√n lists
  trained by k-means on a sample of at most 50 vectors a list; 1 KB of vector plus 16 B
  of id and direct map per 256-d item). Training on the sample and assigning every row
  to its list takes seconds, not minutes, at a million items; a search scans
  ``nprobe`` lists. Items added later go to the list of their nearest centroid, so the
  lists lengthen as the catalog grows past the size it was trained at and a search
  scans proportionally more; ``compact`` retrains.

An index that grew online is never switched from HNSW to IVF on the request path (that
rebuild would hold the lock for seconds at that size); the next rebuild picks the kind.

Neither faiss index can delete cheaply, so removal clears a bit in an *alive* bitmap that
every search passes to faiss as an ``IDSelectorBitmap``: the removed item is gone from the
very next search, and the graph stays intact. A search may also exclude items of its own
(what the user has seen) through a copy of that bitmap, so they never take a place in the
top ``k``. When removed rows pass ``rebuild_tombstone_fraction`` the index is compacted.
Re-approval sets the bit again.
"""

from __future__ import annotations

import fcntl
import json
import math
import shutil
import threading
import time
import uuid
from collections.abc import Collection
from itertools import repeat
from pathlib import Path
from typing import Any

import numpy as np

from core.artifacts import CONFIG_FILE, ArtifactKind
from core.errors import InvalidConfig, InvalidInput

INDEX_FILE = "catalog.faiss"
# Each generation follows the project's artifact convention (core.artifacts): config.json
# + the files below. Sizes are checked, not hashes: the index is rebuilt from the database
# when it is missing or refused, and hashing gigabytes at every save would cost more.
INDEX_ARTIFACT = ArtifactKind(
    name="recommender.vector_index", format=1, description="saved vector index",
    make_with="reelsift serve (the index is rebuilt from stored embeddings)", hashed=False,
)
IDS_FILE = "catalog.ids.json"
ALIVE_FILE = "catalog.alive.npy"
CURRENT_FILE = "CURRENT"  # names the generation directory to load
# k-means wants at least ~39 points a centroid; 50 keeps training a few seconds at 1M rows
IVF_POINTS_PER_LIST = 50
IVF_MIN_POINTS_PER_LIST = 39
IVF_MAX_LISTS = 65_536
IVF_SAMPLE_SEED = 0
IVF_KMEANS_ITERATIONS = 10  # faiss's default 25 buys little for a coarse partition


def normalise_rows(vectors: np.ndarray) -> np.ndarray:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim == 1:
        vectors = vectors.reshape(1, -1)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.ascontiguousarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)


def ivf_lists_for(rows: int) -> int:
    """About 2·√rows lists, a power of two (~500 rows a list at a million items), and
    few enough that k-means gets its ~39 points a centroid."""
    target = 2 ** round(math.log2(2.0 * math.sqrt(max(rows, 1))))
    trainable = 2 ** int(math.log2(max(rows // IVF_MIN_POINTS_PER_LIST, 1)))
    return int(max(min(target, trainable, IVF_MAX_LISTS), 1))


def _bit_masks(rows: np.ndarray) -> np.ndarray:
    return np.left_shift(np.uint8(1), (rows & 7).astype(np.uint8))


class VectorIndex:
    """String item ids over faiss rows; one model's vectors only (``model_id``)."""

    def __init__(
        self, dim: int, model_id: str, *, exact_below: int = 20_000, hnsw_m: int = 16,
        ef_construction: int = 40, ef_search: int = 64, rebuild_fraction: float = 0.2,
        ivf_above: int = 250_000, nprobe: int = 16,
    ) -> None:
        if dim <= 0:
            raise InvalidInput(f"vector dimension must be positive, got {dim}")
        self.dim = dim
        self.model_id = model_id
        self.exact_below = exact_below
        self.ivf_above = ivf_above
        self.hnsw_m = hnsw_m
        self.ef_construction = ef_construction
        self.ef_search = ef_search
        self.nprobe = nprobe
        self.rebuild_fraction = rebuild_fraction
        self._lock = threading.RLock()
        self._ids: list[str] = []
        self._row_of: dict[str, int] = {}
        self._alive = np.zeros(1024, dtype=np.uint8)  # packed bits, row i -> bit i
        self._n_alive = 0
        self._index: Any = self._empty_index("flat")

    # -- construction -------------------------------------------------------------------
    def kind_for(self, rows: int) -> str:
        if rows < self.exact_below:
            return "flat"
        return "ivf" if rows >= self.ivf_above else "hnsw"

    def _empty_index(self, kind: str, training: np.ndarray | None = None) -> Any:
        import faiss

        if kind == "flat":
            return faiss.IndexFlatIP(self.dim)
        if kind == "hnsw":
            graph = faiss.IndexHNSWFlat(self.dim, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            graph.hnsw.efConstruction = self.ef_construction
            graph.hnsw.efSearch = self.ef_search
            return graph
        assert training is not None, "an IVF index is trained on the vectors it will hold"
        lists = ivf_lists_for(training.shape[0])
        quantizer = faiss.IndexFlatIP(self.dim)
        index: Any = faiss.IndexIVFFlat(quantizer, self.dim, lists, faiss.METRIC_INNER_PRODUCT)
        index.cp.niter = IVF_KMEANS_ITERATIONS
        sample_size = min(training.shape[0], IVF_POINTS_PER_LIST * lists)
        rng = np.random.default_rng(IVF_SAMPLE_SEED)
        sample = training[np.sort(rng.choice(training.shape[0], sample_size, replace=False))]
        index.train(np.ascontiguousarray(sample))
        index.make_direct_map()  # reconstruct(row) for features and re-ranking
        index.nprobe = self.nprobe
        return index

    def _build(self, vectors: np.ndarray) -> Any:
        """A new faiss index of the kind for ``len(vectors)`` rows, holding them in order."""
        kind = self.kind_for(vectors.shape[0])
        index = self._empty_index(kind, vectors if kind == "ivf" else None)
        if vectors.shape[0]:
            index.add(np.ascontiguousarray(vectors, dtype=np.float32))
        return index

    @property
    def kind(self) -> str:
        if hasattr(self._index, "hnsw"):
            return "hnsw"
        return "ivf" if hasattr(self._index, "nprobe") else "flat"

    def __len__(self) -> int:
        return self._n_alive

    @property
    def rows(self) -> int:
        return len(self._ids)

    def __contains__(self, item_id: object) -> bool:
        row = self._row_of.get(item_id) if isinstance(item_id, str) else None
        return row is not None and self._is_alive(row)

    def _is_alive(self, row: int) -> bool:
        return bool((self._alive[row >> 3] >> (row & 7)) & 1)

    def _alive_mask(self, rows: np.ndarray) -> np.ndarray:
        """For each row (-1 for none), whether it is a live row."""
        valid = rows >= 0
        safe = np.where(valid, rows, 0)
        return valid & ((self._alive[safe >> 3] >> (safe & 7).astype(np.uint8)) & 1).astype(bool)

    def _grow_alive(self, rows: int) -> None:
        needed = (rows + 7) >> 3
        if needed > self._alive.shape[0]:
            grown = np.zeros(max(needed, self._alive.shape[0] * 2), dtype=np.uint8)
            grown[: self._alive.shape[0]] = self._alive
            self._alive = grown

    def _set_alive(self, row: int, alive: bool) -> None:
        self._set_rows_alive(np.asarray([row], dtype=np.int64), alive)

    def _set_rows_alive(self, rows: np.ndarray, alive: bool) -> None:
        if not len(rows):
            return
        self._grow_alive(int(rows.max()) + 1)
        rows = np.unique(rows)
        was = self._alive_mask(rows)
        if alive:
            change = rows[~was]
            np.bitwise_or.at(self._alive, change >> 3, _bit_masks(change))
            self._n_alive += len(change)
        else:
            change = rows[was]
            np.bitwise_and.at(self._alive, change >> 3, ~_bit_masks(change))
            self._n_alive -= len(change)

    def _check(self, vectors: np.ndarray) -> np.ndarray:
        vectors = normalise_rows(vectors)
        if vectors.shape[1] != self.dim:
            raise InvalidInput(
                f"vector has {vectors.shape[1]} dimensions, the index holds {self.dim} "
                f"({self.model_id})", expected=self.dim, got=int(vectors.shape[1]),
            )
        return vectors

    # -- updates ------------------------------------------------------------------------
    def add(self, item_ids: list[str], vectors: np.ndarray) -> None:
        """Add or replace vectors; an id already present with a new vector gets a new row."""
        vectors = self._check(vectors)
        if len(item_ids) != vectors.shape[0]:
            raise InvalidInput("item_ids and vectors differ in length")
        with self._lock:
            fresh_ids: list[str] = []
            fresh_rows: list[int] = []
            revived: list[int] = []
            for i, item_id in enumerate(item_ids):
                old = self._row_of.get(item_id)
                if old is not None:
                    same = np.allclose(self._index.reconstruct(old), vectors[i], atol=1e-6)
                    if same:
                        revived.append(old)
                        continue
                    self._set_alive(old, False)
                fresh_ids.append(item_id)
                fresh_rows.append(i)
            self._set_rows_alive(np.asarray(revived, dtype=np.int64), True)
            if not fresh_ids:
                return
            start = len(self._ids)
            total = start + len(fresh_ids)
            new = vectors if len(fresh_rows) == len(item_ids) else vectors[fresh_rows]
            if self.kind == "flat" and self.kind_for(total) != "flat":
                # the switch from exact search, for a bulk load straight to its final kind
                held = (self._index.reconstruct_n(0, start) if start
                        else np.zeros((0, self.dim), np.float32))
                self._index = self._build(np.concatenate([held, new]) if start else new)
            else:
                self._index.add(new)
            for offset, item_id in enumerate(fresh_ids):
                self._ids.append(item_id)
                self._row_of[item_id] = start + offset
            self._set_rows_alive(np.arange(start, total, dtype=np.int64), True)
            self._maybe_compact()

    def remove(self, item_id: str) -> bool:
        """Takes effect for the next search; True when the item was live."""
        with self._lock:
            row = self._row_of.get(item_id)
            if row is None or not self._is_alive(row):
                return False
            self._set_alive(row, False)
            self._maybe_compact()
            return True

    def _maybe_compact(self) -> None:
        dead = len(self._ids) - self._n_alive
        if len(self._ids) >= 64 and dead > self.rebuild_fraction * len(self._ids):
            self.compact()

    def compact(self) -> None:
        """Rebuild with live rows only (ids keep their vectors, rows are renumbered); the
        kind follows the live count, and an IVF index is retrained."""
        with self._lock:
            live = np.flatnonzero(self._alive_mask(np.arange(len(self._ids), dtype=np.int64)))
            vectors = (
                np.asarray(self._index.reconstruct_batch(live.astype(np.int64)), np.float32)
                if len(live) else np.zeros((0, self.dim), np.float32)
            )
            ids = [self._ids[int(r)] for r in live]
            self._index = self._build(vectors)
            self._ids = ids
            self._row_of = {item_id: row for row, item_id in enumerate(ids)}
            self._alive = np.zeros(max(1024, (len(ids) + 7) >> 3), dtype=np.uint8)
            self._n_alive = 0
            self._set_rows_alive(np.arange(len(ids), dtype=np.int64), True)

    # -- reads --------------------------------------------------------------------------
    def search(
        self, query: np.ndarray, k: int, *, ef_search: int | None = None,
        exclude: Collection[str] = (),
    ) -> list[tuple[str, float]]:
        """Top ``k`` live items by cosine to one query vector, none of ``exclude``."""
        import faiss

        query = self._check(query)
        with self._lock:
            if self._n_alive == 0 or k <= 0:
                return []
            k = min(k, self._n_alive)
            bitmap = self._alive
            if exclude:
                rows = np.fromiter(
                    (r for r in map(self._row_of.get, exclude) if r is not None),
                    dtype=np.int64)
                if len(rows):
                    bitmap = bitmap.copy()
                    np.bitwise_and.at(bitmap, rows >> 3, ~_bit_masks(rows))
            selector = faiss.IDSelectorBitmap(bitmap.shape[0], faiss.swig_ptr(bitmap))
            kind = self.kind
            if kind == "hnsw":
                params: Any = faiss.SearchParametersHNSW()  # type: ignore[attr-defined]
                # recall@k needs a beam wider than k itself
                params.efSearch = max(ef_search or self.ef_search, 2 * k)
            elif kind == "ivf":
                params = faiss.SearchParametersIVF()  # type: ignore[attr-defined]
                params.nprobe = self.nprobe
            else:
                params = faiss.SearchParameters()
            params.sel = selector
            scores, rows_found = self._index.search(query, k, params=params)
            ids = self._ids
            return [
                (ids[r], s)
                for r, s in zip(rows_found[0].tolist(), scores[0].tolist(), strict=True)
                if r >= 0
            ]

    def vectors(self, item_ids: list[str]) -> tuple[list[str], np.ndarray]:
        """Vectors of those ids that are live here, in the order given."""
        with self._lock:
            rows = np.fromiter(map(self._row_of.get, item_ids, repeat(-1)), dtype=np.int64,
                               count=len(item_ids))
            live = self._alive_mask(rows)
            if not live.any():
                return [], np.zeros((0, self.dim), np.float32)
            if live.all():
                found = list(item_ids)
            else:
                found = [i for i, ok in zip(item_ids, live.tolist(), strict=True) if ok]
                rows = rows[live]
            return found, np.asarray(self._index.reconstruct_batch(rows), dtype=np.float32)

    def vector(self, item_id: str) -> np.ndarray | None:
        _, vecs = self.vectors([item_id])
        return vecs[0] if len(vecs) else None

    def memory_bytes(self) -> int:
        """faiss bytes (vectors, graph or lists, id maps) plus the alive bitmap, not the
        Python id map."""
        with self._lock:
            n = self._index.ntotal
            total = n * self.dim * 4 + self._alive.nbytes
            kind = self.kind
            if kind == "hnsw":
                hnsw = self._index.hnsw
                total += hnsw.neighbors.size() * 4 + hnsw.levels.size() * 4
                total += hnsw.offsets.size() * 8
            elif kind == "ivf":
                total += n * 8  # list entry ids
                total += n * 8  # the direct map, row -> (list, offset)
                total += self._index.nlist * self.dim * 4  # centroids
            return int(total)

    # -- persistence --------------------------------------------------------------------
    def save(self, directory: Path) -> None:
        """Write a new generation under ``directory`` and point ``CURRENT`` at it.

        Several processes (BentoML workers) may save at once: each writes its own
        generation directory, and the one-line ``CURRENT`` file is replaced atomically,
        so a reader always sees one complete generation.
        """
        import faiss

        directory.mkdir(parents=True, exist_ok=True)
        generation = f"gen-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
        staging = directory / f".staging-{generation}"
        staging.mkdir()
        with self._lock:
            faiss.write_index(self._index, str(staging / INDEX_FILE))
            (staging / IDS_FILE).write_text(json.dumps(self._ids))
            np.save(staging / ALIVE_FILE, self._alive)
            INDEX_ARTIFACT.write_config(staging, {
                "model_id": self.model_id, "dim": self.dim, "rows": len(self._ids),
                "index_type": self.kind,
            }, files=[INDEX_FILE, IDS_FILE, ALIVE_FILE])
        # Publishing is serialised across processes, so CURRENT never names a generation
        # another saver is deleting.
        with open(directory / ".lock", "a+b") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            staging.rename(directory / generation)
            pointer = directory / f".{CURRENT_FILE}.{generation}"
            pointer.write_text(generation)
            pointer.replace(directory / CURRENT_FILE)
            for old in directory.glob("gen-*"):
                if old.name != generation:
                    shutil.rmtree(old, ignore_errors=True)

    @staticmethod
    def saved_in(directory: Path) -> Path | None:
        """The directory holding the current saved generation, if any."""
        current = directory / CURRENT_FILE
        if not current.exists():
            return None
        path = directory / current.read_text().strip()
        return path if (path / CONFIG_FILE).exists() else None

    @classmethod
    def load(cls, directory: Path, **options: Any) -> VectorIndex:
        import faiss

        saved = cls.saved_in(directory)
        if saved is None:
            raise InvalidConfig(f"no vector index in {directory} (missing {CURRENT_FILE})")
        manifest = INDEX_ARTIFACT.read_config(saved)
        index = cls(int(manifest["dim"]), str(manifest["model_id"]), **options)
        index._index = faiss.read_index(str(saved / INDEX_FILE))
        if index.kind == "hnsw":
            index._index.hnsw.efSearch = index.ef_search
        elif index.kind == "ivf":
            index._index.nprobe = index.nprobe
        index._ids = list(json.loads((saved / IDS_FILE).read_text()))
        if len(index._ids) != index._index.ntotal:
            raise InvalidConfig(f"vector index in {saved} is inconsistent; delete it")
        index._row_of = {item_id: row for row, item_id in enumerate(index._ids)}
        index._alive = np.load(saved / ALIVE_FILE)
        bits = np.unpackbits(index._alive, bitorder="little")[: len(index._ids)]
        index._n_alive = int(bits.sum())
        return index

    def retain_only(self, live_ids: set[str]) -> None:
        """Align the alive bits with the database after loading a persisted index."""
        with self._lock:
            row_of = self._row_of
            keep = np.fromiter(
                (item_id in live_ids and row_of[item_id] == row
                 for row, item_id in enumerate(self._ids)),
                dtype=bool, count=len(self._ids),
            )
            rows = np.arange(len(self._ids), dtype=np.int64)
            self._set_rows_alive(rows[~keep], False)
            self._set_rows_alive(rows[keep], True)
