"""Speech recognition with a transformers model from a local directory.

Two families, told apart by the model's config: encoder-decoder models (Whisper) are
loaded with ``AutoModelForSpeechSeq2Seq`` and decoded with ``generate``; CTC models
(wav2vec2, HuBERT, ...) with ``AutoModelForCTC`` and greedy argmax decoding. Audio is
resampled to the processor's rate and cut into 30 s chunks (Whisper's window). The
directory is resolved offline through ``analyzers.model_registry``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from analyzers.inference_device import torch_device
from analyzers.media.audio_decode import resample
from analyzers.model_registry import ModelRegistry, ModelSpec
from core.contracts import ModelRef
from core.errors import ModelLoadFailed

DEFAULT_ASR_SPEC = ModelSpec(
    role="speech_recognition", name="openai/whisper-tiny", hf_repo="openai/whisper-tiny"
)
CHUNK_SECONDS = 30.0


class Transcriber(Protocol):
    """``SpeechRecognizer`` here, or its client where the model runs in a model service."""

    model: ModelRef

    def transcribe(self, samples: np.ndarray, sample_rate: int) -> str: ...


class SpeechRecognizer:
    def __init__(
        self, model_dir: Path, ref: ModelRef, max_new_tokens: int = 128, threads: int = 0,
        device: str = "cpu",
    ) -> None:
        from transformers import (
            AutoConfig,
            AutoModelForCTC,
            AutoModelForSpeechSeq2Seq,
            AutoProcessor,
        )

        self.threads = threads
        self.device = torch_device(device)
        try:
            config = AutoConfig.from_pretrained(str(model_dir))
            self.seq2seq = bool(getattr(config, "is_encoder_decoder", False))
            family = AutoModelForSpeechSeq2Seq if self.seq2seq else AutoModelForCTC
            self.network: Any = family.from_pretrained(str(model_dir)).eval().to(self.device)
            self.processor: Any = AutoProcessor.from_pretrained(str(model_dir))
        except Exception as exc:
            raise ModelLoadFailed(
                f"speech recognition model in {model_dir} failed to load: {exc}"
            ) from exc
        extractor = getattr(self.processor, "feature_extractor", self.processor)
        self.sample_rate = int(getattr(extractor, "sampling_rate", 16_000))
        self.max_new_tokens = max_new_tokens
        self.model = ModelRef(name=ref.name, version=ref.version, source=ref.source)

    @classmethod
    def from_registry(
        cls, registry: ModelRegistry, spec: ModelSpec = DEFAULT_ASR_SPEC, threads: int = 0,
        device: str = "cpu",
    ) -> SpeechRecognizer:
        resolved = registry.resolve(spec)
        return cls(resolved.path, resolved.ref, threads=threads, device=device)

    def transcribe(self, samples: np.ndarray, sample_rate: int) -> str:
        chunks = speech_chunks(samples, sample_rate, self.sample_rate)
        return join_transcript(self.transcribe_chunks(chunks))

    def transcribe_chunks(self, chunks: Sequence[np.ndarray]) -> list[str]:
        """``speech_chunks`` -> their texts: the only step that needs the model (the media
        model service runs it)."""
        return [self._transcribe_chunk(np.asarray(chunk, dtype=np.float32)) for chunk in chunks]

    def _transcribe_chunk(self, chunk: np.ndarray) -> str:
        import torch

        previous_threads = torch.get_num_threads()
        if self.threads:
            torch.set_num_threads(self.threads)
        try:
            inputs = self.processor(chunk, sampling_rate=self.sample_rate,
                                    return_tensors="pt").to(self.device)
            with torch.inference_mode():
                if self.seq2seq:
                    ids = self.network.generate(
                        inputs["input_features"], max_new_tokens=self.max_new_tokens
                    )
                else:
                    logits = self.network(inputs["input_values"]).logits
                    ids = logits.argmax(dim=-1)
            return str(self.processor.batch_decode(ids, skip_special_tokens=True)[0])
        finally:
            if self.threads:
                torch.set_num_threads(previous_threads)


def speech_chunks(samples: np.ndarray, sample_rate: int, model_rate: int) -> list[np.ndarray]:
    """Audio resampled to the model's rate and cut into ``CHUNK_SECONDS`` windows."""
    audio = resample(np.asarray(samples, dtype=np.float32), sample_rate, model_rate)
    step = int(CHUNK_SECONDS * model_rate)
    return [audio[i : i + step] for i in range(0, len(audio), step)]


def join_transcript(texts: Sequence[str]) -> str:
    return " ".join(t.strip() for t in texts if t.strip())
