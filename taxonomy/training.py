"""Training rows for the shipped heads, assembled from the dev sets and the project's files.

Rows come from three places: the ``train`` part of every ``train``-role dev set (20
Newsgroups, DBpedia-14) with its mapped node; the project's own labeled JSON Lines files
(written here); and rows that should get no category (the ``train`` part of spam SMS and
seeded nonsense), which are negatives for every head. The ``calibration`` parts (and a
differently seeded batch of nonsense) are held out for calibrating the heads'
confidences. ``measure`` sets (BBC) are refused for both. ``topical`` sets (headlines
with no mapped class) feed only the topic gate (``topical_rows``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import InvalidInput
from taxonomy.dataset import read_labeled_jsonl
from taxonomy.devsets import DevSet, nonsense_texts
from taxonomy.tree import DATA_DIR, TaxonomyTree

TRAIN_NONSENSE_SEED = 1
CALIBRATION_NONSENSE_SEED = 2
TEST_NONSENSE_SEED = 3
NONSENSE_ROWS = {"train": 300, "calibration": 150, "test": 200}
NONSENSE_SEEDS = {"train": TRAIN_NONSENSE_SEED, "calibration": CALIBRATION_NONSENSE_SEED,
                  "test": TEST_NONSENSE_SEED}


@dataclass
class LabeledRows:
    texts: list[str] = field(default_factory=list)
    node_id_sets: list[tuple[str, ...]] = field(default_factory=list)  # () = no category
    sources: Counter[str] = field(default_factory=Counter)

    def add(self, text: str, node_ids: Sequence[str], source: str) -> None:
        self.texts.append(text)
        self.node_id_sets.append(tuple(node_ids))
        self.sources[source] += 1

    def __len__(self) -> int:
        return len(self.texts)


def project_training_files() -> list[Path]:
    """The project's own labeled files (``taxonomy/data/train/*.jsonl``, sorted): what the
    shipped heads and the evaluation's TF-IDF baseline both train on unless told otherwise,
    so a file added there reaches both."""
    return sorted((DATA_DIR / "train").glob("*.jsonl"))


def dev_rows(
    dev_sets: dict[str, DevSet],
    datasets_dir: Path,
    part: str,
    *,
    labeled_files: Sequence[Path] = (),
    tree: TaxonomyTree | None = None,
    with_nonsense: bool = True,
) -> LabeledRows:
    """The ``part`` ("train" or "calibration") of every train and abstain set, plus
    ``labeled_files`` (only for "train") and seeded nonsense."""
    if part not in ("train", "calibration"):
        raise InvalidInput(f"training rows come from 'train' or 'calibration', not {part!r}")
    rows = LabeledRows()
    for name, dev_set in dev_sets.items():
        if dev_set.role in ("measure", "topical"):
            continue  # measure-only sets never train or calibrate anything; topical: the gate
        if not (datasets_dir / dev_set.file).exists():
            if dev_set.role == "train":
                raise InvalidInput(f"dev set {name}: {datasets_dir / dev_set.file} is missing")
            continue
        for row in dev_set.rows(datasets_dir, part):  # type: ignore[arg-type]
            rows.add(row.text, (row.node_id,) if row.node_id else (), name)
    if part == "train" and labeled_files:
        if tree is None:
            raise InvalidInput("labeled files need the tree to resolve their labels")
        for path in labeled_files:
            for example in read_labeled_jsonl(path, tree):
                rows.add(example.text, example.node_ids, path.name)
    if with_nonsense:
        for text in nonsense_texts(NONSENSE_ROWS[part], NONSENSE_SEEDS[part]):
            rows.add(text, (), "nonsense")
    return rows


def topical_rows(dev_sets: dict[str, DevSet], datasets_dir: Path, part: str) -> LabeledRows:
    """The ``part`` of every ``topical`` set: rows about something, with no mapped class
    (their label sets are empty; only the topic gate reads them, as "has a category")."""
    if part not in ("train", "calibration"):
        raise InvalidInput(f"gate rows come from 'train' or 'calibration', not {part!r}")
    rows = LabeledRows()
    for name, dev_set in dev_sets.items():
        if dev_set.role != "topical":
            continue
        if not (datasets_dir / dev_set.file).exists():
            raise InvalidInput(f"dev set {name}: {datasets_dir / dev_set.file} is missing")
        for row in dev_set.rows(datasets_dir, part):  # type: ignore[arg-type]
            rows.add(row.text, (), name)
    return rows
