"""What a file is, from its bytes alone, and how big an image says it is, from its header.

The declared content type and the file name are never trusted: an upload named
``cat.jpg`` that starts with ``RIFF....WAVE`` is audio. Image dimensions are read from
the format's own header (PNG IHDR, JPEG SOF, WebP VP8/VP8L/VP8X, GIF logical screen)
without decoding a pixel, so a decompression bomb is refused before it can allocate.
"""

from __future__ import annotations

import struct
from enum import StrEnum

from analyzers.media.limits import MediaLimits
from core.errors import InvalidInput, UnsupportedMediaType


class MediaKind(StrEnum):
    IMAGE = "image"
    AUDIO = "audio"
    VIDEO = "video"


class MediaType(StrEnum):
    JPEG = "image/jpeg"
    PNG = "image/png"
    WEBP = "image/webp"
    GIF = "image/gif"
    WAV = "audio/wav"
    FLAC = "audio/flac"
    MP3 = "audio/mpeg"
    OGG = "audio/ogg"
    M4A = "audio/mp4"
    MP4 = "video/mp4"
    MOV = "video/quicktime"
    WEBM = "video/webm"
    MKV = "video/x-matroska"
    AVI = "video/x-msvideo"

    @property
    def kind(self) -> MediaKind:
        return MediaKind(self.value.split("/", 1)[0])


SUPPORTED_DESCRIPTION = (
    "images: JPEG, PNG, WebP, GIF; audio: WAV, FLAC, MP3, OGG (Vorbis/Opus), M4A; "
    "video: MP4, MOV, WebM, MKV, AVI"
)

# ISO base media brands that are stills, not video: refused by name so the error is useful.
_STILL_IMAGE_BRANDS = {b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1", b"avif"}
_AUDIO_BRANDS = {b"M4A ", b"M4B ", b"M4P "}
_QUICKTIME_BRANDS = {b"qt  "}


def sniff_media_type(data: bytes) -> MediaType:
    """The media type of ``data`` from its magic numbers, or a coded error."""
    if not data:
        raise InvalidInput("the file is empty (0 bytes)", limit="non_empty")
    head = data[:64]
    if head.startswith(b"\xff\xd8\xff"):
        return MediaType.JPEG
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return MediaType.PNG
    if head.startswith((b"GIF87a", b"GIF89a")):
        return MediaType.GIF
    if head.startswith(b"RIFF") and len(head) >= 12:
        form = head[8:12]
        if form == b"WEBP":
            return MediaType.WEBP
        if form == b"WAVE":
            return MediaType.WAV
        if form == b"AVI ":
            return MediaType.AVI
    if head.startswith(b"fLaC"):
        return MediaType.FLAC
    if head.startswith(b"OggS"):
        # Ogg also carries Theora video; OpenCV reads that as video.
        return MediaType.MKV if b"\x80theora" in data[:512] else MediaType.OGG
    if head.startswith(b"ID3") or _is_mpeg_audio_frame(head):
        return MediaType.MP3
    if len(head) >= 12 and head[4:8] == b"ftyp":
        return _iso_bmff_type(data)
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        # The EBML header names its DocType within the first few dozen bytes.
        return MediaType.WEBM if b"webm" in data[:64] else MediaType.MKV
    raise UnsupportedMediaType(
        f"the file's bytes match no supported media type (starts with {head[:8].hex()}); "
        f"supported: {SUPPORTED_DESCRIPTION}",
        supported=SUPPORTED_DESCRIPTION,
    )


def _is_mpeg_audio_frame(head: bytes) -> bool:
    if len(head) < 4 or head[0] != 0xFF or (head[1] & 0xE0) != 0xE0:
        return False
    version = (head[1] >> 3) & 0b11
    layer = (head[1] >> 1) & 0b11
    bitrate = head[2] >> 4
    sample_rate = (head[2] >> 2) & 0b11
    # Layer III only (layer bits 01); AAC/ADTS shares the sync word with layer bits 00.
    return version != 0b01 and layer == 0b01 and bitrate not in (0, 15) and sample_rate != 3


def _iso_bmff_type(data: bytes) -> MediaType:
    size = struct.unpack(">I", data[0:4])[0]
    major = data[8:12]
    brands = {major}
    end = min(max(size, 16), len(data), 256)
    brands.update(data[i : i + 4] for i in range(16, end - 3, 4))
    if brands & _STILL_IMAGE_BRANDS and not brands & {b"isom", b"mp41", b"mp42", b"avc1"}:
        raise UnsupportedMediaType(
            f"HEIF/AVIF still images (brand {major.decode('latin-1')!r}) are not supported; "
            f"supported: {SUPPORTED_DESCRIPTION}",
            supported=SUPPORTED_DESCRIPTION,
        )
    if major in _AUDIO_BRANDS:
        return MediaType.M4A
    if major in _QUICKTIME_BRANDS:
        return MediaType.MOV
    return MediaType.MP4


def image_dimensions(data: bytes, media_type: MediaType) -> tuple[int, int]:
    """(width, height) as the header declares them, without decoding pixels."""
    try:
        if media_type is MediaType.PNG:
            return _png_size(data)
        if media_type is MediaType.JPEG:
            return _jpeg_size(data)
        if media_type is MediaType.WEBP:
            return _webp_size(data)
        if media_type is MediaType.GIF:
            return _gif_size(data)
    except (struct.error, IndexError) as exc:
        raise InvalidInput(
            f"the {media_type.value} header is truncated or corrupt: {exc}",
            media_type=media_type.value,
        ) from exc
    raise InvalidInput(f"{media_type.value} is not an image type", media_type=media_type.value)


def check_image_header(data: bytes, media_type: MediaType, limits: MediaLimits) -> tuple[int, int]:
    limits.check_file_bytes(len(data))
    width, height = image_dimensions(data, media_type)
    limits.check_image_pixels(width, height)
    return width, height


def _png_size(data: bytes) -> tuple[int, int]:
    if data[12:16] != b"IHDR":
        raise InvalidInput("PNG has no IHDR chunk where the format requires it")
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


# SOF markers carry the frame size; C4 (DHT), C8 (JPG extension) and CC (DAC) do not.
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_size(data: bytes) -> tuple[int, int]:
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise InvalidInput(f"JPEG marker expected at byte {pos}; the header is corrupt")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        if marker in (0xD9, 0xDA):
            break  # end of image / start of scan before any frame header
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if marker in _JPEG_SOF:
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            return int(width), int(height)
        pos += 2 + length
    raise InvalidInput("JPEG has no frame header (SOF) before its image data; it is truncated")


def _webp_size(data: bytes) -> tuple[int, int]:
    chunk = data[12:16]
    if chunk == b"VP8 ":
        if data[23:26] != b"\x9d\x01\x2a":
            raise InvalidInput("WebP VP8 frame has no start code; the header is corrupt")
        width, height = struct.unpack("<HH", data[26:30])
        return int(width & 0x3FFF), int(height & 0x3FFF)
    if chunk == b"VP8L":
        if data[20] != 0x2F:
            raise InvalidInput("WebP VP8L stream has no signature; the header is corrupt")
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return width, height
    raise InvalidInput(f"WebP has an unknown first chunk {chunk!r}")


def _gif_size(data: bytes) -> tuple[int, int]:
    width, height = struct.unpack("<HH", data[6:10])
    return int(width), int(height)
