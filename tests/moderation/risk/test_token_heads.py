"""Heads over word-piece states: numpy scoring, torch training, the on-disk state cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from core.errors import InvalidInput
from moderation.risk.token_heads import (
    TokenHeadConfig,
    TokenHeadSet,
    TokenStateCache,
    TokenStateHead,
    train_token_head,
)

REPO = Path(__file__).resolve().parents[3]
DIM = 8


def _head(rng: np.random.Generator, width: int = 4) -> TokenStateHead:
    return TokenStateHead(
        encoder="enc@1", project=rng.normal(size=(DIM, width)).astype(np.float32),
        project_bias=rng.normal(size=width).astype(np.float32),
        out=rng.normal(size=2 * width).astype(np.float32), out_bias=0.25, epoch=1,
        calib_auc=0.5,
    )


def test_logits_pool_each_texts_pieces_by_mean_and_max() -> None:
    rng = np.random.default_rng(0)
    head = _head(rng)
    states = [rng.normal(size=(n, DIM)).astype(np.float32) for n in (1, 5, 3)]
    expected = []
    for s in states:
        hidden = np.maximum(s @ head.project + head.project_bias, 0.0)
        pooled = np.concatenate([hidden.mean(axis=0), hidden.max(axis=0)])
        expected.append(pooled @ head.out + head.out_bias)
    np.testing.assert_allclose(head.logits(states), expected, rtol=1e-5)
    # Batching changes nothing: a text scores the same alone.
    np.testing.assert_allclose(head.logits(states[1:2]), expected[1:2], rtol=1e-5)


def test_a_set_of_heads_scores_as_each_head_alone() -> None:
    rng = np.random.default_rng(7)
    heads = {"hate": _head(rng, width=4), "spam": _head(rng, width=6)}
    states = [rng.normal(size=(n, DIM)).astype(np.float32) for n in (2, 7, 1)]
    together = TokenHeadSet(heads).logits(states, ["spam", "hate"])
    for name, head in heads.items():
        np.testing.assert_allclose(together[name], head.logits(states), rtol=1e-5)
    assert TokenHeadSet(heads).logits(states, ["hate"]).keys() == {"hate"}
    assert TokenHeadSet({}).logits(states, []) == {}


def test_piece_shares_add_up_to_the_logit() -> None:
    rng = np.random.default_rng(6)
    head = _head(rng)
    states = [rng.normal(size=(n, DIM)).astype(np.float32) for n in (1, 4, 9)]
    shares = head.piece_contributions(states)
    assert [len(s) for s in shares] == [1, 4, 9]
    np.testing.assert_allclose([s.sum() + head.out_bias for s in shares], head.logits(states),
                               rtol=1e-5)


def test_a_text_without_pieces_scores_as_one_zero_piece() -> None:
    head = _head(np.random.default_rng(1))
    empty = head.logits([np.zeros((0, DIM), np.float32)])
    zero = head.logits([np.zeros((1, DIM), np.float32)])
    np.testing.assert_allclose(empty, zero)


def test_states_of_another_width_are_refused() -> None:
    head = _head(np.random.default_rng(2))
    with pytest.raises(InvalidInput, match="text 1"):
        head.logits([np.zeros((2, DIM), np.float32), np.zeros((2, DIM + 1), np.float32)])


def test_arrays_round_trip_as_float16() -> None:
    head = _head(np.random.default_rng(3))
    arrays = head.to_arrays()
    assert arrays["project"].dtype == np.float16
    again = TokenStateHead.from_arrays(arrays)
    np.testing.assert_allclose(again.project, head.project, rtol=1e-3, atol=1e-3)
    assert (again.encoder, again.epoch) == ("enc@1", 1)


def _rows(rng: np.random.Generator, n: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Texts of 3-12 noise pieces; a positive text hides one piece along a fixed direction
    (what max pooling finds and a mean over many pieces blurs)."""
    direction = np.zeros(DIM, np.float32)
    direction[0] = 4.0
    states, targets = [], rng.integers(0, 2, size=n)
    for y in targets:
        s = rng.normal(size=(int(rng.integers(3, 13)), DIM)).astype(np.float32)
        if y:
            s[int(rng.integers(0, len(s)))] += direction
        states.append(s)
    return states, targets


def test_training_learns_a_marker_piece_and_is_deterministic() -> None:
    rng = np.random.default_rng(4)
    states, targets = _rows(rng, 600)
    calib_states, calib_targets = _rows(rng, 200)
    test_states, test_targets = _rows(rng, 200)
    config = TokenHeadConfig(width=16, epochs=4, learning_rate=1e-2, batch=32, threads=1)

    def train() -> TokenStateHead:
        return train_token_head("enc@1", states, targets, np.ones(len(targets)),
                                calib_states, calib_targets, config, seed=5,
                                say=lambda _m: None)

    head = train()
    assert roc_auc_score(test_targets, head.logits(test_states)) > 0.9
    assert 1 <= head.epoch <= 4 and head.calib_auc > 0.9
    again = train()
    np.testing.assert_array_equal(again.project, head.project)
    np.testing.assert_array_equal(again.out, head.out)


def test_training_refuses_a_single_class() -> None:
    states = [np.ones((2, DIM), np.float32)] * 4
    with pytest.raises(InvalidInput, match="both classes"):
        train_token_head("enc@1", states, np.zeros(4), np.ones(4), states,
                         np.array([0, 1, 0, 1]), TokenHeadConfig(), seed=0)


class _CountingEncoder:
    """The real bundled MiniLM, counting the texts it is asked to encode."""

    def __init__(self) -> None:
        from analyzers.model_registry import ModelRegistry
        from analyzers.text_embedding import MINILM, OnnxTextEmbedder

        self.inner = OnnxTextEmbedder(ModelRegistry().resolve(MINILM), REPO / "var" / "test-cache",
                                      threads=1)
        self.model, self.dim = self.inner.model, self.inner.dim
        self.encoded = 0

    def encode(self, texts):  # type: ignore[no-untyped-def]
        return self.inner.encode(texts)

    def encode_with_tokens(self, texts):  # type: ignore[no-untyped-def]
        self.encoded += len(texts)
        return self.inner.encode_with_tokens(texts)


def test_cache_encodes_a_source_once_and_keys_on_its_texts(tmp_path: Path) -> None:
    encoder = _CountingEncoder()
    cache = TokenStateCache(encoder, tmp_path)  # type: ignore[arg-type]
    texts = ["claim your free prize now", "", "see you at the harbour"]
    first = cache.states("sms", texts)
    assert encoder.encoded == 3 and [len(s) for s in first][1] == 0
    direct = encoder.inner.encode_with_tokens(texts).token_vectors
    for cached, fresh in zip(first, direct, strict=True):
        np.testing.assert_allclose(cached, fresh, atol=2e-2)  # stored as float16
    again = cache.states("sms", texts)
    assert encoder.encoded == 3
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    cache.states("sms", texts[:2])  # other texts, another file
    assert encoder.encoded == 5
