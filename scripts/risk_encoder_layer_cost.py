"""Experiment, not shipped: what the top layers of all-MiniLM-L6-v2 cost against the whole
encoder, on the CPU (for ``finetune_risk_encoder.py --train-layers``).

    uv run python scripts/risk_encoder_layer_cost.py --layers 2

Times PyTorch forward passes over 512 OLID tweets (batches of 32, 64 word pieces) for the
6-layer encoder and for the same encoder cut to ``--layers`` layers (plus the word
embeddings, a small share), in the same process, and prints the ratio; three rounds.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from moderation.risk import datasets as D


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--datasets", type=Path, default=Path("../shared/datasets"))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch
    from transformers import AutoModel, AutoTokenizer

    from analyzers.model_registry import ModelRegistry
    from analyzers.text_embedding import MINILM

    torch.set_num_threads(args.threads)
    path = ModelRegistry().resolve(MINILM).path
    tokenizer = AutoTokenizer.from_pretrained(path)
    full = AutoModel.from_pretrained(path).eval()
    top = AutoModel.from_pretrained(path, num_hidden_layers=args.layers).eval()
    rows = D.load_source(D.SOURCES_BY_NAME["olid"], args.datasets / "moderation",
                         args.datasets / "taxonomy_dev")
    texts = rows.texts[:512]
    batches = [tokenizer(texts[i:i + 32], padding=True, truncation=True, max_length=64,
                         return_tensors="pt") for i in range(0, len(texts), 32)]

    def ms_per_text(model: torch.nn.Module) -> float:
        started = time.perf_counter()
        with torch.no_grad():
            for batch in batches:
                model(**batch)
        return (time.perf_counter() - started) / len(texts) * 1000

    for round_ in range(3):
        whole, part = ms_per_text(full), ms_per_text(top)
        print(f"round {round_}: 6 layers {whole:.2f} ms/text, {args.layers} layers "
              f"{part:.2f} ms/text, ratio {part / whole:.2f}")


if __name__ == "__main__":
    main()
