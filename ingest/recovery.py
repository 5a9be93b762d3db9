"""Work no live process owns (unfinished items a crashed process left), and items a
passing fault interrupted, returned to ``received`` for the next try."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from core.contracts import ItemState
from core.errors import ReelsiftError
from core.storage.db import transaction
from core.storage.items import ItemStore
from core.storage.processes import ProcessRegistry
from core.storage.tables import ItemMediaRow, ItemRow

log = logging.getLogger(__name__)


UNFINISHED_STATES = (ItemState.RECEIVED.value, ItemState.ANALYZING.value)
# States from which analysis may (re)start.
RETRYABLE_STATES = (ItemState.RECEIVED.value, ItemState.FAILED.value)


def lock_orphaned_items(
    session: Session, processes: ProcessRegistry | None, *, with_media: bool
) -> list[ItemRow]:
    """Unfinished items (with or without media) no live process can still be working on
    (``ProcessRegistry.orphaned_before``; every one when ``processes`` is None, i.e. one
    process owns the database), locked for the caller's write transaction: rows another
    recovering process holds are skipped, and the caller stamps ``updated_at`` on those it
    takes so it is the only one to resume them."""
    has_media = exists().where(ItemMediaRow.item_id == ItemRow.id)
    query = select(ItemRow).where(
        ItemRow.state.in_(UNFINISHED_STATES), has_media if with_media else ~has_media
    )
    if processes is not None:
        query = query.where(ItemRow.updated_at < processes.orphaned_before(session))
    return list(session.scalars(query.with_for_update(skip_locked=True)))


def release_unanalyzed(store: ItemStore, item_ids: Sequence[str], reason: str) -> None:
    """``analyzing`` -> ``received`` after a passing fault: the next retry or recovery
    sweep takes them (they are never ``failed`` for a fault that was not theirs)."""
    for item_id in item_ids:
        try:
            store.transition(item_id, ItemState.RECEIVED, reason)
        except ReelsiftError:
            log.exception("could not return %s to received", item_id)


def failed_item_ids(store: ItemStore) -> list[str]:
    """Every ``failed`` item, oldest first (``reelsift retry-failed``)."""
    with transaction(store.sessions) as session:
        return list(session.scalars(
            select(ItemRow.id).where(ItemRow.state == ItemState.FAILED.value)
            .order_by(ItemRow.created_at)
        ))
