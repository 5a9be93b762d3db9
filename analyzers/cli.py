"""``reelsift evaluate entities``: exact-span P/R/F1 of the entity pipeline on CoNLL data.

Mounted under the ``evaluate`` sub-app by ``serving/cli.py``. Three pipelines run in
one process on the same sentences: the rules alone, the bare statistical pipeline (the
baseline: spaCy's NER as shipped by its authors, no rules) and the shipped pipeline
(statistical NER with the project's rulers and span clean-up). Scoring is described in
``analyzers/entity_evaluation.py``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from analyzers.entities import DEFAULT_SPACY_PIPELINE
from core.errors import ReelsiftError

console = Console()


def evaluate_entities(
    conll_file: Annotated[
        Path,
        typer.Argument(exists=True, dir_okay=False, help="CoNLL-2003 format: token POS chunk NER"),
    ],
    pipeline: Annotated[
        str, typer.Option(help="spaCy pipeline (installed name or directory) under test")
    ] = DEFAULT_SPACY_PIPELINE,
    limit: Annotated[int | None, typer.Option(min=1, help="first N sentences only")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the figures as JSON")] = False,
) -> None:
    """P/R/F1 per label (PER, ORG, LOC) for the rules, the bare statistical pipeline and
    the shipped pipeline. Predictions map PERSON->PER, ORG->ORG, GPE/LOC/FAC->LOC; gold
    MISC and every other predicted label are left out."""
    from analyzers.entities import EntityPipeline, load_statistical
    from analyzers.entity_evaluation import (
        entity_pipeline_predictor,
        evaluate,
        read_conll,
        spacy_predictor,
    )

    sentences = read_conll(conll_file)[:limit]
    try:
        candidates = {
            "rules only": entity_pipeline_predictor(EntityPipeline(None)),
            f"{pipeline} (bare, baseline)": spacy_predictor(load_statistical(pipeline)),
            f"{pipeline} + rules (shipped)": entity_pipeline_predictor(EntityPipeline(pipeline)),
        }
    except ReelsiftError as exc:
        console.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(2) from exc
    results: dict[str, dict[str, dict[str, float]]] = {}
    seconds: dict[str, float] = {}
    for name, predict in candidates.items():
        started = time.perf_counter()
        results[name] = evaluate(sentences, predict).as_dict()
        seconds[name] = time.perf_counter() - started
    gold = next(iter(results.values()))
    summary = {
        "file": str(conll_file),
        "sentences": len(sentences),
        "gold_entities": {label: gold[label]["gold"] for label in gold},
        "gold_misc_excluded": sum(
            1 for s in sentences for span in s.spans if span[2] == "MISC"
        ),
        "pipelines": results,
        "seconds": {name: round(value, 2) for name, value in seconds.items()},
    }
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    console.print(
        f"{conll_file}: {len(sentences)} sentences, gold PER/ORG/LOC "
        + ", ".join(f"{label} {gold[label]['gold']}" for label in ("PER", "ORG", "LOC"))
        + f"; {summary['gold_misc_excluded']} MISC spans excluded. Exact spans."
    )
    table = Table("label", *[f"{name}\nP / R / F1" for name in results])
    for label in ("PER", "ORG", "LOC", "overall"):
        table.add_row(
            label,
            *[
                f"{r[label]['precision']:.3f} / {r[label]['recall']:.3f} / {r[label]['f1']:.3f}"
                for r in results.values()
            ],
        )
    table.add_row("seconds", *[f"{seconds[name]:.1f}" for name in results])
    console.print(table)
