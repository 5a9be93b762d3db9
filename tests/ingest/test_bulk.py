"""Bulk tools: `reelsift import` (resumable, idempotent) and `reelsift analyze` on files/batches."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from core.contracts import ItemState
from core.storage.db import transaction
from core.storage.tables import AnalysisRow, ItemRow, MediaBlobRow
from ingest.bulk import analyze_batch, import_items
from ingest.intake import MediaUpload
from ingest.jobs import JobRunner, JobStore
from ingest.media import MediaIngestService
from ingest.models import MediaItemIn
from serving import cli
from serving.wiring import Components
from tests.analyzers.media import synth
from tests.conftest import analysis_json, build_in_process

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def components(tmp_path_factory) -> Iterator[Components]:
    built = build_in_process(tmp_path_factory.mktemp("bulk") / "var")
    yield built
    built.close()


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bulk-files")
    media = root / "media"
    media.mkdir()
    (media / "beach.jpg").write_bytes(synth.encode(synth.scene(5)))
    (media / "song.wav").write_bytes(synth.wav_bytes(synth.music_like(2.0)))
    synth.write_video(media / "clip.mp4", synth.cut_frames(20, 10, 96, 128), 10)
    (media / "notes.jpg").write_bytes(b"plain text pretending to be a photo\n" * 3)
    return root


def write_items(path: Path, records: list[dict[str, Any] | str]) -> Path:
    with path.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write((record if isinstance(record, str) else json.dumps(record)) + "\n")
    return path


def item_count(components: Components) -> int:
    with transaction(components.sessions) as session:
        return int(session.scalar(select(func.count()).select_from(ItemRow)) or 0)


def good_and_bad(prefix: str) -> list[dict[str, Any] | str]:
    return [
        {"id": f"{prefix}-text", "creator_id": "c", "title": "Derby day",
         "text": "Arsenal beat Chelsea 2-1 in London. #PremierLeague", "tags": ["football"],
         "created_at": "2024-05-01T10:00:00Z"},
        {"id": f"{prefix}-photo", "creator_id": "c", "title": "Beach",
         "media": ["media/beach.jpg"]},
        {"id": f"{prefix}-clip", "creator_id": "c", "media": ["media/clip.mp4", "media/song.wav"]},
        {"id": f"{prefix}-fake", "creator_id": "c", "media": ["media/notes.jpg"]},
        {"id": f"{prefix}-gone", "creator_id": "c", "media": ["media/missing.png"]},
        "{this line is not json",
        {"id": f"{prefix}-extra", "creator_id": "c", "text": "hi", "colour": "red"},
    ]


def test_import_stores_every_good_item_reports_failures_and_is_idempotent(components, folder):
    source = write_items(folder / "items.jsonl", good_and_bad("imp"))
    summary = import_items(components, source)
    assert summary.lines == 7 and summary.imported == 3 and summary.skipped == 0
    failures = {line: reason for line, _, reason in summary.failed}
    assert set(failures) == {4, 5, 6, 7}
    assert "no supported media type" in failures[4]
    assert "does not exist" in failures[5]
    assert "not JSON" in failures[6]
    assert "colour" in failures[7]
    clip = components.ingest.get_item("imp-clip")
    assert clip.state not in (ItemState.RECEIVED, ItemState.ANALYZING, ItemState.FAILED)
    assert [m["kind"] for m in analysis_json(clip)["media"]] == ["video", "audio"]
    text = components.ingest.get_item("imp-text")
    assert text.created_at.year == 2024 and {e.kind for e in text.embeddings} >= {"text", "fused"}

    with transaction(components.sessions) as session:
        before = (item_count(components),
                  session.scalar(select(func.count()).select_from(AnalysisRow)),
                  session.scalar(select(func.count()).select_from(MediaBlobRow)))
    again = import_items(components, source)
    with transaction(components.sessions) as session:
        after = (item_count(components),
                 session.scalar(select(func.count()).select_from(AnalysisRow)),
                 session.scalar(select(func.count()).select_from(MediaBlobRow)))
    assert again.imported == 0 and again.skipped == 3 and len(again.failed) == 4
    assert after == before


def test_an_interrupted_import_resumes_where_it_stopped(components, folder):
    source = write_items(folder / "resume.jsonl", good_and_bad("res")[:3])
    # A crash that left one media item stored with its job still queued.
    stalled = MediaIngestService(
        components.ingest.views, components.ingest.gate, components.ingest.limits,
        components.blobs, components.media.pipeline,
        components.media.limits, JobRunner(JobStore(components.sessions), spawner=lambda w: None),
    )
    stalled.submit(MediaItemIn(id="res-stalled", creator_id="c"),
                   [MediaUpload("beach.jpg", (folder / "media" / "beach.jpg").read_bytes(), None)])
    before = item_count(components)

    seen = []

    def interrupt_after_first(n: int) -> None:
        seen.append(n)
        if len(seen) == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        import_items(components, source, advance=interrupt_after_first, chunk=1)
    assert item_count(components) == before + 1  # the first line only

    summary = import_items(components, source, chunk=1)
    assert summary.resumed == 0  # the first run already finished the stalled job
    assert summary.skipped == 1 and summary.imported == 2 and not summary.failed
    assert item_count(components) == before + 3
    assert components.ingest.get_item("res-stalled").state != ItemState.RECEIVED


def test_analyze_batch_writes_one_line_per_input_and_stores_nothing(components, folder, tmp_path):
    source = write_items(folder / "batch.jsonl", good_and_bad("bat"))
    out = tmp_path / "out" / "analyses.jsonl"
    before = item_count(components)
    summary = analyze_batch(components.media.pipeline, components.media.limits, source, out)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["line"] for r in records] == [1, 2, 3, 4, 5, 6, 7]
    assert summary.analyzed == 3 and len(summary.failed) == 4
    text, photo, clip = records[0], records[1], records[2]
    assert text["id"] == "bat-text" and text["analysis"]["vectors"]["text"]["dim"] == 384
    assert photo["analysis"]["media"][0]["analysis"]["phash"]
    assert clip["analysis"]["media"][0]["keyframes"][0]["t_ms"] == 0
    assert clip["analysis"]["vectors"]["fused"]["dim"] == 256
    assert records[3]["error"]["code"] == "E103" and records[5]["id"] is None
    assert item_count(components) == before


class _Shared:
    """The module's components for the CLI, which would otherwise build (and close) its own."""

    def __init__(self, components: Components) -> None:
        self.__dict__.update(vars(components))

    def close(self) -> None:
        pass


def test_cli_analyze_and_import(components, folder, tmp_path, monkeypatch):
    monkeypatch.setattr(cli, "_offline_pipeline",
                        lambda settings: (components.media.pipeline, components.media.limits))
    monkeypatch.setattr(cli, "command_components", lambda settings: _Shared(components))
    runner = CliRunner()

    photo = runner.invoke(cli.app, ["analyze", "--json", str(folder / "media" / "beach.jpg")])
    assert photo.exit_code == 0, photo.output
    payload = json.loads(photo.stdout)
    assert payload["media"][0]["media_type"] == "image/jpeg" and "visual" in payload["vectors"]

    both = runner.invoke(cli.app, ["analyze", str(folder / "media" / "song.wav"), "Rainy Paris"])
    assert both.exit_code == 0, both.output
    assert "media 0: audio/wav" in both.stdout and "vector text" in both.stdout

    # Types come from bytes: a text file named .jpg is analyzed as text, binary junk refused.
    named_jpg = runner.invoke(cli.app, ["analyze", "--json", str(folder / "media" / "notes.jpg")])
    assert named_jpg.exit_code == 0 and json.loads(named_jpg.stdout)["media"] == []
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00\x01\xfe\xff" * 64)
    bad = runner.invoke(cli.app, ["analyze", str(junk)])
    assert bad.exit_code != 0 and "neither a supported media file nor UTF-8 text" in bad.output

    source = write_items(folder / "cli.jsonl", good_and_bad("cli")[:2])
    out = tmp_path / "cli-out.jsonl"
    batch = runner.invoke(cli.app, ["analyze", "--batch", str(source), "--out", str(out)])
    assert batch.exit_code == 0, batch.output
    assert len(out.read_text().splitlines()) == 2

    imported = runner.invoke(cli.app, ["import", str(source)])
    assert imported.exit_code == 0, imported.output
    assert json.loads(imported.stdout.strip().splitlines()[-1])["imported"] == 2
    assert analysis_json(components.ingest.get_item("cli-photo"))["media"]


def test_text_items_analyzed_in_one_batch_match_one_at_a_time(components, tmp_path):
    texts = [("Derby day", "Arsenal beat Chelsea 2-1 in London on Saturday #PremierLeague"),
             ("", "Lemon pasta in 15 minutes with butter and parmesan"),
             ("Rates", "The central bank held interest rates at 4% on Thursday")]
    source = write_items(tmp_path / "texts.jsonl", [
        {"id": f"t{i}", "creator_id": "c", "title": title, "text": text}
        for i, (title, text) in enumerate(texts)
    ])
    out = tmp_path / "out.jsonl"
    summary = analyze_batch(components.media.pipeline, components.media.limits, source, out,
                            chunk=32)
    batched = [json.loads(line)["analysis"] for line in out.read_text().splitlines()]
    assert summary.analyzed == 3 and [r["vectors"]["fused"]["dim"] for r in batched] == [256] * 3
    for (title, text), together in zip(texts, batched, strict=True):
        alone = components.media.pipeline.build(title, text, []).analysis.model_dump(mode="json")
        assert together["text"]["entities"] == alone["text"]["entities"]
        assert [k["text"] for k in together["text"]["keywords"]] == [
            k["text"] for k in alone["text"]["keywords"]]
        assert [label["id"] for label in together["labels"]] == [
            label["id"] for label in alone["labels"]]
        for mine, theirs in zip(together["risk"], alone["risk"], strict=True):
            assert mine["category"] == theirs["category"]
            assert (mine["score"] is None) == (theirs["score"] is None)
            if mine["score"] is not None:
                assert abs(mine["score"] - theirs["score"]) < 1e-3
