"""The category tree: loading (IAB TSV, custom TSV or YAML), validation, lookups, version.

A tree is immutable once built. Its version is a content hash over every node's id,
parent, name, description and aliases, so any edit that could change a classification
(including a reworded description) yields a new version; that version is recorded with
every label and keys every cache built from the tree.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import InvalidInput, NotFound

DATA_DIR = Path(__file__).parent / "data"
IAB_TSV = DATA_DIR / "iab_content_taxonomy_3.1.tsv"
IAB_NODE_TEXTS = DATA_DIR / "iab_3.1_node_texts.yaml"
IAB_NODE_EXAMPLES = DATA_DIR / "iab_3.1_node_examples.yaml"
IAB_TREE_NAME = "iab-content-3.1"

PATH_SEPARATOR = " > "
CUSTOM_COLUMNS = ("id", "parent", "name", "description", "aliases")
# Aliases in a TSV cell are separated by "|" (names themselves contain commas and "&").
ALIAS_SEPARATOR = "|"


@dataclass(frozen=True)
class NodeRecord:
    """One row as read from a file, before the tree is checked."""

    id: str
    parent: str | None
    name: str
    description: str = ""
    aliases: tuple[str, ...] = ()
    row: str = ""  # where it came from ("line 7", "entry 3"), for error messages


@dataclass(frozen=True)
class TaxonomyNode:
    id: str
    parent: str | None
    name: str
    path: tuple[str, ...]
    description: str = ""
    aliases: tuple[str, ...] = ()
    children: tuple[str, ...] = field(default=())

    @property
    def tier(self) -> int:
        return len(self.path)

    @property
    def path_text(self) -> str:
        return PATH_SEPARATOR.join(self.path)


@dataclass(frozen=True)
class TreeArrays:
    """The tree as index arrays, for vectorised scoring over all nodes at once."""

    parent_index: np.ndarray  # (N,) int64, -1 for roots
    tier: np.ndarray  # (N,) int64, 1-based
    # For each tier t >= 2: node indices at that tier sorted by parent, the start of each
    # parent's run (for np.maximum.reduceat) and the parent index of each run.
    children_by_tier: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]
    max_tier: int
    ancestor_mask: np.ndarray  # (N, N) bool: [i, j] true when j is i or an ancestor of i


def _clean(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _split_aliases(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        parts: Iterable[Any] = value.split(ALIAS_SEPARATOR)
    elif isinstance(value, Sequence):
        parts = value
    else:
        raise InvalidInput(f"aliases must be a list or a '|'-separated string, got {value!r}")
    return tuple(a for a in (_clean(p) for p in parts) if a)


def _validate(records: Sequence[NodeRecord]) -> list[str]:
    """Every problem that makes the rows not a tree, each naming the offending rows."""
    problems: list[str] = []
    rows_by_id: dict[str, list[NodeRecord]] = {}
    for rec in records:
        if not rec.id:
            problems.append(f"{rec.row}: empty id")
            continue
        if not rec.name:
            problems.append(f"{rec.row}: node {rec.id!r} has an empty name")
        rows_by_id.setdefault(rec.id, []).append(rec)
    for node_id, recs in rows_by_id.items():
        if len(recs) > 1:
            where = ", ".join(r.row for r in recs)
            problems.append(f"duplicate id {node_id!r} at {where}")
    first = {node_id: recs[0] for node_id, recs in rows_by_id.items()}
    for rec in first.values():
        if rec.parent is not None and rec.parent not in first:
            problems.append(
                f"{rec.row}: orphan {rec.id!r}, its parent {rec.parent!r} does not exist"
            )
        if rec.parent == rec.id:
            problems.append(f"{rec.row}: node {rec.id!r} is its own parent (cycle)")

    # Cycle search: walk each chain, colouring nodes; a chain that meets itself is a cycle.
    state: dict[str, int] = {}  # 1 = on the current walk, 2 = known to reach a root
    reported: set[frozenset[str]] = set()
    for start in first:
        walk: list[str] = []
        cursor: str | None = start
        while cursor is not None and cursor in first and state.get(cursor) is None:
            state[cursor] = 1
            walk.append(cursor)
            cursor = first[cursor].parent
        if cursor is not None and state.get(cursor) == 1:
            cycle = walk[walk.index(cursor):]
            key = frozenset(cycle)
            if len(cycle) > 1 and key not in reported:
                reported.add(key)
                chain = " -> ".join([*cycle, cursor])
                where = ", ".join(first[c].row for c in cycle)
                problems.append(f"cycle {chain} at {where}")
        for visited in walk:
            state[visited] = 2
    return problems


class TaxonomyTree:
    """An immutable, validated category tree with lookups by id and by path."""

    def __init__(self, records: Sequence[NodeRecord], name: str = "custom") -> None:
        problems = _validate(records)
        if problems:
            raise InvalidInput(
                f"taxonomy {name!r} is not a tree: " + "; ".join(problems), problems=problems
            )
        if not records:
            raise InvalidInput(f"taxonomy {name!r} has no nodes")
        self.name = name
        by_id = {r.id: r for r in records}
        children: dict[str, list[str]] = {r.id: [] for r in records}
        for rec in records:
            if rec.parent is not None:
                children[rec.parent].append(rec.id)

        paths: dict[str, tuple[str, ...]] = {}

        def path_of(node_id: str) -> tuple[str, ...]:
            # Iterative: custom trees may be deep and validation already ruled out cycles.
            chain: list[str] = []
            cursor: str | None = node_id
            while cursor is not None and cursor not in paths:
                chain.append(cursor)
                cursor = by_id[cursor].parent
            prefix = paths[cursor] if cursor is not None else ()
            for link in reversed(chain):
                prefix = (*prefix, by_id[link].name)
                paths[link] = prefix
            return paths[node_id]

        self._nodes: dict[str, TaxonomyNode] = {}
        for rec in records:
            self._nodes[rec.id] = TaxonomyNode(
                id=rec.id,
                parent=rec.parent,
                name=rec.name,
                path=path_of(rec.id),
                description=rec.description,
                aliases=rec.aliases,
                children=tuple(children[rec.id]),
            )
        self._by_path: dict[tuple[str, ...], str] = {}
        duplicates: list[str] = []
        for node in self._nodes.values():
            key = tuple(p.casefold() for p in node.path)
            if key in self._by_path:
                other = self._by_path[key]
                duplicates.append(
                    f"path {node.path_text!r} is shared by {by_id[other].row} ({other!r}) "
                    f"and {by_id[node.id].row} ({node.id!r})"
                )
            self._by_path[key] = node.id
        if duplicates:
            raise InvalidInput(
                f"taxonomy {name!r} has sibling nodes with the same name: " + "; ".join(duplicates),
                problems=duplicates,
            )
        self.ids: tuple[str, ...] = tuple(self._nodes)
        self._index = {node_id: i for i, node_id in enumerate(self.ids)}
        names: dict[str, list[str]] = {}
        for node in self._nodes.values():
            names.setdefault(node.name.casefold(), []).append(node.id)
        self._by_name = names

    # ---- construction -------------------------------------------------------------------

    @classmethod
    def default(cls) -> TaxonomyTree:
        """IAB Content Taxonomy 3.1 with the project's descriptions and aliases."""
        return _default_tree()

    @classmethod
    def load(cls, path: str | Path, name: str | None = None) -> TaxonomyTree:
        """A tree from a TSV (IAB layout or ``id, parent, name, description, aliases``) or YAML."""
        path = Path(path)
        if not path.exists():
            raise InvalidInput(f"taxonomy file {path} does not exist")
        suffix = path.suffix.lower()
        tree_name = name or path.stem
        if suffix in {".yaml", ".yml"}:
            return cls(read_yaml_records(path), name=tree_name)
        if suffix in {".tsv", ".txt"}:
            return cls(read_tsv_records(path), name=tree_name)
        raise InvalidInput(f"taxonomy file {path} must be .tsv, .yaml or .yml, not {suffix!r}")

    def with_texts(self, texts: Mapping[str, Mapping[str, Any]]) -> TaxonomyTree:
        """A copy whose nodes carry the given descriptions/aliases (keyed by node id)."""
        unknown = sorted(set(texts) - set(self._nodes))
        if unknown:
            raise InvalidInput(
                f"node texts name ids that are not in taxonomy {self.name!r}: {unknown[:20]}",
                unknown_ids=unknown,
            )
        records = []
        for node in self._nodes.values():
            extra = texts.get(node.id, {})
            records.append(
                NodeRecord(
                    id=node.id,
                    parent=node.parent,
                    name=node.name,
                    description=_clean(extra.get("description")) or node.description,
                    aliases=_split_aliases(extra.get("aliases")) or node.aliases,
                    row=f"node {node.id}",
                )
            )
        return TaxonomyTree(records, name=self.name)

    def records(self) -> list[NodeRecord]:
        return [
            NodeRecord(n.id, n.parent, n.name, n.description, n.aliases, row=f"node {n.id}")
            for n in self._nodes.values()
        ]

    # ---- identity -----------------------------------------------------------------------

    @cached_property
    def content_hash(self) -> str:
        canonical = [
            [n.id, n.parent, n.name, n.description, list(n.aliases)]
            for n in sorted(self._nodes.values(), key=lambda n: n.id)
        ]
        blob = json.dumps(canonical, ensure_ascii=False, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    @property
    def version(self) -> str:
        """Recorded with every label, e.g. ``iab-content-3.1:3f9a…``."""
        return f"{self.name}:{self.content_hash}"

    # ---- lookups ------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._nodes)

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._nodes

    def __iter__(self) -> Iterable[TaxonomyNode]:
        return iter(self._nodes.values())

    @property
    def nodes(self) -> list[TaxonomyNode]:
        return list(self._nodes.values())

    def get(self, node_id: str) -> TaxonomyNode:
        try:
            return self._nodes[node_id]
        except KeyError:
            raise NotFound(f"no node with id {node_id!r} in taxonomy {self.version}") from None

    def index_of(self, node_id: str) -> int:
        self.get(node_id)
        return self._index[node_id]

    def by_path(self, path: str | Sequence[str]) -> TaxonomyNode:
        parts = path.split(">") if isinstance(path, str) else list(path)
        key = tuple(p.strip().casefold() for p in parts if p.strip())
        node_id = self._by_path.get(key)
        if node_id is None:
            raise NotFound(f"no node with path {path!r} in taxonomy {self.version}")
        return self._nodes[node_id]

    def resolve(self, ref: str) -> TaxonomyNode:
        """A node from an id, a path (``"Sports > Soccer"``) or a name that is unique."""
        ref = ref.strip()
        if ref in self._nodes:
            return self._nodes[ref]
        if ">" in ref:
            return self.by_path(ref)
        matches = self._by_name.get(ref.casefold(), [])
        if len(matches) == 1:
            return self._nodes[matches[0]]
        if len(matches) > 1:
            options = ", ".join(self._nodes[m].path_text for m in matches)
            raise InvalidInput(
                f"label {ref!r} is ambiguous in {self.version}; use a path: {options}"
            )
        raise NotFound(f"label {ref!r} is neither an id, a path nor a name in {self.version}")

    def ancestors(self, node_id: str) -> list[TaxonomyNode]:
        """Root first, excluding the node itself."""
        chain: list[TaxonomyNode] = []
        parent = self.get(node_id).parent
        while parent is not None:
            node = self._nodes[parent]
            chain.append(node)
            parent = node.parent
        return chain[::-1]

    def descendants(self, node_id: str) -> list[TaxonomyNode]:
        """Depth first, excluding the node itself."""
        out: list[TaxonomyNode] = []
        stack = list(reversed(self.get(node_id).children))
        while stack:
            node = self._nodes[stack.pop()]
            out.append(node)
            stack.extend(reversed(node.children))
        return out

    def children(self, node_id: str) -> list[TaxonomyNode]:
        return [self._nodes[c] for c in self.get(node_id).children]

    @property
    def roots(self) -> list[TaxonomyNode]:
        return [n for n in self._nodes.values() if n.parent is None]

    def at_tier(self, tier: int) -> list[TaxonomyNode]:
        return [n for n in self._nodes.values() if n.tier == tier]

    def with_ancestors(self, node_ids: Iterable[str]) -> set[str]:
        """The ancestor-augmented set used by hierarchical metrics and training targets."""
        out: set[str] = set()
        for node_id in node_ids:
            out.add(node_id)
            out.update(a.id for a in self.ancestors(node_id))
        return out

    @cached_property
    def arrays(self) -> TreeArrays:
        n = len(self.ids)
        parent_index = np.array(
            [self._index[p] if (p := self._nodes[i].parent) is not None else -1 for i in self.ids],
            dtype=np.int64,
        )
        tier = np.array([self._nodes[i].tier for i in self.ids], dtype=np.int64)
        max_tier = int(tier.max())
        children_by_tier: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        for t in range(2, max_tier + 1):
            members = np.flatnonzero(tier == t)
            members = members[np.argsort(parent_index[members], kind="stable")]
            parents = parent_index[members]
            starts = np.flatnonzero(np.r_[True, parents[1:] != parents[:-1]])
            children_by_tier[t] = (members, starts, parents[starts])
        mask = np.eye(n, dtype=bool)
        for i in range(n):
            p = parent_index[i]
            while p >= 0:
                mask[i, p] = True
                p = parent_index[p]
        return TreeArrays(parent_index, tier, children_by_tier, max_tier, mask)


def read_tsv_records(path: Path) -> list[NodeRecord]:
    """Reads the IAB layout (two header lines) or the custom ``id, parent, name, …`` layout."""
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle, delimiter="\t"))
    if not rows:
        raise InvalidInput(f"taxonomy file {path} is empty")
    if rows[0] and rows[0][0].strip() == "Relational ID System":
        return _iab_records(rows, path)
    header = [h.strip().lower() for h in rows[0]]
    missing = [c for c in ("id", "parent", "name") if c not in header]
    if missing:
        raise InvalidInput(
            f"{path}: header must name the columns {', '.join(CUSTOM_COLUMNS)}; missing {missing}"
        )
    col = {name: header.index(name) for name in CUSTOM_COLUMNS if name in header}
    records = []
    for line_no, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        cells = {name: _clean(row[i]) if i < len(row) else "" for name, i in col.items()}
        records.append(
            NodeRecord(
                id=cells["id"],
                parent=cells["parent"] or None,
                name=cells["name"],
                description=cells.get("description", ""),
                aliases=_split_aliases(cells.get("aliases", "")),
                row=f"{path.name} line {line_no}",
            )
        )
    return records


def _iab_records(rows: list[list[str]], path: Path) -> list[NodeRecord]:
    # Line 1 names column groups, line 2 the columns: Unique ID, Parent, Name, Tier 1..4.
    records = []
    for line_no, row in enumerate(rows[2:], start=3):
        if not any(cell.strip() for cell in row):
            continue
        cells = [*row, "", "", ""]
        records.append(
            NodeRecord(
                id=_clean(cells[0]),
                parent=_clean(cells[1]) or None,
                name=_clean(cells[2]),
                row=f"{path.name} line {line_no}",
            )
        )
    return records


def read_yaml_records(path: Path) -> list[NodeRecord]:
    """A YAML list of nodes, or a mapping with a ``nodes`` list (same fields as the TSV)."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise InvalidInput(f"{path} is not valid YAML: {exc}") from exc
    if isinstance(data, Mapping):
        data = data.get("nodes")
    if not isinstance(data, list):
        raise InvalidInput(f"{path}: expected a list of nodes (or a mapping with 'nodes')")
    records = []
    for entry_no, entry in enumerate(data, start=1):
        if not isinstance(entry, Mapping):
            raise InvalidInput(f"{path} entry {entry_no}: expected a mapping, got {entry!r}")
        records.append(
            NodeRecord(
                id=_clean(entry.get("id")),
                parent=_clean(entry.get("parent")) or None,
                name=_clean(entry.get("name")),
                description=_clean(entry.get("description")),
                aliases=_split_aliases(entry.get("aliases")),
                row=f"{path.name} entry {entry_no}",
            )
        )
    return records


def load_node_texts(path: Path, examples: Path | None = None) -> dict[str, dict[str, Any]]:
    """Descriptions and aliases kept beside a tree: ``{id: {description, aliases}}`` in YAML.

    ``examples`` is an optional ``{id: [phrase, ...]}`` file whose phrases are appended to
    the node's aliases (kept apart because they are longer and edited separately).
    """
    import yaml

    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, Mapping):
        raise InvalidInput(f"{path}: expected a mapping of node id to description and aliases")
    texts = {str(k): dict(v or {}) for k, v in data.items()}
    if examples is not None:
        extra = yaml.safe_load(examples.read_text(encoding="utf-8")) or {}
        if not isinstance(extra, Mapping):
            raise InvalidInput(f"{examples}: expected a mapping of node id to example phrases")
        for node_id, phrases in extra.items():
            entry = texts.setdefault(str(node_id), {})
            entry["aliases"] = [*_split_aliases(entry.get("aliases")), *_split_aliases(phrases)]
    return texts


@lru_cache(maxsize=1)
def _default_tree() -> TaxonomyTree:
    base = TaxonomyTree(read_tsv_records(IAB_TSV), name=IAB_TREE_NAME)
    return base.with_texts(load_node_texts(IAB_NODE_TEXTS, IAB_NODE_EXAMPLES))

