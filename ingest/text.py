"""Text items: validate, store, analyze, route; every accepted item ends in a known state.

The flow for one item (or a batch, analyzed together so the embedding runs batched):
``received`` is committed first, so a crash mid-analysis leaves a row that recovery
picks up; analysis is claimed atomically (``received``/``failed`` -> ``analyzing``);
the analysis and the embedding are written in one transaction, then the moderation gate
routes the item. A passing fault (a model service away) puts the item back to
``received`` and answers 503; content the analyzers fail on is ``failed`` with the
reason, and is analyzed again when posted again.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence

import numpy as np
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from analyzers.text import TextAnalyzer, document_text
from core.contracts import (
    ItemAnalysis,
    ItemState,
)
from core.errors import (
    Conflict,
    ContentNotAnalyzable,
    ReelsiftError,
    ServiceUnavailable,
)
from core.storage.db import transaction, write_transaction
from core.storage.items import ItemStore
from core.storage.processes import ProcessRegistry
from core.storage.tables import AnalysisRow, ItemRow, utcnow
from ingest.analysis import (
    Enrichment,
    ModerationGate,
    TextDocumentAnalyzer,
    route_analysed,
    text_document_analyzer,
)
from ingest.intake import (
    TextLimits,
    check_text_item,
    fingerprint,
)
from ingest.models import ItemOut, TextItemIn
from ingest.recovery import RETRYABLE_STATES, lock_orphaned_items, release_unanalyzed
from ingest.views import ItemViews

log = logging.getLogger(__name__)


class TextIngestService:
    def __init__(
        self,
        store: ItemStore,
        analyzer: TextAnalyzer | TextDocumentAnalyzer,
        limits: TextLimits,
        gate: ModerationGate,
        enrichment: Enrichment | None = None,
        processes: ProcessRegistry | None = None,
    ) -> None:
        """``analyzer``: a ``TextAnalyzer`` run here with ``enrichment``, or a ready
        ``TextDocumentAnalyzer`` (the text-analysis service's client) with its own stages.
        ``processes``: this process's registration, so recovery leaves other live
        processes' work alone; None for a single process that owns the database."""
        self.store = store
        self.text = text_document_analyzer(analyzer, enrichment)
        self.limits = limits
        self.gate = gate
        self.processes = processes
        self.views = ItemViews(store)

    # -- reads -------------------------------------------------------------------------
    def get_item(self, item_id: str, *, include_vectors: bool = False) -> ItemOut:
        return self.views.get(item_id, include_vectors=include_vectors)

    # -- writes ------------------------------------------------------------------------
    def submit_text_items(self, items: Sequence[TextItemIn]) -> list[tuple[ItemOut, bool]]:
        """Store and analyze; returns (item, created) in input order. Raises on bad input,
        ``ServiceUnavailable`` (503) when a model service stays away (the items stay
        retryable) and ``ContentNotAnalyzable`` (422) when the analyzers fail on it.

        An item already stored with the same content is not stored twice; if an earlier
        attempt left it unanalyzed (``received``) or ``failed``, it is analyzed again, so
        a client's retry always finishes its upload."""
        to_analyze, created = self.store_items(items)
        if to_analyze:
            self.analyze_items(to_analyze)

        out = []
        with transaction(self.store.sessions) as session:
            for item in items:
                row = self.store.get(session, item.id)
                out.append((self.views.of_row(session, row), item.id in created))
        return out

    def store_items(self, items: Sequence[TextItemIn]) -> tuple[list[str], set[str]]:
        """Check and store items not stored yet as ``received``, without analyzing them;
        returns the ids to analyze (new and retryable ones, in input order) and the ids
        created. Raises on bad input and on an id stored with different content."""
        for item in items:
            check_text_item(item, self.limits)
        seen: dict[str, str] = {}
        for item in items:
            digest = fingerprint(item)
            if seen.setdefault(item.id, digest) != digest:
                raise Conflict(
                    f"item id {item.id!r} appears twice in one request with different content"
                )
        try:
            return self._store_new(items, seen)
        except IntegrityError:
            # The same id arrived concurrently: the first insert wins, this one replays it.
            return self._store_new(items, seen)

    def _store_new(
        self, items: Sequence[TextItemIn], digests: dict[str, str]
    ) -> tuple[list[str], set[str]]:
        """Insert items not stored yet as ``received``; returns the ids to analyze (new
        ones and retryable ones, in input order) and the ids created."""
        to_analyze: list[str] = []
        created: set[str] = set()
        with transaction(self.store.sessions) as session:
            existing = {
                row.id: row
                for row in session.scalars(select(ItemRow).where(ItemRow.id.in_(list(digests))))
            }
            for item in items:
                if item.id in created or item.id in to_analyze:
                    continue  # the same item twice in one batch
                row = existing.get(item.id)
                if row is not None:
                    if row.content_sha256 != digests[item.id]:
                        raise Conflict(
                            f"item {item.id!r} already exists with different content; "
                            "ids are immutable, use a new id",
                            item_id=item.id,
                        )
                    if row.state in RETRYABLE_STATES:
                        to_analyze.append(item.id)
                    continue
                kwargs = {} if item.created_at is None else {"created_at": item.created_at}
                session.add(
                    ItemRow(
                        id=item.id, creator_id=item.creator_id, title=item.title, text=item.text,
                        tags=item.tags, state=ItemState.RECEIVED.value,
                        content_sha256=digests[item.id], **kwargs,
                    )
                )
                to_analyze.append(item.id)
                created.add(item.id)
        return to_analyze, created

    def analyze_items(self, item_ids: Sequence[str]) -> list[str]:
        """Analyze and route the given text items that are ``received`` or ``failed``;
        returns the ids this call took (another request or process may hold the rest)."""
        claimed = self.claim_for_analysis(item_ids)
        if claimed:
            self._analyze_and_route(claimed)
        return claimed

    def claim_for_analysis(self, item_ids: Sequence[str]) -> list[str]:
        """Move retryable items to ``analyzing`` in one write transaction: of concurrent
        callers (a client's retry, recovery, another worker) exactly one takes each."""
        with self.store.changing() as changes:
            rows = changes.session.scalars(
                select(ItemRow)
                .where(ItemRow.id.in_(list(item_ids)), ItemRow.state.in_(RETRYABLE_STATES))
                .with_for_update(skip_locked=True)
            ).all()
            taken = {row.id: row for row in rows}
            for item_id in dict.fromkeys(item_ids):
                row = taken.get(item_id)
                if row is None:
                    continue
                if row.state == ItemState.FAILED.value:
                    changes.transition(item_id, ItemState.RECEIVED, "analysis retried")
                changes.transition(item_id, ItemState.ANALYZING)
                row.updated_at = utcnow()
        return [c.item_id for c in changes.made if c.after is ItemState.ANALYZING]

    def _analyze_and_route(self, item_ids: list[str]) -> None:
        with transaction(self.store.sessions) as session:
            rows = [self.store.get(session, i) for i in item_ids]
            documents = [document_text(r.title, r.text) for r in rows]
            titles = [r.title for r in rows]
            bodies = [r.text for r in rows]
        try:
            analyses, vectors = self.text.analyze_documents(titles, documents, bodies=bodies)
        except ServiceUnavailable:
            # A passing fault is not the content's: the items wait, retryable.
            release_unanalyzed(self.store, item_ids, "waiting for a model service")
            raise
        except Exception as exc:
            if len(item_ids) > 1:
                # One item's content may be at fault: callers retry one at a time.
                release_unanalyzed(self.store, item_ids, "batch analysis failed")
                raise ContentNotAnalyzable(
                    f"analysis of a batch of {len(item_ids)} failed "
                    f"({type(exc).__name__}: {exc}); submit the items one at a time"
                ) from exc
            log.exception("analysis failed for %s", item_ids)
            reason = f"analysis failed: {type(exc).__name__}: {exc}"
            self._fail(item_ids, reason)
            raise ContentNotAnalyzable(
                f"item {item_ids[0]!r} could not be analyzed ({reason}); it is stored as "
                "'failed': post it again or run `reelsift retry-failed` after a fix",
                item_id=item_ids[0],
            ) from exc
        self.record_analyses(item_ids, analyses, vectors)

    def record_analyses(
        self, item_ids: Sequence[str], analyses: Sequence[ItemAnalysis],
        vectors: Sequence[dict[str, tuple[str, np.ndarray]]],
    ) -> None:
        """Store the analyses of items this process claimed (``analyzing``) and route
        them; the analysis may have run elsewhere (``ingest.ray_bulk``)."""
        with transaction(self.store.sessions) as session:
            for item_id, analysis in zip(item_ids, analyses, strict=True):
                session.add(AnalysisRow(item_id=item_id, payload=analysis.model_dump(mode="json")))
            self.store.put_embeddings(session, [
                (item_id, kind, model_id, vector)
                for item_id, item_vectors in zip(item_ids, vectors, strict=True)
                for kind, (model_id, vector) in item_vectors.items()
            ])
        # The analysis is durable; routing is a separate step (a crash in between leaves
        # the item in ``analyzing`` for resume_unfinished).
        route_analysed(self.gate, [(item_id, analysis.risk)
                                   for item_id, analysis in zip(item_ids, analyses, strict=True)])

    def mark_failed(self, item_ids: Sequence[str], reason: str) -> None:
        """Claimed items the analyzers failed on: ``failed`` with the reason."""
        self._fail(item_ids, reason)

    def _fail(self, item_ids: Sequence[str], reason: str) -> None:
        for item_id in item_ids:
            try:
                self.store.transition(item_id, ItemState.FAILED, reason)
            except ReelsiftError:
                log.exception("could not mark %s failed", item_id)

    def take_unfinished(self) -> list[str]:
        """Text items a crash left in ``received``/``analyzing`` that no live process
        owns, put back to ``received`` and stamped as this caller's to analyze."""
        with write_transaction(self.store.sessions) as session:
            stuck = lock_orphaned_items(session, self.processes, with_media=False)
            for row in stuck:
                # Back to received so the normal path replays received -> analyzing -> routed.
                row.state = ItemState.RECEIVED.value
                row.updated_at = utcnow()  # taken: another recovering process skips it
            return [row.id for row in stuck]

    def resume_unfinished(self) -> int:
        """Finish text items a crash left in ``received``/``analyzing``; returns how many.

        Items with media are resumed by ``ingest.media`` (jobs).
        """
        stuck_ids = self.take_unfinished()
        resumed = 0
        for start in range(0, len(stuck_ids), 32):
            chunk = stuck_ids[start : start + 32]
            try:
                resumed += len(self.analyze_items(chunk))
            except ContentNotAnalyzable:
                for item_id in chunk:  # one at a time: only the bad one fails
                    with contextlib.suppress(ContentNotAnalyzable):
                        resumed += len(self.analyze_items([item_id]))
        return resumed
