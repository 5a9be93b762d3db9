"""A tiny training run through the real CLI and training code, on a sample of the data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from core.contracts import RiskCategory
from moderation.risk.cli import DEFAULT_DATA_DIR, app
from moderation.risk.datasets import HEADS, file_sha256
from moderation.risk.model import TextRiskModel


@pytest.fixture(scope="module")
def trained_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not DEFAULT_DATA_DIR.is_dir():
        pytest.skip(f"training data not present at {DEFAULT_DATA_DIR}")
    output = tmp_path_factory.mktemp("risk") / "artifacts"
    result = CliRunner().invoke(
        app,
        [
            "--data-dir", str(DEFAULT_DATA_DIR), "--output-dir", str(output),
            "--max-rows", "300", "--seed", "7", "--threads", "2",
            "--embedder", "reelsift.text_embedder.sentence_transformers.v1",
        ],
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "held-out validation" in result.output
    return output


def test_manifest_records_data_hashes_metrics_and_file_hash(trained_dir: Path) -> None:
    manifest = json.loads((trained_dir / "manifest.json").read_text())
    files = {d["file"]: d for d in manifest["training_data"]}
    assert set(files) == {h.dataset for h in HEADS}
    for name, entry in files.items():
        assert entry["sha256"] == file_sha256(DEFAULT_DATA_DIR / name)
        assert entry["rows"] == 300 and entry["sample_of_rows"]
        assert entry["fit_rows"] + entry["holdout_rows"] == 300
    assert manifest["config"]["seed"] == 7
    assert manifest["embedding_model"]["dim"] == 384
    artifact = manifest["artifacts"]["text_risk.joblib"]
    assert artifact["sha256"] == file_sha256(trained_dir / "text_risk.joblib")
    for head in HEADS:
        figures = manifest["metrics"][head.name]
        assert 0.0 <= figures["full"]["roc_auc"] <= 1.0
        assert figures["full"]["n"] == files[head.dataset]["holdout_rows"]
        # The cross-validated estimate covers the fit rows, never the holdout.
        assert 0.0 <= figures["cv_full"]["roc_auc"] <= 1.0
        assert figures["cv_full"]["n"] == files[head.dataset]["fit_rows"]
    assert set(manifest["metrics"]["hate"]["cv_full"]["recall_at_precision"]) == {
        "0.40", "0.45", "0.50", "0.60"
    }
    # Even 240 training rows separate spam and clickbait far better than chance.
    assert manifest["metrics"]["spam"]["full"]["roc_auc"] > 0.8
    assert manifest["metrics"]["clickbait"]["full"]["roc_auc"] > 0.8


def test_trained_model_loads_and_scores(trained_dir: Path, minilm_embedder) -> None:
    model = TextRiskModel.load(trained_dir, embedder=minilm_embedder)
    spam, ham = model.score([
        "URGENT! You have won a 2000 pound prize! Txt CLAIM to 81010 now",
        "ok see you at home later, love you",
    ])
    spam_score = {s.category: s.score for s in spam}[RiskCategory.SPAM]
    ham_score = {s.category: s.score for s in ham}[RiskCategory.SPAM]
    assert spam_score is not None and ham_score is not None and spam_score > ham_score
