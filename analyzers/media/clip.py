"""CLIP (transformers ``CLIPModel``) from a local directory, exported to ONNX once.

The directory is resolved offline through ``analyzers.model_registry`` (explicit path,
then the local Hugging Face cache). On first use the image and text towers are exported
to two ONNX files under ``cache_dir/<name>-<version>/``; later runs need only
onnxruntime plus the directory's tokenizer and image processor. Vectors are the
projected CLIP embeddings, L2-normalised, so image-text cosine is CLIP's similarity.
Implements ``analyzers.base.JointTextImageEmbedder`` and the ``VisualEmbedder`` protocol.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from analyzers.base import l2_normalise
from analyzers.media.onnx_export import cache_dir_for, export_once, open_session, torch_to_onnx
from analyzers.model_registry import ModelRegistry, ModelSpec
from core.contracts import ModelRef
from core.errors import ModelLoadFailed
from core.registry import visual_embedders

CLIP_NAME = "reelsift.visual.clip_onnx.v1"
DEFAULT_CLIP_SPEC = ModelSpec(
    role="visual_clip",
    name="openai/clip-vit-base-patch32",
    hf_repo="openai/clip-vit-base-patch32",
)
BATCH = 16


def _features(output: Any) -> Any:
    # transformers 5 returns a ModelOutput whose pooler_output is the projected embedding.
    import torch

    return output if isinstance(output, torch.Tensor) else output.pooler_output


def _export_towers(model_dir: Path, target_dir: Path) -> int:
    """Export both towers; returns the embedding dimension."""
    import torch
    from transformers import CLIPModel

    try:
        model = CLIPModel.from_pretrained(str(model_dir)).eval()
    except Exception as exc:
        raise ModelLoadFailed(f"CLIP model in {model_dir} failed to load: {exc}") from exc

    class ImageTower(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.clip = model

        def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
            return _features(self.clip.get_image_features(pixel_values=pixel_values))

    class TextTower(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.clip = model

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return _features(
                self.clip.get_text_features(input_ids=input_ids, attention_mask=attention_mask)
            )

    size = int(model.config.vision_config.image_size)
    export_once(
        target_dir / "image.onnx",
        lambda path: torch_to_onnx(
            ImageTower(),
            (torch.zeros(1, 3, size, size),),
            path,
            ["pixel_values"],
            ["embedding"],
            {"pixel_values": {0: "batch"}, "embedding": {0: "batch"}},
        ),
    )
    export_once(
        target_dir / "text.onnx",
        lambda path: torch_to_onnx(
            TextTower(),
            (torch.ones(1, 4, dtype=torch.long), torch.ones(1, 4, dtype=torch.long)),
            path,
            ["input_ids", "attention_mask"],
            ["embedding"],
            {
                "input_ids": {0: "batch", 1: "tokens"},
                "attention_mask": {0: "batch", 1: "tokens"},
                "embedding": {0: "batch"},
            },
        ),
    )
    return int(model.config.projection_dim)


class ClipOnnxEmbedder:
    def __init__(self, model_dir: Path, ref: ModelRef, cache_root: Path, threads: int = 0,
                 device: str = "cpu") -> None:
        from transformers import AutoConfig, AutoImageProcessor, AutoTokenizer

        model_dir = Path(model_dir)
        target = cache_dir_for(cache_root, ref)
        meta_path = target / "meta.json"
        if not (
            meta_path.is_file()
            and (target / "image.onnx").is_file()
            and (target / "text.onnx").is_file()
        ):
            dim = _export_towers(model_dir, target)
            meta_path.write_text(json.dumps({"dim": dim, "model": ref.id}))
        self.dim = int(json.loads(meta_path.read_text())["dim"])
        try:
            config = AutoConfig.from_pretrained(str(model_dir))
            self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
            self.processor = AutoImageProcessor.from_pretrained(str(model_dir))
        except Exception as exc:
            raise ModelLoadFailed(
                f"CLIP tokenizer/image processor in {model_dir} failed to load: {exc}"
            ) from exc
        self.max_tokens = int(config.text_config.max_position_embeddings)
        self.image_session = open_session(target / "image.onnx", threads, device)
        self.text_session = open_session(target / "text.onnx", threads, device)
        self.model = ModelRef(
            name=f"{CLIP_NAME}:{ref.name}", version=ref.version, source=ref.source
        )

    @classmethod
    def from_registry(
        cls,
        registry: ModelRegistry,
        cache_root: Path,
        spec: ModelSpec = DEFAULT_CLIP_SPEC,
        threads: int = 0,
        device: str = "cpu",
    ) -> ClipOnnxEmbedder:
        resolved = registry.resolve(spec)
        return cls(resolved.path, resolved.ref, cache_root, threads, device)

    def encode_images(self, images: Sequence[np.ndarray]) -> np.ndarray:
        chunks = [np.zeros((0, self.dim), dtype=np.float32)]
        for start in range(0, len(images), BATCH):
            batch = list(images[start : start + BATCH])
            pixels = self.processor(images=batch, return_tensors="np")["pixel_values"]
            out = self.image_session.run(None, {"pixel_values": pixels.astype(np.float32)})[0]
            chunks.append(np.asarray(out, dtype=np.float32))
        return l2_normalise(np.concatenate(chunks))

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        chunks = [np.zeros((0, self.dim), dtype=np.float32)]
        for start in range(0, len(texts), BATCH):
            encoded = self.tokenizer(
                list(texts[start : start + BATCH]),
                padding=True,
                truncation=True,
                max_length=self.max_tokens,
                return_tensors="np",
            )
            out = self.text_session.run(
                None,
                {
                    "input_ids": encoded["input_ids"].astype(np.int64),
                    "attention_mask": encoded["attention_mask"].astype(np.int64),
                },
            )[0]
            chunks.append(np.asarray(out, dtype=np.float32))
        return l2_normalise(np.concatenate(chunks))


@visual_embedders.register(CLIP_NAME)
def make_clip(
    registry: ModelRegistry,
    cache_dir: Path | str,
    *,
    threads: int | None = None,
    device: str = "cpu",
    spec: ModelSpec = DEFAULT_CLIP_SPEC,
) -> ClipOnnxEmbedder:
    return ClipOnnxEmbedder.from_registry(registry, Path(cache_dir), spec, threads or 0, device)
