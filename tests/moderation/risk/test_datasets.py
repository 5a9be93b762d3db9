"""The label rules and splits, on small files the tests write (no shared data needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.errors import InvalidInput
from moderation.risk.datasets import (
    NOT_USED,
    SOURCES_BY_NAME,
    addresses_someone,
    load_source,
    load_sources,
    split_rows,
)
from tests.moderation.risk.synthetic import write_datasets


@pytest.fixture(scope="module")
def data_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_datasets(tmp_path_factory.mktemp("data"))


def _targets_by_stratum(source, head: str) -> dict[str, set[int]]:
    seen: dict[str, set[int]] = {}
    for stratum, target in zip(source.strata, source.targets[head], strict=True):
        seen.setdefault(stratum, set()).add(int(target))
    return seen


def test_olid_levels_map_to_three_distinct_heads(data_dirs: tuple[Path, Path]) -> None:
    olid = load_source(SOURCES_BY_NAME["olid"], *data_dirs)
    assert _targets_by_stratum(olid, "profanity") == {
        "OFF/TIN/IND": {1}, "OFF/TIN/GRP": {1}, "OFF/TIN/OTH": {1}, "OFF/UNT/NULL": {1},
        "NOT/NULL/NULL": {0},
    }
    assert _targets_by_stratum(olid, "harassment") == {
        "OFF/TIN/IND": {1}, "OFF/TIN/GRP": {0}, "OFF/TIN/OTH": {0}, "OFF/UNT/NULL": {0},
        "NOT/NULL/NULL": {0},
    }
    assert _targets_by_stratum(olid, "hate") == {
        "OFF/TIN/IND": {0}, "OFF/TIN/GRP": {1}, "OFF/TIN/OTH": {0}, "OFF/UNT/NULL": {0},
        "NOT/NULL/NULL": {0},
    }
    # Only the clean tweets are negatives for the heads OLID has no labels for.
    assert _targets_by_stratum(olid, "spam")["NOT/NULL/NULL"] == {0}
    assert _targets_by_stratum(olid, "spam")["OFF/UNT/NULL"] == {NOT_USED}
    assert set(olid.targets["clickbait"]) == {NOT_USED}  # tweets are not titles


def test_davidson_harassment_needs_an_addressee(data_dirs: tuple[Path, Path]) -> None:
    davidson = load_source(SOURCES_BY_NAME["davidson"], *data_dirs)
    for text, label, harassment in zip(
        davidson.texts, davidson.strata, davidson.targets["harassment"], strict=True
    ):
        assert harassment == int(label != "neither" and addresses_someone(text))
    assert {int(t) for t in davidson.targets["harassment"]} == {0, 1}
    assert addresses_someone("@bob shut it")
    assert addresses_someone("I told you so")
    assert not addresses_someone("RT @bob: what a day")
    assert not addresses_someone('"@bob: what a day"')


def test_clean_domains_are_negatives_and_politics_is_left_out(
    data_dirs: tuple[Path, Path],
) -> None:
    sources = load_sources(*data_dirs)
    newsgroups = sources["newsgroups"]
    assert "talk.politics.misc" not in newsgroups.strata and len(newsgroups) > 0
    assert all(title.startswith("Re: ") for title in newsgroups.titles)
    for name in ("newsgroups", "wikipedia", "bbc"):
        for head, targets in sources[name].targets.items():
            assert set(targets.tolist()) <= {0, NOT_USED}, (name, head)
    assert sources["wikipedia"].titles[0] and " is " not in sources["wikipedia"].titles[0]


def test_splits_are_deterministic_disjoint_and_bbc_is_measure_only(
    data_dirs: tuple[Path, Path],
) -> None:
    sources = load_sources(*data_dirs)
    for rows in sources.values():
        first, again = split_rows(rows, 13), split_rows(rows, 13)
        for split in first:
            np.testing.assert_array_equal(first[split], again[split])
        union = np.concatenate(list(first.values()))
        assert len(union) == len(set(union.tolist())) == len(rows)
    bbc = split_rows(sources["bbc"], 13)
    assert bbc["fit"].size == bbc["calib"].size == 0 and bbc["test"].size == len(sources["bbc"])


def test_unknown_labels_are_refused(tmp_path: Path) -> None:
    moderation, clean = write_datasets(tmp_path)
    (moderation / "sms_spam.train.csv").write_text("text,label\nhello,maybe\n")
    with pytest.raises(InvalidInput, match="maybe"):
        load_source(SOURCES_BY_NAME["sms"], moderation, clean)
