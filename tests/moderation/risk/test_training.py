"""Training and evaluation end to end through the real CLI, on files the test writes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from core.artifacts import CONFIG_FILE, file_sha256
from core.contracts import RiskCategory
from moderation.risk.cli import app, evaluate
from moderation.risk.datasets import HEAD_NAMES, TRAINING_SOURCES, source_path
from moderation.risk.model import TextRiskModel
from tests.moderation.risk.synthetic import write_datasets


@pytest.fixture(scope="module")
def data_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_datasets(tmp_path_factory.mktemp("data"))


def _train_args(data_dirs: tuple[Path, Path], output: Path) -> list[str]:
    moderation, clean = data_dirs
    return ["--data-dir", str(moderation), "--clean-dir", str(clean), "--output-dir",
            str(output), "--seed", "7"]


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


def test_evaluate_prints_every_figure(
    trained_dir: Path, data_dirs: tuple[Path, Path], tmp_path: Path
) -> None:
    import typer

    moderation, clean = data_dirs
    cli = typer.Typer()
    cli.command()(evaluate)
    out = tmp_path / "figures.json"
    result = CliRunner().invoke(cli, [
        "--data-dir", str(moderation), "--clean-dir", str(clean),
        "--artifacts-dir", str(trained_dir), "--json", str(out),
    ])
    assert result.exit_code == 0, result.output + repr(result.exception)
    figures = json.loads(out.read_text())
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
        assert heading in result.output


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
