"""The video analyzer: keyframes at scene changes, each through the image analyzer, plus
the audio track through the audio analyzer.

Frames are decoded with OpenCV (FFmpeg backend) and sampled ``sample_fps`` times a second
(every ``round(fps / sample_fps)``-th frame; the others are grabbed, never converted).
Each sample's HSV histogram (16 hue x 4 sat x 4 value bins, at 160 px wide) is compared
with the previous sample's by Bhattacharyya distance. A sample becomes a keyframe when
  - it is the first frame ("start"),
  - the distance reaches ``scene_threshold`` and the current scene is at least
    ``min_scene_s`` old ("scene_change"), or
  - ``keyframe_interval_s`` passed since the last keyframe ("interval": the floor).
So a cut is found at the first sample after it, within one sampling step. Segment i runs
from keyframe i to keyframe i+1 (the last to the end of the video).

Video-level risk: ``sexual`` is the largest keyframe score with a time-range evidence
for every segment at or above 0.2; ``low_quality`` is the duration-weighted mean of the
keyframes' severities (one dark fade should not flag a whole video), with the low-quality
segments as evidence. The visual vector is the duration-weighted mean of the keyframe
vectors, L2-normalised. Audio comes from the first audio track, decoded with PyAV.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from analyzers.media.audio import AudioAnalyzer
from analyzers.media.audio_decode import decode_audio_av
from analyzers.media.image import ImageAnalyzer
from analyzers.media.limits import MediaLimits
from analyzers.media.quality import QUALITY_MODEL_ID
from analyzers.media.schemas import (
    AudioAnalysis,
    ImageAnalysis,
    ModalityVector,
    VideoAnalysis,
    VideoSegment,
)
from analyzers.media.sniff import MediaKind, MediaType, sniff_media_type
from core.contracts import Evidence, NotAssessed, RiskCategory, RiskScore
from core.errors import InvalidInput

HISTOGRAM_WIDTH = 160
SEXUAL_EVIDENCE_AT = 0.2
_SUFFIX = {
    MediaType.MP4: ".mp4",
    MediaType.MOV: ".mov",
    MediaType.WEBM: ".webm",
    MediaType.MKV: ".mkv",
    MediaType.AVI: ".avi",
}


@dataclass
class _Keyframe:
    t_ms: int
    cause: str
    distance: float | None
    image: ImageAnalysis


def _histogram(frame_bgr: np.ndarray) -> np.ndarray:
    import cv2

    height, width = frame_bgr.shape[:2]
    small = cv2.resize(
        frame_bgr,
        (HISTOGRAM_WIDTH, max(1, round(height * HISTOGRAM_WIDTH / width))),
        interpolation=cv2.INTER_AREA,
    )
    hsv = cv2.cvtColor(small, cv2.COLOR_BGR2HSV)
    hist = cv2.calcHist([hsv], [0, 1, 2], None, [16, 4, 4], [0, 180, 0, 256, 0, 256])
    return cv2.normalize(hist, hist, alpha=1.0, norm_type=cv2.NORM_L1)


class VideoAnalyzer:
    """``VideoAnalyzer().analyze(data) -> VideoAnalysis`` (or ``analyze_path(path)``)."""

    def __init__(
        self,
        image_analyzer: ImageAnalyzer | None = None,
        audio_analyzer: AudioAnalyzer | None = None,
        limits: MediaLimits | None = None,
        sample_fps: float = 4.0,
        keyframe_interval_s: float = 3.0,
        scene_threshold: float = 0.35,
        min_scene_s: float = 0.5,
    ) -> None:
        self.limits = limits or MediaLimits()
        self.image_analyzer = image_analyzer or ImageAnalyzer(limits=self.limits)
        self.audio_analyzer = audio_analyzer or AudioAnalyzer(limits=self.limits)
        self.sample_fps = sample_fps
        self.keyframe_interval_ms = int(keyframe_interval_s * 1000)
        self.scene_threshold = scene_threshold
        self.min_scene_ms = int(min_scene_s * 1000)

    def analyze(self, data: bytes) -> VideoAnalysis:
        self.limits.check_file_bytes(len(data))
        media_type = self._video_type(data)
        # OpenCV's FFmpeg backend reads from a path only.
        fd, name = tempfile.mkstemp(prefix="reelsift-video-", suffix=_SUFFIX.get(media_type, ""))
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            return self._analyze_file(Path(name), media_type)
        finally:
            Path(name).unlink(missing_ok=True)

    def analyze_path(self, path: Path) -> VideoAnalysis:
        path = Path(path)
        self.limits.check_file_bytes(path.stat().st_size)
        with path.open("rb") as handle:
            head = handle.read(512)
        return self._analyze_file(path, self._video_type(head))

    @staticmethod
    def _video_type(head: bytes) -> MediaType:
        media_type = sniff_media_type(head)
        if media_type.kind is not MediaKind.VIDEO:
            raise InvalidInput(
                f"expected a video but the bytes are {media_type.value}",
                media_type=media_type.value,
            )
        return media_type

    def _analyze_file(self, path: Path, media_type: MediaType) -> VideoAnalysis:
        keyframes, fps, width, height, decoded = self._keyframes(path, media_type)
        duration_ms = round(decoded / fps * 1000)
        segments = [
            VideoSegment(
                start_ms=key.t_ms,
                end_ms=max(
                    key.t_ms, keyframes[i + 1].t_ms if i + 1 < len(keyframes) else duration_ms
                ),
                keyframe_ms=key.t_ms,
                cause=key.cause,
                scene_change_distance=None if key.distance is None else round(key.distance, 4),
                image=key.image,
            )
            for i, key in enumerate(keyframes)
        ]
        not_assessed: list[NotAssessed] = []
        audio = self._audio(path, media_type, not_assessed)
        models = dict(keyframes[0].image.models)
        if audio is not None:
            models.update(audio.models)
        return VideoAnalysis(
            media_type=media_type.value,
            duration_ms=duration_ms,
            fps=round(fps, 3),
            width=width,
            height=height,
            frame_count=decoded,
            segments=segments,
            audio=audio,
            visual_embedding=_pooled_embedding(segments),
            risk=_video_risk(segments, duration_ms),
            not_assessed=not_assessed + list(keyframes[0].image.not_assessed),
            models=models,
        )

    def _keyframes(
        self, path: Path, media_type: MediaType
    ) -> tuple[list[_Keyframe], float, int, int, int]:
        import cv2

        capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
        try:
            if not capture.isOpened():
                raise _why_unreadable(path, media_type)
            fps = float(capture.get(cv2.CAP_PROP_FPS))
            width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
            height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
            declared_frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
            if not np.isfinite(fps) or not 0.0 < fps <= 1000.0:
                raise InvalidInput(
                    f"the {media_type.value} video declares no usable frame rate ({fps})",
                    media_type=media_type.value,
                )
            if width > 0 and height > 0:
                self.limits.check_image_pixels(width, height)
            if declared_frames > 0:
                self.limits.check_video_frames(declared_frames)
                self.limits.check_video_seconds(declared_frames / fps)
            step = max(1, round(fps / self.sample_fps))
            max_frames = min(
                self.limits.max_video_frames, int(self.limits.max_video_seconds * fps) + 1
            )
            keyframes: list[_Keyframe] = []
            previous: np.ndarray | None = None
            index = 0
            while capture.grab():
                if index >= max_frames:
                    self.limits.check_video_frames(index + 1)
                    self.limits.check_video_seconds((index + 1) / fps)
                if index % step == 0:
                    ok, frame = capture.retrieve()
                    if ok and frame is not None:
                        t_ms = round(index / fps * 1000)
                        histogram = _histogram(frame)
                        distance = (
                            None
                            if previous is None
                            else float(
                                cv2.compareHist(previous, histogram, cv2.HISTCMP_BHATTACHARYYA)
                            )
                        )
                        previous = histogram
                        cause = self._keyframe_cause(keyframes, t_ms, distance)
                        if cause is not None:
                            rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
                            image = self.image_analyzer.analyze_array(
                                rgb, t_ms=t_ms, media_type=media_type.value
                            )
                            keyframes.append(_Keyframe(t_ms, cause, distance, image))
                            width, height = frame.shape[1], frame.shape[0]
                index += 1
        finally:
            capture.release()
        if not keyframes:
            raise InvalidInput(
                f"the {media_type.value} video has no decodable frames", media_type=media_type.value
            )
        return keyframes, fps, width, height, index

    def _keyframe_cause(
        self, keyframes: list[_Keyframe], t_ms: int, distance: float | None
    ) -> str | None:
        if not keyframes:
            return "start"
        since = t_ms - keyframes[-1].t_ms
        if distance is not None and distance >= self.scene_threshold and since >= self.min_scene_ms:
            return "scene_change"
        if since >= self.keyframe_interval_ms:
            return "interval"
        return None

    def _audio(
        self, path: Path, media_type: MediaType, not_assessed: list[NotAssessed]
    ) -> AudioAnalysis | None:
        try:
            decoded = decode_audio_av(
                str(path),
                media_type,
                self.limits,
                required=False,
                max_seconds=self.limits.max_video_seconds,
            )
        except InvalidInput as exc:
            # A broken audio track should not hide what the pictures show.
            not_assessed.append(NotAssessed(output="audio", reason=exc.message))
            return None
        if decoded is None:
            not_assessed.append(NotAssessed(output="audio", reason="the video has no audio track"))
            return None
        return self.audio_analyzer.analyze_decoded(decoded)


def _why_unreadable(path: Path, media_type: MediaType) -> InvalidInput:
    """OpenCV only says "could not open"; FFmpeg (PyAV) can say why."""
    import av

    label = media_type.value
    try:
        with av.open(str(path)) as container:
            streams = container.streams.video
            if not streams:
                return InvalidInput(f"the {label} file has no video stream", media_type=label)
            if not streams[0].frames and next(container.demux(streams[0]), None) is None:
                return InvalidInput(f"the {label} video has no frames", media_type=label)
    except (av.FFmpegError, OSError, ValueError) as exc:
        # strerror leaves out the temporary file's path that str(exc) would show.
        reason = getattr(exc, "strerror", None) or str(exc)
        return InvalidInput(
            f"the {label} video's header is corrupt: {reason}", media_type=label, reason=reason
        )
    return InvalidInput(f"the {label} video could not be decoded", media_type=label)


def _durations(segments: list[VideoSegment]) -> np.ndarray:
    # A zero-length last segment (keyframe on the last frame) still counts a little.
    return np.array([max(s.end_ms - s.start_ms, 1) for s in segments], dtype=np.float64)


def _pooled_embedding(segments: list[VideoSegment]) -> ModalityVector | None:
    vectors = [s.image.embedding for s in segments]
    if any(v is None for v in vectors):
        return None
    present = [v for v in vectors if v is not None]
    stacked = np.stack([v.as_array() for v in present])
    pooled = (stacked * _durations(segments)[:, None]).sum(axis=0)
    pooled /= max(float(np.linalg.norm(pooled)), 1e-12)
    return ModalityVector.from_array("visual", present[0].model, pooled)


def _video_risk(segments: list[VideoSegment], duration_ms: int) -> list[RiskScore]:
    durations = _durations(segments)
    risks: list[RiskScore] = []

    sexual = [s.image.risk_for(RiskCategory.SEXUAL) for s in segments]
    assessed = [(s, r) for s, r in zip(segments, sexual, strict=True) if r and r.score is not None]
    if not assessed:
        reason = next((r.not_assessed_reason for r in sexual if r), None) or "no keyframe assessed"
        risks.append(
            RiskScore(category=RiskCategory.SEXUAL, score=None, not_assessed_reason=reason)
        )
    else:
        top = max(r.score or 0.0 for _, r in assessed)
        risks.append(
            RiskScore(
                category=RiskCategory.SEXUAL,
                score=top,
                model=assessed[0][1].model,
                evidence=[
                    Evidence(
                        kind="time_range",
                        start_ms=s.start_ms,
                        end_ms=s.end_ms,
                        detail=f"keyframe at {s.keyframe_ms} ms: sexual={r.score:.2f}",
                    )
                    for s, r in assessed
                    if (r.score or 0.0) >= SEXUAL_EVIDENCE_AT
                ],
            )
        )

    severities = np.array([s.image.quality.severity for s in segments])
    mean_severity = float((severities * durations).sum() / durations.sum())
    low_quality_segments = [s for s in segments if s.image.quality.low_quality]
    risks.append(
        RiskScore(
            category=RiskCategory.LOW_QUALITY,
            score=round(mean_severity, 4),
            model=QUALITY_MODEL_ID,
            evidence=[
                Evidence(
                    kind="time_range",
                    start_ms=s.start_ms,
                    end_ms=s.end_ms,
                    detail=", ".join(s.image.quality.reasons),
                )
                for s in low_quality_segments
            ]
            or [
                Evidence(
                    kind="time_range",
                    start_ms=0,
                    end_ms=duration_ms,
                    detail="no low-quality segment",
                )
            ],
        )
    )
    return risks
