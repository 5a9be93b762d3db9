"""Texts per second: sentence-transformers' torch ``encode`` vs the project's ONNX embedder.

Both run in this process on the same texts; the figure that matters is the ratio, since
the machine is shared and absolute numbers drift. Target: >= 2x at mean cosine >= 0.999.

    uv run python benchmarks/text_embedding.py [--n 2000]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

import numpy as np

from analyzers.model_registry import ModelRegistry
from analyzers.text_embedding import MINILM, OnnxTextEmbedder

WORDS = [
    "the",
    "a",
    "city",
    "team",
    "match",
    "new",
    "video",
    "music",
    "game",
    "price",
    "market",
    "launch",
    "phone",
    "update",
    "season",
    "goal",
    "coach",
    "fans",
    "concert",
    "album",
    "release",
    "election",
    "vote",
    "policy",
    "health",
    "study",
    "recipe",
    "kitchen",
    "travel",
    "beach",
    "mountain",
    "weather",
    "storm",
    "police",
    "court",
    "climate",
    "energy",
    "startup",
    "funding",
    "stock",
    "rally",
    "crypto",
    "review",
    "trailer",
    "film",
    "series",
    "episode",
    "award",
]


def make_texts(n: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    # Mixed lengths, like captions (short) and descriptions (long) in real uploads.
    return [
        " ".join(rng.choice(WORDS) for _ in range(rng.choice([6, 12, 24, 48, 96])))
        for _ in range(n)
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=2000)
    args = parser.parse_args()
    texts = make_texts(args.n)

    from sentence_transformers import SentenceTransformer

    resolved = ModelRegistry().resolve(MINILM)
    st = SentenceTransformer(str(resolved.path), device="cpu")
    with tempfile.TemporaryDirectory() as cache:
        onnx = OnnxTextEmbedder(resolved, Path(cache))
        st.encode(texts[:64], normalize_embeddings=True)  # warm-up both
        onnx.encode(texts[:64])

        t0 = time.perf_counter()
        ref = st.encode(texts, normalize_embeddings=True, convert_to_numpy=True)  # its defaults
        t_st = time.perf_counter() - t0

        t0 = time.perf_counter()
        ours = onnx.encode(texts)
        t_onnx = time.perf_counter() - t0

    cosine = float(np.mean(np.sum(ref * ours, axis=1)))
    print(f"texts: {len(texts)}")
    print(f"sentence-transformers (torch): {len(texts) / t_st:8.1f} texts/s")
    print(f"reelsift onnx embedder:        {len(texts) / t_onnx:8.1f} texts/s")
    print(
        f"speed-up: {t_st / t_onnx:.2f}x   mean cosine: {cosine:.5f}   min cosine: "
        f"{float(np.min(np.sum(ref * ours, axis=1))):.5f}"
    )


if __name__ == "__main__":
    main()
