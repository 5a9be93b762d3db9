"""Request and response bodies of the HTTP API."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from core.contracts import Event, ItemAnalysis, ItemState, UtcDateTime

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]*$"


class TextItemIn(BaseModel):
    """A text item as upload pipelines send it (DESIGN.md's bulk item format, text only)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    id: str = Field(min_length=1, max_length=128, pattern=ID_PATTERN)
    creator_id: str = Field(min_length=1, max_length=128)
    title: str = ""
    # Something to analyze: at least one character that is not whitespace (checked by
    # the intake with a message naming the field; declared here for clients).
    text: str = Field(json_schema_extra={"pattern": r"\S"})
    tags: list[str] = Field(default_factory=list)
    created_at: datetime | None = Field(default=None, strict=False)


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


class BatchIn(BaseModel):
    """Items are checked one by one so one bad item does not sink the batch."""

    items: list[dict[str, Any]] = Field(min_length=1)


class BatchResult(BaseModel):
    index: int
    status: int
    item: ItemOut | None = None
    error: dict[str, Any] | None = None


class BatchOut(BaseModel):
    results: list[BatchResult]


class DecisionIn(BaseModel):
    # A rejection cites at least one policy code, an approval none (said in the schema,
    # checked by the review service).
    model_config = ConfigDict(extra="forbid", json_schema_extra={"allOf": [
        {"if": {"properties": {"action": {"const": "reject"}}, "required": ["action"]},
         "then": {"properties": {"policy_codes": {"minItems": 1}},
                  "required": ["policy_codes"]}},
        {"if": {"properties": {"action": {"const": "approve"}}, "required": ["action"]},
         "then": {"properties": {"policy_codes": {"maxItems": 0}}}},
    ]})

    action: Literal["approve", "reject", "escalate"]
    policy_codes: list[str] = Field(default_factory=list, max_length=20)
    note: str | None = Field(default=None, max_length=2000)


class ReportIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    item_id: str = Field(min_length=1, max_length=128)
    reporter_id: str = Field(min_length=1, max_length=128)
    reason: str = Field(default="", max_length=500)


class AppealIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    item_id: str = Field(min_length=1, max_length=128)
    note: str = Field(min_length=1, max_length=2000)


class EventsIn(BaseModel):
    """All or nothing: one invalid event refuses the request, naming it (events.N.field)."""

    events: list[Event] = Field(min_length=1, max_length=10_000)
