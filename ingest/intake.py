"""What an upload must satisfy before anything is stored: text rules, media limits, file
types sniffed from bytes, image sizes from headers, containers probed with FFmpeg.

A refused upload leaves no item, no blob, no row.
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from analyzers.media.limits import MediaLimits
from analyzers.media.names import safe_filename
from analyzers.media.sniff import MediaKind, MediaType, check_image_header, sniff_media_type
from core.errors import (
    InvalidInput,
    PayloadTooLarge,
    ReelsiftError,
)
from core.storage.items import content_fingerprint

if TYPE_CHECKING:
    pass

from ingest.models import TextItemIn

log = logging.getLogger(__name__)

SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")
# What a media upload looks like, for error messages.
MULTIPART_HELP = (
    "send multipart/form-data with a JSON part named 'metadata' "
    '({"id", "creator_id", "title", "text", "tags"}) and one or more file parts'
)


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


def file_label(position: int, filename: str | None) -> str:
    return f"file {position}" + (f" ({filename})" if filename else "")


def about_file(position: int, filename: str | None, exc: ReelsiftError) -> ReelsiftError:
    """The same coded error, its message saying which file of the upload it is about."""
    error = type(exc)(f"{file_label(position, filename)}: {exc.message}", **exc.details)
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
        raise about_file(position, filename, exc) from exc
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


def local_file(position: int, path: Path, limits: IntakeLimits) -> CheckedFile:
    """A local media file checked like an upload (for the CLI), read only as checks need."""
    return check_file(position, path.name, path, limits, probe_audio=True)
