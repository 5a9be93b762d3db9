"""The `reelsift` command line, run as users run it (a subprocess with REELSIFT_ settings)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def reelsift(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "REELSIFT_DATA_DIR": str(data_dir),
        "REELSIFT_MODEL_CACHE_DIR": str(REPO / "var" / "test-cache"),
        "OMP_NUM_THREADS": "1",
    }
    return subprocess.run(
        [sys.executable, "-m", "serving.cli", *args], cwd=REPO, env=env,
        capture_output=True, text=True, timeout=600,
    )


def test_db_upgrade_creates_the_sqlite_database(tmp_path):
    result = reelsift("db", "upgrade", data_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "reelsift.db").exists()
    assert "database at revision" in result.stdout


def test_analyze_prints_json_without_storing(tmp_path):
    result = reelsift(
        "analyze", "--json", "Barcelona signed a striker for $80 million #transfer",
        data_dir=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    analysis = json.loads(result.stdout)
    labels = {e["label"] for e in analysis["text"]["entities"]}
    assert {"GPE", "MONEY", "HASHTAG"} <= labels
    assert analysis["vectors"]["text"]["dim"] == 384
    assert {r["category"] for r in analysis["risk"]} >= {"hate", "spam", "sexual"}
    assert not (tmp_path / "reelsift.db").exists()


def test_analyze_refuses_empty_text(tmp_path):
    result = reelsift("analyze", "   ", data_dir=tmp_path)
    assert result.returncode != 0
    assert "empty" in result.stderr + result.stdout
