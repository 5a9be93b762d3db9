"""A faiss index over fused item vectors with immediate removal and persistence.

Inner product over L2-normalised vectors, i.e. cosine. Below ``exact_below`` vectors the
index is exact (``IndexFlatIP``: at that size a scan takes well under a millisecond); above
it, HNSW over float32 vectors (``IndexHNSWFlat``, M=16, efConstruction=80: 1 KB of vector
plus about 140 B of graph links per 256-d item, inside the 1.5 KB budget, with no training
step so the index grows one item at a time).

Neither faiss index can delete cheaply, so removal clears a bit in an *alive* bitmap that
every search passes to faiss as an ``IDSelectorBitmap``: the removed item is gone from the
very next search, and the graph stays intact. When removed rows pass
``rebuild_tombstone_fraction`` the index is compacted. Re-approval sets the bit again.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import InvalidConfig, InvalidInput

INDEX_FILE = "catalog.faiss"
MANIFEST_FILE = "catalog.json"
IDS_FILE = "catalog.ids.json"
ALIVE_FILE = "catalog.alive.npy"


def normalise_rows(vectors: np.ndarray) -> np.ndarray:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim == 1:
        vectors = vectors.reshape(1, -1)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.ascontiguousarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)


class VectorIndex:
    """String item ids over faiss rows; one model's vectors only (``model_id``)."""

    def __init__(
        self, dim: int, model_id: str, *, exact_below: int = 20_000, hnsw_m: int = 16,
        ef_construction: int = 40, ef_search: int = 64, rebuild_fraction: float = 0.2,
    ) -> None:
        if dim <= 0:
            raise InvalidInput(f"vector dimension must be positive, got {dim}")
        self.dim = dim
        self.model_id = model_id
        self.exact_below = exact_below
        self.hnsw_m = hnsw_m
        self.ef_construction = ef_construction
        self.ef_search = ef_search
        self.rebuild_fraction = rebuild_fraction
        self._lock = threading.RLock()
        self._ids: list[str] = []
        self._row_of: dict[str, int] = {}
        self._alive = np.zeros(1024, dtype=np.uint8)  # packed bits, row i -> bit i
        self._n_alive = 0
        self._index: Any = self._new_index(0)

    # -- construction -------------------------------------------------------------------
    def _new_index(self, expected_rows: int) -> Any:
        import faiss

        if expected_rows < self.exact_below:
            return faiss.IndexFlatIP(self.dim)
        index = faiss.IndexHNSWFlat(self.dim, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = self.ef_construction
        index.hnsw.efSearch = self.ef_search
        return index

    @property
    def kind(self) -> str:
        return "hnsw" if hasattr(self._index, "hnsw") else "flat"

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

    def _set_alive(self, row: int, alive: bool) -> None:
        byte = row >> 3
        if byte >= self._alive.shape[0]:
            grown = np.zeros(max(byte + 1, self._alive.shape[0] * 2), dtype=np.uint8)
            grown[: self._alive.shape[0]] = self._alive
            self._alive = grown
        was = self._is_alive(row)
        if alive and not was:
            self._alive[byte] |= np.uint8(1 << (row & 7))
            self._n_alive += 1
        elif not alive and was:
            self._alive[byte] &= np.uint8(~(1 << (row & 7)) & 0xFF)
            self._n_alive -= 1

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
            for i, item_id in enumerate(item_ids):
                old = self._row_of.get(item_id)
                if old is not None:
                    same = np.allclose(self._index.reconstruct(old), vectors[i], atol=1e-6)
                    if same:
                        self._set_alive(old, True)
                        continue
                    self._set_alive(old, False)
                fresh_ids.append(item_id)
                fresh_rows.append(i)
            if not fresh_ids:
                return
            total = len(self._ids) + len(fresh_ids)
            if self.kind == "flat" and total >= self.exact_below:
                self._switch_to_hnsw(total)
            start = len(self._ids)
            self._index.add(vectors[fresh_rows])
            for offset, item_id in enumerate(fresh_ids):
                self._ids.append(item_id)
                self._row_of[item_id] = start + offset
                self._set_alive(start + offset, True)
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

    def _switch_to_hnsw(self, expected_rows: int) -> None:
        old = self._index
        vectors = old.reconstruct_n(0, old.ntotal) if old.ntotal else None
        self._index = self._new_index(max(expected_rows, self.exact_below))
        if vectors is not None:
            self._index.add(vectors)

    def _maybe_compact(self) -> None:
        dead = len(self._ids) - self._n_alive
        if len(self._ids) >= 64 and dead > self.rebuild_fraction * len(self._ids):
            self.compact()

    def compact(self) -> None:
        """Rebuild with live rows only (ids keep their vectors, rows are renumbered)."""
        with self._lock:
            live = [r for r in range(len(self._ids)) if self._is_alive(r)]
            vectors = (
                self._index.reconstruct_batch(np.asarray(live, dtype=np.int64))
                if live else np.zeros((0, self.dim), np.float32)
            )
            ids = [self._ids[r] for r in live]
            self._ids, self._row_of = [], {}
            self._alive = np.zeros(max(1024, len(ids) // 8 + 1), dtype=np.uint8)
            self._n_alive = 0
            self._index = self._new_index(len(ids))
            if ids:
                self._index.add(np.ascontiguousarray(vectors, dtype=np.float32))
                for row, item_id in enumerate(ids):
                    self._ids.append(item_id)
                    self._row_of[item_id] = row
                    self._set_alive(row, True)

    # -- reads --------------------------------------------------------------------------
    def search(
        self, query: np.ndarray, k: int, *, ef_search: int | None = None
    ) -> list[tuple[str, float]]:
        """Top ``k`` live items by cosine to one query vector."""
        import faiss

        query = self._check(query)
        with self._lock:
            if self._n_alive == 0 or k <= 0:
                return []
            k = min(k, self._n_alive)
            selector = faiss.IDSelectorBitmap(self._alive.shape[0], faiss.swig_ptr(self._alive))
            if self.kind == "hnsw":
                params: Any = faiss.SearchParametersHNSW()  # type: ignore[attr-defined]
                # recall@k needs a beam wider than k itself
                params.efSearch = max(ef_search or self.ef_search, 2 * k)
            else:
                params = faiss.SearchParameters()
            params.sel = selector
            scores, rows = self._index.search(query, k, params=params)
            return [
                (self._ids[int(r)], float(s))
                for r, s in zip(rows[0], scores[0], strict=True)
                if r >= 0 and self._is_alive(int(r))
            ]

    def vectors(self, item_ids: list[str]) -> tuple[list[str], np.ndarray]:
        """Vectors of those ids that are live here, in the order given."""
        with self._lock:
            found = [i for i in item_ids if i in self]
            if not found:
                return [], np.zeros((0, self.dim), np.float32)
            rows = np.asarray([self._row_of[i] for i in found], dtype=np.int64)
            return found, np.asarray(self._index.reconstruct_batch(rows), dtype=np.float32)

    def vector(self, item_id: str) -> np.ndarray | None:
        _, vecs = self.vectors([item_id])
        return vecs[0] if len(vecs) else None

    def memory_bytes(self) -> int:
        """faiss bytes (vectors and graph) plus the alive bitmap, not the Python id map."""
        import faiss

        with self._lock:
            n = self._index.ntotal
            total = n * self.dim * 4 + self._alive.nbytes
            if self.kind == "hnsw":
                hnsw = self._index.hnsw
                total += hnsw.neighbors.size() * 4 + hnsw.levels.size() * 4
                total += hnsw.offsets.size() * 8
            del faiss
            return int(total)

    # -- persistence --------------------------------------------------------------------
    def save(self, directory: Path) -> None:
        import faiss

        directory.mkdir(parents=True, exist_ok=True)
        with self._lock:
            tmp = directory / (INDEX_FILE + ".tmp")
            faiss.write_index(self._index, str(tmp))
            tmp.replace(directory / INDEX_FILE)
            (directory / IDS_FILE).write_text(json.dumps(self._ids))
            np.save(directory / ALIVE_FILE, self._alive)
            (directory / MANIFEST_FILE).write_text(json.dumps({
                "model_id": self.model_id, "dim": self.dim, "rows": len(self._ids),
                "kind": self.kind,
            }))

    @classmethod
    def load(cls, directory: Path, **options: Any) -> VectorIndex:
        import faiss

        manifest_path = directory / MANIFEST_FILE
        if not manifest_path.exists():
            raise InvalidConfig(f"no vector index in {directory} (missing {MANIFEST_FILE})")
        manifest = json.loads(manifest_path.read_text())
        index = cls(int(manifest["dim"]), str(manifest["model_id"]), **options)
        index._index = faiss.read_index(str(directory / INDEX_FILE))
        if index.kind == "hnsw":
            index._index.hnsw.efSearch = index.ef_search
        index._ids = list(json.loads((directory / IDS_FILE).read_text()))
        if len(index._ids) != index._index.ntotal:
            raise InvalidConfig(f"vector index in {directory} is inconsistent; delete it")
        index._row_of = {item_id: row for row, item_id in enumerate(index._ids)}
        index._alive = np.load(directory / ALIVE_FILE)
        bits = np.unpackbits(index._alive, bitorder="little")[: len(index._ids)]
        index._n_alive = int(bits.sum())
        return index

    def retain_only(self, live_ids: set[str]) -> None:
        """Align the alive bits with the database after loading a persisted index."""
        with self._lock:
            for row, item_id in enumerate(self._ids):
                self._set_alive(row, item_id in live_ids and self._row_of[item_id] == row)
