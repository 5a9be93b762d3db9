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

from analyzers.entities import DEFAULT_SPACY_PIPELINE
from core.errors import ReelsiftError


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
    from rich.console import Console

    from analyzers.entities import EntityPipeline, load_statistical
    from analyzers.entity_evaluation import (
        entity_pipeline_predictor,
        evaluate,
        read_conll,
        spacy_predictor,
        target_checks,
    )
    from core.targets import target_table

    sentences = read_conll(conll_file)[:limit]
    try:
        candidates = {
            "rules only": entity_pipeline_predictor(EntityPipeline(None)),
            "bare model (baseline)": spacy_predictor(load_statistical(pipeline)),
            "shipped": entity_pipeline_predictor(EntityPipeline(pipeline)),
        }
    except ReelsiftError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(2) from exc
    results: dict[str, dict[str, dict[str, float]]] = {}
    seconds: dict[str, float] = {}
    checks = []
    for name, predict in candidates.items():
        started = time.perf_counter()
        scores = evaluate(sentences, predict)
        seconds[name] = time.perf_counter() - started
        results[name] = scores.as_dict()
        if name == "shipped":
            checks = target_checks(scores)
    gold = next(iter(results.values()))
    summary = {
        "file": str(conll_file),
        "pipeline": pipeline,
        "sentences": len(sentences),
        "gold_entities": {label: gold[label]["gold"] for label in gold},
        "gold_misc_excluded": sum(
            1 for s in sentences for span in s.spans if span[2] == "MISC"
        ),
        "pipelines": results,
        "seconds": {name: round(value, 2) for name, value in seconds.items()},
        "targets": [check.as_dict() for check in checks],
    }
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    typer.echo(
        f"{conll_file}: {len(sentences)} sentences; gold "
        + ", ".join(f"{label} {gold[label]['gold']}" for label in ("PER", "ORG", "LOC"))
        + f"; {summary['gold_misc_excluded']} MISC spans left out. Exact spans.\n"
        f"bare model = {pipeline} alone; shipped = {pipeline} with the rules."
    )
    typer.echo(f"{'':8}" + "".join(f"{name:>26}" for name in results))
    typer.echo(f"{'':8}" + "".join(f"{'P     R     F1':>26}" for _ in results))
    for label in ("PER", "ORG", "LOC", "overall"):
        typer.echo(
            f"{label:8}"
            + "".join(
                f"{r[label]['precision']:>14.3f}{r[label]['recall']:6.3f}{r[label]['f1']:6.3f}"
                for r in results.values()
            )
        )
    typer.echo(f"{'seconds':8}" + "".join(f"{seconds[name]:>26.1f}" for name in results))
    Console(width=150).print(target_table(checks, "issue 13 entity targets (shipped)"))
