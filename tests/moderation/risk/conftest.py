"""Shared fixtures: the real MiniLM (through sentence-transformers) and the shipped model."""

from __future__ import annotations

import pytest

from moderation.risk.artifacts import DEFAULT_ARTIFACT_DIR


@pytest.fixture(scope="session")
def minilm_embedder():
    import torch

    from analyzers.model_registry import ModelRegistry
    from analyzers.text_embedding import MINILM, SentenceTransformerEmbedder

    torch.set_num_threads(2)
    return SentenceTransformerEmbedder(ModelRegistry().resolve(MINILM))


@pytest.fixture(scope="session")
def shipped_model(minilm_embedder):
    from moderation.risk.model import TextRiskModel

    return TextRiskModel.load(DEFAULT_ARTIFACT_DIR, embedder=minilm_embedder)


@pytest.fixture(scope="session")
def lexical_model():
    from moderation.risk.model import TextRiskModel

    return TextRiskModel.load(DEFAULT_ARTIFACT_DIR)
