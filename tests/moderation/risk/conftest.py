"""Shared fixture: the shipped text risk model (committed artifacts, no data needed)."""

from __future__ import annotations

import pytest

from moderation.risk.artifacts import DEFAULT_ARTIFACT_DIR


@pytest.fixture(scope="session")
def shipped_model():
    from moderation.risk.model import TextRiskModel

    return TextRiskModel.load(DEFAULT_ARTIFACT_DIR)
