"""Text risk scoring throughput vs bare alt-profanity-check, plus the validation figures.

    uv run python benchmarks/text_risk.py [--texts 2000] [--threads 2]

All timings are taken in this process on the same texts (a fixed-seed mix of the three
training sets, or repeated sample sentences if the data is not present), and reported
as texts/second and as a ratio to the ``profanity_check.predict_prob`` baseline.
The validation figures are read from the shipped manifest (holdout split, see
moderation/risk/DATA_SOURCES.md).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from moderation.risk.artifacts import DEFAULT_ARTIFACT_DIR  # noqa: E402
from moderation.risk.cli import DEFAULT_DATA_DIR  # noqa: E402

SAMPLE = [
    "you are a stupid fucking bitch, shut up",
    "What a lovely afternoon at the park with my kids.",
    "WINNER!! You have won a £1000 cash prize. Call 09061701461 now to claim.",
    "You Won't Believe What This Celebrity Did Next",
    "Senate passes budget bill after lengthy debate",
]


def _texts(count: int) -> list[str]:
    import csv

    rows: list[str] = []
    for name in ("offensive_tweets", "sms_spam", "clickbait_headlines"):
        path = DEFAULT_DATA_DIR / f"{name}.train.csv"
        if path.is_file():
            with path.open(encoding="utf-8", newline="") as handle:
                rows.extend(row["text"] for row in csv.DictReader(handle))
    if not rows:
        rows = SAMPLE
    rng = random.Random(13)
    return [rng.choice(rows) for _ in range(count)]


def _rate(run: Callable[[], object], count: int, repeats: int = 3) -> float:
    run()  # warm-up: imports, lazy loads
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return count / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import importlib

    from analyzers.model_registry import ModelRegistry
    from core.registry import resolve, text_embedders
    from moderation.risk.features import profanity_probability
    from moderation.risk.model import TextRiskModel

    importlib.import_module("analyzers.text_embedding")
    embedder = resolve(text_embedders, "reelsift.text_embedder.onnx.v1")(
        ModelRegistry(), REPO_ROOT / "var" / "cache", threads=args.threads
    )
    texts = _texts(args.texts)
    lexical = TextRiskModel.load(DEFAULT_ARTIFACT_DIR)
    full = TextRiskModel.load(DEFAULT_ARTIFACT_DIR, embedder=embedder)
    vectors = embedder.encode(texts)
    n = len(texts)

    rates = {
        "profanity_check.predict_prob (baseline)": _rate(lambda: profanity_probability(texts), n),
        "head probabilities, lexical stack": _rate(lambda: lexical.head_probabilities(texts), n),
        "score(), lexical stack, with evidence": _rate(lambda: lexical.score(texts), n),
        "score(), full stack, embeddings given": _rate(lambda: lexical.score(texts, vectors), n),
        "score(), full stack, embedding included": _rate(lambda: full.score(texts), n, 1),
    }
    baseline = next(iter(rates.values()))
    print(f"text risk scoring, {n} texts, {args.threads} embedding threads")
    print(f"{'what':45s} {'texts/s':>10s} {'vs baseline':>12s}")
    for name, rate in rates.items():
        print(f"{name:45s} {rate:10.0f} {rate / baseline:11.3f}x")

    manifest = json.loads((DEFAULT_ARTIFACT_DIR / "manifest.json").read_text())
    m = manifest["metrics"]
    print(f"\nvalidation figures of {manifest['name']}@{manifest['version']} (holdout split)")
    figures = [
        ("abusive ROC AUC (target >= 0.99)", m["abusive"]["full"]["roc_auc"]),
        ("abusive precision @ recall 0.95 (>= 0.99)",
         m["abusive"]["full"]["precision_at_recall_0.95"]),
        ("  baseline profanity_check AUC", m["abusive"]["baseline_profanity_check"]["roc_auc"]),
        ("  baseline profanity_check P@R0.95",
         m["abusive"]["baseline_profanity_check"]["precision_at_recall_0.95"]),
        ("hate ROC AUC (>= 0.90)", m["hate"]["full"]["roc_auc"]),
        ("hate recall @ precision 0.50 (>= 0.60)", m["hate"]["full"]["recall_at_precision_0.50"]),
        (f"spam accuracy @ {m['spam']['full']['threshold']:.2f} (>= 0.99)",
         m["spam"]["full"]["accuracy_at_threshold"]),
        (f"clickbait accuracy @ {m['clickbait']['full']['threshold']:.2f} (>= 0.97)",
         m["clickbait"]["full"]["accuracy_at_threshold"]),
    ]
    for name, value in figures:
        print(f"{name:45s} {value:10.4f}")

    if "cv_full" in m["hate"]:
        # The holdout has ~230 hate rows; 5-fold CV on the fit part has ~4x as many.
        print("\nsame figures from 5-fold CV on the fit part (full stack)")
        cv = {head: m[head]["cv_full"] for head in ("abusive", "hate", "spam", "clickbait")}
        for name, value in [
            ("abusive ROC AUC", cv["abusive"]["roc_auc"]),
            ("abusive precision @ recall 0.95", cv["abusive"]["precision_at_recall_0.95"]),
            ("hate ROC AUC", cv["hate"]["roc_auc"]),
            ("hate recall @ precision 0.50", cv["hate"]["recall_at_precision_0.50"]),
            ("spam accuracy", cv["spam"]["accuracy_at_threshold"]),
            ("clickbait accuracy", cv["clickbait"]["accuracy_at_threshold"]),
        ]:
            print(f"{name:45s} {value:10.4f}")


if __name__ == "__main__":
    main()
