"""The text analyzer on the real bundled model: entities, keywords, embeddings, language."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from analyzers.entities import EntityPipeline
from analyzers.language import LanguageIdentifier
from analyzers.model_registry import ModelRegistry
from analyzers.text import TextAnalyzer, document_text
from analyzers.text_embedding import MINILM, OnnxTextEmbedder

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def embedder() -> OnnxTextEmbedder:
    # Shared with the other tests and the test servers: the ONNX export is derived data.
    return OnnxTextEmbedder(ModelRegistry().resolve(MINILM), REPO / "var" / "test-cache", threads=1)


@pytest.fixture(scope="module")
def analyzer(embedder) -> TextAnalyzer:
    return TextAnalyzer(embedder, EntityPipeline(), LanguageIdentifier())


def spans(text: str, entities) -> dict[str, str]:
    found = {}
    for e in entities:
        assert text[e.start : e.end] == e.text, "offsets must point at the entity text"
        found[e.text] = e.label
    return found


def test_entities_found_with_exact_offsets(analyzer):
    text = (
        "Watching the #WorldCup final in Paris with @sam_k! Tickets were $250 on March 3, 2025. "
        "Details at https://example.org/final or mail tickets@example.org. "
        "FIFA and Google sponsor it."
    )
    [result] = analyzer.analyze([text])
    found = spans(text, result.analysis.entities)
    assert found["#WorldCup"] == "HASHTAG"
    assert found["@sam_k"] == "MENTION"
    assert found["Paris"] == "GPE"
    assert found["$250"] == "MONEY"
    assert found["March 3, 2025"] == "DATE"
    assert found["https://example.org/final"] == "URL"
    assert found["tickets@example.org"] == "EMAIL"
    assert found["FIFA"] == "ORG" and found["Google"] == "ORG"
    assert all(e.source.startswith("ruler:") for e in result.analysis.entities)


def test_may_as_a_verb_is_not_a_date(analyzer):
    [result] = analyzer.analyze(["You may go now, but on May 5 we meet in Berlin."])
    dates = [e.text for e in result.analysis.entities if e.label == "DATE"]
    assert dates == ["May 5"]


def test_embeddings_are_normalised_and_deterministic(embedder):
    texts = ["a cat sat on the mat", "stock markets rallied today", "a cat sat on the mat"]
    first = embedder.encode(texts)
    second = embedder.encode(list(reversed(texts)))[::-1]
    assert first.shape == (3, 384) and first.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(first, second, atol=1e-5)  # order and batching do not matter
    np.testing.assert_allclose(first[0], first[2], atol=1e-6)


def test_paraphrases_are_closer_than_unrelated_texts(embedder):
    a, b, c = embedder.encode(
        [
            "The football team won the championship last night.",
            "Last night the soccer club claimed the title.",
            "Add two cups of flour and bake for forty minutes.",
        ]
    )
    assert float(a @ b) > float(a @ c) + 0.2


def test_onnx_agrees_with_sentence_transformers(embedder):
    from sentence_transformers import SentenceTransformer

    texts = ["short", "a somewhat longer sentence about trains and weather in spring " * 3]
    reference = SentenceTransformer(str(ModelRegistry().resolve(MINILM).path), device="cpu")
    expected = reference.encode(texts, normalize_embeddings=True)
    cosine = np.sum(expected * embedder.encode(texts), axis=1)
    assert cosine.min() >= 0.999


def test_keywords_reflect_the_topic(analyzer):
    text = document_text(
        "Solar panels on every school roof",
        "The city will install solar panels on school roofs, cutting electricity bills and "
        "teaching pupils about renewable energy.",
    )
    [result] = analyzer.analyze([text])
    keywords = [k.text.lower() for k in result.analysis.keywords]
    assert keywords and any("solar" in k or "energy" in k for k in keywords)
    assert len(set(keywords)) == len(keywords)
    words = [set(k.split()) for k in keywords]
    assert all(not (a & b) for i, a in enumerate(words) for b in words[i + 1 :]), keywords


def test_language_identified_or_not_assessed(analyzer):
    german, tiny = analyzer.analyze(["Heute ist ein schöner Tag und wir gehen in den Park.", "ok"])
    assert german.analysis.language is not None and german.analysis.language.code == "de"
    assert tiny.analysis.language is None
    assert any(n.output == "language" for n in tiny.analysis.not_assessed)


def test_missing_embedder_reports_not_assessed_instead_of_inventing(analyzer):
    bare = TextAnalyzer(
        None, analyzer.entities, analyzer.language, embedder_unavailable_reason="model 'x' missing"
    )
    [result] = bare.analyze(["Apple opens a store in Tokyo"])
    assert result.vector is None and result.analysis.keywords == []
    assert {n.output for n in result.analysis.not_assessed} == {"embedding", "keywords"}
    assert {e.text for e in result.analysis.entities} == {"Apple", "Tokyo"}


def test_short_english_posts_are_english():
    identifier = LanguageIdentifier()
    for post in ["Messi scores twice as Inter Miami beat Orlando in Florida #MLS",
                 "Derby day\nArsenal beat Chelsea in London #PremierLeague"]:
        language = identifier.identify(post)
        assert language is not None and language.code == "en" and language.confidence > 0.4


def test_overlapping_spacy_with_the_encoder_changes_no_output(embedder):
    documents = [
        document_text("ECB holds rates", "Christine Lagarde said the bank would wait."),
        document_text("Derby day", "Arsenal beat Tottenham 2-1 at the Emirates on Sunday."),
        "short",
    ]
    overlapped = TextAnalyzer(embedder, EntityPipeline(), LanguageIdentifier())
    serial = TextAnalyzer(
        embedder, EntityPipeline(), LanguageIdentifier(), overlap_encoder=False
    )
    assert overlapped._encoder_thread is not None and serial._encoder_thread is None
    for mine, theirs in zip(
        overlapped.analyze(documents), serial.analyze(documents), strict=True
    ):
        assert mine.analysis == theirs.analysis
        assert mine.vector is not None and theirs.vector is not None
        np.testing.assert_array_equal(mine.vector, theirs.vector)
