"""Keywords ranked by similarity to the text's own embedding, diversified with MMR.

Candidates are 1–3 token phrases without stop words at their edges, plus hashtags
(without ``#``). A candidate's vector is pooled from the text's own encoder pass: the
mean of the encoder's last hidden states over the word pieces of every occurrence of the
phrase, in the same space as the text vector (itself their mean over the whole text).
So a keyword is chosen for what the whole text is about, in context, and costs no
encoder pass of its own; phrases past what the encoder reads (about 256 word pieces)
are not candidates. An embedder that cannot return token embeddings (a remote one)
falls back to embedding each candidate phrase separately. Maximal Marginal Relevance
then trades relevance against redundancy (``diversity`` in [0, 1]).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import numpy as np

from analyzers.base import TextEmbedder, TokenEncoding, l2_normalise
from core.contracts import Keyword


@dataclass
class Candidate:
    text: str  # as first written
    spans: list[tuple[int, int]] = field(default_factory=list)  # characters, every occurrence


def candidate_phrases(doc: Any, max_candidates: int = 30, max_words: int = 3) -> list[Candidate]:
    found: dict[str, Candidate] = {}
    first: dict[str, int] = {}

    def add(phrase: str, position: int, start: int, end: int) -> None:
        key = phrase.lower()
        if key not in found:
            found[key] = Candidate(phrase)
            first[key] = position
        found[key].spans.append((start, end))

    tokens = list(doc)
    for i, tok in enumerate(tokens):
        text = tok.text
        if text.startswith("#") and len(text) > 2:
            add(text[1:], i, tok.idx + 1, tok.idx + len(text))
        for n in range(1, max_words + 1):
            span = tokens[i : i + n]
            if len(span) < n:
                break
            last = span[-1]
            if not (last.is_alpha and len(last.text) > 1) or last.is_stop:
                break
            add(" ".join(t.text for t in span), i, tok.idx, last.idx + len(last.text))
    # Frequent and early phrases first; the cap bounds the work per text.
    ranked = sorted(found, key=lambda k: (-len(found[k].spans), first[k]))[:max_candidates]
    return [found[k] for k in ranked]


def pooled_phrase_vectors(
    candidates: Sequence[Candidate], token_vectors: np.ndarray, offsets: np.ndarray
) -> tuple[np.ndarray, list[int]]:
    """L2-normalised mean of the word-piece vectors each candidate covers, and the
    indices of the candidates that cover any (the rest lie past the encoder's input)."""
    if len(offsets) == 0:
        return np.zeros((0, token_vectors.shape[1]), np.float32), []
    starts, ends = offsets[:, 0], offsets[:, 1]
    rows: list[np.ndarray] = []
    kept: list[int] = []
    for index, candidate in enumerate(candidates):
        covered = np.zeros(len(offsets), dtype=bool)
        for start, end in candidate.spans:
            covered |= (starts < end) & (ends > start)
        if covered.any():
            rows.append(token_vectors[covered].mean(axis=0))
            kept.append(index)
    if not rows:
        return np.zeros((0, token_vectors.shape[1]), np.float32), []
    return l2_normalise(np.stack(rows)), kept


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

    def extract(
        self, docs: Sequence[Any], doc_vectors: np.ndarray, tokens: TokenEncoding | None = None
    ) -> list[list[Keyword]]:
        """``tokens``: the texts' own encoding with token embeddings; without it every
        candidate phrase is embedded on its own (one batched call)."""
        per_doc = [candidate_phrases(doc) for doc in docs]
        if tokens is not None:
            pooled = [
                pooled_phrase_vectors(cands, vecs, offs)
                for cands, vecs, offs in zip(per_doc, tokens.token_vectors, tokens.offsets,
                                             strict=True)
            ]
            phrase_vectors = [vectors for vectors, _ in pooled]
            per_doc = [[cands[i] for i in kept] for cands, (_, kept) in zip(per_doc, pooled,
                                                                           strict=True)]
        else:
            flat = [c.text for cands in per_doc for c in cands]
            vectors = self.embedder.encode(flat) if flat else np.zeros((0, self.embedder.dim))
            bounds = np.cumsum([0, *map(len, per_doc)])
            phrase_vectors = [vectors[a:b] for a, b in pairwise(bounds)]
        return [
            self._pick([c.text for c in cands], cand_vectors, doc_vector)
            for cands, cand_vectors, doc_vector in zip(
                per_doc, phrase_vectors, doc_vectors, strict=True
            )
        ]

    def _pick(
        self, phrases: list[str], vectors: np.ndarray, doc_vector: np.ndarray
    ) -> list[Keyword]:
        ranked = mmr(doc_vector, vectors, len(phrases), self.diversity) if phrases else []
        picked = drop_overlapping(ranked, phrases, self.top_n)
        return [
            Keyword(text=phrases[i], score=round(float(vectors[i] @ doc_vector), 4))
            for i in picked
        ]
