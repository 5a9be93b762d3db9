"""The item store: create, read and move items through their states.

A state change is one transaction. Listeners (the recommender's catalog, for one) are
told after the commit and before ``transition`` returns, so a removed or pending item
leaves every in-process feed before the caller hears back. A listener gets the changes
of one transaction together (a bulk import routes a batch in one), so it can apply them
in one go. Other replicas follow the ``updated_at`` column.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.contracts import ITEM_TRANSITIONS, ItemState
from core.errors import Conflict, NotFound
from core.storage.db import write_transaction
from core.storage.tables import AnalysisRow, EmbeddingRow, ItemRow


@dataclass(frozen=True)
class StateChange:
    item_id: str
    before: ItemState
    after: ItemState
    reason: str | None


# The changes one transaction made, in the order it made them.
StateListener = Callable[[Sequence[StateChange]], None]


def content_fingerprint(fields: dict[str, Any]) -> str:
    canonical = json.dumps(fields, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class InvalidTransition(Conflict):
    code = "E108"


class StateChanges:
    """State changes made inside one write transaction (``ItemStore.changing``)."""

    def __init__(self, store: ItemStore, session: Session) -> None:
        self.store = store
        self.session = session
        self.made: list[StateChange] = []

    def transition(
        self, item_id: str, new_state: ItemState, reason: str | None = None
    ) -> StateChange:
        change = self.store._apply(self.session, item_id, new_state, reason)
        self.made.append(change)
        return change


class ItemStore:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions
        self._listeners: list[StateListener] = []
        self._lock = threading.Lock()

    def subscribe(self, listener: StateListener) -> None:
        with self._lock:
            self._listeners.append(listener)

    def get(self, session: Session, item_id: str) -> ItemRow:
        row = session.get(ItemRow, item_id)
        if row is None:
            raise NotFound(f"no item with id {item_id!r}", item_id=item_id)
        return row

    def find(self, session: Session, item_id: str) -> ItemRow | None:
        return session.get(ItemRow, item_id)

    def latest_analysis(self, session: Session, item_id: str) -> dict[str, Any] | None:
        row = session.scalars(
            select(AnalysisRow)
            .where(AnalysisRow.item_id == item_id)
            .order_by(AnalysisRow.id.desc())
            .limit(1)
        ).first()
        return row.payload if row else None

    def embeddings(self, session: Session, item_id: str) -> dict[str, tuple[str, np.ndarray]]:
        """kind -> (model_id, vector) for one item."""
        rows = session.scalars(select(EmbeddingRow).where(EmbeddingRow.item_id == item_id))
        return {
            r.kind: (r.model_id, np.frombuffer(r.vector, dtype=np.float32).copy()) for r in rows
        }

    @classmethod
    def put_embedding(
        cls, session: Session, item_id: str, kind: str, model_id: str, vector: np.ndarray
    ) -> None:
        cls.put_embeddings(session, [(item_id, kind, model_id, vector)])

    @staticmethod
    def put_embeddings(
        session: Session, vectors: Sequence[tuple[str, str, str, np.ndarray]]
    ) -> None:
        """(item id, kind, model id, vector) rows, each replacing the item's vector of
        that kind and model if there is one; the existing ones are read in one query."""
        item_ids = list({item_id for item_id, _, _, _ in vectors})
        existing = {
            (row.item_id, row.kind, row.model_id): row
            for start in range(0, len(item_ids), 500)
            for row in session.scalars(
                select(EmbeddingRow).where(EmbeddingRow.item_id.in_(item_ids[start:start + 500]))
            )
        }
        for item_id, kind, model_id, vector in vectors:
            vec = np.ascontiguousarray(vector, dtype=np.float32).reshape(-1)
            row = existing.get((item_id, kind, model_id))
            if row is not None:
                row.vector = vec.tobytes()
                row.dim = int(vec.shape[0])
                continue
            row = existing[(item_id, kind, model_id)] = EmbeddingRow(
                item_id=item_id, kind=kind, model_id=model_id, dim=int(vec.shape[0]),
                vector=vec.tobytes(),
            )
            session.add(row)

    def transition(
        self,
        item_id: str,
        new_state: ItemState,
        reason: str | None = None,
        session: Session | None = None,
    ) -> StateChange:
        """Move one item to ``new_state``; within ``session`` if given (caller commits)."""
        if session is not None:
            change = self._apply(session, item_id, new_state, reason)
            # The caller owns the transaction; it must call notify() after commit.
            return change
        with write_transaction(self.sessions) as own:
            change = self._apply(own, item_id, new_state, reason)
        self.notify([change])
        return change

    @contextmanager
    def changing(self) -> Iterator[StateChanges]:
        """One write transaction whose state changes reach the listeners once it has
        committed (and only then): the change and its notification are one operation.

            with store.changing() as changes:
                changes.transition(item_id, ItemState.ANALYZING)
                changes.session.add(...)   # other rows in the same transaction
        """
        with write_transaction(self.sessions) as session:
            changes = StateChanges(self, session)
            yield changes
        self.notify(changes.made)

    def notify(self, changes: Sequence[StateChange]) -> None:
        with self._lock:
            listeners = list(self._listeners)
        made = [change for change in changes if change.before != change.after]
        if not made:
            return
        for listener in listeners:
            listener(made)

    def _apply(
        self, session: Session, item_id: str, new_state: ItemState, reason: str | None
    ) -> StateChange:
        row = session.get(ItemRow, item_id, with_for_update=True)
        if row is None:
            raise NotFound(f"no item with id {item_id!r}", item_id=item_id)
        before = ItemState(row.state)
        if new_state != before and new_state not in ITEM_TRANSITIONS[before]:
            raise InvalidTransition(
                f"item {item_id!r} cannot go from {before.value} to {new_state.value}",
                item_id=item_id,
                state=before.value,
            )
        row.state = new_state.value
        row.state_reason = reason
        return StateChange(item_id=item_id, before=before, after=new_state, reason=reason)
