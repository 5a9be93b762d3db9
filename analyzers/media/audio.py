"""The audio analyzer: loudness, silence, tempo, speech-versus-music, an embedding, ASR.

Everything is computed on mono float32 at 16 kHz (``audio_decode``), with 1024-sample
frames (64 ms) and a 512-sample hop (32 ms).

Definitions
  loudness_dbfs  20*log10(RMS of all samples), full scale = 1.0, so a sine of amplitude
                 A reads 20*log10(A/sqrt(2)) (a full-scale sine is -3.01 dBFS).
  peak_dbfs      20*log10(max |sample|).
  silence_ratio  share of frames whose RMS is below -50 dBFS.
  tempo_bpm      librosa's tempo estimate from the onset envelope; None when the audio
                 has no onsets to speak of (mostly silence, or a steady tone).

Speech versus music (a documented heuristic, not a trained model). Three classic cues
(Saunders 1996; Scheirer & Slaney 1997; Lu, Zhang & Jiang 2002):
  low_energy_ratio  per 1 s window, share of frames below half the window's mean RMS
                    (pauses between syllables: high for speech, ~0 for sustained music)
  high_zcr_ratio    per 1 s window, share of frames whose zero-crossing rate exceeds
                    1.5x the window mean (voiced/unvoiced alternation)
  modulation_4hz    RMS of the frame-energy envelope band-passed to 2-8 Hz (the
                    syllable rate), divided by the envelope's mean (a modulation index)
speech_probability = sigmoid(2*(ler-0.15)/0.1 + 2*(hzcr-0.08)/0.05 + 2*(mod4-0.3)/0.15);
label "speech" at >= 0.5, otherwise "music" (meaning: not speech; noise lands here too),
and "silence" (no probability) when silence_ratio >= 0.9. The centres were set on
synthetic speech-like and music-like signals; calibrate on real data before relying on it.

Embedding ``reelsift.audio.librosa_features.v1`` (88 dims, L2-normalised):
  block     dims  content                                               share
  timbre    38    MFCC 1-19 mean, then std (MFCC 0 is loudness)          0.35
  harmony   24    chroma mean, then std                                  0.20
  texture   14    spectral contrast (7 bands) mean, then std             0.15
  rhythm     3    tempo/200, log1p(onset mean), log1p(onset std)         0.10
  loudness   4    (dBFS+60)/60, (peak+60)/60, silence_ratio, RMS-dB std/20 0.10
  voice      5    zcr mean*10, zcr std*10, low_energy_ratio, high_zcr_ratio,
                  modulation_4hz                                         0.10
The first three blocks are L2-normalised; the scalar blocks are the fixed scalings
above, divided by sqrt(their dims); every block is then scaled by sqrt(share).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel

from analyzers.media.asr import SpeechRecognizer, Transcriber
from analyzers.media.audio_decode import ANALYSIS_SAMPLE_RATE, DecodedAudio, decode_audio
from analyzers.media.limits import MediaLimits
from analyzers.media.schemas import AudioAnalysis, ModalityVector, SpeechMusicEstimate, Transcript
from core.contracts import ModelRef, NotAssessed
from core.errors import ModelLoadFailed, ModelNotAvailable
from core.registry import audio_embedders

if TYPE_CHECKING:
    from analyzers.model_registry import ModelRegistry

AUDIO_EMBEDDER_NAME = "reelsift.audio.librosa_features.v1"
AUDIO_EMBEDDING_DIM = 88
N_FFT = 1024
HOP = 512
SILENCE_DBFS = -50.0
BLOCK_SHARES = {
    "timbre": 0.35,
    "harmony": 0.20,
    "texture": 0.15,
    "rhythm": 0.10,
    "loudness": 0.10,
    "voice": 0.10,
}

TextAnalyzerFn = Callable[[str], Any]


def _db(value: float) -> float:
    return float(20.0 * np.log10(max(value, 1e-10)))


def _windows(values: np.ndarray, frames_per_window: int) -> list[np.ndarray]:
    if len(values) <= frames_per_window:
        return [values]
    return [
        values[i : i + frames_per_window]
        for i in range(0, len(values) - frames_per_window + 1, frames_per_window)
    ]


class AudioFeatures:
    """All frame-level features of one signal, computed once and shared."""

    def __init__(self, samples: np.ndarray, sample_rate: int) -> None:
        import librosa

        self.sample_rate = sample_rate
        y = samples
        # librosa pads short clips itself but warns; pad to one frame explicitly.
        if len(y) < N_FFT:
            y = np.pad(y, (0, N_FFT - len(y)))
        magnitude = np.abs(librosa.stft(y, n_fft=N_FFT, hop_length=HOP))
        power = magnitude**2
        log_mel = librosa.power_to_db(
            librosa.feature.melspectrogram(S=power, sr=sample_rate, n_mels=64)
        )
        self.mfcc = librosa.feature.mfcc(S=log_mel, n_mfcc=20)
        # tuning=0: estimating it runs a pitch tracker, slow and meaningless on noise.
        self.chroma = librosa.feature.chroma_stft(S=power, sr=sample_rate, tuning=0.0)
        self.contrast = librosa.feature.spectral_contrast(S=magnitude, sr=sample_rate)
        self.onset = librosa.onset.onset_strength(S=log_mel, sr=sample_rate)
        self.rms = librosa.feature.rms(y=y, frame_length=N_FFT, hop_length=HOP)[0]
        self.zcr = librosa.feature.zero_crossing_rate(y, frame_length=N_FFT, hop_length=HOP)[0]
        self.loudness_dbfs = _db(float(np.sqrt(np.mean(samples.astype(np.float64) ** 2))))
        self.peak_dbfs = _db(float(np.max(np.abs(samples))))
        rms_db = 20.0 * np.log10(np.maximum(self.rms, 1e-10))
        self.rms_db_std = float(rms_db.std())
        self.silence_ratio = float(np.mean(rms_db < SILENCE_DBFS))
        self.tempo_bpm = self._tempo()
        self.speech_music = self._speech_music()

    def _tempo(self) -> float | None:
        import librosa

        frames_per_second = self.sample_rate / HOP
        if self.silence_ratio >= 0.9 or len(self.onset) < 4 * frames_per_second:
            return None
        # A steady tone has a flat onset envelope; its "tempo" would be noise.
        if (
            float(self.onset.std()) < 0.1 * max(float(self.onset.mean()), 1e-6)
            or float(self.onset.max()) < 1e-3
        ):
            return None
        tempo = librosa.feature.tempo(
            onset_envelope=self.onset, sr=self.sample_rate, hop_length=HOP
        )
        return round(float(np.asarray(tempo).reshape(-1)[0]), 2)

    def _speech_music(self) -> SpeechMusicEstimate:
        per_window = max(1, round(self.sample_rate / HOP))  # 1 s
        low_energy = [
            float(np.mean(w < 0.5 * max(float(w.mean()), 1e-10)))
            for w in _windows(self.rms, per_window)
        ]
        high_zcr = [
            float(np.mean(w > 1.5 * max(float(w.mean()), 1e-10)))
            for w in _windows(self.zcr, per_window)
        ]
        modulation = self._modulation_index(2.0, 8.0)
        ler, hzcr = float(np.mean(low_energy)), float(np.mean(high_zcr))
        rounded = {
            "low_energy_ratio": round(ler, 4),
            "high_zcr_ratio": round(hzcr, 4),
            "modulation_4hz": round(modulation, 4),
        }
        if self.silence_ratio >= 0.9:
            return SpeechMusicEstimate(label="silence", speech_probability=None, **rounded)
        logit = (
            2.0 * (ler - 0.15) / 0.1 + 2.0 * (hzcr - 0.08) / 0.05 + 2.0 * (modulation - 0.3) / 0.15
        )
        probability = float(1.0 / (1.0 + np.exp(-np.clip(logit, -30, 30))))
        return SpeechMusicEstimate(
            label="speech" if probability >= 0.5 else "music",
            speech_probability=round(probability, 4),
            **rounded,
        )

    def _modulation_index(self, low_hz: float, high_hz: float) -> float:
        """RMS of the envelope's ``low_hz``-``high_hz`` band over the envelope's mean."""
        mean = float(self.rms.mean())
        if mean < 1e-8 or len(self.rms) < 8:
            return 0.0
        spectrum = np.fft.rfft(self.rms - mean)
        freqs = np.fft.rfftfreq(len(self.rms), d=HOP / self.sample_rate)
        spectrum[(freqs < low_hz) | (freqs > high_hz)] = 0.0
        band = np.fft.irfft(spectrum, n=len(self.rms))
        return float(band.std() / mean)

    def embedding(self) -> np.ndarray:
        def unit(block: np.ndarray, share: float) -> np.ndarray:
            norm = float(np.linalg.norm(block))
            return block / norm * np.sqrt(share) if norm > 1e-12 else np.zeros_like(block)

        def scalars(values: list[float], share: float) -> np.ndarray:
            block = np.asarray(values, dtype=np.float64)
            return block / np.sqrt(len(block)) * np.sqrt(share)

        sm = self.speech_music
        mfcc = self.mfcc[1:]
        vector = np.concatenate(
            [
                unit(np.concatenate([mfcc.mean(axis=1), mfcc.std(axis=1)]), BLOCK_SHARES["timbre"]),
                unit(
                    np.concatenate([self.chroma.mean(axis=1), self.chroma.std(axis=1)]),
                    BLOCK_SHARES["harmony"],
                ),
                unit(
                    np.concatenate([self.contrast.mean(axis=1), self.contrast.std(axis=1)]),
                    BLOCK_SHARES["texture"],
                ),
                scalars(
                    [
                        (self.tempo_bpm or 0.0) / 200.0,
                        float(np.log1p(self.onset.mean())),
                        float(np.log1p(self.onset.std())),
                    ],
                    BLOCK_SHARES["rhythm"],
                ),
                scalars(
                    [
                        (max(self.loudness_dbfs, -60.0) + 60.0) / 60.0,
                        (max(self.peak_dbfs, -60.0) + 60.0) / 60.0,
                        self.silence_ratio,
                        self.rms_db_std / 20.0,
                    ],
                    BLOCK_SHARES["loudness"],
                ),
                scalars(
                    [
                        float(self.zcr.mean()) * 10.0,
                        float(self.zcr.std()) * 10.0,
                        sm.low_energy_ratio,
                        sm.high_zcr_ratio,
                        sm.modulation_4hz,
                    ],
                    BLOCK_SHARES["voice"],
                ),
            ]
        )
        norm = float(np.linalg.norm(vector))
        return (vector / max(norm, 1e-12)).astype(np.float32)


class LibrosaAudioEmbedder:
    """The default audio embedder: the feature vector documented in this module."""

    dim = AUDIO_EMBEDDING_DIM

    def __init__(self) -> None:
        self.model = ModelRef(name=AUDIO_EMBEDDER_NAME, version="1", source="builtin")

    def encode(self, samples: np.ndarray, sample_rate: int) -> np.ndarray:
        return AudioFeatures(samples, sample_rate).embedding()


@audio_embedders.register(AUDIO_EMBEDDER_NAME)
def make_librosa_embedder(
    registry: ModelRegistry | None = None,
    cache_dir: Path | str | None = None,
    *,
    threads: int | None = None,
    device: str = "cpu",
) -> LibrosaAudioEmbedder:
    """The registry's signature (core.registry); librosa features need no model files."""
    return LibrosaAudioEmbedder()


class AudioSignal(BaseModel):
    """What the features say about one signal: the part of an audio analysis that needs
    librosa (computed here, or by the media model service for the API workers)."""

    loudness_dbfs: float
    peak_dbfs: float
    silence_ratio: float
    tempo_bpm: float | None
    speech_music: SpeechMusicEstimate
    embedding: list[float]


def audio_signal(samples: np.ndarray, sample_rate: int) -> AudioSignal:
    features = AudioFeatures(samples, sample_rate)
    return AudioSignal(
        loudness_dbfs=features.loudness_dbfs, peak_dbfs=features.peak_dbfs,
        silence_ratio=features.silence_ratio, tempo_bpm=features.tempo_bpm,
        speech_music=features.speech_music, embedding=features.embedding().tolist(),
    )


def audio_signals(clips: Sequence[np.ndarray], sample_rate: int) -> list[AudioSignal]:
    """``audio_signal`` of each clip, all at ``sample_rate``: a model service's batch.
    One clip after another: librosa's features have no batch axis for signals of
    different lengths, so a batch saves calls and queueing, not arithmetic."""
    return [audio_signal(clip, sample_rate) for clip in clips]


# (samples, sample_rate) -> AudioSignal: ``audio_signal`` or a model service's client.
SignalAnalyzer = Callable[[np.ndarray, int], AudioSignal]


class AudioAnalyzer:
    """``AudioAnalyzer().analyze(data) -> AudioAnalysis``.

    ``speech_recognizer`` (optional) transcribes audio whose speech probability reaches
    ``asr_min_speech_probability``; the transcript is handed to ``text_analyzer`` (e.g. the
    text analyzer's ``analyze``) and its result is kept in ``transcript.analysis``.
    """

    def __init__(
        self,
        speech_recognizer: Transcriber | None = None,
        text_analyzer: TextAnalyzerFn | None = None,
        limits: MediaLimits | None = None,
        asr_min_speech_probability: float = 0.3,
        asr_unavailable_reason: str | None = None,
        signal: SignalAnalyzer = audio_signal,
    ) -> None:
        self.embedder = LibrosaAudioEmbedder()
        self.signal = signal
        self.speech_recognizer = speech_recognizer
        self.text_analyzer = text_analyzer
        self.limits = limits or MediaLimits()
        self.asr_min_speech_probability = asr_min_speech_probability
        self.asr_unavailable_reason = asr_unavailable_reason or "no speech recognizer configured"

    @classmethod
    def with_optional_recognizer(
        cls, load: Callable[[], SpeechRecognizer], **kwargs: Any
    ) -> AudioAnalyzer:
        """Build with ``load()``'s recognizer; a missing model becomes a not-assessed reason."""
        try:
            return cls(speech_recognizer=load(), **kwargs)
        except (ModelNotAvailable, ModelLoadFailed) as exc:
            return cls(speech_recognizer=None, asr_unavailable_reason=exc.message, **kwargs)

    def analyze(self, data: bytes) -> AudioAnalysis:
        decoded = decode_audio(data, self.limits, ANALYSIS_SAMPLE_RATE)
        return self.analyze_decoded(decoded)

    def analyze_decoded(self, decoded: DecodedAudio) -> AudioAnalysis:
        self.limits.check_audio_seconds(decoded.duration_s)
        features = self.signal(decoded.samples, decoded.sample_rate)
        not_assessed: list[NotAssessed] = []
        models = {"audio_embedding": self.embedder.model.id}
        transcript = None
        probability = features.speech_music.speech_probability
        if self.speech_recognizer is None:
            not_assessed.append(
                NotAssessed(output="transcript", reason=self.asr_unavailable_reason)
            )
        elif probability is None or probability < self.asr_min_speech_probability:
            not_assessed.append(
                NotAssessed(
                    output="transcript",
                    reason=f"audio judged {features.speech_music.label} "
                    f"(speech probability {probability}); not transcribed",
                )
            )
        else:
            text = self.speech_recognizer.transcribe(decoded.samples, decoded.sample_rate)
            models["speech_recognition"] = self.speech_recognizer.model.id
            analysis = self.text_analyzer(text) if self.text_analyzer and text.strip() else None
            transcript = Transcript(
                text=text, model=self.speech_recognizer.model.id, analysis=analysis
            )
        return AudioAnalysis(
            media_type=decoded.media_type.value,
            duration_ms=round(decoded.duration_s * 1000),
            sample_rate=decoded.sample_rate,
            source_sample_rate=decoded.source_sample_rate,
            source_channels=decoded.source_channels,
            loudness_dbfs=round(features.loudness_dbfs, 3),
            peak_dbfs=round(features.peak_dbfs, 3),
            silence_ratio=round(features.silence_ratio, 4),
            tempo_bpm=features.tempo_bpm,
            speech_music=features.speech_music,
            embedding=ModalityVector.from_array(
                "audio", self.embedder.model.id, np.asarray(features.embedding, np.float32)
            ),
            transcript=transcript,
            not_assessed=not_assessed,
            models=models,
        )
