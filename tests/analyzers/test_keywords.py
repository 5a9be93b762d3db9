"""Keywords pooled from the text's own encoder pass, and the fallback for embedders that
cannot return token embeddings."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from analyzers.base import TokenEncoding, TokenTextEmbedder
from analyzers.entities import EntityPipeline
from analyzers.keywords import (
    Candidate,
    candidate_phrases,
    drop_overlapping,
    mmr_order,
    pooled_phrase_vectors,
)
from analyzers.language import LanguageIdentifier
from analyzers.model_registry import ModelRegistry
from analyzers.text import TextAnalyzer
from analyzers.text_embedding import MINILM, OnnxTextEmbedder
from core.contracts import ModelRef

REPO = Path(__file__).resolve().parents[2]
TEXT = (
    "Solar panels on every school roof\nThe city will install solar panels on school roofs, "
    "cutting electricity bills and teaching pupils about renewable energy. #SolarSchools"
)


@pytest.fixture(scope="module")
def embedder() -> OnnxTextEmbedder:
    return OnnxTextEmbedder(ModelRegistry().resolve(MINILM), REPO / "var" / "test-cache", threads=1)


@pytest.fixture(scope="module")
def rules() -> EntityPipeline:
    return EntityPipeline("rules")


class CountingEmbedder:
    """Counts the texts each method is asked to encode; ``tokens=False`` hides
    ``encode_with_tokens`` as a remote embedder would."""

    def __init__(self, inner: OnnxTextEmbedder, *, tokens: bool) -> None:
        self.inner = inner
        self.model: ModelRef = inner.model
        self.dim = inner.dim
        self.encoded: list[int] = []
        self.encoded_with_tokens: list[int] = []
        if tokens:
            self.encode_with_tokens = self._encode_with_tokens

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.encoded.append(len(texts))
        return self.inner.encode(texts)

    def _encode_with_tokens(self, texts: Sequence[str]) -> TokenEncoding:
        self.encoded_with_tokens.append(len(texts))
        return self.inner.encode_with_tokens(texts)


def test_token_encoding_matches_encode_and_points_into_the_text(embedder):
    texts = ["Arsenal beat Chelsea in London", "a longer text " * 200]
    encoding = embedder.encode_with_tokens(texts)
    np.testing.assert_allclose(encoding.vectors, embedder.encode(texts), atol=1e-5)
    vectors, offsets = encoding.token_vectors[0], encoding.offsets[0]
    assert vectors.shape == (len(offsets), embedder.dim)
    pieces = [texts[0][s:e] for s, e in offsets]
    assert "Arsenal" in "".join(pieces) and all(p.strip() for p in pieces)
    # The long text is cut where the encoder stops reading (256 pieces with [CLS]/[SEP]).
    assert len(encoding.offsets[1]) == 254 and encoding.offsets[1][-1][1] < len(texts[1])


def test_pooled_vectors_average_the_pieces_a_phrase_covers():
    token_vectors = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=np.float32)
    offsets = np.array([[0, 4], [5, 9], [10, 14]])
    candidates = [
        Candidate("first", [(0, 4)]),
        Candidate("both", [(0, 9)]),
        Candidate("twice", [(5, 9), (10, 14)]),
        Candidate("unread", [(20, 25)]),
    ]
    vectors, kept = pooled_phrase_vectors(candidates, token_vectors, offsets)
    assert kept == [0, 1, 2]
    np.testing.assert_allclose(vectors[0], [1.0, 0.0])
    np.testing.assert_allclose(vectors[1], [np.sqrt(0.5), np.sqrt(0.5)], atol=1e-6)
    np.testing.assert_allclose(vectors[2], [1 / np.sqrt(5), 2 / np.sqrt(5)], atol=1e-6)


def test_mmr_order_matches_recomputing_redundancy_at_every_step():
    """The incremental ranking keeps each candidate's highest similarity to the chosen
    ones; recomputing it against every chosen candidate at each step ranks the same."""
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(25, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    doc = vectors[:5].mean(axis=0)
    relevance = vectors @ doc
    expected: list[int] = []
    remaining = list(range(len(vectors)))
    while remaining:
        redundancy = (
            (vectors[remaining] @ vectors[expected].T).max(axis=1) if expected
            else np.zeros(len(remaining))
        )
        best = remaining[int(np.argmax(0.6 * relevance[remaining] - 0.4 * redundancy))]
        expected.append(best)
        remaining.remove(best)
    assert list(mmr_order(doc, vectors, 0.4)) == expected


def test_drop_overlapping_reads_the_ranking_only_as_far_as_it_needs():
    phrases = ["Arsenal beat Chelsea", "beat Chelsea", "London", "derby", "goal"]
    read: list[int] = []

    def ranking():
        for i in range(len(phrases)):
            read.append(i)
            yield i

    assert drop_overlapping(ranking(), phrases, 2) == [0, 2]
    assert read == [0, 1, 2]


def test_candidates_keep_every_occurrence(rules):
    [doc] = rules.parse([TEXT])
    candidates = {c.text.lower(): c for c in candidate_phrases(doc)}
    solar = candidates["solar panels"]
    assert len(solar.spans) == 2
    assert all(TEXT[s:e].lower() == "solar panels" for s, e in solar.spans)
    hashtag = candidates["solarschools"]
    assert [TEXT[s:e] for s, e in hashtag.spans] == ["SolarSchools"]


def test_one_encoder_pass_gives_the_vector_and_the_keywords(embedder, rules):
    counting = CountingEmbedder(embedder, tokens=True)
    assert isinstance(counting, TokenTextEmbedder)
    [result] = TextAnalyzer(counting, rules, LanguageIdentifier()).analyze([TEXT])
    assert counting.encoded_with_tokens == [1] and counting.encoded == []
    keywords = [k.text.lower() for k in result.analysis.keywords]
    assert any("solar" in k for k in keywords), keywords
    assert result.vector is not None
    np.testing.assert_allclose(result.vector, embedder.encode([TEXT])[0], atol=1e-5)


def test_an_embedder_without_token_embeddings_embeds_the_candidates(embedder, rules):
    counting = CountingEmbedder(embedder, tokens=False)
    assert not isinstance(counting, TokenTextEmbedder)
    [result] = TextAnalyzer(counting, rules, LanguageIdentifier()).analyze([TEXT])
    assert counting.encoded[0] == 1 and len(counting.encoded) == 2 and counting.encoded[1] > 5
    assert any("solar" in k.text.lower() for k in result.analysis.keywords)


def test_phrases_past_what_the_encoder_reads_are_not_keywords(embedder, rules):
    text = "The harbour ferry timetable changed. " * 60 + "Zanzibar spice auction."
    [result] = TextAnalyzer(embedder, rules, LanguageIdentifier()).analyze([text])
    keywords = " ".join(k.text.lower() for k in result.analysis.keywords)
    assert keywords and "zanzibar" not in keywords and "auction" not in keywords
