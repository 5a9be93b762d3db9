"""TextIngestService on both databases: states, idempotency, not-assessed outputs, recovery."""

from __future__ import annotations

import pytest

from analyzers.entities import EntityPipeline
from analyzers.language import LanguageIdentifier
from analyzers.text import TextAnalyzer
from core.contracts import ItemState, RiskScore
from core.errors import Conflict, InvalidInput, PayloadTooLarge
from core.storage.db import make_session_factory, transaction
from core.storage.items import ItemStore
from core.storage.tables import AnalysisRow, ItemRow
from ingest.intake import TextLimits
from ingest.models import TextItemIn
from ingest.recovery import failed_item_ids
from ingest.text import TextIngestService
from moderation.policy import Policy
from moderation.review.service import ReviewService
from serving.wiring import policy_gate
from tests.conftest import analysis_json


@pytest.fixture(scope="module")
def bare_analyzer() -> TextAnalyzer:
    # No embedding model: the pipeline must still store a truthful analysis.
    return TextAnalyzer(None, EntityPipeline(), LanguageIdentifier(),
                        embedder_unavailable_reason="model deliberately absent")


@pytest.fixture
def ingest(db_engine, bare_analyzer) -> TextIngestService:
    sessions = make_session_factory(db_engine)
    store = ItemStore(sessions)
    review = ReviewService(sessions, store, Policy.load())
    return TextIngestService(
        store, bare_analyzer, TextLimits(max_text_chars=100), policy_gate(review)
    )


def item(item_id: str = "i1", text: str = "Apple opened a store in Tokyo", **kw) -> TextItemIn:
    return TextItemIn(id=item_id, creator_id="c1", text=text, **kw)


def test_unassessed_item_waits_for_review_with_reasons(ingest):
    [(out, created)] = ingest.submit_text_items([item()])
    assert created and out.state == ItemState.PENDING_REVIEW.value
    risk = [RiskScore.model_validate(r) for r in analysis_json(out)["risk"]]
    assert risk and all(r.score is None and r.not_assessed_reason for r in risk)
    assert {n["output"] for n in analysis_json(out)["not_assessed"]} >= {"labels"}
    assert {e["text"] for e in analysis_json(out)["text"]["entities"]} == {"Apple", "Tokyo"}
    assert out.embeddings == []


def test_same_id_same_content_is_idempotent_other_content_conflicts(ingest):
    ingest.submit_text_items([item()])
    [(again, created)] = ingest.submit_text_items([item()])
    assert not created and again.id == "i1"
    with pytest.raises(Conflict):
        ingest.submit_text_items([item(text="different words")])
    with transaction(ingest.store.sessions) as session:
        assert session.query(ItemRow).count() == 1
        assert session.query(AnalysisRow).count() == 1


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        (item(text=" \n\t "), InvalidInput),
        (item(text="x" * 101), PayloadTooLarge),
        (item(text="a\x00b"), InvalidInput),
        (item(text="lone \ud800 surrogate"), InvalidInput),
    ],
)
def test_bad_text_is_refused_before_anything_is_written(ingest, bad, error):
    with pytest.raises(error):
        ingest.submit_text_items([bad])
    with transaction(ingest.store.sessions) as session:
        assert session.query(ItemRow).count() == 0


def test_interrupted_items_are_finished_at_the_next_start(ingest):
    with transaction(ingest.store.sessions) as session:
        session.add(ItemRow(id="stuck", creator_id="c", title="", text="left mid-analysis",
                            tags=[], state=ItemState.ANALYZING.value, content_sha256="0" * 64))
    assert ingest.resume_unfinished() == 1
    assert ingest.get_item("stuck").state == ItemState.PENDING_REVIEW.value
    assert ingest.resume_unfinished() == 0


class FlakyEmbedder:
    """A text embedder whose service is down, or whose model chokes on one text, on demand."""

    def __init__(self) -> None:
        import numpy as np

        from core.contracts import ModelRef

        self.np = np
        self.model = ModelRef(name="flaky", version="1", source="test")
        self.dim = 8
        self.down = False
        self.poison: str | None = None

    def encode(self, texts):
        from core.errors import ServiceUnavailable

        if self.down:
            raise ServiceUnavailable("text-embedding service away", service="text-embedding")
        if self.poison is not None and any(self.poison in t for t in texts):
            raise ValueError("tokenizer crashed")
        return self.np.ones((len(texts), self.dim), dtype=self.np.float32)


@pytest.fixture
def flaky() -> FlakyEmbedder:
    return FlakyEmbedder()


@pytest.fixture
def flaky_ingest(db_engine, flaky) -> TextIngestService:
    sessions = make_session_factory(db_engine)
    store = ItemStore(sessions)
    review = ReviewService(sessions, store, Policy.load())
    analyzer = TextAnalyzer(flaky, EntityPipeline(), LanguageIdentifier())
    return TextIngestService(
        store, analyzer, TextLimits(max_text_chars=100), policy_gate(review)
    )


def test_a_passing_fault_leaves_the_item_retryable_and_a_retry_finishes_it(flaky_ingest, flaky):
    from core.errors import ServiceUnavailable

    flaky.down = True
    with pytest.raises(ServiceUnavailable):
        flaky_ingest.submit_text_items([item("p1"), item("p2", text="Second story")])
    for item_id in ("p1", "p2"):
        assert flaky_ingest.get_item(item_id).state == ItemState.RECEIVED.value

    flaky.down = False
    results = flaky_ingest.submit_text_items([item("p1"), item("p2", text="Second story")])
    assert [created for _, created in results] == [False, False]  # stored once, not twice
    for out, _ in results:
        assert out.state not in {ItemState.RECEIVED.value, ItemState.FAILED.value}
        assert out.analysis is not None and out.embeddings
    with transaction(flaky_ingest.store.sessions) as session:
        assert session.query(ItemRow).count() == 2
        assert session.query(AnalysisRow).count() == 2


def test_content_the_analyzers_fail_on_is_failed_and_analyzed_again_on_retry(
    flaky_ingest, flaky
):
    from core.errors import ContentNotAnalyzable

    flaky.poison = "poison"
    with pytest.raises(ContentNotAnalyzable) as caught:
        flaky_ingest.submit_text_items([item("ok", text="fine text"), item("bad", text="poison")])
    assert "one at a time" in caught.value.message  # a batch fails as a whole...
    assert flaky_ingest.get_item("ok").state == ItemState.RECEIVED.value
    [(ok, _)] = flaky_ingest.submit_text_items([item("ok", text="fine text")])
    assert ok.state != ItemState.FAILED.value  # ...then only the bad item fails alone
    with pytest.raises(ContentNotAnalyzable):
        flaky_ingest.submit_text_items([item("bad", text="poison")])
    failed = flaky_ingest.get_item("bad")
    assert failed.state == ItemState.FAILED.value and "tokenizer crashed" in failed.state_reason
    assert failed_item_ids(flaky_ingest.store) == ["bad"]

    flaky.poison = None  # the analyzer is fixed: the same content posted again is analyzed
    [(again, created)] = flaky_ingest.submit_text_items([item("bad", text="poison")])
    assert not created and again.state != ItemState.FAILED.value and again.embeddings
    assert failed_item_ids(flaky_ingest.store) == []


def test_only_one_of_concurrent_retries_analyzes_an_item(flaky_ingest):
    with transaction(flaky_ingest.store.sessions) as session:
        session.add(ItemRow(id="r", creator_id="c", title="", text="waiting", tags=[],
                            state=ItemState.RECEIVED.value, content_sha256="0" * 64))
    assert flaky_ingest.claim_for_analysis(["r"]) == ["r"]
    assert flaky_ingest.claim_for_analysis(["r"]) == []  # analyzing: taken already
