"""Public dev sets (../shared/datasets) read through the checked-in IAB label map.

``data/dev_label_map.yaml`` says, per set, which CSV to read, what each class maps to
(a training node and the tier-1 nodes accepted at evaluation) and the set's role: rows
of a ``train`` set are split by a hash of their text into train / calibration / test, so
the split is the same on every machine and independent of row order; a ``measure`` set
is only ever measured; an ``abstain`` set holds rows that should get no category; a
``topical`` set holds rows that are about something but carry no mapped class (news and
clickbait headlines): the topic gate learns from them what "has a category" looks like,
split like ``train``, and they are never scored for tier-1 accuracy.

Nonsense for abstention is generated here (seeded), never read from anywhere.
"""

from __future__ import annotations

import csv
import hashlib
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from core.errors import InvalidConfig, InvalidInput
from taxonomy.tree import DATA_DIR, TaxonomyTree

LABEL_MAP = DATA_DIR / "dev_label_map.yaml"
DEFAULT_DATASETS_DIR = Path("../shared/datasets")
Part = Literal["train", "calibration", "test", "all"]
PARTS: tuple[str, ...] = ("train", "calibration", "test")
ROLES = ("train", "measure", "abstain", "topical")


@dataclass(frozen=True)
class ClassMapping:
    node_id: str  # training target
    accepted_roots: frozenset[str]  # tier-1 ids counted correct at evaluation


@dataclass(frozen=True)
class DevRow:
    text: str
    label: str  # the set's own class name ("" for abstain rows)
    node_id: str | None  # None: should get no category
    accepted_roots: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class DevSet:
    name: str
    file: str
    role: str
    classes: dict[str, ClassMapping]
    split: dict[str, int]  # part -> percent
    row_filter: dict[str, str]
    limit: int | None = None  # the first N rows passing row_filter, in file order

    def part_of(self, text: str) -> str | None:
        """The split part a row falls in (None: past every part, unused)."""
        if self.role == "measure":
            return "test"
        bucket = int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(),
                                "big") % 100
        edge = 0
        for part in PARTS:
            edge += self.split.get(part, 0)
            if bucket < edge:
                return part
        return None

    def rows(self, datasets_dir: Path, part: Part = "all") -> list[DevRow]:
        path = datasets_dir / self.file
        if not path.exists():
            raise InvalidInput(f"dev set {self.name}: {path} does not exist")
        if self.role == "measure" and part in ("train", "calibration"):
            raise InvalidInput(f"{self.name} is measure-only: it has no {part} rows")
        out: list[DevRow] = []
        kept = 0
        with path.open(encoding="utf-8", newline="") as handle:
            for record in csv.DictReader(handle):
                text = (record.get("text") or "").strip()
                if not text or any(record.get(k) != v for k, v in self.row_filter.items()):
                    continue
                kept += 1
                if self.limit is not None and kept > self.limit:
                    break
                if part != "all" and self.part_of(text) != part:
                    continue
                label = record.get("label", "")
                if self.role in ("abstain", "topical"):
                    out.append(DevRow(text, label, None))
                    continue
                mapping = self.classes.get(label)
                if mapping is None:
                    raise InvalidInput(f"{self.name}: class {label!r} is not in {LABEL_MAP.name}")
                out.append(DevRow(text, label, mapping.node_id, mapping.accepted_roots))
        return out


def load_dev_sets(tree: TaxonomyTree, path: Path = LABEL_MAP) -> dict[str, DevSet]:
    """Every set in the label map, each class resolved against ``tree`` (bad names fail)."""
    raw: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    sets: dict[str, DevSet] = {}
    for name, spec in raw.items():
        role = spec.get("role")
        if role not in ROLES:
            raise InvalidConfig(f"{path.name}: {name} has role {role!r}")
        classes: dict[str, ClassMapping] = {}
        for label, entry in (spec.get("labels") or {}).items():
            node = tree.resolve(str(entry["node"]))
            roots = {tree.ancestors(node.id)[0].id if node.tier > 1 else node.id}
            for extra in entry.get("also") or []:
                extra_node = tree.resolve(str(extra))
                if extra_node.tier != 1:
                    raise InvalidConfig(f"{path.name}: {name}/{label}: 'also' takes tier-1 "
                                        f"nodes, {extra!r} is tier {extra_node.tier}")
                roots.add(extra_node.id)
            classes[str(label)] = ClassMapping(node.id, frozenset(roots))
        split = {str(k): int(v) for k, v in (spec.get("split") or {}).items()}
        if sum(split.values()) > 100 or any(k not in PARTS for k in split):
            raise InvalidConfig(f"{path.name}: {name} has a bad split {split}")
        limit = spec.get("limit")
        sets[name] = DevSet(name, str(spec["file"]), role, classes, split,
                            {str(k): str(v) for k, v in (spec.get("rows") or {}).items()},
                            None if limit is None else int(limit))
    return sets


_SYLLABLES = ("ka", "zu", "rop", "fle", "ming", "qua", "tor", "vex", "blo", "snar", "dri",
              "ple", "gox", "yum", "wib", "zer", "thu", "kli", "mo", "nesh")
_KEYBOARD = "qwertyuiopasdfghjklzxcvbnm"


def nonsense_texts(count: int, seed: int) -> list[str]:
    """Seeded gibberish of four kinds: invented words, keyboard mash, symbol and digit
    runs, and repeated filler; none of it is about anything."""
    rng = random.Random(seed)
    out: list[str] = []
    for i in range(count):
        kind = i % 4
        length = rng.randint(3, 40)
        if kind == 0:
            words = ["".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(1, 3)))
                     for _ in range(length)]
            out.append(" ".join(words).capitalize() + ".")
        elif kind == 1:
            out.append(" ".join("".join(rng.choice(_KEYBOARD) for _ in range(rng.randint(2, 9)))
                                for _ in range(length)))
        elif kind == 2:
            out.append(" ".join(rng.choice(["!!!", "???", "...", "123", "0000", ":)", "#",
                                            "$$$", "--", "42", "&&", "xx"])
                                for _ in range(length)))
        else:
            filler = rng.choice(["lol", "ok", "hmm", "yes", "aaa", "haha", "wow", "test"])
            out.append(" ".join([filler] * length))
    return out
