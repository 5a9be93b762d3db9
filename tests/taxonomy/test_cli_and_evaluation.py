from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from taxonomy.classifier import TaxonomyClassifier
from taxonomy.dataset import LabeledExample
from taxonomy.evaluation import evaluate, plot_confusion
from taxonomy.tree import TaxonomyTree

from .conftest import HashingTextEmbedder

EMBEDDER = "reelsift.test.hashing_text_embedder.v1"
ROWS = [
    ("the striker scored a goal in the premier league", ["Sports > Soccer"]),
    ("wimbledon serve racket", ["tennis"]),
    ("neural network chatbot machine learning", ["ai"]),
    ("semiconductor processor chip maker", ["chips"]),
    ("sourdough starter loaf", ["sourdough"]),
    ("cake in the oven", ["Food > Baking"]),
    ("recipe for cooking dinner", ["food"]),
    ("football goal and a cake", ["soccer", "baking"]),
]


def _jsonl(path: Path, rows: list[tuple[str, list[str]]]) -> Path:
    path.write_text("".join(json.dumps({"text": t, "labels": ls}) + "\n" for t, ls in rows),
                    encoding="utf-8")
    return path


def test_metrics_are_perfect_on_own_predictions_and_zero_on_wrong_roots(
    small_tree: TaxonomyTree, embedder: HashingTextEmbedder
) -> None:
    classifier = TaxonomyClassifier(small_tree, embedder)
    texts = [t for t, _ in ROWS]
    predicted = classifier.classify_texts(texts)
    own = [LabeledExample(t, tuple(label.id for label in labels), i)
           for i, (t, labels) in enumerate(zip(texts, predicted, strict=True)) if labels]
    report = evaluate(classifier, own)
    assert report.hierarchical_precision == report.hierarchical_recall == 1.0
    assert report.tier1_accuracy == 1.0 and report.coverage == 1.0

    roots = {"sports": "tech", "tech": "food", "food": "sports"}
    wrong = [LabeledExample(e.text, (roots[small_tree.ancestors(e.node_ids[0])[0].id
                                           if small_tree.get(e.node_ids[0]).parent
                                           else e.node_ids[0]],), e.line)
             for e in own if len({small_tree.resolve(i).path[0] for i in e.node_ids}) == 1]
    bad = evaluate(classifier, wrong)
    assert bad.tier1_accuracy == 0.0
    assert bad.confusion.trace() == 0 and bad.confusion.sum() == len(wrong)


def test_train_then_evaluate_from_the_command_line(small_tree_path: Path, tmp_path: Path
                                                   ) -> None:
    from taxonomy.cli import app

    labeled = _jsonl(tmp_path / "labeled.jsonl", ROWS)
    runner = CliRunner()
    common = ["--taxonomy", str(small_tree_path), "--embedder", EMBEDDER,
              "--cache-dir", str(tmp_path / "cache")]
    out = tmp_path / "heads"
    trained = runner.invoke(app, ["train", str(labeled), "--out", str(out), *common])
    assert trained.exit_code == 0, trained.output
    config = json.loads((out / "config.json").read_text())
    assert (config["kind"], config["format"]) == ("taxonomy.heads", 3)
    assert config["files"]["heads.npz"]["bytes"] == (out / "heads.npz").stat().st_size
    assert config["embedding_model"] == "hashing-bow@d2048"
    assert (out / "heads.npz").exists()

    plot = tmp_path / "confusion.png"
    evaluated = runner.invoke(app, ["evaluate", str(labeled), "--heads", str(out), "--json",
                                    "--plot", str(plot), *common])
    assert evaluated.exit_code == 0, evaluated.output
    summary = json.loads(evaluated.output.splitlines()[0])
    assert set(summary) >= {"tier1_accuracy", "hierarchical_f1", "coverage"}
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # Several files, balanced: at most N examples a tier-1 category from each.
    other = _jsonl(tmp_path / "other.jsonl", ROWS)
    balanced = runner.invoke(app, ["train", str(labeled), str(other), "--max-per-category", "1",
                                   "--out", str(tmp_path / "balanced"), *common])
    assert balanced.exit_code == 0, balanced.output
    tree = TaxonomyTree.load(small_tree_path)

    def root(label: str) -> str:
        node = tree.resolve(label)
        return (tree.ancestors(node.id) or [node])[0].id

    roots = {root(labels[0]) for _, labels in ROWS}
    balanced_config = json.loads((tmp_path / "balanced" / "config.json").read_text())
    assert balanced_config["hyper"]["examples"] == 2 * len(roots) < 2 * len(ROWS)

    table = runner.invoke(app, ["evaluate", str(labeled), *common])
    assert table.exit_code == 0 and "tier1_accuracy" in table.output

    missing = runner.invoke(app, ["evaluate", str(tmp_path / "nope.jsonl"), *common])
    assert missing.exit_code == 2 and "E101" in missing.output


def test_plot_writes_png(small_tree: TaxonomyTree, embedder: HashingTextEmbedder,
                         tmp_path: Path) -> None:
    classifier = TaxonomyClassifier(small_tree, embedder)
    examples = [LabeledExample(t, tuple(small_tree.resolve(x).id for x in ls), i)
                for i, (t, ls) in enumerate(ROWS)]
    path = plot_confusion(evaluate(classifier, examples), tmp_path / "c.png")
    assert path.stat().st_size > 1000
