"""Write small sample media for the README's examples: beach.jpg and a 3-second beach.mp4.

    uv run python scripts/make_sample_media.py [DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

SKY, SAND, SUN = (235, 206, 135), (128, 178, 194), (0, 215, 255)  # BGR


def beach_frame(t: int, width: int = 320, height: int = 240) -> np.ndarray:
    frame = np.zeros((height, width, 3), np.uint8)
    frame[: height // 2] = SKY
    frame[height // 2 :] = SAND
    cv2.circle(frame, (40 + 8 * t, 60), 20, SUN, -1)
    return frame


def main(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out_dir / "beach.jpg"), beach_frame(10))
    video = cv2.VideoWriter(
        str(out_dir / "beach.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10, (320, 240)
    )
    for t in range(30):
        video.write(beach_frame(t))
    video.release()
    print(f"wrote {out_dir / 'beach.jpg'} and {out_dir / 'beach.mp4'}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("."))
