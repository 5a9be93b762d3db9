"""The image analyzer: decode, hash, embed, detect nudity and faces, judge quality.

All analysis runs on a copy downscaled to ``analysis_side`` (640 px max side by default,
JPEG decoded at reduced DCT scale when the source is larger); boxes are reported in the
upright original's pixel coordinates. A detector that cannot load is reported as not
assessed (``RiskScore(score=None, not_assessed_reason=...)``) and the rest still runs.
"""

from __future__ import annotations

from typing import Final, Literal, Protocol

import numpy as np

from analyzers.media.decode import decode_image, resize_max_side
from analyzers.media.faces import HaarFaceDetector, cross_check
from analyzers.media.limits import MediaLimits
from analyzers.media.nudity import NudeNetDetector, not_assessed_sexual, sexual_risk
from analyzers.media.phash import phash_hex
from analyzers.media.quality import (
    QUALITY_MODEL_ID,
    QualityThresholds,
    assess_quality,
    quality_risk,
)
from analyzers.media.schemas import Box, Detection, ImageAnalysis, ModalityVector
from analyzers.media.visual import OpenCVDescriptorEmbedder, VisualEmbedder
from core.contracts import ModelRef, NotAssessed, RiskScore
from core.errors import ModelLoadFailed, ModelNotAvailable

DEFAULT_ANALYSIS_SIDE = 640
DEFAULT: Final = "default"
Default = Literal["default"]


class NudityDetector(Protocol):
    """``NudeNetDetector`` here, or its client where the model runs in a model service."""

    model: ModelRef

    def detect(self, rgb: np.ndarray, scale: float = 1.0) -> list[Detection]: ...


class FaceDetector(Protocol):
    """``HaarFaceDetector`` here, or its client where the cascade runs in a model service."""

    model: ModelRef

    def detect(self, rgb: np.ndarray, scale: float = 1.0) -> list[Box]: ...


class ImageAnalyzer:
    """``ImageAnalyzer().analyze(data) -> ImageAnalysis``.

    Pass ``embedder``/``nudity``/``faces`` to swap components, ``None`` to switch one off
    (its output is then reported as not assessed), or leave ``"default"``: the OpenCV
    descriptor, NudeNet's bundled detector and OpenCV's Haar cascade. A default detector
    that cannot load is reported as not assessed, not fatal.
    """

    def __init__(
        self,
        embedder: VisualEmbedder | Default | None = DEFAULT,
        nudity: NudityDetector | Default | None = DEFAULT,
        faces: FaceDetector | Default | None = DEFAULT,
        limits: MediaLimits | None = None,
        analysis_side: int = DEFAULT_ANALYSIS_SIDE,
        quality_thresholds: QualityThresholds | None = None,
        threads: int = 0,
    ) -> None:
        self.limits = limits or MediaLimits()
        self.analysis_side = analysis_side
        self.quality_thresholds = quality_thresholds or QualityThresholds()
        self.unavailable: dict[str, str] = {}

        self.embedder: VisualEmbedder | None = (
            OpenCVDescriptorEmbedder() if isinstance(embedder, str) else embedder
        )
        if self.embedder is None:
            self.unavailable["visual_embedding"] = "no visual embedder configured"

        self.nudity: NudityDetector | None = None
        if nudity is None:
            self.unavailable["nudity"] = "no nudity detector configured"
        elif not isinstance(nudity, str):
            self.nudity = nudity
        else:
            try:
                self.nudity = NudeNetDetector(threads=threads)
            except (ModelNotAvailable, ModelLoadFailed) as exc:
                self.unavailable["nudity"] = exc.message

        self.faces: FaceDetector | None = None
        if faces is None:
            self.unavailable["faces"] = "no face detector configured"
        elif not isinstance(faces, str):
            self.faces = faces
        else:
            try:
                self.faces = HaarFaceDetector()
            except ModelNotAvailable as exc:
                self.unavailable["faces"] = exc.message

    def analyze(self, data: bytes) -> ImageAnalysis:
        decoded = decode_image(data, self.limits, max_side=self.analysis_side)
        return self._analyze(
            decoded.rgb, decoded.width, decoded.height, decoded.media_type.value, None
        )

    def analyze_array(
        self, rgb: np.ndarray, t_ms: int | None = None, media_type: str = "image/raw"
    ) -> ImageAnalysis:
        """Analyse an RGB (H, W, 3) uint8 frame, e.g. a video keyframe at ``t_ms``."""
        height, width = rgb.shape[:2]
        self.limits.check_image_pixels(width, height)
        small = resize_max_side(np.ascontiguousarray(rgb), self.analysis_side)
        return self._analyze(small, width, height, media_type, t_ms)

    def _analyze(
        self, rgb: np.ndarray, width: int, height: int, media_type: str, t_ms: int | None
    ) -> ImageAnalysis:
        scale = width / rgb.shape[1]
        not_assessed = [NotAssessed(output=k, reason=v) for k, v in self.unavailable.items()]
        models: dict[str, str] = {"quality": QUALITY_MODEL_ID}

        embedding = None
        if self.embedder is not None:
            vector = self.embedder.encode_images([rgb])[0]
            embedding = ModalityVector.from_array("visual", self.embedder.model.id, vector)
            models["visual_embedding"] = self.embedder.model.id

        detections: list[Detection] | None = None
        risk: list[RiskScore] = []
        if self.nudity is not None:
            detections = self.nudity.detect(rgb, scale=scale)
            risk.append(sexual_risk(detections, self.nudity.model.id))
            models["nudity"] = self.nudity.model.id
        else:
            risk.append(not_assessed_sexual(self.unavailable["nudity"]))

        face_report = None
        if self.faces is not None:
            face_report = cross_check(self.faces.detect(rgb, scale=scale), detections)
            models["faces"] = self.faces.model.id

        quality = assess_quality(rgb, width, height, self.quality_thresholds)
        risk.append(quality_risk(quality))
        return ImageAnalysis(
            media_type=media_type,
            width=width,
            height=height,
            t_ms=t_ms,
            phash=phash_hex(rgb),
            embedding=embedding,
            faces=face_report,
            quality=quality,
            detections=detections or [],
            risk=risk,
            not_assessed=not_assessed,
            models=models,
        )
