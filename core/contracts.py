"""The data contracts of DESIGN.md as pydantic models: what crosses package boundaries.

Every package speaks these shapes; storage keeps them as JSON. Changing a field here is
an API change.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


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


class ModelRef(BaseModel):
    """Which model produced an output: stored with every output so indexes never mix."""

    model_config = ConfigDict(frozen=True, protected_namespaces=())

    name: str
    version: str
    source: str = Field(description="where it was resolved from: path, package or hf-cache")

    @property
    def id(self) -> str:
        return f"{self.name}@{self.version}"


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


class Event(BaseModel):
    event_id: str = Field(min_length=1, max_length=128)
    user_id: str = Field(min_length=1, max_length=128)
    item_id: str = Field(min_length=1, max_length=128)
    type: EventType
    ts: datetime
    watch_ms: int | None = Field(default=None, ge=0)
    item_duration_ms: int | None = Field(default=None, ge=0)
    context: dict[str, object] = Field(default_factory=dict)
