"""The reelsift HTTP service: read this file as the table of endpoints.

Two BentoML services: ``TextEmbedding`` holds the embedding model and batches requests
adaptively; ``Reelsift`` serves the JSON API (a FastAPI app mounted at ``/v1``) and
calls the embedder through BentoML. Each route is one line over the service layer.
BentoML itself adds ``/healthz``, ``/livez``, ``/readyz`` and ``/metrics`` (Prometheus).

    bentoml serve serving.service:Reelsift      # or: reelsift serve
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import anyio.to_thread
import bentoml
import numpy as np
from fastapi import FastAPI, Query, Response

from core.contracts import ModelRef
from core.errors import InvalidInput, ReelsiftError
from serving.errors import install_error_handlers, validation_error_body
from serving.schemas import BatchIn, BatchOut, BatchResult, ItemOut, TextItemIn
from serving.settings import get_settings
from serving.wiring import (
    BatchedTextEmbedder,
    Components,
    build_components,
    build_text_embedder,
)

log = logging.getLogger(__name__)
settings = get_settings()



@asynccontextmanager
async def _warm_up(_app: FastAPI) -> AsyncIterator[None]:
    # Mounted apps start after BentoML has connected the dependency clients, so this is
    # the first moment the embedding service can be asked what it serves.
    service = bentoml.get_current_service()
    if service is not None:
        # anyio's worker thread, as for sync routes: BentoML's sync client needs its token.
        await anyio.to_thread.run_sync(lambda: service.components)
    yield


api = FastAPI(
    title="reelsift", version="0.1.0", summary="content analysis, moderation, feed",
    lifespan=_warm_up,
)
install_error_handlers(api)


@bentoml.service(name="reelsift-text-embedding", traffic={"timeout": 120})
class TextEmbedding:
    """all-MiniLM-L6-v2 through onnxruntime; concurrent calls are merged into batches."""

    def __init__(self) -> None:
        self.embedder, self.unavailable_reason = build_text_embedder(settings)

    @bentoml.api
    def describe(self) -> dict[str, Any]:
        if self.embedder is None:
            return {"available": False, "reason": self.unavailable_reason}
        return {"available": True, "model": self.embedder.model.model_dump(), "dim": self.embedder.dim}

    @bentoml.api(
        batchable=True,
        max_batch_size=settings.embed_max_batch_size,
        max_latency_ms=settings.embed_max_latency_ms,
    )
    def encode(self, texts: list[str]) -> np.ndarray:
        if self.embedder is None:
            raise RuntimeError(self.unavailable_reason)
        return self.embedder.encode(texts)


def _describe_with_retry(client: Any, attempts: int = 30) -> dict[str, Any]:
    for attempt in range(attempts):
        try:
            return dict(client.describe())
        except Exception:  # the dependency may still be starting
            if attempt == attempts - 1:
                raise
            time.sleep(1.0)
    raise AssertionError("unreachable")


@bentoml.service(name="reelsift", traffic={"timeout": 300})
@bentoml.asgi_app(api, path="/v1")
class Reelsift:
    text_embedding = bentoml.depends(TextEmbedding)

    def __init__(self) -> None:
        self._components: Components | None = None
        self._lock = threading.Lock()

    @property
    def components(self) -> Components:
        # Built on first use: BentoML connects dependency clients only once the server
        # runs, after __init__.
        with self._lock:
            if self._components is None:
                self._components = self._build()
            return self._components

    def _build(self) -> Components:
        info = _describe_with_retry(self.text_embedding)
        embedder = (
            BatchedTextEmbedder(self.text_embedding, ModelRef(**info["model"]), int(info["dim"]))
            if info.get("available")
            else None
        )
        components = build_components(
            settings, embedder=embedder, embedder_unavailable_reason=info.get("reason")
        )
        resumed = components.ingest.resume_unfinished()
        if resumed:
            log.info("finished %d items left unanalyzed by an earlier run", resumed)
        return components

    # -- items ---------------------------------------------------------------------------
    @api.post("/items", status_code=201, response_model=ItemOut)
    def create_item(self, item: TextItemIn, response: Response) -> ItemOut:
        [(out, created)] = self.components.ingest.submit_text_items([item])
        if not created:
            response.status_code = 200  # same id, same content: idempotent replay
        return out

    @api.post("/items/batch", response_model=BatchOut)
    def create_items(self, batch: BatchIn) -> BatchOut:
        if len(batch.items) > settings.max_batch_items:
            raise InvalidInput(
                f"{len(batch.items)} items in one batch; the limit is {settings.max_batch_items}"
            )
        return BatchOut(results=self._submit_each(batch.items))

    @api.get("/items/{item_id}", response_model=ItemOut)
    def get_item(
        self, item_id: str, include_vectors: Annotated[bool, Query()] = False
    ) -> ItemOut:
        return self.components.ingest.get_item(item_id, include_vectors=include_vectors)

    # -- helpers -----------------------------------------------------------------------
    def _submit_each(self, raw_items: list[dict[str, Any]]) -> list[BatchResult]:
        from pydantic import ValidationError

        results: dict[int, BatchResult] = {}
        valid: list[tuple[int, TextItemIn]] = []
        for index, raw in enumerate(raw_items):
            try:
                valid.append((index, TextItemIn.model_validate(raw)))
            except ValidationError as exc:
                status, body = validation_error_body(list(exc.errors()))  # type: ignore[arg-type]
                results[index] = BatchResult(index=index, status=status, error=body)
        ingest = self.components.ingest
        try:
            submitted = ingest.submit_text_items([item for _, item in valid])
            for (index, _), (out, created) in zip(valid, submitted, strict=True):
                results[index] = BatchResult(index=index, status=201 if created else 200, item=out)
        except ReelsiftError:
            # One bad item must not sink the others: fall back to one at a time.
            for index, item in valid:
                try:
                    [(out, created)] = ingest.submit_text_items([item])
                    results[index] = BatchResult(
                        index=index, status=201 if created else 200, item=out
                    )
                except ReelsiftError as exc:
                    results[index] = BatchResult(index=index, status=exc.status, error=exc.to_dict())
        return [results[i] for i in sorted(results)]
