"""Keywords ranked by similarity to the text's own embedding, diversified with MMR.

Candidates are 1–3 token phrases without stop words at their edges, plus hashtags
(without ``#``); each is embedded with the same model as the text, so a keyword is
chosen for what the whole text is about, not for how often it occurs. Maximal
Marginal Relevance then trades relevance against redundancy (``diversity`` in [0, 1]).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from analyzers.base import TextEmbedder
from core.contracts import Keyword


def candidate_phrases(doc: Any, max_candidates: int = 30, max_words: int = 3) -> list[str]:
    counts: dict[str, int] = {}
    first: dict[str, int] = {}
    display: dict[str, str] = {}

    def add(phrase: str, position: int) -> None:
        key = phrase.lower()
        counts[key] = counts.get(key, 0) + 1
        if key not in first:
            first[key] = position
            display[key] = phrase

    tokens = list(doc)
    for i, tok in enumerate(tokens):
        if tok.text.startswith("#") and len(tok.text) > 2:
            add(tok.text[1:], i)
        for n in range(1, max_words + 1):
            span = tokens[i : i + n]
            if len(span) < n:
                break
            if not all(t.is_alpha and len(t.text) > 1 for t in span):
                break
            if any(t.is_stop for t in span):
                break
            add(" ".join(t.text for t in span), i)
    # Frequent and early phrases first; the cap bounds the embedding cost per text.
    ranked = sorted(counts, key=lambda k: (-counts[k], first[k]))[:max_candidates]
    return [display[k] for k in ranked]


def mmr(
    doc_vector: np.ndarray, candidate_vectors: np.ndarray, top_n: int, diversity: float
) -> list[int]:
    relevance = candidate_vectors @ doc_vector
    chosen: list[int] = []
    remaining = list(range(len(candidate_vectors)))
    while remaining and len(chosen) < top_n:
        if chosen:
            redundancy = (candidate_vectors[remaining] @ candidate_vectors[chosen].T).max(axis=1)
        else:
            redundancy = np.zeros(len(remaining))
        scores = (1 - diversity) * relevance[remaining] - diversity * redundancy
        best = remaining[int(np.argmax(scores))]
        chosen.append(best)
        remaining.remove(best)
    return chosen


def drop_overlapping(ranked: list[int], phrases: list[str], top_n: int) -> list[int]:
    """Keep the best-ranked phrases that share no word with one already kept:
    "Arsenal beat Chelsea" makes "beat Chelsea" and "Arsenal beat" redundant."""
    kept: list[int] = []
    used: set[str] = set()
    for i in ranked:
        words = set(phrases[i].lower().split())
        if words & used:
            continue
        kept.append(i)
        used |= words
        if len(kept) == top_n:
            break
    return kept


class KeywordExtractor:
    def __init__(self, embedder: TextEmbedder, top_n: int = 5, diversity: float = 0.4) -> None:
        self.embedder = embedder
        self.top_n = top_n
        self.diversity = diversity

    def extract(self, docs: Sequence[Any], doc_vectors: np.ndarray) -> list[list[Keyword]]:
        per_doc = [candidate_phrases(doc) for doc in docs]
        flat = [phrase for phrases in per_doc for phrase in phrases]
        # One embedding call for every candidate of the batch.
        vectors = self.embedder.encode(flat) if flat else np.zeros((0, self.embedder.dim))
        results: list[list[Keyword]] = []
        offset = 0
        for phrases, doc_vector in zip(per_doc, doc_vectors, strict=True):
            cand = vectors[offset : offset + len(phrases)]
            offset += len(phrases)
            ranked = mmr(doc_vector, cand, len(phrases), self.diversity) if phrases else []
            picked = drop_overlapping(ranked, phrases, self.top_n)
            results.append(
                [
                    Keyword(text=phrases[i], score=round(float(cand[i] @ doc_vector), 4))
                    for i in picked
                ]
            )
        return results
