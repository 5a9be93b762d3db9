"""The word head beside the root head: hashed word TF-IDF read where texts are at hand,
its blend chosen on held-out rows, and the same scores after saving."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from core.errors import InvalidInput
from taxonomy.classifier import TaxonomyClassifier
from taxonomy.heads import NONE_CLASS, SupervisedHeads, WordHead
from taxonomy.tree import TaxonomyTree

from .conftest import HashingTextEmbedder

ROWS = [
    ("the striker scored a goal in the premier league", ("soccer",)),
    ("football match report, two goals and a red card", ("soccer",)),
    ("the keeper saved a penalty in the cup match", ("soccer",)),
    ("new processor chips from the semiconductor factory", ("chips",)),
    ("a chatbot built on a neural network", ("ai",)),
    ("the chip maker opened a new factory for processors", ("chips",)),
    ("bake bread and cake in a hot oven", ("baking",)),
    ("a recipe for dinner with roast vegetables", ("food",)),
    ("roast the vegetables and bake the bread", ("food",)),
    ("win a free prize call now txt claim", ()),
    ("urgent you have won cash claim your reward", ()),
]
HELD_OUT = [
    ("two goals in the league match", ("soccer",)),
    ("the factory makes processor chips", ("chips",)),
    ("bread from the oven for dinner", ("food",)),
    ("claim your free cash prize now txt win", ()),
]


def _trained(small_tree: TaxonomyTree, embedder: HashingTextEmbedder) -> TaxonomyClassifier:
    classifier = TaxonomyClassifier(small_tree, embedder)
    texts = [t for t, _ in ROWS]
    held_texts = [t for t, _ in HELD_OUT]
    classifier.train_heads(embedder.encode(texts), [i for _, i in ROWS], root_head=True,
                           root_regularisation=10.0,
                           held_out_vectors=embedder.encode(held_texts),
                           held_out_node_id_sets=[i for _, i in HELD_OUT],
                           texts=texts, held_out_texts=held_texts, word_features=2**10)
    return classifier


def test_word_head_reads_words_and_leaves_unseen_classes_at_the_row_floor() -> None:
    texts = ["goal goal striker", "striker scored a goal", "chip factory processor",
             "processor chips made", "free prize txt claim", "claim cash prize txt"]
    classes = ["sports", "sports", "tech", "tech", NONE_CLASS, NONE_CLASS]
    head = WordHead.train(texts, classes, regularisation=10.0, n_features=2**10)
    log_p, certainty = head.log_probabilities(
        ["a late goal by the striker", "txt to claim a prize", "nothing known here"],
        ["tech", "sports", "food", NONE_CLASS])
    assert log_p.shape == (3, 4)
    assert np.argmax(log_p[0]) == 1 and np.argmax(log_p[1]) == 3
    assert np.allclose(log_p[:, 2], log_p[:, [0, 1, 3]].min(axis=1))  # "food": never seen
    assert np.exp(log_p[:, [0, 1, 3]]).sum(axis=1) == pytest.approx([1.0] * 3, abs=1e-6)
    # no known word: the intercepts alone, a near-flat guess it is least sure of
    assert certainty[2] < min(certainty[0], certainty[1]) and (certainty >= 0).all()
    with pytest.raises(InvalidInput):
        WordHead.train(texts[:2], classes[:2], regularisation=1.0, n_features=2**10)


def test_blend_is_chosen_on_held_out_rows() -> None:
    texts = ["goal striker", "striker goal league", "chip processor", "processor factory chip"]
    head = WordHead.train(texts, ["sports", "sports", "tech", "tech"], regularisation=10.0,
                          n_features=2**10)
    classes = ["sports", "tech"]
    uninformative = np.log(np.full((4, 2), 0.5))  # a root head that knows nothing
    held = ["a goal for the striker", "league goal", "chip factory", "the processor"]
    losses = head.fit_blend(uninformative, held, classes, ["sports", "sports", "tech", "tech"])
    assert head.blend > 0.0
    assert losses[f"{head.blend:.1f}"] < losses["0.0"]
    blended = head.blended_log_probabilities(uninformative, held, classes)
    assert (np.argmax(blended, axis=1) == [0, 0, 1, 1]).all()


def test_classifier_blends_the_word_head_only_with_texts_and_after_saving(
    small_tree: TaxonomyTree, embedder: HashingTextEmbedder, tmp_path: Path
) -> None:
    classifier = _trained(small_tree, embedder)
    heads = classifier.heads
    assert heads is not None and heads.word_head is not None and heads.root_head is not None
    assert set(heads.word_head.classes) <= set(heads.root_head.classes)
    probes = ["the striker scored a late goal", "claim your free cash prize, txt now"]
    vectors = embedder.encode(probes)
    with_words = classifier.scores(vectors, texts=probes).confidence
    without = classifier.scores(vectors).confidence
    if heads.word_head.blend > 0:
        assert not np.allclose(with_words, without)
    heads.word_head.blend = 0.0
    heads.word_head.temperature = 1.0
    np.testing.assert_allclose(classifier.scores(vectors, texts=probes).confidence, without,
                               rtol=1e-5, atol=1e-6)  # blend 0: the root head alone
    heads.word_head.blend = 0.5
    saved = heads.save(tmp_path / "heads")
    loaded = SupervisedHeads.load(saved)
    assert loaded.word_head is not None and loaded.word_head.blend == 0.5
    reloaded = TaxonomyClassifier.load(embedder, tree=small_tree, heads_dir=saved)
    np.testing.assert_allclose(reloaded.scores(vectors, texts=probes).confidence,
                               classifier.scores(vectors, texts=probes).confidence,
                               rtol=1e-5, atol=1e-6)
    with pytest.raises(InvalidInput):
        classifier.scores(vectors, texts=probes[:1])
    # Stored deflated (the shipped file must stay under GitHub mirrors' 4 MiB) and read
    # back as the very arrays that were saved.
    with zipfile.ZipFile(saved / "heads.npz") as archive:
        assert {i.compress_type for i in archive.infolist()} == {zipfile.ZIP_DEFLATED}
    np.testing.assert_array_equal(loaded.word_head.weights, heads.word_head.weights)
    np.testing.assert_array_equal(loaded.word_head.idf, heads.word_head.idf)


def test_classify_documents_gives_the_word_head_title_and_text(
    small_tree: TaxonomyTree, embedder: HashingTextEmbedder
) -> None:
    classifier = _trained(small_tree, embedder)
    assert classifier.heads is not None and classifier.heads.word_head is not None
    classifier.heads.word_head.blend = 0.9
    titles, texts = ["Derby", ""], ["the striker scored a goal", "free prize txt claim"]
    vectors = embedder.encode([f"{titles[0]}\n{texts[0]}", texts[1]])
    assert classifier.classify_documents(titles, texts, vectors) == classifier.classify(
        vectors, [f"{titles[0]}\n{texts[0]}", texts[1]])
    with pytest.raises(InvalidInput):
        classifier.classify_documents(titles[:1], texts, vectors)
