"""Audio bytes (or a container's audio track) to mono float32 at a fixed sample rate.

WAV, FLAC, OGG and MP3 go through libsndfile (``soundfile``), which reads the header
first, so the duration limit is checked before any sample is decoded; M4A and the audio
tracks of videos go through FFmpeg (``av``), resampled and down-mixed inside FFmpeg.
Non-finite samples (NaN/inf in float WAVs) are refused: every feature downstream would
silently turn into NaN.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np

from analyzers.media.limits import MediaLimits
from analyzers.media.sniff import MediaKind, MediaType, sniff_media_type
from core.errors import InvalidInput

ANALYSIS_SAMPLE_RATE = 16_000
_SOUNDFILE_TYPES = {MediaType.WAV, MediaType.FLAC, MediaType.OGG, MediaType.MP3}


@dataclass(frozen=True)
class DecodedAudio:
    samples: np.ndarray  # (n,) float32 mono at sample_rate
    sample_rate: int
    media_type: MediaType
    source_sample_rate: int | None
    source_channels: int | None

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate


def decode_audio(
    data: bytes, limits: MediaLimits | None = None, sample_rate: int = ANALYSIS_SAMPLE_RATE
) -> DecodedAudio:
    limits = limits or MediaLimits()
    limits.check_file_bytes(len(data))
    media_type = sniff_media_type(data)
    if media_type.kind is not MediaKind.AUDIO:
        raise InvalidInput(
            f"expected audio but the bytes are {media_type.value}", media_type=media_type.value
        )
    if media_type in _SOUNDFILE_TYPES:
        try:
            return _decode_soundfile(data, media_type, limits, sample_rate)
        except InvalidInput:
            if media_type in (MediaType.WAV, MediaType.FLAC):
                raise
            # Some libsndfile builds lack MP3/Opus; FFmpeg reads them all.
    decoded = decode_audio_av(io.BytesIO(data), media_type, limits, sample_rate, required=True)
    assert decoded is not None  # required=True raises instead of returning None
    return decoded


def _decode_soundfile(
    data: bytes, media_type: MediaType, limits: MediaLimits, sample_rate: int
) -> DecodedAudio:
    import soundfile

    try:
        info = soundfile.info(io.BytesIO(data))
        if info.samplerate <= 0 or info.channels <= 0:
            raise InvalidInput(
                f"the {media_type.value} header declares {info.channels} channels at "
                f"{info.samplerate} Hz",
                media_type=media_type.value,
            )
        limits.check_audio_seconds(info.frames / info.samplerate)
        samples, source_rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, ValueError, TypeError) as exc:
        # error_string is libsndfile's own words, without the BytesIO repr around them.
        detail = getattr(exc, "error_string", None) or str(exc)
        raise InvalidInput(
            f"could not decode the {media_type.value} audio (broken header or data): {detail}",
            media_type=media_type.value,
        ) from exc
    channels = int(samples.shape[1])
    mono = finite_mono(samples, media_type)
    return DecodedAudio(
        samples=resample(mono, int(source_rate), sample_rate),
        sample_rate=sample_rate,
        media_type=media_type,
        source_sample_rate=int(source_rate),
        source_channels=channels,
    )


def finite_mono(samples: np.ndarray, media_type: MediaType | str) -> np.ndarray:
    label = media_type.value if isinstance(media_type, MediaType) else media_type
    if samples.size == 0:
        raise InvalidInput(f"the {label} audio has no samples", media_type=label)
    if not np.isfinite(samples).all():
        bad = int(np.count_nonzero(~np.isfinite(samples)))
        raise InvalidInput(
            f"the {label} audio contains {bad} NaN or infinite samples", media_type=label
        )
    mono = samples.mean(axis=1) if samples.ndim == 2 else samples
    return np.ascontiguousarray(mono, dtype=np.float32)


def resample(samples: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    """What ``librosa.resample(res_type="soxr_hq")`` computes (soxr's high quality, then
    fixed to ``ceil(n * ratio)`` samples), without importing librosa: librosa brings numba
    and LLVM (210 MB resident), and API workers resample every audio upload."""
    if source_rate == target_rate:
        return samples
    import soxr

    resampled = soxr.resample(samples, source_rate, target_rate, quality="soxr_hq")
    size = int(np.ceil(samples.shape[-1] * (float(target_rate) / source_rate)))
    if len(resampled) < size:
        resampled = np.pad(resampled, (0, size - len(resampled)))
    return np.asarray(resampled[:size], dtype=np.float32)


def decode_audio_av(
    source: Any,
    media_type: MediaType,
    limits: MediaLimits,
    sample_rate: int = ANALYSIS_SAMPLE_RATE,
    required: bool = True,
    max_seconds: float | None = None,
) -> DecodedAudio | None:
    """The first audio track of ``source`` (a path or file object) through FFmpeg.

    ``required=False`` returns None when there is no audio track (a silent video).
    ``max_seconds`` overrides the audio limit (a video's track follows the video limit).
    """
    import av

    label = media_type.value
    limit_s = limits.max_audio_seconds if max_seconds is None else max_seconds
    limit_name = "max_audio_seconds" if max_seconds is None else "max_video_seconds"
    try:
        container = av.open(source, mode="r")
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise InvalidInput(
            f"could not open the {label} container: {exc}", media_type=label
        ) from exc
    try:
        if not container.streams.audio:
            if required:
                raise InvalidInput(f"the {label} file has no audio track", media_type=label)
            return None
        stream = container.streams.audio[0]
        declared_s = _declared_seconds(container, stream)
        if declared_s is not None and declared_s > limit_s:
            raise InvalidInput(
                f"the {label} audio is {declared_s:.1f} s long; the limit {limit_name} is "
                f"{limit_s:g}",
                limit=limit_name,
                value=round(declared_s, 3),
                maximum=limit_s,
            )
        stream.thread_type = "AUTO"
        source_rate = stream.codec_context.sample_rate or None
        source_channels = stream.codec_context.channels or None
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        chunks: list[np.ndarray] = []
        decoded = 0
        max_samples = int(limit_s * sample_rate) + sample_rate
        try:
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunk = out.to_ndarray().reshape(-1)
                    chunks.append(chunk)
                    decoded += len(chunk)
                if decoded > max_samples:
                    raise InvalidInput(
                        f"the {label} audio is longer than {limit_s:g} s",
                        limit=limit_name,
                        maximum=limit_s,
                    )
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
        except av.FFmpegError as exc:
            raise InvalidInput(
                f"the {label} audio track could not be decoded: {exc}", media_type=label
            ) from exc
    finally:
        container.close()
    samples = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
    mono = finite_mono(samples, label)
    return DecodedAudio(
        samples=mono,
        sample_rate=sample_rate,
        media_type=media_type,
        source_sample_rate=source_rate,
        source_channels=source_channels,
    )


def _declared_seconds(container: Any, stream: Any) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return float(container.duration) / 1_000_000  # AV_TIME_BASE
    return None
