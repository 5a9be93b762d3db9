"""``reelsift train risk`` and ``reelsift evaluate risk``.

Mount with ``train_app.add_typer(moderation.risk.cli.app, name="risk")``: the training
runs as the group's callback, so ``reelsift train risk [OPTIONS]`` needs no further
sub-command; ``evaluate_app.command("risk")(moderation.risk.cli.evaluate)`` adds the
evaluation. ``train`` is importable on its own too.
"""

from __future__ import annotations

import filecmp
import json
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "datasets" / "moderation"
DEFAULT_CLEAN_DIR = REPO_ROOT.parent / "shared" / "datasets" / "taxonomy_dev"
DEFAULT_OUTPUT_DIR = REPO_ROOT / "moderation" / "risk" / "artifacts"
DEFAULT_CACHE_DIR = REPO_ROOT / "var" / "cache"
CacheDirOption = Annotated[Path, typer.Option(help="encoder export and word-piece state cache")]

app = typer.Typer(help="Train the text risk models (hate, harassment, profanity, spam, clickbait).")


def _resolve_repo_relative(path: Path) -> Path:
    return path if path.is_absolute() else (REPO_ROOT / path).resolve()


def _same_artifacts(trained: Path, shipped: Path) -> list[str]:
    """Files of ``trained`` whose bytes differ from (or are missing in) ``shipped``."""
    return [
        f.name for f in sorted(trained.iterdir())
        if not (shipped / f.name).is_file()
        or not filecmp.cmp(f, shipped / f.name, shallow=False)
    ]


@app.callback(invoke_without_command=True)
def train(
    data_dir: Annotated[
        Path, typer.Option(help="folder with the moderation *.train.csv files (repo-relative ok)")
    ] = DEFAULT_DATA_DIR,
    clean_dir: Annotated[
        Path, typer.Option(help="folder with the taxonomy_dev files (newsgroups, dbpedia)")
    ] = DEFAULT_CLEAN_DIR,
    output_dir: Annotated[
        Path, typer.Option(help="where the manifest and model file are written")
    ] = DEFAULT_OUTPUT_DIR,
    seed: Annotated[int, typer.Option(help="seed of the splits and models")] = 13,
    max_rows: Annotated[
        int | None,
        typer.Option(help="stratified sample per file, for quick trial runs (not for shipping)"),
    ] = None,
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="train into a temporary folder and fail unless every file equals "
            "--output-dir's byte for byte (the shipped artifacts are reproducible)",
        ),
    ] = False,
    token_states: Annotated[
        bool,
        typer.Option(
            help="give hate, profanity and spam a head over the served encoder's word-piece "
            "states (encodes every row once: about 25 minutes on 2 cores, then cached)",
        ),
    ] = True,
    cache_dir: CacheDirOption = DEFAULT_CACHE_DIR,
) -> None:
    """Train every head, save artifacts + manifest, print the held-out figures."""
    from rich.console import Console
    from rich.table import Table

    from moderation.risk.token_heads import default_token_cache
    from moderation.risk.training import TrainConfig, train_text_risk

    console = Console()
    data = _resolve_repo_relative(data_dir)
    output = _resolve_repo_relative(output_dir)
    config = TrainConfig(seed=seed, max_rows_per_source=max_rows)
    states = default_token_cache(_resolve_repo_relative(cache_dir)) if token_states else None
    with tempfile.TemporaryDirectory(prefix="risk-check-") as scratch:
        target = Path(scratch) if check else output
        result = train_text_risk(
            data, target, config, clean_dir=_resolve_repo_relative(clean_dir),
            token_states=states, progress=lambda msg: console.log(msg),
        )
        manifest = result.manifest
        table = Table(title=f"test split, {manifest['name']}@{manifest['version']}")
        for column in ("head", "source", "n", "pos", "ROC AUC", "P@R0.95", "R@P0.50",
                       "acc@0.5", "ECE", "ECE calib"):
            table.add_column(column)
        for head, per_source in result.metrics.items():
            for source, f in per_source.items():
                table.add_row(
                    head, source, str(f["n"]), str(f["positives"]), _fmt(f["roc_auc"]),
                    _fmt(f["precision_at_recall_0.95"]), _fmt(f["recall_at_precision_0.50"]),
                    _fmt(f["accuracy_at_threshold"]), _fmt(f["ece"]), _fmt(f.get("calib_ece")),
                )
        console.print(table)
        if check:
            differing = _same_artifacts(target, output)
            if differing:
                console.print(f"[red]differs from {output}: {', '.join(differing)}[/red]")
                raise typer.Exit(1)
            console.print(f"reproduced {output} byte for byte")
        else:
            console.print(f"artifacts written to {output}")


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def evaluate(
    data_dir: Annotated[
        Path, typer.Option(help="folder with the moderation *.train.csv files")
    ] = DEFAULT_DATA_DIR,
    clean_dir: Annotated[
        Path, typer.Option(help="folder with the taxonomy_dev files (newsgroups, dbpedia, BBC)")
    ] = DEFAULT_CLEAN_DIR,
    artifacts_dir: Annotated[
        Path | None, typer.Option(help="trained text risk model (default: the shipped one)")
    ] = None,
    policy_file: Annotated[
        Path | None, typer.Option(help="moderation policy YAML (default: the packaged one)")
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="also write every figure to this JSON file")
    ] = None,
    token_states: Annotated[
        bool,
        typer.Option(help="pass the served encoder's word-piece states to the model, as the "
                     "service does (first run encodes every row, then cached)"),
    ] = True,
    cache_dir: CacheDirOption = DEFAULT_CACHE_DIR,
) -> None:
    """Text risk per category and source on held-out rows, OLID levels, calibration, and
    the share of clean dev sets the policy would send to review."""
    from dataclasses import fields

    from rich.console import Console
    from rich.table import Table

    from core.targets import target_table
    from moderation.policy import Policy
    from moderation.risk.artifacts import DEFAULT_ARTIFACT_DIR
    from moderation.risk.evaluation import evaluate as run_evaluation
    from moderation.risk.model import TextRiskModel
    from moderation.risk.token_heads import default_token_cache

    console = Console(width=180)
    model = TextRiskModel.load(
        _resolve_repo_relative(artifacts_dir) if artifacts_dir else DEFAULT_ARTIFACT_DIR
    )
    policy = Policy.load(policy_file)
    cache = (default_token_cache(_resolve_repo_relative(cache_dir))
             if token_states and model.token_encoder is not None else None)
    result = run_evaluation(
        model, policy, _resolve_repo_relative(data_dir), _resolve_repo_relative(clean_dir),
        token_cache=cache,
    )
    console.print(f"model {result.model}; policy {result.policy}")
    for note in result.notes:
        console.print(f"[yellow]{note}[/yellow]")

    table = Table(title="held-out test rows (never trained or calibrated on); "
                  "acc@thr = accuracy at the policy's review threshold")
    for column in ("category", "source", "n", "pos", "AUC", "P@R0.95", "R@P0.50", "acc@thr",
                   "thr", "acc@0.5", "baseline", "b.AUC", "b.P@R0.95", "b.R@P0.50",
                   "b.acc@0.5"):
        table.add_column(column)
    for row in result.rows:
        b = row["baseline"]
        table.add_row(
            row["category"], row["source"], str(row["n"]), str(row["positives"]),
            _fmt(row["roc_auc"]), _fmt(row["precision_at_recall_0.95"]),
            _fmt(row["recall_at_precision_0.50"]), _fmt(row["accuracy_at_threshold"]),
            _fmt(row["threshold"], 2), _fmt(row["accuracy_at_0.5"]), b["method"],
            _fmt(b["roc_auc"]),
            _fmt(b["precision_at_recall_0.95"]), _fmt(b["recall_at_precision_0.50"]),
            _fmt(b["accuracy_at_0.5"]),
        )
    console.print(table)

    console.print("OLID validation split (test rows of the OLID training file):")
    for level, figures in result.olid.items():
        console.print(f"  {level}: " + ", ".join(f"{k}={_fmt(v)}" for k, v in figures.items()))

    ece = Table(title="expected calibration error (10 bins) per head and source, test rows")
    sources = sorted({s for per in result.ece.values() for s in per})
    ece.add_column("head")
    for source in sources:
        ece.add_column(source)
    for head, per_source in result.ece.items():
        ece.add_row(head, *(_fmt(per_source.get(s)) for s in sources))
    console.print(ece)

    clean = Table(title="clean dev sets: share sent to review by the policy (QA sample aside)")
    clean.add_column("set")
    clean.add_column("n")
    clean.add_column("to review")
    categories = sorted({c for f in result.clean.values() for c in f["per_category"]})
    for category in categories:
        clean.add_column(category)
    for name, figures in result.clean.items():
        clean.add_row(
            name, str(figures["n"]), f"{figures['reaches_review']:.2%}",
            *(f"{figures['per_category'][c]:.2%}" for c in categories),
        )
    console.print(clean)
    console.print("baseline: share of each clean set a single-domain model flags at 0.5")
    for name, figures in result.clean.items():
        console.print(f"  {name}: " + ", ".join(
            f"{model} {'-' if share is None else f'{share:.2%}'}"
            for model, share in figures["baseline_share_at_0.5"].items()
        ))
    for name, figures in result.clean.items():
        for title, cats in figures["examples"]:
            console.print(f"  {name} to review ({', '.join(cats)}): {title[:100]!r}")
    console.print(target_table(result.targets, "issue 14 targets"))
    if json_out is not None:
        # Every field but the fitted baseline models.
        figures = {f.name: getattr(result, f.name) for f in fields(result)
                   if f.name != "baselines"}
        figures["targets"] = [check.as_dict() for check in result.targets]
        json_out.write_text(json.dumps(figures, indent=2, default=str) + "\n")
        console.print(f"figures written to {json_out}")


if __name__ == "__main__":
    app()
