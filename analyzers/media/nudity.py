"""Nudity detection with NudeNet's ONNX detector, mapped to a ``sexual`` risk score.

The model file (``320n.onnx``, a YOLOv8-n trained on 18 body-part classes) ships inside
the ``nudenet`` wheel; this module runs it through onnxruntime with NudeNet's own
preprocessing (pad to square at bottom/right, resize to 320, RGB / 255) and its
post-processing (class score >= 0.2, NMS at IoU 0.45), vectorised instead of NudeNet's
per-row Python loop.

Mapping to ``sexual``: each detection contributes ``weight(class) * confidence`` and the
score is the largest contribution. Weights (documented policy, not learned):
  1.0  FEMALE_GENITALIA_EXPOSED, MALE_GENITALIA_EXPOSED, ANUS_EXPOSED
  0.9  FEMALE_BREAST_EXPOSED
  0.7  BUTTOCKS_EXPOSED
  0.25 FEMALE_GENITALIA_COVERED, FEMALE_BREAST_COVERED, BUTTOCKS_COVERED, ANUS_COVERED
  0    faces, feet, armpits, belly, male breast (not sexual on their own)
Every contributing box is kept as evidence.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from analyzers.inference_device import confirm_providers, onnx_providers
from analyzers.media.onnx_export import session_options
from analyzers.media.schemas import Box, Detection
from core.contracts import Evidence, ModelRef, RiskCategory, RiskScore
from core.errors import ModelLoadFailed, ModelNotAvailable

NUDENET_LABELS: tuple[str, ...] = (
    "FEMALE_GENITALIA_COVERED",
    "FACE_FEMALE",
    "BUTTOCKS_EXPOSED",
    "FEMALE_BREAST_EXPOSED",
    "FEMALE_GENITALIA_EXPOSED",
    "MALE_BREAST_EXPOSED",
    "ANUS_EXPOSED",
    "FEET_EXPOSED",
    "BELLY_COVERED",
    "FEET_COVERED",
    "ARMPITS_COVERED",
    "ARMPITS_EXPOSED",
    "FACE_MALE",
    "BELLY_EXPOSED",
    "MALE_GENITALIA_EXPOSED",
    "ANUS_COVERED",
    "FEMALE_BREAST_COVERED",
    "BUTTOCKS_COVERED",
)
FACE_LABELS = frozenset({"FACE_FEMALE", "FACE_MALE"})

SEXUAL_WEIGHTS: dict[str, float] = {
    "FEMALE_GENITALIA_EXPOSED": 1.0,
    "MALE_GENITALIA_EXPOSED": 1.0,
    "ANUS_EXPOSED": 1.0,
    "FEMALE_BREAST_EXPOSED": 0.9,
    "BUTTOCKS_EXPOSED": 0.7,
    "FEMALE_GENITALIA_COVERED": 0.25,
    "FEMALE_BREAST_COVERED": 0.25,
    "BUTTOCKS_COVERED": 0.25,
    "ANUS_COVERED": 0.25,
}

INPUT_SIZE = 320
SCORE_THRESHOLD = 0.2
NMS_SCORE_THRESHOLD = 0.25  # NudeNet's own value
NMS_THRESHOLD = 0.45


def _bundled_model_path() -> Path:
    spec = importlib.util.find_spec("nudenet")
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotAvailable(
            "NudeNet is not installed, so nudity is not assessed; `pip install nudenet`",
            model="nudenet",
        )
    return Path(next(iter(spec.submodule_search_locations))) / "320n.onnx"


class NudeNetDetector:
    """Runs NudeNet's detector; raises ``ModelNotAvailable`` when the model file is absent."""

    def __init__(self, model_path: Path | None = None, threads: int = 0,
                 device: str = "cpu") -> None:
        import onnxruntime as ort

        path = Path(model_path) if model_path is not None else _bundled_model_path()
        if not path.is_file():
            raise ModelNotAvailable(
                f"NudeNet model file {path} does not exist, so nudity is not assessed; "
                "install the `nudenet` wheel or point model_path at 320n.onnx",
                model="nudenet",
                path=str(path),
            )
        try:
            version = importlib.metadata.version("nudenet") if model_path is None else "file"
        except importlib.metadata.PackageNotFoundError:
            version = "file"
        providers = onnx_providers(device)
        try:
            self.session = ort.InferenceSession(
                str(path), sess_options=session_options(threads), providers=providers
            )
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelLoadFailed(f"NudeNet model {path} failed to load: {exc}") from exc
        confirm_providers(self.session, providers, "NudeNet")
        self.input_name = self.session.get_inputs()[0].name
        self.model = ModelRef(name="nudenet.320n", version=version, source=f"path:{path}")

    def detect(self, rgb: np.ndarray, scale: float = 1.0) -> list[Detection]:
        """Detections on ``rgb``; boxes multiplied by ``scale`` into original coordinates."""
        height, width = rgb.shape[:2]
        [output] = self.run([nudity_input(rgb)])
        return nudity_detections(output, width, height, scale)

    def run(self, inputs: Sequence[np.ndarray]) -> np.ndarray:
        """The network's raw output, (images, 4 + classes, anchors), for ``nudity_input``
        images: the only step that needs the model (the nudity model service runs it)."""
        blob = np.stack([(i.astype(np.float32) / 255.0).transpose(2, 0, 1) for i in inputs])
        return np.asarray(self.session.run(None, {self.input_name: blob})[0])


def nudity_input(rgb: np.ndarray) -> np.ndarray:
    """``rgb`` padded to a square and resized to the detector's input (uint8)."""
    import cv2

    height, width = rgb.shape[:2]
    side = max(height, width)
    padded = cv2.copyMakeBorder(
        rgb, 0, side - height, 0, side - width, cv2.BORDER_CONSTANT, value=(0, 0, 0)
    )
    return np.asarray(
        cv2.resize(padded, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_LINEAR)
    )


def nudity_detections(
    output: np.ndarray, width: int, height: int, scale: float = 1.0
) -> list[Detection]:
    """One image's raw output -> detections (score threshold, NMS), boxes in the
    ``width`` x ``height`` image's pixels multiplied by ``scale``."""
    import cv2

    side = max(height, width)
    rows = np.asarray(output).T  # (anchors, 4 + classes)
    class_scores = rows[:, 4:]
    best = class_scores.argmax(axis=1)
    best_score = class_scores[np.arange(len(rows)), best]
    keep = best_score >= SCORE_THRESHOLD
    if not keep.any():
        return []
    cx, cy, bw, bh = (rows[keep, i] for i in range(4))
    factor = side / INPUT_SIZE
    x = np.clip((cx - bw / 2) * factor, 0, width)
    y = np.clip((cy - bh / 2) * factor, 0, height)
    w = np.minimum(bw * factor, width - x)
    h = np.minimum(bh * factor, height - y)
    boxes = np.stack([x, y, w, h], axis=1)
    scores = best_score[keep]
    classes = best[keep]
    indices = cv2.dnn.NMSBoxes(
        boxes.tolist(), scores.tolist(), NMS_SCORE_THRESHOLD, NMS_THRESHOLD
    )
    detections = []
    for index in np.asarray(indices).reshape(-1):
        bx, by, bwid, bhei = (float(v) * scale for v in boxes[index])
        detections.append(
            Detection(
                label=NUDENET_LABELS[int(classes[index])],
                score=round(float(np.clip(scores[index], 0.0, 1.0)), 4),
                box=Box(x=round(bx, 1), y=round(by, 1), w=round(bwid, 1), h=round(bhei, 1)),
            )
        )
    return detections


def sexual_risk(detections: list[Detection], model_id: str) -> RiskScore:
    """The documented class-weight mapping from NudeNet detections to a ``sexual`` score."""
    contributions = [
        (SEXUAL_WEIGHTS.get(d.label, 0.0) * d.score, d)
        for d in detections
        if SEXUAL_WEIGHTS.get(d.label, 0.0) > 0.0
    ]
    contributions.sort(key=lambda item: item[0], reverse=True)
    score = contributions[0][0] if contributions else 0.0
    return RiskScore(
        category=RiskCategory.SEXUAL,
        score=round(float(score), 4),
        model=model_id,
        evidence=[
            Evidence(
                kind="image_box",
                box=d.box.as_tuple(),
                detail=f"{d.label} confidence={d.score:.2f} weight={SEXUAL_WEIGHTS[d.label]}",
            )
            for _, d in contributions
        ],
    )


def not_assessed_sexual(reason: str) -> RiskScore:
    return RiskScore(category=RiskCategory.SEXUAL, score=None, not_assessed_reason=reason)
