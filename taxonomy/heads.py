"""Supervised per-node heads over text embeddings, trained from a few labeled examples.

Each head is a logistic regression on ``[embedding, zero-shot logit]`` for one node
(positives: examples labeled with the node or a descendant). Feeding the zero-shot
logit in as a feature lets each head learn how far to trust the node texts and only
correct them where the examples disagree; with few examples the regulariser keeps the
embedding weights small and the head stays close to zero-shot.

At inference all heads are one matrix product: ``X @ W.T + gamma * u + b`` replaces the
zero-shot logits ``u`` of the nodes that have a head.

Saved as a directory: ``config.json`` (format, tree version, embedding model, node ids,
positives per node, hyper-parameters) and ``heads.npz`` (arrays).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import InvalidConfig, InvalidInput
from core.storage.files import atomic_path

FORMAT = "reelsift.taxonomy_heads.v1"
CONFIG_FILE = "config.json"
ARRAYS_FILE = "heads.npz"


@dataclass
class SupervisedHeads:
    tree_version: str
    embedding_model: str
    node_ids: list[str]
    weights: np.ndarray  # (K, d)
    zero_shot_weight: np.ndarray  # (K,) gamma
    bias: np.ndarray  # (K,)
    positives: list[int]
    hyper: dict[str, Any] = field(default_factory=dict)
    calibration: dict[str, Any] | None = None  # zero-shot calibration fitted alongside

    @property
    def dim(self) -> int:
        return int(self.weights.shape[1])

    def column_index(self, index_of: dict[str, int]) -> np.ndarray:
        missing = [n for n in self.node_ids if n not in index_of]
        if missing:
            raise InvalidConfig(f"heads name nodes missing from the tree: {missing[:10]}")
        return np.array([index_of[n] for n in self.node_ids], dtype=np.int64)

    def apply(self, vectors: np.ndarray, logits: np.ndarray, columns: np.ndarray) -> np.ndarray:
        """Zero-shot ``logits`` with the headed columns replaced by the heads' logits."""
        if vectors.shape[1] != self.dim:
            raise InvalidConfig(
                f"heads expect {self.dim}-dim vectors from {self.embedding_model}, "
                f"got {vectors.shape[1]}"
            )
        out = logits.copy()
        out[:, columns] = (
            vectors @ self.weights.T + logits[:, columns] * self.zero_shot_weight + self.bias
        )
        return out

    # ---- training -----------------------------------------------------------------------

    @classmethod
    def train(
        cls,
        vectors: np.ndarray,
        zero_shot_logits: np.ndarray,
        targets: np.ndarray,
        node_ids: list[str],
        tree_version: str,
        embedding_model: str,
        *,
        regularisation: float = 4.0,
        min_positives: int = 2,
    ) -> SupervisedHeads:
        """One head per node with at least ``min_positives`` positives and one negative.

        ``targets`` is ``(n, N)`` bool over ``node_ids`` (ancestor-augmented labels).
        """
        from sklearn.linear_model import LogisticRegression

        n, n_nodes = targets.shape
        if vectors.shape[0] != n or zero_shot_logits.shape != (n, n_nodes):
            raise InvalidInput(
                f"shapes disagree: vectors {vectors.shape}, logits {zero_shot_logits.shape}, "
                f"targets {targets.shape}"
            )
        counts = targets.sum(axis=0)
        trainable = np.flatnonzero((counts >= min_positives) & (counts < n))
        if trainable.size == 0:
            raise InvalidInput(
                f"no node has {min_positives}+ positive examples and a negative one; "
                "label more examples (and more than one category)"
            )
        weights = np.zeros((trainable.size, vectors.shape[1]), dtype=np.float32)
        gamma = np.zeros(trainable.size, dtype=np.float32)
        bias = np.zeros(trainable.size, dtype=np.float32)
        for row, col in enumerate(trainable):
            features = np.column_stack([vectors, zero_shot_logits[:, col]])
            fit = LogisticRegression(C=regularisation, max_iter=2000).fit(features, targets[:, col])
            weights[row] = fit.coef_[0][:-1]
            gamma[row] = fit.coef_[0][-1]
            bias[row] = fit.intercept_[0]
        return cls(
            tree_version=tree_version,
            embedding_model=embedding_model,
            node_ids=[node_ids[c] for c in trainable],
            weights=weights,
            zero_shot_weight=gamma,
            bias=bias,
            positives=[int(counts[c]) for c in trainable],
            hyper={"regularisation": regularisation, "min_positives": min_positives,
                   "examples": int(n)},
        )

    # ---- persistence --------------------------------------------------------------------

    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = {
            "format": FORMAT,
            "tree_version": self.tree_version,
            "embedding_model": self.embedding_model,
            "node_ids": self.node_ids,
            "positives": self.positives,
            "hyper": self.hyper,
            "calibration": self.calibration,
        }
        with atomic_path(directory / ARRAYS_FILE) as tmp, tmp.open("wb") as handle:
            np.savez(handle, weights=self.weights, zero_shot_weight=self.zero_shot_weight,
                     bias=self.bias)
        (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> SupervisedHeads:
        directory = Path(directory)
        config_path = directory / CONFIG_FILE
        if not config_path.exists() or not (directory / ARRAYS_FILE).exists():
            raise InvalidConfig(
                f"{directory} is not a taxonomy heads artifact (needs {CONFIG_FILE} and "
                f"{ARRAYS_FILE}); create one with `reelsift train taxonomy labeled.jsonl`"
            )
        config = json.loads(config_path.read_text(encoding="utf-8"))
        if config.get("format") != FORMAT:
            raise InvalidConfig(f"{config_path}: format {config.get('format')!r} is not {FORMAT!r}")
        with np.load(directory / ARRAYS_FILE) as arrays:
            weights = arrays["weights"].astype(np.float32)
            gamma = arrays["zero_shot_weight"].astype(np.float32)
            bias = arrays["bias"].astype(np.float32)
        if not (len(config["node_ids"]) == weights.shape[0] == gamma.shape[0] == bias.shape[0]):
            raise InvalidConfig(f"{directory}: arrays and node ids disagree in length")
        return cls(
            tree_version=config["tree_version"],
            embedding_model=config["embedding_model"],
            node_ids=list(config["node_ids"]),
            weights=weights,
            zero_shot_weight=gamma,
            bias=bias,
            positives=list(config["positives"]),
            hyper=dict(config.get("hyper") or {}),
            calibration=config.get("calibration"),
        )
