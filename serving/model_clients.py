"""Clients of the model services (text analysis, visual embedding) as the pipeline sees them.

The API workers call the model services over BentoML's internal HTTP client. Two
things made those calls fail under ordinary concurrency (16 upload clients: 1 request in
6 answered 500, every embedding request logged 200 on the model side):

- BentoML's client replaced its aiohttp session every 100 requests and closed the old
  one while other requests were still on it (``ServerDisconnectedError``, "Cannot write
  to closing transport"). The services now declare ``runner_connection`` limits that
  never recycle a session in use (``MODEL_SERVICE_CONNECTION`` in ``serving/service.py``).
- A pooled keep-alive connection can still be closed by the server just as it is reused.
  Embedding is idempotent, so every call retries connection-level faults with a short,
  bounded backoff; when the service is still unavailable it raises ``ServiceUnavailable``
  (503 + ``Retry-After``) and the item stays retryable instead of failing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np

from analyzers.fusion import ItemFuser
from analyzers.media.asr import join_transcript, speech_chunks
from analyzers.media.audio import AudioSignal
from analyzers.media.audio_decode import ANALYSIS_SAMPLE_RATE
from analyzers.media.faces import face_boxes, face_input
from analyzers.media.nudity import nudity_detections, nudity_input
from analyzers.media.schemas import Box, Detection
from core.contracts import ItemAnalysis, ModelRef, TextAnalysis
from core.errors import ServiceUnavailable
from ingest.analysis import Vectors, fuse_text_vectors, read_wire_documents, wire_documents

log = logging.getLogger(__name__)

T = TypeVar("T")

# Seconds to wait before each retry: about 1.5 s in all, well under a request's timeout.
RETRY_DELAYS_S = (0.05, 0.2, 0.5, 0.8)
# No retry starts after this long: a call that timed out has already waited its timeout.
RETRY_BUDGET_S = 20.0
# Statuses from the model service that mean "not now" rather than "not this input".
TRANSIENT_STATUSES = frozenset({429, 502, 503, 504})


def is_transient(exc: BaseException) -> bool:
    """A fault worth retrying: the connection, a timeout, or a service saying 'later'."""
    import aiohttp

    if isinstance(exc, aiohttp.ClientConnectionError | asyncio.TimeoutError | TimeoutError):
        return True
    if isinstance(exc, ConnectionError):
        return True
    status = getattr(exc, "error_code", None)
    return status is not None and int(status) in TRANSIENT_STATUSES


def call_model_service(
    call: Callable[[], T], service: str, *,
    delays_s: Sequence[float] = RETRY_DELAYS_S, budget_s: float = RETRY_BUDGET_S,
    sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
) -> T:
    """``call()`` with bounded retries of transient faults (at most ``len(delays_s)``, none
    started after ``budget_s``); ``ServiceUnavailable`` when they do not pass. Any other
    error (the service rejected this input) is raised as is."""
    started = clock()
    for attempt in range(len(delays_s) + 1):
        try:
            return call()
        except Exception as exc:
            if not is_transient(exc):
                raise
            out_of_time = clock() - started > budget_s
            if attempt == len(delays_s) or out_of_time:
                raise ServiceUnavailable(
                    f"the {service} service did not answer after {attempt + 1} attempts "
                    f"({type(exc).__name__}: {exc}); nothing was lost, retry the request",
                    service=service,
                ) from exc
            log.warning("%s call failed (%s: %s), retry %d of %d", service,
                        type(exc).__name__, exc, attempt + 1, len(delays_s))
            sleep(delays_s[attempt])
    raise AssertionError("unreachable")


class TextAnalysisClient:
    """A ``TextDocumentAnalyzer`` backed by the TextAnalysis BentoML service, which holds
    every text model (encoder, spaCy, language id, keywords, risk and taxonomy heads).

    Documents of concurrent requests meet in one model batch there; chunks no larger
    than a batch keep one bulk caller from starving the others. 32: spaCy and the
    taxonomy's chunked reading run in the call, not only the encoder, and 32 documents of
    the longest allowed text (20,000 characters) took 51 s in one call on a loaded 2-core
    machine with one inference thread, inside the 120 s ``REELSIFT_MODEL_CALL_TIMEOUT_S``
    (64 would come near it). The fused vector is added
    here (``fuse_text_vectors``, as the in-process path does): its model id names the
    visual model, which the text service does not load.
    """

    def __init__(self, client: Any, fuser: ItemFuser | None, chunk: int = 32) -> None:
        self.client = client
        self.fuser = fuser
        self.chunk = chunk

    def analyze_documents(
        self, titles: Sequence[str], documents: Sequence[str], bodies: Sequence[str] | None = None
    ) -> tuple[list[ItemAnalysis], list[Vectors]]:
        wire = wire_documents(titles, documents, bodies)
        analyses: list[ItemAnalysis] = []
        vectors: list[Vectors] = []
        for i in range(0, len(wire), self.chunk):
            chunk = wire[i : i + self.chunk]
            answer = call_model_service(
                lambda chunk=chunk: self.client.analyze(documents=chunk),  # type: ignore[misc]
                "text-analysis",
            )
            chunk_analyses, chunk_vectors = read_wire_documents(answer)
            analyses += chunk_analyses
            vectors += chunk_vectors
        if self.fuser is not None:
            fuse_text_vectors(self.fuser, analyses, vectors)
        return analyses, vectors

    def analyze_transcript(self, text: str) -> TextAnalysis:
        answer = call_model_service(
            lambda: self.client.analyze_transcript(text=text), "text-analysis")
        return TextAnalysis.model_validate(answer)


class BatchedVisualEmbedder:
    """A ``VisualEmbedder`` backed by the VisualEmbedding BentoML service.

    Images of concurrent requests and jobs (photos, video keyframes) meet in one batch
    there; each image travels at analysis size (at most 640 px a side).
    """

    def __init__(self, client: Any, model: ModelRef, dim: int) -> None:
        self.client = client
        self.model = model
        self.dim = dim

    def encode_images(self, images: Sequence[np.ndarray]) -> np.ndarray:
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        arrays = [np.ascontiguousarray(i) for i in images]
        vectors = call_model_service(
            lambda: self.client.encode_images(images=arrays), "visual-embedding"
        )
        return np.asarray(vectors, dtype=np.float32)


class NudityClient:
    """A ``NudityDetector`` whose network runs in the MediaModels service: the square
    input is made here and the detections read from the raw output here, by the
    functions ``NudeNetDetector.detect`` uses, so both give the same detections."""

    def __init__(self, client: Any, model: ModelRef) -> None:
        self.client = client
        self.model = model

    def detect(self, rgb: np.ndarray, scale: float = 1.0) -> list[Detection]:
        height, width = rgb.shape[:2]
        square = nudity_input(rgb)
        output = call_model_service(
            lambda: self.client.detect_nudity(images=[square]), "media-models"
        )
        return nudity_detections(np.asarray(output)[0], width, height, scale)


class FaceClient:
    """A ``FaceDetector`` whose cascade runs in the MediaModels service (on the small
    copy it reads, made here)."""

    def __init__(self, client: Any, model: ModelRef) -> None:
        self.client = client
        self.model = model

    def detect(self, rgb: np.ndarray, scale: float = 1.0) -> list[Box]:
        small = face_input(rgb)
        [found] = call_model_service(
            lambda: self.client.detect_faces(images=[small]), "media-models"
        )
        boxes = np.asarray(found, dtype=np.int64).reshape(-1, 4)
        return face_boxes(boxes, rgb.shape[1], small.shape[1], scale)


class SpeechClient:
    """A ``Transcriber`` whose model runs in the MediaModels service: audio is resampled
    to the model's rate and cut into its 30 s windows here, and sent a few windows at a
    time (windows of concurrent uploads meet in one batch there)."""

    def __init__(self, client: Any, model: ModelRef, sample_rate: int, chunk: int = 4) -> None:
        self.client = client
        self.model = model
        self.sample_rate = sample_rate
        self.chunk = chunk

    def transcribe(self, samples: np.ndarray, sample_rate: int) -> str:
        windows = speech_chunks(samples, sample_rate, self.sample_rate)
        texts: list[str] = []
        for i in range(0, len(windows), self.chunk):
            part = windows[i : i + self.chunk]
            texts += call_model_service(
                lambda part=part: self.client.transcribe(chunks=part),  # type: ignore[misc]
                "media-models",
            )
        return join_transcript(texts)


class AudioSignalClient:
    """A ``SignalAnalyzer`` computed by the MediaModels service from the decoded samples
    (librosa, with numba and LLVM, is 210 MB that the API workers need not hold).

    Audio at ``ANALYSIS_SAMPLE_RATE`` (every upload and video track is decoded to it)
    goes to the batchable ``audio_signals``, where concurrent files from every API worker
    meet in one batch; any other rate to ``audio_signal``, one file a call."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def __call__(self, samples: np.ndarray, sample_rate: int) -> AudioSignal:
        clip = np.ascontiguousarray(samples, dtype=np.float32)
        if sample_rate == ANALYSIS_SAMPLE_RATE:
            [answer] = call_model_service(
                lambda: self.client.audio_signals(clips=[clip]), "media-models"
            )
        else:
            answer = call_model_service(
                lambda: self.client.audio_signal(samples=clip, sample_rate=sample_rate),
                "media-models",
            )
        return AudioSignal.model_validate(answer)
