"""Items as clients read them back: the row, its latest analysis and its vectors."""

from __future__ import annotations

from sqlalchemy.orm import Session

from core.storage.db import transaction
from core.storage.items import ItemStore
from core.storage.tables import ItemRow
from ingest.models import EmbeddingInfo, ItemOut


class ItemViews:
    def __init__(self, store: ItemStore) -> None:
        self.store = store

    def get(self, item_id: str, *, include_vectors: bool = False) -> ItemOut:
        with transaction(self.store.sessions) as session:
            return self.of_row(session, self.store.get(session, item_id), include_vectors)

    def of_row(self, session: Session, row: ItemRow, include_vectors: bool = False) -> ItemOut:
        vectors = self.store.embeddings(session, row.id)
        return ItemOut(
            id=row.id, creator_id=row.creator_id, title=row.title, text=row.text, tags=row.tags,
            state=row.state, state_reason=row.state_reason, created_at=row.created_at,
            updated_at=row.updated_at, analysis=self.store.latest_analysis(session, row.id),
            embeddings=[
                EmbeddingInfo(
                    kind=kind, model_id=model_id, dim=int(vec.shape[0]),
                    vector=[float(x) for x in vec] if include_vectors else None,
                )
                for kind, (model_id, vec) in sorted(vectors.items())
            ],
        )
