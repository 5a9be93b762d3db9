"""Upload intake: validate, store, analyze, route; every accepted item ends in a known state.

The flow for one item (or a batch, analyzed together so the embedding runs batched):
``received`` is committed first, so a crash mid-analysis leaves a row that
``resume_unfinished`` picks up at the next start; the analysis, the embedding and the
routed state are then written in one transaction.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import ValidationError
from sqlalchemy import exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from analyzers.fusion import ItemFuser, fuse
from analyzers.text import TextAnalyzer, document_text
from core.contracts import (
    ItemAnalysis,
    ItemState,
    Label,
    NotAssessed,
    RiskCategory,
    RiskScore,
)
from core.errors import (
    Conflict,
    ContentNotAnalyzable,
    InvalidInput,
    PayloadTooLarge,
    ReelsiftError,
    ServiceUnavailable,
)
from core.storage.db import transaction, write_transaction
from core.storage.items import ItemStore, StateChange, content_fingerprint
from core.storage.tables import AnalysisRow, ItemMediaRow, ItemRow, utcnow
from serving.errors import validation_error_body
from serving.processes import ProcessRegistry
from serving.schemas import BatchOut, BatchResult, EmbeddingInfo, ItemOut, TextItemIn

log = logging.getLogger(__name__)


# Moves an analyzed item out of ``analyzing`` given its risk scores: moderation's policy
# and review queue in the running service (see serving/wiring.py).
ModerationGate = Callable[[str, list[RiskScore]], None]
# (titles, documents, the documents' text vectors or None) -> risk scores per document.
TextRiskScorer = Callable[
    [Sequence[str], Sequence[str], np.ndarray | None], list[list[RiskScore]]
]
# text vectors -> hierarchical labels per document.
Labeler = Callable[[np.ndarray], list[list[Label]]]


@dataclass
class Enrichment:
    """Optional stages after the text analyzer; each absent one is reported, not faked."""

    risk: TextRiskScorer | None = None
    labels: Labeler | None = None
    fuser: ItemFuser | None = None


def unassessed_risk(reason: str) -> list[RiskScore]:
    return [RiskScore(category=c, score=None, not_assessed_reason=reason) for c in RiskCategory]


@dataclass(frozen=True)
class TextLimits:
    max_text_chars: int = 20_000
    max_title_chars: int = 500
    max_tags: int = 50


def check_text_item(item: TextItemIn, limits: TextLimits, *, require_text: bool = True) -> None:
    """``require_text=False`` for items whose media carry the content (text may be empty)."""
    if require_text and not item.text.strip():
        raise InvalidInput("field 'text' is empty or only whitespace", field="text")
    if len(item.text) > limits.max_text_chars:
        raise PayloadTooLarge(
            f"field 'text' has {len(item.text)} characters; the limit is "
            f"{limits.max_text_chars} (REELSIFT_MAX_TEXT_CHARS)",
            field="text", limit=limits.max_text_chars,
        )
    if len(item.title) > limits.max_title_chars:
        raise PayloadTooLarge(
            f"field 'title' has {len(item.title)} characters; the limit is "
            f"{limits.max_title_chars} (REELSIFT_MAX_TITLE_CHARS)",
            field="title", limit=limits.max_title_chars,
        )
    if len(item.tags) > limits.max_tags:
        raise InvalidInput(
            f"{len(item.tags)} tags; at most {limits.max_tags} allowed", field="tags"
        )
    fields = (("text", item.text), ("title", item.title), *(("tags", t) for t in item.tags))
    for name, value in fields:
        if "\x00" in value:
            raise InvalidInput(f"field {name!r} contains a NUL character", field=name)
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidInput(
                f"field {name!r} is not valid Unicode (lone surrogate at {exc.start})", field=name
            ) from exc


def fingerprint(item: TextItemIn) -> str:
    return content_fingerprint(
        {"creator_id": item.creator_id, "title": item.title, "text": item.text, "tags": item.tags}
    )


def analyze_documents(
    analyzer: TextAnalyzer, stages: Enrichment, titles: Sequence[str], documents: Sequence[str]
) -> tuple[list[ItemAnalysis], list[dict[str, tuple[str, np.ndarray]]]]:
    """Analyses and vectors (kind -> (model id, vector)) for a batch of documents."""
    results = analyzer.analyze(documents)
    have_vectors = all(r.vector is not None for r in results)
    matrix = np.stack([r.vector for r in results]) if have_vectors and results else None  # type: ignore[misc]
    risks = (
        stages.risk(titles, documents, matrix)
        if stages.risk is not None
        else [unassessed_risk("no text risk model configured") for _ in documents]
    )
    labels = stages.labels(matrix) if stages.labels is not None and matrix is not None else None
    analyses, vectors = [], []
    for i, result in enumerate(results):
        analysis = ItemAnalysis(text=result.analysis, risk=risks[i])
        item_vectors: dict[str, tuple[str, np.ndarray]] = {}
        if result.vector is not None and result.analysis.embedding_model:
            analysis.models["text_embedding"] = result.analysis.embedding_model
            item_vectors["text"] = (result.analysis.embedding_model, result.vector)
            if stages.fuser is not None:
                fused = fuse(stages.fuser, text=result.vector)
                analysis.models["fusion"] = fused.fusion_model
                item_vectors["fused"] = (fused.fusion_model, fused.as_array())
        if labels is not None:
            analysis.labels = labels[i]
        else:
            analysis.not_assessed.append(NotAssessed(
                output="labels",
                reason="no taxonomy classifier" if stages.labels is None
                else "no text embedding to classify",
            ))
        analyses.append(analysis)
        vectors.append(item_vectors)
    return analyses, vectors


class IngestService:
    def __init__(
        self,
        store: ItemStore,
        analyzer: TextAnalyzer,
        limits: TextLimits,
        gate: ModerationGate,
        enrichment: Enrichment | None = None,
        processes: ProcessRegistry | None = None,
    ) -> None:
        """``processes``: this process's registration, so recovery leaves other live
        processes' work alone; None for a single process that owns the database."""
        self.store = store
        self.analyzer = analyzer
        self.limits = limits
        self.gate = gate
        self.enrichment = enrichment or Enrichment()
        self.processes = processes

    # -- reads -------------------------------------------------------------------------
    def get_item(self, item_id: str, *, include_vectors: bool = False) -> ItemOut:
        with transaction(self.store.sessions) as session:
            row = self.store.get(session, item_id)
            return self._to_out(session, row, include_vectors)

    def _to_out(self, session: Session, row: ItemRow, include_vectors: bool) -> ItemOut:
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

    # -- writes ------------------------------------------------------------------------
    def submit_text_items(self, items: Sequence[TextItemIn]) -> list[tuple[ItemOut, bool]]:
        """Store and analyze; returns (item, created) in input order. Raises on bad input,
        ``ServiceUnavailable`` (503) when a model service stays away (the items stay
        retryable) and ``ContentNotAnalyzable`` (422) when the analyzers fail on it.

        An item already stored with the same content is not stored twice; if an earlier
        attempt left it unanalyzed (``received``) or ``failed``, it is analyzed again, so
        a client's retry always finishes its upload."""
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
            to_analyze, created = self._store_new(items, seen)
        except IntegrityError:
            # The same id arrived concurrently: the first insert wins, this one replays it.
            to_analyze, created = self._store_new(items, seen)
        if to_analyze:
            self.analyze_items(to_analyze)

        out = []
        with transaction(self.store.sessions) as session:
            for item in items:
                row = self.store.get(session, item.id)
                out.append((self._to_out(session, row, False), item.id in created))
        return out

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
        changes: list[StateChange] = []
        with write_transaction(self.store.sessions) as session:
            rows = session.scalars(
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
                    changes.append(self.store.transition(
                        item_id, ItemState.RECEIVED, "analysis retried", session=session
                    ))
                changes.append(self.store.transition(item_id, ItemState.ANALYZING,
                                                     session=session))
                row.updated_at = utcnow()
        self.store.notify(changes)
        return [c.item_id for c in changes if c.after is ItemState.ANALYZING]

    def _analyze_and_route(self, item_ids: list[str]) -> None:
        with transaction(self.store.sessions) as session:
            rows = [self.store.get(session, i) for i in item_ids]
            documents = [document_text(r.title, r.text) for r in rows]
            titles = [r.title for r in rows]
        try:
            analyses, vectors = analyze_documents(
                self.analyzer, self.enrichment, titles, documents
            )
        except ServiceUnavailable:
            # A passing fault is not the content's: the items wait, retryable.
            self.release_unanalyzed(item_ids, "waiting for a model service")
            raise
        except Exception as exc:
            if len(item_ids) > 1:
                # One item's content may be at fault: callers retry one at a time.
                self.release_unanalyzed(item_ids, "batch analysis failed")
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
        with transaction(self.store.sessions) as session:
            for item_id, analysis, item_vectors in zip(item_ids, analyses, vectors, strict=True):
                session.add(AnalysisRow(item_id=item_id, payload=analysis.model_dump(mode="json")))
                for kind, (model_id, vector) in item_vectors.items():
                    self.store.put_embedding(session, item_id, kind, model_id, vector)
        # The analysis is durable; routing is a separate step (a crash in between leaves
        # the item in ``analyzing`` for resume_unfinished).
        for item_id, analysis in zip(item_ids, analyses, strict=True):
            self.gate(item_id, analysis.risk)

    def release_unanalyzed(self, item_ids: Sequence[str], reason: str) -> None:
        """``analyzing`` -> ``received``: the next retry or recovery sweep takes them."""
        for item_id in item_ids:
            try:
                self.store.transition(item_id, ItemState.RECEIVED, reason)
            except ReelsiftError:
                log.exception("could not return %s to received", item_id)

    def _fail(self, item_ids: Sequence[str], reason: str) -> None:
        for item_id in item_ids:
            try:
                self.store.transition(item_id, ItemState.FAILED, reason)
            except ReelsiftError:
                log.exception("could not mark %s failed", item_id)

    def failed_item_ids(self, *, with_media: bool) -> list[str]:
        with transaction(self.store.sessions) as session:
            has_media = exists().where(ItemMediaRow.item_id == ItemRow.id)
            return list(session.scalars(
                select(ItemRow.id)
                .where(ItemRow.state == ItemState.FAILED.value,
                       has_media if with_media else ~has_media)
                .order_by(ItemRow.created_at)
            ))

    def resume_unfinished(self) -> int:
        """Finish text items a crash left in ``received``/``analyzing``; returns how many.

        Items with media are resumed by ``serving.media_ingest`` (jobs).
        """
        with write_transaction(self.store.sessions) as session:
            stuck = lock_orphaned_items(session, self.processes, with_media=False)
            for row in stuck:
                # Back to received so the normal path replays received -> analyzing -> routed.
                row.state = ItemState.RECEIVED.value
                row.updated_at = utcnow()  # taken: another recovering process skips it
            stuck_ids = [row.id for row in stuck]
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


def submit_batch(ingest: IngestService, raw_items: list[dict[str, Any]]) -> BatchOut:
    """Each item is validated and stored on its own: one bad item does not sink the rest."""
    results: dict[int, BatchResult] = {}
    valid: list[tuple[int, TextItemIn]] = []
    for index, raw in enumerate(raw_items):
        try:
            valid.append((index, TextItemIn.model_validate(raw)))
        except ValidationError as exc:
            status, body = validation_error_body(list(exc.errors()))  # type: ignore[arg-type]
            results[index] = BatchResult(index=index, status=status, error=body)
    try:
        submitted = ingest.submit_text_items([item for _, item in valid])
        for (index, _), (out, created) in zip(valid, submitted, strict=True):
            results[index] = BatchResult(index=index, status=201 if created else 200, item=out)
    except ServiceUnavailable:
        raise  # the whole request answers 503; every stored item stays retryable
    except ReelsiftError:
        # Some item broke a rule: fall back to one at a time to say which.
        for index, item in valid:
            try:
                [(out, created)] = ingest.submit_text_items([item])
                results[index] = BatchResult(index=index, status=201 if created else 200, item=out)
            except ServiceUnavailable:
                raise
            except ReelsiftError as exc:
                results[index] = BatchResult(index=index, status=exc.status, error=exc.to_dict())
    return BatchOut(results=[results[i] for i in sorted(results)])
