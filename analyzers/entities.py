"""Entities with spaCy: an installed pipeline when configured, else blank English.

Either way an ``EntityRuler`` built from the project's patterns and gazetteers
(``analyzers/data/gazetteers.json``) runs first, so hashtags, mentions, URLs, e-mails,
money, dates, countries, major cities and well-known organisations are found even with
no statistical model. Labels follow spaCy's scheme plus HASHTAG, MENTION, URL, EMAIL.
``source`` says which component found an entity: ``ruler:<pattern set>`` or
``spacy:<pipeline>@<version>``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core.contracts import Entity
from core.errors import ModelNotAvailable
from core.registry import entity_extractors

GAZETTEERS = Path(__file__).parent / "data" / "gazetteers.json"

# Tokens spaCy's English tokenizer would split but that are one entity each.
_KEEP_WHOLE = re.compile(
    r"^(?:[#@][^\W_][\w]*|\d{4}-\d{2}-\d{2}|\d{1,2}/\d{1,2}/\d{2,4})$", re.UNICODE
)
MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
    "Jan",
    "Feb",
    "Mar",
    "Apr",
    "Jun",
    "Jul",
    "Aug",
    "Sep",
    "Sept",
    "Oct",
    "Nov",
    "Dec",
]
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
CURRENCY_SYMBOLS = ["$", "€", "£", "¥", "₹", "US$"]
CURRENCY_WORDS = [
    "dollar",
    "dollars",
    "euro",
    "euros",
    "pound",
    "pounds",
    "yen",
    "rupees",
    "usd",
    "eur",
    "gbp",
    "jpy",
    "bitcoin",
    "btc",
]
SCALES = ["k", "m", "bn", "million", "billion", "trillion", "thousand"]


def rule_patterns() -> list[dict[str, Any]]:
    """Token patterns for the rule-found labels; each carries the id reported as source."""
    num: dict[str, Any] = {"LIKE_NUM": True}
    scale: dict[str, Any] = {"LOWER": {"IN": SCALES}, "OP": "?"}
    year: dict[str, Any] = {"SHAPE": "dddd", "OP": "?"}
    comma: dict[str, Any] = {"ORTH": ",", "OP": "?"}
    patterns: list[dict[str, Any]] = [
        {"label": "HASHTAG", "id": "social", "pattern": [{"TEXT": {"REGEX": r"^#\w+$"}}]},
        {"label": "MENTION", "id": "social", "pattern": [{"TEXT": {"REGEX": r"^@\w+$"}}]},
        {"label": "URL", "id": "web", "pattern": [{"LIKE_URL": True}]},
        {"label": "EMAIL", "id": "web", "pattern": [{"LIKE_EMAIL": True}]},
        {
            "label": "MONEY",
            "id": "money",
            "pattern": [{"ORTH": {"IN": CURRENCY_SYMBOLS}}, num, scale],
        },
        {
            "label": "MONEY",
            "id": "money",
            "pattern": [num, scale, {"LOWER": {"IN": CURRENCY_WORDS}}],
        },
        {
            "label": "DATE",
            "id": "date",
            "pattern": [{"ORTH": {"IN": MONTHS}}, {"LIKE_NUM": True, "OP": "?"}, comma, year],
        },
        # "May" alone is usually the verb; only a day number makes it a date.
        {"label": "DATE", "id": "date", "pattern": [{"ORTH": "May"}, num, comma, year]},
        {"label": "DATE", "id": "date", "pattern": [num, {"ORTH": {"IN": [*MONTHS, "May"]}}, year]},
        {
            "label": "DATE",
            "id": "date",
            "pattern": [{"TEXT": {"REGEX": r"^(\d{4}-\d{2}-\d{2}|\d{1,2}/\d{1,2}/\d{2,4})$"}}],
        },
        {"label": "DATE", "id": "date", "pattern": [{"ORTH": {"IN": WEEKDAYS}}]},
        {
            "label": "DATE",
            "id": "date",
            "pattern": [{"LOWER": {"IN": ["today", "yesterday", "tomorrow"]}}],
        },
    ]
    gazetteers = json.loads(GAZETTEERS.read_text(encoding="utf-8"))
    for label in ("GPE", "ORG"):
        patterns.extend(
            {"label": label, "id": "gazetteer", "pattern": name} for name in gazetteers[label]
        )
    return patterns


class EntityPipeline:
    """One spaCy ``Language`` shared by entity and keyword extraction."""

    def __init__(self, pipeline: str | Path | None = None) -> None:
        import spacy

        if pipeline:
            try:
                self.nlp = spacy.load(pipeline)
            except OSError as exc:
                raise ModelNotAvailable(
                    f"spaCy pipeline {str(pipeline)!r} is not installed or not a pipeline "
                    "directory; install it (`pip install en_core_web_sm`) or point "
                    "REELSIFT_SPACY_PIPELINE at a saved pipeline, or leave it empty for the "
                    "built-in rules",
                    pipeline=str(pipeline),
                ) from exc
            meta = self.nlp.meta
            self.statistical_source = (
                f"spacy:{meta.get('name', 'pipeline')}@{meta.get('version', '0')}"
            )
        else:
            self.nlp = spacy.blank("en")
            self.statistical_source = ""
        tokenizer: Any = self.nlp.tokenizer
        previous = tokenizer.token_match

        def token_match(text: str) -> Any:
            return _KEEP_WHOLE.match(text) or (previous(text) if previous else None)

        tokenizer.token_match = token_match
        ruler_config = {"phrase_matcher_attr": "ORTH", "overwrite_ents": True}
        if "ner" in self.nlp.pipe_names:
            # Rules first; the statistical NER then fills in around what they found.
            ruler = self.nlp.add_pipe("entity_ruler", before="ner", config=ruler_config)
        else:
            ruler = self.nlp.add_pipe("entity_ruler", config=ruler_config)
        ruler.add_patterns(rule_patterns())  # type: ignore[attr-defined]

    @property
    def source_name(self) -> str:
        return self.statistical_source or "ruler"

    def parse(self, texts: Sequence[str]) -> list[Any]:
        return list(self.nlp.pipe(texts, batch_size=64))

    def entities(self, doc: Any) -> list[Entity]:
        found = []
        for ent in doc.ents:
            source = f"ruler:{ent.ent_id_}" if ent.ent_id_ else self.statistical_source
            found.append(
                Entity(
                    text=ent.text,
                    label=ent.label_,
                    start=ent.start_char,
                    end=ent.end_char,
                    source=source or "ruler",
                )
            )
        return found


@entity_extractors.register("reelsift.entities.spacy_ruler.v1")
def make_entity_pipeline(pipeline: str | Path | None = None) -> EntityPipeline:
    return EntityPipeline(pipeline)
