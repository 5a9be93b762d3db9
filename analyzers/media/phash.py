"""64-bit DCT perceptual hash (pHash) and the Hamming distance between two hashes.

The image is reduced to 32x32 grey (area interpolation, so resizing the source barely
moves it), transformed with a 2-D DCT, and the 8x8 lowest frequencies (DC excluded from
the median) become 64 bits: 1 where a coefficient is above their median. Recompressed,
resized or lightly cropped copies land within a few bits; unrelated images sit near 32.
"""

from __future__ import annotations

import numpy as np

HASH_BITS = 64
# Hamming distance at or below which two images count as near-duplicates.
NEAR_DUPLICATE_MAX_DISTANCE = 12


def phash(rgb: np.ndarray) -> int:
    """The 64-bit pHash of an RGB (H, W, 3) or grey (H, W) uint8 image."""
    import cv2

    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) if rgb.ndim == 3 else rgb
    small = cv2.resize(grey, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
    low = cv2.dct(small)[:8, :8]
    median = float(np.median(low.reshape(-1)[1:]))
    bits = (low > median).reshape(-1)
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def phash_hex(rgb: np.ndarray) -> str:
    return f"{phash(rgb):016x}"


def hamming_distance(a: int | str, b: int | str) -> int:
    """Bits that differ between two hashes, given as ints or 16-digit hex strings."""
    first = int(a, 16) if isinstance(a, str) else a
    second = int(b, 16) if isinstance(b, str) else b
    return int((first ^ second).bit_count())


def is_near_duplicate(
    a: int | str, b: int | str, max_distance: int = NEAR_DUPLICATE_MAX_DISTANCE
) -> bool:
    return hamming_distance(a, b) <= max_distance
