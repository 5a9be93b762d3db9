from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from core.contracts import RiskCategory, RiskScore
from core.errors import InvalidInput, ModelLoadFailed, ModelNotAvailable, PayloadTooLarge
from core.registry import resolve, risk_models
from moderation.risk.artifacts import BUNDLE_FILE, DEFAULT_ARTIFACT_DIR, MANIFEST_FILE
from moderation.risk.model import TextRiskModel

ABUSIVE = "you are a stupid fucking bitch, shut up"
BENIGN = "What a lovely afternoon at the park with my kids."
SPAM = "WINNER!! You have won a £1000 cash prize. Call 09061701461 now to claim. T&C apply"
HAM = "Hey, are we still meeting for lunch tomorrow at noon?"
CLICKBAIT = "You Won't Believe What This Celebrity Did Next"
NEWS = "Senate passes budget bill after lengthy debate"
TEXTS = [ABUSIVE, BENIGN, SPAM, HAM, CLICKBAIT, NEWS]


def _by_category(scores: list[RiskScore]) -> dict[RiskCategory, RiskScore]:
    return {s.category: s for s in scores}


@pytest.fixture(scope="module")
def full_scores(shipped_model: TextRiskModel) -> list[dict[RiskCategory, RiskScore]]:
    return [_by_category(row) for row in shipped_model.score(TEXTS)]


def test_one_score_per_category_in_contract_order(
    shipped_model: TextRiskModel, full_scores: list[dict[RiskCategory, RiskScore]]
) -> None:
    assert all(list(row) == list(RiskCategory) for row in full_scores)
    assert full_scores[0][RiskCategory.HATE].model == shipped_model.model.id
    assert shipped_model.model.id.startswith("reelsift.text_risk.v1@")


def test_scores_go_the_expected_way(full_scores: list[dict[RiskCategory, RiskScore]]) -> None:
    abusive, benign, spam, ham, clickbait, news = full_scores
    for category in (RiskCategory.PROFANITY, RiskCategory.HARASSMENT):
        assert abusive[category].score is not None and abusive[category].score > 0.9
        assert benign[category].score is not None and benign[category].score < 0.2
    assert spam[RiskCategory.SPAM].score > 0.9 > 0.1 > ham[RiskCategory.SPAM].score
    assert clickbait[RiskCategory.CLICKBAIT].score > 0.9 > 0.1 > news[RiskCategory.CLICKBAIT].score


def test_flagged_texts_carry_exact_spans(full_scores: list[dict[RiskCategory, RiskScore]]) -> None:
    for text, row, category in [
        (ABUSIVE, full_scores[0], RiskCategory.PROFANITY),
        (SPAM, full_scores[2], RiskCategory.SPAM),
        (CLICKBAIT, full_scores[4], RiskCategory.CLICKBAIT),
    ]:
        evidence = row[category].evidence
        assert evidence, category
        for span in evidence:
            assert span.kind == "text_span"
            assert span.start is not None and span.end is not None
            assert text[span.start : span.end] == span.text
    profane_words = {e.text.lower() for e in full_scores[0][RiskCategory.PROFANITY].evidence}
    assert {"fucking", "bitch"} <= profane_words
    assert not full_scores[1][RiskCategory.PROFANITY].evidence  # benign: nothing to show


def test_blocklist_only_categories_are_not_assessed_without_a_match(
    full_scores: list[dict[RiskCategory, RiskScore]],
) -> None:
    for category in (RiskCategory.SEXUAL, RiskCategory.VIOLENCE, RiskCategory.SELF_HARM):
        score = full_scores[1][category]
        assert score.score is None
        assert "no text model" in (score.not_assessed_reason or "")
        assert "found no term" in (score.not_assessed_reason or "")


def test_blocklist_match_scores_with_severity_and_span(shipped_model: TextRiskModel) -> None:
    text = "Sometimes I want to kill myself."
    row = _by_category(shipped_model.score([text])[0])
    self_harm = row[RiskCategory.SELF_HARM]
    assert self_harm.score == pytest.approx(0.9)
    assert self_harm.model is not None
    assert self_harm.model.startswith("reelsift.blocklist.self_harm")
    assert [(e.start, e.end, e.text) for e in self_harm.evidence] == [(20, 31, "kill myself")]


def test_empty_text_and_non_headlines_are_not_assessed(shipped_model: TextRiskModel) -> None:
    empty, body = shipped_model.score(["   ", NEWS], headlines=[True, False])
    assert all(s.score is None and s.not_assessed_reason == "text is empty" for s in empty)
    clickbait = _by_category(body)[RiskCategory.CLICKBAIT]
    assert clickbait.score is None and "headlines" in (clickbait.not_assessed_reason or "")
    assert _by_category(body)[RiskCategory.SPAM].score is not None


def test_lexical_stack_without_embeddings(
    lexical_model: TextRiskModel, minilm_embedder, shipped_model: TextRiskModel
) -> None:
    lexical = [_by_category(r) for r in lexical_model.score([ABUSIVE, BENIGN])]
    assert lexical[0][RiskCategory.PROFANITY].model.startswith("reelsift.text_risk.lexical.v1@")
    assert lexical[0][RiskCategory.PROFANITY].score > lexical[1][RiskCategory.PROFANITY].score
    # Embeddings handed in give the same scores as the model's own embedder.
    vectors = minilm_embedder.encode([ABUSIVE, BENIGN])
    given = lexical_model.score([ABUSIVE, BENIGN], vectors)
    own = shipped_model.score([ABUSIVE, BENIGN])
    assert [s.score for s in given[0]] == pytest.approx([s.score for s in own[0]], abs=1e-6)


def test_bad_input_raises_coded_errors(lexical_model: TextRiskModel) -> None:
    with pytest.raises(InvalidInput, match="shape"):
        lexical_model.score([BENIGN], np.zeros((1, 12), dtype=np.float32))
    with pytest.raises(InvalidInput, match="expected str"):
        lexical_model.score([BENIGN, 3])  # type: ignore[list-item]
    with pytest.raises(InvalidInput, match="sequence of strings"):
        lexical_model.score(BENIGN)
    with pytest.raises(PayloadTooLarge):
        lexical_model.score(["a" * (lexical_model.max_text_chars + 1)])
    assert lexical_model.score([]) == []


def test_registered_under_its_versioned_name() -> None:
    factory = resolve(risk_models, "reelsift.text_risk.v1")
    model = factory(blocklist_dir=None)
    assert isinstance(model, TextRiskModel)
    assert model.blocklists == {}


def test_tampered_artifact_is_refused(tmp_path: Path) -> None:
    copy = tmp_path / "artifacts"
    shutil.copytree(DEFAULT_ARTIFACT_DIR, copy)
    data = bytearray((copy / BUNDLE_FILE).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / BUNDLE_FILE).write_bytes(bytes(data))
    with pytest.raises(ModelLoadFailed, match="sha256"):
        TextRiskModel.load(copy)
    (copy / MANIFEST_FILE).unlink()
    with pytest.raises(ModelNotAvailable, match="reelsift train risk"):
        TextRiskModel.load(copy)


def test_items_get_clickbait_from_their_title_and_the_rest_from_the_document(
    shipped_model: TextRiskModel,
) -> None:
    bait = "You Won't Believe What This Celebrity Did Next"
    titled, untitled = shipped_model.score_items(
        [bait, ""], [f"{bait}\nA famous actor bought groceries on Tuesday.", "Just groceries."]
    )
    assert _by_category(titled)[RiskCategory.CLICKBAIT].score > 0.9
    assert _by_category(untitled)[RiskCategory.CLICKBAIT].score is None
    assert _by_category(untitled)[RiskCategory.SPAM].score is not None
