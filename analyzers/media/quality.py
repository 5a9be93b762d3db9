"""Image quality: blur, exposure and resolution folded into one ``low_quality`` signal.

Measured on luma at a fixed 512 px max side, so that the thresholds mean the same for a
phone photo and a thumbnail. Each check has a severity ramp in [0, 1]; the image's
severity is the worst check's. This is a documented heuristic, not a calibrated
probability: moderation calibrates it from reviewer decisions.

Checks (threshold where severity starts -> value where it reaches 1):
  blurry          Laplacian variance 100 -> 0
  low_contrast    luma std 24 -> 4 (a flat grey image is 0)
  underexposed    mean luma 50 -> 10, or >= 50 % of pixels at luma <= 5
  overexposed     mean luma 215 -> 250, or >= 50 % of pixels at luma >= 250
  low_resolution  short side 240 -> 64 px (of the original, not the analysis copy)
An image is ``low_quality`` when its severity reaches 0.5.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analyzers.media.decode import resize_max_side
from analyzers.media.schemas import QualityReport
from core.contracts import Evidence, RiskCategory, RiskScore

QUALITY_MODEL_ID = "reelsift.image_quality.heuristic@v1"
ANALYSIS_SIDE = 512


@dataclass(frozen=True)
class QualityThresholds:
    blur_start: float = 100.0
    contrast_start: float = 24.0
    contrast_full: float = 4.0
    dark_mean_start: float = 50.0
    dark_mean_full: float = 10.0
    bright_mean_start: float = 215.0
    bright_mean_full: float = 250.0
    clipped_share: float = 0.5
    short_side_start: int = 240
    short_side_full: int = 64
    low_quality_at: float = 0.5


def _ramp(value: float, start: float, full: float) -> float:
    """0 at ``start``, 1 at ``full`` (either direction), clipped."""
    if start == full:
        return 1.0 if value == full else 0.0
    return float(np.clip((value - start) / (full - start), 0.0, 1.0))


def assess_quality(
    rgb: np.ndarray, width: int, height: int, thresholds: QualityThresholds | None = None
) -> QualityReport:
    """``rgb`` is the analysis copy; ``width``/``height`` are the original's size."""
    import cv2

    limits = thresholds or QualityThresholds()
    luma = cv2.cvtColor(resize_max_side(rgb, ANALYSIS_SIDE), cv2.COLOR_RGB2GRAY)
    blur = float(cv2.Laplacian(luma, cv2.CV_64F).var())
    mean = float(luma.mean())
    std = float(luma.std())
    dark = float(np.count_nonzero(luma <= 5) / luma.size)
    bright = float(np.count_nonzero(luma >= 250) / luma.size)

    severities = {
        "blurry": _ramp(blur, limits.blur_start, 0.0),
        "low_contrast": _ramp(std, limits.contrast_start, limits.contrast_full),
        "underexposed": max(
            _ramp(mean, limits.dark_mean_start, limits.dark_mean_full),
            1.0 if dark >= limits.clipped_share else 0.0,
        ),
        "overexposed": max(
            _ramp(mean, limits.bright_mean_start, limits.bright_mean_full),
            1.0 if bright >= limits.clipped_share else 0.0,
        ),
        "low_resolution": _ramp(
            float(min(width, height)), limits.short_side_start, limits.short_side_full
        ),
    }
    severity = max(severities.values())
    reasons = [name for name, value in severities.items() if value >= limits.low_quality_at]
    return QualityReport(
        width=width,
        height=height,
        blur_variance=round(blur, 3),
        brightness_mean=round(mean, 3),
        contrast_std=round(std, 3),
        dark_clipped_share=round(dark, 4),
        bright_clipped_share=round(bright, 4),
        severity=round(severity, 4),
        low_quality=severity >= limits.low_quality_at,
        reasons=reasons,
    )


def quality_risk(report: QualityReport) -> RiskScore:
    detail = ", ".join(report.reasons) if report.reasons else "no quality problem found"
    return RiskScore(
        category=RiskCategory.LOW_QUALITY,
        score=report.severity,
        model=QUALITY_MODEL_ID,
        evidence=[
            Evidence(
                kind="image_box",
                box=(0.0, 0.0, float(report.width), float(report.height)),
                detail=f"{detail} (blur={report.blur_variance:.1f}, "
                f"luma mean={report.brightness_mean:.1f}, std={report.contrast_std:.1f})",
            )
        ],
    )
