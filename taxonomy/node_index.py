"""Node texts embedded once per (tree version, model): the matrices items are scored against.

Each node contributes several texts (name, path, description, every alias or example
phrase). Two matrices come out: a prototype per node (the normalised mean of its texts)
and every text on its own, grouped by node so a segment max (``np.maximum.reduceat``)
gives each node its best-matching text. Both are cached on disk, keyed by the tree's
content hash, the model id and the text recipe, so a reworded description, a model swap
or a recipe change each rebuild the cache instead of silently reusing stale vectors.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from analyzers.base import l2_normalise
from core.errors import InvalidConfig
from core.storage.files import atomic_path
from taxonomy.tree import TaxonomyNode, TaxonomyTree

log = logging.getLogger(__name__)

# Bump when node_texts() changes what is embedded: it is part of the cache key.
TEXT_RECIPE = "r1"

EncodeTexts = Callable[[Sequence[str]], np.ndarray]


def node_texts(node: TaxonomyNode) -> list[str]:
    """What a node is embedded as; duplicates dropped, order kept for stable caches."""
    candidates = [node.name, node.path_text, node.description, *node.aliases]
    seen: set[str] = set()
    texts = []
    for text in candidates:
        key = text.strip().casefold()
        if key and key not in seen:
            seen.add(key)
            texts.append(text.strip())
    return texts


@dataclass(frozen=True)
class NodeIndex:
    """Node vectors for one tree and one embedding model."""

    tree_version: str
    model_id: str
    prototypes: np.ndarray  # (N, d) float32, L2-normalised
    texts: np.ndarray  # (M, d) float32, L2-normalised, grouped by node in tree order
    text_starts: np.ndarray  # (N,) int64: first row of each node's texts in ``texts``

    @property
    def dim(self) -> int:
        return int(self.prototypes.shape[1])

    def similarities(self, vectors: np.ndarray, prototype_weight: float = 0.5) -> np.ndarray:
        """``(n, N)`` blend of prototype cosine and best single-text cosine per node."""
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise InvalidConfig(
                f"vectors of shape {vectors.shape} do not match node index dim {self.dim} "
                f"(model {self.model_id}); were they made by a different model?"
            )
        vectors = vectors.astype(np.float32, copy=False)
        proto = vectors @ self.prototypes.T
        per_text = vectors @ self.texts.T
        best_text = np.maximum.reduceat(per_text, self.text_starts, axis=1)
        out: np.ndarray = prototype_weight * proto + (1.0 - prototype_weight) * best_text
        return out


def _cache_path(cache_dir: Path, tree: TaxonomyTree, model_id: str) -> Path:
    safe_model = re.sub(r"[^A-Za-z0-9_.@-]+", "_", model_id)
    safe_tree = re.sub(r"[^A-Za-z0-9_.@-]+", "_", tree.version)
    return cache_dir / "taxonomy-nodes" / f"{safe_tree}--{safe_model}--{TEXT_RECIPE}.npz"


def build_node_index(
    tree: TaxonomyTree,
    encode: EncodeTexts,
    model_id: str,
    cache_dir: Path | None = None,
) -> NodeIndex:
    """Embeds every node text with ``encode`` (or loads the cached result)."""
    path = _cache_path(cache_dir, tree, model_id) if cache_dir is not None else None
    if path is not None and path.exists():
        try:
            with np.load(path) as data:
                return NodeIndex(
                    tree.version, model_id, data["prototypes"], data["texts"], data["text_starts"]
                )
        except (OSError, KeyError, ValueError) as exc:
            log.warning("ignoring unreadable node cache %s (%s); rebuilding", path, exc)

    per_node = [node_texts(node) for node in tree.nodes]
    flat = [text for texts in per_node for text in texts]
    counts = np.array([len(texts) for texts in per_node], dtype=np.int64)
    text_starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    vectors = l2_normalise(np.asarray(encode(flat), dtype=np.float32))
    if vectors.shape[0] != len(flat):
        raise InvalidConfig(
            f"encoder for {model_id} returned {vectors.shape[0]} vectors for {len(flat)} texts"
        )
    sums = np.add.reduceat(vectors, text_starts, axis=0)
    prototypes = l2_normalise(sums)
    index = NodeIndex(tree.version, model_id, prototypes, vectors, text_starts)

    if path is not None:
        with atomic_path(path) as tmp, tmp.open("wb") as handle:
            np.savez(handle, prototypes=prototypes, texts=vectors, text_starts=text_starts)
    return index
