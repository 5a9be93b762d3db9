"""Chunked document vectors, the dev-set label map and splits, and the tier-1 softmax head."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from analyzers.base import l2_normalise
from core.errors import InvalidInput
from taxonomy.classifier import TaxonomyClassifier
from taxonomy.dev_evaluation import figures, target_checks
from taxonomy.devsets import load_dev_sets, nonsense_texts
from taxonomy.documents import (
    ChunkSettings,
    DocumentEmbedder,
    VectorCache,
    chunk_words,
    split_title,
)
from taxonomy.heads import NONE_CLASS, SupervisedHeads
from taxonomy.tree import TaxonomyTree

from .conftest import HashingTextEmbedder


class RecordingEmbedder(HashingTextEmbedder):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.seen.extend(texts)
        return super().encode(texts)


def test_title_is_a_short_first_line_followed_by_more_text() -> None:
    assert split_title("Rates rise again\nThe central bank raised rates.") == (
        "Rates rise again", "The central bank raised rates.")
    assert split_title("just one line of text") == ("", "just one line of text")
    long_first = " ".join(["word"] * 40) + "\nmore"
    assert split_title(long_first)[0] == ""


def test_chunks_cover_the_body_and_a_short_tail_joins_the_last_chunk() -> None:
    words = [f"w{i}" for i in range(25)]
    chunks = chunk_words(" ".join(words), words_per_chunk=10, max_chunks=5)
    assert [len(c.split()) for c in chunks] == [10, 10, 5]
    tail = chunk_words(" ".join(words[:21]), words_per_chunk=10, max_chunks=5)
    assert [len(c.split()) for c in tail] == [10, 11]  # one word is not a chunk of its own
    assert " ".join(tail).split() == words[:21]
    assert len(chunk_words(" ".join(words * 10), 10, max_chunks=3)) == 3
    assert chunk_words("   ", 10, 3) == []


def test_long_documents_are_read_by_chunks_and_short_ones_as_encode_reads_them(
    tmp_path: Path,
) -> None:
    embedder = RecordingEmbedder()
    documents = DocumentEmbedder(embedder, ChunkSettings(words_per_chunk=8, max_chunks=3,
                                                         title_weight=0.0))
    short = "the striker scored a goal"
    np.testing.assert_allclose(documents.embed_texts([short]), embedder.encode([short]),
                               atol=1e-6)

    # Football early, baking late: one truncated pass would never see the baking.
    body = ("football striker goal match " * 2 + "cake bread oven pastry " * 4).strip()
    embedder.seen.clear()
    vector = documents.embed([""], [body])[0]
    assert all(len(t.split()) <= 8 + 2 for t in embedder.seen)
    assert len(embedder.seen) == 2  # three chunks, the two identical ones encoded once
    baking = embedder.encode(["cake bread oven pastry"])[0]
    first_chunk_only = embedder.encode([" ".join(body.split()[:8])])[0]
    assert vector @ baking > first_chunk_only @ baking + 0.3


def test_title_weight_moves_the_vector_towards_the_title() -> None:
    embedder = HashingTextEmbedder()
    title, body = "sourdough starter", "the striker scored a late goal in the match"
    plain = DocumentEmbedder(embedder, ChunkSettings(title_weight=0.0)).embed([title], [body])
    titled = DocumentEmbedder(embedder, ChunkSettings(title_weight=0.5)).embed([title], [body])
    target = embedder.encode([title])[0]
    assert titled[0] @ target > plain[0] @ target + 0.2
    np.testing.assert_allclose(np.linalg.norm(titled, axis=1), 1.0, atol=1e-5)


def test_chunk_vectors_are_cached_per_model(tmp_path: Path) -> None:
    embedder = RecordingEmbedder()
    cache = VectorCache(tmp_path / "chunks", embedder.model.id)
    documents = DocumentEmbedder(embedder, cache=cache)
    texts = ["cake in the oven", "the striker scored\nand the crowd sang all night long"]
    first = documents.embed_texts(texts)
    calls = len(embedder.seen)
    again = DocumentEmbedder(embedder, cache=VectorCache(tmp_path / "chunks",
                                                          embedder.model.id)).embed_texts(texts)
    assert len(embedder.seen) == calls  # nothing re-encoded
    np.testing.assert_allclose(first, again, atol=1e-6)


LABEL_MAP = """\
posts:
  file: posts.csv
  role: train
  split: {train: 50, calibration: 20, test: 30}
  labels:
    football: {node: "Sports > Soccer"}
    ovens: {node: "Food > Baking", also: ["tech"]}
news:
  file: news.csv
  role: measure
  labels:
    sport: {node: sports}
"""


def _csv(path: Path, rows: list[tuple[str, str]]) -> None:
    import csv

    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(rows)


def test_label_map_resolves_nodes_and_splits_rows_by_their_text(
    small_tree: TaxonomyTree, tmp_path: Path
) -> None:
    map_path = tmp_path / "map.yaml"
    map_path.write_text(LABEL_MAP, encoding="utf-8")
    rows = [(f"match report number {i}", "football") for i in range(200)]
    rows += [(f"oven bake number {i}", "ovens") for i in range(200)]
    _csv(tmp_path / "posts.csv", rows)
    _csv(tmp_path / "news.csv", [("a cup final", "sport")])
    sets = load_dev_sets(small_tree, map_path)

    parts = {p: sets["posts"].rows(tmp_path, p) for p in ("train", "calibration", "test")}
    texts = {p: {r.text for r in rs} for p, rs in parts.items()}
    assert not texts["train"] & texts["test"] and not texts["train"] & texts["calibration"]
    assert sum(len(t) for t in texts.values()) == 400  # 100% assigned
    assert 150 < len(texts["train"]) < 250  # about half, independent of row order
    oven = next(r for r in parts["train"] if r.label == "ovens")
    assert oven.node_id == "baking" and oven.accepted_roots == {"food", "tech"}
    assert next(r for r in parts["test"] if r.label == "football").accepted_roots == {"sports"}

    assert len(sets["news"].rows(tmp_path, "test")) == 1
    with pytest.raises(InvalidInput, match="measure-only"):
        sets["news"].rows(tmp_path, "train")

    map_path.write_text(LABEL_MAP.replace("Food > Baking", "Food > Bakery"), encoding="utf-8")
    with pytest.raises(Exception, match="Bakery"):
        load_dev_sets(small_tree, map_path)


def test_nonsense_is_seeded() -> None:
    assert nonsense_texts(20, 1) == nonsense_texts(20, 1)
    assert nonsense_texts(20, 1) != nonsense_texts(20, 2)
    assert nonsense_texts(10, 1) == nonsense_texts(20, 1)[:10]


TOPIC_ROWS = [
    ("the striker scored a goal in the premier league", ("soccer",)),
    ("football match report, two goals and a red card", ("soccer",)),
    ("the goalkeeper saved a penalty in the cup final", ("soccer",)),
    ("wimbledon final, serve and volley on grass", ("tennis",)),
    ("grand slam tennis racket and a second serve", ("tennis",)),
    ("new processor chips from the semiconductor factory", ("chips",)),
    ("the chip maker opened a processor plant", ("chips",)),
    ("a chatbot built on a neural network", ("ai",)),
    ("machine learning model trained on images", ("ai",)),
    ("bake bread and cake in a hot oven", ("baking",)),
    ("pastry and sourdough loaves from the bakery oven", ("baking",)),
    ("a recipe for dinner with roast vegetables", ("food",)),
]
NONE_ROWS = ["win a free prize call now txt claim", "urgent you have won cash claim your reward",
             "qwx zzv plor", "lol lol lol lol", "xx !!! 000 ???"]


def _root_head_classifier(small_tree: TaxonomyTree, embedder: HashingTextEmbedder
                          ) -> TaxonomyClassifier:
    classifier = TaxonomyClassifier(small_tree, embedder)
    texts = [t for t, _ in TOPIC_ROWS] + NONE_ROWS
    ids: list[tuple[str, ...]] = [i for _, i in TOPIC_ROWS] + [()] * len(NONE_ROWS)
    held_out = ["the winger scored in the league match", "a neural network chip",
                "claim your free cash prize now", "zzv qwx"]
    held_ids: list[tuple[str, ...]] = [("soccer",), ("ai",), (), ()]
    classifier.train_heads(embedder.encode(texts), ids, root_head=True, regularisation=4.0,
                           root_regularisation=10.0, none_weight=1.0,
                           held_out_vectors=embedder.encode(held_out),
                           held_out_node_id_sets=held_ids)
    return classifier


def test_root_head_labels_topics_and_abstains_on_spam(
    small_tree: TaxonomyTree, embedder: HashingTextEmbedder, tmp_path: Path
) -> None:
    classifier = _root_head_classifier(small_tree, embedder)
    heads = classifier.heads
    assert heads is not None and heads.root_head is not None
    assert set(heads.root_head.classes) == {"sports", "tech", "food", NONE_CLASS}
    assert heads.root_head.temperature != 1.0  # fitted on the held-out rows

    probes = ["the striker scored a late goal", "you have won a free prize, claim now",
              "bread from the oven"]
    labels = classifier.classify(embedder.encode(probes))
    assert labels[0] and labels[0][0].id == "sports"
    assert labels[1] == []  # spam: its mass goes to "none", nothing passes min_confidence
    assert labels[2] and labels[2][0].id == "food"

    # Roots compete in one softmax: their confidences never sum past 1.
    roots = [small_tree.index_of(r) for r in ("sports", "tech", "food")]
    confidence = classifier.scores(embedder.encode(probes)).confidence
    assert np.all(confidence[:, roots].sum(axis=1) <= 1.0 + 1e-5)

    saved = heads.save(tmp_path / "heads")
    reloaded = TaxonomyClassifier.load(embedder, tree=small_tree, heads_dir=saved)
    assert SupervisedHeads.load(saved).root_head is not None
    np.testing.assert_allclose(reloaded.scores(embedder.encode(probes)).confidence, confidence,
                               rtol=1e-5, atol=1e-6)


def test_classify_texts_reads_long_documents_by_chunks(
    small_tree: TaxonomyTree, embedder: HashingTextEmbedder
) -> None:
    classifier = _root_head_classifier(small_tree, embedder)
    # Filler first: a single pass over the first chunk's worth would end before the topic.
    filler = " ".join(f"filler{i}" for i in range(160))
    text = f"Weekend\n{filler} " + "bake bread and cake in a hot oven, pastry. " * 15
    truncated = l2_normalise(embedder.encode([" ".join(text.split()[:150])]))
    assert not any(label.id == "food" for label in classifier.classify(truncated)[0])
    assert classifier.classify_texts([text])[0][0].id == "food"


def test_figures_count_accuracy_coverage_and_abstention() -> None:
    accepted = [frozenset({"a"}), frozenset({"b", "c"}), frozenset({"a"}), frozenset({"b"})]
    result = figures("set", "m", ["a", "c", "b", "b"], np.array([0.9, 0.2, 0.8, 0.5]),
                     accepted, 0.3)
    assert result.accuracy == 0.75 and result.coverage == 0.75
    assert result.selective_accuracy == pytest.approx(2 / 3)
    abstain = figures("spam", "m", ["a", "b"], np.array([0.1, 0.4]),
                      [frozenset(), frozenset()], 0.3)
    assert abstain.accuracy is None and abstain.coverage == 0.5
    assert result.per_class == {}  # no class names given


def test_accuracy_at_coverage_drops_the_least_confident_rows_whatever_the_threshold() -> None:
    # 20 rows, the 19 most confident right and the least confident wrong: dropping 5% of
    # rows (one) by confidence leaves only right ones, at any min_confidence.
    confidence = np.linspace(0.99, 0.05, 20)
    top = ["a"] * 19 + ["b"]
    accepted = [frozenset({"a"})] * 20
    for min_confidence in (0.0, 0.3, 0.9):
        result = figures("set", "m", top, confidence, accepted, min_confidence)
        assert result.accuracy == pytest.approx(0.95)
        assert result.accuracy_at_coverage == 1.0
    shuffled = figures("set", "m", top[::-1], confidence, accepted, 0.3)  # wrong row on top
    assert shuffled.accuracy_at_coverage == pytest.approx(18 / 19)
    assert shuffled.as_dict()["accuracy_at_coverage_0.95"] == pytest.approx(0.9474)


def test_figures_give_accuracy_per_class_of_the_set() -> None:
    accepted = [frozenset({"biz"}), frozenset({"biz"}), frozenset({"pol"}), frozenset({"biz"})]
    result = figures("news", "m", ["biz", "pol", "pol", "biz"], np.array([0.9, 0.9, 0.9, 0.1]),
                     accepted, 0.3, ["business", "business", "politics", "business"])
    assert result.per_class == {"business": pytest.approx(2 / 3), "politics": 1.0}
    assert result.as_dict()["per_class_accuracy"] == {"business": 0.6667, "politics": 1.0}
    with pytest.raises(InvalidInput):
        figures("news", "m", ["biz"], np.array([0.9]), [frozenset({"biz"})], 0.3, ["a", "b"])


def test_issue_13_targets_are_checked_on_the_heads_figures_only() -> None:
    # BBC: 20 rows, the 19 most confident right; 18 of 20 labelled at 0.3.
    confidence = np.r_[np.linspace(0.99, 0.35, 18), 0.2, 0.1]
    bbc = figures("bbc_news", "heads", ["a"] * 19 + ["b"], confidence,
                  [frozenset({"a"})] * 20, 0.3)
    news = figures("newsgroups20", "heads", ["a"] * 8 + ["b"] * 2, np.full(10, 0.9),
                   [frozenset({"a"})] * 10, 0.3)
    sms = figures("sms_spam", "heads", ["a"] * 4, np.array([0.9, 0.1, 0.2, 0.1]),
                  [frozenset()] * 4, 0.3)
    baseline = figures("nonsense", "tfidf+logreg", ["a"] * 3, np.full(3, 0.9),
                       [frozenset()] * 3, 0.3)
    checks = {c.target.figure: c for c in target_checks([bbc, news, sms, baseline])}
    assert set(checks) == {
        "bbc_news tier-1 accuracy over the 95% most confident rows",
        "bbc_news coverage at min_confidence", "newsgroups20 tier-1 accuracy, test part",
        "sms_spam: share labelled at min_confidence",
    }  # nonsense was measured by a baseline only: not a target of the served heads
    top = checks["bbc_news tier-1 accuracy over the 95% most confident rows"]
    assert (top.value, top.n, top.met) == (1.0, 19, True)
    coverage = checks["bbc_news coverage at min_confidence"]
    assert (coverage.value, coverage.met) == (0.9, False)
    assert checks["newsgroups20 tier-1 accuracy, test part"].value == 0.8
    spam = checks["sms_spam: share labelled at min_confidence"]
    assert (spam.value, spam.met, spam.goal_inside_interval) == (0.25, False, False)


def test_classify_documents_reuses_given_vectors_for_short_texts_only(
    small_tree: TaxonomyTree,
) -> None:
    embedder = RecordingEmbedder()
    classifier = TaxonomyClassifier(small_tree, embedder)
    classifier.warm()  # node texts are encoded once, before what this test watches
    titles = ["Match day", "Bakery"]
    texts = ["the striker scored a goal",
             " ".join(f"filler{i}" for i in range(160)) + " bake bread and cake " * 40]
    given = embedder.encode(["the striker scored a goal", "filler only"])
    embedder.seen.clear()
    labels = classifier.classify_documents(titles, texts, given)
    assert "the striker scored a goal" not in embedder.seen  # the short one was not re-read
    assert embedder.seen and all("filler" in t or "bake" in t or t == "Bakery"
                                 for t in embedder.seen)
    assert labels[0][0].id == "sports" and labels[1][0].id == "food"
    with pytest.raises(InvalidInput, match="document vectors"):
        classifier.classify_documents(titles, texts, given[:1])
