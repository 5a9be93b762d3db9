"""Near-duplicate media by perceptual hash.

Each image and video keyframe has a 64-bit DCT pHash; a new file's hashes are compared
against every stored hash by Hamming distance with a vectorised NumPy scan (XOR, then
``np.bitwise_count``), which is linear but fast (tens of millions of hashes a second on
one core, so a library of a million images costs milliseconds per query). Items within
``near_duplicate_max_distance`` bits are reported in the media entry as
``near_duplicate_of``. Past ~10^8 hashes a multi-index hashing table would replace the
scan behind the same ``search`` method.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, Field
from sqlalchemy import BigInteger, ForeignKey, Integer, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from core.storage.db import Base, transaction

log = logging.getLogger(__name__)


# -- perceptual hash index ----------------------------------------------------------------


class MediaHashRow(Base):
    """A 64-bit pHash of an image, or of one keyframe (``t_ms``) of a video."""

    __tablename__ = "media_hashes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    item_id: Mapped[str] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"), index=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)  # the uploaded file
    t_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    phash: Mapped[int] = mapped_column(BigInteger)  # two's complement of the unsigned hash


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


class NearDuplicate(BaseModel):
    item_id: str
    sha256: str
    t_ms: int | None
    distance: int = Field(ge=0, le=64)
    query: int = Field(description="index of the query hash")
    query_t_ms: int | None = None


class PerceptualHashIndex:
    """Every stored pHash in memory as a uint64 array, kept current from the table.

    ``search`` first loads rows added since the last call (by any process), so replicas
    sharing a database see each other's uploads.
    """

    def __init__(self, sessions: sessionmaker[Session], max_distance: int = 12) -> None:
        self.sessions = sessions
        self.max_distance = max_distance
        self._lock = threading.Lock()
        self._last_id = 0
        self._hashes = np.zeros(0, dtype=np.uint64)
        self._row_ids = np.zeros(0, dtype=np.int64)
        self._meta: dict[int, tuple[str, str, int | None]] = {}  # row id -> item, sha, t_ms

    @staticmethod
    def rows(
        item_id: str, sha256: str, hashes: Sequence[tuple[str, int | None]]
    ) -> list[MediaHashRow]:
        return [
            MediaHashRow(item_id=item_id, sha256=sha256, t_ms=t_ms, phash=_signed(int(value, 16)))
            for value, t_ms in hashes
        ]

    def _refresh(self) -> None:
        with transaction(self.sessions) as session:
            rows = session.execute(
                select(MediaHashRow.id, MediaHashRow.item_id, MediaHashRow.sha256,
                       MediaHashRow.t_ms, MediaHashRow.phash)
                .where(MediaHashRow.id > self._last_id)
                .order_by(MediaHashRow.id)
            ).all()
        if not rows:
            return
        ids = np.array([r[0] for r in rows], dtype=np.int64)
        values = np.array([r[4] for r in rows], dtype=np.int64).view(np.uint64)
        self._row_ids = np.concatenate([self._row_ids, ids])
        self._hashes = np.concatenate([self._hashes, values])
        for row_id, item_id, sha256, t_ms, _ in rows:
            self._meta[int(row_id)] = (item_id, sha256, t_ms)
        self._last_id = int(ids[-1])

    def search(
        self, queries: Sequence[tuple[str, int | None]], exclude_item: str | None = None
    ) -> list[NearDuplicate]:
        """Stored hashes within ``max_distance`` bits of each query, nearest first."""
        if not queries:
            return []
        with self._lock:
            self._refresh()
            hashes, row_ids = self._hashes, self._row_ids
            meta = self._meta
        if hashes.size == 0:
            return []
        found: list[NearDuplicate] = []
        for index, (value, query_t_ms) in enumerate(queries):
            query = np.uint64(int(value, 16))
            distances = np.bitwise_count(np.bitwise_xor(hashes, query))
            for position in np.flatnonzero(distances <= self.max_distance):
                item_id, sha256, t_ms = meta[int(row_ids[position])]
                if item_id == exclude_item:
                    continue
                found.append(NearDuplicate(
                    item_id=item_id, sha256=sha256, t_ms=t_ms,
                    distance=int(distances[position]), query=index, query_t_ms=query_t_ms,
                ))
        found.sort(key=lambda d: (d.distance, d.item_id))
        return found
