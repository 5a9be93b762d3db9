"""Text embeddings of training sets cached on disk, keyed by data sha256 and model id.

Embedding ~50k texts with MiniLM on a couple of CPU cores takes minutes; retraining
(new seed, new features) should not pay that again. The key holds the exact file
content hash and the embedder's ``ModelRef.id``, so a changed file or a swapped model
never reuses stale vectors.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from analyzers.base import TextEmbedder
from core.storage.files import atomic_path

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CACHE_DIR = REPO_ROOT / "var" / "cache" / "text_risk_embeddings"


def _cache_file(cache_dir: Path, data_key: str, model_id: str) -> Path:
    safe_model = re.sub(r"[^A-Za-z0-9._-]+", "_", model_id)
    safe_key = re.sub(r"[^A-Za-z0-9._-]+", "_", data_key)
    return cache_dir / f"{safe_key}--{safe_model}.npy"


def cached_embeddings(
    embedder: TextEmbedder,
    texts: Sequence[str],
    data_key: str,
    cache_dir: Path | None = DEFAULT_CACHE_DIR,
    batch_size: int = 2048,
) -> np.ndarray:
    """Embeddings of ``texts`` from the cache, or computed by ``embedder`` and stored.

    ``cache_dir=None`` disables caching (tests on tiny samples).
    """
    path = _cache_file(cache_dir, data_key, embedder.model.id) if cache_dir else None
    if path is not None and path.exists():
        vectors = np.load(path)
        if vectors.shape == (len(texts), embedder.dim):
            return np.asarray(vectors, dtype=np.float32)
        log.warning("ignoring cached embeddings %s of shape %s", path, vectors.shape)
    parts = [
        np.asarray(embedder.encode(texts[start : start + batch_size]), dtype=np.float32)
        for start in range(0, len(texts), batch_size)
    ]
    vectors = np.concatenate(parts) if parts else np.zeros((0, embedder.dim), np.float32)
    if path is not None:
        # A killed run never leaves a torn file.
        with atomic_path(path) as tmp, tmp.open("wb") as handle:
            np.save(handle, vectors)
    return vectors
