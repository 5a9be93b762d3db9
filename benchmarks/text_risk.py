"""Text risk scoring cost per item, against the text embedding every item already pays.

    uv run python benchmarks/text_risk.py [--texts 400] [--threads 2]

Both are timed in this process on the same items: a fixed-seed mix of the held-out rows
of every source (tweets, SMS, YouTube comments, headlines, newsgroup posts, Wikipedia
abstracts, BBC articles; repeated sample posts if ../shared is absent). The baseline is
the ONNX MiniLM pass over the item's document with its word-piece states (what the text
analyzer computes for every item, and what the token-state heads read); the target is
that scoring every text head, as served (with those states), adds at most 2 ms per item
on top of it.
The held-out figures are printed by ``reelsift evaluate risk``; this prints the test-split
summary recorded in the shipped manifest.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from moderation.risk.artifacts import DEFAULT_ARTIFACT_DIR, TEXT_RISK  # noqa: E402
from moderation.risk.cli import DEFAULT_CLEAN_DIR, DEFAULT_DATA_DIR  # noqa: E402

SAMPLE = [
    ("", "you are a stupid fucking bitch, shut up"),
    ("", "What a lovely afternoon at the park with my kids."),
    ("", "WINNER!! You have won a £1000 cash prize. Call 09061701461 now to claim."),
    ("You Won't Believe What This Celebrity Did Next", "You Won't Believe What This "
     "Celebrity Did Next\nA famous actor bought groceries on Tuesday."),
    ("Senate passes budget bill", "Senate passes budget bill\nThe bill passed 51 to 49 "
     "after a lengthy debate about spending on roads, schools and hospitals."),
]


def _items(count: int, seed: int = 13) -> list[tuple[str, str]]:
    from moderation.risk.datasets import load_sources, split_rows
    from moderation.risk.evaluation import _items as source_items

    items: list[tuple[str, str]] = []
    try:
        sources = load_sources(DEFAULT_DATA_DIR, DEFAULT_CLEAN_DIR)
    except Exception:  # no shared data: the fixed sample posts
        sources = {}
    for rows in sources.values():
        test = split_rows(rows, seed)["test"]
        titles, documents = source_items(rows, test)
        items.extend(zip(titles, documents, strict=True))
    if not items:
        items = SAMPLE
    rng = random.Random(seed)
    return [rng.choice(items) for _ in range(count)]


def _seconds(run: Callable[[], object], repeats: int = 3) -> float:
    run()  # warm-up: imports, lazy loads
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=400)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import importlib

    from analyzers.base import TokenStates
    from analyzers.model_registry import ModelRegistry
    from core.registry import resolve, text_embedders
    from moderation.risk.features import profanity_probability
    from moderation.risk.model import TextRiskModel

    importlib.import_module("analyzers.text_embedding")
    embedder = resolve(text_embedders, "reelsift.text_embedder.onnx.v1")(
        ModelRegistry(), REPO_ROOT / "var" / "cache", threads=args.threads
    )
    items = _items(args.texts)
    titles = [title for title, _ in items]
    documents = [document for _, document in items]
    model = TextRiskModel.load(DEFAULT_ARTIFACT_DIR)
    n = len(items)

    baseline = _seconds(lambda: embedder.encode_with_tokens(documents), repeats=1)
    states = TokenStates(embedder.model.id, embedder.encode_with_tokens(documents).token_vectors)
    served = "score_items with word pieces (as served)"
    timings = {
        "alt-profanity-check alone": _seconds(lambda: profanity_probability(documents)),
        "all heads, probabilities only, n-gram only": _seconds(
            lambda: model.head_probabilities(documents)
        ),
        "all heads, probabilities only, with pieces": _seconds(
            lambda: model.head_probabilities(documents, token_states=states)
        ),
        "score_items without word pieces": _seconds(lambda: model.score_items(titles, documents)),
        served: _seconds(lambda: model.score_items(titles, documents, token_states=states)),
    }
    print(f"text risk scoring, {n} items, embedding with {args.threads} threads")
    print(f"{'what':45s} {'ms/item':>9s} {'vs embedding':>13s}")
    print(f"{'MiniLM ONNX pass with pieces (baseline)':45s} {1000 * baseline / n:9.3f} "
          f"{1.0:12.3f}x")
    for name, seconds in timings.items():
        print(f"{name:45s} {1000 * seconds / n:9.3f} {seconds / baseline:12.3f}x")
    added = 1000 * timings[served] / n
    print(f"scoring adds {added:.3f} ms per item on top of the embedding (target <= 2 ms)")

    manifest = TEXT_RISK.read_config(DEFAULT_ARTIFACT_DIR)
    print(f"\ntest-split figures of {manifest['name']}@{manifest['version']} (config.json)")
    for head, per_source in manifest["metrics"].items():
        for source, f in per_source.items():
            if f.get("roc_auc") is not None:
                print(f"{head:11s} {source:11s} AUC {f['roc_auc']:.4f}  "
                      f"acc@0.5 {f['accuracy_at_threshold']:.4f}  ECE {f['ece']:.4f}")


if __name__ == "__main__":
    main()
