"""Audio analysis on tones, silence and synthetic speech/music made here; ASR plumbing."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile

from analyzers.media import AUDIO_EMBEDDER_NAME, AudioAnalyzer, MediaLimits, SpeechRecognizer
from analyzers.media.asr import DEFAULT_ASR_SPEC
from analyzers.model_registry import ModelRegistry
from core.errors import InvalidInput, ModelNotAvailable
from core.registry import audio_embedders, resolve
from tests.analyzers.media import synth


@pytest.fixture(scope="module")
def analyzer() -> AudioAnalyzer:
    return AudioAnalyzer()


def _encoded(samples: np.ndarray, sr: int, fmt: str, subtype: str | None = None) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, sr, format=fmt, subtype=subtype)
    return buffer.getvalue()


def test_tone_loudness_is_rms_based_dbfs(analyzer: AudioAnalyzer) -> None:
    amplitude = 0.5
    mono = synth.tone(440.0, seconds=3.0, amplitude=amplitude, sr=44_100)
    result = analyzer.analyze(synth.wav_bytes(np.stack([mono, mono], axis=1), sr=44_100))
    # RMS of A*sin is A/sqrt(2): 20*log10(0.5/sqrt(2)) = -9.03 dBFS; the peak is -6.02.
    assert result.loudness_dbfs == pytest.approx(20 * math.log10(amplitude / math.sqrt(2)), abs=0.1)
    assert result.peak_dbfs == pytest.approx(20 * math.log10(amplitude), abs=0.1)
    assert result.duration_ms == pytest.approx(3000, abs=2)
    assert (result.sample_rate, result.source_sample_rate, result.source_channels) == (
        16_000,
        44_100,
        2,
    )
    assert result.silence_ratio == 0.0
    assert result.tempo_bpm is None  # a steady tone has no beat
    assert result.speech_music.label == "music"


def test_quieter_tone_is_quieter_by_the_amplitude_ratio(analyzer: AudioAnalyzer) -> None:
    loud = analyzer.analyze(synth.wav_bytes(synth.tone(amplitude=0.5, seconds=1.0)))
    quiet = analyzer.analyze(synth.wav_bytes(synth.tone(amplitude=0.05, seconds=1.0)))
    assert loud.loudness_dbfs - quiet.loudness_dbfs == pytest.approx(20.0, abs=0.2)


def test_silence_ratio_and_silence_label(analyzer: AudioAnalyzer) -> None:
    half = np.concatenate([synth.tone(seconds=2.0), np.zeros(2 * synth.SR, np.float32)])
    assert analyzer.analyze(synth.wav_bytes(half)).silence_ratio == pytest.approx(0.5, abs=0.05)
    silent = analyzer.analyze(synth.wav_bytes(np.zeros(synth.SR, np.float32)))
    assert silent.speech_music.label == "silence" and silent.speech_music.speech_probability is None


def test_speech_like_and_music_like_signals_are_told_apart(analyzer: AudioAnalyzer) -> None:
    for seed in (0, 1):
        speech = analyzer.analyze(synth.wav_bytes(synth.speech_like(seed=seed)))
        music = analyzer.analyze(synth.wav_bytes(synth.music_like(seed=seed)))
        assert speech.speech_music.label == "speech", speech.speech_music
        assert music.speech_music.label == "music", music.speech_music
        assert speech.speech_music.low_energy_ratio > music.speech_music.low_energy_ratio
        assert speech.speech_music.modulation_4hz > music.speech_music.modulation_4hz
    assert music.tempo_bpm is not None and 30 < music.tempo_bpm < 300


def test_embedding_is_fixed_length_normalised_and_meaningful(analyzer: AudioAnalyzer) -> None:
    embedder = resolve(audio_embedders, AUDIO_EMBEDDER_NAME)()
    a = embedder.encode(synth.tone(440.0), synth.SR)
    b = embedder.encode(synth.tone(445.0, amplitude=0.45), synth.SR)
    speech = embedder.encode(synth.speech_like(), synth.SR)
    assert a.shape == (88,) == speech.shape and a.dtype == np.float32
    assert np.linalg.norm(a) == pytest.approx(1.0, abs=1e-5)
    assert float(a @ b) > float(a @ speech) + 0.1
    np.testing.assert_allclose(a, embedder.encode(synth.tone(440.0), synth.SR), atol=1e-6)
    result = analyzer.analyze(synth.wav_bytes(synth.tone()))
    assert result.embedding.model == f"{AUDIO_EMBEDDER_NAME}@1" and result.embedding.dim == 88


@pytest.mark.parametrize(
    ("fmt", "subtype", "rate"),
    [("FLAC", None, 22_050), ("OGG", "VORBIS", 44_100), ("MP3", "MPEG_LAYER_III", 44_100)],
)
def test_compressed_formats_decode_to_the_same_length(
    analyzer: AudioAnalyzer, fmt: str, subtype: str | None, rate: int
) -> None:
    result = analyzer.analyze(_encoded(synth.music_like(2.0, sr=rate), rate, fmt, subtype))
    # MP3 encoders pad a frame or two of priming samples.
    assert result.duration_ms == pytest.approx(2000, abs=80)
    assert result.loudness_dbfs < -5


def test_audio_longer_than_the_limit_is_refused_from_the_header() -> None:
    short_limit = AudioAnalyzer(limits=MediaLimits(max_audio_seconds=1.0))
    with pytest.raises(InvalidInput, match="max_audio_seconds") as info:
        short_limit.analyze(synth.wav_bytes(synth.tone(seconds=2.0)))
    assert info.value.details["value"] == pytest.approx(2.0)


def test_inf_samples_are_refused(analyzer: AudioAnalyzer) -> None:
    samples = synth.tone(seconds=0.5)
    samples[10] = np.inf
    with pytest.raises(InvalidInput, match="NaN or infinite"):
        analyzer.analyze(synth.wav_bytes(samples, subtype="FLOAT"))


def test_without_a_recognizer_the_transcript_is_not_assessed(analyzer: AudioAnalyzer) -> None:
    result = analyzer.analyze(synth.wav_bytes(synth.speech_like()))
    assert result.transcript is None
    assert [n.output for n in result.not_assessed] == ["transcript"]
    missing = AudioAnalyzer.with_optional_recognizer(
        lambda: SpeechRecognizer.from_registry(
            ModelRegistry(explicit_paths={"speech_recognition": Path("/nonexistent/asr")})
        )
    )
    assert missing.speech_recognizer is None
    assert "speech_recognition" in missing.asr_unavailable_reason
    assert "REELSIFT_MODEL_PATHS__SPEECH_RECOGNITION" in missing.asr_unavailable_reason
    with pytest.raises(ModelNotAvailable):
        SpeechRecognizer.from_registry(ModelRegistry(hf_cache_dir=Path("/nonexistent/hf")))


@pytest.fixture(scope="module")
def tiny_ctc_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from transformers import (
        Wav2Vec2Config,
        Wav2Vec2CTCTokenizer,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2ForCTC,
        Wav2Vec2Processor,
    )

    torch.manual_seed(0)
    directory = tmp_path_factory.mktemp("tiny-ctc")
    vocab = {"<pad>": 0, "<unk>": 1, "|": 2}
    for letter in "abcdefghijklmnopqrstuvwxyz":
        vocab[letter] = len(vocab)
    (directory / "vocab.json").write_text(json.dumps(vocab))
    tokenizer = Wav2Vec2CTCTokenizer(
        str(directory / "vocab.json"),
        unk_token="<unk>",
        pad_token="<pad>",
        word_delimiter_token="|",
    )
    extractor = Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=16_000, padding_value=0.0, do_normalize=True
    )
    Wav2Vec2Processor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(directory)
    config = Wav2Vec2Config(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        conv_dim=(16, 16),
        conv_stride=(5, 4),
        conv_kernel=(10, 4),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        pad_token_id=0,
    )
    model = Wav2Vec2ForCTC(config)
    with torch.no_grad():
        # Random weights; keep the CTC blank from winning every frame so text comes out.
        model.lm_head.bias[0] = -20.0
    model.save_pretrained(directory)
    return directory


def test_speech_recognizer_transcript_reaches_the_text_analyzer(tiny_ctc_dir: Path) -> None:
    registry = ModelRegistry(explicit_paths={"speech_recognition": tiny_ctc_dir})
    recognizer = SpeechRecognizer.from_registry(registry, threads=1)
    assert not recognizer.seq2seq and recognizer.sample_rate == 16_000
    received: list[str] = []

    def text_analyzer(text: str) -> dict[str, object]:
        received.append(text)
        return {"characters": len(text)}

    analyzer = AudioAnalyzer(
        speech_recognizer=recognizer, text_analyzer=text_analyzer, asr_min_speech_probability=0.0
    )
    # 44.1 kHz input: the recognizer gets it resampled to its processor's 16 kHz.
    speech = synth.speech_like(seconds=2.0, sr=44_100)
    result = analyzer.analyze(synth.wav_bytes(speech, sr=44_100))
    assert result.transcript is not None
    text = result.transcript.text
    assert text.strip() and set(text) <= set("abcdefghijklmnopqrstuvwxyz ")
    assert received == [text]
    assert result.transcript.analysis == {"characters": len(text)}
    assert result.transcript.model == result.models["speech_recognition"]
    assert result.transcript.model.startswith(f"{DEFAULT_ASR_SPEC.name}@")

    # Music is not transcribed at the default threshold, and the reason says so.
    default = AudioAnalyzer(speech_recognizer=recognizer, text_analyzer=text_analyzer)
    music = default.analyze(synth.wav_bytes(synth.music_like(2.0)))
    assert music.transcript is None and "not transcribed" in music.not_assessed[0].reason
    assert len(received) == 1


def test_whisper_style_seq2seq_model_loads_and_generates(tmp_path: Path) -> None:
    import torch
    from transformers import (
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
        WhisperTokenizer,
    )

    torch.manual_seed(0)
    vocab = {"<|endoftext|>": 0}
    for letter in "abcdefghijklmnopqrstuvwxyz":
        vocab[letter] = len(vocab)
        vocab[f"Ġ{letter}"] = len(vocab)
    tokenizer = WhisperTokenizer(vocab=vocab, merges=[])
    tokenizer.add_special_tokens(
        {"additional_special_tokens": ["<|startoftranscript|>", "<|en|>", "<|transcribe|>"]}
    )
    WhisperProcessor(
        feature_extractor=WhisperFeatureExtractor(feature_size=16), tokenizer=tokenizer
    ).save_pretrained(tmp_path)
    config = WhisperConfig(
        vocab_size=len(tokenizer),
        num_mel_bins=16,
        d_model=32,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        max_target_positions=64,
        decoder_start_token_id=tokenizer.convert_tokens_to_ids("<|startoftranscript|>"),
        eos_token_id=0,
        pad_token_id=0,
        bos_token_id=0,
    )
    WhisperForConditionalGeneration(config).save_pretrained(tmp_path)

    registry = ModelRegistry(explicit_paths={"speech_recognition": tmp_path})
    recognizer = SpeechRecognizer.from_registry(registry, threads=1)
    recognizer.max_new_tokens = 8
    assert recognizer.seq2seq
    # 35 s of audio: two 30 s windows, each through generate().
    text = recognizer.transcribe(synth.speech_like(seconds=35.0), synth.SR)
    assert isinstance(text, str) and set(text) <= set("abcdefghijklmnopqrstuvwxyz ")


@pytest.mark.parametrize(("n", "source", "target"), [
    (32_000, 16_000, 22_050), (88_207, 44_100, 22_050), (48_000, 48_000, 16_000),
    (1_000, 8_000, 22_050), (22_050, 44_100, 22_050),
])
def test_resampling_without_librosa_gives_librosa_s_samples(n: int, source: int, target: int):
    # API workers resample every audio upload; librosa would load numba and LLVM there.
    import librosa

    from analyzers.media.audio_decode import resample

    samples = np.random.default_rng(n).standard_normal(n).astype(np.float32) * 0.3
    expected = librosa.resample(samples, orig_sr=source, target_sr=target, res_type="soxr_hq")
    got = resample(samples, source, target)
    assert got.dtype == np.float32 and np.array_equal(got, expected.astype(np.float32))
