from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from core.artifacts import CONFIG_FILE
from core.contracts import RiskCategory, RiskScore
from core.errors import (
    InvalidConfig,
    InvalidInput,
    ModelLoadFailed,
    ModelNotAvailable,
    PayloadTooLarge,
)
from core.registry import resolve, risk_models
from moderation.policy import Policy, Route
from moderation.risk.artifacts import (
    BUNDLE_FILE,
    DEFAULT_ARTIFACT_DIR,
    load_bundle,
)
from moderation.risk.heads import CATEGORY_HEADS
from moderation.risk.model import NON_EVIDENCE_WORDS, TextRiskModel
from tests.moderation.risk.conftest import ScoringPath

ABUSIVE = "you are a stupid fucking bitch, shut up"
BENIGN = "What a lovely afternoon at the park with my kids."
SPAM = "WINNER!! You have won a £1000 cash prize. Call 09061701461 now to claim. T&C apply"
HAM = "Hey, are we still meeting for lunch tomorrow at noon?"
CLICKBAIT = "You Won't Believe What This Celebrity Did Next"
NEWS = "Senate passes budget bill after lengthy debate"
TEXTS = [ABUSIVE, BENIGN, SPAM, HAM, CLICKBAIT, NEWS]

# Crafted so that one category applies and the others do not.
SWEARING_AT_NO_ONE = "Fucking hell, the damn printer jammed again. What a shitty morning."
INSULT_AT_A_PERSON = "@jess you are a pathetic worthless idiot and nobody will ever like you"
HATE_AT_A_GROUP = "Muslims are terrorists and should all be thrown out of this country"

# Ordinary posts (written for these tests) that the default policy must approve.
ORDINARY_ITEMS = [
    (
        "Tuning tone A440",
        "A steady 440 Hz sine tone for tuning guitars, violins and other instruments. Play "
        "it through headphones and adjust each string until the beat between the tone and "
        "the note disappears.",
    ),
    (
        "Rovers edge past City with late derby winner",
        "A stoppage-time header from captain Liam Carter gave Rovers a 2-1 win over City at "
        "Ashton Park on Saturday. City had led through a first-half penalty before Daniel "
        "Osei levelled with a low shot on 67 minutes. The win lifts Rovers to fourth in the "
        "table, two points behind the play-off places.",
    ),
    (
        "Indie games festival returns to Leeds this weekend",
        "More than 80 independent studios will show new titles at the Leeds Games Festival "
        "on Saturday and Sunday. Visitors can play early builds, attend talks by developers "
        "and join a free game jam. Tickets are on sale online and entry is free for children "
        "under 12.",
    ),
    (
        "Simple crusty white bread",
        "Mix 500 g strong white flour with 7 g dried yeast and 10 g salt. Add 320 ml warm "
        "water and knead for ten minutes until smooth. Leave to rise for an hour, shape into "
        "a loaf, prove for 45 minutes and bake at 220C for 30 to 35 minutes until it sounds "
        "hollow when tapped.",
    ),
]


def _by_category(scores: list[RiskScore]) -> dict[RiskCategory, RiskScore]:
    return {s.category: s for s in scores}


def _score(row: dict[RiskCategory, RiskScore], category: RiskCategory) -> float:
    value = row[category].score
    assert value is not None, category
    return value


@pytest.fixture(scope="module")
def scores(scoring_path: ScoringPath) -> list[dict[RiskCategory, RiskScore]]:
    return [_by_category(row) for row in scoring_path.score(TEXTS)]


def test_one_score_per_category_in_contract_order(
    scoring_path: ScoringPath, scores: list[dict[RiskCategory, RiskScore]]
) -> None:
    assert all(list(row) == list(RiskCategory) for row in scores)
    # Each path names the model that scored it: stored outputs say which.
    assert scores[0][RiskCategory.HATE].model == scoring_path.model_id
    assert scoring_path.model.model.id.startswith("reelsift.text_risk.v1@3.")
    assert scoring_path.model.ngram_only_model.id.startswith(
        "reelsift.text_risk.v1-ngram-only@3.")


def test_scores_go_the_expected_way(scores: list[dict[RiskCategory, RiskScore]]) -> None:
    abusive, benign, spam, ham, clickbait, news = scores
    assert _score(abusive, RiskCategory.PROFANITY) > 0.9
    assert _score(abusive, RiskCategory.HARASSMENT) > 0.5
    for category in (RiskCategory.PROFANITY, RiskCategory.HARASSMENT, RiskCategory.HATE):
        assert _score(benign, category) < 0.1
    assert _score(spam, RiskCategory.SPAM) > 0.9 > 0.1 > _score(ham, RiskCategory.SPAM)
    assert _score(clickbait, RiskCategory.CLICKBAIT) > 0.9 > 0.1 > _score(
        news, RiskCategory.CLICKBAIT
    )


def test_profanity_harassment_and_hate_are_distinct_heads(scoring_path: ScoringPath) -> None:
    swearing, insult, hate = (
        _by_category(row)
        for row in scoring_path.score([SWEARING_AT_NO_ONE, INSULT_AT_A_PERSON, HATE_AT_A_GROUP])
    )
    # Swearing aimed at no one: profane, not harassment, not hate.
    assert _score(swearing, RiskCategory.PROFANITY) > 0.9
    assert _score(swearing, RiskCategory.HARASSMENT) < 0.5
    assert _score(swearing, RiskCategory.PROFANITY) - _score(
        swearing, RiskCategory.HARASSMENT
    ) > 0.5
    assert _score(swearing, RiskCategory.HATE) < 0.1
    # An insult at a person: harassment (offensive language too, by OLID's definition),
    # and not hate.
    assert _score(insult, RiskCategory.HARASSMENT) > 0.9
    assert _score(insult, RiskCategory.HATE) < 0.2
    # A group attacked for who they are: hate, not harassment of a person.
    assert _score(hate, RiskCategory.HATE) > 0.3
    assert _score(hate, RiskCategory.HARASSMENT) < 0.1
    assert _score(hate, RiskCategory.HATE) > 3 * _score(swearing, RiskCategory.HATE)


def test_evidence_starts_at_or_below_every_review_threshold_of_a_scored_category(
    shipped_model: TextRiskModel,
) -> None:
    # An item the default policy sends to review for a model's score has spans to show.
    policy = Policy.load()
    lowest = min(policy.category(category).review for category in CATEGORY_HEADS)
    assert shipped_model.evidence_threshold <= lowest


def test_word_piece_evidence_points_at_the_words_that_drove_the_head(
    scoring_path: ScoringPath,
) -> None:
    texts = [HATE_AT_A_GROUP, SPAM]
    hate, spam = (_by_category(row) for row in scoring_path.score(texts))
    for text, score in ((texts[0], hate[RiskCategory.HATE]), (texts[1], spam[RiskCategory.SPAM])):
        pieces = [e for e in score.evidence if "word-piece weight" in (e.detail or "")]
        if scoring_path.encoder is None:
            assert not pieces  # the n-gram path has no pieces to point at
            continue
        assert score.score is not None and score.score >= scoring_path.model.evidence_threshold
        assert pieces, score.evidence
        spans = [(e.start, e.end) for e in score.evidence]
        assert len(spans) == len(set(spans))  # no word twice
        for span in pieces:
            assert span.start is not None and span.end is not None
            assert text[span.start:span.end] == span.text
            assert (span.text or "").lower() not in NON_EVIDENCE_WORDS
            assert (span.detail or "").startswith(
                f"{score.category.value} ({scoring_path.model_id}): word-piece weight ")


@pytest.mark.parametrize(("title", "text"), ORDINARY_ITEMS, ids=lambda v: v[:24])
def test_ordinary_posts_are_approved_by_the_default_policy(
    scoring_path: ScoringPath, title: str, text: str
) -> None:
    (item_scores,) = scoring_path.score_items([title], [f"{title}\n{text}"])
    decision = Policy.load().route(item_scores)
    assert decision.route is Route.APPROVE, (decision.reasons, decision.scores)


def test_evidence_spans_are_exact_named_and_never_stop_words(
    scoring_path: ScoringPath, scores: list[dict[RiskCategory, RiskScore]]
) -> None:
    for text, row, category in [
        (ABUSIVE, scores[0], RiskCategory.PROFANITY),
        (ABUSIVE, scores[0], RiskCategory.HARASSMENT),
        (SPAM, scores[2], RiskCategory.SPAM),
        (CLICKBAIT, scores[4], RiskCategory.CLICKBAIT),
    ]:
        evidence = row[category].evidence
        assert evidence, category
        for span in evidence:
            assert span.kind == "text_span"
            assert span.start is not None and span.end is not None
            assert text[span.start : span.end] == span.text
            assert span.text is not None and span.text.lower() not in NON_EVIDENCE_WORDS
            assert span.detail is not None
            assert span.detail.startswith(f"{category.value} ({scoring_path.model_id})")
    profane_words = {(e.text or "").lower() for e in scores[0][RiskCategory.PROFANITY].evidence}
    assert {"fucking", "bitch"} <= profane_words
    assert not scores[1][RiskCategory.PROFANITY].evidence  # benign: nothing to show


def test_blocklist_only_categories_are_not_assessed_without_a_match(
    scores: list[dict[RiskCategory, RiskScore]],
) -> None:
    for category in (RiskCategory.SEXUAL, RiskCategory.VIOLENCE, RiskCategory.SELF_HARM):
        score = scores[1][category]
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


def test_embeddings_are_accepted_but_do_not_change_scores(
    shipped_model: TextRiskModel,
) -> None:
    vectors = np.random.default_rng(0).normal(size=(2, 384)).astype(np.float32)
    given = shipped_model.score([ABUSIVE, BENIGN], vectors)
    plain = shipped_model.score([ABUSIVE, BENIGN])
    assert [s.score for s in given[0]] == [s.score for s in plain[0]]
    with pytest.raises(InvalidInput, match="one row per text"):
        shipped_model.score([BENIGN], np.zeros((2, 384), dtype=np.float32))


def test_harassment_is_capped_by_profanity(scoring_path: ScoringPath) -> None:
    # An insult aimed at a person is offensive language by both sources' labels, so the
    # shipped model never scores a text likelier harassment than profanity.
    texts = [
        *TEXTS, SWEARING_AT_NO_ONE, INSULT_AT_A_PERSON, HATE_AT_A_GROUP,
        *(f"{title}\n{text}" for title, text in ORDINARY_ITEMS),
        "@mike are you coming to the game tonight? you said you would",
    ]
    shipped_model, states = scoring_path.model, scoring_path.states(texts)
    capped, _ = shipped_model.head_probabilities(texts, token_states=states)
    assert np.all(capped["harassment"] <= capped["profanity"])
    # Asked for alone, harassment is capped the same way.
    alone, _ = shipped_model.head_probabilities(texts, heads=["harassment"], token_states=states)
    np.testing.assert_array_equal(alone["harassment"], capped["harassment"])
    # The same heads without the cap: the cap is the minimum, and it bites on these texts.
    bundle = load_bundle(DEFAULT_ARTIFACT_DIR, shipped_model.manifest)
    uncapped = TextRiskModel(shipped_model.manifest, {**bundle, "capped_by": {}})
    raw, _ = uncapped.head_probabilities(texts, token_states=states)
    np.testing.assert_array_equal(
        capped["harassment"], np.minimum(raw["harassment"], raw["profanity"])
    )
    assert np.any(raw["harassment"] > raw["profanity"])
    with pytest.raises(InvalidConfig, match="caps unknown heads"):
        TextRiskModel(shipped_model.manifest, {**bundle, "capped_by": {"harassment": "nope"}})


def test_bad_input_raises_coded_errors(shipped_model: TextRiskModel) -> None:
    with pytest.raises(InvalidInput, match="expected str"):
        shipped_model.score([BENIGN, 3])  # type: ignore[list-item]
    with pytest.raises(InvalidInput, match="sequence of strings"):
        shipped_model.score(BENIGN)
    with pytest.raises(PayloadTooLarge):
        shipped_model.score(["a" * (shipped_model.max_text_chars + 1)])
    assert shipped_model.score([]) == []


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
    (copy / CONFIG_FILE).unlink()
    with pytest.raises(ModelNotAvailable, match="reelsift train risk"):
        TextRiskModel.load(copy)


def test_items_get_clickbait_from_their_title_and_the_rest_from_the_document(
    shipped_model: TextRiskModel,
) -> None:
    titled, untitled = shipped_model.score_items(
        [CLICKBAIT, ""],
        [f"{CLICKBAIT}\nA famous actor bought groceries on Tuesday.", "Just groceries."],
    )
    assert _score(_by_category(titled), RiskCategory.CLICKBAIT) > 0.9
    assert _by_category(untitled)[RiskCategory.CLICKBAIT].score is None
    assert _by_category(untitled)[RiskCategory.SPAM].score is not None
