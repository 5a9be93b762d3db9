"""Resident memory of each process of a real `reelsift serve --demo`, and what the API
worker holds.

The server is started as tests/integration starts it (serving/launcher.py), then warmed:
a text item, a feed and an item read through each API worker, so every worker has built
its components (they are built on first use). Printed per process: RSS (what the issue's
target counts: API worker <= 400 MB) and PSS (shared pages split among the processes that
map them, so the PSS column adds up to the machine's real use).

For the largest API worker, its resident memory is broken down by what maps it (from
/proc/PID/smaps): anonymous memory (the Python heap, model weights read into memory)
and each shared library or model file, grouped by the package it comes from; then a
fresh interpreter imports what the API worker imports (``serving.service``) and prints
which heavy packages that import brings in and the RSS it reaches before any request.

    uv run python benchmarks/api_memory.py [--keep DIR] [--media]

``--media`` also posts a photo and a two-second WAV through each worker while warming, so
the API workers have loaded what media decoding needs (OpenCV, librosa) and called the
media model service.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
# benchmarks/taxonomy.py would shadow the taxonomy package the service imports.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != REPO / "benchmarks"]

MB = 1024 * 1024
HEAVY = ("torch", "torchvision", "transformers", "sentence_transformers", "spacy", "thinc",
         "sklearn", "scipy", "cv2", "onnxruntime", "nudenet", "librosa", "av", "faiss",
         "pandas", "matplotlib", "numba", "redis", "ray")


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            child = int(stat.parent.name)
            found += [child, *children(child)]
    return found


def status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def pss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def role(pid: int) -> str:
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    if "serving.cli serve" in cmdline:
        return "reelsift serve (launcher)"
    if "_bentoml_impl.worker.service" in cmdline:
        match = re.search(r"--service-name[ =](\S+)", cmdline)
        name = match.group(1) if match else "?"
        return "API worker" if name == "reelsift" else f"model service {name}"
    if "-m bentoml" in cmdline:
        return "bentoml serve (arbiter)"
    return " ".join(cmdline.split()[:3])[:60]


def library_breakdown(pid: int) -> dict[str, int]:
    """Resident kB by what maps it: [anon], [heap], or the package a file belongs to."""
    totals: dict[str, int] = defaultdict(int)
    current = "[anon]"
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split()
        if head and re.fullmatch(r"[0-9a-f]+-[0-9a-f]+", head[0]):
            path = head[5] if len(head) > 5 else ""
            if not path:
                current = "[anon]"
            elif path.startswith("["):
                current = path
            else:
                match = re.search(r"site-packages/([^/]+)", path)
                current = match.group(1) if match else path.rsplit("/", 1)[-1]
                current = re.sub(r"(\.libs|-[0-9].*|\.cpython.*|\.so.*)$", "", current)
        elif line.startswith("Rss:"):
            totals[current] += int(head[1])
    return dict(totals)


def media_files() -> list[tuple[str, bytes, str]]:
    """A 640x480 PNG with shapes and a two-second 16 kHz WAV (a chirp), made here."""
    import io
    import wave

    import cv2
    import numpy as np

    rng = np.random.default_rng(0)
    image = np.full((480, 640, 3), 200, np.uint8)
    for _ in range(12):
        x, y = (int(v) for v in rng.integers(0, 600, 2))
        colour = tuple(int(c) for c in rng.integers(0, 255, 3))
        cv2.rectangle(image, (x, y % 440), (x + 40, y % 440 + 40), colour, -1)
    ok, png = cv2.imencode(".png", image)
    assert ok
    t = np.linspace(0, 2, 32_000, endpoint=False)
    samples = (0.3 * np.sin(2 * np.pi * (200 + 300 * t) * t) * 32767).astype(np.int16)
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16_000)
        out.writeframes(samples.tobytes())
    return [("photo.png", png.tobytes(), "image/png"),
            ("chirp.wav", buffer.getvalue(), "audio/wav")]


def warm(url: str, keys: dict[str, str], workers: int, media: bool = False) -> None:
    admin = {"Authorization": f"Bearer {keys['demo-admin']}"}
    files = media_files() if media else []
    with httpx.Client(base_url=url, timeout=300) as client:
        # Requests land on the workers in turn; enough of each kind reaches every worker.
        for i in range(4 * workers):
            client.post("/v1/items", headers=admin, json={
                "id": f"mem-{i}", "creator_id": "bench", "title": "Derby day",
                "text": f"Arsenal beat Chelsea {i}-1 in London #PremierLeague"}).raise_for_status()
            client.get("/v1/feed", headers=admin, params={"user_id": f"u{i}", "k": 10})
            client.get(f"/v1/items/mem-{i}", headers=admin).raise_for_status()
            for name, data, media_type in files:
                meta = {"id": f"mem-{i}-{name}", "creator_id": "bench", "title": name}
                client.post("/v1/items", headers=admin, files={
                    "metadata": (None, json.dumps(meta), "application/json"),
                    "file": (name, data, media_type)}).raise_for_status()


IMPORT_PROBE = """
import json, sys, resource
import serving.service  # what each API worker imports
heavy = %r
loaded = sorted(h for h in heavy if h in sys.modules)
rss = int(open('/proc/self/status').read().split('VmRSS:')[1].split()[0])
print(json.dumps({"rss_kb": rss, "loaded": loaded}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keep", type=Path, help="data dir to keep (default: a temp dir)")
    parser.add_argument("--media", action="store_true",
                        help="also warm each worker with a photo and an audio upload")
    args = parser.parse_args()
    from serving.launcher import launch

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = args.keep or Path(tmp) / "var"
        started = time.perf_counter()
        server = launch(data_dir, demo=True)
        try:
            print(f"server ready in {time.perf_counter() - started:.0f} s at {server.url}")
            keys = json.loads((data_dir / "demo-keys.json").read_text())
            pids = children(server.process.pid)
            api_workers = [p for p in pids if role(p) == "API worker"]
            warm(server.url, keys, max(1, len(api_workers)), media=args.media)
            time.sleep(2)
            pids = [server.process.pid, *children(server.process.pid)]
            rows = [(role(p), p, status_kb(p, "VmRSS"), pss_kb(p)) for p in pids]
            print(f"{'process':<44} {'pid':>7} {'RSS MB':>8} {'PSS MB':>8}")
            for name, pid, rss, pss in rows:
                print(f"{name:<44} {pid:>7} {rss / 1024:>8.0f} {pss / 1024:>8.0f}")
            print(f"{'all processes':<44} {'':>7} {sum(r[2] for r in rows) / 1024:>8.0f} "
                  f"{sum(r[3] for r in rows) / 1024:>8.0f}")
            workers = [r for r in rows if r[0] == "API worker"]
            largest = max(workers, key=lambda r: r[2])
            verdict = "met" if largest[2] <= 400 * 1024 else "not met"
            print(f"API worker RSS: {', '.join(f'{r[2] / 1024:.0f} MB' for r in workers)} "
                  f"(target <= 400 MB: {verdict})")
            breakdown = library_breakdown(largest[1])
            print(f"\nAPI worker {largest[1]}: resident memory by what maps it (top 15)")
            for name, kb in sorted(breakdown.items(), key=lambda kv: -kv[1])[:15]:
                print(f"  {name:<40} {kb / 1024:>7.0f} MB")
        finally:
            server.stop()

    probe = subprocess.run([sys.executable, "-c", IMPORT_PROBE % (HEAVY,)], cwd=REPO,
                           capture_output=True, text=True, check=True)
    result = json.loads(probe.stdout.strip().splitlines()[-1])
    print(f"\n`import serving.service` alone: RSS {result['rss_kb'] / 1024:.0f} MB; "
          f"heavy packages loaded: {', '.join(result['loaded'])}")


if __name__ == "__main__":
    main()
