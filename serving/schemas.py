"""Request and response bodies of the HTTP API."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]*$"


class TextItemIn(BaseModel):
    """A text item as upload pipelines send it (DESIGN.md's bulk item format, text only)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    id: str = Field(min_length=1, max_length=128, pattern=ID_PATTERN)
    creator_id: str = Field(min_length=1, max_length=128)
    title: str = ""
    text: str
    tags: list[str] = Field(default_factory=list)
    created_at: datetime | None = Field(default=None, strict=False)


class EmbeddingInfo(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    kind: str
    model_id: str
    dim: int
    vector: list[float] | None = None


class ItemOut(BaseModel):
    id: str
    creator_id: str
    title: str
    text: str
    tags: list[str]
    state: str
    state_reason: str | None
    created_at: datetime
    updated_at: datetime
    analysis: dict[str, Any] | None
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
    model_config = ConfigDict(extra="forbid")

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
    """Events are validated one by one by the recommender, which names the bad one."""

    events: list[dict[str, Any]] = Field(min_length=1, max_length=10_000)
