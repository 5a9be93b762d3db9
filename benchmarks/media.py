"""Media analyzer throughput, each figure next to a plain-decode baseline in the same process.

    uv run python benchmarks/media.py [--images 60] [--video-seconds 10] [--audio-seconds 60]

Prints:
  images/s      full ImageAnalyzer.analyze on 640x480 JPEGs (decode, pHash, descriptor,
                NudeNet, Haar faces, quality)      vs decode_image alone      target >= 20
  video x       seconds of 1280x720 30 fps video analysed per wall-clock second (keyframes
                through the image analyzer + audio track)  vs OpenCV grab-all  target >= 10
  audio x       seconds of 44.1 kHz stereo WAV analysed per second vs soundfile read
                target >= 50
  peak RSS      resource.getrusage(RUSAGE_SELF).ru_maxrss after each stage
Media are generated here (seeded), nothing is downloaded. Timings vary with machine load;
the ratio to the baseline is the steadier number.
"""

from __future__ import annotations

import argparse
import io
import resource
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import soundfile

from analyzers.media import AudioAnalyzer, ImageAnalyzer, VideoAnalyzer, decode_image
from tests.analyzers.media import synth


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def best_of(repeats: int, run: Callable[[], object]) -> float:
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        timings.append(time.perf_counter() - start)
    return min(timings)


def bench_images(count: int, threads: int) -> dict[str, float]:
    jpegs = [synth.encode(synth.scene(seed), ".jpg", 90) for seed in range(count)]
    analyzer = ImageAnalyzer(threads=threads)
    for data in jpegs[:3]:  # warm-up: onnxruntime arenas, lazy imports
        analyzer.analyze(data)
    decode_s = best_of(3, lambda: [decode_image(d, max_side=640) for d in jpegs])
    full_s = best_of(2, lambda: [analyzer.analyze(d) for d in jpegs])
    return {"decode_per_s": count / decode_s, "full_per_s": count / full_s}


def bench_video(seconds: float, threads: int, workdir: Path) -> dict[str, float]:
    fps = 30.0
    frames = synth.cut_frames(int(seconds * fps), int(seconds * fps) // 2, 720, 1280)
    audio = synth.music_like(seconds, sr=44_100)
    path = synth.write_video(workdir / "bench.mp4", frames, fps, audio=audio)

    def grab_all() -> None:
        capture = cv2.VideoCapture(str(path))
        while capture.grab():
            pass
        capture.release()

    analyzer = VideoAnalyzer(ImageAnalyzer(threads=threads))
    analyzer.analyze_path(path)  # warm-up
    grab_s = best_of(2, grab_all)
    full_s = best_of(2, lambda: analyzer.analyze_path(path))
    return {"decode_x": seconds / grab_s, "full_x": seconds / full_s}


def bench_audio(seconds: float) -> dict[str, float]:
    music = synth.music_like(seconds, sr=44_100)
    buffer = io.BytesIO()
    soundfile.write(buffer, np.stack([music, music], axis=1), 44_100, format="WAV")
    data = buffer.getvalue()
    analyzer = AudioAnalyzer()
    analyzer.analyze(data)  # warm-up: librosa's numba kernels
    read_s = best_of(3, lambda: soundfile.read(io.BytesIO(data), dtype="float32"))
    full_s = best_of(2, lambda: analyzer.analyze(data))
    return {"decode_x": seconds / read_s, "full_x": seconds / full_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=60)
    parser.add_argument("--video-seconds", type=float, default=10.0)
    parser.add_argument("--audio-seconds", type=float, default=60.0)
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads")
    args = parser.parse_args()
    cv2.setNumThreads(args.threads)

    print(
        f"{'stage':<8} {'baseline':>22} {'full analysis':>24} {'ratio':>7} {'target':>8} "
        f"{'peak RSS':>10}"
    )
    images = bench_images(args.images, args.threads)
    print(
        f"{'image':<8} {images['decode_per_s']:>13.1f} decode/s {images['full_per_s']:>15.1f} "
        f"images/s {images['full_per_s'] / images['decode_per_s']:>7.3f} "
        f"{'>= 20/s':>8} {peak_rss_mib():>7.0f} MiB"
    )
    with tempfile.TemporaryDirectory() as workdir:
        video = bench_video(args.video_seconds, args.threads, Path(workdir))
    print(
        f"{'video':<8} {video['decode_x']:>12.1f}x grab-all {video['full_x']:>14.1f}x realtime "
        f"{video['full_x'] / video['decode_x']:>7.3f} {'>= 10x':>8} {peak_rss_mib():>7.0f} MiB"
    )
    audio = bench_audio(args.audio_seconds)
    print(
        f"{'audio':<8} {audio['decode_x']:>12.0f}x read-wav {audio['full_x']:>14.1f}x realtime "
        f"{audio['full_x'] / audio['decode_x']:>7.3f} {'>= 50x':>8} {peak_rss_mib():>7.0f} MiB"
    )


if __name__ == "__main__":
    main()
