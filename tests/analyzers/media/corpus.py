"""A corpus of bad uploads, generated (never checked in): each must give a coded error.

``bad_inputs(tmp_dir)`` returns one ``BadInput`` per case with the error class the
analyzers must raise and a fragment its message must contain.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from core.errors import InvalidInput, PayloadTooLarge, ReelsiftError, UnsupportedMediaType
from tests.analyzers.media import synth


@dataclass(frozen=True)
class BadInput:
    name: str
    data: bytes
    filename: str
    error: type[ReelsiftError]
    message: str  # a fragment the error message must contain


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_bomb(width: int = 50_000, height: int = 50_000) -> bytes:
    """A well-formed PNG header declaring width x height, with a tiny compressed body.

    Deflate of all-zero rows compresses ~1000:1, which is what makes real bombs work; a
    few kilobytes are enough here because it must be refused from the header alone.
    """
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    idat = zlib.compress(b"\x00" * (width + 1) * 4, 9)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def broken_wav() -> bytes:
    """A RIFF/WAVE file whose fmt chunk declares a nonsense format and zero channels."""
    good = synth.wav_bytes(synth.tone(seconds=0.5))
    fmt = good.index(b"fmt ")
    broken = bytearray(good)
    broken[fmt + 8 : fmt + 12] = struct.pack("<HH", 0x7777, 0)  # format tag, channels
    return bytes(broken)


def nan_wav() -> bytes:
    samples = synth.tone(seconds=0.5)
    samples[1000:1100] = np.nan
    return synth.wav_bytes(samples, subtype="FLOAT")


def corrupt_mp4(tmp_dir: Path) -> bytes:
    """A real MP4 whose boxes after ``ftyp`` are overwritten with garbage."""
    path = synth.write_video(tmp_dir / "corrupt-source.mp4", synth.cut_frames(6, 3, 64, 64), 10)
    data = bytearray(path.read_bytes())
    ftyp_end = struct.unpack(">I", data[:4])[0]
    rng = np.random.default_rng(7)
    data[ftyp_end:] = rng.integers(0, 256, len(data) - ftyp_end, dtype=np.uint8).tobytes()
    return bytes(data)


def video_without_frames(tmp_dir: Path) -> bytes:
    """What cv2.VideoWriter leaves when it is released before any frame is written."""
    path = tmp_dir / "no-frames.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, (64, 64))
    writer.release()
    return path.read_bytes()


def bad_inputs(tmp_dir: Path) -> list[BadInput]:
    jpeg = synth.encode(synth.scene(3), ".jpg")
    png = synth.encode(synth.scene(4), ".png")
    return [
        BadInput(
            "truncated_jpeg",
            jpeg[: len(jpeg) * 6 // 10],
            "photo.jpg",
            InvalidInput,
            "could not decode the image/jpeg",
        ),
        BadInput(
            "truncated_png",
            png[: len(png) * 6 // 10],
            "photo.png",
            InvalidInput,
            "could not decode the image/png",
        ),
        BadInput("png_bomb", png_bomb(), "bomb.png", PayloadTooLarge, "max_image_pixels"),
        BadInput("zero_bytes", b"", "empty.jpg", InvalidInput, "empty"),
        BadInput(
            "text_named_jpg",
            b"this is a plain text file, not a picture\n" * 4,
            "notes.jpg",
            UnsupportedMediaType,
            "supported: images: JPEG",
        ),
        BadInput("broken_wav_header", broken_wav(), "voice.wav", InvalidInput, "audio/wav"),
        BadInput("nan_audio", nan_wav(), "nan.wav", InvalidInput, "NaN or infinite"),
        BadInput("corrupt_mp4_header", corrupt_mp4(tmp_dir), "clip.mp4", InvalidInput, "corrupt"),
        BadInput(
            "video_without_frames",
            video_without_frames(tmp_dir),
            "empty.mp4",
            InvalidInput,
            "no video stream",
        ),
        BadInput(
            "path_traversal_name",
            jpeg,
            "../../etc/passwd.jpg",
            InvalidInput,
            "contains a path",
        ),
    ]
