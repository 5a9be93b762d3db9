"""Sniffing from bytes, header sizes, limits, safe names, and the bad-input corpus."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest
import soundfile
from PIL import Image

from analyzers.media import MediaAnalyzer, MediaLimits, MediaType, safe_filename, sniff_media_type
from analyzers.media.decode import decode_image
from analyzers.media.sniff import image_dimensions
from core.errors import InvalidInput, PayloadTooLarge, ReelsiftError, UnsupportedMediaType
from tests.analyzers.media import synth
from tests.analyzers.media.corpus import bad_inputs, png_bomb


def _pil_bytes(rgb: np.ndarray, fmt: str, **kwargs: object) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def _audio_bytes(fmt: str, subtype: str | None, rate: int = 16_000) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, synth.tone(seconds=0.3, sr=rate), rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


def _video_bytes(tmp_path: Path, ext: str, fourcc: str) -> bytes:
    path = tmp_path / f"v{ext}"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 10, (64, 48))
    for i in range(3):
        writer.write(np.full((48, 64, 3), i * 60, np.uint8))
    writer.release()
    return path.read_bytes()


@pytest.fixture(scope="module")
def rgb() -> np.ndarray:
    return synth.scene(5, 120, 160)


def test_images_are_sniffed_from_bytes_and_their_header_sizes_read(rgb: np.ndarray) -> None:
    cases = {
        MediaType.JPEG: synth.encode(rgb, ".jpg"),
        MediaType.PNG: synth.encode(rgb, ".png"),
        MediaType.GIF: _pil_bytes(rgb, "GIF"),
    }
    webps = [_pil_bytes(rgb, "WEBP"), _pil_bytes(rgb, "WEBP", lossless=True)]
    webps.append(_pil_bytes(np.dstack([rgb, np.full(rgb.shape[:2], 128, np.uint8)]), "WEBP"))
    for media_type, data in [*cases.items(), *((MediaType.WEBP, w) for w in webps)]:
        assert sniff_media_type(data) is media_type
        assert image_dimensions(data, media_type) == (160, 120), media_type
    # The three WebP flavours: lossy (VP8), lossless (VP8L), extended with alpha (VP8X).
    assert {w[12:16] for w in webps} == {b"VP8 ", b"VP8L", b"VP8X"}


def test_audio_and_video_are_sniffed_from_bytes(tmp_path: Path) -> None:
    assert sniff_media_type(synth.wav_bytes(synth.tone(seconds=0.1))) is MediaType.WAV
    assert sniff_media_type(_audio_bytes("FLAC", None)) is MediaType.FLAC
    assert sniff_media_type(_audio_bytes("OGG", "VORBIS")) is MediaType.OGG
    assert sniff_media_type(_audio_bytes("MP3", "MPEG_LAYER_III")) is MediaType.MP3
    assert sniff_media_type(_video_bytes(tmp_path, ".mp4", "mp4v")) is MediaType.MP4
    assert sniff_media_type(_video_bytes(tmp_path, ".mov", "mp4v")) is MediaType.MOV
    assert sniff_media_type(_video_bytes(tmp_path, ".avi", "MJPG")) is MediaType.AVI
    assert sniff_media_type(_video_bytes(tmp_path, ".mkv", "XVID")) is MediaType.MKV
    assert sniff_media_type(b"\x1a\x45\xdf\xa3\x9f\x42\x82\x84webm" + bytes(16)) is MediaType.WEBM
    assert MediaType.WEBM.kind.value == "video"


def test_name_and_declared_type_are_ignored(rgb: np.ndarray) -> None:
    wav = synth.wav_bytes(synth.tone(seconds=0.1))
    assert sniff_media_type(wav) is MediaType.WAV  # whatever it is called
    with pytest.raises(InvalidInput, match="expected an image but the bytes are audio/wav"):
        decode_image(wav)


def test_heif_is_refused_by_name() -> None:
    heic = struct.pack(">I", 24) + b"ftypheic" + b"\x00\x00\x00\x00" + b"mif1heic"
    with pytest.raises(UnsupportedMediaType, match="HEIF/AVIF") as info:
        sniff_media_type(heic + bytes(64))
    assert info.value.status == 415


def test_png_bomb_is_refused_from_its_header_before_decoding(monkeypatch) -> None:
    from PIL import ImageFile

    def decode_attempted(*args: object, **kwargs: object) -> None:
        raise AssertionError("the bomb reached the decoder")

    monkeypatch.setattr(ImageFile.ImageFile, "load", decode_attempted)
    with pytest.raises(PayloadTooLarge) as info:
        decode_image(png_bomb())
    assert info.value.details["limit"] == "max_image_pixels"
    assert info.value.details["value"] == 50_000 * 50_000
    assert info.value.status == 413


def test_each_limit_names_itself() -> None:
    limits = MediaLimits(
        max_file_bytes=100,
        max_image_pixels=10,
        max_audio_seconds=1,
        max_video_seconds=2,
        max_video_frames=3,
    )
    checks = [
        (lambda: limits.check_file_bytes(101), PayloadTooLarge, "max_file_bytes"),
        (lambda: limits.check_image_pixels(4, 4), PayloadTooLarge, "max_image_pixels"),
        (lambda: limits.check_audio_seconds(1.5), InvalidInput, "max_audio_seconds"),
        (lambda: limits.check_video_seconds(2.5), InvalidInput, "max_video_seconds"),
        (lambda: limits.check_video_frames(4), InvalidInput, "max_video_frames"),
    ]
    for check, error, name in checks:
        with pytest.raises(error, match=name) as info:
            check()
        assert info.value.details["limit"] == name
    limits.check_image_pixels(2, 5)  # at the limit is allowed
    with pytest.raises(InvalidInput):
        limits.check_image_pixels(0, 10)


def test_large_image_is_refused_under_a_small_limit(rgb: np.ndarray) -> None:
    data = synth.encode(rgb, ".png")
    with pytest.raises(PayloadTooLarge, match="max_file_bytes"):
        decode_image(data, MediaLimits(max_file_bytes=len(data) - 1))
    with pytest.raises(PayloadTooLarge, match="max_image_pixels"):
        decode_image(data, MediaLimits(max_image_pixels=160 * 120 - 1))


@pytest.mark.parametrize(
    "name",
    ["../../etc/passwd", "..", "a/b.jpg", "C:\\x.jpg", "dir\\x.png", "x\x00.jpg", "..hidden"],
)
def test_path_like_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidInput):
        safe_filename(name)


def test_odd_names_are_cleaned() -> None:
    assert safe_filename("holiday photo (1).JPG") == "holiday photo (1).JPG"
    assert safe_filename("bad\x07name?.png") == "badname_.png"
    assert safe_filename("été.jpg") == "été.jpg"
    long = safe_filename("a" * 400 + ".jpeg")
    assert long.endswith(".jpeg") and len(long.encode()) <= 255


@pytest.fixture(scope="module")
def analyzer() -> MediaAnalyzer:
    return MediaAnalyzer()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    return {case.name: case for case in bad_inputs(tmp_path_factory.mktemp("corpus"))}


CASES = [
    "truncated_jpeg",
    "truncated_png",
    "png_bomb",
    "zero_bytes",
    "text_named_jpg",
    "broken_wav_header",
    "nan_audio",
    "corrupt_mp4_header",
    "video_without_frames",
    "path_traversal_name",
]


def test_corpus_covers_every_case(corpus: dict[str, object]) -> None:
    assert sorted(corpus) == sorted(CASES)


@pytest.mark.parametrize("name", CASES)
def test_bad_input_gives_a_clear_coded_error(
    name: str, corpus: dict[str, object], analyzer: MediaAnalyzer
) -> None:
    case = corpus[name]
    with pytest.raises(ReelsiftError) as info:
        analyzer.analyze(case.data, filename=case.filename)  # type: ignore[attr-defined]
    error = info.value
    assert type(error) is case.error, f"{name}: {error!r}"  # type: ignore[attr-defined]
    assert case.message in error.message, error.message  # type: ignore[attr-defined]
    body = error.to_dict()
    assert body["code"] in {"E101", "E102", "E103"} and body["message"]
