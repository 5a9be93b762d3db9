"""Experiment, not shipped: fine-tune all-MiniLM-L6-v2 (the project's pip-packaged encoder)
for one risk head on the CPU, on the risk model's own *fit* rows, and measure it on the
same *test* rows `reelsift evaluate risk` reads (seed 13 splits, `moderation.risk.datasets`).

    uv run python scripts/finetune_risk_encoder.py --source olid --head profanity
    uv run python scripts/finetune_risk_encoder.py --source davidson --head hate
    uv run python scripts/finetune_risk_encoder.py --head spam --epochs 1 \
        --source davidson olid sms youtube clickbait newsgroups wikipedia \
        --max-fit-per-source 3000 --clean

With several sources the head learns from all their *fit* rows at once (mixed-domain, as
the shipped heads do; ``--max-fit-per-source`` draws a seeded sample of each) and every
source's *test* rows are measured on their own; ``--clean`` also prints the share of each
clean dev set (``moderation.risk.datasets.CLEAN_DEV_SOURCES``, test rows) that scores at or
above ``--review-threshold``. ``--train-layers N`` fine-tunes only the top N layers (and
the output), the rest frozen as served.

Mean-pooled token states, one logistic output, AdamW with linear warm-up and decay,
sequences cut at 64 word pieces. The decision threshold for macro-F1 is chosen on the
*calib* rows, as the evaluation does for the n-gram head. Prints one JSON line per epoch
and writes the calib and test scores to ``--out`` (for stacking with the n-gram head). On
the shared 2-core machine an epoch over OLID's 9,268 fit tweets takes about 5 minutes when idle.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from moderation.risk import datasets as D
from moderation.risk.metrics import PROBABILITY_GRID, held_out_figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", nargs="+", default=["olid"],
                        choices=[s.name for s in D.TRAINING_SOURCES])
    parser.add_argument("--max-fit-per-source", type=int, default=None)
    parser.add_argument("--clean", action="store_true")
    parser.add_argument("--review-threshold", type=float, default=0.5)
    parser.add_argument("--train-layers", type=int, default=None,
                        help="fine-tune only the top N transformer layers (default: all)")
    parser.add_argument("--head", default="profanity", choices=list(D.HEAD_NAMES))
    parser.add_argument("--datasets", type=Path, default=Path("../shared/datasets"))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("var/experiments/risk-encoder"))
    args = parser.parse_args()

    import torch
    from transformers import AutoModel, AutoTokenizer

    from analyzers.model_registry import ModelRegistry
    from analyzers.text_embedding import MINILM

    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    torch.set_num_threads(args.threads)
    # Every source's rows in one list; each source keeps its own seed-13 splits.
    texts: list[str] = []
    labels: list[np.ndarray] = []
    parts: dict[str, dict[str, np.ndarray]] = {}
    names = list(dict.fromkeys(args.source + (list(D.CLEAN_DEV_SOURCES) if args.clean else [])))
    for name in names:
        rows = D.load_source(D.SOURCES_BY_NAME[name], args.datasets / "moderation",
                             args.datasets / "taxonomy_dev")
        splits = D.split_rows(rows, 13)
        targets = rows.targets[args.head]
        offset = len(texts)
        texts.extend(rows.head_texts(args.head, range(len(rows))))
        labels.append(targets)
        parts[name] = {p: idx[targets[idx] != D.NOT_USED] + offset for p, idx in splits.items()}
        if name in args.source and args.max_fit_per_source is not None:
            fit_rows = parts[name]["fit"]
            if len(fit_rows) > args.max_fit_per_source:
                keep = rng.choice(len(fit_rows), args.max_fit_per_source, replace=False)
                parts[name]["fit"] = np.sort(fit_rows[keep])
    targets = np.concatenate(labels)
    fit = np.concatenate([parts[name]["fit"] for name in args.source])
    print(json.dumps({"sources": args.source, "head": args.head, "fit": len(fit),
                      "test": {name: len(parts[name]["test"]) for name in names},
                      "positive_share": float(targets[fit].mean())}), flush=True)

    path = ModelRegistry().resolve(MINILM).path
    tokenizer = AutoTokenizer.from_pretrained(path)

    class Classifier(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = AutoModel.from_pretrained(path)
            self.out = torch.nn.Linear(self.encoder.config.hidden_size, 1)

        def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            states = self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
            weights = mask.unsqueeze(-1).float()
            pooled = (states * weights).sum(1) / weights.sum(1)
            return self.out(pooled).squeeze(-1)

    model = Classifier()
    if args.train_layers is not None:
        # Only the top layers learn: the rest, and the word embeddings, stay the served
        # encoder's, so a product could share their states with the item's own pass.
        for parameter in model.encoder.parameters():
            parameter.requires_grad = False
        for layer in model.encoder.encoder.layer[-args.train_layers:] if args.train_layers else []:
            for parameter in layer.parameters():
                parameter.requires_grad = True
    trainable = [p for p in model.parameters() if p.requires_grad]
    print(json.dumps({"trainable_parameters": sum(p.numel() for p in trainable)}), flush=True)
    optimizer = torch.optim.AdamW(trainable, lr=args.lr, weight_decay=0.01)
    steps = args.epochs * -(-len(fit) // args.batch)
    warmup = max(1, int(0.06 * steps))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, s / warmup) * max(0.0, (steps - s) / steps))

    def batches(indices: np.ndarray, shuffle: bool):  # type: ignore[no-untyped-def]
        order = indices[rng.permutation(len(indices))] if shuffle else indices
        for start in range(0, len(order), args.batch):
            chunk = order[start:start + args.batch]
            tokens = tokenizer([texts[i] for i in chunk], padding=True, truncation=True,
                               max_length=args.max_length, return_tensors="pt")
            yield chunk, tokens["input_ids"], tokens["attention_mask"]

    def scores(indices: np.ndarray) -> np.ndarray:
        model.eval()
        with torch.no_grad():
            out = [torch.sigmoid(model(ids, mask)).numpy() for _, ids, mask in
                   batches(indices, False)]
        model.train()
        return np.concatenate(out)

    args.out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    for epoch in range(args.epochs):
        for chunk, ids, mask in batches(fit, True):
            y = torch.tensor(targets[chunk], dtype=torch.float32)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(model(ids, mask), y)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
        minutes = round((time.time() - started) / 60, 1)
        for name in names:
            test = parts[name]["test"]
            p_test, y_test = scores(test), targets[test]
            if len(np.unique(y_test)) < 2:  # negatives only (forum posts, abstracts, news)
                print(json.dumps({
                    "epoch": epoch + 1, "source": name, "negatives": len(test),
                    "share_at_or_above": round(float(np.mean(p_test >= args.review_threshold)), 4),
                    "threshold": args.review_threshold,
                }), flush=True)
                continue
            calib = parts[name]["calib"]
            p_calib = scores(calib)
            figures = held_out_figures(targets[calib], p_calib, y_test, p_test, PROBABILITY_GRID)
            print(json.dumps({"epoch": epoch + 1, "source": name, **figures,
                              "training_minutes": minutes}), flush=True)
            for part, values in (("calib", p_calib), ("test", p_test)):
                np.save(args.out / f"{name}-{args.head}-{part}-epoch{epoch + 1}.npy", values)


if __name__ == "__main__":
    main()
