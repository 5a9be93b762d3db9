"""Array operations over the tree: skip connections up, sibling competition, gating down.

All functions take ``(n_items, n_nodes)`` arrays in tree order and loop only over tiers
(at most four for IAB), never over nodes, so scoring stays a few array passes per batch.
"""

from __future__ import annotations

import numpy as np

from taxonomy.tree import TreeArrays


def lift(scores: np.ndarray, arrays: TreeArrays, child_weight: float) -> np.ndarray:
    """Skip connections: a node scores at least ``child_weight`` × its best descendant.

    Bottom-up, so a strong leaf lifts its parent and, through it, every ancestor; the
    weight < 1 keeps a parent from outranking the very child that lifted it.
    """
    lifted = scores.copy()
    for tier in range(arrays.max_tier, 1, -1):
        members, starts, parents = arrays.children_by_tier[tier]
        best_child = np.maximum.reduceat(lifted[:, members], starts, axis=1)
        lifted[:, parents] = np.maximum(lifted[:, parents], child_weight * best_child)
    return lifted


def sibling_best(values: np.ndarray, arrays: TreeArrays) -> np.ndarray:
    """For each node, the highest value among itself and its siblings (roots compete together)."""
    out = np.empty_like(values)
    roots = np.flatnonzero(arrays.tier == 1)
    out[:, roots] = values[:, roots].max(axis=1, keepdims=True)
    for tier in range(2, arrays.max_tier + 1):
        members, starts, _ = arrays.children_by_tier[tier]
        group_best = np.maximum.reduceat(values[:, members], starts, axis=1)
        sizes = np.diff(np.append(starts, len(members)))
        out[:, members] = np.repeat(group_best, sizes, axis=1)
    return out


def gate_top_down(confidence: np.ndarray, arrays: TreeArrays) -> np.ndarray:
    """A child's confidence never exceeds its parent's: a child needs a plausible parent.

    This makes every thresholded selection ancestor-closed: if a node passes, so does
    every node on its path.
    """
    gated = confidence.copy()
    for tier in range(2, arrays.max_tier + 1):
        members, _, _ = arrays.children_by_tier[tier]
        parents = arrays.parent_index[members]
        gated[:, members] = np.minimum(gated[:, members], gated[:, parents])
    return gated


def standardise_rows(values: np.ndarray) -> np.ndarray:
    """Per-item z-scores across nodes: puts different models' cosine scales on one footing."""
    mean = values.mean(axis=1, keepdims=True)
    std = values.std(axis=1, keepdims=True)
    out: np.ndarray = (values - mean) / np.maximum(std, 1e-6)
    return out


def sigmoid(values: np.ndarray) -> np.ndarray:
    out: np.ndarray = 0.5 * (1.0 + np.tanh(0.5 * values))
    return out
