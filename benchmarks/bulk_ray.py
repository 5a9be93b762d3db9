"""Items per second of `reelsift import --ray`: two Ray analysis workers against one.

Each run imports the same items into a fresh SQLite data dir through
``ingest.ray_bulk.import_items_ray`` (store, claim, analyze on the actor pool, record and
route), on one local Ray instance with ``--cpus`` CPUs; each actor gets one CPU and one
inference thread. The same-process baseline is today's ``reelsift import``
(``ingest.bulk.import_items``) with one inference thread, in this process. Target: two
workers >= 1.7x one.

Two rates are printed per run: end to end (actors loading the analysis stack included,
what a user waits for) and from the first analyzed batch to the last (the actors'
steady state). On a machine whose cores other work also uses the ratio falls short of what
two free cores give: the load average is printed with each run.

Texts: 20 Newsgroups posts and DBpedia-14 abstracts from ../shared (development use; none
is shipped), each with a title made of its first words.

    uv run python benchmarks/bulk_ray.py [--n 2000] [--cpus 2] [--skip-in-process]
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import os
import random
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
# benchmarks/taxonomy.py would shadow the taxonomy package the service imports.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != REPO / "benchmarks"]
DATASETS = REPO.parent / "shared" / "datasets" / "taxonomy_dev"
SOURCES = ("newsgroups20_train_sample.csv", "dbpedia14_sample.csv")

# Before Ray is imported: its workers run this interpreter, not `uv run`.
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")


def load_items(n: int, seed: int = 7) -> list[dict[str, str]]:
    """``n`` items, half from each source, titled by their first words."""
    texts: list[str] = []
    for name in SOURCES:
        with (DATASETS / name).open(encoding="utf-8", newline="") as handle:
            rows = [row["text"].strip() for row in csv.DictReader(handle) if row["text"].strip()]
        texts += random.Random(seed).sample(rows, n // len(SOURCES))
    return [
        {"id": f"bench-{i}", "creator_id": "bench",
         "title": " ".join(text.split(".")[0].split()[:10]), "text": text[:4000]}
        for i, text in enumerate(texts)
    ]


def load_average() -> str:
    return "load average " + " ".join(f"{v:.1f}" for v in os.getloadavg())


def fresh_components(root: Path, threads: int) -> Any:
    from serving.cli import command_components
    from serving.settings import Settings

    # As `reelsift import` builds them.
    return command_components(Settings(
        data_dir=root, model_cache_dir=REPO / "var" / "cache", inference_threads=threads))


def run_in_process(source: Path, root: Path) -> tuple[float, dict[str, Any]]:
    from ingest.bulk import import_items

    components = fresh_components(root, threads=1)
    try:
        start = time.perf_counter()
        summary = import_items(components, source)
        return time.perf_counter() - start, summary.as_dict()
    finally:
        components.close()


def driver_cpu_seconds() -> float:
    """CPU time of this process, Ray Data's threads included (not the actors')."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_on_ray(
    source: Path, root: Path, workers: int, batch: int
) -> tuple[float, float, float, dict[str, Any]]:
    from ingest.ray_bulk import RayOptions, import_items_ray
    from serving.cli import worker_analysis_stack

    components = fresh_components(root, threads=1)
    first: list[float] = []
    done: list[int] = []

    def advance(n: int) -> None:
        if not first:
            first.append(time.perf_counter())
        else:
            done.append(n)

    try:
        cpu = driver_cpu_seconds()
        start = time.perf_counter()
        summary = import_items_ray(
            components, source, functools.partial(worker_analysis_stack, components.settings),
            RayOptions(workers=workers, cpus_per_worker=1.0, batch_size=batch),
            advance=advance,
        )
        end = time.perf_counter()
        cpu = driver_cpu_seconds() - cpu
    finally:
        components.close()
    steady = sum(done) / (end - first[0]) if first and end > first[0] else float("nan")
    return end - start, steady, cpu, summary.as_dict()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="items")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray instance")
    parser.add_argument("--batch", type=int, default=32, help="items per actor call")
    parser.add_argument("--skip-in-process", action="store_true",
                        help="skip the in-process baseline")
    args = parser.parse_args()

    import ray

    items = load_items(args.n)
    print(f"{len(items)} items (20 Newsgroups posts and DBpedia abstracts), "
          f"{sum(len(i['text'].split()) for i in items) / len(items):.0f} words each on "
          f"average; os.cpu_count()={os.cpu_count()}; {load_average()}", flush=True)
    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    rates: dict[str, float] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            source = Path(tmp) / "items.jsonl"
            source.write_text("".join(json.dumps(i) + "\n" for i in items), encoding="utf-8")
            if not args.skip_in_process:
                seconds, summary = run_in_process(source, Path(tmp) / "in-process")
                rates["in-process"] = len(items) / seconds
                print(f"in process (reelsift import, 1 thread): {seconds:.1f} s, "
                      f"{rates['in-process']:.1f} items/s; {summary['states']}; "
                      f"{load_average()}", flush=True)
            for workers in (1, 2):
                seconds, steady, cpu, summary = run_on_ray(
                    source, Path(tmp) / f"ray-{workers}", workers, args.batch)
                assert summary["imported"] == len(items), summary
                rates[f"ray-{workers}"] = len(items) / seconds
                rates[f"ray-{workers}-steady"] = steady
                print(f"Ray, {workers} worker(s): {seconds:.1f} s, "
                      f"{rates[f'ray-{workers}']:.1f} items/s end to end, {steady:.1f} items/s "
                      f"after the first batch; driver CPU {1000 * cpu / len(items):.1f} ms "
                      f"an item; {summary['states']}; {load_average()}",
                      flush=True)
    finally:
        ray.shutdown()
    print(f"two workers / one: {rates['ray-2'] / rates['ray-1']:.2f}x end to end, "
          f"{rates['ray-2-steady'] / rates['ray-1-steady']:.2f}x after the first batch "
          f"(target >= 1.7x)")
    if "in-process" in rates:
        print(f"two Ray workers / in-process import: {rates['ray-2'] / rates['in-process']:.2f}x")


if __name__ == "__main__":
    main()
