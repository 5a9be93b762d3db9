"""The topic gate in front of the tier-1 head: topical rows with no mapped class, a
threshold chosen on held-out rows, and "about nothing" getting no label at all."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from core.errors import InvalidConfig, InvalidInput
from taxonomy.classifier import TaxonomyClassifier
from taxonomy.devsets import load_dev_sets
from taxonomy.heads import GATED_SCALE, SupervisedHeads, TopicGate
from taxonomy.training import dev_rows, topical_rows
from taxonomy.tree import TaxonomyTree

from .conftest import HashingTextEmbedder

TOPIC_ROWS = [
    ("the striker scored a goal in the premier league", ("soccer",)),
    ("football match report, two goals and a red card", ("soccer",)),
    ("wimbledon final, serve and volley on grass", ("tennis",)),
    ("new processor chips from the semiconductor factory", ("chips",)),
    ("a chatbot built on a neural network", ("ai",)),
    ("bake bread and cake in a hot oven", ("baking",)),
    ("a recipe for dinner with roast vegetables", ("food",)),
]
HEADLINES = ["striker signs for a premier league club", "chip factory opens in texas",
             "oven prices rise", "tennis star wins her first grand slam",
             "new chatbot answers questions about recipes"]
SPAM = ["win a free prize call now txt claim", "urgent you have won cash claim your reward",
        "claim your free cash prize now txt win", "free reward txt now to claim"]


def _classifier(small_tree: TaxonomyTree, embedder: HashingTextEmbedder
                ) -> TaxonomyClassifier:
    classifier = TaxonomyClassifier(small_tree, embedder)
    texts = [t for t, _ in TOPIC_ROWS] + SPAM[:2]
    ids: list[tuple[str, ...]] = [i for _, i in TOPIC_ROWS] + [(), ()]
    classifier.train_heads(embedder.encode(texts), ids, root_head=True,
                           root_regularisation=10.0, none_weight=0.3,
                           held_out_vectors=embedder.encode(["the winger scored", SPAM[2]]),
                           held_out_node_id_sets=[("soccer",), ()])
    return classifier


def test_gate_threshold_keeps_the_asked_share_of_held_out_topical_rows() -> None:
    rng = np.random.default_rng(0)
    features = np.concatenate([rng.normal(1.0, 1.0, (200, 3)), rng.normal(-1.0, 1.0, (200, 3))])
    topical = np.arange(400) < 200
    gate = TopicGate.train(features, topical, regularisation=1.0)
    held = np.concatenate([rng.normal(1.0, 1.0, (100, 3)), rng.normal(-1.0, 1.0, (100, 3))])
    held_topical = np.arange(200) < 100
    threshold = gate.choose_threshold(held, held_topical, recall=0.9)
    kept = gate.passes(held[held_topical]).mean()
    assert 0.9 <= kept <= 0.92  # the asked share, not more than the ties allow
    assert gate.held_out["topical_kept"] == pytest.approx(kept, abs=1e-4)
    assert gate.held_out["none_passed"] < 0.3  # most rows about nothing are stopped
    assert gate.choose_threshold(held, held_topical, recall=0.99) < threshold
    with pytest.raises(InvalidInput):
        gate.choose_threshold(held, np.ones(200, dtype=bool), recall=0.9)
    with pytest.raises(InvalidInput):
        TopicGate.train(features, np.ones(400, dtype=bool), regularisation=1.0)


def test_rows_the_gate_stops_get_no_label_and_the_gate_survives_saving(
    small_tree: TaxonomyTree, embedder: HashingTextEmbedder, tmp_path: Path
) -> None:
    classifier = _classifier(small_tree, embedder)
    probes = ["the striker scored a late goal", "claim your free cash prize, txt now"]
    before = classifier.classify(embedder.encode(probes))
    gate_rows = [t for t, _ in TOPIC_ROWS] + HEADLINES + SPAM[:2]
    classifier.train_topic_gate(
        embedder.encode(gate_rows), [True] * (len(TOPIC_ROWS) + len(HEADLINES)) + [False] * 2,
        embedder.encode(["the winger scored in the league match", "a chip maker", SPAM[2],
                         SPAM[3]]),
        [True, True, False, False], recall=1.0, regularisation=10.0)
    heads = classifier.heads
    assert heads is not None and heads.topic_gate is not None
    assert heads.topic_gate.held_out["topical_kept"] == 1.0
    heads.topic_gate.overruled_by_root = 1.01  # the gate alone (the overrule: next test)
    after = classifier.classify(embedder.encode(probes))
    assert before[0] and after[0] and after[0][0].id == "sports"
    assert after[1] == []  # stopped by the gate: no root, so nothing below one
    roots = [small_tree.index_of(r) for r in ("sports", "tech", "food")]
    stopped = classifier.scores(embedder.encode(probes)).confidence[1, roots]
    assert 0.0 < stopped.max() <= GATED_SCALE  # under any threshold, its ranking kept

    saved = heads.save(tmp_path / "heads")
    loaded_gate = SupervisedHeads.load(saved).topic_gate
    assert loaded_gate is not None and loaded_gate.overruled_by_root == 1.01
    reloaded = TaxonomyClassifier.load(embedder, tree=small_tree, heads_dir=saved)
    np.testing.assert_allclose(reloaded.scores(embedder.encode(probes)).confidence,
                               classifier.scores(embedder.encode(probes)).confidence,
                               rtol=1e-5, atol=1e-6)


def test_the_gate_needs_a_root_head(small_tree: TaxonomyTree,
                                    embedder: HashingTextEmbedder) -> None:
    classifier = TaxonomyClassifier(small_tree, embedder)
    vectors = embedder.encode(["a goal", "spam"])
    with pytest.raises(InvalidConfig, match="root head"):
        classifier.train_topic_gate(vectors, [True, False], vectors, [True, False])


LABEL_MAP = """\
posts:
  file: posts.csv
  role: train
  split: {train: 50, calibration: 20, test: 30}
  labels:
    football: {node: "Sports > Soccer"}
headlines:
  file: headlines.csv
  role: topical
  rows: {label: news}
  limit: 40
  split: {train: 60, calibration: 40}
"""


def test_topical_sets_feed_only_the_gate_and_limit_caps_their_rows(
    small_tree: TaxonomyTree, tmp_path: Path
) -> None:
    (tmp_path / "map.yaml").write_text(LABEL_MAP, encoding="utf-8")
    with (tmp_path / "posts.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows((f"match report {i}", "football") for i in range(50))
    with (tmp_path / "headlines.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        for i in range(100):
            writer.writerow([f"headline {i}", "news" if i % 2 else "bait"])
    sets = load_dev_sets(small_tree, tmp_path / "map.yaml")
    train = dev_rows(sets, tmp_path, "train", with_nonsense=False)
    assert set(train.sources) == {"posts"}  # headlines never reach the heads
    gate_train = topical_rows(sets, tmp_path, "train")
    gate_held = topical_rows(sets, tmp_path, "calibration")
    texts = set(gate_train.texts) | set(gate_held.texts)
    assert not set(gate_train.texts) & set(gate_held.texts)
    assert len(texts) == 40  # the first 40 "news" rows, in file order
    assert texts == {f"headline {i}" for i in range(1, 80, 2)}
    assert all(ids == () for ids in gate_train.node_id_sets)


def test_the_gate_does_not_stop_a_row_the_root_head_is_sure_of(
    small_tree: TaxonomyTree, embedder: HashingTextEmbedder
) -> None:
    classifier = _classifier(small_tree, embedder)
    classifier.train_topic_gate(
        embedder.encode(HEADLINES + SPAM[:2]), [True] * len(HEADLINES) + [False] * 2,
        embedder.encode(["the winger scored", SPAM[2]]), [True, False], recall=1.0)
    heads = classifier.heads
    assert heads is not None and heads.root_head is not None and heads.topic_gate is not None
    heads.topic_gate.threshold = 1.1  # the gate alone would stop every row
    probes = ["the striker scored a goal in the premier league", "a goal", SPAM[3]]
    vectors = embedder.encode(probes)
    probabilities = heads.root_head.probabilities(classifier.root_features(vectors))
    topics = np.array(heads.root_head.classes) != ""
    best = probabilities[:, topics].max(axis=1)
    assert best.max() - best.min() > 0.05  # the probes differ in how sure the head is
    heads.topic_gate.overruled_by_root = float(best.min() + best.max()) / 2
    sure = best >= heads.topic_gate.overruled_by_root
    labelled = [bool(labels) for labels in classifier.classify(vectors)]
    assert sure.any() and not sure.all()  # the probes cover both cases
    assert labelled == sure.tolist()
