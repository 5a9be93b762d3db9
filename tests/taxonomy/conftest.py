"""Shared pieces for the taxonomy tests.

The text embedder here is a real lexical one (scikit-learn's HashingVectorizer over word
unigrams and bigrams, L2-normalised): it satisfies the TextEmbedder protocol with genuine
vectors, so the classifier is exercised end to end without a neural model download.
The joint text-image embedder is a test double for the protocol only: it maps an image's
mean colour to the text vector of a concept, so images and texts share one space.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from analyzers.base import l2_normalise
from core.contracts import ModelRef
from core.registry import text_embedders

SMALL_TREE_YAML = """\
nodes:
  - {id: sports, name: Sports, description: "sports matches teams players and competitions",
     aliases: ["sport", "match result", "team won the game", "players and coach"]}
  - {id: soccer, parent: sports, name: Soccer,
     description: "football matches, goals, strikers and the premier league",
     aliases: ["football", "goal scored", "striker", "premier league"]}
  - {id: tennis, parent: sports, name: Tennis,
     description: "tennis matches, rackets, serves and wimbledon",
     aliases: ["wimbledon", "racket", "grand slam tennis", "serve and volley"]}
  - {id: tech, name: Technology, description: "technology software computers and apps",
     aliases: ["software", "computer", "smartphone app", "tech company"]}
  - {id: ai, parent: tech, name: Artificial Intelligence,
     description: "artificial intelligence machine learning chatbots and neural networks",
     aliases: ["machine learning", "chatbot", "neural network"]}
  - {id: chips, parent: tech, name: Chips,
     description: "semiconductor chips processors and chip factories",
     aliases: ["processor", "semiconductor", "chip maker"]}
  - {id: food, name: Food, description: "food cooking recipes dinner and restaurants",
     aliases: ["recipe", "cooking dinner", "restaurant meal"]}
  - {id: baking, parent: food, name: Baking,
     description: "baking cakes bread and pastry in the oven",
     aliases: ["cake", "bread", "oven", "pastry"]}
  - {id: sourdough, parent: baking, name: Sourdough,
     description: "sourdough bread starter and loaves", aliases: ["sourdough starter", "loaf"]}
"""


class HashingTextEmbedder:
    def __init__(self, dim: int = 2048) -> None:
        from sklearn.feature_extraction.text import HashingVectorizer

        self.dim = dim
        self.model = ModelRef(name="hashing-bow", version=f"d{dim}", source="sklearn")
        self._vectorizer = HashingVectorizer(
            n_features=dim, ngram_range=(1, 2), alternate_sign=False, norm=None,
            stop_words="english",
        )
        self.calls = 0

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        dense = self._vectorizer.transform(list(texts)).toarray().astype(np.float32)
        # Empty texts (only stop words) would otherwise be zero vectors.
        dense[dense.sum(axis=1) == 0, 0] = 1.0
        return l2_normalise(dense)


COLOUR_CONCEPTS = {
    (30, 160, 40): "football goal striker premier league",  # green pitch
    (240, 150, 40): "cake bread oven pastry",  # golden crust
    (40, 60, 200): "machine learning chatbot neural network",  # screen blue
}


class ColourConceptEmbedder:
    """Protocol test double: a JointTextImageEmbedder over real arrays."""

    def __init__(self) -> None:
        self._text = HashingTextEmbedder()
        self.dim = self._text.dim
        self.model = ModelRef(name="colour-concepts", version="1", source="test")
        self._colours = np.array(list(COLOUR_CONCEPTS), dtype=np.float32)
        self._concepts = self._text.encode(list(COLOUR_CONCEPTS.values()))

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        return self._text.encode(texts)

    def encode_images(self, images: Sequence[np.ndarray]) -> np.ndarray:
        means = np.stack([img.reshape(-1, 3).mean(axis=0) for img in images]).astype(np.float32)
        nearest = np.argmin(((means[:, None, :] - self._colours[None]) ** 2).sum(-1), axis=1)
        return self._concepts[nearest]


def solid_image(colour: tuple[int, int, int], size: int = 8) -> np.ndarray:
    rng = np.random.default_rng(sum(colour))
    noise = rng.integers(-10, 10, size=(size, size, 3))
    return np.clip(np.array(colour)[None, None, :] + noise, 0, 255).astype(np.uint8)


@text_embedders.register("reelsift.test.hashing_text_embedder.v1")
def make_hashing_embedder(registry: object, cache_dir: Path, *, threads: int | None = None,
                          device: str = "cpu") -> HashingTextEmbedder:
    return HashingTextEmbedder()


@pytest.fixture
def small_tree_path(tmp_path: Path) -> Path:
    path = tmp_path / "small.yaml"
    path.write_text(SMALL_TREE_YAML, encoding="utf-8")
    return path


@pytest.fixture
def small_tree(small_tree_path: Path):
    from taxonomy.tree import TaxonomyTree

    return TaxonomyTree.load(small_tree_path, name="small")


@pytest.fixture
def embedder() -> HashingTextEmbedder:
    return HashingTextEmbedder()
