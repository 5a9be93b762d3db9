"""``reelsift train risk``: retrain the text risk heads and print the validation figures.

Mount with ``train_app.add_typer(moderation.risk.cli.app, name="risk")``: the training
runs as the group's callback, so ``reelsift train risk [OPTIONS]`` needs no further
sub-command. ``train`` is importable on its own too (``train_app.command("risk")(train)``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from moderation.risk.embedding_cache import REPO_ROOT

DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "datasets" / "moderation"
DEFAULT_OUTPUT_DIR = REPO_ROOT / "moderation" / "risk" / "artifacts"
DEFAULT_EMBEDDER = "reelsift.text_embedder.onnx.v1"

app = typer.Typer(help="Train the text risk models (hate, harassment, profanity, spam, clickbait).")


def _resolve_repo_relative(path: Path) -> Path:
    return path if path.is_absolute() else (REPO_ROOT / path).resolve()


def _make_embedder(name: str, threads: int) -> Any:
    import importlib

    from analyzers.model_registry import ModelRegistry
    from core.registry import resolve, text_embedders

    # Importing the module registers the project's embedders under their names.
    importlib.import_module("analyzers.text_embedding")
    factory = resolve(text_embedders, name)
    return factory(ModelRegistry(), REPO_ROOT / "var" / "cache", threads=threads)


@app.callback(invoke_without_command=True)
def train(
    data_dir: Annotated[
        Path, typer.Option(help="folder with the three *.train.csv files (repo-relative ok)")
    ] = DEFAULT_DATA_DIR,
    output_dir: Annotated[
        Path, typer.Option(help="where the manifest and model file are written")
    ] = DEFAULT_OUTPUT_DIR,
    seed: Annotated[int, typer.Option(help="seed of the holdout split, folds and models")] = 13,
    embedder: Annotated[
        str, typer.Option(help="registered text embedder (core.registry.text_embedders)")
    ] = DEFAULT_EMBEDDER,
    threads: Annotated[int, typer.Option(help="CPU threads for embedding")] = 2,
    max_rows: Annotated[
        int | None,
        typer.Option(help="stratified sample per file, for quick trial runs (not for shipping)"),
    ] = None,
) -> None:
    """Train every head, save artifacts + manifest, print the held-out figures."""
    from rich.console import Console
    from rich.table import Table

    from moderation.risk.training import TrainConfig, train_text_risk

    console = Console()
    data = _resolve_repo_relative(data_dir)
    output = _resolve_repo_relative(output_dir)
    text_embedder = _make_embedder(embedder, threads)
    config = TrainConfig(seed=seed, max_rows_per_dataset=max_rows)
    result = train_text_risk(
        data, output, text_embedder, config, progress=lambda msg: console.log(msg)
    )
    manifest = result.manifest
    table = Table(
        title=f"held-out validation, {manifest['name']}@{manifest['version']} "
        "(cv_full: 5-fold CV on the fit part instead)"
    )
    for column in ("head", "stack", "ROC AUC", "P@R0.95", "R@P0.50", "accuracy@thr", "thr", "ECE"):
        table.add_column(column)
    for head, figures in result.metrics.items():
        for stack in ("full", "lexical", "cv_full"):
            f = figures[stack]
            table.add_row(
                head, stack, f"{f['roc_auc']:.4f}", f"{f['precision_at_recall_0.95']:.4f}",
                f"{f['recall_at_precision_0.50']:.4f}", f"{f['accuracy_at_threshold']:.4f}",
                f"{f['threshold']:.2f}", f"{f['ece']:.4f}",
            )
    console.print(table)
    console.print(f"artifacts written to {output}")


if __name__ == "__main__":
    app()
