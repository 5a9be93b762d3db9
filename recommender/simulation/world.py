"""A synthetic catalog over taxonomy-like categories, with precomputed fused vectors."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from core.contracts import ItemState
from core.storage.db import transaction
from core.storage.items import ItemStore
from core.storage.tables import AnalysisRow, ItemRow
from recommender.catalog import CatalogItem

CATEGORY_NAMES = (
    "Soccer", "Cooking", "Travel", "Gaming", "Music", "Comedy", "Science", "Fashion",
    "Fitness", "Pets", "Cars", "Art", "Finance", "Movies", "Dance", "Nature",
)
SIM_MODEL_ID = "sim.fused@1"


@dataclass(frozen=True)
class SyntheticItem:
    id: str
    creator_id: str
    category: int
    tags: tuple[str, ...]
    created_at: datetime
    duration_ms: int
    clickbait: bool
    vector: np.ndarray


class SyntheticWorld:
    def __init__(
        self, n_items: int = 600, n_categories: int = 12, dim: int = 32, *,
        n_creators: int | None = None, clickbait_share: float = 0.05,
        spread: float = 0.6, seed: int = 0, start: datetime | None = None,
        hours: float = 48.0,
    ) -> None:
        if not 1 <= n_categories <= len(CATEGORY_NAMES):
            raise ValueError(f"n_categories must be 1..{len(CATEGORY_NAMES)}")
        rng = np.random.default_rng(seed)
        self.dim = dim
        self.n_categories = n_categories
        self.start = start or datetime(2025, 1, 1, tzinfo=UTC)
        self.end = self.start + timedelta(hours=hours)
        self.centroids = _normalise(rng.normal(size=(n_categories, dim)))
        n_creators = n_creators or max(4, n_items // 8)
        creator_category = rng.integers(0, n_categories, size=n_creators)
        categories = rng.integers(0, n_categories, size=n_items)
        # noise of norm ~ ``spread``: items sit at cosine ~1/sqrt(1+spread^2) to their centroid
        vectors = _normalise(
            self.centroids[categories] + spread * rng.normal(size=(n_items, dim)) / np.sqrt(dim)
        )
        offsets = np.sort(rng.uniform(0, hours * 3600.0, size=n_items))
        self.items: list[SyntheticItem] = []
        for n in range(n_items):
            cat = int(categories[n])
            same_cat = np.flatnonzero(creator_category == cat)
            creator = int(rng.choice(same_cat)) if len(same_cat) else int(rng.integers(n_creators))
            name = CATEGORY_NAMES[cat].lower()
            self.items.append(SyntheticItem(
                id=f"item-{n:06d}", creator_id=f"creator-{creator:04d}", category=cat,
                tags=(name, f"{name}-{int(rng.integers(0, 4))}"),
                created_at=self.start + timedelta(seconds=float(offsets[n])),
                duration_ms=int(rng.integers(8_000, 60_000)),
                clickbait=bool(rng.random() < clickbait_share),
                vector=vectors[n].astype(np.float32),
            ))
        self.by_id = {item.id: item for item in self.items}

    def labels(self, item: SyntheticItem) -> list[dict[str, Any]]:
        name = CATEGORY_NAMES[item.category]
        return [{"id": f"cat-{item.category}", "name": name, "path": [name],
                 "confidence": 0.9}]

    def catalog_item(self, item: SyntheticItem) -> CatalogItem:
        return CatalogItem(
            id=item.id, creator_id=item.creator_id, created_at=item.created_at.timestamp(),
            tags=item.tags, categories=((f"cat-{item.category}", 0.9),),
        )

    def records(self) -> Iterator[dict[str, Any]]:
        """Bulk-file item records (DESIGN.md) with precomputed embeddings and labels."""
        for item in self.items:
            yield {
                "id": item.id, "creator_id": item.creator_id, "title": item.id, "text": "",
                "tags": list(item.tags), "media": [], "created_at": item.created_at.isoformat(),
                "labels": self.labels(item),
                "embeddings": {"fused": item.vector.tolist(), "model_id": SIM_MODEL_ID},
            }

    def write_to_db(
        self, sessions: sessionmaker[Session], state: ItemState = ItemState.APPROVED,
        model_id: str = SIM_MODEL_ID,
    ) -> None:
        with transaction(sessions) as session:
            for item in self.items:
                session.add(ItemRow(
                    id=item.id, creator_id=item.creator_id, title=item.id, text="",
                    tags=list(item.tags), state=state.value, content_sha256="0" * 64,
                    created_at=item.created_at,
                ))
            session.flush()
            for item in self.items:
                session.add(AnalysisRow(item_id=item.id, payload={"labels": self.labels(item)}))
            ItemStore.put_embeddings(
                session, [(item.id, "fused", model_id, item.vector) for item in self.items])


def _normalise(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
