"""The data contracts of DESIGN.md as pydantic models: what crosses package boundaries.

Every package speaks these shapes; storage keeps them as JSON. Changing a field here is
an API change.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field


class ItemState(StrEnum):
    RECEIVED = "received"
    ANALYZING = "analyzing"
    APPROVED = "approved"
    PENDING_REVIEW = "pending_review"
    REJECTED = "rejected"
    REMOVED = "removed"
    FAILED = "failed"


# Allowed transitions; a state change outside this table is a bug, not a user error.
ITEM_TRANSITIONS: dict[ItemState, frozenset[ItemState]] = {
    ItemState.RECEIVED: frozenset({ItemState.ANALYZING, ItemState.FAILED}),
    # Back to RECEIVED: a passing fault (model service, database) interrupted the
    # analysis; the item stays retryable instead of failing.
    ItemState.ANALYZING: frozenset({
        ItemState.APPROVED, ItemState.PENDING_REVIEW, ItemState.REJECTED, ItemState.FAILED,
        ItemState.RECEIVED,
    }),
    ItemState.APPROVED: frozenset({ItemState.PENDING_REVIEW, ItemState.REMOVED}),
    ItemState.PENDING_REVIEW: frozenset(
        {ItemState.APPROVED, ItemState.REJECTED, ItemState.REMOVED}
    ),
    ItemState.REJECTED: frozenset({ItemState.PENDING_REVIEW, ItemState.APPROVED}),
    ItemState.REMOVED: frozenset(),
    # A failed item is analyzed again when its content is posted again, by
    # `reelsift retry-failed` or by POST /v1/items/{id}/retry.
    ItemState.FAILED: frozenset({ItemState.RECEIVED}),
}


class RiskCategory(StrEnum):
    SEXUAL = "sexual"
    VIOLENCE = "violence"
    HATE = "hate"
    HARASSMENT = "harassment"
    PROFANITY = "profanity"
    SELF_HARM = "self_harm"
    SPAM = "spam"
    CLICKBAIT = "clickbait"
    LOW_QUALITY = "low_quality"


def as_utc(value: datetime) -> datetime:
    """SQLite hands datetimes back naive; everything stored here is UTC."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def json_integer(value: object) -> object:
    """JSON Schema's integer: a whole number, 3.0 included; not true/false, not "3"."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be a whole number")
    if isinstance(value, float) and not value.is_integer():
        raise ValueError("must be a whole number")
    return int(value)


def _json_datetime(value: object) -> object:
    """A date-time as JSON carries it: an RFC 3339 string (not a bare number)."""
    if not isinstance(value, str | datetime):
        raise ValueError("must be an RFC 3339 date-time string")
    return value


# Input types that accept exactly what the OpenAPI document says they accept.
JsonInt = Annotated[int, BeforeValidator(json_integer)]
JsonDateTime = Annotated[datetime, BeforeValidator(_json_datetime)]

# A datetime every output writes with its offset (RFC 3339), whatever the database returned.
UtcDateTime = Annotated[datetime, AfterValidator(as_utc)]


class ModelRef(BaseModel):
    """Which model produced an output: stored with every output so indexes never mix."""

    model_config = ConfigDict(frozen=True, protected_namespaces=())

    name: str
    version: str
    source: str = Field(description="where it was resolved from: path, package or hf-cache")

    @property
    def id(self) -> str:
        return f"{self.name}@{self.version}"


# Local-version suffixes that name a lower-precision run of the same weights.
PRECISION_VARIANTS = ("int8",)


def weights_id(model_id: str) -> str:
    """``name@version`` without a precision suffix: the weights a model runs.

    A quantized variant (``all-MiniLM-L6-v2@0.1.0+int8``) is a model of its own for
    indexes, whose vectors must never mix, but it runs the same weights as its float
    original, so a head trained on either one's vectors applies to both (the evaluations
    measure whichever is configured).
    """
    base, _, variant = model_id.rpartition("+")
    return base if base and variant in PRECISION_VARIANTS else model_id


class Evidence(BaseModel):
    kind: Literal["text_span", "image_box", "time_range"]
    start: int | None = None  # character offsets for text spans
    end: int | None = None
    text: str | None = None
    box: tuple[float, float, float, float] | None = None  # x, y, w, h in pixels
    start_ms: int | None = None
    end_ms: int | None = None
    detail: str | None = None


class RiskScore(BaseModel):
    """A calibrated probability, or ``score=None`` when no model assessed the category."""

    model_config = ConfigDict(protected_namespaces=())

    category: RiskCategory
    score: float | None = Field(default=None, ge=0.0, le=1.0)
    model: str | None = None
    evidence: list[Evidence] = Field(default_factory=list)
    not_assessed_reason: str | None = None


class Label(BaseModel):
    id: str
    name: str
    path: list[str]
    confidence: float = Field(ge=0.0, le=1.0)
    start_ms: int | None = None
    end_ms: int | None = None
    taxonomy_version: str | None = None


class Entity(BaseModel):
    text: str
    label: str
    start: int
    end: int
    source: str


class Keyword(BaseModel):
    text: str
    score: float


class Language(BaseModel):
    code: str
    confidence: float


class NotAssessed(BaseModel):
    """Why an output is missing: always said, never papered over with a default."""

    output: str
    reason: str


class TextAnalysis(BaseModel):
    language: Language | None
    entities: list[Entity]
    keywords: list[Keyword]
    embedding_model: str | None
    embedding_dim: int | None
    not_assessed: list[NotAssessed] = Field(default_factory=list)


class ItemAnalysis(BaseModel):
    """Everything the analyzers said about one item (vectors are stored separately)."""

    text: TextAnalysis | None = None
    labels: list[Label] = Field(default_factory=list)
    risk: list[RiskScore] = Field(default_factory=list)
    media: list[dict[str, object]] = Field(default_factory=list)
    not_assessed: list[NotAssessed] = Field(default_factory=list)
    models: dict[str, str] = Field(default_factory=dict, description="role -> model id")


EventType = Literal[
    "impression",
    "view",
    "complete",
    "replay",
    "like",
    "comment",
    "share",
    "save",
    "follow",
    "unfollow",
    "skip",
    "hide",
    "report",
]


MAX_EVENT_MS = 365 * 24 * 3600 * 1000
# Whole milliseconds (true/false are not), bounded (a year; any database holds it).
EventMs = Annotated[int, Field(ge=0, le=MAX_EVENT_MS), BeforeValidator(json_integer)]


class Event(BaseModel):
    event_id: str = Field(min_length=1, max_length=128)
    user_id: str = Field(min_length=1, max_length=128)
    item_id: str = Field(min_length=1, max_length=128)
    type: EventType
    ts: JsonDateTime
    watch_ms: EventMs | None = None
    item_duration_ms: EventMs | None = None
    context: dict[str, object] = Field(default_factory=dict)
