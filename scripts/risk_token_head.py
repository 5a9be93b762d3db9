"""Experiment, not shipped: a risk head over the served encoder's own token states.

The service already computes, for every text, the ONNX MiniLM's last hidden state of each
word piece (``OnnxTextEmbedder.encode_with_tokens``, which the keyword stage reads). A
head over those states adds no encoder pass: it costs a few small matrix products per
item. This script measures what such a head reaches against the shipped head, on the
seed-13 *test* rows ``reelsift evaluate risk`` reads, alone and stacked with the shipped
head's score by a logistic regression fitted on the *calib* rows of every listed source.

    uv run python scripts/risk_token_head.py --source davidson --head hate
    uv run python scripts/risk_token_head.py --source olid --head profanity
    uv run python scripts/risk_token_head.py --head hate --clean \\
        --source davidson olid sms youtube clickbait newsgroups wikipedia

With several sources the head learns from all their *fit* rows (each source's share of a
class weighted by n ** -0.5, as the shipped heads are), the epoch is the one with the best
AUC on the *calib* rows of every training source, and ``--clean`` prints the share of each
clean dev set (test rows; BBC whole) whose score reaches ``--review-threshold`` (the
policy's hate threshold by default), shipped head beside stacked. ``--calibrate-on``
names the sources whose *calib* rows fit the stack when they are not the training
sources: a head trained on tweets, calibrated on every domain as the shipped calibrators
are.

Head: each piece's state projected to ``--width`` units (ReLU), mean- and max-pooled over
the pieces, one logistic output; AdamW, seed 0. Token states are cached per source under
``--cache`` (float16): the first run of a source embeds all its rows (about 2 minutes for
20k tweets, 10 for 14k abstracts on the 2-core machine), later runs train in seconds.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from moderation.risk import datasets as D
from moderation.risk.features import logit
from moderation.risk.metrics import PROBABILITY_GRID, held_out_figures


def token_states(texts: list[str], cache: Path) -> list[np.ndarray]:
    """Each text's word-piece states from the service's ONNX encoder (cached, float16)."""
    if not cache.exists():
        from analyzers.model_registry import ModelRegistry
        from analyzers.text_embedding import make_onnx_text_embedder

        embedder = make_onnx_text_embedder(ModelRegistry(), Path("var/cache"))
        states: list[np.ndarray] = []
        for start in range(0, len(texts), 512):
            states.extend(embedder.encode_with_tokens(texts[start:start + 512]).token_vectors)
        states = [s if len(s) else np.zeros((1, embedder.dim), np.float32) for s in states]
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, flat=np.concatenate(states).astype(np.float16),
                 lengths=np.array([len(s) for s in states]))
    stored = np.load(cache)
    return np.split(stored["flat"].astype(np.float32), np.cumsum(stored["lengths"])[:-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", nargs="+", default=["davidson"],
                        choices=[s.name for s in D.TRAINING_SOURCES])
    parser.add_argument("--head", default="hate", choices=list(D.HEAD_NAMES))
    parser.add_argument("--calibrate-on", nargs="+", default=None,
                        choices=[s.name for s in D.TRAINING_SOURCES],
                        help="sources whose calib rows fit the stack (default: --source)")
    parser.add_argument("--clean", action="store_true")
    parser.add_argument("--review-threshold", type=float, default=0.30)
    parser.add_argument("--datasets", type=Path, default=Path("../shared/datasets"))
    parser.add_argument("--cache", type=Path, default=Path("var/experiments/token-states"))
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    from core.contracts import RiskCategory
    from moderation.risk.evaluation import _matrix, _score
    from moderation.risk.model import TextRiskModel

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    model = TextRiskModel.load()
    category = RiskCategory(args.head)
    calibrate_on = args.calibrate_on or args.source
    names = list(dict.fromkeys(
        args.source + calibrate_on + (list(D.CLEAN_DEV_SOURCES) if args.clean else [])
    ))
    # Every source's rows in one list; each keeps its own seed-13 splits.
    states: list[np.ndarray] = []
    targets_parts: list[np.ndarray] = []
    shipped: dict[int, float] = {}  # global row -> the shipped model's score
    parts: dict[str, dict[str, np.ndarray]] = {}
    started = time.time()
    for name in names:
        rows = D.load_source(D.SOURCES_BY_NAME[name], args.datasets / "moderation",
                             args.datasets / "taxonomy_dev")
        targets = rows.targets[args.head]
        offset = len(states)
        states.extend(token_states(rows.texts, args.cache / f"{name}.npz"))
        targets_parts.append(targets)
        splits = D.split_rows(rows, 13)
        parts[name] = {p: idx[targets[idx] != D.NOT_USED] for p, idx in splits.items()}
        for p in ("calib", "test"):
            local = parts[name][p]
            if len(local):
                scores = _matrix(_score(model, rows, local))[category]
                shipped.update(zip((local + offset).tolist(), scores.tolist(), strict=True))
        parts[name] = {p: idx + offset for p, idx in parts[name].items()}
    y_all = np.concatenate(targets_parts)
    fit = np.concatenate([parts[n]["fit"] for n in args.source])
    calib = np.concatenate([parts[n]["calib"] for n in args.source])
    minutes = round((time.time() - started) / 60, 1)
    print(json.dumps({"sources": args.source, "head": args.head, "fit": len(fit),
                      "calib": len(calib), "minutes_to_load": minutes}), flush=True)
    # Each source's share of a class weighs n ** -0.5 (the shipped heads' source balance).
    group = np.concatenate([np.full(len(parts[n]["fit"]), i) for i, n in enumerate(args.source)])
    group = group * 2 + y_all[fit].astype(np.int64)
    counts = np.bincount(group).astype(np.float64)
    weights = np.ones(len(fit))
    for label in (0, 1):
        in_class = group % 2 == label
        if in_class.any():
            per_row = counts[group[in_class]] ** -0.5
            weights[in_class] = per_row * in_class.sum() / per_row.sum()

    class TokenHead(torch.nn.Module):
        def __init__(self, dim: int, width: int) -> None:
            super().__init__()
            self.project = torch.nn.Linear(dim, width)
            self.out = torch.nn.Linear(2 * width, 1)

        def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            h = torch.relu(self.project(x))
            present = mask.unsqueeze(-1)
            mean = (h * present).sum(1) / present.sum(1)
            peak = (h - 1e4 * (1 - present)).max(1).values
            return self.out(torch.cat([mean, peak], dim=1)).squeeze(-1)

    def padded(indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        # Long texts: the first 256 pieces, as the served encoder reads them.
        width = max(len(states[i]) for i in indices)
        x = np.zeros((len(indices), width, states[0].shape[1]), np.float32)
        mask = np.zeros((len(indices), width), np.float32)
        for row, i in enumerate(indices):
            x[row, :len(states[i])] = states[i]
            mask[row, :len(states[i])] = 1
        return torch.from_numpy(x), torch.from_numpy(mask)

    head = TokenHead(states[0].shape[1], args.width)
    optimizer = torch.optim.AdamW(head.parameters(), lr=args.lr, weight_decay=0.01)

    def head_scores(indices: np.ndarray) -> np.ndarray:
        head.eval()
        order = np.argsort([len(states[i]) for i in indices], kind="stable")
        out = np.empty(len(indices))
        with torch.no_grad():
            for s in range(0, len(order), 256):
                chunk = order[s:s + 256]
                out[chunk] = torch.sigmoid(head(*padded(indices[chunk]))).numpy()
        head.train()
        return out

    evaluated = sorted(set(np.concatenate([parts[n][p] for n in names
                                           for p in ("calib", "test")]).tolist()))
    evaluated_rows = np.array(evaluated)
    best: tuple[float, int, dict[int, float]] = (-1.0, 0, {})
    for epoch in range(args.epochs):
        order = rng.permutation(len(fit))
        for s in range(0, len(order), args.batch):
            chunk = order[s:s + args.batch]
            x, mask = padded(fit[chunk])
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                head(x, mask), torch.tensor(y_all[fit[chunk]], dtype=torch.float32),
                weight=torch.tensor(weights[chunk], dtype=torch.float32))
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        scored = dict(zip(evaluated, head_scores(evaluated_rows).tolist(), strict=True))
        calib_auc = float(roc_auc_score(y_all[calib], [scored[i] for i in calib]))
        print(json.dumps({"epoch": epoch + 1, "calib_auc_all_sources": round(calib_auc, 4)}),
              flush=True)
        if calib_auc > best[0]:
            best = (calib_auc, epoch + 1, scored)
    _, chosen, token = best
    print(json.dumps({"epoch_chosen_on_calib_auc": chosen}), flush=True)

    def features(indices: np.ndarray) -> np.ndarray:
        return np.column_stack([logit(np.array([shipped[i] for i in indices])),
                                logit(np.array([token[i] for i in indices]))])

    stack_rows = np.concatenate([parts[n]["calib"] for n in calibrate_on])
    stack = LogisticRegression(C=1.0).fit(features(stack_rows), y_all[stack_rows])
    for name in names:
        test, source_calib = parts[name]["test"], parts[name]["calib"]
        methods = {
            "shipped head": lambda idx: np.array([shipped[i] for i in idx]),
            "token head": lambda idx: np.array([token[i] for i in idx]),
            "stacked": lambda idx: stack.predict_proba(features(idx))[:, 1],
        }
        y_test = y_all[test]
        for method, score in methods.items():
            if len(np.unique(y_test)) < 2:
                if method != "token head":
                    share = float(np.mean(score(test) >= args.review_threshold))
                    print(json.dumps({"source": name, "method": method, "negatives": len(test),
                                      "share_at_or_above": round(share, 4),
                                      "threshold": args.review_threshold}), flush=True)
                continue
            figures = held_out_figures(y_all[source_calib], score(source_calib), y_test,
                                       score(test), PROBABILITY_GRID)
            print(json.dumps({"source": name, "method": method, **figures}), flush=True)


if __name__ == "__main__":
    main()
