"""Builds the running system from ``Settings``: the one place components are assembled."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from analyzers.base import TextEmbedder
from analyzers.entities import EntityPipeline
from analyzers.language import LanguageIdentifier
from analyzers.model_registry import ModelRegistry
from analyzers.text import TextAnalyzer
from core.contracts import ModelRef
from core.errors import ModelLoadFailed, ModelNotAvailable
from core.registry import resolve, text_embedders
from core.storage.blobs import BlobStore
from core.storage.db import make_engine, make_session_factory, upgrade
from core.storage.items import ItemStore
from serving.ingest import IngestService, Router, TextLimits, hold_for_review
from serving.settings import Settings

log = logging.getLogger(__name__)


def model_registry(settings: Settings) -> ModelRegistry:
    return ModelRegistry(explicit_paths=settings.model_paths, hf_cache_dir=settings.hf_cache_dir)


def build_text_embedder(settings: Settings) -> tuple[TextEmbedder | None, str | None]:
    """The configured embedder, or None and the reason it is unavailable."""
    factory = resolve(text_embedders, settings.text_embedder)
    try:
        embedder = factory(
            model_registry(settings), settings.cache_dir, threads=settings.inference_threads
        )
    except (ModelNotAvailable, ModelLoadFailed) as exc:
        log.error("text embedding unavailable: %s", exc)
        return None, str(exc)
    return embedder, None


class BatchedTextEmbedder:
    """A ``TextEmbedder`` backed by the TextEmbedding BentoML service.

    Calls from concurrent requests are merged by BentoML's adaptive batching on the
    other side, so the model sees full batches even when each request sends one text.
    """

    def __init__(self, client: Any, model: ModelRef, dim: int) -> None:
        self.client = client
        self.model = model
        self.dim = dim

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.asarray(self.client.encode(texts=list(texts)), dtype=np.float32)


@dataclass
class Components:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    items: ItemStore
    blobs: BlobStore
    text_analyzer: TextAnalyzer
    ingest: IngestService


def build_components(
    settings: Settings,
    *,
    embedder: TextEmbedder | None = None,
    embedder_unavailable_reason: str | None = None,
    router: Router | None = None,
    migrate: bool = True,
) -> Components:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.db_url)
    if migrate:
        upgrade(engine)
    sessions = make_session_factory(engine)
    items = ItemStore(sessions)
    analyzer = TextAnalyzer(
        embedder,
        EntityPipeline(settings.spacy_pipeline),
        LanguageIdentifier(),
        embedder_unavailable_reason=embedder_unavailable_reason,
    )
    limits = TextLimits(
        max_text_chars=settings.max_text_chars,
        max_title_chars=settings.max_title_chars,
        max_tags=settings.max_tags,
    )
    ingest = IngestService(items, analyzer, limits, router or hold_for_review)
    return Components(
        settings=settings, engine=engine, sessions=sessions, items=items,
        blobs=BlobStore(settings.media_dir), text_analyzer=analyzer, ingest=ingest,
    )
