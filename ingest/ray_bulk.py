"""``reelsift import --ray``: the bulk import with the text analysis on a Ray cluster.

The analysis runs in Ray Data's ``map_batches`` over an actor pool: each actor loads the
analysis stack (encoder, entities, risk, taxonomy) once and analyzes batches of items;
with GPUs in the cluster every actor is given one (or a share). Everything that writes
stays in this process and goes through the same store path as ``ingest.bulk.import_items``:

1. each line is stored as ``received`` (``TextIngestService.store_items``; ids already
   analyzed are skipped, ``failed``/``received`` ones analyzed again, exactly as the
   in-process import does);
2. the items of a window are claimed (``received`` -> ``analyzing``, this process's);
3. Ray analyzes the stored title and text of each claimed item; as batches come back their
   analyses and vectors are written and routed by the moderation gate
   (``TextIngestService.record_analyses``), the items the analyzers failed on are
   ``failed`` with the reason;
4. whatever a stop left claimed goes back to ``received`` (``KeyboardInterrupt``, an
   error) or, after a hard crash, is taken by the next run or the server's recovery once
   this process is gone (``take_unfinished``).

So a rerun stores nothing twice and finishes what a stopped run left. Items with media
are analyzed in this process, as ``reelsift import`` does (their bytes and keyframes go to
the blob store here).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import ValidationError
from sqlalchemy import select

from core.contracts import ItemAnalysis
from core.errors import ReelsiftError, ServiceUnavailable
from core.storage.db import transaction
from core.storage.tables import ItemRow
from ingest import analysis as analysis_wire
from ingest.analysis import Enrichment, analyze_documents
from ingest.bulk import (
    Advance,
    Components,
    ImportSummary,
    Line,
    importable_lines,
    record_outcome,
    text_lines_to_import,
)
from ingest.models import TextItemIn
from ingest.recovery import release_unanalyzed

if TYPE_CHECKING:
    from analyzers.text import TextAnalyzer

log = logging.getLogger(__name__)

# threads per actor -> the text analyzer and its enrichment stages. Called once in each
# actor, so it must be picklable by reference (a module-level function or a partial of one).
AnalysisFactory = Callable[[int], "tuple[TextAnalyzer, Enrichment]"]

Vectors = dict[str, tuple[str, np.ndarray]]

# How an actor reports an item it could not analyze.
FAILED = "failed"  # the content: the item becomes ``failed`` with the reason
UNAVAILABLE = "unavailable"  # a passing fault (a model service away): back to ``received``

# Rows fetched, claimed or checked per database statement.
_DB_CHUNK = 500


@dataclass(frozen=True)
class RayOptions:
    """``address``: None starts a local Ray instance in this process; ``"auto"`` joins the
    cluster this machine belongs to; ``"ray://head:10001"`` a remote one (its nodes need
    reelsift installed, e.g. the same image as the API)."""

    address: str | None = None
    workers: int = 2
    cpus_per_worker: float = 1.0
    # None: one GPU (or a share of those there are) each, where the cluster has any.
    gpus_per_worker: float | None = None
    batch_size: int = 32
    window: int = 10_000  # items claimed and analyzed per Ray Data run


def encode_vectors(vectors: Vectors) -> str:
    # The text-analysis service's wire form of the vectors, as one string column.
    return json.dumps(analysis_wire.encode_vectors(vectors))


def decode_vectors(encoded: str) -> Vectors:
    return analysis_wire.decode_vectors(json.loads(encoded))


class AnalysisActor:
    """One Ray actor: the analysis stack loaded once, then one batch of items per call."""

    def __init__(self, factory: AnalysisFactory, threads: int) -> None:
        self.analyzer, self.enrichment = factory(threads)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list[str]]:
        ids = [str(i) for i in batch["id"]]
        titles = [str(t) for t in batch["title"]]
        texts = [str(t) for t in batch["text"]]
        try:
            outcomes = self._analyze(titles, texts)
        except ServiceUnavailable as exc:
            outcomes = [(None, UNAVAILABLE, exc.message)] * len(ids)
        except Exception:
            # One item's content may be at fault: one at a time, to say which.
            outcomes = []
            for title, text in zip(titles, texts, strict=True):
                try:
                    outcomes.extend(self._analyze([title], [text]))
                except ServiceUnavailable as exc:
                    outcomes.append((None, UNAVAILABLE, exc.message))
                except Exception as exc:
                    outcomes.append(
                        (None, FAILED, f"analysis failed: {type(exc).__name__}: {exc}"))
        return {
            "id": ids,
            "analysis": [o[0][0] if o[0] else "" for o in outcomes],
            "vectors": [o[0][1] if o[0] else "" for o in outcomes],
            "error_kind": [o[1] for o in outcomes],
            "error": [o[2] for o in outcomes],
        }

    def _analyze(
        self, titles: list[str], texts: list[str]
    ) -> list[tuple[tuple[str, str] | None, str, str]]:
        from analyzers.text import document_text

        documents = [document_text(t, b) for t, b in zip(titles, texts, strict=True)]
        analyses, vectors = analyze_documents(
            self.analyzer, self.enrichment, titles, documents, bodies=texts
        )
        return [((a.model_dump_json(), encode_vectors(v)), "", "")
                for a, v in zip(analyses, vectors, strict=True)]


def _import_ray() -> Any:
    # Ray would run its workers through `uv run` when the driver was started by it (and
    # they fail to start outside the project folder); they use this interpreter's
    # environment instead (a cluster's nodes have their own). Read when Ray is imported.
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise ReelsiftError(
            "Ray is not installed: install reelsift with the `ray` extra "
            "(`uv sync --extra ray` or `pip install 'reelsift[ray]'`)"
        ) from exc
    return ray


def connect(options: RayOptions) -> bool:
    """Join (or start) Ray unless this process already has; True when this call did, so
    the caller shuts it down again."""
    ray = _import_ray()
    if ray.is_initialized():
        return False
    if options.address is None:
        ray.init(num_cpus=max(1, round(options.workers * options.cpus_per_worker)),
                 include_dashboard=False, log_to_driver=False)
    else:
        ray.init(address=options.address, log_to_driver=False)
    return True


def gpus_per_worker(options: RayOptions, cluster_gpus: float) -> float:
    if options.gpus_per_worker is not None:
        return options.gpus_per_worker
    if cluster_gpus <= 0:
        return 0.0
    return min(1.0, cluster_gpus / options.workers)


def analyze_on_ray(
    rows: Sequence[tuple[str, str, str]], factory: AnalysisFactory, options: RayOptions,
) -> Generator[dict[str, list[str]], None, None]:
    """Batches of the actors' output for (id, title, text) rows, as they come back."""
    ray = _import_ray()
    gpus = gpus_per_worker(options, float(ray.cluster_resources().get("GPU", 0)))
    dataset = ray.data.from_items(
        [{"id": item_id, "title": title, "text": text} for item_id, title, text in rows]
    )
    analyzed = dataset.map_batches(
        AnalysisActor,
        fn_constructor_args=(factory, max(1, int(options.cpus_per_worker))),
        compute=ray.data.ActorPoolStrategy(size=options.workers),
        batch_size=options.batch_size,
        batch_format="numpy",
        num_cpus=options.cpus_per_worker,
        num_gpus=gpus,
    )
    for batch in analyzed.iter_batches(batch_size=None, batch_format="numpy"):
        yield {key: [str(v) for v in values] for key, values in batch.items()}


def import_items_ray(
    components: Components, source: Path, factory: AnalysisFactory,
    options: RayOptions | None = None, advance: Advance | None = None, chunk: int = 32,
) -> ImportSummary:
    """``ingest.bulk.import_items`` with the text analysis on Ray; see the module doc."""
    options = options or RayOptions()
    started = connect(options)
    try:
        return _import(components, source, factory, options, advance, chunk)
    finally:
        if started:
            _import_ray().shutdown()


def _import(
    components: Components, source: Path, factory: AnalysisFactory, options: RayOptions,
    advance: Advance | None, chunk: int,
) -> ImportSummary:
    summary = ImportSummary()
    summary.resumed = components.media.resume_unfinished()
    # Text items a crashed run (or server) left: analyzed on Ray with the first window.
    orphans = components.ingest.take_unfinished()
    window: dict[str, Line | None] = dict.fromkeys(orphans)
    base_dir = source.parent

    def count_state(state: str) -> None:
        summary.states[state] = summary.states.get(state, 0) + 1

    def store(lines: list[Line]) -> None:
        """Skip done ids, import media lines here, store text lines for the window."""
        texts: list[tuple[Line, TextItemIn]] = []
        for line in text_lines_to_import(components, lines, base_dir, summary, count_state):
            assert line.item is not None
            try:
                texts.append((line, TextItemIn.model_validate(line.item.fields())))
            except ValidationError as exc:
                summary.failed.append((line.number, line.item.id, str(exc)))
        try:
            to_analyze, _ = components.ingest.store_items([item for _, item in texts])
            stored = {line.item.id: line for line, _ in texts if line.item}
        except ReelsiftError:
            # One line's content (or id) is at fault: one at a time, to say which.
            to_analyze, stored = [], {}
            for line, item in texts:
                try:
                    to_analyze += components.ingest.store_items([item])[0]
                    stored[item.id] = line
                except ReelsiftError as exc:
                    summary.failed.append((line.number, item.id, exc.message))
        for item_id in to_analyze:
            window[item_id] = stored.get(item_id)

    pending: list[Line] = []
    for line in importable_lines(source, summary, advance):
        pending.append(line)
        if len(pending) >= chunk:
            store(pending)
            pending.clear()
        if len(window) >= options.window:
            _analyze_window(components, window, factory, options, summary, count_state, advance)
            window.clear()
    store(pending)
    _analyze_window(components, window, factory, options, summary, count_state, advance)
    return summary


def _analyze_window(
    components: Components, window: dict[str, Line | None], factory: AnalysisFactory,
    options: RayOptions, summary: ImportSummary, count_state: Callable[[str], None],
    advance: Advance | None,
) -> None:
    ingest = components.ingest
    ids = list(window)
    claimed: list[str] = []
    for start in range(0, len(ids), _DB_CHUNK):
        claimed += ingest.claim_for_analysis(ids[start:start + _DB_CHUNK])
    if not claimed:
        return
    rows = _stored_texts(components, claimed)
    finished: set[str] = set()
    unavailable: list[str] = []
    batches = analyze_on_ray(rows, factory, options)
    try:
        for batch in batches:
            analyzed = [i for i, kind in enumerate(batch["error_kind"]) if not kind]
            item_ids = [batch["id"][i] for i in analyzed]
            ingest.record_analyses(
                item_ids,
                [ItemAnalysis.model_validate_json(batch["analysis"][i]) for i in analyzed],
                [decode_vectors(batch["vectors"][i]) for i in analyzed],
            )
            for item_id, kind, reason in zip(
                batch["id"], batch["error_kind"], batch["error"], strict=True
            ):
                if kind == FAILED:
                    ingest.mark_failed([item_id], reason)
                elif kind == UNAVAILABLE:
                    release_unanalyzed(ingest.store, [item_id], "waiting for a model service")
                    unavailable.append(item_id)
            finished.update(batch["id"])
            _count(components, batch["id"], window, summary, count_state)
            if advance is not None:
                advance(len(batch["id"]))
    finally:
        batches.close()  # stops Ray Data's executor and frees the actors now, not at GC
        # A stop (Ctrl-C, an error) leaves nothing claimed: the next run takes these.
        left = [item_id for item_id in claimed if item_id not in finished]
        if left:
            release_unanalyzed(ingest.store, left, "bulk import stopped before analysis")
    if unavailable:
        # As the in-process import: stop, nothing lost; a rerun analyzes these.
        raise ServiceUnavailable(
            f"{len(unavailable)} item(s) waited for a model service; run the import again"
        )


def _stored_texts(components: Components, item_ids: Sequence[str]) -> list[tuple[str, str, str]]:
    """(id, title, text) as stored: the analysis reads what the database holds."""
    rows: dict[str, tuple[str, str, str]] = {}
    with transaction(components.sessions) as session:
        for start in range(0, len(item_ids), _DB_CHUNK):
            for item_id, title, text in session.execute(
                select(ItemRow.id, ItemRow.title, ItemRow.text)
                .where(ItemRow.id.in_(list(item_ids[start:start + _DB_CHUNK])))
            ):
                rows[item_id] = (item_id, title or "", text or "")
    return [rows[item_id] for item_id in item_ids if item_id in rows]


def _count(
    components: Components, item_ids: Sequence[str], window: dict[str, Line | None],
    summary: ImportSummary, count_state: Callable[[str], None],
) -> None:
    """Each finished item's state into the summary, as the in-process import counts it."""
    with transaction(components.sessions) as session:
        found = {
            item_id: (state, reason) for item_id, state, reason in session.execute(
                select(ItemRow.id, ItemRow.state, ItemRow.state_reason)
                .where(ItemRow.id.in_(list(item_ids)))
            )
        }
    for item_id in item_ids:
        state, reason = found[item_id]
        line = window.get(item_id)
        if line is None:
            count_state(state)  # an orphan of an earlier run: counted in ``resumed``
            summary.resumed += 1
            continue
        record_outcome(summary, line, state, reason, count_state)
