"""Text risk scoring: calibrated per-category probabilities with evidence spans.

``TextRiskModel`` (registered as ``"reelsift.text_risk.v1"`` in
``core.registry.risk_models``) scores hate, harassment, profanity, spam and clickbait
with classifiers the project trains (``reelsift train risk``), and sexual, violence,
self_harm and low_quality with configurable blocklists. See ``heads.py`` for the label
mapping and ``DATA_SOURCES.md`` for the data.

Attributes are imported lazily so ``import moderation.risk`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from moderation.risk.blocklist import Blocklist, load_blocklists
    from moderation.risk.model import TextRiskModel, make_text_risk_model
    from moderation.risk.training import TrainConfig, train_text_risk

__all__ = [
    "Blocklist",
    "TextRiskModel",
    "TrainConfig",
    "load_blocklists",
    "make_text_risk_model",
    "train_text_risk",
]

_LOCATIONS = {
    "Blocklist": "moderation.risk.blocklist",
    "load_blocklists": "moderation.risk.blocklist",
    "TextRiskModel": "moderation.risk.model",
    "make_text_risk_model": "moderation.risk.model",
    "TrainConfig": "moderation.risk.training",
    "train_text_risk": "moderation.risk.training",
}


def __getattr__(name: str) -> Any:
    if name in _LOCATIONS:
        import importlib

        return getattr(importlib.import_module(_LOCATIONS[name]), name)
    raise AttributeError(f"module 'moderation.risk' has no attribute {name!r}")
