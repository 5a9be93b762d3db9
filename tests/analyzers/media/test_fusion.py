"""The fused item vector: dimension, normalisation, geometry, model bookkeeping."""

from __future__ import annotations

import numpy as np
import pytest

from analyzers.fusion import FUSED_DIM, FUSION_NAME, ItemFuser, fuse, pool, projection_matrix
from analyzers.media import ModalityVector
from core.errors import InvalidConfig, InvalidInput

TEXT = "sentence-transformers/all-MiniLM-L6-v2@0.1"
VISUAL = "reelsift.visual.opencv_descriptor.v1@1"
AUDIO = "reelsift.audio.librosa_features.v1@1"


def _unit(rng: np.random.Generator, dim: int) -> np.ndarray:
    vector = rng.standard_normal(dim).astype(np.float32)
    return vector / np.linalg.norm(vector)


@pytest.fixture
def fuser() -> ItemFuser:
    return ItemFuser(text_model=TEXT, visual_model=VISUAL, audio_model=AUDIO)


def test_fused_vector_is_256_d_unit_and_keeps_components(fuser: ItemFuser) -> None:
    rng = np.random.default_rng(0)
    text = ModalityVector.from_array("text", TEXT, _unit(rng, 384))
    visual = ModalityVector.from_array("visual", VISUAL, _unit(rng, 128))
    audio = ModalityVector.from_array("audio", AUDIO, _unit(rng, 88))
    fused = fuser.fuse({"text": text, "visual": visual, "audio": audio})
    assert fused.dim == FUSED_DIM == len(fused.values)
    assert np.linalg.norm(fused.as_array()) == pytest.approx(1.0, abs=1e-5)
    assert fused.modalities == ["audio", "text", "visual"]
    assert sum(fused.weights.values()) == pytest.approx(1.0)
    assert fused.components["visual"] == visual
    assert fused.fusion_model == fuser.model.id and fused.fusion_model.startswith(FUSION_NAME)


def test_text_only_items_fuse_to_their_projected_text(fuser: ItemFuser) -> None:
    rng = np.random.default_rng(1)
    a, b = _unit(rng, 384), _unit(rng, 384)
    b_near = a + 0.2 * b
    b_near /= np.linalg.norm(b_near)
    fused_a = fuse(fuser, text=a).as_array()
    assert fuse(fuser, text=a).weights == {"text": 1.0}
    # Similar texts stay similar, unrelated ones stay unrelated (inner products kept).
    assert float(fused_a @ fuse(fuser, text=b_near).as_array()) == pytest.approx(
        float(a @ b_near), abs=0.1
    )
    assert abs(float(fused_a @ fuse(fuser, text=b).as_array())) < 0.25


def test_small_inputs_are_embedded_isometrically() -> None:
    matrix = projection_matrix("visual", VISUAL, 128)
    assert matrix.shape == (128, FUSED_DIM)
    np.testing.assert_allclose(matrix @ matrix.T, np.eye(128), atol=1e-5)
    np.testing.assert_array_equal(matrix, projection_matrix("visual", VISUAL, 128))
    assert not np.allclose(matrix, projection_matrix("visual", "other@1", 128))


def test_same_item_from_the_same_models_gives_the_same_vector(fuser: ItemFuser) -> None:
    rng = np.random.default_rng(2)
    text, visual = _unit(rng, 384), ModalityVector.from_array("visual", VISUAL, _unit(rng, 128))
    first = fuse(fuser, text=text, visual=visual).as_array()
    np.testing.assert_array_equal(first, fuse(fuser, text=text, visual=visual).as_array())
    # Adding a modality moves the vector, but only part of the way.
    text_only = fuse(fuser, text=text).as_array()
    assert 0.5 < float(first @ text_only) < 0.99


def test_fusion_id_changes_with_any_component_model() -> None:
    base = ItemFuser(text_model=TEXT, visual_model=VISUAL)
    assert base.model.id != ItemFuser(text_model=TEXT, visual_model="clip@2").model.id
    assert base.model.id != ItemFuser(text_model="other@1", visual_model=VISUAL).model.id
    assert base.model.id == ItemFuser(text_model=TEXT, visual_model=VISUAL).model.id


def test_vectors_from_another_model_are_refused(fuser: ItemFuser) -> None:
    stray = ModalityVector.from_array("visual", "clip@9", np.ones(16, np.float32) / 4)
    with pytest.raises(InvalidInput, match="configured for"):
        fuser.fuse({"visual": stray})
    with pytest.raises(InvalidInput, match="at least one modality"):
        fuser.fuse({})
    with pytest.raises(InvalidConfig):
        ItemFuser(text_model=None)


def test_pool_averages_vectors_of_one_model() -> None:
    a = ModalityVector.from_array("visual", VISUAL, np.array([1, 0, 0], np.float32))
    b = ModalityVector.from_array("visual", VISUAL, np.array([0, 1, 0], np.float32))
    pooled = pool([a, b]).as_array()
    np.testing.assert_allclose(pooled, [2**-0.5, 2**-0.5, 0], atol=1e-6)
    with pytest.raises(InvalidInput, match="different models"):
        pool([a, ModalityVector.from_array("visual", "x@1", np.ones(3, np.float32))])
