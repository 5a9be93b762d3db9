"""Items as clients send them and read them back (the upload pipeline's contracts)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from core.contracts import ItemAnalysis, ItemState, JsonDateTime, UtcDateTime
from ingest.jobs import JobOut

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]*$"
# At least one character Python does not strip: \s as every regex engine reads it, plus
# the separators (U+001C-U+001F, U+0085) str.strip() removes and ECMA's \s does not.
NOT_BLANK_PATTERN = "[^\\s\x1c-\x1f\x85]"


class TextItemIn(BaseModel):
    """A text item as upload pipelines send it (DESIGN.md's bulk item format, text only)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    id: str = Field(min_length=1, max_length=128, pattern=ID_PATTERN)
    creator_id: str = Field(min_length=1, max_length=128)
    title: str = ""
    # Something to analyze: at least one character that is not whitespace (checked by
    # the intake with a message naming the field; declared here for clients).
    text: str = Field(json_schema_extra={"pattern": NOT_BLANK_PATTERN})
    tags: list[str] = Field(default_factory=list)
    created_at: JsonDateTime | None = Field(default=None, strict=False)


class EmbeddingInfo(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    kind: str
    model_id: str
    dim: int
    vector: list[float] | None = None


class Keyframe(BaseModel):
    """A video keyframe: the segment it stands for and its JPEG (GET /v1/media/{sha256})."""

    t_ms: int
    start_ms: int
    end_ms: int
    sha256: str | None
    media_type: str
    width: int | None
    height: int | None


class NearDuplicateOut(BaseModel):
    item_id: str
    sha256: str
    t_ms: int | None = None
    distance: int = Field(ge=0, le=64, description="Hamming distance of 64-bit pHashes")
    query_t_ms: int | None = None


class MediaEntry(BaseModel):
    """One uploaded file of an item and what its analyzer found."""

    position: int
    filename: str | None
    sha256: str
    media_type: str
    kind: Literal["image", "audio", "video"]
    size_bytes: int
    analysis: dict[str, Any] = Field(description=(
        "the analyzer's report: ImageAnalysis (faces, quality, detections, risk), "
        "AudioAnalysis (loudness, tempo, speech/music, transcript) or VideoAnalysis "
        "(segments with keyframe images, audio); vectors are listed in `embeddings`"
    ))
    near_duplicate_of: list[str] = Field(default_factory=list)
    near_duplicates: list[NearDuplicateOut] = Field(default_factory=list)
    keyframes: list[Keyframe] | None = None


class ItemAnalysisOut(ItemAnalysis):
    """The stored analysis as clients read it: language, entities, keywords, labels, risk
    with evidence, media entries; vectors are in ``ItemOut.embeddings``."""

    media: list[MediaEntry] = Field(default_factory=list)  # type: ignore[assignment]


class ItemOut(BaseModel):
    id: str
    creator_id: str
    title: str
    text: str
    tags: list[str]
    state: ItemState
    state_reason: str | None
    created_at: UtcDateTime
    updated_at: UtcDateTime
    analysis: ItemAnalysisOut | None
    embeddings: list[EmbeddingInfo]


class MediaItemIn(TextItemIn):
    """The ``metadata`` part of a multipart upload: a text item whose text may be empty."""

    text: str = ""


class MediaAccepted(BaseModel):
    """The 202 answer: the item is stored, its analysis runs as a job."""

    item: ItemOut
    job: JobOut
    status_url: str


class BatchResult(BaseModel):
    index: int
    status: int
    item: ItemOut | None = None
    error: dict[str, Any] | None = None


class BatchOut(BaseModel):
    results: list[BatchResult]
