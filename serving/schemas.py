"""Request and response bodies of the HTTP API."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from core.contracts import Event
from ingest.models import NOT_BLANK_PATTERN


class BatchIn(BaseModel):
    """Items are checked one by one so one bad item does not sink the batch."""

    items: list[dict[str, Any]] = Field(min_length=1)


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
    # Something that is not whitespace (checked by the review service, declared here).
    note: str = Field(min_length=1, max_length=2000,
                      json_schema_extra={"pattern": NOT_BLANK_PATTERN})


class EventsIn(BaseModel):
    """All or nothing: one invalid event refuses the request, naming it (events.N.field)."""

    events: list[Event] = Field(min_length=1, max_length=10_000)
