"""Video analysis on short MP4s written here with cv2.VideoWriter, audio muxed with PyAV."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from analyzers.media import (
    AudioAnalyzer,
    ImageAnalyzer,
    MediaAnalyzer,
    MediaLimits,
    VideoAnalysis,
    VideoAnalyzer,
)
from core.contracts import RiskCategory
from core.errors import InvalidInput
from tests.analyzers.media import synth

FPS = 20.0
FRAMES = 80  # 4 s
CUT_AT = 43  # first frame of the second scene
SAMPLE_FPS = 4.0
STEP_MS = 1000 / SAMPLE_FPS


@pytest.fixture(scope="module")
def image_analyzer() -> ImageAnalyzer:
    return ImageAnalyzer(threads=1)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("video")
    frames = synth.cut_frames(FRAMES, CUT_AT, height=240, width=320)
    audio = synth.music_like(FRAMES / FPS, sr=44_100)
    return synth.write_video(directory / "cut.mp4", frames, FPS, audio=audio, audio_sr=44_100)


@pytest.fixture(scope="module")
def analysis(clip: Path, image_analyzer: ImageAnalyzer) -> VideoAnalysis:
    analyzer = VideoAnalyzer(image_analyzer, sample_fps=SAMPLE_FPS, keyframe_interval_s=10.0)
    return analyzer.analyze(clip.read_bytes())


def test_container_facts(analysis: VideoAnalysis) -> None:
    assert analysis.media_type == "video/mp4"
    assert (analysis.width, analysis.height) == (320, 240)
    assert analysis.fps == pytest.approx(FPS)
    assert analysis.frame_count == FRAMES
    assert analysis.duration_ms == pytest.approx(FRAMES / FPS * 1000, abs=1)


def test_scene_cut_yields_a_keyframe_within_one_sampling_step(analysis: VideoAnalysis) -> None:
    cut_ms = CUT_AT / FPS * 1000
    causes = [(s.cause, s.keyframe_ms) for s in analysis.segments]
    assert causes[0] == ("start", 0)
    changes = [t for cause, t in causes if cause == "scene_change"]
    assert len(changes) == 1, causes  # the slow pan within a scene is not a cut
    assert cut_ms <= changes[0] <= cut_ms + STEP_MS
    cut_segment = analysis.segments[1]
    assert (
        cut_segment.scene_change_distance is not None and cut_segment.scene_change_distance > 0.35
    )


def test_segments_tile_the_video_and_carry_image_analyses(analysis: VideoAnalysis) -> None:
    segments = analysis.segments
    assert segments[0].start_ms == 0 and segments[-1].end_ms == analysis.duration_ms
    for left, right in itertools.pairwise(segments):
        assert left.end_ms == right.start_ms
    for segment in segments:
        assert segment.image.t_ms == segment.keyframe_ms == segment.start_ms
        assert (segment.image.width, segment.image.height) == (320, 240)
    # Different scenes look different.
    assert segments[0].image.phash != segments[1].image.phash


def test_audio_track_is_extracted_with_the_videos_length(analysis: VideoAnalysis) -> None:
    assert analysis.audio is not None
    assert analysis.audio.source_sample_rate == 44_100
    assert analysis.audio.duration_ms == pytest.approx(analysis.duration_ms, abs=60)
    assert analysis.audio.speech_music.label == "music"
    assert analysis.models["audio_embedding"] == analysis.audio.embedding.model


def test_video_risk_and_pooled_vector(analysis: VideoAnalysis) -> None:
    sexual = next(r for r in analysis.risk if r.category == RiskCategory.SEXUAL)
    assert sexual.score is not None and sexual.model and sexual.model.startswith("nudenet")
    quality = next(r for r in analysis.risk if r.category == RiskCategory.LOW_QUALITY)
    assert quality.score is not None and all(e.kind == "time_range" for e in quality.evidence)
    vector = analysis.visual_embedding
    assert vector is not None and vector.dim == 128
    assert np.linalg.norm(vector.as_array()) == pytest.approx(1.0, abs=1e-5)
    summary = analysis.summary()
    assert "values" not in summary["visual_embedding"]
    assert "values" not in summary["segments"][0]["image"]["embedding"]


def test_interval_floor_adds_keyframes_in_long_scenes(
    clip: Path, image_analyzer: ImageAnalyzer
) -> None:
    analyzer = VideoAnalyzer(image_analyzer, sample_fps=SAMPLE_FPS, keyframe_interval_s=1.0)
    result = analyzer.analyze_path(clip)
    times = [s.keyframe_ms for s in result.segments]
    assert "interval" in {s.cause for s in result.segments}
    assert all(b - a <= 1000 + STEP_MS for a, b in itertools.pairwise(times))


def test_silent_video_reports_the_missing_audio(
    tmp_path: Path, image_analyzer: ImageAnalyzer
) -> None:
    path = synth.write_video(tmp_path / "silent.mp4", synth.cut_frames(10, 5, 64, 96), 10.0)
    result = MediaAnalyzer(image=image_analyzer).analyze(path.read_bytes(), filename="silent.mp4")
    assert isinstance(result, VideoAnalysis)
    assert result.audio is None
    assert any(n.output == "audio" and "no audio track" in n.reason for n in result.not_assessed)


def test_video_limits(clip: Path, image_analyzer: ImageAnalyzer) -> None:
    audio = AudioAnalyzer()
    too_long = VideoAnalyzer(image_analyzer, audio, MediaLimits(max_video_seconds=2.0))
    with pytest.raises(InvalidInput, match="max_video_seconds"):
        too_long.analyze_path(clip)
    too_many = VideoAnalyzer(image_analyzer, audio, MediaLimits(max_video_frames=50))
    with pytest.raises(InvalidInput, match="max_video_frames"):
        too_many.analyze_path(clip)


def test_non_video_bytes_are_refused(image_analyzer: ImageAnalyzer) -> None:
    with pytest.raises(InvalidInput, match="expected a video"):
        VideoAnalyzer(image_analyzer).analyze(synth.wav_bytes(synth.tone(seconds=0.2)))
