"""Items per second: the full text analysis vs sentence-transformers' bare ``encode``.

The full analysis is the composition the service runs for a batch of text items
(``ingest.analysis.analyze_documents`` over ``serving.wiring.build_analysis_stack``):
language, entities, keywords, the text embedding, taxonomy labels, text risk and the
fused vector. The baseline is sentence-transformers encoding the same documents with the
same MiniLM model, in the same process, with the same number of threads. The two run
interleaved batch by batch, so load from other processes on a shared machine falls on
both; the rate of each round is items over that side's summed batch times, and the median
round is printed. Target: ratio >= 1. The project's own encoder alone is timed the same
way, to show what the rest of the analysis costs. The project's encoder is the configured
one (float MiniLM unless ``REELSIFT_TEXT_EMBEDDER`` says otherwise, e.g.
``reelsift.text_embedder.onnx_int8.v1``); ``--with-float`` also times the analysis with
float MiniLM, ``--with-serial`` with spaCy and the encoder one after the other instead of
overlapped.

Texts: DBpedia-14 abstracts (Wikipedia, CC BY-SA) read from ../shared at run time, each
with a headline made of its first words, as an upload has a title and a text.

    uv run python benchmarks/text_analysis.py [--n 1000] [--batch 32] [--threads 2]
        [--with-float] [--with-serial] [--with-st-batches 8]
"""

from __future__ import annotations

import argparse
import csv
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
# benchmarks/taxonomy.py would shadow the taxonomy package the service imports.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != REPO / "benchmarks"]
FLOAT_EMBEDDER = "reelsift.text_embedder.onnx.v1"
DBPEDIA = REPO.parent / "shared" / "datasets" / "taxonomy_dev" / "dbpedia14_sample.csv"


def load_items(n: int, seed: int = 13) -> list[tuple[str, str]]:
    """(title, text) pairs: a random sample of abstracts, titled by their first words."""
    with DBPEDIA.open(encoding="utf-8", newline="") as handle:
        texts = [row["text"].strip() for row in csv.DictReader(handle) if row["text"].strip()]
    sample = random.Random(seed).sample(texts, min(n, len(texts)))
    return [(" ".join(text.split(".")[0].split()[:10]), text) for text in sample]


class PlainEmbedder:
    """The project's embedder without ``encode_with_tokens``."""

    def __init__(self, inner: Any) -> None:
        self.model, self.dim, self.encode = inner.model, inner.dim, inner.encode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="items")
    parser.add_argument("--batch", type=int, default=32, help="items analyzed together")
    parser.add_argument("--threads", type=int, default=2, help="inference threads, both sides")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--with-candidate-encodes", action="store_true",
        help="also time the analysis with keywords embedded phrase by phrase (as before "
        "token pooling; what an embedder without token embeddings still does)",
    )
    parser.add_argument(
        "--with-serial", action="store_true",
        help="also time the analysis with the encoder and spaCy one after the other on one "
        "thread (as before they overlapped)",
    )
    parser.add_argument(
        "--with-st-batches", type=int, default=None, metavar="N",
        help="also time sentence-transformers encoding each call's texts in batches of N "
        "(the project's float encoder runs length-sorted batches of 8 on CPU: what the same "
        "padding saving gives the baseline)",
    )
    parser.add_argument(
        "--with-float", action="store_true",
        help="also time the full analysis with the float encoder "
        "(reelsift.text_embedder.onnx.v1) in place of the configured one",
    )
    args = parser.parse_args()

    import torch
    from sentence_transformers import SentenceTransformer

    from analyzers.model_registry import ModelRegistry
    from analyzers.text import TextAnalyzer, document_text
    from analyzers.text_embedding import MINILM
    from ingest.analysis import analyze_documents
    from serving.settings import Settings
    from serving.wiring import build_analysis_stack, build_text_embedder

    torch.set_num_threads(args.threads)
    items = load_items(args.n)
    titles = [title for title, _ in items]
    documents = [document_text(title, text) for title, text in items]
    words = sum(len(d.split()) for d in documents) / len(documents)
    print(f"{len(items)} DBpedia abstracts with titles, {words:.0f} words each on average; "
          f"batches of {args.batch}; {args.threads} threads")

    with tempfile.TemporaryDirectory() as data_dir:
        settings = Settings(
            data_dir=Path(data_dir), model_cache_dir=REPO / "var" / "cache",
            inference_threads=args.threads,
        )
        embedder, reason = build_text_embedder(settings)
        if embedder is None:
            raise SystemExit(f"no text embedder: {reason}")
        stack = build_analysis_stack(
            settings, embedder, None, visual=None, visual_unavailable_reason="text benchmark"
        )
        analyzer, enrichment = stack.analyzer, stack.enrichment
        assert analyzer is not None and enrichment is not None  # built in this process
        reference = SentenceTransformer(
            str(ModelRegistry().resolve(MINILM).path), device="cpu"
        )

        def full(start: int, end: int) -> None:
            analyses, _ = analyze_documents(
                analyzer, enrichment, titles[start:end], documents[start:end]
            )
            text = analyses[0].text
            assert analyses[0].labels is not None and text is not None and text.keywords

        def bare_encode(start: int, end: int) -> None:
            reference.encode(documents[start:end], batch_size=args.batch, convert_to_numpy=True)

        def project_encode(start: int, end: int) -> None:
            embedder.encode(documents[start:end])

        warm = documents[: args.batch]
        [first, *_], vectors = analyze_documents(
            analyzer, enrichment, titles[: args.batch], warm
        )
        # Say which stages really ran: a missing model is "not assessed", and cheaper.
        assert first.text is not None
        stages = {
            "language": first.text.language is not None,
            "entities": bool(first.text.entities),
            "keywords": bool(first.text.keywords),
            "embedding": "text" in vectors[0],
            "labels": bool(first.labels),
            "risk": any(r.score is not None for r in first.risk),
            "fusion": "fused" in vectors[0],
        }
        print("stages: " + ", ".join(
            name if ran else f"{name} (NOT ASSESSED)" for name, ran in stages.items()
        ))
        reference.encode(warm, batch_size=args.batch)
        sides = {"encode": bare_encode, "full": full, "project": project_encode}
        if args.with_st_batches:
            def st_small_batches(start: int, end: int) -> None:
                reference.encode(documents[start:end], batch_size=args.with_st_batches,
                                 convert_to_numpy=True)

            sides["st_small"] = st_small_batches
        if args.with_candidate_encodes:
            phrase_by_phrase = TextAnalyzer(
                PlainEmbedder(embedder), analyzer.entities, analyzer.language
            )

            def full_phrase_by_phrase(start: int, end: int) -> None:
                analyze_documents(
                    phrase_by_phrase, enrichment, titles[start:end], documents[start:end]
                )

            sides["phrases"] = full_phrase_by_phrase
        if args.with_serial:
            serial = TextAnalyzer(
                embedder, analyzer.entities, analyzer.language,
                overlap_encoder=False,
            )

            def full_serial(start: int, end: int) -> None:
                analyze_documents(
                    serial, enrichment, titles[start:end], documents[start:end]
                )

            sides["serial"] = full_serial
        if args.with_float:
            float_settings = settings.model_copy(update={"text_embedder": FLOAT_EMBEDDER})
            float_embedder, reason = build_text_embedder(float_settings)
            if float_embedder is None:
                raise SystemExit(f"no float text embedder: {reason}")
            float_stack = build_analysis_stack(
                float_settings, float_embedder, None, visual=None,
                visual_unavailable_reason="text benchmark",
            )

            float_analyzer, float_enrichment = float_stack.analyzer, float_stack.enrichment
            assert float_analyzer is not None and float_enrichment is not None

            def full_float(start: int, end: int) -> None:
                analyze_documents(
                    float_analyzer, float_enrichment, titles[start:end], documents[start:end]
                )

            full_float(0, args.batch)
            sides["float"] = full_float
        rates: dict[str, list[float]] = {name: [] for name in sides}
        for _ in range(args.rounds):
            # Interleaved batch by batch, so load from other processes falls on all sides.
            seconds = dict.fromkeys(sides, 0.0)
            for start in range(0, len(documents), args.batch):
                for name, run in sides.items():
                    started = time.perf_counter()
                    run(start, start + args.batch)
                    seconds[name] += time.perf_counter() - started
            for name in sides:
                rates[name].append(len(documents) / seconds[name])

    def rounds(name: str) -> str:
        return ", ".join(f"{r:.1f}" for r in rates[name])

    encode_rate, full_rate, project_rate = (
        statistics.median(rates[name]) for name in ("encode", "full", "project")
    )
    ratios = [f / e for f, e in zip(rates["full"], rates["encode"], strict=True)]
    print(f"sentence-transformers encode: {encode_rate:8.1f} texts/s  (rounds: {rounds('encode')})")
    print(f"full text analysis:           {full_rate:8.1f} items/s  (rounds: {rounds('full')})")
    print(f"  the project's ONNX encoder alone: {project_rate:.1f} texts/s "
          f"(rounds: {rounds('project')}); everything else takes "
          f"{1 - full_rate / project_rate:.0%} of the full analysis")
    if rates.get("phrases"):
        phrases_rate = statistics.median(rates["phrases"])
        print(f"full analysis, keywords embedded phrase by phrase: {phrases_rate:.1f} items/s "
              f"(rounds: {rounds('phrases')}), ratio to encode "
              f"{phrases_rate / encode_rate:.2f}x")
    if rates.get("st_small"):
        small_rate = statistics.median(rates["st_small"])
        print(f"sentence-transformers encode in batches of {args.with_st_batches}: "
              f"{small_rate:.1f} texts/s (rounds: {rounds('st_small')}); full analysis / "
              f"that: {full_rate / small_rate:.2f}x")
    if rates.get("float"):
        float_rate = statistics.median(rates["float"])
        print(f"full analysis with the float encoder: {float_rate:.1f} items/s "
              f"(rounds: {rounds('float')}), ratio to encode {float_rate / encode_rate:.2f}x")
    if rates.get("serial"):
        serial_rate = statistics.median(rates["serial"])
        print(f"full analysis, encoder and spaCy one after the other: {serial_rate:.1f} items/s "
              f"(rounds: {rounds('serial')}), ratio to encode {serial_rate / encode_rate:.2f}x")
    print(f"ratio full / encode: {statistics.median(ratios):.2f}x, median of rounds "
          f"({', '.join(f'{r:.2f}' for r in ratios)}); target >= 1")


if __name__ == "__main__":
    main()
