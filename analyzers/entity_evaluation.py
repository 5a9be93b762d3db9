"""Exact-span entity evaluation on CoNLL-2003-style files (``token POS chunk NER`` lines).

Labels are compared on the three types both schemes share. Predictions are mapped
PERSON -> PER, ORG -> ORG, GPE/LOC/FAC -> LOC; every other predicted label (NORP, DATE,
MONEY, HASHTAG, ...) is dropped before scoring. Gold MISC spans are dropped too, so
MISC is neither found nor missed; a prediction of PER/ORG/LOC on a span the gold calls
MISC is still counted as a false positive (the model claimed a type the gold denies).

A sentence is scored as the text its tokens make joined by single spaces; a prediction
is a true positive only when its start, end (characters) and mapped label all equal a
gold entity's. Tags may be IOB1 (CoNLL-2003's own: ``B-`` only between two adjacent
entities of one type) or IOB2.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from spacy.scorer import PRFScore

from core.targets import Target, TargetCheck, rows_bootstrap_check

SCORED_LABELS = ("PER", "ORG", "LOC")
PREDICTED_TO_GOLD = {"PERSON": "PER", "ORG": "ORG", "GPE": "LOC", "LOC": "LOC", "FAC": "LOC"}

# (start char, end char, label) in a sentence's text.
CharSpan = tuple[int, int, str]


@dataclass
class ConllSentence:
    tokens: list[str]
    spans: list[CharSpan]  # gold spans, every label as written (PER, ORG, LOC, MISC)

    @property
    def text(self) -> str:
        return " ".join(self.tokens)


def token_offsets(tokens: Sequence[str]) -> list[int]:
    offsets, position = [], 0
    for token in tokens:
        offsets.append(position)
        position += len(token) + 1
    return offsets


def iob_spans(tokens: Sequence[str], tags: Sequence[str]) -> list[CharSpan]:
    """Character spans of the entities an IOB1 or IOB2 tag sequence marks."""
    offsets = token_offsets(tokens)
    spans: list[CharSpan] = []
    start: int | None = None
    label = ""
    for i, tag in enumerate([*tags, "O"]):
        prefix, _, kind = tag.partition("-")
        continues = prefix == "I" and start is not None and kind == label
        if start is not None and not continues:
            spans.append((offsets[start], offsets[i - 1] + len(tokens[i - 1]), label))
            start = None
        if prefix in ("B", "I") and start is None:
            start, label = i, kind
    return spans


def read_conll(path: Path) -> list[ConllSentence]:
    sentences: list[ConllSentence] = []
    tokens: list[str] = []
    tags: list[str] = []

    def flush() -> None:
        if tokens:
            sentences.append(ConllSentence(list(tokens), iob_spans(tokens, tags)))
        tokens.clear()
        tags.clear()

    with path.open(encoding="utf-8") as lines:
        for line in lines:
            fields = line.split()
            if not fields or fields[0] == "-DOCSTART-":
                flush()
            else:
                tokens.append(fields[0])
                tags.append(fields[-1])
    flush()
    return sentences


def map_predicted(spans: Iterable[CharSpan]) -> set[CharSpan]:
    return {(s, e, PREDICTED_TO_GOLD[lb]) for s, e, lb in spans if lb in PREDICTED_TO_GOLD}


def _prf(tp: int, fp: int, fn: int) -> PRFScore:
    return PRFScore(tp=int(tp), fp=int(fp), fn=int(fn))


@dataclass
class SpanScores:
    """True/false positives and false negatives per sentence and label; the per-label
    totals are their sums, and spaCy's ``PRFScore`` does the arithmetic."""

    # Each sentence's (tp, fp, fn) per label, in SCORED_LABELS order: summed for the
    # figures, resampled by sentence for their intervals (``f1_check``).
    per_sentence: list[tuple[tuple[int, int, int], ...]] = field(default_factory=list)

    def add(self, gold: set[CharSpan], predicted: set[CharSpan]) -> None:
        counts = []
        for label in SCORED_LABELS:
            g = {s for s in gold if s[2] == label}
            p = {s for s in predicted if s[2] == label}
            counts.append((len(g & p), len(p - g), len(g - p)))
        self.per_sentence.append(tuple(counts))

    def _counts(self) -> np.ndarray:
        """(sentences, labels, 3) array of tp, fp, fn."""
        return np.asarray(self.per_sentence, dtype=np.int64).reshape(-1, len(SCORED_LABELS), 3)

    @property
    def per_label(self) -> dict[str, PRFScore]:
        totals = self._counts().sum(axis=0)
        return {label: _prf(*totals[i]) for i, label in enumerate(SCORED_LABELS)}

    def f1_check(self, target: Target, label: str | None = None) -> TargetCheck:
        """F1 of one label (``None``: all three) with its 95% interval over sentences."""
        counts = self._counts()
        chosen = counts[:, [SCORED_LABELS.index(label)], :] if label else counts
        tp, fp, fn = (chosen[:, :, i].sum(axis=1) for i in range(3))

        def f1(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> float:
            return float(_prf(tp.sum(), fp.sum(), fn.sum()).fscore)

        return rows_bootstrap_check(target, f1, tp, fp, fn)

    @property
    def overall(self) -> PRFScore:
        total = PRFScore()
        for score in self.per_label.values():
            total += score
        return total

    def as_dict(self) -> dict[str, dict[str, float]]:
        rows = {**self.per_label, "overall": self.overall}
        return {
            name: {
                "precision": round(s.precision, 4),
                "recall": round(s.recall, 4),
                "f1": round(s.fscore, 4),
                "gold": s.tp + s.fn,
                "predicted": s.tp + s.fp,
            }
            for name, s in rows.items()
        }


Predictor = Callable[[Sequence[str]], list[list[CharSpan]]]


ISSUE = 13
# Issue 13's entity targets for the shipped pipeline: (label or None for all three, goal).
TARGETS: tuple[tuple[str | None, float, str], ...] = (
    (None, 0.60, "F1, PER/ORG/LOC"),
    (None, 0.70, "F1, PER/ORG/LOC (stretch)"),
    ("PER", 0.65, "F1, PER"),
)


def target_checks(scores: SpanScores) -> list[TargetCheck]:
    return [scores.f1_check(Target(f"entities {name}, exact spans", goal, issue=ISSUE), label)
            for label, goal, name in TARGETS]


def evaluate(sentences: Sequence[ConllSentence], predict: Predictor) -> SpanScores:
    scores = SpanScores()
    predictions = predict([s.text for s in sentences])
    for sentence, predicted in zip(sentences, predictions, strict=True):
        gold = {span for span in sentence.spans if span[2] in SCORED_LABELS}
        scores.add(gold, map_predicted(predicted))
    return scores


def spacy_predictor(nlp: Any, batch_size: int = 256) -> Predictor:
    """Entities straight from a spaCy ``Language`` (the bare statistical baseline)."""

    def predict(texts: Sequence[str]) -> list[list[CharSpan]]:
        return [
            [(e.start_char, e.end_char, e.label_) for e in doc.ents]
            for doc in nlp.pipe(texts, batch_size=batch_size)
        ]

    return predict


def entity_pipeline_predictor(pipeline: Any) -> Predictor:
    """Entities as the analyzer reports them (``EntityPipeline.entities``)."""

    def predict(texts: Sequence[str]) -> list[list[CharSpan]]:
        return [
            [(e.start, e.end, e.label) for e in pipeline.entities(doc)]
            for doc in pipeline.parse(texts)
        ]

    return predict
