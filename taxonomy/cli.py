"""``reelsift train taxonomy`` and ``reelsift evaluate taxonomy``: a typer sub-app.

Mount either the whole ``app`` or the ``train`` / ``evaluate`` functions as commands.
The text model comes from the text-embedder registry (``--embedder``), resolved offline
by the model registry like everywhere else in reelsift.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from analyzers.base import TextEmbedder
from core.errors import ReelsiftError
from core.registry import DEFAULT_TEXT_EMBEDDER

if TYPE_CHECKING:
    from taxonomy.classifier import TaxonomyClassifier

app = typer.Typer(help="Taxonomy: train per-node heads, evaluate the classifier.",
                  no_args_is_help=True)
console = Console()

DEFAULT_EMBEDDER = DEFAULT_TEXT_EMBEDDER  # what the service runs unless configured otherwise

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
        list[Path] | None,
        typer.Argument(help="JSON Lines files: {text, labels: [path or id]}; with "
                       "--dev-sets and none given, taxonomy/data/train/*.jsonl"),
    ] = None,
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
    dev_sets: Annotated[
        Path | None,
        typer.Option(help="shared datasets directory (../shared/datasets): train on the "
                     "train part of the dev sets in taxonomy/data/dev_label_map.yaml as well, "
                     "with a tier-1 softmax head calibrated on their calibration part"),
    ] = None,
    gate_recall: Annotated[
        float,
        typer.Option(help="with --dev-sets: the topic gate keeps this share of held-out rows "
                     "that have a category (its threshold); rows under it get no label"),
    ] = 0.98,
) -> None:
    """Train per-node heads over text embeddings and save them as a versioned artifact."""
    from taxonomy.classifier import TaxonomyClassifier
    from taxonomy.dataset import at_most_per_category, read_labeled_jsonl
    from taxonomy.training import project_training_files
    from taxonomy.tree import TaxonomyTree

    labeled = labeled or []
    if dev_sets is not None:
        labeled = labeled or project_training_files()
        if max_per_category is not None:
            raise _fail(ReelsiftError("--max-per-category applies to plain files, not --dev-sets"))
        _train_on_dev_sets(dev_sets, labeled, out, taxonomy, embedder, cache_dir, model_path,
                           regularisation, min_positives, gate_recall)
        return
    if not labeled:
        raise _fail(ReelsiftError("give labeled JSON Lines files, --dev-sets, or both"))
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


def _train_on_dev_sets(
    datasets_dir: Path, labeled: list[Path], out: Path, taxonomy: Path | None, embedder: str,
    cache_dir: Path, model_path: Path | None, regularisation: float, min_positives: int,
    gate_recall: float,
) -> None:
    import numpy as np

    from taxonomy.classifier import TaxonomyClassifier
    from taxonomy.devsets import load_dev_sets
    from taxonomy.documents import ChunkSettings, VectorCache
    from taxonomy.training import dev_rows, topical_rows
    from taxonomy.tree import TaxonomyTree

    try:
        tree = TaxonomyTree.load(taxonomy) if taxonomy else TaxonomyTree.default()
        sets = load_dev_sets(tree)
        train_rows = dev_rows(sets, datasets_dir, "train", labeled_files=labeled, tree=tree)
        held_out = dev_rows(sets, datasets_dir, "calibration")
        text_embedder = _text_embedder(embedder, cache_dir, model_path)
        classifier = TaxonomyClassifier(tree, text_embedder, cache_dir=cache_dir)
        classifier.vector_cache = VectorCache(cache_dir / "taxonomy-chunks", text_embedder.model.id)
        chunking = ChunkSettings()
        documents = classifier.documents
        console.print(f"embedding {len(train_rows)} training and {len(held_out)} held-out rows "
                      f"(chunks cached under {cache_dir / 'taxonomy-chunks'})")
        heads = classifier.train_heads(
            documents.embed_texts(train_rows.texts),
            train_rows.node_id_sets,
            regularisation=regularisation,
            min_positives=min_positives,
            root_head=True,
            held_out_vectors=documents.embed_texts(held_out.texts),
            held_out_node_id_sets=held_out.node_id_sets,
            chunking=chunking,
            texts=train_rows.texts,
            held_out_texts=held_out.texts,
        )
        # The topic gate: rows with a category (and headlines) against rows about nothing.
        gate_train = topical_rows(sets, datasets_dir, "train")
        gate_held_out = topical_rows(sets, datasets_dir, "calibration")
        console.print(f"topic gate: embedding {len(gate_train)} + {len(gate_held_out)} "
                      "topical rows with no mapped class")
        gate = classifier.train_topic_gate(
            np.concatenate([documents.embed_texts(train_rows.texts),
                            documents.embed_texts(gate_train.texts)]),
            [bool(ids) for ids in train_rows.node_id_sets] + [True] * len(gate_train),
            np.concatenate([documents.embed_texts(held_out.texts),
                            documents.embed_texts(gate_held_out.texts)]),
            [bool(ids) for ids in held_out.node_id_sets] + [True] * len(gate_held_out),
            recall=gate_recall,
        )
        heads.hyper["training_rows"] = dict(sorted(train_rows.sources.items()))
        heads.hyper["held_out_rows"] = dict(sorted(held_out.sources.items()))
        heads.hyper["topic_gate_rows"] = {"train": dict(sorted(gate_train.sources.items())),
                                          "held_out": dict(sorted(gate_held_out.sources.items()))}
        heads.hyper["labeled_files"] = [p.name for p in labeled]
        heads.save(out)
    except ReelsiftError as exc:
        raise _fail(exc) from exc
    assert heads.root_head is not None
    console.print(
        f"trained {len(heads.node_ids)} node heads and a root head over "
        f"{len(heads.root_head.classes)} classes on {len(train_rows)} rows "
        f"{dict(train_rows.sources)}; temperature {heads.root_head.temperature:.3f} from "
        f"{len(held_out)} held-out rows; word head blend "
        f"{heads.word_head.blend if heads.word_head else '-'}; "
        f"topic gate threshold {gate.threshold:.3f} "
        f"(held out: {gate.held_out}); saved to {out}"
    )


@app.command()
def evaluate(
    labeled: Annotated[
        Path | None,
        typer.Argument(help="JSON Lines: {text, labels: [path or id]}; without it, the public "
                       "dev sets in --datasets-dir are measured"),
    ] = None,
    heads: Annotated[
        Path | None, typer.Option(help="heads artifact from `train`; default: the shipped one")
    ] = None,
    zero_shot: Annotated[bool, typer.Option(help="no heads at all (node texts only)")] = False,
    datasets_dir: Annotated[
        Path, typer.Option(help="shared datasets directory for the dev-set evaluation")
    ] = Path("../shared/datasets"),
    labeled_files: Annotated[
        list[Path] | None,
        typer.Option("--labeled-file", help="the project files the heads were trained on, for "
                     "the TF-IDF baseline's training rows (default: taxonomy/data/train/*)"),
    ] = None,
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
            use_shipped_heads=not zero_shot,
        )
        if labeled is None:
            _evaluate_dev_sets(classifier, datasets_dir, labeled_files, cache_dir,
                               min_confidence, as_json)
            return
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


def _evaluate_dev_sets(classifier: TaxonomyClassifier, datasets_dir: Path,
                       labeled_files: list[Path] | None, cache_dir: Path,
                       min_confidence: float, as_json: bool) -> None:
    from core.targets import target_table
    from taxonomy.dev_evaluation import (
        REPORTED_COVERAGE,
        TfidfBaseline,
        eval_sets,
        evaluate_dev_sets,
        target_checks,
    )
    from taxonomy.devsets import load_dev_sets
    from taxonomy.documents import VectorCache
    from taxonomy.training import dev_rows, project_training_files

    assert classifier.text_embedder is not None
    classifier.vector_cache = VectorCache(cache_dir / "taxonomy-chunks",
                                          classifier.text_embedder.model.id)
    sets = load_dev_sets(classifier.tree)
    files = labeled_files if labeled_files is not None else project_training_files()
    train_rows = dev_rows(sets, datasets_dir, "train", labeled_files=files, tree=classifier.tree)
    baseline = TfidfBaseline(train_rows, classifier)
    results = evaluate_dev_sets(classifier, eval_sets(sets, datasets_dir), baseline,
                                min_confidence)
    if as_json:
        typer.echo(json.dumps({"sets": [r.as_dict() for r in results],
                               "targets": [c.as_dict() for c in target_checks(results)]}))
        return
    heads = classifier.heads
    table = Table(title=(
        f"taxonomy on public dev sets ({classifier.tree.version}, "
        f"{classifier.text_embedder.model.id}, heads: "
        f"{heads.hyper.get('training_rows') if heads else 'none'}, "
        f"min_confidence {min_confidence}); baseline trained on the same {len(train_rows)} rows"
    ))
    for column in ("set", "method", "items", "tier-1 accuracy", "coverage",
                   "accuracy when labelled", f"accuracy at coverage {REPORTED_COVERAGE}"):
        table.add_column(column, justify="left" if column in ("set", "method") else "right",
                         no_wrap=True)

    def fmt(v: float | None) -> str:
        return "-" if v is None else f"{v:.3f}"

    for r in results:
        # Abstention sets: coverage is the share wrongly labelled.
        coverage = fmt(r.coverage) + (" (should be 0)" if r.accuracy is None else "")
        table.add_row(r.dataset, r.method, str(r.items), fmt(r.accuracy), coverage,
                      fmt(r.selective_accuracy), fmt(r.accuracy_at_coverage))
    wide = Console(width=max(console.width, 150))
    wide.print(table)
    # Per class, the methods side by side: where a set's figure is lost (BBC business).
    methods = list(dict.fromkeys(r.method for r in results))
    per_class = Table(title="tier-1 accuracy per class (the set's own classes; all rows)")
    per_class.add_column("set", no_wrap=True)
    per_class.add_column("class", no_wrap=True)
    for method in methods:
        per_class.add_column(method, justify="right")
    for dataset in dict.fromkeys(r.dataset for r in results if r.per_class):
        by_method = {r.method: r.per_class for r in results if r.dataset == dataset}
        names = next(iter(by_method.values()))
        for name in names:
            per_class.add_row(dataset, name, *[
                fmt(by_method[m].get(name)) if m in by_method else "-" for m in methods])
    wide.print(per_class)
    wide.print(target_table(target_checks(results), "issue 13 targets"))
