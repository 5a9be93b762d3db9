"""The moderation policy: which risk scores approve, queue or reject an item.

Thresholds, the treatment of unassessed categories, the QA sample, the policy codes a
rejection cites and the review queue's settings live in one YAML file (``policy.yaml``
next to this module holds the defaults). It is validated when loaded, so a typo stops
the service at start with an error naming the field instead of misrouting items later.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from core.contracts import RiskCategory, RiskScore
from core.errors import InvalidConfig, InvalidInput

DEFAULT_POLICY_PATH = Path(__file__).with_name("policy.yaml")


class Route(StrEnum):
    APPROVE = "approve"
    REVIEW = "review"
    REJECT = "reject"


class NotAssessedHandling(StrEnum):
    IGNORE = "ignore"
    REVIEW = "review"


class TaskReason(StrEnum):
    """Why a task is in the review queue (also the keys of ``reason_bonus``)."""

    AUTO_RISK = "auto_risk"
    USER_REPORT = "user_report"
    APPEAL = "appeal"
    QA_SAMPLE = "qa_sample"


class _Strict(BaseModel):
    # extra="forbid": a misspelt key is an error, never a silently ignored setting.
    model_config = ConfigDict(extra="forbid", frozen=True)


class CategoryPolicy(_Strict):
    review: float = Field(ge=0.0, le=1.0)
    reject: float | None = Field(default=None, ge=0.0, le=1.0)
    severity: float = Field(ge=0.0, le=1.0)
    when_not_assessed: NotAssessedHandling = NotAssessedHandling.IGNORE

    @model_validator(mode="after")
    def _reject_not_below_review(self) -> CategoryPolicy:
        if self.reject is not None and self.reject < self.review:
            raise ValueError(
                f"reject threshold {self.reject} is below the review threshold {self.review}"
            )
        return self


class QASample(_Strict):
    rate: float = Field(default=0.02, ge=0.0, le=1.0)
    seed: str = "reelsift-qa"


class PolicyCode(_Strict):
    category: RiskCategory | None = None
    description: str = Field(min_length=1)


class PriorityWeights(_Strict):
    severity_weight: float = Field(default=100.0, ge=0.0)
    reach_weight: float = Field(default=10.0, ge=0.0)
    report_weight: float = Field(default=15.0, ge=0.0)
    age_weight: float = Field(default=2.0, ge=0.0)
    reason_bonus: dict[TaskReason, float] = Field(
        default_factory=lambda: {
            TaskReason.AUTO_RISK: 0.0,
            TaskReason.USER_REPORT: 10.0,
            TaskReason.APPEAL: 20.0,
            TaskReason.QA_SAMPLE: -50.0,
        }
    )


class ReportSettings(_Strict):
    threshold: float = Field(default=3.0, gt=0.0)
    default_weight: float = Field(default=1.0, ge=0.0)
    reporter_weights: dict[str, float] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _weights_not_negative(self) -> ReportSettings:
        for reporter, weight in self.reporter_weights.items():
            if weight < 0:
                raise ValueError(f"reporter {reporter!r} has a negative weight {weight}")
        return self


class ReviewSettings(_Strict):
    lease_seconds: int = Field(default=600, ge=1)
    priority: PriorityWeights = Field(default_factory=PriorityWeights)
    reports: ReportSettings = Field(default_factory=ReportSettings)
    report_severity: float = Field(default=0.5, ge=0.0, le=1.0)
    appeal_severity: float = Field(default=0.5, ge=0.0, le=1.0)


class PolicyConfig(_Strict):
    version: str = Field(min_length=1)
    categories: dict[RiskCategory, CategoryPolicy]
    qa_sample: QASample = Field(default_factory=QASample)
    codes: dict[str, PolicyCode] = Field(min_length=1)
    review: ReviewSettings = Field(default_factory=ReviewSettings)
    # An item no model assessed at all (every score null: models missing, nothing
    # decodable) is unknown, not clean; per-category "ignore" must not approve it.
    when_nothing_assessed: NotAssessedHandling = NotAssessedHandling.REVIEW

    @field_validator("categories")
    @classmethod
    def _every_category_has_a_policy(
        cls, value: dict[RiskCategory, CategoryPolicy]
    ) -> dict[RiskCategory, CategoryPolicy]:
        # A category with no thresholds would pass every item unseen: make it explicit.
        missing = [c.value for c in RiskCategory if c not in value]
        if missing:
            raise ValueError(f"no thresholds for categories {missing}")
        return value


class PolicyDecision(BaseModel):
    """Where one item goes, and why."""

    route: Route
    categories: list[RiskCategory] = Field(
        description="the categories that drove the route (empty for a clean approve)"
    )
    reasons: list[str]
    severity: float = Field(
        ge=0.0, le=1.0,
        description="max of category severity x score over the driving categories "
        "(over every assessed category for an approve)",
    )
    scores: dict[RiskCategory, float | None] = Field(
        description="the highest score per category the policy saw; None = not assessed"
    )
    qa_sample: bool = Field(
        default=False, description="an approved item picked for a quality-audit review"
    )
    policy_version: str


def _field_path(loc: Iterable[Any]) -> str:
    return ".".join(str(part) for part in loc) or "<root>"


class Policy:
    """A validated policy. Build with :meth:`load` (a YAML file) or :meth:`from_dict`."""

    def __init__(self, config: PolicyConfig, source: str = "<memory>") -> None:
        self.config = config
        self.source = source

    @classmethod
    def load(cls, path: str | Path | None = None) -> Policy:
        """Read and validate a policy file; ``None`` loads the packaged defaults."""
        file = Path(path) if path is not None else DEFAULT_POLICY_PATH
        try:
            raw = yaml.safe_load(file.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise InvalidConfig(
                f"policy file {file} does not exist; pass an existing YAML file or omit "
                "it for the defaults", path=str(file),
            ) from exc
        except yaml.YAMLError as exc:
            raise InvalidConfig(
                f"policy file {file} is not valid YAML: {exc}", path=str(file)
            ) from exc
        return cls.from_dict(raw, source=str(file))

    @classmethod
    def from_dict(cls, raw: Any, source: str = "<memory>") -> Policy:
        if not isinstance(raw, Mapping):
            raise InvalidConfig(
                f"policy {source} must be a mapping at the top level, got "
                f"{type(raw).__name__}", path=source,
            )
        try:
            config = PolicyConfig.model_validate(dict(raw))
        except ValidationError as exc:
            first = exc.errors()[0]
            field = _field_path(first["loc"])
            raise InvalidConfig(
                f"policy {source}: field {field}: {first['msg']}",
                path=source, field=field,
                errors=[
                    {"field": _field_path(e["loc"]), "message": e["msg"]} for e in exc.errors()
                ],
            ) from exc
        return cls(config, source=source)

    @property
    def version(self) -> str:
        return self.config.version

    @property
    def review(self) -> ReviewSettings:
        return self.config.review

    def category(self, category: RiskCategory) -> CategoryPolicy:
        return self.config.categories[category]

    def check_codes(self, codes: Iterable[str]) -> list[str]:
        """The codes, deduplicated in order; unknown codes raise ``InvalidInput``."""
        unique = list(dict.fromkeys(codes))
        unknown = [c for c in unique if c not in self.config.codes]
        if unknown:
            raise InvalidInput(
                f"unknown policy codes {unknown}; known codes: {sorted(self.config.codes)}",
                field="policy_codes", unknown=unknown,
            )
        return unique

    def code_category(self, code: str) -> RiskCategory | None:
        entry = self.config.codes.get(code)
        return entry.category if entry is not None else None

    def is_qa_sample(self, item_id: str) -> bool:
        """Deterministic per item: the same seed and id always give the same answer."""
        rate = self.config.qa_sample.rate
        if rate <= 0.0:
            return False
        digest = hashlib.sha256(f"{self.config.qa_sample.seed}:{item_id}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64 < rate

    def route(self, scores: Iterable[RiskScore], item_id: str | None = None) -> PolicyDecision:
        """Route one item from its risk scores.

        Several scores for one category (one per modality) reduce to the highest: the
        worst evidence decides. A category with no score at all counts as not assessed.
        ``item_id`` enables the QA sample of approved items.
        """
        best: dict[RiskCategory, float | None] = {c: None for c in RiskCategory}
        why_not: dict[RiskCategory, str] = {}
        for score in scores:
            if score.score is None:
                if score.not_assessed_reason:
                    why_not.setdefault(score.category, score.not_assessed_reason)
                continue
            current = best[score.category]
            if current is None or score.score > current:
                best[score.category] = score.score

        rejects: list[RiskCategory] = []
        reviews: list[RiskCategory] = []
        reject_reasons: list[str] = []
        review_reasons: list[str] = []
        severities: dict[RiskCategory, float] = {}
        for category in RiskCategory:
            rule = self.config.categories[category]
            value = best[category]
            if value is None:
                if rule.when_not_assessed is NotAssessedHandling.REVIEW:
                    reviews.append(category)
                    why = why_not.get(category, "no score given")
                    review_reasons.append(f"{category.value} not assessed ({why})")
                    # Unknown risk ranks as if it had just reached the review threshold.
                    severities[category] = rule.severity * rule.review
                continue
            if rule.reject is not None and value >= rule.reject:
                rejects.append(category)
                reject_reasons.append(
                    f"{category.value} {value:.3f} >= reject threshold {rule.reject:.3f}"
                )
            elif value >= rule.review:
                reviews.append(category)
                review_reasons.append(
                    f"{category.value} {value:.3f} >= review threshold {rule.review:.3f}"
                )
            severities[category] = rule.severity * value

        if (
            all(v is None for v in best.values())
            and self.config.when_nothing_assessed is NotAssessedHandling.REVIEW
            and not reviews
        ):
            reviews = [c for c in RiskCategory]
            reasons_seen = sorted(set(why_not.values())) or ["no scores given"]
            review_reasons.append("no risk category was assessed: " + "; ".join(reasons_seen))
            severities = {c: self.config.categories[c].severity * self.config.categories[c].review
                          for c in RiskCategory}
        if rejects:
            route, driving, reasons = Route.REJECT, rejects, reject_reasons
        elif reviews:
            route, driving, reasons = Route.REVIEW, reviews, review_reasons
        else:
            route, driving = Route.APPROVE, []
            reasons = ["every assessed category is below its review threshold"]
        # An approve has no driving category; its residual risk still ranks QA samples.
        ranked = driving or list(severities)
        severity = max((severities[c] for c in ranked), default=0.0)
        sampled = route is Route.APPROVE and item_id is not None and self.is_qa_sample(item_id)
        if sampled:
            reasons.append(f"picked for the QA sample (rate {self.config.qa_sample.rate})")
        return PolicyDecision(
            route=route, categories=driving, reasons=reasons, severity=min(severity, 1.0),
            scores=best, qa_sample=sampled, policy_version=self.config.version,
        )
