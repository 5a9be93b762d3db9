"""The small set of abstractions every analyzer is built from."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from core.contracts import ModelRef


@runtime_checkable
class TextEmbedder(Protocol):
    """Maps texts to L2-normalised float32 vectors of shape ``(len(texts), dim)``."""

    model: ModelRef
    dim: int

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


@dataclass
class TokenEncoding:
    """Sentence vectors plus, per text, the encoder's last hidden state for each word
    piece and that piece's character span in the text (special tokens excluded; a text
    longer than the encoder reads has pieces only for what it read)."""

    vectors: np.ndarray  # (texts, dim), L2-normalised
    token_vectors: list[np.ndarray]  # per text: (pieces, dim), not normalised
    offsets: list[np.ndarray]  # per text: (pieces, 2) start, end characters


@dataclass(frozen=True)
class TokenStates:
    """Per text, the word-piece states of one encoder pass (``TokenEncoding.token_vectors``)
    and the model id of the encoder that computed them: a head over token states reads
    only the encoder it was trained on."""

    encoder: str
    states: list[np.ndarray]  # per text: (pieces, dim)
    # Per text, each piece's (start, end) characters in the text, where known: lets a
    # head point at the words that drove it.
    offsets: list[np.ndarray] | None = None


@runtime_checkable
class TokenTextEmbedder(TextEmbedder, Protocol):
    """A ``TextEmbedder`` that also returns the token embeddings of the same pass."""

    def encode_with_tokens(self, texts: Sequence[str]) -> TokenEncoding: ...


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


@runtime_checkable
class JointTextImageEmbedder(Protocol):
    """A CLIP-type model: texts and RGB images (H, W, 3 uint8) in one L2-normalised space."""

    model: ModelRef
    dim: int

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray: ...

    def encode_images(self, images: Sequence[np.ndarray]) -> np.ndarray: ...
