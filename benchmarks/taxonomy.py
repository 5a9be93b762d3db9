"""Taxonomy classification cost per item against the text embedding it rides on.

Embeds the project's eval posts with the default text model (ONNX all-MiniLM-L6-v2),
then times, in the same process, (a) embedding alone and (b) classification alone
(scoring all 704 IAB nodes, skip connections, calibration, the shipped heads with their
word head reading the texts, gating, label selection), one item at a time and in batches.
Prints ms per item and the ratio.

    uv run python benchmarks/taxonomy.py [--threads 1] [--cache-dir var/cache]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

# Run as a script, this file's folder comes first on sys.path and its name would shadow
# the taxonomy package; the repository root must win.
sys.path[0] = str(Path(__file__).resolve().parents[1])


def _ms_per_item(fn: Callable[[], object], items: int, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return 1000.0 * best / items


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cache-dir", type=Path, default=Path("var/cache"))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from analyzers.model_registry import ModelRegistry
    from analyzers.text_embedding import make_onnx_text_embedder
    from taxonomy.classifier import TaxonomyClassifier
    from taxonomy.dataset import read_labeled_jsonl
    from taxonomy.tree import DATA_DIR, TaxonomyTree

    tree = TaxonomyTree.default()
    texts = [e.text for e in read_labeled_jsonl(DATA_DIR / "eval" / "posts.jsonl", tree)]
    embedder = make_onnx_text_embedder(ModelRegistry(), args.cache_dir, threads=args.threads)
    classifier = TaxonomyClassifier.load(embedder, tree=tree, cache_dir=args.cache_dir)
    classifier.warm()
    vectors = embedder.encode(texts)
    n = len(texts)
    single = texts[:50]

    embed_batch = _ms_per_item(lambda: embedder.encode(texts), n, args.repeats)
    embed_single = _ms_per_item(
        lambda: [embedder.encode([t]) for t in single], len(single), args.repeats
    )
    classify_batch = _ms_per_item(lambda: classifier.classify(vectors, texts), n, args.repeats)
    classify_single = _ms_per_item(
        lambda: [classifier.classify(vectors[i : i + 1], texts[i : i + 1])
                 for i in range(len(single))],
        len(single),
        args.repeats,
    )
    print(
        f"taxonomy benchmark: {len(tree)} nodes, {n} items, model {embedder.model.id}, "
        f"heads {'shipped' if classifier.heads else 'none'}, "
        f"{args.threads} thread(s), numpy {np.__version__}"
    )
    print(f"{'mode':<8} {'embed ms/item':>14} {'classify ms/item':>17} {'classify/embed':>15}")
    for mode, embed, classify in (
        ("batch", embed_batch, classify_batch),
        ("single", embed_single, classify_single),
    ):
        print(f"{mode:<8} {embed:>14.3f} {classify:>17.3f} {classify / embed:>15.3f}")


if __name__ == "__main__":
    main()
