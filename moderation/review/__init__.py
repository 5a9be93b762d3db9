"""The human review queue: tasks, leases, decisions, reports, appeals, audit, calibration.

Entry point: :class:`ReviewService`. Tables live in :mod:`moderation.review.tables`.
"""

from moderation.review.models import (
    PERMISSION_REVIEW,
    PERMISSION_REVIEW_TIER2,
    Action,
    Actor,
    AuditEntry,
    CalibrationReport,
    CategoryCalibration,
    DecisionView,
    DepthRow,
    ReportOutcome,
    ReviewStats,
    TaskFilter,
    TaskView,
)
from moderation.review.service import ReviewService, system_clock

__all__ = [
    "PERMISSION_REVIEW",
    "PERMISSION_REVIEW_TIER2",
    "Action",
    "Actor",
    "AuditEntry",
    "CalibrationReport",
    "CategoryCalibration",
    "DecisionView",
    "DepthRow",
    "ReportOutcome",
    "ReviewService",
    "ReviewStats",
    "TaskFilter",
    "TaskView",
    "system_clock",
]
