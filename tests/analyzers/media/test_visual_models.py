"""CLIP and ResNet embedders: real loading, ONNX export and caching, on tiny models made here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from analyzers.base import JointTextImageEmbedder
from analyzers.media import (
    DEFAULT_CLIP_SPEC,
    ClipOnnxEmbedder,
    ImageAnalyzer,
    ResNetOnnxEmbedder,
    VisualEmbedder,
)
from analyzers.media.clip import CLIP_NAME
from analyzers.media.resnet import RESNET_NAME
from analyzers.model_registry import ModelRegistry
from core.errors import ModelLoadFailed, ModelNotAvailable
from core.registry import resolve, visual_embedders
from tests.analyzers.media import synth


@pytest.fixture(scope="module")
def tiny_clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer

    torch.manual_seed(0)
    directory = tmp_path_factory.mktemp("tiny-clip")
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for letter in "abcdefghijklmnopqrstuvwxyz":
        vocab[letter] = len(vocab)
        vocab[f"{letter}</w>"] = len(vocab)
    config = CLIPConfig(
        text_config={
            "vocab_size": len(vocab),
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "max_position_embeddings": 32,
            "bos_token_id": 0,
            "eos_token_id": 1,
            "pad_token_id": 1,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "image_size": 32,
            "patch_size": 8,
        },
        projection_dim=16,
    )
    CLIPModel(config).save_pretrained(directory)
    CLIPTokenizer(vocab=vocab, merges=[]).save_pretrained(directory)
    CLIPImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    ).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def resnet_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    import torchvision

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("resnet") / "resnet18-random.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    return path


def test_clip_loads_from_the_registry_exports_once_and_embeds(
    tiny_clip_dir: Path, tmp_path: Path
) -> None:
    import torch
    from transformers import CLIPModel

    registry = ModelRegistry(explicit_paths={"visual_clip": tiny_clip_dir})
    cache = tmp_path / "onnx"
    embedder = resolve(visual_embedders, CLIP_NAME)(registry, cache, threads=1)
    assert isinstance(embedder, ClipOnnxEmbedder)
    assert isinstance(embedder, JointTextImageEmbedder) and isinstance(embedder, VisualEmbedder)
    assert embedder.dim == 16
    assert embedder.model.id.startswith(f"{CLIP_NAME}:{DEFAULT_CLIP_SPEC.name}@")

    images = [synth.scene(1, 64, 80), synth.scene(2, 48, 48)]
    image_vectors = embedder.encode_images(images)
    text_vectors = embedder.encode_texts(["a red cat", "dog"])
    for vectors in (image_vectors, text_vectors):
        assert vectors.shape == (2, 16) and vectors.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)

    # The ONNX graphs compute what the transformers model computes.
    model = CLIPModel.from_pretrained(str(tiny_clip_dir)).eval()
    pixels = embedder.processor(images=images, return_tensors="pt")["pixel_values"]
    tokens = embedder.tokenizer(["a red cat", "dog"], padding=True, return_tensors="pt")
    with torch.no_grad():
        image_ref = model.get_image_features(pixel_values=pixels)
        text_ref = model.get_text_features(**tokens)
    for ref, ours in ((image_ref, image_vectors), (text_ref, text_vectors)):
        ref_array = getattr(ref, "pooler_output", ref).numpy()
        ref_array = ref_array / np.linalg.norm(ref_array, axis=1, keepdims=True)
        np.testing.assert_allclose(ours, ref_array, atol=1e-4)

    # Second load reuses the cached export instead of exporting again.
    exported = sorted(cache.rglob("*.onnx"))
    assert [p.name for p in exported] == ["image.onnx", "text.onnx"]
    stamps = [p.stat().st_mtime_ns for p in exported]
    again = ClipOnnxEmbedder.from_registry(registry, cache, threads=1)
    assert [p.stat().st_mtime_ns for p in exported] == stamps
    np.testing.assert_allclose(again.encode_images(images), image_vectors, atol=1e-6)
    meta = json.loads((exported[0].parent / "meta.json").read_text())
    assert meta["dim"] == 16


def test_clip_without_a_model_says_how_to_provide_it(tmp_path: Path) -> None:
    registry = ModelRegistry(explicit_paths={"visual_clip": tmp_path / "nowhere"})
    with pytest.raises(ModelNotAvailable, match="REELSIFT_MODEL_PATHS__VISUAL_CLIP"):
        ClipOnnxEmbedder.from_registry(registry, tmp_path / "cache")


def test_resnet_from_a_state_dict_file(resnet_weights: Path, tmp_path: Path) -> None:
    registry = ModelRegistry(explicit_paths={"visual_resnet": resnet_weights})
    embedder = resolve(visual_embedders, RESNET_NAME)(
        registry, tmp_path / "onnx", arch="resnet18", threads=1
    )
    assert isinstance(embedder, ResNetOnnxEmbedder) and isinstance(embedder, VisualEmbedder)
    assert embedder.dim == 512 and embedder.model.id.startswith(f"{RESNET_NAME}:resnet18@")
    vectors = embedder.encode_images([synth.scene(1), synth.scene(2, 300, 200)])
    assert vectors.shape == (2, 512)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)

    # The image analyzer takes any registered embedder.
    analyzer = ImageAnalyzer(embedder=embedder, nudity=None, faces=None)
    result = analyzer.analyze(synth.encode(synth.scene(3), ".jpg"))
    assert result.embedding is not None and result.embedding.dim == 512
    assert result.models["visual_embedding"] == embedder.model.id


def test_resnet_with_mismatched_weights_fails_clearly(resnet_weights: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelLoadFailed, match="does not match torchvision resnet50"):
        ResNetOnnxEmbedder.from_registry(
            ModelRegistry(explicit_paths={"visual_resnet": resnet_weights}),
            tmp_path / "onnx",
            arch="resnet50",
        )
