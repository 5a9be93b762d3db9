"""The one save/load convention: config.json names its files; reading checks them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.artifacts import CONFIG_FILE, ArtifactKind, file_sha256
from core.errors import ModelLoadFailed, ModelNotAvailable

WIDGET = ArtifactKind(name="test.widget", format=2, description="widget",
                      make_with="reelsift make widget", legacy_formats=("widget.v1",))


def _saved(directory: Path) -> dict[str, object]:
    directory.mkdir()
    (directory / "weights.bin").write_bytes(b"\x01\x02\x03" * 100)
    return WIDGET.write_config(directory, {"hidden": 8, "labels": ("a", "b")},
                               files=["weights.bin"])


def test_config_holds_kind_format_own_keys_and_file_hashes(tmp_path: Path) -> None:
    written = _saved(tmp_path / "w")
    on_disk = json.loads((tmp_path / "w" / CONFIG_FILE).read_text())
    assert on_disk == written
    assert list(on_disk)[:2] == ["kind", "format"] and list(on_disk)[-1] == "files"
    assert (on_disk["kind"], on_disk["format"], on_disk["hidden"]) == ("test.widget", 2, 8)
    assert on_disk["labels"] == ["a", "b"]
    assert on_disk["files"] == {"weights.bin": {
        "bytes": 300, "sha256": file_sha256(tmp_path / "w" / "weights.bin")}}
    assert WIDGET.read_config(tmp_path / "w") == on_disk


def test_missing_config_or_file_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(ModelNotAvailable, match="reelsift make widget"):
        WIDGET.read_config(tmp_path)
    _saved(tmp_path / "w")
    (tmp_path / "w" / "weights.bin").unlink()
    with pytest.raises(ModelNotAvailable, match=r"weights\.bin is missing"):
        WIDGET.read_config(tmp_path / "w")


def test_changed_or_truncated_files_are_refused_before_anyone_parses_them(
    tmp_path: Path,
) -> None:
    _saved(tmp_path / "w")
    weights = tmp_path / "w" / "weights.bin"
    weights.write_bytes(b"\x09" * 300)  # same size, other bytes
    with pytest.raises(ModelLoadFailed, match="sha256"):
        WIDGET.read_config(tmp_path / "w")
    weights.write_bytes(b"\x01")
    with pytest.raises(ModelLoadFailed, match="1 bytes"):
        WIDGET.read_config(tmp_path / "w")


def test_other_kinds_formats_and_garbage_are_refused(tmp_path: Path) -> None:
    _saved(tmp_path / "w")
    other = ArtifactKind(name="test.gadget", format=2, description="gadget", make_with="x")
    with pytest.raises(ModelLoadFailed, match=r"'test\.widget' artifact, not a 'test\.gadget'"):
        other.read_config(tmp_path / "w")
    newer = ArtifactKind(name="test.widget", format=3, description="widget", make_with="y")
    with pytest.raises(ModelLoadFailed, match="format 2; this code reads format 3"):
        newer.read_config(tmp_path / "w")
    (tmp_path / "w" / CONFIG_FILE).write_text("{not json")
    with pytest.raises(ModelLoadFailed, match="unreadable"):
        WIDGET.read_config(tmp_path / "w")


def test_legacy_configs_without_hashes_are_read_as_they_are(tmp_path: Path) -> None:
    (tmp_path / CONFIG_FILE).write_text(json.dumps({"format": "widget.v1", "hidden": 4}))
    assert WIDGET.read_config(tmp_path) == {"format": "widget.v1", "hidden": 4}
    (tmp_path / CONFIG_FILE).write_text(json.dumps({"format": "widget.v0", "hidden": 4}))
    with pytest.raises(ModelLoadFailed):
        WIDGET.read_config(tmp_path)


def test_a_legacy_config_still_needs_the_files_its_kind_declares(tmp_path: Path) -> None:
    legacy = ArtifactKind(name="test.widget", format=2, description="widget",
                          make_with="reelsift make widget", legacy_formats=("widget.v1",),
                          legacy_files=("weights.bin",))
    (tmp_path / CONFIG_FILE).write_text(json.dumps({"format": "widget.v1", "hidden": 4}))
    with pytest.raises(ModelNotAvailable, match=r"weights\.bin is missing.*reelsift make widget"):
        legacy.read_config(tmp_path)
    (tmp_path / "weights.bin").write_bytes(b"\x00")
    assert legacy.read_config(tmp_path) == {"format": "widget.v1", "hidden": 4}


def test_a_module_may_not_set_the_conventions_own_keys(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="files"):
        WIDGET.write_config(tmp_path, {"files": []}, files=[])
