"""Bulk work without the HTTP server: analyze local files, analyze or import JSON Lines.

Item lines follow DESIGN.md: ``{"id", "creator_id", "title", "text", "tags",
"media": [paths], "created_at"}``; media paths are relative to the JSON Lines file.

``import_items`` is resumable and idempotent: it first finishes whatever an interrupted
run left half done (items stored but not yet analyzed, queued jobs), then skips every
id the database already holds, so running it again after a crash, or twice, stores each
item once. Failures do not stop the import; each is reported with its line and reason.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import select

from analyzers.media.sniff import sniff_media_type
from core.contracts import ItemState
from core.errors import InvalidInput, ReelsiftError, ServiceUnavailable, UnsupportedMediaType
from core.storage.db import transaction
from core.storage.tables import ItemRow
from ingest.analysis import ItemResult, MediaItemPipeline
from ingest.intake import CheckedFile, IntakeLimits, MediaUpload, local_file
from ingest.models import ID_PATTERN, MediaItemIn, TextItemIn

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from ingest.media import MediaIngestService
    from ingest.text import TextIngestService

log = logging.getLogger(__name__)

Advance = Callable[[int], None]


class Components(Protocol):
    """What an import needs of the running system (``serving.wiring.Components`` is one)."""

    @property
    def sessions(self) -> sessionmaker[Session]: ...
    @property
    def ingest(self) -> TextIngestService: ...
    @property
    def media(self) -> MediaIngestService: ...


class BulkItem(BaseModel):
    """One line of an items file."""

    model_config = ConfigDict(extra="forbid", strict=True)

    id: str = Field(min_length=1, max_length=128, pattern=ID_PATTERN)
    creator_id: str = Field(min_length=1, max_length=128)
    title: str = ""
    text: str = ""
    tags: list[str] = Field(default_factory=list)
    media: list[str] = Field(default_factory=list)
    created_at: datetime | None = Field(default=None, strict=False)

    def fields(self) -> dict[str, Any]:
        return self.model_dump(exclude={"media"}, exclude_none=True)


@dataclass
class Line:
    number: int  # 1-based, as editors count
    item: BulkItem | None
    error: ReelsiftError | None
    raw_id: str | None = None


def read_items(path: Path) -> Iterator[Line]:
    """Every non-blank line, parsed; a bad line is yielded with its error, not raised."""
    with path.open(encoding="utf-8") as handle:
        for number, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                raw = json.loads(text)
            except json.JSONDecodeError as exc:
                yield Line(number, None, InvalidInput(f"line {number} is not JSON: {exc.msg}"))
                continue
            raw_id = raw.get("id") if isinstance(raw, dict) else None
            try:
                yield Line(number, BulkItem.model_validate(raw), None, raw_id)
            except ValidationError as exc:
                problems = "; ".join(
                    f"{'.'.join(str(p) for p in e['loc']) or 'line'}: {e['msg']}"
                    for e in exc.errors()
                )
                yield Line(number, None, InvalidInput(f"invalid item: {problems}"),
                           raw_id if isinstance(raw_id, str) else None)


def count_lines(path: Path) -> int:
    with path.open(encoding="utf-8") as handle:
        return sum(1 for text in handle if text.strip())


def media_paths(item: BulkItem, base_dir: Path) -> list[Path]:
    paths = []
    for name in item.media:
        path = Path(name) if Path(name).is_absolute() else base_dir / name
        if not path.is_file():
            raise InvalidInput(f"media file {name!r} of item {item.id!r} does not exist",
                               path=str(path))
        paths.append(path)
    return paths


def read_uploads(paths: Sequence[Path], limits: IntakeLimits) -> list[MediaUpload]:
    # Read only as the checks need; check_file refuses an oversize file by its size.
    return [MediaUpload(path.name, None, path=path) for path in paths]


# -- analysis without storage -------------------------------------------------------------


def analyze_local(
    pipeline: MediaItemPipeline, limits: IntakeLimits, title: str, text: str,
    paths: Sequence[Path],
) -> ItemResult:
    files: list[CheckedFile] = [local_file(i, p, limits) for i, p in enumerate(paths)]
    analyzed = [pipeline.analyze_file(f) for f in files]
    if not analyzed and not (title.strip() or text.strip()):
        raise InvalidInput("the item is empty: no title, no text, no media")
    return pipeline.build(title, text, analyzed)


def result_payload(result: ItemResult) -> dict[str, Any]:
    """The analysis as JSON, plus which vectors were made (model, dimension)."""
    payload = result.analysis.model_dump(mode="json")
    payload["vectors"] = {
        kind: {"model_id": model_id, "dim": int(vector.shape[0])}
        for kind, (model_id, vector) in result.vectors.items()
    }
    return payload


def is_media_file(path: Path) -> bool:
    with path.open("rb") as handle:
        head = handle.read(512)
    try:
        sniff_media_type(head)
    except (UnsupportedMediaType, InvalidInput):
        return False
    return True


def analyze_input(
    pipeline: MediaItemPipeline, limits: IntakeLimits, value: str, title: str = ""
) -> ItemResult:
    """A media file, a UTF-8 text file, or the text itself."""
    path = Path(value)
    if path.is_file():
        if is_media_file(path):
            return analyze_local(pipeline, limits, title, "", [path])
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise UnsupportedMediaType(
                f"{value!r} is neither a supported media file nor UTF-8 text"
            ) from exc
    else:
        text = value
    if not text.strip():
        raise InvalidInput("the text is empty")
    return analyze_local(pipeline, limits, title, text, [])


@dataclass
class BatchSummary:
    lines: int = 0
    analyzed: int = 0
    failed: list[tuple[int, str | None, str]] = field(default_factory=list)


def analyze_batch(
    pipeline: MediaItemPipeline, limits: IntakeLimits, source: Path, out: Path,
    advance: Advance | None = None, chunk: int = 32,
) -> BatchSummary:
    """One JSON line in ``out`` per item line: ``{"line", "id", "analysis"}`` or ``"error"``.
    Text-only items are analyzed ``chunk`` at a time (one batched encoder pass); items
    with media one by one; the output keeps the input's order."""
    summary = BatchSummary()
    base_dir = source.parent
    out.parent.mkdir(parents=True, exist_ok=True)
    texts: list[tuple[dict[str, Any], Line]] = []

    def write(handle: Any, record: dict[str, Any]) -> None:
        handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        if advance is not None:
            advance(1)

    def fail(record: dict[str, Any], exc: ReelsiftError) -> None:
        record["error"] = exc.to_dict()
        summary.failed.append((record["line"], record["id"], exc.message))

    def flush_texts(handle: Any) -> None:
        if not texts:
            return
        items = [(line.item.title, line.item.text) for _, line in texts if line.item]
        try:
            results: list[ItemResult | None] = list(pipeline.build_texts(items))
        except ReelsiftError:
            results = [None] * len(texts)  # one at a time below, to say which failed
        for (record, line), result in zip(texts, results, strict=True):
            assert line.item is not None
            try:
                if result is None:
                    result = analyze_local(pipeline, limits, line.item.title, line.item.text, [])
                record["analysis"] = result_payload(result)
                summary.analyzed += 1
            except ReelsiftError as exc:
                fail(record, exc)
            write(handle, record)
        texts.clear()

    with out.open("w", encoding="utf-8") as handle:
        for line in read_items(source):
            summary.lines += 1
            record: dict[str, Any] = {"line": line.number, "id": line.raw_id}
            try:
                if line.error is not None:
                    raise line.error
                assert line.item is not None
                record["id"] = line.item.id
                paths = media_paths(line.item, base_dir)
                if not paths and (line.item.title.strip() or line.item.text.strip()):
                    texts.append((record, line))
                    if len(texts) >= chunk:
                        flush_texts(handle)
                    continue
                flush_texts(handle)  # keep the input order
                result = analyze_local(pipeline, limits, line.item.title, line.item.text, paths)
                record["analysis"] = result_payload(result)
                summary.analyzed += 1
            except ReelsiftError as exc:
                flush_texts(handle)
                fail(record, exc)
            write(handle, record)
        flush_texts(handle)
    return summary


# -- import into the database -------------------------------------------------------------


@dataclass
class ImportSummary:
    lines: int = 0
    imported: int = 0
    skipped: int = 0  # already in the database, analyzed
    retried: int = 0  # already in the database, failed or unanalyzed: analyzed again now
    resumed: int = 0  # left unfinished by an earlier run, finished now
    failed: list[tuple[int, str | None, str]] = field(default_factory=list)
    states: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "lines": self.lines, "imported": self.imported, "skipped": self.skipped,
            "retried": self.retried, "resumed": self.resumed, "failed": len(self.failed),
            "states": self.states,
        }


def known_states(components: Components, ids: Sequence[str]) -> dict[str, str]:
    with transaction(components.sessions) as session:
        rows = session.execute(
            select(ItemRow.id, ItemRow.state).where(ItemRow.id.in_(list(ids)))
        )
        return {item_id: state for item_id, state in rows}


# Stored items an import analyzes again rather than skips.
RETRIED_STATES = (ItemState.FAILED.value, ItemState.RECEIVED.value)


def import_items(
    components: Components, source: Path, advance: Advance | None = None, chunk: int = 32,
) -> ImportSummary:
    """Store and analyze every item of ``source`` (jobs run inline); see the module doc."""
    summary = ImportSummary()
    summary.resumed = (
        components.ingest.resume_unfinished() + components.media.resume_unfinished()
    )
    base_dir = source.parent
    pending: list[Line] = []

    def count_state(state: str) -> None:
        summary.states[state] = summary.states.get(state, 0) + 1

    def flush() -> None:
        if not pending:
            return
        text_lines = text_lines_to_import(components, pending, base_dir, summary, count_state)
        _import_texts(components, text_lines, summary, count_state)
        if advance is not None:
            advance(len(pending))
        pending.clear()

    for line in importable_lines(source, summary, advance):
        pending.append(line)
        if len(pending) >= chunk:
            flush()
    flush()
    return summary


def importable_lines(
    source: Path, summary: ImportSummary, advance: Advance | None,
) -> Iterator[Line]:
    """The lines of ``source`` that parsed; each is counted, and a bad one is recorded in
    ``summary.failed`` (and its progress step taken) instead of being yielded."""
    for line in read_items(source):
        summary.lines += 1
        if line.error is None:
            yield line
            continue
        summary.failed.append((line.number, line.raw_id, line.error.message))
        if advance is not None:
            advance(1)


def record_outcome(
    summary: ImportSummary, line: Line, state: str, reason: str | None,
    count_state: Callable[[str], None],
) -> None:
    count_state(state)
    if state == ItemState.FAILED.value:
        summary.failed.append((line.number, line.item.id if line.item else None,
                               reason or "analysis failed"))
    else:
        summary.imported += 1


def text_lines_to_import(
    components: Components, lines: list[Line], base_dir: Path, summary: ImportSummary,
    count_state: Callable[[str], None],
) -> list[Line]:
    """The text lines of a chunk still to import: ids already finished are skipped,
    failed or unanalyzed ones counted as retried, media lines imported here and now."""
    known = known_states(components, [line.item.id for line in lines if line.item])
    text_lines: list[Line] = []
    for line in lines:
        assert line.item is not None
        state = known.get(line.item.id)
        if state is not None and state not in RETRIED_STATES:
            summary.skipped += 1
            continue
        if state is not None:
            summary.retried += 1
        if line.item.media:
            import_media_line(components, line, base_dir, summary, count_state)
        else:
            text_lines.append(line)
    return text_lines


def import_media_line(
    components: Components, line: Line, base_dir: Path, summary: ImportSummary,
    count_state: Callable[[str], None],
) -> None:
    assert line.item is not None
    try:
        uploads = read_uploads(media_paths(line.item, base_dir), components.media.limits)
        metadata = MediaItemIn.model_validate(line.item.fields())
        components.media.submit(metadata, uploads)
    except (ReelsiftError, ValidationError) as exc:
        message = exc.message if isinstance(exc, ReelsiftError) else str(exc)
        summary.failed.append((line.number, line.item.id, message))
        return
    item = components.ingest.get_item(line.item.id)  # jobs ran inline: this is final
    record_outcome(summary, line, item.state, item.state_reason, count_state)


def _import_texts(
    components: Components, lines: Sequence[Line], summary: ImportSummary,
    count_state: Callable[[str], None],
) -> None:
    items: list[tuple[Line, TextItemIn]] = []
    for line in lines:
        assert line.item is not None
        try:
            items.append((line, TextItemIn.model_validate(line.item.fields())))
        except ValidationError as exc:
            summary.failed.append((line.number, line.item.id, str(exc)))
    if not items:
        return
    try:
        # One call embeds the chunk in batches; a bad item fails it, then one at a time.
        results = components.ingest.submit_text_items([item for _, item in items])
        for (line, _), (out, _created) in zip(items, results, strict=True):
            record_outcome(summary, line, out.state, out.state_reason, count_state)
        return
    except ServiceUnavailable:
        raise  # nothing is lost: the import resumes where it stopped
    except ReelsiftError:
        pass
    for line, item in items:
        try:
            [(out, _created)] = components.ingest.submit_text_items([item])
            record_outcome(summary, line, out.state, out.state_reason, count_state)
        except ServiceUnavailable:
            raise
        except ReelsiftError as exc:
            summary.failed.append((line.number, item.id, exc.message))
