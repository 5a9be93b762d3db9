"""Experiment, not shipped: stack a fine-tuned encoder's scores (from
``scripts/finetune_risk_encoder.py``) with the shipped n-gram head's, on the same rows.

    uv run python scripts/stack_risk_encoder.py --source olid --head profanity --epoch 1

A logistic regression over the two logits is fitted on the *calib* rows (where the
encoder's threshold was chosen too) and measured on the *test* rows; the n-gram head alone
and the encoder alone are printed beside it, all from one run.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from moderation.risk import datasets as D
from moderation.risk.features import logit
from moderation.risk.metrics import PROBABILITY_GRID, held_out_figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", default="olid")
    parser.add_argument("--head", default="profanity")
    parser.add_argument("--epoch", type=int, default=1)
    parser.add_argument("--datasets", type=Path, default=Path("../shared/datasets"))
    parser.add_argument("--scores", type=Path, default=Path("var/experiments/risk-encoder"))
    args = parser.parse_args()

    from sklearn.linear_model import LogisticRegression

    from core.contracts import RiskCategory
    from moderation.risk.evaluation import _matrix, _score
    from moderation.risk.model import TextRiskModel

    spec = next(s for s in D.SOURCES if s.name == args.source)
    rows = D.load_source(spec, args.datasets / "moderation", args.datasets / "taxonomy_dev")
    splits = D.split_rows(rows, 13)
    targets = rows.targets[args.head]
    parts = {p: splits[p][targets[splits[p]] != D.NOT_USED] for p in ("calib", "test")}
    model = TextRiskModel.load()
    category = RiskCategory(args.head)
    ngram = {p: _matrix(_score(model, rows, idx))[category] for p, idx in parts.items()}
    encoder = {p: np.load(args.scores / f"{args.source}-{args.head}-{p}-epoch{args.epoch}.npy")
               for p in parts}
    y = {p: targets[idx] for p, idx in parts.items()}
    features = {p: np.column_stack([logit(ngram[p]), logit(encoder[p])]) for p in parts}
    stack = LogisticRegression(C=1.0).fit(features["calib"], y["calib"])
    stacked = {p: stack.predict_proba(features[p])[:, 1] for p in parts}

    for name, scores in (("n-gram head (shipped)", ngram), ("fine-tuned encoder", encoder),
                         ("stacked (LR on calib)", stacked)):
        figures = held_out_figures(y["calib"], scores["calib"], y["test"], scores["test"],
                                   PROBABILITY_GRID)
        print(json.dumps({"method": name, "source": args.source, "head": args.head,
                          "n": len(y["test"]), **figures}))


if __name__ == "__main__":
    main()
