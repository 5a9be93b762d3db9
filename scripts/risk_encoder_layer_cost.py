"""Experiment, not shipped: what the top layers of all-MiniLM-L6-v2 cost against the whole
encoder, on the CPU (for ``finetune_risk_encoder.py --train-layers``).

    uv run python scripts/risk_encoder_layer_cost.py --layers 2
    uv run python scripts/risk_encoder_layer_cost.py --layers 2 --runtime onnx

Times forward passes over 512 OLID tweets (64 word pieces at most) for the 6-layer encoder
and for the same encoder cut to ``--layers`` layers (plus the word embeddings, a small
share), in the same process, and prints the ratio; three rounds. ``--runtime torch``
(the default) runs PyTorch in batches of 32; ``--runtime onnx`` runs both as the service
runs its encoder: exported with ``analyzers.text_embedding.export_to_onnx`` (pooling in
the graph, attention fused) and run by onnxruntime in length-sorted batches of 8, each
padded to its longest text, spinning off, ``--threads`` intra-op threads.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

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


def _onnx_rounds(path: Path, layers: int, texts: list[str], threads: int,
                 workdir: Path) -> tuple[Callable[[], float], ...]:
    import numpy as np
    import onnxruntime as ort
    from tokenizers import Tokenizer
    from transformers import AutoModel

    from analyzers.text_embedding import export_to_onnx

    cut_dir = workdir / f"minilm-{layers}-layers"
    AutoModel.from_pretrained(path, num_hidden_layers=layers).save_pretrained(cut_dir)
    tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
    tokenizer.enable_truncation(max_length=64)
    tokenizer.no_padding()
    encodings = sorted(tokenizer.encode_batch(texts), key=lambda e: len(e.ids))
    batches = []
    for start in range(0, len(encodings), 8):
        part = encodings[start:start + 8]
        width = max(len(e.ids) for e in part)
        ids = np.zeros((len(part), width), dtype=np.int64)
        mask = np.zeros_like(ids)
        for row, encoding in enumerate(part):
            ids[row, :len(encoding.ids)] = encoding.ids
            mask[row, :len(encoding.ids)] = 1
        batches.append({"input_ids": ids, "attention_mask": mask,
                        "token_type_ids": np.zeros_like(ids)})

    def timer(model_dir: Path, name: str) -> Callable[[], float]:
        onnx_path = workdir / f"{name}.onnx"
        export_to_onnx(model_dir, onnx_path)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(str(onnx_path), options,
                                       providers=["CPUExecutionProvider"])

        def ms_per_text() -> float:
            started = time.perf_counter()
            for batch in batches:
                session.run(["sentence_embedding"], batch)
            return (time.perf_counter() - started) / len(texts) * 1000
        return ms_per_text

    return timer(path, "full"), timer(cut_dir, "top")


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
    path = Path(ModelRegistry().resolve(MINILM).path)
    rows = D.load_source(D.SOURCES_BY_NAME["olid"], args.datasets / "moderation",
                         args.datasets / "taxonomy_dev")
    texts = rows.texts[:512]
    with tempfile.TemporaryDirectory() as workdir:
        if args.runtime == "onnx":
            full, top = _onnx_rounds(path, args.layers, texts, args.threads, Path(workdir))
        else:
            full, top = _torch_rounds(path, args.layers, texts)
        full(), top()  # warm-up: first runs allocate and plan
        for round_ in range(3):
            whole, part = full(), top()
            print(f"round {round_} ({args.runtime}): 6 layers {whole:.2f} ms/text, "
                  f"{args.layers} layers {part:.2f} ms/text, ratio {part / whole:.2f}")


if __name__ == "__main__":
    main()
