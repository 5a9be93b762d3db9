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

from collections.abc import Iterable, Iterator, Sequence
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

    # One pass over the tokens reads what the n-gram windows need: spaCy builds a Token
    # object (and looks up its lexeme) on every attribute access.
    texts: list[str] = []
    starts: list[int] = []
    ends_phrase: list[bool] = []
    for tok in doc:
        texts.append(tok.text)
        starts.append(tok.idx)
        ends_phrase.append(tok.is_alpha and len(tok.text) > 1 and not tok.is_stop)
    for i, text in enumerate(texts):
        if text.startswith("#") and len(text) > 2:
            add(text[1:], i, starts[i] + 1, starts[i] + len(text))
        for last in range(i, min(i + max_words, len(texts))):
            if not ends_phrase[last]:
                break
            add(" ".join(texts[i : last + 1]), i, starts[i], starts[last] + len(texts[last]))
    # Frequent and early phrases first; the cap bounds the work per text.
    ranked = sorted(found, key=lambda k: (-len(found[k].spans), first[k]))[:max_candidates]
    return [found[k] for k in ranked]


def pooled_phrase_vectors(
    candidates: Sequence[Candidate], token_vectors: np.ndarray, offsets: np.ndarray
) -> tuple[np.ndarray, list[int]]:
    """L2-normalised mean of the word-piece vectors each candidate covers, and the
    indices of the candidates that cover any (the rest lie past the encoder's input)."""
    dim = token_vectors.shape[1]
    if len(offsets) == 0 or not candidates:
        return np.zeros((0, dim), np.float32), []
    # Every occurrence against every piece at once; occurrences of one candidate are
    # consecutive rows, OR-ed together into that candidate's row.
    spans = np.array([span for candidate in candidates for span in candidate.spans])
    overlaps = (offsets[None, :, 0] < spans[:, 1, None]) & (offsets[None, :, 1] > spans[:, 0, None])
    first_rows = np.cumsum([0, *(len(c.spans) for c in candidates[:-1])])
    covered = np.logical_or.reduceat(overlaps, first_rows, axis=0)
    counts = covered.sum(axis=1)
    kept = np.flatnonzero(counts)
    if not len(kept):
        return np.zeros((0, dim), np.float32), []
    sums = covered[kept].astype(token_vectors.dtype) @ token_vectors
    return l2_normalise(sums / counts[kept, None]), kept.tolist()


def mmr_order(
    doc_vector: np.ndarray, candidate_vectors: np.ndarray, diversity: float
) -> Iterator[int]:
    """Candidates in Maximal Marginal Relevance order, lazily: a caller that needs the
    first few stops there instead of ranking every candidate. A candidate's redundancy
    is its highest similarity to one already chosen, kept up to date as each is chosen."""
    relevance = candidate_vectors @ doc_vector
    similarity = candidate_vectors @ candidate_vectors.T
    redundancy = np.zeros(len(candidate_vectors))  # nothing chosen yet: none
    open_ = np.ones(len(candidate_vectors), dtype=bool)
    for step in range(len(candidate_vectors)):
        scores = np.where(open_, (1 - diversity) * relevance - diversity * redundancy, -np.inf)
        best = int(np.argmax(scores))
        yield best
        open_[best] = False
        # A similarity can be negative, so the first chosen one sets it, not a max with 0.
        redundancy = (similarity[best].astype(np.float64) if step == 0
                      else np.maximum(redundancy, similarity[best]))


def drop_overlapping(ranked: Iterable[int], phrases: list[str], top_n: int) -> list[int]:
    """Keep the best-ranked phrases that share no word with one already kept:
    "Arsenal beat Chelsea" makes "beat Chelsea" and "Arsenal beat" redundant. Reads
    ``ranked`` only as far as it needs to."""
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
        ranked = mmr_order(doc_vector, vectors, self.diversity)
        picked = drop_overlapping(ranked, phrases, self.top_n)
        return [
            Keyword(text=phrases[i], score=round(float(vectors[i] @ doc_vector), 4))
            for i in picked
        ]
