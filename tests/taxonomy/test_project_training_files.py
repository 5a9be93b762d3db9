"""The project's own training files: one list for the shipped heads and the baseline."""

from __future__ import annotations

from taxonomy.dataset import read_labeled_jsonl
from taxonomy.training import project_training_files
from taxonomy.tree import DATA_DIR, TaxonomyTree


def test_project_training_files_are_the_train_folder_sorted_and_every_label_resolves() -> None:
    files = project_training_files()
    assert [f.name for f in files] == sorted(p.name for p in (DATA_DIR / "train").glob("*.jsonl"))
    assert {"labeled.jsonl", "news_style_business.jsonl"} <= {f.name for f in files}
    tree = TaxonomyTree.default()
    for path in files:
        examples = read_labeled_jsonl(path, tree)  # raises on a label IAB 3.1 does not have
        assert examples and all(e.text.strip() and e.node_ids for e in examples), path.name
