"""The labelled text sets the risk heads learn from, and how their labels become targets.

Every source is read into one ``SourceRows``: its documents, their titles (where the
source has titles), a stratum per row for splitting, and one target array per head with
``1`` (positive), ``0`` (negative) or ``-1`` (the row says nothing about that head and is
left out of it). The rules, in one place (``DATA_SOURCES.md`` repeats them):

=============  ==========================================================================
head           positives / negatives
=============  ==========================================================================
profanity      Davidson *hate* + *offensive*, OLID *OFF* / Davidson *neither*, OLID *NOT*
harassment     OLID *TIN+IND*, Davidson *offensive* or *hate* addressed at someone (an
               @mention that is not a retweet or quote source, or a second-person
               pronoun) / OLID *NOT*, *UNT*, *TIN+GRP*, *TIN+OTH*, Davidson *neither* and
               offensive tweets addressed at no one
hate           Davidson *hate*, OLID *TIN+GRP* / Davidson *offensive* + *neither*, OLID
               *NOT*, *UNT*, *TIN+IND*, *TIN+OTH*
spam           SMS *spam*, YouTube *spam* / SMS *ham*, YouTube *ham*
clickbait      *clickbait* headlines / *not_clickbait* headlines, newsgroup subject
               lines, Wikipedia article subjects (titles only: messages, comments
               and tweets are not titles, so this head never reads them)
=============  ==========================================================================

On top of its own negatives every head learns against the clean rows of every other
domain (for clickbait, of every domain with titles): SMS and YouTube *ham*, tweets
labelled *neither* / *NOT*, *not_clickbait* headlines, newsgroup posts and Wikipedia
abstracts. That is what tells a football
report it is not spam and a recipe title it is not clickbait. Newsgroups from the
politics and religion groups are left out everywhere (heated argument there is neither
clean nor labelled). BBC articles are **measure only**: ``load_sources`` reads them for
evaluation and training never sees them.
"""

from __future__ import annotations

import csv
import hashlib
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.artifacts import file_sha256
from core.errors import InvalidInput

HEAD_NAMES: tuple[str, ...] = ("profanity", "harassment", "hate", "spam", "clickbait")
ABUSE_HEADS: frozenset[str] = frozenset({"profanity", "harassment", "hate"})
TITLE_HEADS: frozenset[str] = frozenset({"clickbait"})

NOT_USED = -1
EXCLUDED_NEWSGROUP_PREFIXES = ("talk.politics.", "talk.religion.", "soc.religion.", "alt.atheism")

# An @mention addresses someone unless it names a retweet ("RT @x") or quote ("@x:")
# source; second-person pronouns address the reader.
_ADDRESSING_MENTION = re.compile(r"(?<!RT )(?<!rt )@\w+(?!\w*:)")
_SECOND_PERSON = re.compile(
    r"\b(?:you|your|you're|youre|yours|yourself|u|ur|ya|yall|y'all)\b", re.IGNORECASE
)
# The entity a Wikipedia abstract is about: the words before "(", "is", "was", ...
_WIKI_SUBJECT = re.compile(
    r"^(.{2,100}?)\s+(?:\(|is\b|was\b|are\b|were\b|has\b|had\b)"
)


def addresses_someone(tweet: str) -> bool:
    return bool(_ADDRESSING_MENTION.search(tweet) or _SECOND_PERSON.search(tweet))


@dataclass(frozen=True)
class SourceSpec:
    """One file: where it lives (relative to the datasets root) and what it is."""

    name: str
    path: str
    domain: str  # what kind of text: tweets, sms, youtube, headlines, posts, encyclopedia, news
    measure_only: bool = False


SOURCES: tuple[SourceSpec, ...] = (
    SourceSpec("davidson", "moderation/offensive_tweets.train.csv", "tweets"),
    SourceSpec("olid", "moderation/olid_offenseval2019.train.csv", "tweets"),
    SourceSpec("sms", "moderation/sms_spam.train.csv", "sms"),
    SourceSpec("youtube", "moderation/youtube_spam.train.csv", "youtube comments"),
    SourceSpec("clickbait", "moderation/clickbait_headlines.train.csv", "headlines"),
    SourceSpec("newsgroups", "taxonomy_dev/newsgroups20_train_sample.csv", "forum posts"),
    SourceSpec("wikipedia", "taxonomy_dev/dbpedia14_sample.csv", "encyclopedia"),
    SourceSpec("bbc", "taxonomy_dev/bbc_news_dev.csv", "news articles", measure_only=True),
)
SOURCES_BY_NAME = {source.name: source for source in SOURCES}
TRAINING_SOURCES = tuple(s for s in SOURCES if not s.measure_only)
CLEAN_DEV_SOURCES = ("newsgroups", "wikipedia", "bbc")


@dataclass
class SourceRows:
    """One source's rows: documents, titles ("" where none), strata, targets per head."""

    spec: SourceSpec
    sha256: str
    texts: list[str]
    titles: list[str]
    strata: list[str]
    raw: list[dict[str, str]]
    targets: dict[str, np.ndarray] = field(default_factory=dict)
    sample: str | None = None  # digest of the sampled row indices, None for all rows

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def cache_key(self) -> str:
        return self.sha256 if self.sample is None else f"{self.sha256}-sample-{self.sample}"

    def head_texts(self, head: str, rows: Iterable[int]) -> list[str]:
        """What a head reads: titles for the title heads (where the source has them)."""
        if head in TITLE_HEADS:
            return [self.titles[i] or self.texts[i] for i in rows]
        return [self.texts[i] for i in rows]

    def subset(self, indices: np.ndarray) -> SourceRows:
        return SourceRows(
            spec=self.spec, sha256=self.sha256,
            texts=[self.texts[i] for i in indices], titles=[self.titles[i] for i in indices],
            strata=[self.strata[i] for i in indices], raw=[self.raw[i] for i in indices],
            targets={head: values[indices] for head, values in self.targets.items()},
            sample=hashlib.sha256(np.asarray(indices, np.int64).tobytes()).hexdigest()[:16],
        )


def _read_csv(path: Path, columns: set[str]) -> list[dict[str, str]]:
    if not path.is_file():
        raise InvalidInput(
            f"data file {path} does not exist; pass --data-dir (moderation sets) and "
            "--clean-dir (taxonomy_dev) pointing at the shared datasets", path=str(path),
        )
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not columns <= set(reader.fieldnames):
            raise InvalidInput(
                f"{path} must have the columns {sorted(columns)}; found {reader.fieldnames}",
                path=str(path),
            )
        rows = [{k: (v or "") for k, v in row.items() if k is not None} for row in reader]
    if not rows:
        raise InvalidInput(f"{path} has no rows", path=str(path))
    return rows


def _check_labels(path: Path, rows: list[dict[str, str]], column: str, known: set[str]) -> None:
    for line_no, row in enumerate(rows, start=2):
        if row[column].strip() not in known:
            raise InvalidInput(
                f"{path}:{line_no}: {column} {row[column]!r} is not one of {sorted(known)}",
                path=str(path), line=line_no,
            )


Targets = dict[str, Callable[[dict[str, str], str], int]]
# A reader's output: documents, titles, strata, raw rows, target rules.
Parsed = tuple[list[str], list[str], list[str], list[dict[str, str]], Targets]


def _targets_for(
    rows: list[dict[str, str]], texts: list[str], rules: Targets
) -> dict[str, np.ndarray]:
    """Target arrays for every head; heads without a rule get 0 for clean rows only."""
    return {
        head: np.fromiter(
            (rules[head](row, text) for row, text in zip(rows, texts, strict=True)),
            dtype=np.int8, count=len(rows),
        )
        for head in HEAD_NAMES
    }


def _clean_or_unused(is_clean: Callable[[dict[str, str]], bool]) -> Callable[
    [dict[str, str], str], int
]:
    return lambda row, _text: 0 if is_clean(row) else NOT_USED


def _davidson(path: Path) -> Parsed:
    rows = _read_csv(path, {"text", "label"})
    _check_labels(path, rows, "label", {"hate", "offensive", "neither"})
    texts = [r["text"] for r in rows]
    neither = _clean_or_unused(lambda r: r["label"] == "neither")
    rules: Targets = {
        "profanity": lambda r, _t: int(r["label"] != "neither"),
        "harassment": lambda r, t: int(r["label"] != "neither" and addresses_someone(t)),
        "hate": lambda r, _t: int(r["label"] == "hate"),
        "spam": neither,
        "clickbait": lambda _r, _t: NOT_USED,
    }
    return texts, [""] * len(rows), [r["label"] for r in rows], rows, rules


def _olid(path: Path) -> Parsed:
    rows = _read_csv(path, {"text", "offensive", "offense_type", "target"})
    _check_labels(path, rows, "offensive", {"OFF", "NOT"})
    _check_labels(path, rows, "offense_type", {"TIN", "UNT", "NULL"})
    _check_labels(path, rows, "target", {"IND", "GRP", "OTH", "NULL"})
    texts = [r["text"] for r in rows]
    not_offensive = _clean_or_unused(lambda r: r["offensive"] == "NOT")
    rules: Targets = {
        "profanity": lambda r, _t: int(r["offensive"] == "OFF"),
        "harassment": lambda r, _t: int(r["offense_type"] == "TIN" and r["target"] == "IND"),
        "hate": lambda r, _t: int(r["offense_type"] == "TIN" and r["target"] == "GRP"),
        "spam": not_offensive,
        "clickbait": lambda _r, _t: NOT_USED,
    }
    strata = [f"{r['offensive']}/{r['offense_type']}/{r['target']}" for r in rows]
    return texts, [""] * len(rows), strata, rows, rules


def _two_class(
    positive: str, negative: str, head: str
) -> Callable[[Path], Parsed]:
    def read(path: Path) -> Parsed:
        rows = _read_csv(path, {"text", "label"})
        _check_labels(path, rows, "label", {positive, negative})
        clean = _clean_or_unused(lambda r: r["label"] == negative)
        rules: Targets = {name: clean for name in HEAD_NAMES}
        if head != "clickbait":
            # Messages and comments are not titles: the title head never reads them.
            rules["clickbait"] = lambda _r, _t: NOT_USED
        rules[head] = lambda r, _t: int(r["label"] == positive)
        texts = [r["text"] for r in rows]
        return texts, [""] * len(rows), [r["label"] for r in rows], rows, rules

    return read


def _all_clean(rows: list[dict[str, str]]) -> Targets:
    return {name: (lambda _r, _t: 0) for name in HEAD_NAMES}


def _newsgroups(path: Path) -> Parsed:
    rows = [
        r for r in _read_csv(path, {"text", "label"})
        if not r["label"].startswith(EXCLUDED_NEWSGROUP_PREFIXES)
    ]
    titles, texts = [], []
    for row in rows:
        titles.append(row["text"].strip().partition("\n")[0].strip())
        texts.append(row["text"].strip())  # already "subject\nbody": the ingest document
    return texts, titles, [r["label"] for r in rows], rows, _all_clean(rows)


def _wikipedia(path: Path) -> Parsed:
    rows = _read_csv(path, {"text", "label"})
    titles = []
    for row in rows:
        match = _WIKI_SUBJECT.match(row["text"])
        titles.append(match.group(1).strip() if match else "")
    rules = _all_clean(rows)
    # An abstract whose subject could not be found gives the title head nothing to read.
    rules["clickbait"] = lambda r, _t: 0 if _WIKI_SUBJECT.match(r["text"]) else NOT_USED
    return [r["text"] for r in rows], titles, [r["label"] for r in rows], rows, rules


def _bbc(path: Path) -> Parsed:
    rows = _read_csv(path, {"text", "label"})
    titles = [r["text"].strip().partition("\n")[0].strip() for r in rows]
    return [r["text"].strip() for r in rows], titles, [r["label"] for r in rows], rows, _all_clean(
        rows
    )


_READERS: dict[str, Callable[[Path], Parsed]] = {
    "davidson": _davidson,
    "olid": _olid,
    "sms": _two_class("spam", "ham", "spam"),
    "youtube": _two_class("spam", "ham", "spam"),
    "clickbait": _two_class("clickbait", "not_clickbait", "clickbait"),
    "newsgroups": _newsgroups,
    "wikipedia": _wikipedia,
    "bbc": _bbc,
}


def source_path(spec: SourceSpec, moderation_dir: Path, clean_dir: Path) -> Path:
    folder, name = spec.path.split("/", 1)
    return (moderation_dir if folder == "moderation" else clean_dir) / name


def load_source(spec: SourceSpec, moderation_dir: Path, clean_dir: Path) -> SourceRows:
    path = source_path(spec, moderation_dir, clean_dir)
    texts, titles, strata, raw, rules = _READERS[spec.name](path)
    return SourceRows(
        spec=spec, sha256=file_sha256(path), texts=texts, titles=titles, strata=strata, raw=raw,
        targets=_targets_for(raw, texts, rules),
    )


def load_sources(
    moderation_dir: Path, clean_dir: Path, names: Iterable[str] | None = None
) -> dict[str, SourceRows]:
    wanted = list(names) if names is not None else [s.name for s in SOURCES]
    return {name: load_source(SOURCES_BY_NAME[name], moderation_dir, clean_dir) for name in wanted}


SPLITS: tuple[str, ...] = ("fit", "calib", "test")
# A stratum rarer than this cannot be spread over three splits; it joins "other".
_MIN_STRATUM = 10


def _pooled_strata(strata: list[str]) -> np.ndarray:
    counts = Counter(strata)
    return np.asarray([s if counts[s] >= _MIN_STRATUM else "other" for s in strata])


def split_rows(
    rows: SourceRows, seed: int, test_fraction: float = 0.2, calib_fraction: float = 0.1
) -> dict[str, np.ndarray]:
    """Deterministic stratified *fit* / *calib* / *test* row indices of one source.

    *test* is drawn first with the same call the earlier models used (``test_size`` and
    seed), so the held-out tweets, SMS and headlines are the rows earlier figures were
    measured on. A measure-only source is all *test*.
    """
    from sklearn.model_selection import train_test_split

    everything = np.arange(len(rows))
    empty = np.zeros(0, dtype=np.int64)
    if rows.spec.measure_only:
        return {"fit": empty, "calib": empty, "test": everything}
    strata = _pooled_strata(rows.strata)
    rest, test = train_test_split(
        everything, test_size=test_fraction, stratify=strata, random_state=seed
    )
    fit, calib = train_test_split(
        rest, test_size=calib_fraction / (1.0 - test_fraction), stratify=strata[rest],
        random_state=seed,
    )
    return {"fit": np.sort(fit), "calib": np.sort(calib), "test": np.sort(test)}


def stratified_sample(rows: SourceRows, max_rows: int, seed: int) -> SourceRows:
    """A stratified sample of a source, for quick runs and tests (never shipped)."""
    from sklearn.model_selection import train_test_split

    if len(rows) <= max_rows:
        return rows
    keep, _ = train_test_split(
        np.arange(len(rows)), train_size=max_rows, random_state=seed,
        stratify=_pooled_strata(rows.strata),
    )
    return rows.subset(np.sort(keep))
