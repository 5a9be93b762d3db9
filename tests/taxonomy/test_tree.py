from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.errors import InvalidInput, NotFound
from taxonomy.dataset import read_labeled_jsonl
from taxonomy.tree import TaxonomyTree


@pytest.fixture(scope="module")
def iab() -> TaxonomyTree:
    return TaxonomyTree.default()


def test_default_tree_is_iab_31_with_texts_for_upper_tiers(iab: TaxonomyTree) -> None:
    assert len(iab) == 704
    assert len(iab.roots) == 37
    assert iab.arrays.max_tier == 4
    assert iab.version.startswith("iab-content-3.1:")
    upper = [n for n in iab.nodes if n.tier <= 2]
    assert all(n.description for n in upper), [n.path_text for n in upper if not n.description]


def test_lookups_by_id_path_and_name(iab: TaxonomyTree) -> None:
    soccer = iab.by_path("Sports > Soccer")
    assert soccer.id == "533" and soccer.path == ("Sports", "Soccer") and soccer.tier == 2
    assert iab.resolve("533") is soccer
    assert iab.resolve("sports > soccer") is soccer
    assert iab.resolve("Soccer") is soccer
    convertible = iab.by_path(["Automotive", "Auto Body Styles", "Convertible"])
    assert [a.name for a in iab.ancestors(convertible.id)] == ["Automotive", "Auto Body Styles"]
    sports_descendants = iab.descendants("483")
    assert soccer in sports_descendants and len(sports_descendants) == 68
    assert all(iab.ancestors(d.id)[0].id == "483" for d in sports_descendants)
    assert {c.id for c in iab.children("386")} == {"8YPBBL", "387", "388"}
    with pytest.raises(NotFound):
        iab.get("no-such-id")
    with pytest.raises(NotFound):
        iab.by_path("Sports > Quidditch")


def test_version_is_a_content_hash(small_tree_path: Path) -> None:
    first = TaxonomyTree.load(small_tree_path)
    again = TaxonomyTree.load(small_tree_path)
    assert first.version == again.version
    changed = first.with_texts({"soccer": {"description": "association football"}})
    assert changed.version != first.version
    assert changed.get("soccer").description == "association football"


def test_tsv_and_yaml_give_the_same_tree(small_tree: TaxonomyTree, tmp_path: Path) -> None:
    lines = ["id\tparent\tname\tdescription\taliases"]
    for node in small_tree.nodes:
        lines.append("\t".join(
            [node.id, node.parent or "", node.name, node.description, "|".join(node.aliases)]
        ))
    path = tmp_path / "small.tsv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    from_tsv = TaxonomyTree.load(path, name="small")
    assert from_tsv.content_hash == small_tree.content_hash
    assert from_tsv.get("sourdough").path == ("Food", "Baking", "Sourdough")


def _write_tsv(tmp_path: Path, rows: list[str]) -> Path:
    path = tmp_path / "bad.tsv"
    path.write_text("id\tparent\tname\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_cycle_is_refused_naming_its_rows(tmp_path: Path) -> None:
    path = _write_tsv(tmp_path, ["r\t\tRoot", "a\tc\tA", "b\ta\tB", "c\tb\tC"])
    with pytest.raises(InvalidInput) as caught:
        TaxonomyTree.load(path)
    message = str(caught.value)
    assert caught.value.code == "E101"
    assert "cycle" in message
    assert "bad.tsv line 3" in message and "line 4" in message and "line 5" in message
    assert "line 2" not in message  # the healthy root is not blamed


def test_orphan_is_refused_naming_its_row(tmp_path: Path) -> None:
    path = _write_tsv(tmp_path, ["r\t\tRoot", "a\tr\tA", "b\tmissing\tB"])
    with pytest.raises(InvalidInput) as caught:
        TaxonomyTree.load(path)
    assert "bad.tsv line 4: orphan 'b'" in str(caught.value)
    assert caught.value.details["problems"] == [
        "bad.tsv line 4: orphan 'b', its parent 'missing' does not exist"
    ]


def test_duplicate_id_is_refused_naming_both_rows(tmp_path: Path) -> None:
    path = _write_tsv(tmp_path, ["r\t\tRoot", "a\tr\tA", "a\tr\tAnother A"])
    with pytest.raises(InvalidInput) as caught:
        TaxonomyTree.load(path)
    assert "duplicate id 'a' at bad.tsv line 3, bad.tsv line 4" in str(caught.value)


def test_yaml_problems_name_entries(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("- {id: x, parent: x, name: Self}\n- {id: y, name: ''}\n", encoding="utf-8")
    with pytest.raises(InvalidInput) as caught:
        TaxonomyTree.load(path)
    message = str(caught.value)
    assert "bad.yaml entry 1: node 'x' is its own parent" in message
    assert "bad.yaml entry 2: node 'y' has an empty name" in message


def test_labeled_file_resolves_paths_and_ids_and_names_bad_lines(
    small_tree: TaxonomyTree, tmp_path: Path
) -> None:
    good = tmp_path / "good.jsonl"
    good.write_text(
        json.dumps({"text": "a", "labels": ["Sports > Soccer", "ai"]}) + "\n"
        + json.dumps({"text": "b", "labels": "Baking"}) + "\n",
        encoding="utf-8",
    )
    examples = read_labeled_jsonl(good, small_tree)
    assert [e.node_ids for e in examples] == [("soccer", "ai"), ("baking",)]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        json.dumps({"text": "a", "labels": ["Sports > Curling"]}) + "\n{not json\n",
        encoding="utf-8",
    )
    with pytest.raises(InvalidInput) as caught:
        read_labeled_jsonl(bad, small_tree)
    assert "line 1:" in str(caught.value) and "Curling" in str(caught.value)
    assert "line 2: not JSON" in str(caught.value)


def test_shipped_data_sets_resolve_against_the_default_tree(iab: TaxonomyTree) -> None:
    data = Path(__file__).resolve().parents[2] / "taxonomy" / "data"
    roots: set[str] = set()
    for name in ("eval/news.jsonl", "eval/posts.jsonl", "train/labeled.jsonl"):
        examples = read_labeled_jsonl(data / name, iab)
        roots |= {iab.get(i).path[0] for e in examples for i in e.node_ids}
    assert len(roots) >= 15
    eval_texts = {e.text for n in ("eval/news.jsonl", "eval/posts.jsonl")
                  for e in read_labeled_jsonl(data / n, iab)}
    train_texts = {e.text for e in read_labeled_jsonl(data / "train/labeled.jsonl", iab)}
    assert not eval_texts & train_texts
