"""Image bytes to an upright RGB array, refusing bombs and truncated files with coded errors.

Order matters: the type is sniffed from the bytes, the declared size is read from the
header and checked against the limits, and only then does Pillow decode. Pillow (not
OpenCV) decodes because it is strict about truncated JPEG/PNG data (OpenCV quietly
returns a half-grey image) and because it exposes EXIF orientation, which is applied so
that boxes and hashes refer to the image as people see it. Animated GIF/WebP: the first
frame is analysed. Transparent pixels are composited on white.
"""

from __future__ import annotations

import io
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from analyzers.media.limits import MediaLimits
from analyzers.media.sniff import (
    MediaKind,
    MediaType,
    check_image_header,
    image_dimensions,
    sniff_media_type,
)
from core.errors import InvalidInput, PayloadTooLarge

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

_PIL_FORMATS = {
    MediaType.JPEG: "JPEG",
    MediaType.PNG: "PNG",
    MediaType.WEBP: "WEBP",
    MediaType.GIF: "GIF",
}


@dataclass(frozen=True)
class DecodedImage:
    rgb: np.ndarray  # (H, W, 3) uint8, upright, possibly downscaled to max_side
    media_type: MediaType
    width: int  # upright size of the original, before any downscaling
    height: int

    @property
    def scale(self) -> float:
        """Factor from ``rgb`` pixel coordinates back to the original's."""
        return self.width / self.rgb.shape[1]


def decode_image(
    data: bytes, limits: MediaLimits | None = None, max_side: int | None = None
) -> DecodedImage:
    """Decode ``data`` as an image; ``max_side`` downscales (cheaply, for JPEG) for analysis."""
    from PIL import Image, ImageOps

    limits = limits or MediaLimits()
    media_type = sniff_media_type(data)
    if media_type.kind is not MediaKind.IMAGE:
        raise InvalidInput(
            f"expected an image but the bytes are {media_type.value}", media_type=media_type.value
        )
    check_image_header(data, media_type, limits)
    try:
        with Image.open(io.BytesIO(data), formats=[_PIL_FORMATS[media_type]]) as image:
            limits.check_image_pixels(*image.size)
            if max_side is not None and media_type is MediaType.JPEG:
                # JPEG can decode at 1/2, 1/4, 1/8 scale for free; draft keeps >= max_side.
                image.draft("RGB", (max_side, max_side))
            image.load()
            orientation = image.getexif().get(0x0112, 1)
            upright = ImageOps.exif_transpose(image)
            rgb_image = _to_rgb(upright)
    except Image.DecompressionBombError as exc:  # only when limits exceed Pillow's own
        raise PayloadTooLarge(
            f"Pillow refused the {media_type.value} image as a decompression bomb: {exc}",
            limit="max_image_pixels",
        ) from exc
    except (OSError, SyntaxError, ValueError, EOFError, zlib.error) as exc:
        raise InvalidInput(
            f"could not decode the {media_type.value} image: {exc}", media_type=media_type.value
        ) from exc
    # Dimensions of the original (before draft), upright.
    width, height = _declared_upright_size(data, media_type, orientation)
    rgb = np.asarray(rgb_image, dtype=np.uint8)
    if max_side is not None and max(rgb.shape[:2]) > max_side:
        rgb = resize_max_side(rgb, max_side)
    return DecodedImage(
        rgb=np.ascontiguousarray(rgb), media_type=media_type, width=width, height=height
    )


def _declared_upright_size(data: bytes, media_type: MediaType, orientation: int) -> tuple[int, int]:
    width, height = image_dimensions(data, media_type)
    # EXIF orientations 5-8 rotate by 90 degrees, swapping the sides.
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def _to_rgb(image: PILImage) -> PILImage:
    from PIL import Image

    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Transparent pixels carry arbitrary colour; show them on white as viewers do.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def resize_max_side(rgb: np.ndarray, max_side: int) -> np.ndarray:
    import cv2

    height, width = rgb.shape[:2]
    factor = max_side / max(height, width)
    if factor >= 1.0:
        return rgb
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
