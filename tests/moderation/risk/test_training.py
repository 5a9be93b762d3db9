"""Training and evaluation end to end through the real CLI, on files the test writes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from core.artifacts import CONFIG_FILE, file_sha256
from core.contracts import RiskCategory
from moderation.risk.cli import app, evaluate
from moderation.risk.datasets import HEAD_NAMES, TRAINING_SOURCES, source_path
from moderation.risk.model import TextRiskModel
from tests.moderation.risk.synthetic import write_datasets

REPO = Path(__file__).resolve().parents[3]
# The real bundled MiniLM's ONNX export, shared with the other tests; the word-piece
# states of the synthetic rows are cached beside it.
TEST_CACHE = REPO / "var" / "test-cache"


@pytest.fixture(scope="module")
def data_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_datasets(tmp_path_factory.mktemp("data"))


def _train_args(data_dirs: tuple[Path, Path], output: Path) -> list[str]:
    moderation, clean = data_dirs
    return ["--data-dir", str(moderation), "--clean-dir", str(clean), "--output-dir",
            str(output), "--seed", "7", "--cache-dir", str(TEST_CACHE)]


@pytest.fixture(scope="module")
def trained_dir(data_dirs: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("risk") / "artifacts"
    result = CliRunner().invoke(app, _train_args(data_dirs, output))
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "test split" in result.output
    return output


def test_manifest_records_data_hashes_metrics_and_file_hash(
    trained_dir: Path, data_dirs: tuple[Path, Path]
) -> None:
    manifest = json.loads((trained_dir / CONFIG_FILE).read_text())
    assert (manifest["kind"], manifest["format"]) == ("moderation.text_risk", 3)
    files = {d["source"]: d for d in manifest["training_data"]}
    # BBC is measure-only: training never reads it.
    assert set(files) == {s.name for s in TRAINING_SOURCES} and "bbc" not in files
    for spec in TRAINING_SOURCES:
        entry = files[spec.name]
        assert entry["sha256"] == file_sha256(source_path(spec, *data_dirs))
        assert entry["fit_rows"] + entry["calib_rows"] + entry["test_rows"] == entry["rows"]
    assert manifest["config"]["seed"] == 7
    assert manifest["config"]["capped_by"] == {"harassment": "profanity"}
    artifact = manifest["files"]["text_risk.joblib"]
    assert artifact["sha256"] == file_sha256(trained_dir / "text_risk.joblib")
    assert set(manifest["metrics"]) == set(HEAD_NAMES)
    # Each head is measured on the test rows of the source that holds its positives.
    for head, source in [("profanity", "olid"), ("harassment", "olid"), ("hate", "davidson"),
                         ("spam", "sms"), ("clickbait", "clickbait")]:
        figures = manifest["metrics"][head][source]
        assert figures["positives"] > 0 and 0.0 <= figures["roc_auc"] <= 1.0
        assert 0.0 <= figures["ece"] <= 1.0


def test_retraining_reproduces_the_artifacts_byte_for_byte(
    trained_dir: Path, data_dirs: tuple[Path, Path]
) -> None:
    result = CliRunner().invoke(app, [*_train_args(data_dirs, trained_dir), "--check"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "byte for byte" in result.output
    # A different seed is a different model: the check must notice.
    args = _train_args(data_dirs, trained_dir)
    args[args.index("--seed") + 1] = "8"
    changed = CliRunner().invoke(app, [*args, "--check"])
    assert changed.exit_code == 1 and "differs" in changed.output


def test_trained_model_loads_and_scores(trained_dir: Path) -> None:
    model = TextRiskModel.load(trained_dir)
    probabilities, _ = model.head_probabilities(["you are an idiot", "nice day", "@ann hi"])
    assert np.all(probabilities["harassment"] <= probabilities["profanity"])
    spam, ham = model.score([
        "WINNER! claim your cash prize now, call 09061234",
        "see you at the museum later Ann",
    ])
    spam_score = {s.category: s.score for s in spam}[RiskCategory.SPAM]
    ham_score = {s.category: s.score for s in ham}[RiskCategory.SPAM]
    assert spam_score is not None and ham_score is not None and spam_score > ham_score


def _evaluate(trained_dir: Path, data_dirs: tuple[Path, Path], out: Path,
              *extra: str) -> tuple[str, dict[str, Any]]:
    """``reelsift evaluate risk`` on the synthetic data: its output and its JSON figures."""
    import typer

    moderation, clean = data_dirs
    cli = typer.Typer()
    cli.command()(evaluate)
    result = CliRunner().invoke(cli, [
        "--data-dir", str(moderation), "--clean-dir", str(clean), "--artifacts-dir",
        str(trained_dir), "--json", str(out), "--cache-dir", str(TEST_CACHE), *extra,
    ])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output, json.loads(out.read_text())


def test_evaluate_prints_every_figure(
    trained_dir: Path, data_dirs: tuple[Path, Path], tmp_path: Path
) -> None:
    output, figures = _evaluate(trained_dir, data_dirs, tmp_path / "figures.json")
    # Scored as the service scores items: with the encoder's word-piece states.
    assert figures["model"] == TextRiskModel.load(trained_dir).model.id
    assert not figures["notes"]
    pairs = {(row["category"], row["source"]) for row in figures["rows"]}
    assert {("profanity", "olid"), ("harassment", "olid"), ("hate", "davidson"),
            ("spam", "sms"), ("spam", "youtube"), ("clickbait", "clickbait"),
            ("abusive (max of 3)", "davidson")} <= pairs
    for row in figures["rows"]:
        assert 0.0 <= row["roc_auc"] <= 1.0 and row["baseline"]["method"]
        assert row["accuracy_at_threshold"] is not None
    assert set(figures["olid"]) == {
        "offensive_vs_not", "targeted_vs_untargeted", "individual_vs_group"
    }
    assert set(figures["clean"]) == {"newsgroups", "wikipedia", "bbc"}
    for clean_set in figures["clean"].values():
        assert 0.0 <= clean_set["reaches_review"] <= 1.0
        assert "spam (sms-only LR)" in clean_set["baseline_share_at_0.5"]
    assert figures["ece"]["spam"]["sms"] >= 0.0
    assert figures["data_matches_training"] is True
    targets = {t["figure"]: t for t in figures["targets"]}
    assert {"hate AUC, davidson test rows", "spam accuracy at the policy threshold, sms "
            "test rows", "bbc: share sent to review"} <= set(targets)
    assert any(name.startswith("OLID offensive vs not") for name in targets)
    hate_auc = next(r["roc_auc"] for r in figures["rows"]
                    if (r["category"], r["source"]) == ("hate", "davidson"))
    hate = targets["hate AUC, davidson test rows"]
    assert hate["value"] == hate_auc and hate["goal"] == "≥ 0.9"
    assert hate["interval_95"][0] <= hate["value"] <= hate["interval_95"][1]
    assert hate["met"] == (hate_auc >= 0.9)
    for heading in ("held-out test rows", "OLID validation split", "calibration error",
                    "clean dev sets", "issue 14 targets"):
        assert heading in output


def test_clean_weight_multiplies_only_that_sources_negatives(
    data_dirs: tuple[Path, Path],
) -> None:
    from moderation.risk.training import TrainConfig, _stack_rows, prepare_sources

    moderation, clean = data_dirs
    prepared, _ = prepare_sources(moderation, clean, TrainConfig(seed=7), say=lambda _m: None)
    plain = _stack_rows(prepared, "spam", "fit", 0.5)[3]
    weighted = _stack_rows(prepared, "spam", "fit", 0.5, {"newsgroups": 3.0})[3]
    # Row order follows the sources: mark the newsgroup rows among spam's fit rows.
    source_of_row = np.concatenate([
        np.full(source.head_rows("spam", "fit").size, name)
        for name, source in prepared.items()
    ])
    newsgroups = source_of_row == "newsgroups"
    assert newsgroups.any() and (~newsgroups).any()
    np.testing.assert_allclose(weighted[newsgroups], 3.0 * plain[newsgroups])
    np.testing.assert_allclose(weighted[~newsgroups], plain[~newsgroups])


def test_token_state_heads_ship_for_hate_profanity_and_spam(trained_dir: Path) -> None:
    from analyzers.base import TokenStates
    from moderation.risk.artifacts import load_bundle
    from moderation.risk.token_heads import default_token_cache

    model = TextRiskModel.load(trained_dir)
    bundle = load_bundle(trained_dir, model.manifest)
    with_token_part = {name for name, parts in bundle["heads"].items() if "token" in parts}
    assert with_token_part == {"hate", "profanity", "spam"}
    cache = default_token_cache(TEST_CACHE)
    assert model.token_encoder == cache.encoder == bundle["token_encoder"]
    assert model.manifest["config"]["token_encoder"] == cache.encoder
    texts = ["WINNER! claim your cash prize now, call 09061234", "see you at the museum later Ann"]
    states = TokenStates(cache.encoder, cache.embedder.encode_with_tokens(texts).token_vectors)
    stacked = model.score(texts, token_states=states)
    alone = model.score(texts)
    assert {s.model for s in stacked[0]} - {None} == {model.model.id}
    assert {s.model for s in alone[0]} - {None} == {model.ngram_only_model.id}
    assert model.ngram_only_model.id.startswith("reelsift.text_risk.v1-ngram-only@")
    spam = [{s.category: s.score for s in row}[RiskCategory.SPAM] for row in stacked]
    assert spam[0] > spam[1]
    # Two paths, two calibrators: the stacked spam score is not the n-gram one.
    assert spam[0] != {s.category: s.score for s in alone[0]}[RiskCategory.SPAM]
    # States of another encoder are not read: the n-gram heads score alone.
    other = TokenStates("another-encoder@1", states.states)
    assert model.score(texts, token_states=other) == alone


def test_evaluate_without_token_states_says_so(
    trained_dir: Path, data_dirs: tuple[Path, Path], tmp_path: Path
) -> None:
    _, figures = _evaluate(trained_dir, data_dirs, tmp_path / "figures.json",
                           "--no-token-states")
    assert figures["model"] == TextRiskModel.load(trained_dir).ngram_only_model.id
    assert any("without word-piece states" in note for note in figures["notes"])


def test_training_without_token_states_ships_ngram_heads_only(
    data_dirs: tuple[Path, Path], tmp_path: Path
) -> None:
    output = tmp_path / "artifacts"
    result = CliRunner().invoke(app, [*_train_args(data_dirs, output), "--no-token-states"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    model = TextRiskModel.load(output)
    assert model.token_encoder is None and model.ngram_only_model == model.model
    assert json.loads((output / CONFIG_FILE).read_text())["config"]["token_encoder"] is None
