"""HTTP parsing of uploads: the multipart body as it streams in, the JSON text item body,
the batch endpoint's per-item answers, and the OpenAPI description of POST /v1/items."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from pydantic import ValidationError

from core.errors import (
    InvalidInput,
    PayloadTooLarge,
    ReelsiftError,
    ServiceUnavailable,
    UnsupportedMediaType,
)
from ingest.intake import MULTIPART_HELP, IntakeLimits, MediaUpload
from ingest.models import BatchOut, BatchResult, MediaItemIn, TextItemIn
from ingest.text import TextIngestService
from serving.errors import validation_error_body
from serving.http import JsonTooDeep, load_json

log = logging.getLogger(__name__)

METADATA_FIELD = "metadata"
# After a limit is broken, this much more of the body is read (and dropped) so that the
# client, still sending, gets the 413 instead of a reset connection.
DRAIN_BYTES = 64 * 1024 * 1024


class MalformedRequest(ReelsiftError):
    """The request body cannot be parsed at all (same code as invalid JSON bodies)."""

    code = "E100"
    status = 400


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


def submit_batch(ingest: TextIngestService, raw_items: list[dict[str, Any]]) -> BatchOut:
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
