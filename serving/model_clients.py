"""Clients of the model services (text and visual embedding) as the analyzers see them.

The API workers call the embedding services over BentoML's internal HTTP client. Two
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

from analyzers.base import TokenEncoding
from core.contracts import ModelRef
from core.errors import ServiceUnavailable

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


class BatchedTextEmbedder:
    """A ``TextEmbedder`` backed by the TextEmbedding BentoML service.

    Calls from concurrent requests are merged by BentoML's adaptive batching on the
    other side, so the model sees full batches even when each request sends one text.
    """

    def __init__(self, client: Any, model: ModelRef, dim: int, chunk: int = 64) -> None:
        self.client = client
        self.model = model
        self.dim = dim
        self.chunk = chunk

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        parts = self._call_in_chunks(self.client.encode, texts)
        return np.concatenate([np.asarray(p, dtype=np.float32) for p in parts])

    def _call_in_chunks(self, endpoint: Callable[..., Any], texts: Sequence[str]) -> list[Any]:
        """``endpoint(texts=chunk)`` per chunk, each with retries. Chunks no larger than a
        batch keep one bulk caller from starving the others."""
        answers = []
        for i in range(0, len(texts), self.chunk):
            chunk = list(texts[i : i + self.chunk])
            answers.append(call_model_service(
                lambda chunk=chunk: endpoint(texts=chunk), "text-embedding"  # type: ignore[misc]
            ))
        return answers


class BatchedTokenTextEmbedder(BatchedTextEmbedder):
    """A ``TokenTextEmbedder`` over the service: the text vectors and the word-piece
    vectors of the same encoder pass (keywords pool their candidates from them instead
    of embedding each candidate phrase again)."""

    def encode_with_tokens(self, texts: Sequence[str]) -> TokenEncoding:
        vectors: list[np.ndarray] = []
        token_vectors: list[np.ndarray] = []
        offsets: list[np.ndarray] = []
        for answer in self._call_in_chunks(self.client.encode_with_tokens, texts):
            for entry in answer:
                vectors.append(np.asarray(entry["vector"], dtype=np.float32))
                token_vectors.append(np.asarray(entry["tokens"], dtype=np.float32))
                offsets.append(np.asarray(entry["offsets"], dtype=np.int64))
        matrix = np.stack(vectors) if vectors else np.zeros((0, self.dim), dtype=np.float32)
        return TokenEncoding(matrix, token_vectors, offsets)


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
