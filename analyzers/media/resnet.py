"""A torchvision ResNet from a local weights file (``state_dict`` .pth), exported to ONNX.

The classifier head is replaced by identity, so the vector is the pooled penultimate
layer (512 dims for resnet18/34, 2048 for resnet50+), L2-normalised. Input goes through
torchvision's own ImageNet transforms (resize 256, centre crop 224, normalise), and the
network runs in onnxruntime from ``cache_dir/<name>-<version>/resnet.onnx``, exported on
first use. The weights file is resolved through ``analyzers.model_registry`` (role
``visual_resnet``: set its path in settings); its fingerprint is the model version.
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
from core.errors import InvalidConfig, ModelLoadFailed
from core.registry import visual_embedders

RESNET_NAME = "reelsift.visual.resnet_onnx.v1"
ARCHITECTURES = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
BATCH = 16


def resnet_spec(arch: str = "resnet50") -> ModelSpec:
    return ModelSpec(role="visual_resnet", name=f"torchvision.{arch}")


def _load_state_dict(weights_path: Path) -> dict[str, Any]:
    import torch

    try:
        loaded = torch.load(str(weights_path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelLoadFailed(f"ResNet weights {weights_path} could not be read: {exc}") from exc
    if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, dict):
        raise ModelLoadFailed(
            f"{weights_path} holds a {type(loaded).__name__}, not a state_dict; save it with "
            "torch.save(model.state_dict(), path)"
        )
    return loaded


def _export(weights_path: Path, arch: str, target: Path) -> int:
    import torch
    import torchvision

    model = torchvision.models.get_model(arch, weights=None)
    try:
        model.load_state_dict(_load_state_dict(weights_path))
    except RuntimeError as exc:
        raise ModelLoadFailed(
            f"{weights_path} does not match torchvision {arch}: {exc}", arch=arch
        ) from exc
    dim = int(model.fc.in_features)
    model.fc = torch.nn.Identity()
    export_once(
        target,
        lambda path: torch_to_onnx(
            model,
            (torch.zeros(1, 3, 224, 224),),
            path,
            ["pixel_values"],
            ["embedding"],
            {"pixel_values": {0: "batch"}, "embedding": {0: "batch"}},
        ),
    )
    return dim


class ResNetOnnxEmbedder:
    def __init__(
        self,
        weights_path: Path,
        ref: ModelRef,
        cache_root: Path,
        arch: str = "resnet50",
        threads: int = 0,
        device: str = "cpu",
    ) -> None:
        from torchvision.transforms import v2

        if arch not in ARCHITECTURES:
            raise InvalidConfig(f"unknown ResNet architecture {arch!r}; use one of {ARCHITECTURES}")
        weights_path = Path(weights_path)
        if weights_path.is_dir():
            candidates = sorted(weights_path.glob("*.pth")) + sorted(weights_path.glob("*.pt"))
            if not candidates:
                raise ModelLoadFailed(f"no .pth/.pt weights file in {weights_path}")
            weights_path = candidates[0]
        target_dir = cache_dir_for(cache_root, ref)
        onnx_path = target_dir / f"{arch}.onnx"
        meta_path = target_dir / f"{arch}.json"
        if not (onnx_path.is_file() and meta_path.is_file()):
            dim = _export(weights_path, arch, onnx_path)
            meta_path.write_text(json.dumps({"dim": dim, "arch": arch, "model": ref.id}))
        self.dim = int(json.loads(meta_path.read_text())["dim"])
        self.session = open_session(onnx_path, threads, device)
        self.transform = v2.Compose(
            [
                v2.ToImage(),
                v2.Resize(256, antialias=True),
                v2.CenterCrop(224),
                v2.ToDtype(_float32(), scale=True),
                v2.Normalize(mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD)),
            ]
        )
        self.model = ModelRef(name=f"{RESNET_NAME}:{arch}", version=ref.version, source=ref.source)

    @classmethod
    def from_registry(
        cls,
        registry: ModelRegistry,
        cache_root: Path,
        arch: str = "resnet50",
        spec: ModelSpec | None = None,
        threads: int = 0,
        device: str = "cpu",
    ) -> ResNetOnnxEmbedder:
        resolved = registry.resolve(spec or resnet_spec(arch))
        return cls(resolved.path, resolved.ref, cache_root, arch, threads, device)

    def encode_images(self, images: Sequence[np.ndarray]) -> np.ndarray:
        import torch

        chunks = [np.zeros((0, self.dim), dtype=np.float32)]
        for start in range(0, len(images), BATCH):
            # torch wants writable memory; decoded arrays can be read-only views.
            batch = torch.stack(
                [
                    self.transform(image if image.flags.writeable else image.copy())
                    for image in images[start : start + BATCH]
                ]
            )
            out = self.session.run(None, {"pixel_values": batch.numpy()})[0]
            chunks.append(np.asarray(out, dtype=np.float32))
        return l2_normalise(np.concatenate(chunks))


def _float32() -> Any:
    import torch

    return torch.float32


@visual_embedders.register(RESNET_NAME)
def make_resnet(
    registry: ModelRegistry,
    cache_dir: Path | str,
    *,
    threads: int | None = None,
    device: str = "cpu",
    arch: str = "resnet50",
    spec: ModelSpec | None = None,
) -> ResNetOnnxEmbedder:
    return ResNetOnnxEmbedder.from_registry(registry, Path(cache_dir), arch, spec, threads or 0,
                                            device)
