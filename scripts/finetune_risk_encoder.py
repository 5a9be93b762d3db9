"""Experiment, not shipped: fine-tune all-MiniLM-L6-v2 (the project's pip-packaged encoder)
for one risk head on the CPU, on the risk model's own *fit* rows, and measure it on the
same *test* rows `reelsift evaluate risk` reads (seed 13 splits, `moderation.risk.datasets`).

    uv run python scripts/finetune_risk_encoder.py --source olid --head profanity
    uv run python scripts/finetune_risk_encoder.py --source davidson --head hate

Mean-pooled token states, one logistic output, AdamW with linear warm-up and decay,
sequences cut at 64 word pieces. The decision threshold for macro-F1 is chosen on the
*calib* rows, as the evaluation does for the n-gram head. Prints one JSON line per epoch
and writes the calib and test scores to ``--out`` (for stacking with the n-gram head). On
the shared 2-core machine an epoch over OLID's 9,268 fit tweets takes 10-15 minutes.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from moderation.risk import datasets as D
from moderation.risk.metrics import precision_at_recall, recall_at_precision


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", default="olid", choices=[s.name for s in D.SOURCES])
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
    from sklearn.metrics import f1_score, roc_auc_score
    from transformers import AutoModel, AutoTokenizer

    from analyzers.model_registry import ModelRegistry
    from analyzers.text_embedding import MINILM

    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    torch.set_num_threads(args.threads)
    spec = next(s for s in D.SOURCES if s.name == args.source)
    rows = D.load_source(spec, args.datasets / "moderation", args.datasets / "taxonomy_dev")
    splits = D.split_rows(rows, 13)
    targets = rows.targets[args.head]
    fit, calib, test = (s[targets[s] != D.NOT_USED] for s in
                        (splits["fit"], splits["calib"], splits["test"]))
    print(json.dumps({"source": args.source, "head": args.head, "fit": len(fit),
                      "calib": len(calib), "test": len(test),
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
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    steps = args.epochs * -(-len(fit) // args.batch)
    warmup = max(1, int(0.06 * steps))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, s / warmup) * max(0.0, (steps - s) / steps))

    def batches(indices: np.ndarray, shuffle: bool):  # type: ignore[no-untyped-def]
        order = indices[rng.permutation(len(indices))] if shuffle else indices
        for start in range(0, len(order), args.batch):
            chunk = order[start:start + args.batch]
            tokens = tokenizer([rows.texts[i] for i in chunk], padding=True, truncation=True,
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
        p_calib, p_test = scores(calib), scores(test)
        y_calib, y_test = targets[calib], targets[test]
        grid = np.linspace(0.02, 0.98, 97)
        threshold = float(grid[np.argmax([f1_score(y_calib, p_calib >= g, average="macro")
                                          for g in grid])])
        print(json.dumps({
            "epoch": epoch + 1,
            "test_auc": round(float(roc_auc_score(y_test, p_test)), 4),
            "test_macro_f1_at_calib_threshold": round(float(
                f1_score(y_test, p_test >= threshold, average="macro")), 4),
            "calib_threshold": threshold,
            "test_accuracy_at_0.5": round(float(np.mean((p_test >= 0.5) == y_test)), 4),
            "test_precision_at_recall_0.95": round(precision_at_recall(y_test, p_test, 0.95), 4),
            "test_recall_at_precision_0.50": round(recall_at_precision(y_test, p_test, 0.50), 4),
            "minutes": round((time.time() - started) / 60, 1),
        }), flush=True)
        for part, values in (("calib", p_calib), ("test", p_test)):
            np.save(args.out / f"{args.source}-{args.head}-{part}-epoch{epoch + 1}.npy", values)


if __name__ == "__main__":
    main()
