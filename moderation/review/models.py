"""What the review service takes and returns: shapes the API serialises as they are."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field

from core.contracts import RiskCategory, UtcDateTime
from moderation.policy import TaskReason

# Permission names the service checks on its callers (serving.auth owns the matrix).
PERMISSION_REVIEW = "review"
PERMISSION_REVIEW_TIER2 = "review_tier2"


class Actor(Protocol):
    """Who calls: ``serving.auth.Principal`` is one (moderation never imports serving)."""

    @property
    def name(self) -> str: ...

    def allows(self, permission: str) -> bool: ...


class Action(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"
    ESCALATE = "escalate"


TaskStatus = Literal["open", "unclaimed", "claimed", "decided"]


class TaskFilter(BaseModel):
    """``open`` = not decided; ``claimed`` = open under a live lease; ``unclaimed`` =
    open and claimable (never claimed, released or lease expired)."""

    status: TaskStatus | None = "open"
    reason: TaskReason | None = None
    # An int range, not Literal[1, 2]: query strings arrive as text and must coerce.
    tier: int | None = Field(default=None, ge=1, le=2)
    category: RiskCategory | None = None
    item_id: str | None = Field(default=None, max_length=128)
    claimed_by: str | None = Field(default=None, max_length=128)
    limit: int = Field(default=50, ge=1, le=500)
    # Bounded so a huge offset is a 422, not an integer overflow in the database.
    offset: int = Field(default=0, ge=0, le=2**31 - 1)


class TaskView(BaseModel):
    id: int
    item_id: str
    reason: TaskReason
    tier: int
    category: RiskCategory | None
    categories: list[RiskCategory]
    scores: dict[str, float | None]
    reasons: list[str]
    severity: float
    reach: int
    report_count: int
    report_weight: float
    priority: float = Field(description="at the moment the view was made")
    status: Literal["open", "decided"]
    claimed_by: str | None = Field(description="holder of a live lease, else None")
    lease_expires_at: UtcDateTime | None
    excluded_moderator: str | None
    parent_task_id: int | None
    note: str | None
    created_by: str
    created_at: UtcDateTime
    decided_at: UtcDateTime | None
    preview: str | None = Field(
        default=None,
        description="one line of the item: title, then the start of its text (task lists "
        "and single-task reads; None in claim and decision answers)",
    )


class DecisionView(BaseModel):
    id: int
    task_id: int
    item_id: str
    moderator: str
    action: Action
    policy_codes: list[str]
    note: str | None
    item_state_before: str
    item_state_after: str
    created_at: UtcDateTime
    escalated_task_id: int | None = None


class ReportOutcome(BaseModel):
    report_id: int | None = Field(description="None when the report repeated an open one")
    item_id: str
    duplicate: bool
    weight: float
    total_weight: float = Field(description="weighted unresolved reports on the item")
    threshold: float
    pulled: bool = Field(description="this report moved the item out of the feeds")
    task_id: int | None


class AuditEntry(BaseModel):
    id: int
    at: UtcDateTime
    actor: str
    action: str
    item_id: str | None
    task_id: int | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None


class DepthRow(BaseModel):
    category: str | None
    tier: int
    unclaimed: int
    claimed: int


class ReviewStats(BaseModel):
    depth: list[DepthRow]
    open_total: int
    age_p50_s: float | None = Field(description="age of open tasks, seconds")
    age_p95_s: float | None
    oldest_open_age_s: float | None = Field(default=None, description="the longest wait")
    decisions_last_hour: int
    decisions_per_hour_24h: float
    my_decisions_today: int | None = Field(
        default=None, description="the asking moderator's decisions since 00:00 UTC"
    )
    at: UtcDateTime


class CategoryCalibration(BaseModel):
    category: RiskCategory
    review_threshold: float
    flagged_decided: int = Field(description="decided tasks this category flagged")
    flagged_confirmed: int = Field(description="... that a moderator rejected for it")
    confirmed_share: float | None
    positives: int = Field(description="reviewed items rejected for this category")
    weighted_positives: float = Field(
        description="positives, QA-sampled ones weighted by their inverse sampling rate"
    )
    recall_at_current: float | None
    threshold_for_target: float | None = Field(
        description="highest review threshold whose estimated recall reaches the target"
    )


class CalibrationReport(BaseModel):
    target_recall: float
    categories: list[CategoryCalibration]
    decisions_used: int
    note: str = (
        "Recall is estimated among reviewed items only: flagged items, plus QA-sampled "
        "approvals weighted by their inverse sampling rate. A larger QA sample narrows it."
    )
