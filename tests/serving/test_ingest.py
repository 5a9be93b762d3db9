"""IngestService on both databases: states, idempotency, not-assessed outputs, recovery."""

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
from moderation.policy import Policy
from moderation.review.service import ReviewService
from serving.ingest import IngestService, TextLimits
from serving.schemas import TextItemIn
from serving.wiring import policy_gate


@pytest.fixture(scope="module")
def bare_analyzer() -> TextAnalyzer:
    # No embedding model: the pipeline must still store a truthful analysis.
    return TextAnalyzer(None, EntityPipeline(), LanguageIdentifier(),
                        embedder_unavailable_reason="model deliberately absent")


@pytest.fixture
def ingest(db_engine, bare_analyzer) -> IngestService:
    sessions = make_session_factory(db_engine)
    store = ItemStore(sessions)
    review = ReviewService(sessions, store, Policy.load())
    return IngestService(store, bare_analyzer, TextLimits(max_text_chars=100), policy_gate(review))


def item(item_id: str = "i1", text: str = "Apple opened a store in Tokyo", **kw) -> TextItemIn:
    return TextItemIn(id=item_id, creator_id="c1", text=text, **kw)


def test_unassessed_item_waits_for_review_with_reasons(ingest):
    [(out, created)] = ingest.submit_text_items([item()])
    assert created and out.state == ItemState.PENDING_REVIEW.value
    risk = [RiskScore.model_validate(r) for r in out.analysis["risk"]]
    assert risk and all(r.score is None and r.not_assessed_reason for r in risk)
    assert {n["output"] for n in out.analysis["not_assessed"]} >= {"labels"}
    assert {e["text"] for e in out.analysis["text"]["entities"]} == {"Apple", "Tokyo"}
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
