from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.errors import InvalidConfig, InvalidInput
from taxonomy.classifier import ClassifierSettings, Keyframe, TaxonomyClassifier
from taxonomy.heads import SupervisedHeads
from taxonomy.tree import TaxonomyTree

from .conftest import ColourConceptEmbedder, HashingTextEmbedder, solid_image

TEXTS = [
    "The striker scored a late goal as the football team won the premier league match",
    "Wimbledon final: she hit a brilliant serve with her new racket",
    "The chatbot uses a neural network trained with machine learning",
    "The chip maker opened a semiconductor factory for processors",
    "My sourdough starter finally made a tall loaf of bread",
    "A simple recipe for cooking dinner at home",
    "football match goal and a cake baked in the oven",
]


@pytest.fixture
def classifier(small_tree: TaxonomyTree, embedder: HashingTextEmbedder, tmp_path: Path
               ) -> TaxonomyClassifier:
    return TaxonomyClassifier(small_tree, embedder, cache_dir=tmp_path / "cache")


def _ids(labels) -> list[str]:
    return [label.id for label in labels]


def test_labels_carry_paths_versions_and_the_expected_leaf(classifier: TaxonomyClassifier
                                                           ) -> None:
    results = classifier.classify_texts(TEXTS[:5])
    expected_leaves = ["soccer", "tennis", "ai", "chips", "sourdough"]
    for labels, leaf in zip(results, expected_leaves, strict=True):
        assert leaf in _ids(labels)
        deepest = max(labels, key=lambda label: len(label.path))
        assert deepest.id == leaf
        assert all(label.taxonomy_version == classifier.tree.version for label in labels)
    soccer = next(label for label in results[0] if label.id == "soccer")
    assert soccer.path == ["Sports", "Soccer"] and soccer.name == "Soccer"


def test_a_child_never_comes_without_its_ancestors(classifier: TaxonomyClassifier) -> None:
    tree = classifier.tree
    scores = classifier.scores(classifier.text_embedder.encode(TEXTS))
    conf = scores.confidence
    parents = tree.arrays.parent_index
    has_parent = parents >= 0
    assert np.all(conf[:, has_parent] <= conf[:, parents[has_parent]] + 1e-7)
    for settings in (ClassifierSettings(min_confidence=0.01, max_labels=5),
                     ClassifierSettings()):
        classifier.settings = settings
        for labels in classifier.labels_from_confidence(conf):
            ids = set(_ids(labels))
            for node_id in ids:
                assert {a.id for a in tree.ancestors(node_id)} <= ids


def test_a_strong_leaf_lifts_a_weakly_matching_parent(small_tree: TaxonomyTree,
                                                      embedder: HashingTextEmbedder) -> None:
    # The text shares words with Tennis's texts only, none with Sports's own texts.
    vector = embedder.encode(["wimbledon racket"])
    lifted = TaxonomyClassifier(small_tree, embedder).scores(vector).confidence[0]
    unlifted = TaxonomyClassifier(
        small_tree, embedder, settings=ClassifierSettings(child_weight=0.0)
    ).scores(vector).confidence[0]
    sports = small_tree.index_of("sports")
    assert lifted[sports] > unlifted[sports]
    labels = TaxonomyClassifier(small_tree, embedder).classify(vector)[0]
    assert _ids(labels)[:2] == ["sports", "tennis"]


def test_multi_label_output(classifier: TaxonomyClassifier) -> None:
    labels = classifier.classify_texts([TEXTS[6]])[0]
    roots = {label.path[0] for label in labels}
    assert {"Sports", "Food"} <= roots


def test_settings_limit_paths_tiers_and_confidence(small_tree: TaxonomyTree,
                                                   embedder: HashingTextEmbedder) -> None:
    vector = embedder.encode([TEXTS[6]])
    one_path = TaxonomyClassifier(small_tree, embedder, settings=ClassifierSettings(max_labels=1))
    labels = one_path.classify(vector)[0]
    assert len({label.path[0] for label in labels}) == 1
    tier_one = TaxonomyClassifier(small_tree, embedder, settings=ClassifierSettings(tiers=(1,)))
    assert all(len(label.path) == 1 for label in tier_one.classify(vector)[0])
    strict = TaxonomyClassifier(small_tree, embedder,
                                settings=ClassifierSettings(min_confidence=1.0))
    assert strict.classify(vector) == [[]]
    with pytest.raises(InvalidConfig):
        ClassifierSettings(max_labels=0)


def test_batch_equals_one_by_one(classifier: TaxonomyClassifier) -> None:
    batch = classifier.classify_texts(TEXTS)
    single = [classifier.classify_texts([text])[0] for text in TEXTS]
    assert batch == single


def test_node_matrix_is_cached_per_tree_version_and_model(
    small_tree: TaxonomyTree, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    first = HashingTextEmbedder()
    TaxonomyClassifier(small_tree, first, cache_dir=cache).classify(first.encode(["x"]))
    assert first.calls == 2  # the node texts, then the item
    files = list((cache / "taxonomy-nodes").glob("*.npz"))
    assert len(files) == 1 and "hashing-bow" in files[0].name
    second = HashingTextEmbedder()
    TaxonomyClassifier(small_tree, second, cache_dir=cache).warm()
    assert second.calls == 0
    edited = small_tree.with_texts({"ai": {"description": "robots that think"}})
    TaxonomyClassifier(edited, second, cache_dir=cache).warm()
    assert second.calls == 1
    assert len(list((cache / "taxonomy-nodes").glob("*.npz"))) == 2


def test_wrong_vector_shapes_are_refused(classifier: TaxonomyClassifier) -> None:
    with pytest.raises(InvalidConfig):
        classifier.classify(np.ones((1, 7), dtype=np.float32))
    with pytest.raises(InvalidInput):
        classifier.classify(np.full((1, classifier.text_embedder.dim), np.nan))


def test_a_handful_of_examples_moves_predictions_the_expected_way(
    small_tree: TaxonomyTree, embedder: HashingTextEmbedder, tmp_path: Path
) -> None:
    # "Viennoiserie" words appear in no node text: zero-shot cannot tie them to Baking.
    train = [
        ("croissant viennoiserie laminated butter dough", ["baking"]),
        ("pain au chocolat viennoiserie from the patisserie", ["baking"]),
        ("brioche viennoiserie glazed with egg", ["baking"]),
        ("patisserie croissant brioche morning", ["baking"]),
        ("the striker scored a goal", ["soccer"]),
        ("wimbledon serve and racket", ["tennis"]),
        ("neural network chatbot", ["ai"]),
        ("semiconductor processor factory", ["chips"]),
    ]
    probe = embedder.encode(["a warm croissant and brioche from the viennoiserie"])
    classifier = TaxonomyClassifier(small_tree, embedder)
    baking = small_tree.index_of("baking")
    before = classifier.scores(probe).confidence[0]
    heads = classifier.train_heads(
        embedder.encode([t for t, _ in train]), [ids for _, ids in train]
    )
    after = classifier.scores(probe).confidence[0]
    assert after[baking] > before[baking] + 0.2
    assert "baking" in _ids(classifier.classify(probe)[0])
    assert "baking" in heads.node_ids and "food" in heads.node_ids  # ancestors get heads too

    saved = heads.save(tmp_path / "heads")
    reloaded = TaxonomyClassifier.load(embedder, tree=small_tree, heads_dir=saved)
    np.testing.assert_allclose(
        reloaded.scores(probe).confidence, classifier.scores(probe).confidence,
        rtol=1e-5, atol=1e-6,
    )

    other_tree = small_tree.with_texts({"food": {"description": "edited"}})
    with pytest.raises(InvalidConfig, match="retrain"):
        TaxonomyClassifier(other_tree, embedder, heads=SupervisedHeads.load(saved))


def test_images_are_scored_against_the_same_nodes_and_fused_with_text(
    small_tree: TaxonomyTree, embedder: HashingTextEmbedder, tmp_path: Path
) -> None:
    joint = ColourConceptEmbedder()
    classifier = TaxonomyClassifier(small_tree, embedder, image_embedder=joint,
                                    cache_dir=tmp_path / "cache")
    pitch, crust = solid_image((30, 160, 40)), solid_image((240, 150, 40))
    per_image = classifier.classify_images([pitch, crust])
    assert "soccer" in _ids(per_image[0]) and "baking" in _ids(per_image[1])

    text = embedder.encode(["a simple recipe for cooking dinner"])[0]
    image = joint.encode_images([pitch])
    fused = classifier.classify_item(text, image)
    assert {"food", "sports"} <= set(_ids(fused))
    assert classifier.classify_item(text)[0].id == "food"


def test_video_labels_per_segment(small_tree: TaxonomyTree, embedder: HashingTextEmbedder) -> None:
    joint = ColourConceptEmbedder()
    classifier = TaxonomyClassifier(small_tree, embedder, image_embedder=joint)
    colours = [(30, 160, 40)] * 3 + [(240, 150, 40)] * 2
    vectors = joint.encode_images([solid_image(c) for c in colours])
    keyframes = [Keyframe(timestamp_ms=1000 * i, vector=v) for i, v in enumerate(vectors)]
    labels = classifier.classify_video(keyframes[::-1], end_ms=5500)
    item_level = [label for label in labels if label.start_ms is None]
    segments = [label for label in labels if label.start_ms is not None]
    assert {"sports", "food"} <= set(_ids(item_level))
    soccer = next(label for label in segments if label.id == "soccer")
    baking = next(label for label in segments if label.id == "baking")
    assert (soccer.start_ms, soccer.end_ms) == (0, 3000)
    assert (baking.start_ms, baking.end_ms) == (3000, 5500)
    assert any(label.id == "sports" and label.start_ms == 0 for label in segments)
    with pytest.raises(InvalidInput):
        classifier.classify_video([])


def test_classifier_needs_some_embedder(small_tree: TaxonomyTree) -> None:
    with pytest.raises(InvalidConfig):
        TaxonomyClassifier(small_tree)
