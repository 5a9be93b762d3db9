"""Image analysis: perceptual hash, decoding with EXIF, descriptor, quality, faces, nudity."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from analyzers.media import (
    DESCRIPTOR_NAME,
    ImageAnalyzer,
    OpenCVDescriptorEmbedder,
    VisualEmbedder,
    decode_image,
    hamming_distance,
    is_near_duplicate,
    phash_hex,
)
from analyzers.media.faces import cross_check
from analyzers.media.nudity import NUDENET_LABELS, NudeNetDetector, sexual_risk
from analyzers.media.schemas import Box, Detection
from core.contracts import RiskCategory
from core.errors import ModelNotAvailable
from core.registry import resolve, visual_embedders
from tests.analyzers.media import synth


@pytest.fixture(scope="module")
def analyzer() -> ImageAnalyzer:
    return ImageAnalyzer(threads=1)


@pytest.fixture(scope="module")
def original() -> np.ndarray:
    return synth.scene(11)


def _jpeg_roundtrip(rgb: np.ndarray, quality: int) -> np.ndarray:
    return decode_image(synth.encode(rgb, ".jpg", quality)).rgb


def test_resized_recompressed_and_cropped_copies_are_near_duplicates(original: np.ndarray) -> None:
    reference = phash_hex(_jpeg_roundtrip(original, 95))
    half = cv2.resize(original, (320, 240), interpolation=cv2.INTER_AREA)
    copies = {
        "resized+recompressed": _jpeg_roundtrip(half, 55),
        "upscaled": cv2.resize(original, (1024, 768), interpolation=cv2.INTER_CUBIC),
        "cropped 4%": original[10:-10, 13:-13],
    }
    for name, copy in copies.items():
        distance = hamming_distance(reference, phash_hex(copy))
        assert is_near_duplicate(reference, phash_hex(copy)), f"{name}: {distance} bits"
    for seed in (12, 13, 14, 15):
        unrelated = phash_hex(synth.scene(seed))
        assert not is_near_duplicate(reference, unrelated)
        assert hamming_distance(reference, unrelated) > 16


def test_hamming_distance_counts_bits() -> None:
    assert hamming_distance(0, 0xFF) == 8
    assert hamming_distance("ffffffffffffffff", "0000000000000000") == 64
    assert hamming_distance("00000000000000f0", 0) == 4


def test_exif_orientation_is_applied() -> None:
    # A landscape image whose EXIF says "rotate 90 degrees clockwise to display".
    rgb = np.zeros((60, 100, 3), np.uint8)
    rgb[:, :50] = (255, 0, 0)  # left half red
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", exif=exif, quality=95)
    decoded = decode_image(buffer.getvalue())
    assert decoded.rgb.shape[:2] == (100, 60)
    assert (decoded.width, decoded.height) == (60, 100)
    # After the rotation the red half is on top.
    assert decoded.rgb[:50, :, 0].mean() > 200 and decoded.rgb[50:, :, 0].mean() < 50


def test_transparent_png_is_composited_on_white() -> None:
    rgba = np.zeros((20, 20, 4), np.uint8)  # fully transparent black
    buffer = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buffer, format="PNG")
    assert decode_image(buffer.getvalue()).rgb.min() == 255


def test_descriptor_layout_and_similarity(original: np.ndarray) -> None:
    embedder = resolve(visual_embedders, DESCRIPTOR_NAME)()
    assert isinstance(embedder, OpenCVDescriptorEmbedder)
    assert isinstance(embedder, VisualEmbedder)
    copy = _jpeg_roundtrip(cv2.resize(original, (320, 240), interpolation=cv2.INTER_AREA), 60)
    others = [synth.scene(s) for s in (21, 22, 23)]
    vectors = embedder.encode_images([original, copy, *others])
    assert vectors.shape == (5, 128) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(vectors[0], embedder.encode_images([original])[0], atol=1e-6)
    near = float(vectors[0] @ vectors[1])
    far = max(float(vectors[0] @ v) for v in vectors[2:])
    assert near > 0.95 and near > far + 0.1
    assert embedder.model.id == f"{DESCRIPTOR_NAME}@1"


def test_flat_grey_image_is_low_quality(analyzer: ImageAnalyzer) -> None:
    grey = np.full((480, 640, 3), 128, np.uint8)
    result = analyzer.analyze(synth.encode(grey, ".png"))
    assert result.quality.low_quality
    assert {"blurry", "low_contrast"} <= set(result.quality.reasons)
    risk = result.risk_for(RiskCategory.LOW_QUALITY)
    assert risk is not None and risk.score == 1.0 and "blurry" in (risk.evidence[0].detail or "")


def test_sharp_scene_is_not_low_quality_but_tiny_or_dark_ones_are(
    analyzer: ImageAnalyzer, original: np.ndarray
) -> None:
    assert not analyzer.analyze(synth.encode(original, ".jpg")).quality.low_quality
    tiny = cv2.resize(original, (80, 60), interpolation=cv2.INTER_AREA)
    assert "low_resolution" in analyzer.analyze(synth.encode(tiny, ".png")).quality.reasons
    dark = (original * 0.05).astype(np.uint8)
    assert "underexposed" in analyzer.analyze(synth.encode(dark, ".png")).quality.reasons


def test_full_analysis_of_a_jpeg(analyzer: ImageAnalyzer, original: np.ndarray) -> None:
    result = analyzer.analyze(synth.encode(original, ".jpg"))
    assert (result.media_type, result.width, result.height) == ("image/jpeg", 640, 480)
    assert len(result.phash) == 16
    assert result.embedding is not None and result.embedding.dim == 128
    sexual = result.risk_for(RiskCategory.SEXUAL)
    assert sexual is not None and sexual.score is not None and 0.0 <= sexual.score <= 1.0
    assert sexual.model is not None and sexual.model.startswith("nudenet.320n@")
    assert set(result.models) == {"quality", "visual_embedding", "nudity", "faces"}
    summary = result.summary()
    assert "values" not in summary["embedding"] and summary["embedding"]["dim"] == 128


def test_faces_are_counted_and_boxed_in_original_coordinates(analyzer: ImageAnalyzer) -> None:
    faces_rgb = synth.cartoon_faces()
    big = cv2.resize(faces_rgb, (1280, 960), interpolation=cv2.INTER_CUBIC)
    result = analyzer.analyze(synth.encode(big, ".png"))
    assert result.faces is not None and result.faces.haar_count == 2
    centres = sorted(
        (f.box.x + f.box.w / 2, f.box.y + f.box.h / 2)
        for f in result.faces.faces
        if "haar" in f.source
    )
    # Drawn at (200, 240) and (470, 230) in 640x480, so twice that in the upload.
    assert abs(centres[0][0] - 400) < 60 and abs(centres[1][0] - 940) < 60
    assert all(abs(cy - 470) < 80 for _, cy in centres)
    nothing = analyzer.analyze(synth.encode(np.full((240, 320, 3), 90, np.uint8), ".png"))
    assert nothing.faces is not None and nothing.faces.count == 0


def test_face_cross_check_merges_matching_boxes() -> None:
    haar = [Box(x=10, y=10, w=50, h=50), Box(x=200, y=10, w=40, h=40)]
    nudenet = [
        Detection(label="FACE_FEMALE", score=0.8, box=Box(x=12, y=12, w=48, h=50)),
        Detection(label="FACE_MALE", score=0.7, box=Box(x=400, y=300, w=30, h=30)),
        Detection(label="FEET_EXPOSED", score=0.9, box=Box(x=0, y=0, w=5, h=5)),
    ]
    report = cross_check(haar, nudenet)
    assert report.count == 3 and report.haar_count == 2 and report.nudenet_count == 2
    assert sorted(f.source for f in report.faces) == ["haar", "haar+nudenet", "nudenet"]
    assert report.agreement == pytest.approx(1 / 3, abs=1e-3)
    assert cross_check(haar, None).nudenet_count is None


def test_nudenet_labels_match_the_installed_package() -> None:
    import nudenet.nudenet as package

    assert tuple(vars(package)["__labels"]) == NUDENET_LABELS


def test_sexual_score_mapping_keeps_boxes_as_evidence() -> None:
    box = Box(x=1, y=2, w=3, h=4)
    detections = [
        Detection(label="FACE_FEMALE", score=0.99, box=box),
        Detection(label="BUTTOCKS_EXPOSED", score=0.8, box=box),
        Detection(label="FEMALE_BREAST_COVERED", score=0.9, box=box),
    ]
    risk = sexual_risk(detections, "nudenet.320n@x")
    assert risk.score == pytest.approx(0.7 * 0.8)
    assert [e.detail.split()[0] for e in risk.evidence if e.detail] == [
        "BUTTOCKS_EXPOSED",
        "FEMALE_BREAST_COVERED",
    ]
    assert risk.evidence[0].box == (1.0, 2.0, 3.0, 4.0)
    assert sexual_risk([Detection(label="FACE_MALE", score=0.9, box=box)], "m").score == 0.0


def test_nudenet_runs_on_pixels_and_scales_boxes(analyzer: ImageAnalyzer) -> None:
    assert analyzer.nudity is not None
    rgb = synth.cartoon_faces()
    small = analyzer.nudity.detect(rgb)
    doubled = analyzer.nudity.detect(rgb, scale=2.0)
    assert [d.label for d in small] == [d.label for d in doubled]
    for a, b in zip(small, doubled, strict=True):
        assert b.box.x == pytest.approx(2 * a.box.x, abs=0.2)
        assert 0 <= a.box.x <= 640 and 0 <= a.box.y <= 480


def test_missing_nudity_model_is_not_assessed_not_invented(tmp_path) -> None:
    with pytest.raises(ModelNotAvailable, match="does not exist"):
        NudeNetDetector(model_path=tmp_path / "missing.onnx")
    switched_off = ImageAnalyzer(nudity=None, faces=None, embedder=None)
    result = switched_off.analyze(synth.encode(synth.scene(1), ".jpg"))
    sexual = result.risk_for(RiskCategory.SEXUAL)
    assert sexual is not None and sexual.score is None and sexual.not_assessed_reason
    assert result.embedding is None and result.faces is None
    assert {n.output for n in result.not_assessed} == {"nudity", "faces", "visual_embedding"}
