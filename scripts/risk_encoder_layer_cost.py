"""Experiment, not shipped: what the top layers of all-MiniLM-L6-v2 cost against the whole
encoder, on the CPU (for ``finetune_risk_encoder.py --train-layers``).

    uv run python scripts/risk_encoder_layer_cost.py --layers 2
    uv run python scripts/risk_encoder_layer_cost.py --layers 2 --runtime onnx

Times forward passes over 512 OLID tweets for the 6-layer encoder and for the same
encoder cut to ``--layers`` layers (plus the word embeddings, a small share), in the same
process, and prints the ratio; three rounds after a warm-up. ``--runtime torch`` (the
default) runs PyTorch in batches of 32, 64 word pieces at most; ``--runtime onnx`` runs
both through the service's ``OnnxTextEmbedder`` (its ONNX export, session options and
length-sorted batches; tokenizing included, as served) with ``--threads`` threads.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from analyzers.model_registry import ResolvedModel
from moderation.risk import datasets as D


def _torch_rounds(path: Path, layers: int, texts: list[str]) -> tuple[Callable[[], float], ...]:
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    batches = [tokenizer(texts[i:i + 32], padding=True, truncation=True, max_length=64,
                         return_tensors="pt") for i in range(0, len(texts), 32)]

    def timer(model: torch.nn.Module) -> Callable[[], float]:
        def ms_per_text() -> float:
            started = time.perf_counter()
            with torch.no_grad():
                for batch in batches:
                    model(**batch)
            return (time.perf_counter() - started) / len(texts) * 1000
        return ms_per_text

    full = AutoModel.from_pretrained(path).eval()
    top = AutoModel.from_pretrained(path, num_hidden_layers=layers).eval()
    return timer(full), timer(top)


def _onnx_rounds(resolved: ResolvedModel, layers: int, texts: list[str], threads: int,
                 workdir: Path) -> tuple[Callable[[], float], ...]:
    """Both encoders through the service's own ``OnnxTextEmbedder`` (its export, session
    options and batching); the cut copy is the model directory with fewer layers."""
    import shutil

    from transformers import AutoModel

    from analyzers.text_embedding import OnnxTextEmbedder

    cut_dir = workdir / f"minilm-{layers}-layers"
    shutil.copytree(resolved.path, cut_dir, ignore=shutil.ignore_patterns("*.safetensors"))
    AutoModel.from_pretrained(resolved.path, num_hidden_layers=layers).save_pretrained(cut_dir)
    cut = ResolvedModel(path=cut_dir, ref=resolved.ref.model_copy(
        update={"version": f"{resolved.ref.version}-top{layers}"}))

    def timer(model: ResolvedModel) -> Callable[[], float]:
        embedder = OnnxTextEmbedder(model, workdir, threads=threads)

        def ms_per_text() -> float:
            started = time.perf_counter()
            embedder.encode(texts)
            return (time.perf_counter() - started) / len(texts) * 1000
        return ms_per_text

    return timer(resolved), timer(cut)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--datasets", type=Path, default=Path("../shared/datasets"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runtime", choices=("torch", "onnx"), default="torch")
    args = parser.parse_args()

    import torch

    from analyzers.model_registry import ModelRegistry
    from analyzers.text_embedding import MINILM

    torch.set_num_threads(args.threads)
    resolved = ModelRegistry().resolve(MINILM)
    rows = D.load_source(D.SOURCES_BY_NAME["olid"], args.datasets / "moderation",
                         args.datasets / "taxonomy_dev")
    texts = rows.texts[:512]
    with tempfile.TemporaryDirectory() as workdir:
        if args.runtime == "onnx":
            full, top = _onnx_rounds(resolved, args.layers, texts, args.threads, Path(workdir))
        else:
            full, top = _torch_rounds(resolved.path, args.layers, texts)
        full(), top()  # warm-up: first runs allocate and plan
        for round_ in range(3):
            whole, part = full(), top()
            print(f"round {round_} ({args.runtime}): 6 layers {whole:.2f} ms/text, "
                  f"{args.layers} layers {part:.2f} ms/text, ratio {part / whole:.2f}")


if __name__ == "__main__":
    main()
