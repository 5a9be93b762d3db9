"""The text analyzer: language, entities, keywords and the text embedding of one document.

A document is an item's title and text joined by a newline (``document_text``); every
character offset the analyzer reports (entities here, risk spans in moderation) points
into that string. An absent embedding model leaves the embedding and keywords "not
assessed" with the reason; entities and language still come from what is there.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from analyzers.base import TextEmbedder, TokenEncoding, TokenStates, TokenTextEmbedder
from analyzers.keywords import KeywordExtractor
from analyzers.language import LanguageIdentifier
from core.contracts import NotAssessed, TextAnalysis

if TYPE_CHECKING:
    # spaCy loads with the pipeline, not with this module: API workers import this module
    # (``document_text``) and never run the analyzer (the text-analysis service does).
    from analyzers.entities import EntityPipeline


def document_text(title: str, text: str) -> str:
    return f"{title}\n{text}" if title else text


@dataclass
class TextResult:
    analysis: TextAnalysis
    vector: np.ndarray | None
    # The encoder's word-piece states of the document and their character spans, when
    # the encoder gives them (the text-risk heads read them without a second pass):
    # (pieces, dim) and (pieces, 2).
    token_states: np.ndarray | None = None
    token_offsets: np.ndarray | None = None


def token_states_of(embedder: TextEmbedder | None,
                    results: Sequence[TextResult]) -> TokenStates | None:
    """The batch's word-piece states for downstream heads, or None unless every result
    has them."""
    states = [r.token_states for r in results]
    offsets = [r.token_offsets for r in results]
    if embedder is None or not results or any(s is None for s in states):
        return None
    return TokenStates(
        embedder.model.id, [s for s in states if s is not None],
        None if any(o is None for o in offsets) else [o for o in offsets if o is not None],
    )


class TextAnalyzer:
    def __init__(
        self,
        embedder: TextEmbedder | None,
        entities: EntityPipeline,
        language: LanguageIdentifier,
        *,
        embedder_unavailable_reason: str | None = None,
        keywords_top_n: int = 5,
        overlap_encoder: bool = True,
    ) -> None:
        self.embedder = embedder
        self.entities = entities
        self.language = language
        self.keywords = KeywordExtractor(embedder, top_n=keywords_top_n) if embedder else None
        self.embedder_unavailable_reason = embedder_unavailable_reason or "no text embedding model"
        # The encoder runs inside onnxruntime (or torch), which releases the GIL: while it
        # encodes a batch on this thread, spaCy parses the same batch on the caller's, and
        # fills the cores the encoder leaves idle between its kernels.
        self._encoder_thread = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="text-encoder")
            if embedder is not None and overlap_encoder else None
        )

    def _encode(self, documents: Sequence[str]) -> TokenEncoding | np.ndarray:
        assert self.embedder is not None
        if isinstance(self.embedder, TokenTextEmbedder):
            # One encoder pass gives the text vectors and the keyword candidates'.
            return self.embedder.encode_with_tokens(documents)
        return self.embedder.encode(documents)

    def analyze(self, documents: Sequence[str]) -> list[TextResult]:
        pending = (
            self._encoder_thread.submit(self._encode, documents)
            if self._encoder_thread is not None else None
        )
        docs = self.entities.parse(documents)
        missing: list[NotAssessed] = []
        vectors: np.ndarray | None = None
        pieces: list[np.ndarray] | None = None
        piece_spans: list[np.ndarray] | None = None
        keywords = None
        if self.embedder is not None:
            assert self.keywords is not None
            encoded = pending.result() if pending is not None else self._encode(documents)
            if isinstance(encoded, TokenEncoding):
                vectors, pieces, piece_spans = (
                    encoded.vectors, encoded.token_vectors, encoded.offsets)
                keywords = self.keywords.extract(docs, vectors, encoded)
            else:
                vectors = encoded
                keywords = self.keywords.extract(docs, vectors)
        else:
            missing = [
                NotAssessed(output="embedding", reason=self.embedder_unavailable_reason),
                NotAssessed(output="keywords", reason=self.embedder_unavailable_reason),
            ]
        results = []
        for i, (document, doc) in enumerate(zip(documents, docs, strict=True)):
            language = self.language.identify(document)
            not_assessed = list(missing)
            if language is None:
                not_assessed.append(
                    NotAssessed(output="language", reason="too few letters to identify a language")
                )
            analysis = TextAnalysis(
                language=language,
                entities=self.entities.entities(doc),
                keywords=keywords[i] if keywords is not None else [],
                embedding_model=self.embedder.model.id if self.embedder else None,
                embedding_dim=self.embedder.dim if self.embedder else None,
                not_assessed=not_assessed,
            )
            results.append(TextResult(
                analysis, vectors[i] if vectors is not None else None,
                pieces[i] if pieces is not None else None,
                piece_spans[i] if piece_spans is not None else None,
            ))
        return results
