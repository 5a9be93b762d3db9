"""The learned ranker: DeepFM with two heads (completion, like), trained from the log.

Training rows come from replaying the event log in order through a fresh
``OnlineState``: at each impression the features are built from the state *before* it
(what the feed knew when it showed the item), and the labels are what the user did with
that item afterwards — completed it (``complete``, or a view of at least
``COMPLETION_RATIO``) and liked it. The model (Guo et al. 2017) shares one embedding per
field between a factorisation machine and an MLP; each head reads the linear term, the FM
interaction and the MLP's last layer. It is exported to ONNX (``model.onnx``) with its
``config.json`` (``core.artifacts``) and served by ``recommender.ranking.OnnxRanker``.

torch is imported inside functions so that serving, which only needs onnxruntime, never
loads it.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.contracts import Event
from core.errors import InvalidInput
from recommender.catalog import Catalog, epoch
from recommender.events import READ_CHUNK, row_to_event
from recommender.features import (
    CATEGORICAL_FIELDS,
    CATEGORICAL_SIZES,
    CHANNELS,
    DENSE_FEATURES,
    build_features,
)
from recommender.profiles import watch_ratio
from recommender.ranking import DEEPFM, MODEL_FILE, RANKER_ARTIFACT
from recommender.settings import RecommenderSettings
from recommender.state import OnlineState
from recommender.tables import EventRow

COMPLETION_RATIO = 0.8


@dataclass
class TrainingRows:
    dense: np.ndarray
    categorical: np.ndarray
    completion: np.ndarray
    like: np.ndarray
    ts: np.ndarray

    def __len__(self) -> int:
        return int(self.dense.shape[0])


@dataclass
class TrainReport:
    rows: int
    train_rows: int
    valid_rows: int
    epochs: int
    final_loss: float
    valid_auc: dict[str, float | None] = field(default_factory=dict)
    positive_rate: dict[str, float] = field(default_factory=dict)


def channel_flags(context: dict[str, Any]) -> dict[str, float]:
    """The channels the feed named for this impression (``context["channels"]``)."""
    raw = context.get("channels")
    if not isinstance(raw, list):
        return {}
    return {str(c): 1.0 for c in raw if str(c) in CHANNELS}


def training_rows(
    events: Iterable[Event], catalog: Catalog, settings: RecommenderSettings,
) -> TrainingRows:
    """Replay the log; one row per first impression of a (user, item) pair."""
    ordered = list(events)
    outcomes: dict[tuple[str, str], list[tuple[float, str, float | None]]] = {}
    for e in ordered:
        if e.type in ("complete", "view", "replay", "like"):
            outcomes.setdefault((e.user_id, e.item_id), []).append(
                (epoch(e.ts), e.type, watch_ratio(e)))
    state = OnlineState.create(settings, catalog, clock=lambda: 0.0)
    dense, cats, completion, like, stamps = [], [], [], [], []
    shown: set[tuple[str, str]] = set()
    for e in ordered:
        key = (e.user_id, e.item_id)
        if e.type == "impression" and key not in shown and e.item_id in catalog:
            shown.add(key)
            ts = epoch(e.ts)
            batch = build_features(
                state, state.profiles.get(e.user_id), [e.item_id], [channel_flags(e.context)],
                e.context, ts,
            )
            after = [o for o in outcomes.get(key, []) if o[0] >= ts]
            completion.append(float(any(
                kind == "complete" or (kind in ("view", "replay") and (ratio or 0) >=
                                       COMPLETION_RATIO)
                for _, kind, ratio in after)))
            like.append(float(any(kind == "like" for _, kind, _ in after)))
            dense.append(batch.dense[0])
            cats.append(batch.categorical[0])
            stamps.append(ts)
        state.apply(e)
    if not dense:
        raise InvalidInput("the event log holds no impressions of catalog items to learn from")
    return TrainingRows(np.vstack(dense).astype(np.float32), np.vstack(cats).astype(np.int64),
                        np.asarray(completion, np.float32), np.asarray(like, np.float32),
                        np.asarray(stamps))


def build_model(emb_dim: int = 8, hidden: tuple[int, ...] = (64, 32)) -> Any:
    import torch
    from torch import nn

    class DeepFM(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            n_dense = len(DENSE_FEATURES)
            self.cat_embeddings = nn.ModuleList(nn.Embedding(n, emb_dim) for n in CATEGORICAL_SIZES)
            self.cat_linear = nn.ModuleList(nn.Embedding(n, 1) for n in CATEGORICAL_SIZES)
            self.dense_embeddings = nn.Parameter(torch.randn(n_dense, emb_dim) * 0.05)
            self.dense_linear = nn.Linear(n_dense, 1)
            n_fields = n_dense + len(CATEGORICAL_SIZES)
            layers: list[nn.Module] = []
            width = n_fields * emb_dim
            for h in hidden:
                layers += [nn.Linear(width, h), nn.ReLU()]
                width = h
            self.mlp = nn.Sequential(*layers)
            self.completion_head = nn.Linear(width + 2, 1)
            self.like_head = nn.Linear(width + 2, 1)

        def forward(self, dense: Any, categorical: Any) -> tuple[Any, Any]:
            fields = [self.dense_embeddings.unsqueeze(0) * dense.unsqueeze(-1)]
            linear = self.dense_linear(dense)
            for f, (emb, lin) in enumerate(zip(self.cat_embeddings, self.cat_linear,
                                               strict=True)):
                fields.append(emb(categorical[:, f]).unsqueeze(1))
                linear = linear + lin(categorical[:, f])
            stacked = torch.cat(fields, dim=1)  # (n, fields, emb_dim)
            square_of_sum = stacked.sum(dim=1) ** 2
            sum_of_square = (stacked**2).sum(dim=1)
            fm = 0.5 * (square_of_sum - sum_of_square).sum(dim=1, keepdim=True)
            deep = self.mlp(stacked.flatten(1))
            shared = torch.cat([linear, fm, deep], dim=1)
            return (torch.sigmoid(self.completion_head(shared)).squeeze(1),
                    torch.sigmoid(self.like_head(shared)).squeeze(1))

    return DeepFM()


def auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """ROC AUC as the Mann-Whitney statistic (ties count half); None with one class."""
    positives = labels > 0.5
    n_pos, n_neg = int(positives.sum()), int((~positives).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    sorted_scores = scores[order]
    # average ranks over ties
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    avg = first + (counts - 1) / 2.0 + 1.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def train(
    rows: TrainingRows, *, epochs: int = 8, lr: float = 3e-3, batch_size: int = 256,
    seed: int = 0, valid_share: float = 0.2,
) -> tuple[Any, TrainReport]:
    """Train on the earlier rows, validate on the latest ``valid_share`` (by time)."""
    import torch

    # The model is tiny: intra-op threads only add synchronisation (40x slower measured
    # on a busy 2-core machine), so train single-threaded and restore the setting after.
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train(rows, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed,
                      valid_share=valid_share)
    finally:
        torch.set_num_threads(previous_threads)


def _train(
    rows: TrainingRows, *, epochs: int, lr: float, batch_size: int, seed: int,
    valid_share: float,
) -> tuple[Any, TrainReport]:
    import torch

    torch.manual_seed(seed)
    order = np.argsort(rows.ts, kind="stable")
    n_valid = int(len(order) * valid_share) if len(order) >= 50 else 0
    train_idx, valid_idx = order[: len(order) - n_valid], order[len(order) - n_valid:]
    model = build_model()
    optimiser = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-5)
    loss_fn = torch.nn.BCELoss()
    dense = torch.from_numpy(rows.dense)
    cats = torch.from_numpy(rows.categorical)
    y_c = torch.from_numpy(rows.completion)
    y_l = torch.from_numpy(rows.like)
    gen = torch.Generator().manual_seed(seed)
    last = float("nan")
    model.train()
    for _ in range(epochs):
        perm = torch.from_numpy(train_idx)[torch.randperm(len(train_idx), generator=gen)]
        for start in range(0, len(perm), batch_size):
            idx = perm[start : start + batch_size]
            p_c, p_l = model(dense[idx], cats[idx])
            loss = loss_fn(p_c, y_c[idx]) + loss_fn(p_l, y_l[idx])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            last = float(loss.detach())
    model.eval()
    report = TrainReport(
        rows=len(rows), train_rows=len(train_idx), valid_rows=len(valid_idx), epochs=epochs,
        final_loss=last,
        positive_rate={"completion": float(rows.completion.mean()),
                       "like": float(rows.like.mean())},
    )
    if len(valid_idx):
        with torch.no_grad():
            p_c, p_l = model(dense[valid_idx], cats[valid_idx])
        report.valid_auc = {"completion": auc(rows.completion[valid_idx], p_c.numpy()),
                            "like": auc(rows.like[valid_idx], p_l.numpy())}
    return model, report


def torch_scores(model: Any, dense: np.ndarray, categorical: np.ndarray) -> dict[str, np.ndarray]:
    import torch

    with torch.no_grad():
        p_c, p_l = model(torch.from_numpy(dense), torch.from_numpy(categorical))
    return {"completion": p_c.numpy(), "like": p_l.numpy()}


def export(model: Any, model_dir: Path, report: TrainReport) -> str:
    """Write ``model.onnx`` and its ``config.json``; returns the version string."""
    import torch

    model.eval()
    example = (torch.zeros(2, len(DENSE_FEATURES)),
               torch.zeros(2, len(CATEGORICAL_FIELDS), dtype=torch.long))
    buffer = io.BytesIO()
    # The TorchScript exporter: the dynamo one needs onnxscript, which is not a dependency.
    exporter: Any = torch.onnx.export  # its stubs omit the file-like target it accepts
    exporter(
        model, example, buffer, input_names=["dense", "categorical"],
        output_names=["completion", "like"], opset_version=17, dynamo=False,
        dynamic_axes={"dense": {0: "n"}, "categorical": {0: "n"},
                      "completion": {0: "n"}, "like": {0: "n"}},
    )
    data = buffer.getvalue()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    version = f"{stamp}-{hashlib.sha256(data).hexdigest()[:8]}"
    model_dir.mkdir(parents=True, exist_ok=True)
    tmp = model_dir / (MODEL_FILE + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(model_dir / MODEL_FILE)
    manifest = {
        "name": DEEPFM, "version": version, "dense_features": list(DENSE_FEATURES),
        "categorical_fields": list(CATEGORICAL_FIELDS),
        "categorical_sizes": list(CATEGORICAL_SIZES),
        "report": report.__dict__,
    }
    RANKER_ARTIFACT.write_config(model_dir, manifest, files=[MODEL_FILE])
    return version


def logged_events(sessions: sessionmaker[Session]) -> list[Event]:
    events: list[Event] = []
    cursor = 0
    with sessions() as session:
        while True:
            rows = session.scalars(
                select(EventRow).where(EventRow.id > cursor).order_by(EventRow.id)
                .limit(READ_CHUNK)).all()
            if not rows:
                break
            events.extend(row_to_event(r) for r in rows)
            cursor = rows[-1].id
    events.sort(key=lambda e: e.ts)
    return events


def train_from_log(
    sessions: sessionmaker[Session], settings: RecommenderSettings, *, epochs: int = 8,
    model_dir: Path | None = None,
) -> tuple[str, TrainReport]:
    """The ``reelsift train ranker`` command: log -> rows -> DeepFM -> ONNX."""
    catalog = Catalog.load(sessions, settings)
    rows = training_rows(logged_events(sessions), catalog, settings)
    model, report = train(rows, epochs=epochs, seed=settings.seed)
    version = export(model, model_dir or settings.model_dir, report)
    return version, report
