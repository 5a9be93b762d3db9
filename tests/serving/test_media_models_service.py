"""The media models served apart from the API: the image and audio analyses an API worker
makes through the MediaModels service's clients are the ones made with the models in
process."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from analyzers.model_registry import ModelRegistry
from serving.service import MediaModels
from serving.settings import Settings
from serving.wiring import (
    MediaModelSet,
    build_media_analyzer,
    build_media_models,
    media_model_clients,
)
from tests.analyzers.media import synth
from tests.analyzers.media.test_audio import tiny_ctc_dir  # noqa: F401  (a fixture)
from tests.conftest import REPO


class OverTheWire:
    """The MediaModels service's own methods over models loaded here, called as a BentoML
    client calls them: arrays copied in and out, JSON answers through JSON."""

    def __init__(self, models: MediaModelSet) -> None:
        self.service = MediaModels.inner.__new__(MediaModels.inner)  # type: ignore[attr-defined]
        self.service.models = models
        self.calls: list[str] = []

    def describe(self) -> dict[str, Any]:
        return json.loads(json.dumps(self.service.describe()))  # type: ignore[no-any-return]

    def detect_nudity(self, images: list[np.ndarray]) -> np.ndarray:
        self.calls.append("nudity")
        return np.array(self.service.detect_nudity([np.array(i) for i in images]))

    def detect_faces(self, images: list[np.ndarray]) -> list[list[list[int]]]:
        self.calls.append("faces")
        return json.loads(json.dumps(self.service.detect_faces([np.array(i) for i in images])))  # type: ignore[no-any-return]

    def transcribe(self, chunks: list[np.ndarray]) -> list[str]:
        self.calls.append("transcribe")
        return list(self.service.transcribe([np.array(c) for c in chunks]))

    def audio_signal(self, samples: np.ndarray, sample_rate: int) -> dict[str, Any]:
        self.calls.append("audio_signal")
        return json.loads(json.dumps(self.service.audio_signal(np.array(samples), sample_rate)))  # type: ignore[no-any-return]

    def audio_signals(self, clips: list[np.ndarray]) -> list[dict[str, Any]]:
        self.calls.append("audio_signals")
        return json.loads(json.dumps(self.service.audio_signals([np.array(c) for c in clips])))  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def settings(tmp_path_factory) -> Settings:  # type: ignore[no-untyped-def]
    return Settings(data_dir=tmp_path_factory.mktemp("media-service") / "var",
                    model_cache_dir=REPO / "var" / "test-cache", inference_threads=1)


def test_image_analysis_through_the_service_is_the_in_process_one(settings):
    local = build_media_models(settings)
    assert local.nudity is not None and local.faces is not None
    wire = OverTheWire(local)
    remote = media_model_clients(wire, wire.describe())
    assert remote.nudity is not None and remote.nudity.model == local.nudity.model
    assert remote.faces is not None and remote.faces.model == local.faces.model

    in_process = build_media_analyzer(settings, None, "not needed here", models=local)
    served = build_media_analyzer(settings, None, "not needed here", models=remote)
    faces = cv2.resize(synth.cartoon_faces(), (1280, 960), interpolation=cv2.INTER_CUBIC)
    found = []
    for image in (synth.encode(faces, ".png"), synth.encode(synth.scene(3), ".jpg")):
        expected = in_process.image.analyze(image)
        got = served.image.analyze(image)
        assert got.model_dump(mode="json") == expected.model_dump(mode="json")
        assert expected.models.keys() >= {"nudity", "faces"}
        found.append(expected)
    assert wire.calls == ["nudity", "faces"] * 2
    # Boxes scaled back to the 1280x960 upload, as in process.
    assert found[0].faces is not None and found[0].faces.haar_count == 2


def test_a_model_the_service_lacks_is_not_assessed_with_its_reason(settings):
    missing = MediaModelSet(None, None, None, {
        "nudity": "no NudeNet here", "faces": "no cascade here", "transcript": "no ASR here"})
    wire = OverTheWire(missing)
    remote = media_model_clients(wire, wire.describe())
    served = build_media_analyzer(settings, None, "not needed here", models=remote)
    result = served.image.analyze(synth.encode(synth.scene(5), ".png"))
    reasons = {n.output: n.reason for n in result.not_assessed}
    assert reasons["nudity"] == "no NudeNet here" and reasons["faces"] == "no cascade here"
    assert served.audio.speech_recognizer is None
    assert served.audio.asr_unavailable_reason == "no ASR here"
    assert wire.calls == []


def test_audio_analysis_through_the_service_is_the_in_process_one(
    settings, tiny_ctc_dir: Path  # noqa: F811
):
    from analyzers.media import SpeechRecognizer

    recognizer = SpeechRecognizer.from_registry(
        ModelRegistry(explicit_paths={"speech_recognition": tiny_ctc_dir}), threads=1)
    local = MediaModelSet(None, None, recognizer, {"nudity": "-", "faces": "-"})
    wire = OverTheWire(local)
    remote = media_model_clients(wire, wire.describe())
    heard: list[str] = []

    def transcripts(text: str) -> Any:
        heard.append(text)
        return {"characters": len(text)}

    in_process = build_media_analyzer(settings, None, "-", transcripts, models=local)
    served = build_media_analyzer(settings, None, "-", transcripts, models=remote)
    in_process.audio.asr_min_speech_probability = 0.0
    served.audio.asr_min_speech_probability = 0.0
    speech = synth.wav_bytes(synth.speech_like(seconds=3.0, sr=44_100), sr=44_100)
    for audio in (speech, synth.wav_bytes(synth.music_like(2.0))):
        expected = in_process.audio.analyze(audio)
        got = served.audio.analyze(audio)
        assert got.model_dump(mode="json") == expected.model_dump(mode="json")
        assert got.transcript is not None  # every clip transcribed at threshold 0
    # Each transcript's text analysis ran in the caller, once a path, on the same text.
    assert heard and heard[0::2] == heard[1::2]
    # uploads are decoded at the analysis rate: the batchable endpoint, a file a call here
    assert wire.calls.count("audio_signals") == 2 and "audio_signal" not in wire.calls
    assert "transcribe" in wire.calls


def test_audio_features_batched_as_bentoml_batches_them_are_the_in_process_ones():
    """Two API workers' calls merged into one batch by BentoML's own batching code (its
    container joins the lists and splits the answers back), through the endpoint's JSON
    form, give each caller what ``audio_signal`` gives in process."""
    from _bentoml_impl.serde import JSONSerde
    from bentoml._internal.runner.container import AutoContainer

    from analyzers.media.audio import audio_signal
    from analyzers.media.audio_decode import ANALYSIS_SAMPLE_RATE
    from serving.model_clients import AudioSignalClient

    api = MediaModels.apis["audio_signals"]
    assert api.batchable and api.batch_dim == (0, 0)
    rate = ANALYSIS_SAMPLE_RATE
    first = [synth.speech_like(seconds=1.5, sr=rate).astype(np.float32)]
    second = [synth.music_like(2.5, sr=rate).astype(np.float32),
              np.zeros(300, dtype=np.float32)]  # shorter than one analysis frame
    serde = JSONSerde()
    calls = []
    for clips in (first, second):  # what each client sends, read back as the server reads it
        payload = serde.serialize_model(api.input_spec(clips=clips))
        calls.append(serde.deserialize_model(payload, api.input_spec).clips)
    batch, indices = AutoContainer.batches_to_batch(calls, api.batch_dim[0])
    assert len(batch) == 3
    service = OverTheWire(MediaModelSet(None, None, None, {})).service
    answers = AutoContainer.batch_to_batches(service.audio_signals(batch), indices,
                                             api.batch_dim[1])
    for clips, answer in zip((first, second), answers, strict=True):
        expected = [audio_signal(clip, rate).model_dump(mode="json") for clip in clips]
        assert json.loads(json.dumps(answer)) == expected

    # the client: the analysis rate through the batch, any other rate a file a call
    wire = OverTheWire(MediaModelSet(None, None, None, {}))
    client = AudioSignalClient(wire)
    clip = first[0]
    assert client(clip, rate) == audio_signal(clip, rate)
    other = synth.speech_like(seconds=1.0, sr=22_050).astype(np.float32)
    assert client(other, 22_050) == audio_signal(other, 22_050)
    assert wire.calls == ["audio_signals", "audio_signal"]


def test_a_transcript_through_the_service_is_the_in_process_one(
    settings, tiny_ctc_dir: Path  # noqa: F811
):
    from analyzers.media import SpeechRecognizer

    recognizer = SpeechRecognizer.from_registry(
        ModelRegistry(explicit_paths={"speech_recognition": tiny_ctc_dir}), threads=1)
    local = MediaModelSet(None, None, recognizer, {})
    wire = OverTheWire(local)
    remote = media_model_clients(wire, {**wire.describe(), "nudity": {"available": False},
                                        "faces": {"available": False}})
    assert remote.speech is not None and remote.speech.model == recognizer.model
    # 70 s at 44.1 kHz: resampled to the model's 16 kHz and cut into three 30 s windows.
    speech = synth.speech_like(seconds=70.0, sr=44_100)
    expected = recognizer.transcribe(speech, 44_100)
    assert expected.strip()
    assert remote.speech.transcribe(speech, 44_100) == expected
    assert wire.calls == ["transcribe"]
