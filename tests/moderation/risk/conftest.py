"""Shared fixtures: the shipped text risk model (committed artifacts, no data needed), and
the two ways it scores: with the word-piece states of the bundled MiniLM, as the service
scores items, and without them, as a caller that has no encoder does."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from analyzers.base import TokenStates, TokenTextEmbedder
from core.contracts import RiskScore

if TYPE_CHECKING:
    from moderation.risk.model import TextRiskModel

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def shipped_model() -> TextRiskModel:
    from moderation.risk.artifacts import DEFAULT_ARTIFACT_DIR
    from moderation.risk.model import TextRiskModel

    return TextRiskModel.load(DEFAULT_ARTIFACT_DIR)


@pytest.fixture(scope="session")
def served_encoder() -> TokenTextEmbedder:
    from analyzers.model_registry import ModelRegistry
    from analyzers.text_embedding import MINILM, OnnxTextEmbedder

    # Shared with the other tests and the test servers: the ONNX export is derived data.
    return OnnxTextEmbedder(ModelRegistry().resolve(MINILM), REPO / "var" / "test-cache",
                            threads=1)


@dataclass
class ScoringPath:
    model: TextRiskModel
    encoder: TokenTextEmbedder | None  # None: scored without word-piece states

    @property
    def model_id(self) -> str:
        return (self.model.model if self.encoder is not None
                else self.model.ngram_only_model).id

    def states(self, texts: Sequence[str]) -> TokenStates | None:
        if self.encoder is None:
            return None
        encoded = self.encoder.encode_with_tokens(list(texts))
        return TokenStates(self.encoder.model.id, encoded.token_vectors, encoded.offsets)

    def score(self, texts: Sequence[str]) -> list[list[RiskScore]]:
        return self.model.score(texts, token_states=self.states(texts))

    def score_items(self, titles: Sequence[str],
                    documents: Sequence[str]) -> list[list[RiskScore]]:
        return self.model.score_items(titles, documents, token_states=self.states(documents))


@pytest.fixture(scope="module", params=["word pieces", "n-gram only"])
def scoring_path(request: pytest.FixtureRequest, shipped_model: TextRiskModel,
                 served_encoder: TokenTextEmbedder) -> ScoringPath:
    return ScoringPath(shipped_model, served_encoder if request.param == "word pieces" else None)
