"""Configurable term blocklists per risk category, matched with character spans.

Modelled on Azure AI Content Safety blocklists: small YAML files an operator edits, one
per list, each bound to one risk category::

    name: violence.default
    version: 1
    category: violence
    severity: 0.7            # score a match gives, unless the term says otherwise
    terms:
      - kill you
      - {term: "shoot up the", severity: 0.9}
      - behead*              # '*' at a word's end: any word characters follow

Matching is case-insensitive and on word boundaries (``ass`` does not match inside
``class``); whitespace inside a term matches any run of whitespace. Where terms overlap
the longest wins. A match scores the category with the term's severity and records the
matched span as evidence.

What a blocklist *cannot* do is clear a text: finding no term says nothing about the
text being safe. So a category that only a blocklist covers is reported as not assessed
(``score=None`` with the reason) when no term matched, never as a made-up 0.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from core.contracts import Evidence, ModelRef, RiskCategory
from core.errors import InvalidConfig

DEFAULT_BLOCKLIST_DIR = Path(__file__).resolve().parent / "blocklists"


@dataclass(frozen=True)
class BlocklistTerm:
    term: str
    severity: float


@dataclass(frozen=True)
class BlocklistMatch:
    start: int
    end: int
    text: str
    term: str
    severity: float


def _term_pattern(term: str) -> str:
    words = term.split()
    parts = []
    for word in words:
        if word.endswith("*"):
            parts.append(re.escape(word[:-1]) + r"\w*")
        else:
            parts.append(re.escape(word))
    return r"\s+".join(parts)


class Blocklist:
    """One category's term list, compiled into a single regular expression."""

    def __init__(
        self,
        name: str,
        category: RiskCategory,
        terms: Sequence[BlocklistTerm],
        *,
        version: str = "1",
        source: str = "inline",
    ) -> None:
        if not terms:
            raise InvalidConfig(f"blocklist {name!r} has no terms")
        self.name = name
        self.category = category
        self.terms = tuple(terms)
        content = "\n".join(f"{t.term}\t{t.severity}" for t in self.terms)
        fingerprint = hashlib.sha256(f"{category}\n{content}".encode()).hexdigest()[:8]
        # The content hash in the version makes an edited list traceable in stored scores.
        self.model = ModelRef(
            name=f"reelsift.blocklist.{name}", version=f"{version}+{fingerprint}", source=source
        )
        # Longest literal first, so alternation prefers "send nudes" over "nudes".
        order = sorted(range(len(self.terms)), key=lambda i: -len(self.terms[i].term))
        alternatives = "|".join(f"(?P<t{i}>{_term_pattern(self.terms[i].term)})" for i in order)
        self._regex = re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)

    def __len__(self) -> int:
        return len(self.terms)

    def find(self, text: str) -> list[BlocklistMatch]:
        matches = []
        for found in self._regex.finditer(text):
            assert found.lastgroup is not None
            term = self.terms[int(found.lastgroup[1:])]
            matches.append(
                BlocklistMatch(
                    start=found.start(), end=found.end(), text=found.group(0),
                    term=term.term, severity=term.severity,
                )
            )
        return matches

    def evidence(self, matches: Iterable[BlocklistMatch]) -> list[Evidence]:
        return [
            Evidence(
                kind="text_span", start=m.start, end=m.end, text=m.text,
                detail=f"blocklist {self.name}: term {m.term!r} (severity {m.severity:g})",
            )
            for m in matches
        ]

    @classmethod
    def from_yaml(cls, path: Path) -> Blocklist:
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise InvalidConfig(f"cannot read blocklist {path}: {exc}", path=str(path)) from exc
        if not isinstance(raw, dict):
            raise InvalidConfig(f"blocklist {path} must be a YAML mapping", path=str(path))
        try:
            category = RiskCategory(raw["category"])
        except (KeyError, ValueError) as exc:
            known = ", ".join(c.value for c in RiskCategory)
            raise InvalidConfig(
                f"blocklist {path} needs 'category', one of: {known}", path=str(path)
            ) from exc
        default_severity = _severity(raw.get("severity", 0.5), path)
        terms: list[BlocklistTerm] = []
        for entry in raw.get("terms") or []:
            if isinstance(entry, str):
                term, severity = entry, default_severity
            elif isinstance(entry, dict) and isinstance(entry.get("term"), str):
                term = entry["term"]
                severity = _severity(entry.get("severity", default_severity), path)
            else:
                raise InvalidConfig(
                    f"blocklist {path}: each term is a string or {{term, severity}}; got {entry!r}",
                    path=str(path),
                )
            if not term.strip() or term.strip() == "*":
                raise InvalidConfig(f"blocklist {path}: empty term", path=str(path))
            terms.append(BlocklistTerm(term=" ".join(term.split()), severity=severity))
        return cls(
            name=str(raw.get("name") or path.stem),
            category=category,
            terms=terms,
            version=str(raw.get("version", "1")),
            source=f"path:{path}",
        )


def _severity(value: object, path: Path) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        raise InvalidConfig(
            f"blocklist {path}: severity must be a number in [0, 1]; got {value!r}",
            path=str(path),
        )
    return float(value)


def load_blocklists(directory: Path = DEFAULT_BLOCKLIST_DIR) -> list[Blocklist]:
    """Every ``*.yaml``/``*.yml`` list in ``directory``, in name order."""
    if not directory.is_dir():
        raise InvalidConfig(f"blocklist directory {directory} does not exist", path=str(directory))
    files = sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")])
    return [Blocklist.from_yaml(path) for path in files]
