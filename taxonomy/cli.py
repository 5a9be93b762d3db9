"""``reelsift train taxonomy`` and ``reelsift evaluate taxonomy``: a typer sub-app.

Mount either the whole ``app`` or the ``train`` / ``evaluate`` functions as commands.
The text model comes from the text-embedder registry (``--embedder``), resolved offline
by the model registry like everywhere else in reelsift.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from analyzers.base import TextEmbedder
from core.errors import ReelsiftError

app = typer.Typer(help="Taxonomy: train per-node heads, evaluate the classifier.",
                  no_args_is_help=True)
console = Console()

DEFAULT_EMBEDDER = "reelsift.text_embedder.onnx.v1"

EmbedderOption = Annotated[
    str, typer.Option(help="text embedder registry name (core.registry.text_embedders)")
]
CacheOption = Annotated[
    Path, typer.Option(help="cache for model exports and node-embedding matrices")
]
ModelPathOption = Annotated[
    Path | None, typer.Option(help="explicit local path of the text model directory")
]
TaxonomyOption = Annotated[
    Path | None, typer.Option(help="custom tree (.tsv or .yaml); default IAB 3.1")
]


def _text_embedder(name: str, cache_dir: Path, model_path: Path | None) -> TextEmbedder:
    import analyzers.text_embedding  # noqa: F401  (registers the embedders)
    from analyzers.model_registry import ModelRegistry
    from core.registry import resolve, text_embedders

    factory = resolve(text_embedders, name)
    registry = ModelRegistry({"text_embedding": model_path} if model_path else None)
    embedder: TextEmbedder = factory(registry=registry, cache_dir=cache_dir)
    return embedder


def _fail(exc: ReelsiftError) -> typer.Exit:
    console.print(f"[red]{exc}[/red]")
    return typer.Exit(code=2)


@app.command()
def train(
    labeled: Annotated[
        list[Path], typer.Argument(help="JSON Lines files: {text, labels: [path or id]}")
    ],
    out: Annotated[Path, typer.Option(help="artifact directory to write")] = Path(
        "var/models/taxonomy-heads"
    ),
    taxonomy: TaxonomyOption = None,
    embedder: EmbedderOption = DEFAULT_EMBEDDER,
    cache_dir: CacheOption = Path("var/cache"),
    model_path: ModelPathOption = None,
    regularisation: Annotated[float, typer.Option(help="inverse L2 strength (C)")] = 4.0,
    min_positives: Annotated[int, typer.Option(help="examples a node needs for a head")] = 2,
    calibrate: Annotated[bool, typer.Option(help="refit the zero-shot calibration too")] = True,
    max_per_category: Annotated[
        int | None,
        typer.Option(help="keep the first N examples of each tier-1 category from each file "
                     "(a balanced few-shot set: 10 from each of two styles = 20 a category)"),
    ] = None,
) -> None:
    """Train per-node heads over text embeddings and save them as a versioned artifact."""
    from taxonomy.classifier import TaxonomyClassifier
    from taxonomy.dataset import at_most_per_category, read_labeled_jsonl
    from taxonomy.tree import TaxonomyTree

    try:
        tree = TaxonomyTree.load(taxonomy) if taxonomy else TaxonomyTree.default()
        examples = []
        for path in labeled:
            from_file = read_labeled_jsonl(path, tree)
            if max_per_category is not None:
                from_file = at_most_per_category(from_file, tree, max_per_category)
            examples.extend(from_file)
        text_embedder = _text_embedder(embedder, cache_dir, model_path)
        classifier = TaxonomyClassifier(tree, text_embedder, cache_dir=cache_dir)
        vectors = text_embedder.encode([e.text for e in examples])
        heads = classifier.train_heads(
            vectors,
            [e.node_ids for e in examples],
            regularisation=regularisation,
            min_positives=min_positives,
            refit_calibration=calibrate,
        )
        heads.save(out)
    except ReelsiftError as exc:
        raise _fail(exc) from exc
    console.print(
        f"trained {len(heads.node_ids)} node heads on {len(examples)} examples "
        f"({tree.version}, {heads.embedding_model}); "
        f"calibration {'refitted' if heads.calibration else 'kept'}; saved to {out}"
    )


@app.command()
def evaluate(
    labeled: Annotated[Path, typer.Argument(help="JSON Lines: {text, labels: [path or id]}")],
    heads: Annotated[Path | None, typer.Option(help="heads artifact from `train`")] = None,
    taxonomy: TaxonomyOption = None,
    embedder: EmbedderOption = DEFAULT_EMBEDDER,
    cache_dir: CacheOption = Path("var/cache"),
    model_path: ModelPathOption = None,
    min_confidence: Annotated[float, typer.Option()] = 0.3,
    max_labels: Annotated[int, typer.Option()] = 3,
    plot: Annotated[Path | None, typer.Option(help="write the confusion matrix PNG here")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
) -> None:
    """Tier-1 accuracy, hierarchical P/R/F1, coverage and a tier-1 confusion table."""
    from taxonomy.classifier import ClassifierSettings, TaxonomyClassifier
    from taxonomy.dataset import read_labeled_jsonl
    from taxonomy.evaluation import evaluate as run_evaluation
    from taxonomy.evaluation import plot_confusion

    try:
        text_embedder = _text_embedder(embedder, cache_dir, model_path)
        classifier = TaxonomyClassifier.load(
            text_embedder,
            tree=taxonomy,
            heads_dir=heads,
            cache_dir=cache_dir,
            settings=ClassifierSettings(max_labels=max_labels, min_confidence=min_confidence),
        )
        examples = read_labeled_jsonl(labeled, classifier.tree)
        report = run_evaluation(classifier, examples)
    except ReelsiftError as exc:
        raise _fail(exc) from exc

    if as_json:
        typer.echo(json.dumps(report.summary()))
    else:
        metrics = Table(title=f"taxonomy evaluation: {labeled.name} ({classifier.tree.version})")
        metrics.add_column("metric")
        metrics.add_column("value", justify="right")
        for key, value in report.summary().items():
            metrics.add_row(key, str(value))
        console.print(metrics)
        confusion = Table(title="tier-1 confusion (rows: gold, columns: predicted, by number)")
        confusion.add_column("gold")
        for number in range(1, len(report.confusion_labels) + 1):
            confusion.add_column(str(number), justify="right")
        for number, (name, row) in enumerate(
            zip(report.confusion_labels, report.confusion, strict=True), start=1
        ):
            confusion.add_row(f"{number}. {name}", *[str(v) if v else "." for v in row])
        console.print(confusion)
    if plot is not None:
        path = plot_confusion(report, plot)
        console.print(f"confusion matrix written to {path}")
