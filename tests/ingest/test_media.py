"""Media intake in process: one analysis per item, blobs once, near-duplicates, jobs, refusals."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import cv2
import httpx
import pytest
from sqlalchemy import func, select

from core.contracts import Evidence, ItemState, RiskCategory, RiskScore
from core.errors import Conflict, InvalidInput, PayloadTooLarge
from core.storage.db import make_session_factory, transaction
from core.storage.tables import AnalysisRow, ItemMediaRow, ItemRow, MediaBlobRow
from ingest.intake import IntakeLimits, MediaUpload
from ingest.jobs import JobRunner, JobState, JobStore
from ingest.media import MediaIngestService
from ingest.models import MediaItemIn
from ingest.near_duplicates import MediaHashRow, PerceptualHashIndex
from moderation.risk.merge import merge_risk
from serving.uploads import MalformedRequest, MultipartUploadReader, read_multipart
from serving.wiring import Components
from tests.analyzers.media import corpus, synth
from tests.conftest import analysis_json, build_in_process

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def components(tmp_path_factory) -> Iterator[Components]:
    built = build_in_process(tmp_path_factory.mktemp("media-ingest") / "var")
    yield built
    built.close()


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("media-files")
    photo = synth.scene(11)
    height, width = photo.shape[:2]
    cropped = photo[height // 20 : -height // 20, width // 20 : -width // 20]
    video = synth.write_video(
        folder / "clip.mp4", synth.cut_frames(30, 15, 120, 160), 10,
        audio=synth.music_like(3.0, sr=44_100), audio_sr=44_100,
    )
    return {
        "photo": synth.encode(photo, ".jpg", 92),
        "photo_variant": synth.encode(cv2.resize(cropped, (400, 300), interpolation=cv2.INTER_AREA),
                                      ".jpg", 55),
        "other_photo": synth.encode(synth.scene(77), ".png"),
        "faces": synth.encode(synth.cartoon_faces(), ".jpg"),
        "speech": synth.wav_bytes(synth.speech_like(2.0)),
        "video": video.read_bytes(),
    }


def counts(components: Components) -> dict[str, int]:
    with transaction(components.sessions) as session:
        return {
            table.__tablename__: int(session.scalar(select(func.count()).select_from(table)) or 0)
            for table in (ItemRow, MediaBlobRow, ItemMediaRow, AnalysisRow, MediaHashRow)
        }


def blob_files(components: Components) -> set[str]:
    root = components.settings.media_dir
    return {p.name for p in root.rglob("*") if p.is_file()} if root.exists() else set()


def test_an_image_item_gets_one_analysis_with_media_text_risk_and_vectors(components, media):
    item = MediaItemIn(id="img-1", creator_id="c1", title="Two friends at the beach",
                       text="Sunny day in Barcelona #summer", tags=["travel"])
    submission = components.media.submit(
        item, [MediaUpload("faces.jpg", media["faces"]), MediaUpload("scene.jpg", media["photo"])]
    )
    out = submission.item
    assert submission.created and submission.job is None
    assert out.state in {ItemState.APPROVED, ItemState.PENDING_REVIEW, ItemState.REJECTED}
    analysis = analysis_json(out)
    assert analysis is not None
    assert {e["label"] for e in analysis["text"]["entities"]} >= {"GPE", "HASHTAG"}
    faces_entry, scene_entry = analysis["media"]
    assert faces_entry["kind"] == "image" and faces_entry["media_type"] == "image/jpeg"
    assert faces_entry["filename"] == "faces.jpg" and len(faces_entry["sha256"]) == 64
    assert faces_entry["analysis"]["faces"]["count"] >= 1
    assert faces_entry["analysis"]["quality"]["width"] == 640
    assert scene_entry["position"] == 1 and len(scene_entry["analysis"]["phash"]) == 16
    risk = {r["category"]: r for r in analysis["risk"]}
    assert set(risk) == {c.value for c in RiskCategory}
    # Media categories come from the images, text categories from the text model.
    assert risk["sexual"]["score"] is not None and risk["sexual"]["model"].startswith("nudenet")
    assert risk["low_quality"]["score"] is not None
    assert all(e["detail"].startswith("file ") for e in risk["low_quality"]["evidence"])
    assert risk["spam"]["score"] is not None
    # The text model read the word pieces of the analyzer's own encoder pass: its scores
    # name the full model, not its n-gram-only fallback.
    assert components.text_risk is not None
    assert risk["spam"]["model"] == risk["hate"]["model"] == components.text_risk.model.id
    vectors = {e.kind: e for e in out.embeddings}
    assert set(vectors) == {"text", "visual", "fused"}
    assert vectors["visual"].model_id == analysis["models"]["visual_embedding"]
    # One fuser (all three models) for text-only and media items: one recommender index.
    assert vectors["fused"].model_id == components.fuser.model.id == analysis["models"]["fusion"]
    assert vectors["fused"].dim == 256
    path, media_type = components.media.blob_file(scene_entry["sha256"])
    assert path.read_bytes() == media["photo"] and media_type == "image/jpeg"


def test_same_bytes_are_stored_once_and_ids_stay_idempotent(components, media):
    before = counts(components)
    first = components.media.submit(MediaItemIn(id="dup-a", creator_id="c"),
                                    [MediaUpload("a.png", media["other_photo"])])
    second = components.media.submit(MediaItemIn(id="dup-b", creator_id="c"),
                                     [MediaUpload("b.png", media["other_photo"])])
    after = counts(components)
    assert after["media_blobs"] == before["media_blobs"] + 1
    assert after["item_media"] == before["item_media"] + 2
    # Identical bytes are the nearest duplicate there is.
    assert analysis_json(second.item)["media"][0]["near_duplicate_of"] == ["dup-a"]
    assert analysis_json(second.item)["media"][0]["near_duplicates"][0]["distance"] == 0

    replay = components.media.submit(MediaItemIn(id="dup-a", creator_id="c"),
                                     [MediaUpload("a.png", media["other_photo"])])
    assert not replay.created and replay.item.id == "dup-a" and first.created
    with pytest.raises(Conflict, match="different content"):
        components.media.submit(MediaItemIn(id="dup-a", creator_id="c"),
                                [MediaUpload("a.jpg", media["photo"])])
    assert counts(components)["items"] == after["items"]


def test_resized_recompressed_cropped_copies_are_near_duplicates(components, media):
    original = components.media.submit(MediaItemIn(id="nd-original", creator_id="c"),
                                       [MediaUpload("x.jpg", media["photo"])])
    copy = components.media.submit(MediaItemIn(id="nd-copy", creator_id="c"),
                                   [MediaUpload("y.jpg", media["photo_variant"])])
    unrelated = components.media.submit(MediaItemIn(id="nd-other", creator_id="c"),
                                        [MediaUpload("z.jpg", synth.encode(synth.scene(999)))])
    original_entry = analysis_json(original.item)["media"][0]
    assert original_entry["sha256"] != analysis_json(copy.item)["media"][0]["sha256"]
    assert "nd-original" in analysis_json(copy.item)["media"][0]["near_duplicate_of"]
    assert "nd-original" not in analysis_json(unrelated.item)["media"][0]["near_duplicate_of"]
    assert "nd-copy" not in analysis_json(unrelated.item)["media"][0]["near_duplicate_of"]


def test_video_runs_as_a_job_with_keyframe_blobs_time_ranges_and_fused_vector(components, media):
    submission = components.media.submit(
        MediaItemIn(id="vid-1", creator_id="c", title="Concert clip"),
        [MediaUpload("clip.mp4", media["video"]), MediaUpload("voice.wav", media["speech"])],
    )
    with transaction(components.sessions) as session:
        job = components.jobs.store.latest_for_item(session, "vid-1")
    # The CLI's components run jobs inline, so the job is finished on return.
    assert job is not None and job.state is JobState.DONE and job.progress == 1.0
    out = components.ingest.get_item("vid-1")
    assert out.state == submission.item.state and out.state != ItemState.FAILED
    video_entry, audio_entry = analysis_json(out)["media"]
    assert video_entry["kind"] == "video" and audio_entry["kind"] == "audio"
    keyframes = video_entry["keyframes"]
    assert keyframes[0]["t_ms"] == 0 and len(keyframes) >= 2
    assert all(k["end_ms"] > k["start_ms"] for k in keyframes)
    for keyframe in keyframes:
        path, media_type = components.media.blob_file(keyframe["sha256"])
        assert media_type == "image/jpeg" and path.read_bytes()[:3] == b"\xff\xd8\xff"
    assert video_entry["analysis"]["audio"]["embedding"]["dim"] == 88
    risk = {r["category"]: r for r in analysis_json(out)["risk"]}
    assert any(e["kind"] == "time_range" for e in risk["low_quality"]["evidence"])
    assert {e.kind for e in out.embeddings} == {"text", "visual", "audio", "fused"}
    with transaction(components.sessions) as session:
        hashes = session.scalars(select(MediaHashRow).where(MediaHashRow.item_id == "vid-1")).all()
    assert sorted(h.t_ms for h in hashes) == sorted(k["t_ms"] for k in keyframes)


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory) -> list[corpus.BadInput]:
    return corpus.bad_inputs(tmp_path_factory.mktemp("corpus"))


def test_every_bad_input_is_refused_and_nothing_is_stored(components, bad_inputs):
    before, files_before = counts(components), blob_files(components)
    for n, case in enumerate(bad_inputs):
        with pytest.raises(case.error) as caught:
            components.media.submit(MediaItemIn(id=f"bad-{n}", creator_id="c"),
                                    [MediaUpload(case.filename, case.data)])
        assert case.message in caught.value.message, case.name
        assert caught.value.message.startswith("file 0"), case.name
    assert counts(components) == before
    assert blob_files(components) == files_before


def test_a_file_undecodable_inside_a_job_fails_the_item_with_the_reason(components, media):
    truncated = media["photo"][: len(media["photo"]) * 6 // 10]
    # Every item runs as a job here, so decoding first happens after the item is stored.
    jobs = JobRunner(JobStore(components.sessions))
    service = MediaIngestService(
        components.ingest.views, components.ingest.gate, components.ingest.limits,
        components.blobs, components.media.pipeline,
        IntakeLimits(media=components.media.limits.media, async_media_bytes=1), jobs,
    )
    submission = service.submit(MediaItemIn(id="late-fail", creator_id="c"),
                                [MediaUpload("cut.jpg", truncated)])
    out = components.ingest.get_item("late-fail")
    assert submission.created and out.state == ItemState.FAILED
    assert "could not decode the image/jpeg" in (out.state_reason or "")
    assert out.analysis is None and out.embeddings == []
    with transaction(components.sessions) as session:
        job = jobs.store.latest_for_item(session, "late-fail")
    assert job is not None and job.state is JobState.FAILED and "could not decode" in job.error


def test_media_items_left_unfinished_are_resumed(components, media):
    jobs_that_never_run = JobRunner(JobStore(components.sessions), spawner=lambda work: None)
    service = MediaIngestService(
        components.ingest.views, components.ingest.gate, components.ingest.limits,
        components.blobs, components.media.pipeline,
        components.media.limits, jobs_that_never_run,
    )
    submission = service.submit(MediaItemIn(id="stalled", creator_id="c"),
                                [MediaUpload("clip.mp4", media["video"])])
    assert submission.job is not None and submission.job.state is JobState.QUEUED
    assert components.ingest.get_item("stalled").state == ItemState.RECEIVED
    # The text ingest leaves media items to the media service.
    components.ingest.resume_unfinished()
    assert components.ingest.get_item("stalled").state == ItemState.RECEIVED
    assert components.media.resume_unfinished() >= 1
    resumed = components.ingest.get_item("stalled")
    assert resumed.state not in (ItemState.RECEIVED, ItemState.ANALYZING, ItemState.FAILED)
    assert analysis_json(resumed)["media"][0]["keyframes"]


def test_merge_risk_keeps_the_worst_score_and_every_source_evidence():
    box = Evidence(kind="image_box", box=(1, 2, 3, 4), detail="BUTTOCKS_EXPOSED")
    span = Evidence(kind="text_span", start=0, end=4, text="nude")
    merged = {s.category: s for s in merge_risk([
        ("text", [RiskScore(category=RiskCategory.SEXUAL, score=0.4, model="t", evidence=[span]),
                  RiskScore(category=RiskCategory.SPAM, score=None, not_assessed_reason="off")]),
        ("file 0 (a.jpg)", [RiskScore(category=RiskCategory.SEXUAL, score=0.8, model="nudenet",
                                      evidence=[box])]),
    ])}
    sexual = merged[RiskCategory.SEXUAL]
    assert sexual.score == 0.8 and sexual.model == "nudenet"
    assert [e.detail for e in sexual.evidence] == ["text", "file 0 (a.jpg): BUTTOCKS_EXPOSED"]
    assert merged[RiskCategory.SPAM].score is None
    assert merged[RiskCategory.SPAM].not_assessed_reason == "text: off"
    assert merged[RiskCategory.HATE].not_assessed_reason == "no model assesses this category"


def multipart_body(metadata: dict[str, object] | None, files: list[tuple[str, bytes]],
                   extra: dict[str, str] | None = None) -> tuple[str, bytes]:
    data = {"metadata": json.dumps(metadata)} if metadata is not None else {}
    request = httpx.Request(
        "POST", "http://x/v1/items", data={**data, **(extra or {})},
        files=[("file", (name, content, "application/octet-stream")) for name, content in files],
    )
    return request.headers["content-type"], request.read()


def feed_in_chunks(reader: MultipartUploadReader, body: bytes, size: int = 4096) -> int:
    """Feeds ``body``; returns how many bytes had been fed when a limit was raised."""
    fed = 0
    for start in range(0, len(body), size):
        chunk = body[start : start + size]
        fed += len(chunk)
        reader.feed(chunk)
    return fed


def test_multipart_reader_streams_files_and_refuses_oversize_while_reading():
    limits = IntakeLimits(max_files_per_item=2)
    content_type, body = multipart_body({"id": "m", "creator_id": "c"},
                                        [("a.bin", b"x" * 10_000), ("b.bin", b"")])
    reader = MultipartUploadReader(content_type, limits)
    feed_in_chunks(reader, body, 333)
    upload = reader.finish()
    assert json.loads(upload.metadata) == {"id": "m", "creator_id": "c"}
    assert [(f.filename, len(f.data)) for f in upload.files] == [("a.bin", 10_000), ("b.bin", 0)]

    small = IntakeLimits(media=limits.media.__class__(max_file_bytes=50_000))
    content_type, body = multipart_body({"id": "m", "creator_id": "c"},
                                        [("big.bin", b"y" * 400_000)])
    reader = MultipartUploadReader(content_type, small)
    fed = 0
    with pytest.raises(PayloadTooLarge, match="max_file_bytes") as caught:
        for start in range(0, len(body), 4096):
            fed += 4096
            reader.feed(body[start : start + 4096])
    assert fed < 60_000  # refused at the chunk that crossed the limit, not at the end
    assert caught.value.details["limit"] == "max_file_bytes"


def test_large_file_parts_are_spooled_to_disk_and_refused_ones_leave_nothing(tmp_path):
    spool = tmp_path / "spool"
    limits = IntakeLimits(spool_bytes=20_000, spool_dir=spool)
    content_type, body = multipart_body({"id": "m", "creator_id": "c"},
                                        [("small.bin", b"s" * 1_000), ("big.bin", b"b" * 90_000)])
    reader = MultipartUploadReader(content_type, limits)
    feed_in_chunks(reader, body, 4096)
    upload = reader.finish()
    small, big = upload.files
    assert small.data == b"s" * 1_000 and small.path is None
    assert big.data is None and big.path is not None and big.path.parent == spool
    assert big.size == 90_000 and big.path.read_bytes() == b"b" * 90_000
    upload.discard()
    assert list(spool.iterdir()) == []

    small_files = IntakeLimits(media=limits.media.__class__(max_file_bytes=50_000),
                               spool_bytes=20_000, spool_dir=spool)
    content_type, body = multipart_body({"id": "m", "creator_id": "c"},
                                        [("big.bin", b"y" * 400_000)])

    async def chunks():  # type: ignore[no-untyped-def]
        for start in range(0, len(body), 4096):
            yield body[start : start + 4096]

    import asyncio

    with pytest.raises(PayloadTooLarge):
        asyncio.run(read_multipart(content_type, None, chunks(), small_files))
    assert list(spool.iterdir()) == []  # the part spooled before the limit broke is gone


def test_a_spooled_video_is_stored_and_analyzed_from_disk(components, media, tmp_path):
    spooled = tmp_path / "upload-clip"
    spooled.write_bytes(media["video"])
    upload = MediaUpload("clip.mp4", None, path=spooled, spooled=True)
    submission = components.media.submit(
        MediaItemIn(id="spooled-video", creator_id="c", title="a clip"), [upload])
    job = components.jobs.store.get(submission.job.id) if submission.job else None
    item = components.ingest.get_item("spooled-video")
    assert item.state != ItemState.FAILED.value, item.state_reason
    assert job is None or job.state is JobState.DONE
    [entry] = analysis_json(item)["media"]
    blob = components.blobs.path_for(entry["sha256"])
    assert blob.read_bytes() == media["video"]  # copied in blocks, byte for byte
    upload.discard()
    assert not spooled.exists()


@pytest.mark.parametrize(
    ("metadata", "files", "extra", "error", "needle"),
    [
        (None, [("a.jpg", b"1")], None, InvalidInput, "no 'metadata' part"),
        ({"id": "m", "creator_id": "c"}, [("a", b"1"), ("b", b"2"), ("c", b"3")], None,
         InvalidInput, "max_files_per_item"),
        ({"id": "m", "creator_id": "c"}, [("a", b"1")], {"caption": "hi"}, InvalidInput,
         "unexpected form field 'caption'"),
    ],
)
def test_multipart_reader_names_what_is_wrong(metadata, files, extra, error, needle):
    content_type, body = multipart_body(metadata, files, extra)
    reader = MultipartUploadReader(content_type, IntakeLimits(max_files_per_item=2))
    with pytest.raises(error, match=needle):
        feed_in_chunks(reader, body)
        reader.finish()


def test_multipart_reader_refuses_a_truncated_body_or_a_missing_boundary():
    content_type, body = multipart_body({"id": "m", "creator_id": "c"}, [("a", b"1" * 100)])
    reader = MultipartUploadReader(content_type, IntakeLimits())
    reader.feed(body[: len(body) // 2])
    with pytest.raises(MalformedRequest, match="ended early"):
        reader.finish()
    with pytest.raises(MalformedRequest, match="boundary"):
        MultipartUploadReader("multipart/form-data", IntakeLimits())


def test_hash_index_follows_rows_written_by_another_replica(db_engine):
    sessions = make_session_factory(db_engine)
    with transaction(sessions) as session:
        for item_id in ("r1", "r2"):
            session.add(ItemRow(id=item_id, creator_id="c", state="approved",
                                content_sha256="0" * 64))
    here, there = PerceptualHashIndex(sessions, 4), PerceptualHashIndex(sessions, 4)
    # The top bit set: stored as a negative BIGINT, compared as unsigned 64 bits.
    high = "f0f0f0f0f0f0f0f0"
    assert here.search([(high, None)]) == []
    with transaction(sessions) as session:
        session.add_all(PerceptualHashIndex.rows("r1", "a" * 64, [(high, None)]))
        session.add_all(PerceptualHashIndex.rows("r2", "b" * 64, [("0f0f0f0f0f0f0f0f", 500)]))
    near = f"{int(high, 16) ^ 0b111:016x}"  # 3 bits away
    found = here.search([(near, None)])
    assert [(d.item_id, d.distance) for d in found] == [("r1", 3)]
    assert there.search([(near, None)], exclude_item="r1") == []
    far = there.search([("0f0f0f0f0f0f0f00", 1000)])
    assert [(d.item_id, d.t_ms, d.distance, d.query_t_ms) for d in far] == [("r2", 500, 4, 1000)]


def test_spool_files_a_killed_process_left_are_removed_once_no_request_could_own_them(
        components):
    import os
    import time

    spool = components.media.limits.spool_dir
    assert spool is not None
    spool.mkdir(parents=True, exist_ok=True)
    stale, live = spool / "upload-stale", spool / "upload-live"
    stale.write_bytes(b"x")
    live.write_bytes(b"y")
    an_hour_ago = time.time() - 3600
    os.utime(stale, (an_hour_ago, an_hour_ago))
    assert components.media.remove_stale_spool_files(600) == 1
    assert not stale.exists() and live.exists()
    live.unlink()
