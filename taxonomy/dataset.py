"""Labeled examples: JSON Lines of ``{"text": ..., "labels": ["Sports > Soccer", "483", ...]}``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from core.errors import InvalidInput, ReelsiftError
from taxonomy.tree import TaxonomyTree


@dataclass(frozen=True)
class LabeledExample:
    text: str
    node_ids: tuple[str, ...]  # as given (leaves or inner nodes), resolved to ids
    line: int


def read_labeled_jsonl(path: str | Path, tree: TaxonomyTree) -> list[LabeledExample]:
    """Reads and resolves every label; any bad line fails with its line number."""
    path = Path(path)
    if not path.exists():
        raise InvalidInput(f"labeled file {path} does not exist")
    examples: list[LabeledExample] = []
    problems: list[str] = []
    with path.open(encoding="utf-8") as handle:
        for line_no, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw)
            except json.JSONDecodeError as exc:
                problems.append(f"line {line_no}: not JSON ({exc.msg})")
                continue
            text = row.get("text") if isinstance(row, dict) else None
            labels = row.get("labels") if isinstance(row, dict) else None
            if not isinstance(text, str) or not text.strip():
                problems.append(f"line {line_no}: 'text' must be a non-empty string")
                continue
            if isinstance(labels, str):
                labels = [labels]
            if not isinstance(labels, list) or not labels:
                problems.append(f"line {line_no}: 'labels' must be a non-empty list")
                continue
            ids: list[str] = []
            for label in labels:
                try:
                    ids.append(tree.resolve(str(label)).id)
                except ReelsiftError as exc:
                    problems.append(f"line {line_no}: {exc.message}")
            if ids:
                examples.append(LabeledExample(text, tuple(dict.fromkeys(ids)), line_no))
    if problems:
        shown = "; ".join(problems[:10])
        more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
        raise InvalidInput(f"{path}: {shown}{more}", problems=problems)
    if not examples:
        raise InvalidInput(f"{path} holds no labeled examples")
    return examples


def at_most_per_category(
    examples: list[LabeledExample], tree: TaxonomyTree, limit: int
) -> list[LabeledExample]:
    """The first ``limit`` examples of each tier-1 category (of an example's first label),
    in order: a balanced few-shot set out of several files, e.g. 20 per category."""
    if limit < 1:
        raise InvalidInput(f"the per-category limit must be at least 1, got {limit}")
    taken: dict[str, int] = {}
    kept = []
    for example in examples:
        chain = tree.ancestors(example.node_ids[0])
        root = chain[0].id if chain else example.node_ids[0]
        if taken.get(root, 0) < limit:
            taken[root] = taken.get(root, 0) + 1
            kept.append(example)
    return kept
