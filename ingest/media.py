"""Media items: stored blobs, one analysis per item, jobs for video.

The flow for one upload (``MediaIngestService.submit``), after ``serving/uploads.py``
has parsed the multipart body as it streamed in:
  1. Validate, before anything is written (``ingest.intake``): the metadata, every
     file name, every file's type from its bytes, image sizes from their headers,
     video and audio containers probed with FFmpeg.
  2. Images and audio are analyzed before the response (201); items with a video, or
     with more than ``async_media_bytes``, are stored ``received`` with a queued job in
     one transaction and answered 202 (``ingest.jobs`` runs them).
  3. Storage: blobs by sha256 (same bytes stored once), ``item_media`` rows, one
     ``ItemAnalysis``, per-modality and fused vectors, perceptual hashes
     (``ingest.near_duplicates``); then the moderation gate routes the item. A passing
     fault leaves the item ``received`` (retryable); decoding that fails ends it
     ``failed`` with the reason, and posting it again or a retry analyzes it again.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from analyzers.media.sniff import MediaKind, MediaType
from core.contracts import (
    ItemAnalysis,
    ItemState,
    RiskScore,
)
from core.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    ReelsiftError,
    ServiceUnavailable,
)
from core.storage.blobs import BlobStore
from core.storage.db import transaction
from core.storage.items import ItemStore, content_fingerprint
from core.storage.processes import ProcessRegistry
from core.storage.tables import AnalysisRow, ItemMediaRow, ItemRow, MediaBlobRow, utcnow
from ingest.analysis import (
    ItemResult,
    MediaItemPipeline,
    ModerationGate,
    route_analysed,
)
from ingest.intake import (
    MULTIPART_HELP,
    SHA256_PATTERN,
    CheckedFile,
    IntakeLimits,
    MediaUpload,
    TextLimits,
    check_file,
    check_text_item,
    probe_container,
)
from ingest.jobs import JobOut, JobRunner, ProgressFn
from ingest.models import ItemOut, MediaItemIn
from ingest.near_duplicates import MediaHashRow, PerceptualHashIndex
from ingest.recovery import (
    RETRYABLE_STATES,
    UNFINISHED_STATES,
    lock_orphaned_items,
    release_unanalyzed,
)
from ingest.views import ItemViews

log = logging.getLogger(__name__)


JOB_KIND = "analyze_media"


# -- the service --------------------------------------------------------------------------


@dataclass
class MediaSubmission:
    item: ItemOut
    job: JobOut | None  # set while the item waits for (or runs) its analysis job
    created: bool


def media_fingerprint(item: MediaItemIn, digests: Sequence[str]) -> str:
    return content_fingerprint({
        "creator_id": item.creator_id, "title": item.title, "text": item.text,
        "tags": item.tags, "media": list(digests),
    })




class MediaIngestService:
    def __init__(
        self,
        items: ItemViews,
        gate: ModerationGate,
        text_limits: TextLimits,
        blobs: BlobStore,
        pipeline: MediaItemPipeline,
        limits: IntakeLimits,
        jobs: JobRunner,
        hashes: PerceptualHashIndex | None = None,
        processes: ProcessRegistry | None = None,
    ) -> None:
        """``processes``: this process's registration, so recovery leaves other live
        processes' work alone; None for a single process that owns the database."""
        self.items = items
        self.store: ItemStore = items.store
        self.gate = gate
        self.text_limits = text_limits
        self.processes = processes
        self.blobs = blobs
        self.pipeline = pipeline
        self.limits = limits
        self.jobs = jobs
        self.hashes = hashes or PerceptualHashIndex(
            items.store.sessions, limits.near_duplicate_max_distance
        )
        jobs.register(JOB_KIND, self._run_job)
        jobs.on_given_up = self._give_up

    @property
    def sessions(self) -> sessionmaker[Session]:
        return self.store.sessions

    # -- reads --------------------------------------------------------------------------
    def job(self, job_id: str) -> JobOut:
        return self.jobs.store.get(job_id)

    def blob_file(self, sha256: str) -> tuple[Path, str]:
        """(path, media type) of a stored blob: uploads and video keyframes."""
        if not SHA256_PATTERN.match(sha256):
            raise InvalidInput(
                f"{sha256[:80]!r} is not a sha256 (64 lowercase hex digits)", field="sha256"
            )
        with transaction(self.sessions) as session:
            row = session.get(MediaBlobRow, sha256)
            media_type = row.media_type if row is not None else None
        path = self.blobs.path_for(sha256)
        if media_type is None or not path.exists():
            raise NotFound(f"no media blob with sha256 {sha256}", sha256=sha256)
        return path, media_type

    # -- writes -------------------------------------------------------------------------
    def submit(self, item: MediaItemIn, uploads: Sequence[MediaUpload]) -> MediaSubmission:
        """Validate, store and analyze (or queue) one item; raises on bad input."""
        check_text_item(item, self.text_limits, require_text=False)
        if not uploads:
            raise InvalidInput(
                "the upload has no file; send text-only items as JSON, or " + MULTIPART_HELP
            )
        if len(uploads) > self.limits.max_files_per_item:
            raise self.limits.too_many_files(len(uploads))
        total = sum(u.size for u in uploads)
        has_video = False
        checked: list[CheckedFile] = []
        for position, upload in enumerate(uploads):
            file = check_file(position, upload.filename, upload.source, self.limits)
            has_video = has_video or file.kind is MediaKind.VIDEO
            checked.append(file)
        run_as_job = has_video or total > self.limits.async_media_bytes
        if run_as_job:
            # Audio is only decoded in the job: probe it now so a broken one is refused.
            checked = [
                check_file(f.position, uploads[f.position].filename,
                           uploads[f.position].source, self.limits, probe_audio=True)
                if f.kind is MediaKind.AUDIO else f
                for f in checked
            ]
        digest = media_fingerprint(item, [f.sha256 for f in checked])
        existing = self._existing(item.id, digest)
        if existing is not None:
            return existing
        if run_as_job:
            return self._accept_job(item, digest, checked)
        analyzed = [self.pipeline.analyze_file(f) for f in checked]
        result = self.pipeline.build(item.title, item.text, analyzed)
        try:
            self._store_analyzed(item, digest, result)
        except IntegrityError:
            # The same id arrived concurrently: the first one wins, this one replays it.
            existing = self._existing(item.id, digest)
            if existing is None:
                raise
            return existing
        return MediaSubmission(self.items.get(item.id), None, True)

    def _existing(self, item_id: str, digest: str) -> MediaSubmission | None:
        with transaction(self.sessions) as session:
            row = self.store.find(session, item_id)
            if row is None:
                return None
            if row.content_sha256 != digest:
                raise Conflict(
                    f"item {item_id!r} already exists with different content; "
                    "ids are immutable, use a new id",
                    item_id=item_id,
                )
            job = self.jobs.store.latest_for_item(session, item_id)
        if job is None or job.finished:
            # Posted again after a fault or a failure: analyze it again.
            job = self.requeue(item_id) or job
        return MediaSubmission(
            self.items.get(item_id), job if job and not job.finished else None, False
        )

    def has_media(self, item_id: str) -> bool:
        with transaction(self.sessions) as session:
            return session.scalar(
                select(ItemMediaRow.item_id).where(ItemMediaRow.item_id == item_id).limit(1)
            ) is not None

    def requeue(self, item_id: str) -> JobOut | None:
        """A new analysis job for a media item left ``failed`` or unanalyzed
        (``received`` with no job running); None when it is in no such state."""
        with self.store.changing() as changes:
            row = changes.session.get(ItemRow, item_id, with_for_update=True)
            if row is None or row.state not in RETRYABLE_STATES:
                return None
            latest = self.jobs.store.latest_for_item(changes.session, item_id)
            if latest is not None and not latest.finished:
                return latest
            if row.state == ItemState.FAILED.value:
                changes.transition(item_id, ItemState.RECEIVED, "analysis retried")
            job_id = self.jobs.store.create(changes.session, JOB_KIND, item_id)
        self.jobs.submit(job_id)
        return self.jobs.store.get(job_id)

    def _new_item_row(self, session: Session, item: MediaItemIn, digest: str) -> None:
        kwargs = {} if item.created_at is None else {"created_at": item.created_at}
        session.add(ItemRow(
            id=item.id, creator_id=item.creator_id, title=item.title, text=item.text,
            tags=item.tags, state=ItemState.RECEIVED.value, content_sha256=digest, **kwargs,
        ))
        session.flush()  # an id taken meanwhile fails here, before any other row

    def _put_blob(self, session: Session, data: bytes | CheckedFile, media_type: str) -> str:
        if isinstance(data, CheckedFile) and data.data is None:
            assert data.path is not None
            sha256, size = self.blobs.put_file(data.path, data.sha256), data.size_bytes
        else:
            raw = data.read() if isinstance(data, CheckedFile) else data
            sha256, size = self.blobs.put(raw), len(raw)
        if session.get(MediaBlobRow, sha256) is None:
            session.add(MediaBlobRow(sha256=sha256, size_bytes=size, media_type=media_type))
        return sha256

    def _store_files(self, session: Session, item_id: str, files: Sequence[CheckedFile]) -> None:
        for file in files:
            self._put_blob(session, file, file.media_type.value)
        session.flush()  # the blobs' rows first: item_media refers to them
        for file in files:
            session.add(ItemMediaRow(
                item_id=item_id, position=file.position, sha256=file.sha256,
                filename=file.filename,
            ))

    def _accept_job(
        self, item: MediaItemIn, digest: str, files: Sequence[CheckedFile]
    ) -> MediaSubmission:
        try:
            with transaction(self.sessions) as session:
                self._new_item_row(session, item, digest)
                self._store_files(session, item.id, files)
                job_id = self.jobs.store.create(session, JOB_KIND, item.id)
        except IntegrityError:
            existing = self._existing(item.id, digest)
            if existing is None:
                raise
            return existing
        self.jobs.submit(job_id)
        job = self.jobs.store.get(job_id)
        return MediaSubmission(self.items.get(item.id), None if job.finished else job, True)

    def _near_duplicates(self, item_id: str, result: ItemResult) -> None:
        for analyzed, entry in zip(result.files, result.analysis.media, strict=True):
            matches = self.hashes.search(analyzed.phashes(), exclude_item=item_id)
            entry["near_duplicate_of"] = sorted({m.item_id for m in matches})
            entry["near_duplicates"] = [m.model_dump(exclude={"query"}) for m in matches[:20]]

    def _store_analyzed(self, item: MediaItemIn, digest: str, result: ItemResult) -> None:
        """A new item with its finished analysis: rows, blobs, vectors, hashes, then routing."""
        self._near_duplicates(item.id, result)
        with self.store.changing() as changes:
            self._new_item_row(changes.session, item, digest)
            self._store_files(changes.session, item.id, [a.file for a in result.files])
            changes.transition(item.id, ItemState.ANALYZING)
            self._store_result(changes.session, item.id, result)
        self.gate([(item.id, result.analysis.risk)])

    def _store_result(self, session: Session, item_id: str, result: ItemResult) -> None:
        session.add(AnalysisRow(item_id=item_id, payload=result.analysis.model_dump(mode="json")))
        self.store.put_embeddings(session, [
            (item_id, kind, model_id, vector)
            for kind, (model_id, vector) in result.vectors.items()
        ])
        session.execute(delete(MediaHashRow).where(MediaHashRow.item_id == item_id))
        for analyzed in result.files:
            for frame in analyzed.keyframes:
                self._put_blob(session, frame.jpeg, "image/jpeg")
            session.add_all(
                PerceptualHashIndex.rows(item_id, analyzed.file.sha256, analyzed.phashes())
            )

    # -- jobs ---------------------------------------------------------------------------
    def _stored_files(self, session: Session, item_id: str) -> list[CheckedFile]:
        rows = session.scalars(
            select(ItemMediaRow)
            .where(ItemMediaRow.item_id == item_id)
            .order_by(ItemMediaRow.position)
        ).all()
        files = []
        for row in rows:
            blob = session.get(MediaBlobRow, row.sha256)
            if blob is None:
                raise NotFound(f"the blob {row.sha256} of item {item_id!r} is missing")
            files.append(CheckedFile(
                position=row.position, filename=row.filename, sha256=row.sha256,
                media_type=MediaType(blob.media_type), size_bytes=blob.size_bytes,
                path=self.blobs.path_for(row.sha256),
            ))
        return files

    def _run_job(self, job: JobOut, progress: ProgressFn) -> None:
        item_id = job.item_id
        with transaction(self.sessions) as session:
            row = self.store.get(session, item_id)
            if row.state not in UNFINISHED_STATES:
                return  # routed before a crash kept the job from finishing
            title, text = row.title, row.text
            files = self._stored_files(session, item_id)
        self.store.transition(item_id, ItemState.ANALYZING)
        progress(0.02)
        share = 0.9 / max(len(files), 1)

        def file_progress(index: int) -> ProgressFn:
            return lambda fraction: progress(0.02 + share * (index + fraction))

        try:
            analyzed = []
            for index, file in enumerate(files):
                if file.kind is not MediaKind.IMAGE:
                    assert file.path is not None
                    file.probe = probe_container(file.path, file.media_type, self.limits.media)
                analyzed.append(self.pipeline.analyze_file(file, file_progress(index)))
                progress(0.02 + share * (index + 1))
            result = self.pipeline.build(title, text, analyzed)
        except ServiceUnavailable:
            # A passing fault: the item waits, retryable (a client's retry or recovery).
            release_unanalyzed(self.store, [item_id], "waiting for a model service")
            raise
        except ReelsiftError as exc:
            self._fail_item(item_id, f"media could not be analyzed: {exc.message}")
            raise
        except Exception as exc:
            self._fail_item(item_id, f"analysis failed: {type(exc).__name__}: {exc}")
            raise
        self._near_duplicates(item_id, result)
        with transaction(self.sessions) as session:
            self._store_result(session, item_id, result)
        progress(0.97)
        self.gate([(item_id, result.analysis.risk)])

    def _fail_item(self, item_id: str, reason: str) -> None:
        try:
            self.store.transition(item_id, ItemState.FAILED, reason)
        except ReelsiftError:
            log.exception("could not mark %s failed", item_id)

    def _give_up(self, item_id: str, reason: str) -> None:
        with transaction(self.sessions) as session:
            row = self.store.find(session, item_id)
            unfinished = row is not None and row.state in UNFINISHED_STATES
        if unfinished:
            self._fail_item(item_id, reason)

    def remove_stale_spool_files(self, older_than_s: float) -> int:
        """Delete upload spool files a killed process left (no request lasts this long)."""
        spool_dir = self.limits.spool_dir
        if spool_dir is None or not spool_dir.is_dir():
            return 0
        cutoff = time.time() - older_than_s
        removed = 0
        for path in spool_dir.glob("upload-*"):
            with contextlib.suppress(FileNotFoundError):
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
        return removed

    def resume_unfinished(self) -> int:
        """At start: recover jobs, then finish media items a crash left without one."""
        resumed = self.jobs.recover()
        routes: list[tuple[str, list[RiskScore]]] = []
        new_jobs: list[str] = []
        with self.store.changing() as changes:
            session = changes.session
            # A synchronous upload another live process is still analyzing has no job.
            for row in lock_orphaned_items(session, self.processes, with_media=True):
                item_id = row.id
                job = self.jobs.store.latest_for_item(session, item_id)
                if job is not None and not job.finished:
                    continue
                row.updated_at = utcnow()  # taken: another recovering process skips it
                analysis = self.store.latest_analysis(session, item_id)
                if analysis is not None:
                    # Stored with its analysis; the crash came before routing.
                    risk = ItemAnalysis.model_validate(analysis).risk
                    changes.transition(item_id, ItemState.ANALYZING)
                    routes.append((item_id, risk))
                else:
                    new_jobs.append(self.jobs.store.create(session, JOB_KIND, item_id))
        route_analysed(self.gate, routes)
        for job_id in new_jobs:
            self.jobs.submit(job_id)
        return resumed + len(routes) + len(new_jobs)
