from __future__ import annotations

from pathlib import Path

import pytest

from core.contracts import RiskCategory
from core.errors import InvalidConfig
from moderation.risk.blocklist import (
    DEFAULT_BLOCKLIST_DIR,
    Blocklist,
    BlocklistTerm,
    load_blocklists,
)


def _list(*terms: str, severity: float = 0.7) -> Blocklist:
    return Blocklist(
        "test", RiskCategory.VIOLENCE, [BlocklistTerm(t, severity) for t in terms]
    )


def test_spans_are_exact_case_insensitive_and_whitespace_tolerant() -> None:
    text = "He said: I WILL  kill you, then left."
    blocklist = _list("i will kill you", "kill you")
    matches = blocklist.find(text)
    assert [(m.start, m.end, m.text, m.term) for m in matches] == [
        (9, 25, "I WILL  kill you", "i will kill you")
    ]
    assert text[matches[0].start : matches[0].end] == matches[0].text


def test_word_boundaries_and_wildcards() -> None:
    blocklist = _list("ass", "behead*")
    assert blocklist.find("a class in the grass") == []
    found = blocklist.find("They beheaded him; what an ass.")
    assert [(m.start, m.end, m.text) for m in found] == [(5, 13, "beheaded"), (27, 30, "ass")]


def test_yaml_loading_and_per_term_severity(tmp_path: Path) -> None:
    (tmp_path / "v.yaml").write_text(
        "name: v.test\nversion: 3\ncategory: violence\nseverity: 0.6\n"
        "terms:\n  - stab\n  - {term: stab you, severity: 0.9}\n"
    )
    (blocklist,) = load_blocklists(tmp_path)
    assert blocklist.category is RiskCategory.VIOLENCE
    assert blocklist.model.id.startswith("reelsift.blocklist.v.test@3+")
    matches = blocklist.find("I will stab you")
    assert [(m.text, m.severity) for m in matches] == [("stab you", 0.9)]


@pytest.mark.parametrize(
    "body, message",
    [
        ("category: nonsense\nterms: [a]\n", "category"),
        ("category: violence\nseverity: 2\nterms: [a]\n", "severity"),
        ("category: violence\nterms: []\n", "no terms"),
        ("category: violence\nterms: [{severity: 0.5}]\n", "each term"),
    ],
)
def test_invalid_blocklists_are_refused(tmp_path: Path, body: str, message: str) -> None:
    (tmp_path / "bad.yaml").write_text(body)
    with pytest.raises(InvalidConfig, match=message):
        load_blocklists(tmp_path)


def test_shipped_blocklists_cover_the_categories_without_a_text_model() -> None:
    categories = {b.category for b in load_blocklists(DEFAULT_BLOCKLIST_DIR)}
    assert {
        RiskCategory.SEXUAL, RiskCategory.VIOLENCE, RiskCategory.SELF_HARM,
        RiskCategory.LOW_QUALITY,
    } <= categories
