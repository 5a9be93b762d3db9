"""Size and length limits for uploaded media, checked before any expensive decoding.

A limit that is about bytes the server must hold (file size, decoded pixels) answers
413 ``PayloadTooLarge``; a limit on what the content is (too long, too many frames)
answers 422 ``InvalidInput``. Every error names the limit, the value seen and the
setting, so an upload pipeline can tell exactly what to change.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.errors import InvalidInput, PayloadTooLarge


@dataclass(frozen=True)
class MediaLimits:
    max_file_bytes: int = 256 * 1024 * 1024
    # 40 MP is above any phone camera; a 50,000 x 50,000 "bomb" is 2.5 GP.
    max_image_pixels: int = 40_000_000
    max_audio_seconds: float = 3600.0
    max_video_seconds: float = 600.0
    max_video_frames: int = 36_000  # ten minutes at 60 fps

    def check_file_bytes(self, size: int) -> None:
        if size > self.max_file_bytes:
            raise PayloadTooLarge(
                f"file is {size} bytes; the limit max_file_bytes is {self.max_file_bytes}",
                limit="max_file_bytes",
                value=size,
                maximum=self.max_file_bytes,
            )

    def check_image_pixels(self, width: int, height: int) -> None:
        if width <= 0 or height <= 0:
            raise InvalidInput(
                f"image declares an empty size {width}x{height}", width=width, height=height
            )
        pixels = width * height
        if pixels > self.max_image_pixels:
            raise PayloadTooLarge(
                f"image declares {width}x{height} = {pixels} pixels; the limit "
                f"max_image_pixels is {self.max_image_pixels} (refused before decoding)",
                limit="max_image_pixels",
                value=pixels,
                maximum=self.max_image_pixels,
            )

    def check_audio_seconds(self, seconds: float) -> None:
        if seconds > self.max_audio_seconds:
            raise InvalidInput(
                f"audio is {seconds:.1f} s long; the limit max_audio_seconds is "
                f"{self.max_audio_seconds:g}",
                limit="max_audio_seconds",
                value=round(seconds, 3),
                maximum=self.max_audio_seconds,
            )

    def check_video_seconds(self, seconds: float) -> None:
        if seconds > self.max_video_seconds:
            raise InvalidInput(
                f"video is {seconds:.1f} s long; the limit max_video_seconds is "
                f"{self.max_video_seconds:g}",
                limit="max_video_seconds",
                value=round(seconds, 3),
                maximum=self.max_video_seconds,
            )

    def check_video_frames(self, frames: int) -> None:
        if frames > self.max_video_frames:
            raise InvalidInput(
                f"video has at least {frames} frames; the limit max_video_frames is "
                f"{self.max_video_frames}",
                limit="max_video_frames",
                value=frames,
                maximum=self.max_video_frames,
            )
