"""The ONNX text encoder: float vectors independent of batching; the int8 variant with its
own model id, close to the float vectors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from analyzers.model_registry import ModelRegistry
from analyzers.text_embedding import MINILM, OnnxTextEmbedder
from core.contracts import weights_id
from core.errors import ModelLoadFailed

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / "var" / "test-cache"  # shared with the other tests: exports are derived data

TEXTS = [
    "short",
    "The central bank held interest rates at 4% and signalled cuts later in the year.",
    "Lionel Messi scored twice for Inter Miami in Fort Lauderdale, Florida.",
    "Add two cups of flour, a pinch of salt and bake for forty minutes at 180 degrees.",
    "a somewhat longer sentence about trains and weather in spring " * 6,
]


@pytest.fixture(scope="module")
def float_and_int8() -> tuple[OnnxTextEmbedder, OnnxTextEmbedder]:
    resolved = ModelRegistry().resolve(MINILM)
    return (
        OnnxTextEmbedder(resolved, CACHE, threads=1),
        OnnxTextEmbedder(resolved, CACHE, threads=1, precision="int8"),
    )


def test_int8_is_a_model_of_its_own_on_the_same_weights(float_and_int8):
    fp32, int8 = float_and_int8
    assert int8.model.id == f"{fp32.model.id}+int8"
    assert weights_id(int8.model.id) == weights_id(fp32.model.id) == fp32.model.id
    assert any((CACHE / "onnx").glob("*-int8.onnx"))


def test_int8_vectors_stay_close_to_the_float_ones(float_and_int8):
    fp32, int8 = float_and_int8
    a, b = fp32.encode(TEXTS), int8.encode(TEXTS)
    assert b.shape == a.shape and b.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
    # Measured on 512 DBpedia abstracts: cosine 0.981 at worst, 0.9925 on average.
    cosine = np.sum(a * b, axis=1)
    assert cosine.min() >= 0.97
    # What the vectors are for still holds: a paraphrase is nearer than another topic.
    near, paraphrase, other = int8.encode([
        "The football team won the championship last night.",
        "Last night the soccer club claimed the title.",
        "Add two cups of flour and bake for forty minutes.",
    ])
    assert float(near @ paraphrase) > float(near @ other) + 0.2


def test_int8_token_vectors_pool_like_the_float_ones(float_and_int8):
    fp32, int8 = float_and_int8
    a, b = fp32.encode_with_tokens(TEXTS[1:3]), int8.encode_with_tokens(TEXTS[1:3])
    for ours, theirs, off_a, off_b in zip(
        b.token_vectors, a.token_vectors, b.offsets, a.offsets, strict=True
    ):
        np.testing.assert_array_equal(off_a, off_b)  # the same word pieces
        unit = ours / np.linalg.norm(ours, axis=1, keepdims=True)
        ref = theirs / np.linalg.norm(theirs, axis=1, keepdims=True)
        assert np.median(np.sum(unit * ref, axis=1)) >= 0.95


def test_unknown_precision_is_refused_by_name():
    with pytest.raises(ModelLoadFailed, match="float16"):
        OnnxTextEmbedder(ModelRegistry().resolve(MINILM), CACHE, precision="float16")


def test_only_a_precision_suffix_names_the_same_weights():
    assert weights_id("m@0.1.0+int8") == "m@0.1.0"
    assert weights_id("m@0.1.0+build7") == "m@0.1.0+build7"  # another local version
    assert weights_id("m@0.1.0") == "m@0.1.0"


def test_an_int8_vector_does_not_depend_on_the_texts_beside_it(float_and_int8):
    _, int8 = float_and_int8
    together = int8.encode(TEXTS)
    alone = np.stack([int8.encode([text])[0] for text in TEXTS])
    np.testing.assert_array_equal(together, alone)


def test_float_vectors_do_not_depend_on_the_batch_size(float_and_int8):
    fp32, _ = float_and_int8
    assert fp32.batch_size == 8  # CPU: short length-sorted batches waste least on padding
    try:
        fp32.batch_size = 2  # three batches of TEXTS, each padded to its own longest
        small = fp32.encode_with_tokens(TEXTS)
        fp32.batch_size = len(TEXTS)  # one batch, padded to the longest of all
        one_batch = fp32.encode_with_tokens(TEXTS)
    finally:
        fp32.batch_size = 8
    np.testing.assert_allclose(small.vectors, one_batch.vectors, atol=1e-5)
    for a, b in zip(small.token_vectors, one_batch.token_vectors, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4)
