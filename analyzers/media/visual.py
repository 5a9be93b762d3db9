"""Visual embedders, picked by versioned name from ``core.registry.visual_embedders``.

Default: ``reelsift.visual.opencv_descriptor.v1``, a classical descriptor that needs no
model file. Its layout (the image is first resized to 128x128 RGB, area interpolation):

  block    raw dims  what
  colour   128       joint HSV histogram, 8 hue x 4 saturation x 4 value bins
  texture  59        uniform LBP (8 neighbours, radius 1) histogram on luma
  edges    36        Sobel orientation histogram, 9 unsigned bins, magnitude-weighted,
                     in each cell of a 2x2 grid
  total    223

Each block is L1-normalised, square-rooted (Hellinger, so cosine ~ Bhattacharyya),
centred by its own mean, L2-normalised and scaled by sqrt(share), shares colour 0.4,
texture 0.3, edges 0.3. The 223-d concatenation goes through a fixed Gaussian random
projection (numpy seed 20240611, N(0, 1/128)) to ``DESCRIPTOR_DIM`` = 128 dims and is
L2-normalised. Changing any of this is a new version name, never an edit of v1.

``reelsift.visual.clip_onnx.v1`` and ``reelsift.visual.resnet_onnx.v1`` (modules
``clip`` and ``resnet``) register themselves next to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from analyzers.base import l2_normalise
from core.contracts import ModelRef
from core.registry import visual_embedders

if TYPE_CHECKING:
    from analyzers.model_registry import ModelRegistry

DESCRIPTOR_NAME = "reelsift.visual.opencv_descriptor.v1"
DESCRIPTOR_DIM = 128
DESCRIPTOR_SIDE = 128
PROJECTION_SEED = 20240611
BLOCK_SHARES = {"colour": 0.4, "texture": 0.3, "edges": 0.3}
RAW_DIM = 128 + 59 + 36


@runtime_checkable
class VisualEmbedder(Protocol):
    """Maps RGB images (H, W, 3) uint8 to L2-normalised float32 vectors ``(n, dim)``."""

    model: ModelRef
    dim: int

    def encode_images(self, images: Sequence[np.ndarray]) -> np.ndarray: ...


@cache
def _uniform_lbp_table() -> np.ndarray:
    """256 LBP codes -> 59 bins: the 58 codes with <= 2 bit transitions, then the rest."""
    table = np.full(256, 58, dtype=np.int64)
    next_bin = 0
    for code in range(256):
        bits = [(code >> i) & 1 for i in range(8)]
        transitions = sum(bits[i] != bits[(i + 1) % 8] for i in range(8))
        if transitions <= 2:
            table[code] = next_bin
            next_bin += 1
    return table


@cache
def _projection() -> np.ndarray:
    rng = np.random.default_rng(PROJECTION_SEED)
    return (rng.standard_normal((RAW_DIM, DESCRIPTOR_DIM)) / np.sqrt(DESCRIPTOR_DIM)).astype(
        np.float32
    )


def _finish_block(histogram: np.ndarray, share: float) -> np.ndarray:
    block = np.sqrt(histogram / max(float(histogram.sum()), 1e-12))
    block = block - block.mean()
    norm = float(np.linalg.norm(block))
    if norm < 1e-12:
        return np.zeros_like(block, dtype=np.float32)
    return (block / norm * np.sqrt(share)).astype(np.float32)


def _lbp_histogram(grey: np.ndarray) -> np.ndarray:
    centre = grey[1:-1, 1:-1].astype(np.int16)
    codes = np.zeros(centre.shape, dtype=np.uint8)
    offsets = [(-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1)]
    height, width = grey.shape
    for bit, (dy, dx) in enumerate(offsets):
        neighbour = grey[1 + dy : height - 1 + dy, 1 + dx : width - 1 + dx].astype(np.int16)
        codes |= (neighbour >= centre).astype(np.uint8) << bit
    return np.bincount(_uniform_lbp_table()[codes].reshape(-1), minlength=59).astype(np.float64)


def _edge_histogram(grey: np.ndarray) -> np.ndarray:
    import cv2

    gx = cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3)
    magnitude, angle = cv2.cartToPolar(gx, gy, angleInDegrees=True)
    bins = ((angle % 180.0) / 20.0).astype(np.int64).clip(0, 8)
    half = grey.shape[0] // 2
    cells = []
    for rows in (slice(0, half), slice(half, None)):
        for cols in (slice(0, half), slice(half, None)):
            cells.append(
                np.bincount(
                    bins[rows, cols].reshape(-1),
                    weights=magnitude[rows, cols].reshape(-1),
                    minlength=9,
                )
            )
    return np.concatenate(cells)


def opencv_descriptor_raw(rgb: np.ndarray) -> np.ndarray:
    """The 223-d block vector before projection (exposed for tests and inspection)."""
    import cv2

    small = cv2.resize(rgb, (DESCRIPTOR_SIDE, DESCRIPTOR_SIDE), interpolation=cv2.INTER_AREA)
    hsv = cv2.cvtColor(small, cv2.COLOR_RGB2HSV)
    colour = cv2.calcHist([hsv], [0, 1, 2], None, [8, 4, 4], [0, 180, 0, 256, 0, 256])
    grey = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
    return np.concatenate(
        [
            _finish_block(colour.reshape(-1).astype(np.float64), BLOCK_SHARES["colour"]),
            _finish_block(_lbp_histogram(grey), BLOCK_SHARES["texture"]),
            _finish_block(_edge_histogram(grey), BLOCK_SHARES["edges"]),
        ]
    )


class OpenCVDescriptorEmbedder:
    """The classical default: colour, texture and edge statistics, fixed projection."""

    dim = DESCRIPTOR_DIM

    def __init__(self) -> None:
        self.model = ModelRef(name=DESCRIPTOR_NAME, version="1", source="builtin")

    def encode_images(self, images: Sequence[np.ndarray]) -> np.ndarray:
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        raw = np.stack([opencv_descriptor_raw(image) for image in images])
        return l2_normalise(raw @ _projection())


@visual_embedders.register(DESCRIPTOR_NAME)
def make_opencv_descriptor(
    registry: ModelRegistry | None = None,
    cache_dir: Path | str | None = None,
    *,
    threads: int | None = None,
    device: str = "cpu",
) -> OpenCVDescriptorEmbedder:
    """The registry's signature (core.registry); a fixed projection needs no model files,
    threads or device."""
    return OpenCVDescriptorEmbedder()
