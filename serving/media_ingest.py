"""Media intake: multipart uploads to stored blobs, one analysis per item, jobs for video.

The flow for one upload (``MediaIngestService.submit``):
  1. Read: the multipart body is parsed as it streams in (``read_multipart``); a file
     larger than ``max_file_bytes`` is refused at the byte that crosses the limit, never
     after buffering it all.
  2. Validate, before anything is written: the metadata, every file name, every file's
     type from its bytes (415 naming what is supported), image sizes from their headers
     (bombs never decode), video and audio containers probed with FFmpeg (duration,
     frames, a first packet). A refused upload leaves no item, no blob, no row.
  3. Images and audio are analyzed before the response (201); items with a video, or
     with more than ``async_media_bytes``, are stored ``received`` with a queued job in
     one transaction and answered 202 (``serving/jobs.py`` runs them).
  4. Storage: blobs by sha256 (same bytes stored once), ``item_media`` rows, one
     ``ItemAnalysis`` (text part, one ``media`` entry per file, risk merged across
     modalities), per-modality vectors (``text``/``visual``/``audio``) and the
     ``fused`` vector, perceptual hashes of images and keyframes; then the moderation
     gate routes the item. Decoding that fails inside a job ends the item ``failed``
     with the reason.

Near-duplicates: each image and video keyframe has a 64-bit DCT pHash; a new file's
hashes are compared against every stored hash by Hamming distance with a vectorised
NumPy scan (XOR, then ``np.bitwise_count``), which is linear but fast (tens of millions
of hashes a second on one core, so a library of a million images costs milliseconds
per query). Items within ``near_duplicate_max_distance`` bits are reported in the
media entry as ``near_duplicate_of``. Past ~10^8 hashes a multi-index hashing table
would replace the scan behind the same ``search`` method.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import json
import logging
import os
import re
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, cast

import numpy as np
from pydantic import BaseModel, Field, ValidationError
from sqlalchemy import BigInteger, ForeignKey, Integer, String, delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from analyzers.fusion import ItemFuser, pool
from analyzers.media.dispatch import MediaAnalysis, MediaAnalyzer
from analyzers.media.limits import MediaLimits
from analyzers.media.names import safe_filename
from analyzers.media.schemas import (
    AudioAnalysis,
    ImageAnalysis,
    ModalityVector,
    VideoAnalysis,
)
from analyzers.media.sniff import MediaKind, MediaType, check_image_header, sniff_media_type
from analyzers.text import TextAnalyzer, document_text
from core.contracts import (
    Evidence,
    ItemAnalysis,
    ItemState,
    NotAssessed,
    RiskCategory,
    RiskScore,
)
from core.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    ReelsiftError,
    ServiceUnavailable,
    UnsupportedMediaType,
)
from core.storage.blobs import BlobStore
from core.storage.db import Base, transaction, write_transaction
from core.storage.items import ItemStore, StateChange, content_fingerprint
from core.storage.tables import AnalysisRow, ItemMediaRow, ItemRow, MediaBlobRow, utcnow
from serving.http import JsonTooDeep, load_json
from serving.ingest import (
    RETRYABLE_STATES,
    UNFINISHED_STATES,
    Enrichment,
    IngestService,
    analyze_documents,
    check_text_item,
    lock_orphaned_items,
    unassessed_risk,
)
from serving.jobs import JobOut, JobRunner, ProgressFn
from serving.schemas import ItemOut, TextItemIn

if TYPE_CHECKING:
    from analyzers.media.image import ImageAnalyzer

log = logging.getLogger(__name__)

JOB_KIND = "analyze_media"
METADATA_FIELD = "metadata"
KEYFRAME_MAX_SIDE = 640
KEYFRAME_JPEG_QUALITY = 85
# After a limit is broken, this much more of the body is read (and dropped) so that the
# client, still sending, gets the 413 instead of a reset connection.
DRAIN_BYTES = 64 * 1024 * 1024
SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")
MULTIPART_HELP = (
    "send multipart/form-data with a JSON part named 'metadata' "
    '({"id", "creator_id", "title", "text", "tags"}) and one or more file parts'
)


class MalformedRequest(ReelsiftError):
    """The request body cannot be parsed at all (same code as invalid JSON bodies)."""

    code = "E100"
    status = 400


# -- limits and inputs --------------------------------------------------------------------


@dataclass(frozen=True)
class IntakeLimits:
    media: MediaLimits = field(default_factory=MediaLimits)
    max_files_per_item: int = 8
    async_media_bytes: int = 32 * 1024 * 1024
    max_metadata_bytes: int = 1024 * 1024
    near_duplicate_max_distance: int = 12
    # A file part larger than this is written to ``spool_dir`` as it arrives instead of
    # being held in memory (None: always in memory, as tests with tiny files like).
    spool_bytes: int = 4 * 1024 * 1024
    spool_dir: Path | None = None

    def file_too_large(self, size: int) -> PayloadTooLarge:
        maximum = self.media.max_file_bytes
        return PayloadTooLarge(
            f"file is over {maximum} bytes (read {size} so far); the limit max_file_bytes is "
            f"{maximum} (REELSIFT_MAX_FILE_BYTES)",
            limit="max_file_bytes", value=size, maximum=maximum,
        )

    def too_many_files(self, count: int) -> InvalidInput:
        return InvalidInput(
            f"{count} files in one item; the limit max_files_per_item is "
            f"{self.max_files_per_item} (REELSIFT_MAX_FILES_PER_ITEM)",
            limit="max_files_per_item", value=count, maximum=self.max_files_per_item,
        )


class MediaItemIn(TextItemIn):
    """The ``metadata`` part of a multipart upload: a text item whose text may be empty."""

    text: str = ""


@dataclass
class MediaUpload:
    """One file as received; ``filename`` and ``content_type`` are the client's claims.

    Small files stay in memory (``data``); larger ones were spooled to a temporary file
    (``path``) while the body streamed in, so an upload never holds gigabytes in memory.
    """

    filename: str | None
    data: bytes | None
    content_type: str | None = None
    path: Path | None = None
    spooled: bool = False  # ``path`` is our temporary file (not a caller's local file)

    @property
    def source(self) -> bytes | Path:
        if self.data is not None:
            return self.data
        assert self.path is not None
        return self.path

    @property
    def size(self) -> int:
        if self.data is not None:
            return len(self.data)
        assert self.path is not None
        return self.path.stat().st_size

    def discard(self) -> None:
        """Delete the spooled file, if any (its bytes are in the blob store by now)."""
        if self.spooled and self.path is not None:
            self.path.unlink(missing_ok=True)


@dataclass
class MultipartUpload:
    metadata: bytes
    files: list[MediaUpload]

    def discard(self) -> None:
        for upload in self.files:
            upload.discard()


# -- streaming multipart reader -----------------------------------------------------------


class MultipartUploadReader:
    """Parses ``multipart/form-data`` chunk by chunk, enforcing the limits as bytes arrive."""

    def __init__(self, content_type: str, limits: IntakeLimits) -> None:
        from python_multipart.multipart import MultipartParser, parse_options_header

        self.limits = limits
        self._parse_options = parse_options_header
        kind, options = parse_options_header(content_type)
        boundary = options.get(b"boundary")
        if kind != b"multipart/form-data" or not boundary:
            raise MalformedRequest(
                f"expected multipart/form-data with a boundary, got {content_type!r}; "
                + MULTIPART_HELP
            )
        self.metadata: bytes | None = None
        self.files: list[MediaUpload] = []
        self.ended = False
        self._header_field = bytearray()
        self._header_value = bytearray()
        self._headers: dict[bytes, bytes] = {}
        self._buffer = bytearray()
        self._size = 0
        # The current file part, once it outgrew memory, and where it is written.
        self._spool: BinaryIO | None = None
        self._spool_path: Path | None = None
        self._part: str | None = None  # "metadata" | "file"
        self._filename: str | None = None
        self._content_type: str | None = None
        self._parser = MultipartParser(
            boundary,
            callbacks={
                "on_part_begin": self._on_part_begin,
                "on_part_data": self._on_part_data,
                "on_part_end": self._on_part_end,
                "on_header_field": self._on_header_field,
                "on_header_value": self._on_header_value,
                "on_header_end": self._on_header_end,
                "on_headers_finished": self._on_headers_finished,
                "on_end": self._on_end,
            },
        )

    def check_declared_length(self, content_length: str | None) -> None:
        """Refuse at once a body whose declared length cannot fit within the limits."""
        if content_length is None or not content_length.isdigit():
            return
        ceiling = (
            self.limits.max_files_per_item * self.limits.media.max_file_bytes
            + self.limits.max_metadata_bytes + 64 * 1024
        )
        if int(content_length) > ceiling:
            raise PayloadTooLarge(
                f"request body is {content_length} bytes; at most max_files_per_item="
                f"{self.limits.max_files_per_item} files of max_file_bytes="
                f"{self.limits.media.max_file_bytes} each fit",
                limit="max_file_bytes", value=int(content_length), maximum=ceiling,
            )

    def feed(self, chunk: bytes) -> None:
        from python_multipart.exceptions import MultipartParseError

        try:
            self._parser.write(chunk)
        except MultipartParseError as exc:
            raise MalformedRequest(f"malformed multipart body: {exc}; " + MULTIPART_HELP) from exc

    def finish(self) -> MultipartUpload:
        if not self.ended:
            raise MalformedRequest("the multipart body ended early (no closing boundary)")
        if self.metadata is None:
            raise InvalidInput(
                f"the upload has no '{METADATA_FIELD}' part; " + MULTIPART_HELP,
                field=METADATA_FIELD,
            )
        return MultipartUpload(metadata=self.metadata, files=self.files)

    # python-multipart callbacks ---------------------------------------------------------
    def _on_part_begin(self) -> None:
        self._headers = {}
        self._buffer = bytearray()
        self._size = 0
        self._part = None

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _on_header_end(self) -> None:
        self._headers[bytes(self._header_field).lower()] = bytes(self._header_value)
        self._header_field = bytearray()
        self._header_value = bytearray()

    def _on_headers_finished(self) -> None:
        disposition = self._headers.get(b"content-disposition", b"")
        kind, options = self._parse_options(disposition)
        if kind != b"form-data" or b"name" not in options:
            raise MalformedRequest(
                "a multipart part has no 'Content-Disposition: form-data; name=...' header"
            )
        name = options[b"name"].decode("utf-8", errors="replace")
        if b"filename" in options:
            if len(self.files) >= self.limits.max_files_per_item:
                raise self.limits.too_many_files(len(self.files) + 1)
            self._part = "file"
            try:
                self._filename = options[b"filename"].decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InvalidInput("a file name is not valid UTF-8", field=name) from exc
            declared = self._headers.get(b"content-type")
            self._content_type = declared.decode("latin-1") if declared else None
        elif name == METADATA_FIELD:
            if self.metadata is not None:
                raise InvalidInput(f"the '{METADATA_FIELD}' part appears twice", field=name)
            self._part = METADATA_FIELD
        else:
            raise InvalidInput(
                f"unexpected form field {name!r} without a file name; " + MULTIPART_HELP,
                field=name,
            )

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        size = self._size + (end - start)
        if self._part == "file" and size > self.limits.media.max_file_bytes:
            raise self.limits.file_too_large(size)
        if self._part == METADATA_FIELD and size > self.limits.max_metadata_bytes:
            raise PayloadTooLarge(
                f"the '{METADATA_FIELD}' part is over {self.limits.max_metadata_bytes} bytes",
                limit="max_metadata_bytes", maximum=self.limits.max_metadata_bytes,
            )
        self._size = size
        if self._spool is not None:
            self._spool.write(data[start:end])
            return
        self._buffer += data[start:end]
        spool_dir = self.limits.spool_dir
        if self._part == "file" and spool_dir is not None and size > self.limits.spool_bytes:
            spool_dir.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(dir=spool_dir, prefix="upload-")
            self._spool_path = Path(name)
            self._spool = os.fdopen(fd, "wb")  # closed at the part's end or by discard()
            self._spool.write(self._buffer)
            self._buffer = bytearray()

    def _on_part_end(self) -> None:
        if self._part == METADATA_FIELD:
            self.metadata = bytes(self._buffer)
        elif self._part == "file":
            if self._spool is not None:
                self._spool.close()
                upload = MediaUpload(self._filename, None, self._content_type,
                                     path=self._spool_path, spooled=True)
                self._spool = None
            else:
                upload = MediaUpload(self._filename, bytes(self._buffer), self._content_type)
            self.files.append(upload)
        self._buffer = bytearray()

    def discard(self) -> None:
        """Delete every spooled file: the upload was refused or has been stored."""
        if self._spool is not None:
            self._spool.close()
            self._spool = None
            if self._spool_path is not None:
                self._spool_path.unlink(missing_ok=True)
        for upload in self.files:
            upload.discard()

    def _on_end(self) -> None:
        self.ended = True


async def read_multipart(
    content_type: str, content_length: str | None, stream: AsyncIterator[bytes],
    limits: IntakeLimits,
) -> MultipartUpload:
    """Read a multipart upload from an ASGI body stream, refusing as soon as a limit breaks."""
    reader = MultipartUploadReader(content_type, limits)
    reader.check_declared_length(content_length)
    error: ReelsiftError | None = None
    drained = 0
    try:
        async for chunk in stream:
            if error is None:
                try:
                    reader.feed(chunk)
                except ReelsiftError as exc:
                    error = exc
            else:
                drained += len(chunk)
                if drained > DRAIN_BYTES:
                    break
        if error is not None:
            raise error
        return reader.finish()
    except BaseException:  # refused, or the client went away: no spooled file stays
        reader.discard()
        raise


def parse_metadata(raw: bytes) -> MediaItemIn:
    try:
        obj = load_json(raw)
    except JsonTooDeep as exc:
        raise MalformedRequest(f"the '{METADATA_FIELD}' part: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise MalformedRequest(
            f"the '{METADATA_FIELD}' part is not valid UTF-8 (byte {exc.start})"
        ) from exc
    except json.JSONDecodeError as exc:
        raise MalformedRequest(
            f"the '{METADATA_FIELD}' part is not valid JSON: {exc.msg} at character {exc.pos}"
        ) from exc
    if not isinstance(obj, dict):
        raise InvalidInput(
            f"the '{METADATA_FIELD}' part must be a JSON object", field=METADATA_FIELD
        )
    try:
        return MediaItemIn.model_validate(obj)
    except ValidationError as exc:
        problems = [
            (".".join(str(p) for p in e["loc"]) or METADATA_FIELD, e["msg"]) for e in exc.errors()
        ]
        raise InvalidInput(
            "invalid metadata: " + "; ".join(f"{f}: {m}" for f, m in problems),
            errors=[{"field": f, "problem": m} for f, m in problems],
        ) from exc


# -- request bodies of POST /v1/items ---------------------------------------------------------


def is_multipart(content_type: str | None) -> bool:
    return content_type is not None and content_type.lower().lstrip().startswith("multipart/")


def _is_json(content_type: str) -> bool:
    main = content_type.split(";", 1)[0].strip().lower()
    return main == "application/json" or (
        main.startswith("application/") and main.endswith("+json")
    )


def parse_text_item_body(content_type: str | None, body: bytes) -> TextItemIn:
    """The JSON text item, with the errors FastAPI gives for a JSON body parameter.

    ``POST /v1/items`` reads its body itself because it takes multipart uploads too.
    """
    from fastapi.exceptions import RequestValidationError

    if content_type and not _is_json(content_type):
        raise UnsupportedMediaType(
            f"POST /v1/items takes application/json (a text item) or multipart/form-data "
            f"(media), not {content_type.split(';', 1)[0]!r}",
            supported=["application/json", "multipart/form-data"],
        )
    if not body:
        raise RequestValidationError(
            [{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}]
        )
    try:
        obj = load_json(body)  # invalid UTF-8 raises UnicodeDecodeError: a 400 handler
    except JsonTooDeep as exc:
        raise MalformedRequest(str(exc)) from exc
    except json.JSONDecodeError as exc:
        raise RequestValidationError([{
            "type": "json_invalid", "loc": ("body", exc.pos), "msg": "JSON decode error",
            "input": {}, "ctx": {"error": exc.msg},
        }]) from exc
    try:
        return TextItemIn.model_validate(obj)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]
        ) from exc


def _upload_schema() -> dict[str, Any]:
    metadata = MediaItemIn.model_json_schema()
    metadata["description"] = "the item's fields as a JSON part (text may be empty)"
    return {
        "type": "object",
        "required": [METADATA_FIELD, "file"],
        "additionalProperties": False,
        "properties": {
            METADATA_FIELD: metadata,
            "file": {
                "type": "array", "items": {"type": "string", "format": "binary"},
                "description": "one or more image, audio or video files (type read from bytes)",
            },
        },
    }


ITEM_UPLOAD_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": TextItemIn.model_json_schema()},
            "multipart/form-data": {
                "schema": _upload_schema(),
                "encoding": {METADATA_FIELD: {"contentType": "application/json"}},
            },
        },
    }
}


# -- validation and probing ---------------------------------------------------------------


@dataclass(frozen=True)
class ContainerProbe:
    duration_ms: int | None
    frames: int | None


@dataclass
class CheckedFile:
    """A file that passed every check that runs before anything is stored."""

    position: int
    filename: str | None
    sha256: str
    media_type: MediaType
    size_bytes: int
    data: bytes | None = None  # in memory (uploads) ...
    path: Path | None = None  # ... or on disk (stored blobs, local files)
    probe: ContainerProbe | None = None

    @property
    def kind(self) -> MediaKind:
        return self.media_type.kind

    def read(self) -> bytes:
        if self.data is not None:
            return self.data
        assert self.path is not None
        return self.path.read_bytes()


def _label(position: int, filename: str | None) -> str:
    return f"file {position}" + (f" ({filename})" if filename else "")


def _about_file(position: int, filename: str | None, exc: ReelsiftError) -> ReelsiftError:
    """The same coded error, its message saying which file of the upload it is about."""
    error = type(exc)(f"{_label(position, filename)}: {exc.message}", **exc.details)
    error.details.setdefault("file", position)
    return error


def probe_container(
    source: bytes | Path, media_type: MediaType, limits: MediaLimits
) -> ContainerProbe:
    """Open a video/audio container with FFmpeg and check what its header declares.

    Catches what would otherwise surface only inside a job: a corrupt header, no video
    stream, no packet at all, a duration or frame count over the limits.
    """
    import av

    label = media_type.value
    want_video = media_type.kind is MediaKind.VIDEO
    try:
        opened: Any = av.open(io.BytesIO(source) if isinstance(source, bytes) else str(source))
        with opened as container:
            streams = container.streams.video if want_video else container.streams.audio
            if not streams:
                raise InvalidInput(
                    f"the {label} file has no {'video' if want_video else 'audio'} stream",
                    media_type=label,
                )
            stream: Any = streams[0]
            seconds: float | None = None
            if stream.duration is not None and stream.time_base is not None:
                seconds = float(stream.duration * stream.time_base)
            elif container.duration is not None:
                seconds = container.duration / 1_000_000
            frames = int(stream.frames) if want_video and stream.frames else None
            if want_video:
                width = int(stream.codec_context.width or 0)
                height = int(stream.codec_context.height or 0)
                if width > 0 and height > 0:
                    limits.check_image_pixels(width, height)
                if seconds is not None:
                    limits.check_video_seconds(seconds)
                if frames is not None:
                    limits.check_video_frames(frames)
            elif seconds is not None:
                limits.check_audio_seconds(seconds)
            if next((p for p in container.demux(stream) if p.size), None) is None:
                raise InvalidInput(f"the {label} file has no frames", media_type=label)
    except av.FFmpegError as exc:
        # strerror leaves out file paths that str(exc) would show.
        reason = getattr(exc, "strerror", None) or str(exc)
        raise InvalidInput(
            f"the {label} file's header is corrupt: {reason}", media_type=label, reason=reason
        ) from exc
    return ContainerProbe(
        duration_ms=None if seconds is None else round(seconds * 1000), frames=frames
    )


# Bytes read from a file on disk to tell its type (the sniffers look at 512 at most).
SNIFF_BYTES = 64 * 1024


def check_file(
    position: int, filename: str | None, source: bytes | Path, limits: IntakeLimits,
    *, probe_audio: bool = False,
) -> CheckedFile:
    """Everything about one file that can be refused without analyzing it.

    ``source``: the bytes, or a file on disk (a spooled upload, a local file), which is
    then read only as far as each check needs: its head to sniff, all of it only for an
    image's header, in blocks to hash.
    """
    try:
        label = safe_filename(filename) if filename else None
        if isinstance(source, Path):
            data, path, size = None, source, source.stat().st_size
            head = _read_head(source)
        else:
            data, path, size = source, None, len(source)
            head = source
        limits.media.check_file_bytes(size)
        media_type = sniff_media_type(head)
        probe = None
        if media_type.kind is MediaKind.IMAGE:
            image = source.read_bytes() if isinstance(source, Path) else source
            check_image_header(image, media_type, limits.media)
        elif media_type.kind is MediaKind.VIDEO or probe_audio:
            probe = probe_container(source, media_type, limits.media)
    except ReelsiftError as exc:
        raise _about_file(position, filename, exc) from exc
    return CheckedFile(
        position=position, filename=label, sha256=_sha256(source), media_type=media_type,
        size_bytes=size, data=data, path=path, probe=probe,
    )


def _read_head(path: Path) -> bytes:
    with path.open("rb") as fh:
        return fh.read(SNIFF_BYTES)


def _sha256(source: bytes | Path) -> str:
    if isinstance(source, Path):
        with source.open("rb") as fh:
            return hashlib.file_digest(fh, "sha256").hexdigest()
    return hashlib.sha256(source).hexdigest()


# -- analysis (no storage) ----------------------------------------------------------------


@dataclass(frozen=True)
class KeyframeImage:
    t_ms: int
    jpeg: bytes
    sha256: str
    width: int
    height: int


@dataclass
class AnalyzedFile:
    file: CheckedFile
    analysis: MediaAnalysis
    keyframes: list[KeyframeImage] = field(default_factory=list)

    def phashes(self) -> list[tuple[str, int | None]]:
        """(pHash hex, t_ms) of the image, or of every keyframe of a video."""
        if isinstance(self.analysis, ImageAnalysis):
            return [(self.analysis.phash, None)]
        if isinstance(self.analysis, VideoAnalysis):
            return [(s.image.phash, s.keyframe_ms) for s in self.analysis.segments]
        return []


@dataclass
class ItemResult:
    analysis: ItemAnalysis
    vectors: dict[str, tuple[str, np.ndarray]]  # kind -> (model id, vector)
    files: list[AnalyzedFile]


def encode_jpeg(rgb: np.ndarray, max_side: int = KEYFRAME_MAX_SIDE) -> tuple[bytes, int, int]:
    import cv2

    from analyzers.media.decode import resize_max_side

    small = resize_max_side(np.ascontiguousarray(rgb), max_side)
    ok, buffer = cv2.imencode(
        ".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR),
        [cv2.IMWRITE_JPEG_QUALITY, KEYFRAME_JPEG_QUALITY],
    )
    if not ok:
        raise InvalidInput("could not encode a keyframe as JPEG")
    return buffer.tobytes(), int(small.shape[1]), int(small.shape[0])


class _KeyframeRecorder:
    """Stands in for the ImageAnalyzer during one video analysis: every keyframe the video
    analyzer hands over is analyzed as usual, and also kept as a JPEG (for the console's
    strip) and reported as progress. The video analyzer keeps no frames itself."""

    def __init__(
        self, inner: ImageAnalyzer, duration_ms: int | None, progress: ProgressFn | None
    ) -> None:
        self.inner = inner
        self.duration_ms = duration_ms
        self.progress = progress
        self.keyframes: list[KeyframeImage] = []

    def analyze_array(
        self, rgb: np.ndarray, t_ms: int | None = None, media_type: str = "image/raw"
    ) -> ImageAnalysis:
        analysis = self.inner.analyze_array(rgb, t_ms=t_ms, media_type=media_type)
        jpeg, width, height = encode_jpeg(rgb)
        self.keyframes.append(
            KeyframeImage(t_ms or 0, jpeg, hashlib.sha256(jpeg).hexdigest(), width, height)
        )
        if self.progress is not None and self.duration_ms and t_ms is not None:
            self.progress(min(t_ms / self.duration_ms, 1.0))
        return analysis


def _prefixed(evidence: Evidence, prefix: str) -> Evidence:
    detail = f"{prefix}: {evidence.detail}" if evidence.detail else prefix
    return evidence.model_copy(update={"detail": detail})


def merge_risk(sources: Sequence[tuple[str, Sequence[RiskScore]]]) -> list[RiskScore]:
    """One score per category: the worst assessed score across modalities (as the policy
    reads them), with the evidence of every source that assessed the category, each
    labelled with its source; a category no source assessed keeps the first reason."""
    merged: list[RiskScore] = []
    for category in RiskCategory:
        assessed: list[tuple[str, RiskScore]] = []
        reasons: list[str] = []
        for source, scores in sources:
            for score in scores:
                if score.category != category:
                    continue
                if score.score is None:
                    if score.not_assessed_reason:
                        reasons.append(f"{source}: {score.not_assessed_reason}")
                else:
                    assessed.append((source, score))
        if not assessed:
            merged.append(RiskScore(
                category=category, score=None,
                not_assessed_reason="; ".join(reasons) or "no model assesses this category",
            ))
            continue
        _, worst = max(assessed, key=lambda pair: pair[1].score or 0.0)
        evidence = [_prefixed(e, source) for source, s in assessed for e in s.evidence]
        merged.append(RiskScore(
            category=category, score=worst.score, model=worst.model, evidence=evidence,
        ))
    return merged


def _media_entry(analyzed: AnalyzedFile) -> dict[str, Any]:
    file = analyzed.file
    entry: dict[str, Any] = {
        "position": file.position,
        "filename": file.filename,
        "sha256": file.sha256,
        "media_type": file.media_type.value,
        "kind": file.kind.value,
        "size_bytes": file.size_bytes,
        "analysis": analyzed.analysis.summary(),
        "near_duplicate_of": [],
        "near_duplicates": [],
    }
    if isinstance(analyzed.analysis, VideoAnalysis):
        frames = {k.t_ms: k for k in analyzed.keyframes}
        entry["keyframes"] = [
            {
                "t_ms": s.keyframe_ms, "start_ms": s.start_ms, "end_ms": s.end_ms,
                "sha256": frames[s.keyframe_ms].sha256 if s.keyframe_ms in frames else None,
                "media_type": "image/jpeg",
                "width": frames[s.keyframe_ms].width if s.keyframe_ms in frames else None,
                "height": frames[s.keyframe_ms].height if s.keyframe_ms in frames else None,
            }
            for s in analyzed.analysis.segments
        ]
    return entry


class MediaItemPipeline:
    """Turns a checked item (text fields plus files) into one ``ItemAnalysis`` and vectors.

    Pure: no database, no blob store. Used by the service (inside requests and jobs) and
    by the CLI's ``analyze``.
    """

    def __init__(
        self, text_analyzer: TextAnalyzer, enrichment: Enrichment, media: MediaAnalyzer,
    ) -> None:
        self.text_analyzer = text_analyzer
        self.enrichment = enrichment
        self.media = media

    @property
    def fuser(self) -> ItemFuser | None:
        return self.enrichment.fuser

    def analyze_file(self, file: CheckedFile, progress: ProgressFn | None = None) -> AnalyzedFile:
        """Analyze one file; bad media raises a coded error naming the file."""
        try:
            if file.kind is MediaKind.IMAGE:
                return AnalyzedFile(file, self.media.image.analyze(file.read()))
            if file.kind is MediaKind.AUDIO:
                return AnalyzedFile(file, self.media.audio.analyze(file.read()))
            return self._analyze_video(file, progress)
        except ReelsiftError as exc:
            raise _about_file(file.position, file.filename, exc) from exc
        except Exception as exc:
            # Decoders fail on malformed media in ways no one enumerates; the upload is
            # at fault far more often than the server, and the client must hear why.
            log.exception("analyzing %s failed", _label(file.position, file.filename))
            raise InvalidInput(
                f"{_label(file.position, file.filename)}: the {file.media_type.value} file "
                f"could not be analyzed ({type(exc).__name__}: {exc})",
                file=file.position, media_type=file.media_type.value,
            ) from exc

    def _analyze_video(self, file: CheckedFile, progress: ProgressFn | None) -> AnalyzedFile:
        duration = file.probe.duration_ms if file.probe is not None else None
        recorder = _KeyframeRecorder(self.media.image, duration, progress)
        # A shallow copy shares the loaded models; only this run sees the recorder.
        video = copy.copy(self.media.video)
        video.image_analyzer = cast("ImageAnalyzer", recorder)
        analysis = (
            video.analyze_path(file.path) if file.path is not None else video.analyze(file.read())
        )
        return AnalyzedFile(file, analysis, recorder.keyframes)

    def build(self, title: str, text: str, files: Sequence[AnalyzedFile]) -> ItemResult:
        """Combine the text part (if any) and the analyzed files into one analysis."""
        vectors: dict[str, tuple[str, np.ndarray]] = {}
        document = document_text(title, text)
        if document.strip():
            [analysis], [text_vectors] = analyze_documents(
                self.text_analyzer, self.enrichment, [title], [document]
            )
            if "text" in text_vectors:
                vectors["text"] = text_vectors["text"]
            text_risk = list(analysis.risk)
        else:
            analysis = ItemAnalysis()
            analysis.not_assessed.append(NotAssessed(
                output="labels", reason="the item has no text to classify (no title or text)"
            ))
            text_risk = unassessed_risk("the item has no text")

        sources: list[tuple[str, Sequence[RiskScore]]] = [("text", text_risk)]
        visual: list[ModalityVector] = []
        audio: list[ModalityVector] = []
        seen_missing: set[tuple[str, str]] = set()
        for analyzed in files:
            result = analyzed.analysis
            label = _label(analyzed.file.position, analyzed.file.filename)
            analysis.media.append(_media_entry(analyzed))
            for role, model_id in result.models.items():
                analysis.models.setdefault(role, model_id)
            for missing in result.not_assessed:
                key = (missing.output, missing.reason)
                if key not in seen_missing:
                    seen_missing.add(key)
                    analysis.not_assessed.append(
                        NotAssessed(output=f"media.{missing.output}", reason=missing.reason)
                    )
            if isinstance(result, ImageAnalysis):
                sources.append((label, result.risk))
                if result.embedding is not None:
                    visual.append(result.embedding)
            elif isinstance(result, AudioAnalysis):
                audio.append(result.embedding)
            else:
                sources.append((label, result.risk))
                if result.visual_embedding is not None:
                    visual.append(result.visual_embedding)
                if result.audio is not None:
                    audio.append(result.audio.embedding)
        analysis.risk = merge_risk(sources)

        pooled = {"visual": _pool(visual), "audio": _pool(audio)}
        for kind, vector in pooled.items():
            if vector is not None:
                vectors[kind] = (vector.model, vector.as_array())
        self._fuse(analysis, vectors, pooled)
        return ItemResult(analysis=analysis, vectors=vectors, files=list(files))

    def _fuse(
        self, analysis: ItemAnalysis, vectors: dict[str, tuple[str, np.ndarray]],
        pooled: dict[str, ModalityVector | None],
    ) -> None:
        if self.fuser is None:
            analysis.not_assessed.append(NotAssessed(output="fused_embedding", reason="no fuser"))
            return
        parts: dict[str, ModalityVector | None] = dict(pooled)
        if "text" in vectors:
            model_id, text_vector = vectors["text"]
            parts["text"] = ModalityVector.from_array("text", model_id, text_vector)
        if not any(v is not None for v in parts.values()):
            analysis.not_assessed.append(
                NotAssessed(output="fused_embedding", reason="no modality produced a vector")
            )
            return
        try:
            fused = self.fuser.fuse(parts)
        except InvalidInput as exc:
            analysis.not_assessed.append(NotAssessed(output="fused_embedding", reason=exc.message))
            return
        analysis.models["fusion"] = fused.fusion_model
        vectors["fused"] = (fused.fusion_model, fused.as_array())


def _pool(vectors: list[ModalityVector]) -> ModalityVector | None:
    if not vectors:
        return None
    return vectors[0] if len(vectors) == 1 else pool(vectors)


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


# -- the service --------------------------------------------------------------------------


@dataclass
class MediaSubmission:
    item: ItemOut
    job: JobOut | None  # set while the item waits for (or runs) its analysis job
    created: bool


class MediaAccepted(BaseModel):
    """The 202 answer: the item is stored, its analysis runs as a job."""

    item: ItemOut
    job: JobOut
    status_url: str


def media_fingerprint(item: MediaItemIn, digests: Sequence[str]) -> str:
    return content_fingerprint({
        "creator_id": item.creator_id, "title": item.title, "text": item.text,
        "tags": item.tags, "media": list(digests),
    })




class MediaIngestService:
    def __init__(
        self,
        ingest: IngestService,
        blobs: BlobStore,
        pipeline: MediaItemPipeline,
        limits: IntakeLimits,
        jobs: JobRunner,
        hashes: PerceptualHashIndex | None = None,
    ) -> None:
        self.ingest = ingest
        self.store: ItemStore = ingest.store
        self.blobs = blobs
        self.pipeline = pipeline
        self.limits = limits
        self.jobs = jobs
        self.hashes = hashes or PerceptualHashIndex(
            ingest.store.sessions, limits.near_duplicate_max_distance
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
        check_text_item(item, self.ingest.limits, require_text=False)
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
        return MediaSubmission(self.ingest.get_item(item.id), None, True)

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
            self.ingest.get_item(item_id), job if job and not job.finished else None, False
        )

    def has_media(self, item_id: str) -> bool:
        with transaction(self.sessions) as session:
            return session.scalar(
                select(ItemMediaRow.item_id).where(ItemMediaRow.item_id == item_id).limit(1)
            ) is not None

    def requeue(self, item_id: str) -> JobOut | None:
        """A new analysis job for a media item left ``failed`` or unanalyzed
        (``received`` with no job running); None when it is in no such state."""
        with write_transaction(self.sessions) as session:
            row = session.get(ItemRow, item_id, with_for_update=True)
            if row is None or row.state not in RETRYABLE_STATES:
                return None
            latest = self.jobs.store.latest_for_item(session, item_id)
            if latest is not None and not latest.finished:
                return latest
            changes = []
            if row.state == ItemState.FAILED.value:
                changes.append(self.store.transition(
                    item_id, ItemState.RECEIVED, "analysis retried", session=session
                ))
            job_id = self.jobs.store.create(session, JOB_KIND, item_id)
        self.store.notify(changes)
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
        return MediaSubmission(self.ingest.get_item(item.id), None if job.finished else job, True)

    def _near_duplicates(self, item_id: str, result: ItemResult) -> None:
        for analyzed, entry in zip(result.files, result.analysis.media, strict=True):
            matches = self.hashes.search(analyzed.phashes(), exclude_item=item_id)
            entry["near_duplicate_of"] = sorted({m.item_id for m in matches})
            entry["near_duplicates"] = [m.model_dump(exclude={"query"}) for m in matches[:20]]

    def _store_analyzed(self, item: MediaItemIn, digest: str, result: ItemResult) -> None:
        """A new item with its finished analysis: rows, blobs, vectors, hashes, then routing."""
        self._near_duplicates(item.id, result)
        with transaction(self.sessions) as session:
            self._new_item_row(session, item, digest)
            self._store_files(session, item.id, [a.file for a in result.files])
            change = self.store.transition(item.id, ItemState.ANALYZING, session=session)
            self._store_result(session, item.id, result)
        self.store.notify([change])
        self.ingest.gate(item.id, result.analysis.risk)

    def _store_result(self, session: Session, item_id: str, result: ItemResult) -> None:
        session.add(AnalysisRow(item_id=item_id, payload=result.analysis.model_dump(mode="json")))
        for kind, (model_id, vector) in result.vectors.items():
            self.store.put_embedding(session, item_id, kind, model_id, vector)
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
            self.ingest.release_unanalyzed([item_id], "waiting for a model service")
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
        self.ingest.gate(item_id, result.analysis.risk)

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
        changes: list[StateChange] = []
        routes: list[tuple[str, list[RiskScore]]] = []
        new_jobs: list[str] = []
        with write_transaction(self.sessions) as session:
            # A synchronous upload another live process is still analyzing has no job.
            for row in lock_orphaned_items(session, self.ingest.processes, with_media=True):
                item_id = row.id
                job = self.jobs.store.latest_for_item(session, item_id)
                if job is not None and not job.finished:
                    continue
                row.updated_at = utcnow()  # taken: another recovering process skips it
                analysis = self.store.latest_analysis(session, item_id)
                if analysis is not None:
                    # Stored with its analysis; the crash came before routing.
                    risk = ItemAnalysis.model_validate(analysis).risk
                    changes.append(
                        self.store.transition(item_id, ItemState.ANALYZING, session=session)
                    )
                    routes.append((item_id, risk))
                else:
                    new_jobs.append(self.jobs.store.create(session, JOB_KIND, item_id))
        self.store.notify(changes)
        for item_id, risk in routes:
            self.ingest.gate(item_id, risk)
        for job_id in new_jobs:
            self.jobs.submit(job_id)
        return resumed + len(routes) + len(new_jobs)


def local_file(position: int, path: Path, limits: IntakeLimits) -> CheckedFile:
    """A local media file checked like an upload (for the CLI), read only as checks need."""
    return check_file(position, path.name, path, limits, probe_audio=True)
