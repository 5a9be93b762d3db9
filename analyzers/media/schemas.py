"""What the media analyzers return: pydantic models, JSON-ready.

Vectors travel inside the analysis as ``ModalityVector`` (model id + values) so that the
caller can store them in the embeddings table under the model that made them;
``summary()`` drops them for the ``analyses`` JSON, where they would only be bulk.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from core.contracts import NotAssessed, RiskCategory, RiskScore


class ModalityVector(BaseModel):
    """One L2-normalised vector and the model (name@version) that produced it."""

    model_config = ConfigDict(protected_namespaces=())

    modality: str
    model: str
    dim: int
    values: list[float]

    @classmethod
    def from_array(cls, modality: str, model: str, vector: np.ndarray) -> ModalityVector:
        flat = np.asarray(vector, dtype=np.float32).reshape(-1)
        return cls(modality=modality, model=model, dim=int(flat.shape[0]), values=flat.tolist())

    def as_array(self) -> np.ndarray:
        return np.asarray(self.values, dtype=np.float32)


class Box(BaseModel):
    """x, y, w, h in pixels of the upright (EXIF-rotated) original image."""

    x: float
    y: float
    w: float
    h: float

    def as_tuple(self) -> tuple[float, float, float, float]:
        return (self.x, self.y, self.w, self.h)


class Detection(BaseModel):
    label: str
    score: float = Field(ge=0.0, le=1.0)
    box: Box


class Face(BaseModel):
    box: Box
    source: str = Field(description="haar, nudenet, or haar+nudenet when both agree")


class FaceReport(BaseModel):
    count: int
    faces: list[Face]
    haar_count: int
    nudenet_count: int | None = Field(description="None when NudeNet did not run")
    agreement: float | None = Field(
        default=None, description="share of faces both detectors found (IoU >= 0.3)"
    )


class QualityReport(BaseModel):
    width: int
    height: int
    blur_variance: float = Field(description="variance of the Laplacian at 512 px max side")
    brightness_mean: float = Field(description="mean luma, 0..255")
    contrast_std: float = Field(description="std of luma, 0..255")
    dark_clipped_share: float = Field(description="share of pixels with luma <= 5")
    bright_clipped_share: float = Field(description="share of pixels with luma >= 250")
    severity: float = Field(ge=0.0, le=1.0)
    low_quality: bool
    reasons: list[str]


class ImageAnalysis(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    media_type: str
    width: int
    height: int
    t_ms: int | None = Field(default=None, description="position in a video, for keyframes")
    phash: str = Field(description="64-bit DCT perceptual hash, 16 hex digits")
    embedding: ModalityVector | None
    faces: FaceReport | None
    quality: QualityReport
    detections: list[Detection] = Field(default_factory=list, description="NudeNet boxes")
    risk: list[RiskScore]
    not_assessed: list[NotAssessed] = Field(default_factory=list)
    models: dict[str, str] = Field(default_factory=dict, description="role -> model id")

    def risk_for(self, category: RiskCategory) -> RiskScore | None:
        return next((r for r in self.risk if r.category == category), None)

    def summary(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude={"embedding": {"values"}})


class SpeechMusicEstimate(BaseModel):
    label: str = Field(description="speech, music or silence")
    speech_probability: float | None = Field(
        description="heuristic estimate in [0, 1]; None for silence"
    )
    low_energy_ratio: float
    high_zcr_ratio: float
    modulation_4hz: float


class Transcript(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    text: str
    model: str
    analysis: Any | None = Field(default=None, description="what the text analyzer returned")


class AudioAnalysis(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    media_type: str
    duration_ms: int
    sample_rate: int = Field(description="analysis sample rate (the audio is resampled)")
    source_sample_rate: int | None
    source_channels: int | None
    loudness_dbfs: float = Field(description="RMS level, 20*log10(rms), full scale = 1.0")
    peak_dbfs: float
    silence_ratio: float = Field(description="share of 64 ms frames below -50 dBFS")
    tempo_bpm: float | None
    speech_music: SpeechMusicEstimate
    embedding: ModalityVector
    transcript: Transcript | None = None
    not_assessed: list[NotAssessed] = Field(default_factory=list)
    models: dict[str, str] = Field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude={"embedding": {"values"}})


class VideoSegment(BaseModel):
    start_ms: int
    end_ms: int
    keyframe_ms: int
    cause: str = Field(description="start, scene_change or interval")
    scene_change_distance: float | None
    image: ImageAnalysis


class VideoAnalysis(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    media_type: str
    duration_ms: int
    fps: float
    width: int
    height: int
    frame_count: int = Field(description="frames actually decoded")
    segments: list[VideoSegment]
    audio: AudioAnalysis | None
    visual_embedding: ModalityVector | None = Field(
        description="duration-weighted mean of keyframe vectors, L2-normalised"
    )
    risk: list[RiskScore]
    not_assessed: list[NotAssessed] = Field(default_factory=list)
    models: dict[str, str] = Field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        exclude: dict[str, Any] = {
            "visual_embedding": {"values"},
            "segments": {"__all__": {"image": {"embedding": {"values"}}}},
            "audio": {"embedding": {"values"}},
        }
        return self.model_dump(mode="json", exclude=exclude)
