"""Risk heads over the served encoder's own word-piece states, and their cache for training.

The text analyzer already runs the sentence encoder with its last hidden state for every
word piece (``TokenTextEmbedder.encode_with_tokens``: the keyword stage reads them), so a
head over those states needs no second encoder pass. A ``TokenStateHead`` projects each
piece to ``width`` units (ReLU), pools them by mean and by max over the text's pieces, and
scores the pooled vector with one logistic output: a few small matrix products per item.
Max pooling is what the n-gram heads and a pooled sentence vector lack: one slur or one
"txt" among forty ordinary pieces still lights its unit.

The head's logit does not become a score on its own: ``training`` stacks it with the
n-gram head's calibrated probability in a second calibrator fitted on every domain's
*calib* rows (``DATA_SOURCES.md``, seventh pass), and a caller without the states gets the
n-gram calibrator, reported under its own model id (``model.TextRiskModel``).

Training runs in torch (AdamW, fixed seed and thread count, the epoch with the best *calib*
AUC), on the pieces of a batch packed end to end rather than padded: tweets and abstracts
share batches, and padding a tweet to an abstract's 256 pieces would be most of the work.
The weights ship as float16 (rounded before the stack is fitted, so the stack is fitted
on the weights that ship) and score in numpy: serving never imports torch for them.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from analyzers.base import TokenTextEmbedder
from core.errors import InvalidConfig, InvalidInput
from core.storage.files import atomic_path

log = logging.getLogger(__name__)

# Texts per encoder call when states are computed for training or evaluation.
ENCODE_BATCH = 512


def _pieces(states: Sequence[np.ndarray], dim: int) -> tuple[np.ndarray, np.ndarray]:
    """All texts' pieces stacked, and where each text starts; a text with no piece (empty,
    or only characters the tokenizer drops) counts as one all-zero piece."""
    parts = [s if len(s) else np.zeros((1, dim), np.float32) for s in states]
    lengths = np.array([len(p) for p in parts], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    return np.concatenate(parts).astype(np.float32, copy=False), starts


@dataclass(frozen=True)
class TokenStateHead:
    """``out · [mean(h), max(h)] + out_bias`` with ``h = relu(pieces @ project + bias)``."""

    encoder: str  # the model id of the encoder whose states it reads
    project: np.ndarray  # (dim, width)
    project_bias: np.ndarray  # (width,)
    out: np.ndarray  # (2 * width,)
    out_bias: float
    epoch: int  # the training epoch it is from
    calib_auc: float  # that epoch's AUC on the training sources' calib rows

    @property
    def dim(self) -> int:
        return int(self.project.shape[0])

    def logits(self, states: Sequence[np.ndarray]) -> np.ndarray:
        """One logit per text, from its pieces' states (``(pieces, dim)`` each)."""
        return TokenHeadSet({"head": self}).logits(states, ["head"])["head"]

    def piece_contributions(self, states: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Per text, each piece's share of its logit: the logit is exactly the sum of its
        pieces' shares plus ``out_bias``. A piece's share is its part of every unit's
        mean, plus the units whose maximum it holds (the first piece, on a tie)."""
        out: list[np.ndarray] = []
        width = self.project.shape[1]
        mean_w = self.out[:width].astype(np.float64)
        max_w = self.out[width:].astype(np.float64)
        for s in states:
            if not len(s):
                out.append(np.zeros(0))
                continue
            hidden = np.maximum(s @ self.project + self.project_bias, 0.0).astype(np.float64)
            share = hidden @ mean_w / len(s)
            holder = np.argmax(hidden, axis=0)
            np.add.at(share, holder, hidden[holder, np.arange(width)] * max_w)
            out.append(share)
        return out

    def to_arrays(self) -> dict[str, Any]:
        return {
            "encoder": self.encoder, "project": self.project.astype(np.float16),
            "project_bias": self.project_bias.astype(np.float16),
            "out": self.out.astype(np.float16), "out_bias": float(self.out_bias),
            "epoch": self.epoch, "calib_auc": self.calib_auc,
        }

    @classmethod
    def from_arrays(cls, parts: dict[str, Any]) -> TokenStateHead:
        try:
            return cls(
                encoder=str(parts["encoder"]),
                project=np.asarray(parts["project"], dtype=np.float32),
                project_bias=np.asarray(parts["project_bias"], dtype=np.float32),
                out=np.asarray(parts["out"], dtype=np.float32),
                out_bias=float(parts["out_bias"]), epoch=int(parts["epoch"]),
                calib_auc=float(parts["calib_auc"]),
            )
        except KeyError as exc:
            raise InvalidConfig(f"token-state head lacks {exc.args[0]!r}") from exc


class TokenHeadSet:
    """Several heads over the same states, scored with one projection: their projections
    side by side make one ``(dim, sum of widths)`` matrix product and one pooling pass
    instead of one per head (the product is most of the cost: about 0.3 ms an item for
    three heads of width 128 over an abstract's ~100 pieces on two cores)."""

    def __init__(self, heads: dict[str, TokenStateHead]) -> None:
        self.heads = dict(heads)
        ordered = list(self.heads.values())
        dim = ordered[0].dim if ordered else 0
        self.project = np.concatenate([np.zeros((dim, 0), np.float32)]
                                      + [h.project for h in ordered], axis=1)
        self.project_bias = np.concatenate([np.zeros(0, np.float32)]
                                           + [h.project_bias for h in ordered])
        edges = np.cumsum([0] + [h.project.shape[1] for h in ordered])
        self._columns = {name: slice(int(a), int(b)) for name, a, b in
                         zip(self.heads, edges[:-1], edges[1:], strict=True)}

    def logits(self, states: Sequence[np.ndarray], names: Sequence[str]) -> dict[str, np.ndarray]:
        """The logits of the heads in ``names`` (all computed in one pass)."""
        if not names or not self.heads:
            return {}
        first = next(iter(self.heads.values()))
        for index, s in enumerate(states):
            if s.ndim != 2 or (len(s) and s.shape[1] != first.dim):
                raise InvalidInput(
                    f"token states of text {index} have shape {s.shape}; the heads read "
                    f"(pieces, {first.dim}) states of {first.encoder}", index=index,
                )
        if len(states) == 0:
            return {name: np.zeros(0, dtype=np.float64) for name in names}
        flat, starts = _pieces(states, first.dim)
        hidden = np.maximum(flat @ self.project + self.project_bias, 0.0)
        counts = np.diff(np.append(starts, len(flat)))
        mean = np.add.reduceat(hidden, starts, axis=0) / counts[:, None]
        peak = np.maximum.reduceat(hidden, starts, axis=0)
        out: dict[str, np.ndarray] = {}
        for name in names:
            head, columns = self.heads[name], self._columns[name]
            pooled = np.concatenate([mean[:, columns], peak[:, columns]], axis=1)
            out[name] = pooled.astype(np.float64) @ head.out.astype(np.float64) + head.out_bias
        return out


@dataclass(frozen=True)
class TokenHeadConfig:
    width: int = 128
    epochs: int = 6
    learning_rate: float = 1e-3
    weight_decay: float = 0.01
    batch: int = 64
    # Torch's CPU kernels split sums by thread: a fixed count keeps the floats, hence
    # the shipped bytes, the same from run to run on one kind of machine.
    threads: int = 2


def train_token_head(
    encoder: str,
    states: Sequence[np.ndarray],
    targets: np.ndarray,
    weights: np.ndarray,
    calib_states: Sequence[np.ndarray],
    calib_targets: np.ndarray,
    config: TokenHeadConfig,
    seed: int,
    say: Callable[[str], None] = log.info,
) -> TokenStateHead:
    """Fit on ``states``/``targets`` (weighted), keep the epoch with the best AUC on the
    calib rows; returns it with float16-rounded weights, as it ships."""
    import torch
    from sklearn.metrics import roc_auc_score

    if len(states) == 0 or len(np.unique(targets)) < 2:
        raise InvalidInput("a token-state head needs training rows of both classes")
    if len(np.unique(calib_targets)) < 2:
        raise InvalidInput("a token-state head needs calib rows of both classes")
    dim = next((s.shape[1] for s in states if len(s)), 0)
    if not dim:
        raise InvalidInput("no training text has any word piece")
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        project = torch.nn.Linear(dim, config.width)
        out = torch.nn.Linear(2 * config.width, 1)
        parameters = [*project.parameters(), *out.parameters()]
        optimizer = torch.optim.AdamW(parameters, lr=config.learning_rate,
                                      weight_decay=config.weight_decay)

        def forward(rows: Sequence[np.ndarray]) -> torch.Tensor:
            flat, starts = _pieces(rows, dim)
            segment = torch.from_numpy(
                np.repeat(np.arange(len(rows)), np.diff(np.append(starts, len(flat))))
            )
            hidden = torch.relu(project(torch.from_numpy(flat)))
            index = segment.unsqueeze(1).expand_as(hidden)
            pooled = [
                torch.zeros(len(rows), config.width).scatter_reduce(
                    0, index, hidden, reduce=reduce, include_self=False)
                for reduce in ("mean", "amax")
            ]
            logit: torch.Tensor = out(torch.cat(pooled, dim=1)).squeeze(-1)
            return logit

        def snapshot() -> TokenStateHead:
            return TokenStateHead(
                encoder=encoder,
                project=project.weight.detach().numpy().T.astype(np.float16).astype(np.float32),
                project_bias=project.bias.detach().numpy().astype(np.float16).astype(np.float32),
                out=out.weight.detach().numpy()[0].astype(np.float16).astype(np.float32),
                out_bias=float(out.bias.detach().numpy()[0]), epoch=0, calib_auc=0.0,
            )

        y = torch.tensor(np.asarray(targets), dtype=torch.float32)
        w = torch.tensor(np.asarray(weights), dtype=torch.float32)
        best: tuple[float, int, TokenStateHead | None] = (-1.0, 0, None)
        for epoch in range(1, config.epochs + 1):
            order = rng.permutation(len(states))
            for start in range(0, len(order), config.batch):
                chunk = order[start:start + config.batch]
                loss = torch.nn.functional.binary_cross_entropy_with_logits(
                    forward([states[i] for i in chunk]), y[chunk], weight=w[chunk])
                loss.backward()
                optimizer.step()
                optimizer.zero_grad()
            head = snapshot()
            auc = float(roc_auc_score(calib_targets, head.logits(calib_states)))
            say(f"token head epoch {epoch}: calib AUC {auc:.4f}")
            if auc > best[0]:
                best = (auc, epoch, head)
    finally:
        torch.set_num_threads(threads)
    auc, epoch, chosen = best
    assert chosen is not None
    return TokenStateHead(
        encoder=chosen.encoder, project=chosen.project, project_bias=chosen.project_bias,
        out=chosen.out, out_bias=float(np.float16(chosen.out_bias)), epoch=epoch,
        calib_auc=round(auc, 6),
    )


class TokenStateCache:
    """Word-piece states of whole sources from one encoder, cached as float16 on disk.

    A source's file is keyed by the encoder's model id and the sha256 of the texts, so a
    changed file or encoder never reads stale states. The first use of a source encodes
    all its rows (about 25 minutes for the eight shared sources on a 2-core machine)."""

    def __init__(self, embedder: TokenTextEmbedder, directory: Path) -> None:
        self.embedder = embedder
        self.directory = directory

    @property
    def encoder(self) -> str:
        return self.embedder.model.id

    def _path(self, name: str, texts: Sequence[str]) -> Path:
        digest = hashlib.sha256()
        digest.update(self.encoder.encode())
        for text in texts:
            digest.update(text.encode())
            digest.update(b"\0")
        safe = self.encoder.replace("/", "_").replace("@", "-")
        return self.directory / safe / f"{name}-{digest.hexdigest()[:16]}.npz"

    def states(self, name: str, texts: Sequence[str],
               say: Callable[[str], None] = log.info) -> list[np.ndarray]:
        path = self._path(name, texts)
        if not path.exists():
            say(f"encoding the word pieces of {name} ({len(texts)} texts)")
            encoded = encode_states(self.embedder, texts)
            lengths = np.array([len(s) for s in encoded], dtype=np.int64)
            flat = (np.concatenate(encoded) if lengths.sum()
                    else np.zeros((0, self.embedder.dim), np.float32))
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp, tmp.open("wb") as handle:
                np.savez(handle, flat=flat.astype(np.float16), lengths=lengths)
        with np.load(path) as stored:
            flat, lengths = stored["flat"].astype(np.float32), stored["lengths"]
        if len(lengths) != len(texts):
            raise InvalidConfig(f"{path} holds {len(lengths)} texts, expected {len(texts)}")
        return list(np.split(flat, np.cumsum(lengths)[:-1])) if len(lengths) else []


def default_token_cache(cache_dir: Path) -> TokenStateCache:
    """The service's default text embedder (which must return word-piece states), cached
    under ``cache_dir``: what ``reelsift train risk`` and ``evaluate risk`` read."""
    import analyzers.text_embedding  # noqa: F401  (registers the embedders)
    from analyzers.model_registry import ModelRegistry
    from core.registry import DEFAULT_TEXT_EMBEDDER, resolve, text_embedders

    embedder = resolve(text_embedders, DEFAULT_TEXT_EMBEDDER)(ModelRegistry(), cache_dir)
    if not isinstance(embedder, TokenTextEmbedder):
        raise InvalidConfig(f"{DEFAULT_TEXT_EMBEDDER} returns no word-piece states")
    return TokenStateCache(embedder, cache_dir / "risk-token-states")


def encode_states(embedder: TokenTextEmbedder, texts: Sequence[str]) -> list[np.ndarray]:
    """Each text's word-piece states, as the served text analyzer computes them."""
    out: list[np.ndarray] = []
    for start in range(0, len(texts), ENCODE_BATCH):
        out.extend(embedder.encode_with_tokens(texts[start:start + ENCODE_BATCH]).token_vectors)
    return out
