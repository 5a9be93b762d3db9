"""Media made in the tests: images with NumPy/OpenCV, audio with NumPy + soundfile, video
with cv2.VideoWriter and its audio muxed in with PyAV. Deterministic (seeded)."""

from __future__ import annotations

import io
import itertools
from collections.abc import Iterable, Iterator
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import soundfile

SR = 16_000


# ---------------------------------------------------------------- images


def scene(seed: int, height: int = 480, width: int = 640) -> np.ndarray:
    """A photo-like RGB scene: gradient sky, textured ground, random shapes."""
    rng = np.random.default_rng(seed)
    y = np.linspace(0, 1, height)[:, None, None]
    top, bottom = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    image = (top * (1 - y) + bottom * y).repeat(width, axis=1).astype(np.float32)
    texture = cv2.GaussianBlur(rng.normal(0, 1, (height, width)).astype(np.float32), (0, 0), 1)
    image += texture[:, :, None] * 30
    for _ in range(12):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        if rng.random() < 0.5:
            radius = int(rng.integers(15, 90))
            cv2.circle(image, centre, radius, colour, -1, lineType=cv2.LINE_AA)
        else:
            size = (int(rng.integers(20, 160)), int(rng.integers(20, 160)))
            far = (centre[0] + size[0], centre[1] + size[1])
            cv2.rectangle(image, centre, far, colour, -1, lineType=cv2.LINE_AA)
    return np.clip(image, 0, 255).astype(np.uint8)


def cartoon_faces(height: int = 480, width: int = 640) -> np.ndarray:
    """Two drawn frontal faces (eyes, brows, nose, mouth, hair) that Haar cascades find."""
    image = np.full((height, width, 3), (90, 120, 150), np.uint8)
    for cx, cy, s in ((200, 240, 110), (470, 230, 90)):
        cv2.ellipse(image, (cx, cy), (int(0.75 * s), s), 0, 0, 360, (190, 160, 140), -1)
        cv2.ellipse(
            image,
            (cx, cy - int(0.95 * s)),
            (int(0.8 * s), int(0.35 * s)),
            0,
            180,
            360,
            (40, 30, 20),
            -1,
        )
        for side in (-1, 1):
            ex, ey = cx + side * int(0.32 * s), cy - int(0.2 * s)
            cv2.ellipse(
                image, (ex, ey), (int(0.17 * s), int(0.08 * s)), 0, 0, 360, (250, 250, 250), -1
            )
            cv2.circle(image, (ex, ey), int(0.07 * s), (30, 20, 20), -1)
            cv2.line(
                image,
                (ex - int(0.18 * s), ey - int(0.16 * s)),
                (ex + int(0.18 * s), ey - int(0.18 * s)),
                (50, 35, 25),
                max(2, s // 20),
            )
        cv2.line(
            image,
            (cx, cy - int(0.1 * s)),
            (cx - int(0.06 * s), cy + int(0.18 * s)),
            (150, 120, 100),
            max(2, int(0.03 * s)),
        )
        cv2.ellipse(
            image,
            (cx, cy + int(0.45 * s)),
            (int(0.25 * s), int(0.08 * s)),
            0,
            0,
            360,
            (150, 60, 60),
            -1,
        )
    return cv2.GaussianBlur(image, (0, 0), 2)


def encode(rgb: np.ndarray, ext: str = ".jpg", quality: int = 90) -> bytes:
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if ext == ".jpg" else []
    ok, buffer = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    assert ok
    return buffer.tobytes()


# ---------------------------------------------------------------- audio


def tone(
    freq: float = 440.0, seconds: float = 3.0, amplitude: float = 0.5, sr: int = SR
) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def speech_like(seconds: float = 4.0, sr: int = SR, seed: int = 0) -> np.ndarray:
    """Syllables at ~4 Hz: voiced formant bursts, fricative noise, and short pauses."""
    from scipy.signal import lfilter

    rng = np.random.default_rng(seed)
    out: list[np.ndarray] = []
    total = 0
    while total < seconds * sr:
        voiced_n = int(rng.uniform(0.10, 0.18) * sr)
        f0 = rng.uniform(110, 200)
        t = np.arange(voiced_n) / sr
        phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.05 * np.sin(2 * np.pi * 3 * t))) / sr
        source = np.sign(np.sin(phase)) * 0.5 + rng.normal(0, 0.02, voiced_n)
        voiced = np.zeros(voiced_n)
        for formant in (rng.uniform(500, 800), rng.uniform(1000, 1800), 2500.0):
            r = np.exp(-np.pi * 120 / sr)
            theta = 2 * np.pi * formant / sr
            voiced += lfilter([1 - r], [1, -2 * r * np.cos(theta), r * r], source)
        voiced *= np.hanning(voiced_n)
        fricative_n = int(rng.uniform(0.03, 0.07) * sr)
        fricative = rng.normal(0, 0.15, fricative_n) * np.hanning(fricative_n)
        fricative = np.diff(fricative, prepend=0.0)  # tilt towards high frequencies
        pause = np.zeros(int(rng.uniform(0.04, 0.12) * sr))
        for part in (voiced, fricative, pause):
            out.append(part)
            total += len(part)
    signal = np.concatenate(out)[: int(seconds * sr)]
    return (0.4 * signal / np.max(np.abs(signal))).astype(np.float32)


def music_like(seconds: float = 4.0, sr: int = SR, seed: int = 0) -> np.ndarray:
    """Sustained triads changing every half second, with overtones and a soft beat."""
    rng = np.random.default_rng(seed)
    notes = 440.0 * 2 ** (np.array([-9, -5, -2, 0, 3, 7]) / 12)
    n = int(seconds * sr)
    t = np.arange(n) / sr
    signal = np.zeros(n)
    step = sr // 2
    for start in range(0, n, step):
        chord = rng.choice(notes, 3, replace=False)
        segment = t[start : start + step]
        for f in chord:
            for k, weight in ((1, 1.0), (2, 0.5), (3, 0.25)):
                signal[start : start + step] += weight * np.sin(2 * np.pi * f * k * segment)
    beat = (np.sin(2 * np.pi * 2 * t) > 0.95) * rng.normal(0, 0.3, n)
    signal += beat
    return (0.3 * signal / np.max(np.abs(signal))).astype(np.float32)


def wav_bytes(samples: np.ndarray, sr: int = SR, subtype: str = "PCM_16") -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, sr, format="WAV", subtype=subtype)
    return buffer.getvalue()


# ---------------------------------------------------------------- video


def write_video(
    path: Path,
    frames: Iterable[np.ndarray],
    fps: float,
    audio: np.ndarray | None = None,
    audio_sr: int = 44_100,
) -> Path:
    """RGB frames -> MP4 (mp4v) with cv2.VideoWriter; audio (mono float) muxed with PyAV."""
    import av

    stream = iter(frames)
    first = next(stream)
    height, width = first.shape[:2]
    silent = path.with_suffix(".silent.mp4") if audio is not None else path
    writer = cv2.VideoWriter(str(silent), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    assert writer.isOpened()
    for frame in itertools.chain([first], stream):
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    if audio is None:
        return path
    with av.open(str(silent)) as source, av.open(str(path), "w") as target:
        video_in = source.streams.video[0]
        video_out = target.add_stream_from_template(video_in)
        audio_out = target.add_stream("aac", rate=audio_sr, layout="mono")
        for packet in source.demux(video_in):
            if packet.dts is None:
                continue
            packet.stream = video_out
            target.mux(packet)
        pcm = audio.astype(np.float32).reshape(1, -1)
        chunk = 1024
        for start in range(0, pcm.shape[1], chunk):
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(pcm[:, start : start + chunk]), format="fltp", layout="mono"
            )
            frame.sample_rate = audio_sr
            frame.pts = start
            frame.time_base = Fraction(1, audio_sr)
            for packet in audio_out.encode(frame):
                target.mux(packet)
        for packet in audio_out.encode(None):
            target.mux(packet)
    silent.unlink()
    return path


def cut_frames(
    n_frames: int, cut_at: int, height: int = 360, width: int = 640, seed: int = 1
) -> Iterator[np.ndarray]:
    """A slowly panning scene that cuts to a different scene at frame ``cut_at``."""
    first, second = scene(seed, height, width + 200), scene(seed + 100, height, width + 200)
    for i in range(n_frames):
        source = first if i < cut_at else second
        offset = i % 200
        yield np.ascontiguousarray(source[:, offset : offset + width])
