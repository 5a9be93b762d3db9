"""The real server over HTTP with media: multipart uploads, jobs, blobs, bad input, restarts."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import cv2
import httpx
import pytest
from sqlalchemy import text

from core.storage.db import make_engine
from tests.analyzers.media import corpus, synth
from tests.conftest import start_live_server, stop_live_server

pytestmark = pytest.mark.slow

FINISHED = {"approved", "pending_review", "rejected"}


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("http-media")
    photo = synth.cartoon_faces()
    video = synth.write_video(
        folder / "clip.mp4", synth.cut_frames(30, 15, 96, 128), 10,
        audio=synth.speech_like(3.0, sr=44_100), audio_sr=44_100,
    )
    return {
        "photo": synth.encode(photo, ".jpg", 90),
        "photo_copy": synth.encode(cv2.resize(photo, (320, 240), interpolation=cv2.INTER_AREA),
                                   ".jpg", 60),
        "png": synth.encode(synth.scene(21), ".png"),
        "speech": synth.wav_bytes(synth.speech_like(2.0)),
        "video": video.read_bytes(),
    }


def upload(
    http: httpx.Client, metadata: dict[str, Any], *files: tuple[str, bytes]
) -> httpx.Response:
    """What `curl -F metadata=@item.json -F file=@a.jpg` sends."""
    return http.post(
        "/v1/items", data={"metadata": json.dumps(metadata)},
        files=[("file", (name, data, "application/octet-stream")) for name, data in files],
    )


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (BentoML workers run in sessions of their own)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, stack = [], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def crash(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the server and all its workers at once: no shutdown, jobs die mid-run."""
    for pid in [process.pid, *descendants(process.pid)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    process.wait(timeout=30)


def wait_for_job(http: httpx.Client, job_id: str, timeout_s: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = http.get(f"/v1/jobs/{job_id}").json()
        assert 0.0 <= job["progress"] <= 1.0
        if job["state"] in ("done", "failed"):
            return dict(job)
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} did not finish in {timeout_s}s: {job}")


def test_image_upload_returns_evidence_embeddings_and_a_fetchable_blob(live_server, media):
    with live_server.client("demo-uploader") as http:
        response = upload(http, {"id": "hm-photo", "creator_id": "c", "title": "Two friends",
                                 "tags": ["portrait"]}, ("friends.jpg", media["photo"]))
        assert response.status_code == 201, response.text
        item = response.json()
        entry = item["analysis"]["media"][0]
        blob = http.get(f"/v1/media/{entry['sha256']}")
        again = upload(http, {"id": "hm-photo", "creator_id": "c", "title": "Two friends",
                              "tags": ["portrait"]}, ("friends.jpg", media["photo"]))
        fetched = http.get("/v1/items/hm-photo", params={"include_vectors": "true"}).json()
    assert item["state"] in FINISHED and again.status_code == 200
    assert entry["kind"] == "image" and entry["filename"] == "friends.jpg"
    faces = entry["analysis"]["faces"]
    assert faces["count"] >= 1 and faces["faces"][0]["box"]
    assert entry["analysis"]["quality"]["reasons"] is not None
    risk = {r["category"]: r for r in item["analysis"]["risk"]}
    assert risk["sexual"]["model"].startswith("nudenet") and risk["sexual"]["score"] is not None
    assert all(e["kind"] == "image_box" for e in risk["low_quality"]["evidence"])
    assert blob.status_code == 200 and blob.content == media["photo"]
    assert blob.headers["content-type"] == "image/jpeg"
    vectors = {e["kind"]: e for e in fetched["embeddings"]}
    assert {"text", "visual", "fused"} <= set(vectors)
    assert len(vectors["fused"]["vector"]) == 256 and len(vectors["visual"]["vector"]) == 128


def test_audio_upload_is_analyzed_before_the_response(live_server, media):
    with live_server.client("demo-uploader") as http:
        response = upload(http, {"id": "hm-voice", "creator_id": "c"},
                          ("voice.wav", media["speech"]))
    assert response.status_code == 201, response.text
    item = response.json()
    entry = item["analysis"]["media"][0]
    assert entry["kind"] == "audio" and entry["analysis"]["duration_ms"] == 2000
    assert entry["analysis"]["speech_music"]["label"] in {"speech", "music"}
    assert {e["kind"] for e in item["embeddings"]} == {"audio", "fused"}
    assert item["state"] in FINISHED


def test_a_file_over_the_spool_size_streams_to_disk_and_leaves_no_temporary_file(live_server):
    long_voice = synth.wav_bytes(synth.speech_like(50.0, sr=44_100), sr=44_100)
    assert len(long_voice) > 4 * 1024 * 1024  # REELSIFT_UPLOAD_SPOOL_BYTES' default
    with live_server.client("demo-uploader") as http:
        response = upload(http, {"id": "hm-long-voice", "creator_id": "c"},
                          ("long.wav", long_voice))
    assert response.status_code == 201, response.text
    entry = response.json()["analysis"]["media"][0]
    assert entry["analysis"]["duration_ms"] == 50_000
    spool = live_server.data_dir / "tmp" / "uploads"
    assert spool.is_dir() and list(spool.iterdir()) == []


def test_video_upload_finishes_as_a_job_with_keyframes_and_a_fused_vector(live_server, media):
    with live_server.client("demo-uploader") as http:
        response = upload(http, {"id": "hm-clip", "creator_id": "c", "title": "Street interview"},
                          ("clip.mp4", media["video"]))
        assert response.status_code == 202, response.text
        accepted = response.json()
        assert response.headers["location"] == accepted["status_url"] == (
            f"/v1/jobs/{accepted['job']['id']}"
        )
        job = wait_for_job(http, accepted["job"]["id"])
        item = http.get("/v1/items/hm-clip").json()
        keyframes = item["analysis"]["media"][0]["keyframes"]
        with live_server.client("demo-moderator") as console:
            strip = [console.get(f"/v1/media/{k['sha256']}") for k in keyframes]
    assert job["state"] == "done" and job["progress"] == 1.0 and job["item_id"] == "hm-clip"
    assert item["state"] in FINISHED
    assert keyframes[0]["t_ms"] == 0 and len(keyframes) >= 2
    assert all(r.status_code == 200 and r.headers["content-type"] == "image/jpeg" for r in strip)
    video = item["analysis"]["media"][0]["analysis"]
    assert video["audio"]["duration_ms"] > 2000 and video["segments"][0]["image"]["phash"]
    risk = {r["category"]: r for r in item["analysis"]["risk"]}
    assert all(e["kind"] == "time_range" and e["end_ms"] >= e["start_ms"]
               for e in risk["low_quality"]["evidence"])
    assert {e["kind"] for e in item["embeddings"]} == {"text", "visual", "audio", "fused"}


def test_near_duplicate_upload_names_the_earlier_item(live_server, media):
    with live_server.client("demo-uploader") as http:
        first = upload(http, {"id": "hm-dup-1", "creator_id": "c"}, ("a.jpg", media["photo"]))
        second = upload(http, {"id": "hm-dup-2", "creator_id": "c"}, ("b.jpg", media["photo_copy"]))
    assert first.status_code == 201 and second.status_code == 201, second.text
    assert "hm-dup-1" in second.json()["analysis"]["media"][0]["near_duplicate_of"]


def test_media_and_jobs_need_the_right_key(live_server, media):
    with live_server.client("demo-uploader") as http:
        sha = upload(http, {"id": "hm-auth", "creator_id": "c"},
                     ("x.png", media["png"])).json()["analysis"]["media"][0]["sha256"]
        assert http.get(f"/v1/media/{'0' * 64}").status_code == 404
        assert http.get("/v1/media/not-a-hash").status_code == 422
        assert http.get("/v1/jobs/no-such-job").status_code == 404
    with live_server.client("demo-feed") as feed:
        assert feed.get(f"/v1/media/{sha}").status_code == 403
        refused = upload(feed, {"id": "hm-x", "creator_id": "c"}, ("x.png", media["png"]))
        assert refused.status_code == 403
    with live_server.client(None) as anonymous:
        assert anonymous.get(f"/v1/media/{sha}").status_code == 401


STATUS = {"InvalidInput": 422, "PayloadTooLarge": 413, "UnsupportedMediaType": 415}


def test_every_bad_input_gets_a_clear_4xx_and_leaves_nothing(live_server, tmp_path):
    import hashlib

    with live_server.client("demo-uploader") as http:
        for case in corpus.bad_inputs(tmp_path):
            item_id = f"hm-bad-{case.name.replace('_', '-')}"
            response = upload(http, {"id": item_id, "creator_id": "c"}, (case.filename, case.data))
            assert response.status_code == STATUS[case.error.__name__], (case.name, response.text)
            body = response.json()
            assert body["code"] == case.error.code, case.name
            assert case.message in body["message"], (case.name, body)
            assert http.get(f"/v1/items/{item_id}").status_code == 404, case.name
            digest = hashlib.sha256(case.data).hexdigest()
            assert http.get(f"/v1/media/{digest}").status_code == 404, case.name
            assert http.get("/v1/me").status_code == 200  # still serving


def test_malformed_uploads_are_refused_with_their_reason(live_server, media):
    with live_server.client("demo-uploader") as http:
        no_metadata = http.post("/v1/items", files=[("file", ("a.jpg", media["photo"]))])
        not_json = http.post("/v1/items", data={"metadata": "{oops"},
                             files=[("file", ("a.jpg", media["photo"]))])
        unnamed_part = http.post(
            "/v1/items", data={"metadata": json.dumps({"id": "x", "creator_id": "c"})},
            files=[("other", ("", b""))],
        )
        bad_field = upload(http, {"id": "hm-b", "creator_id": "c", "text": 5},
                           ("a.jpg", media["photo"]))
        plain = http.post("/v1/items", content=b"hello", headers={"content-type": "text/plain"})
    assert no_metadata.status_code == 422 and "'metadata'" in no_metadata.json()["message"]
    assert not_json.status_code == 400 and "not valid JSON" in not_json.json()["message"]
    assert unnamed_part.status_code == 422
    assert "unexpected form field 'other'" in unnamed_part.json()["message"]
    assert bad_field.status_code == 422 and "text" in bad_field.json()["message"]
    assert plain.status_code == 415 and "multipart/form-data" in plain.json()["message"]


def test_limits_and_jobs_survive_a_restart(tmp_path, media):
    data_dir = tmp_path / "var"
    env = {"REELSIFT_MAX_FILE_BYTES": "1500000", "REELSIFT_ASYNC_MEDIA_BYTES": "100000",
           "REELSIFT_MAX_JOB_ATTEMPTS": "2"}
    server, process = start_live_server(data_dir, extra_env=env)
    try:
        with server.client("demo-uploader") as http:
            oversize = upload(http, {"id": "rs-big", "creator_id": "c"},
                              ("big.jpg", media["photo"] + os.urandom(2_000_000)))
            assert oversize.status_code == 413, oversize.text
            assert "max_file_bytes" in oversize.json()["message"]
            assert http.get("/v1/items/rs-big").status_code == 404
            # Over REELSIFT_ASYNC_MEDIA_BYTES: even an image runs as a job.
            large_png = upload(http, {"id": "rs-png", "creator_id": "c"}, ("big.png", media["png"]))
            assert large_png.status_code == 202, large_png.text
            assert wait_for_job(http, large_png.json()["job"]["id"])["state"] == "done"
            jobs = {}
            for name in ("rs-resumed", "rs-given-up"):
                response = upload(http, {"id": name, "creator_id": "c"},
                                  ("clip.mp4", media["video"]))
                assert response.status_code == 202, response.text
                jobs[name] = response.json()["job"]["id"]
        crash(process)
    finally:
        stop_live_server(process)

    # Pin down where the crash left each job, whatever the timing was: one was running
    # for the first time, one had already been interrupted once before.
    engine = make_engine(f"sqlite:///{data_dir / 'reelsift.db'}")
    with engine.begin() as conn:
        for name, attempts in (("rs-resumed", 1), ("rs-given-up", 2)):
            conn.execute(text("UPDATE jobs SET state='running', attempts=:a, progress=0.5, "
                              "finished_at=NULL, error=NULL WHERE id=:j"),
                         {"a": attempts, "j": jobs[name]})
            conn.execute(text("UPDATE items SET state='analyzing', state_reason=NULL WHERE id=:i"),
                         {"i": name})
            for table in ("analyses", "embeddings", "media_hashes"):
                conn.execute(text(f"DELETE FROM {table} WHERE item_id=:i"), {"i": name})
    engine.dispose()

    server, process = start_live_server(data_dir, extra_env=env)
    try:
        with server.client("demo-uploader") as http:
            resumed = wait_for_job(http, jobs["rs-resumed"])
            given_up = http.get(f"/v1/jobs/{jobs['rs-given-up']}").json()
            resumed_item = http.get("/v1/items/rs-resumed").json()
            failed_item = http.get("/v1/items/rs-given-up").json()
            assert http.get("/v1/items/rs-png").json()["state"] in FINISHED
    finally:
        stop_live_server(process)
    assert resumed["state"] == "done" and resumed["attempts"] == 2
    assert resumed_item["state"] in FINISHED and resumed_item["analysis"]["media"][0]["keyframes"]
    assert given_up["state"] == "failed" and "max_job_attempts=2" in given_up["error"]
    assert failed_item["state"] == "failed" and "max_job_attempts" in failed_item["state_reason"]
