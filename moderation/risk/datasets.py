"""The labelled text sets the risk heads learn from, and how their labels become targets.

Each set is a ``text,label`` CSV (see ``DATA_SOURCES.md``). A *head* is one binary
classifier; ``HEADS`` says which file feeds it and which labels count as positive. The
mapping from heads to the contract's risk categories lives in ``heads.py``.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.errors import InvalidInput


@dataclass(frozen=True)
class HeadSpec:
    """One binary classifier: the file it is trained on and its positive labels."""

    name: str
    dataset: str  # file name inside the data dir
    positive_labels: frozenset[str]
    known_labels: frozenset[str]
    uses_profanity_check: bool


HEADS: tuple[HeadSpec, ...] = (
    HeadSpec(
        name="abusive",
        dataset="offensive_tweets.train.csv",
        positive_labels=frozenset({"hate", "offensive"}),
        known_labels=frozenset({"hate", "offensive", "neither"}),
        uses_profanity_check=True,
    ),
    HeadSpec(
        name="hate",
        dataset="offensive_tweets.train.csv",
        positive_labels=frozenset({"hate"}),
        known_labels=frozenset({"hate", "offensive", "neither"}),
        uses_profanity_check=True,
    ),
    HeadSpec(
        name="spam",
        dataset="sms_spam.train.csv",
        positive_labels=frozenset({"spam"}),
        known_labels=frozenset({"spam", "ham"}),
        uses_profanity_check=False,
    ),
    HeadSpec(
        name="clickbait",
        dataset="clickbait_headlines.train.csv",
        positive_labels=frozenset({"clickbait"}),
        known_labels=frozenset({"clickbait", "not_clickbait"}),
        uses_profanity_check=False,
    ),
)
HEADS_BY_NAME = {head.name: head for head in HEADS}


@dataclass(frozen=True)
class LabelledTexts:
    """Rows of one CSV: texts, their raw labels, and the file's sha256 (the cache key)."""

    path: Path
    texts: list[str]
    labels: list[str]
    sha256: str  # of the whole file, also for a sample of it
    sample: str | None = None  # digest of the sampled row indices, None for all rows

    @property
    def cache_key(self) -> str:
        return self.sha256 if self.sample is None else f"{self.sha256}-sample-{self.sample}"

    def targets(self, head: HeadSpec) -> np.ndarray:
        return np.fromiter(
            (label in head.positive_labels for label in self.labels), dtype=np.int8,
            count=len(self.labels),
        )

    def subset(self, indices: np.ndarray) -> LabelledTexts:
        return LabelledTexts(
            path=self.path,
            texts=[self.texts[i] for i in indices],
            labels=[self.labels[i] for i in indices],
            sha256=self.sha256,
            sample=_indices_digest(indices),
        )


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _indices_digest(indices: np.ndarray) -> str:
    return hashlib.sha256(np.asarray(indices, dtype=np.int64).tobytes()).hexdigest()[:16]


def load_labelled_csv(path: Path, known_labels: frozenset[str]) -> LabelledTexts:
    """Read a ``text,label`` file, refusing unknown labels rather than guessing."""
    if not path.is_file():
        raise InvalidInput(
            f"training file {path} does not exist; pass --data-dir pointing at the folder with "
            "offensive_tweets.train.csv, sms_spam.train.csv and clickbait_headlines.train.csv",
            path=str(path),
        )
    texts: list[str] = []
    labels: list[str] = []
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not {"text", "label"} <= set(reader.fieldnames):
            raise InvalidInput(
                f"{path} must have the columns text,label; found {reader.fieldnames}",
                path=str(path),
            )
        for line_no, row in enumerate(reader, start=2):
            label = (row["label"] or "").strip()
            if label not in known_labels:
                raise InvalidInput(
                    f"{path}:{line_no}: label {label!r} is not one of {sorted(known_labels)}",
                    path=str(path),
                    line=line_no,
                )
            texts.append(row["text"] or "")
            labels.append(label)
    if not texts:
        raise InvalidInput(f"{path} has no rows", path=str(path))
    return LabelledTexts(path=path, texts=texts, labels=labels, sha256=file_sha256(path))
