"""Document vectors for classification: long texts embedded by chunks and pooled.

The sentence encoder reads about 256 word pieces (MiniLM truncates the rest), so a news
article is mostly unread in one pass. Here a document is split into its title (the first
line, when it is short and followed by more text) and a body cut into chunks of
``words_per_chunk`` words (about 200 word pieces of English, under the encoder's limit),
at most ``max_chunks`` of them. Each chunk goes through the embedder's public ``encode``;
the body vector is the word-count-weighted mean of its chunk vectors, and the document
vector is ``title_weight`` × title + (1 − ``title_weight``) × body, L2-normalised. A text
that fits in one chunk and has no title is embedded exactly as ``encode`` would embed it,
so short posts get the same vector the text analyzer already made.

``VectorCache`` keeps chunk vectors on disk (SQLite, one file per model id) so training
and evaluation over thousands of dev rows embed each chunk once.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from analyzers.base import TextEmbedder, l2_normalise
from core.errors import InvalidConfig

MAX_TITLE_WORDS = 25


@dataclass(frozen=True)
class ChunkSettings:
    words_per_chunk: int = 150
    max_chunks: int = 4
    title_weight: float = 0.3

    def __post_init__(self) -> None:
        if self.words_per_chunk < 8:
            raise InvalidConfig(f"words_per_chunk must be at least 8, got {self.words_per_chunk}")
        if self.max_chunks < 1:
            raise InvalidConfig(f"max_chunks must be at least 1, got {self.max_chunks}")
        if not 0.0 <= self.title_weight < 1.0:
            raise InvalidConfig(f"title_weight must be in [0, 1), got {self.title_weight}")


def split_title(text: str) -> tuple[str, str]:
    """``(title, body)``: the first line is a title when it is short and more text follows."""
    stripped = text.strip()
    head, sep, rest = stripped.partition("\n")
    if sep and rest.strip() and 0 < len(head.split()) <= MAX_TITLE_WORDS:
        return head.strip(), rest.strip()
    return "", stripped


def chunk_words(body: str, words_per_chunk: int, max_chunks: int) -> list[str]:
    """The body's first ``max_chunks`` chunks of ``words_per_chunk`` words; a short tail
    (under a quarter chunk) joins the chunk before it rather than standing alone."""
    words = body.split()
    if not words:
        return []
    chunks = [words[i : i + words_per_chunk] for i in range(0, len(words), words_per_chunk)]
    if len(chunks) > 1 and len(chunks[-1]) < words_per_chunk // 4:
        tail = chunks.pop()
        chunks[-1] = chunks[-1] + tail
    return [" ".join(chunk) for chunk in chunks[:max_chunks]]


class VectorCache:
    """Chunk vectors by (model id, text), in SQLite under ``directory``."""

    def __init__(self, directory: Path, model_id: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        safe = re.sub(r"[^A-Za-z0-9_.@-]+", "_", model_id)
        self.path = directory / f"{safe}.sqlite"
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS v (k BLOB PRIMARY KEY, vec BLOB NOT NULL)")
        self._db.commit()

    @staticmethod
    def key(text: str) -> bytes:
        return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()

    def get_many(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        keys = {self.key(t): t for t in texts}
        key_list = list(keys)
        with self._lock:
            for start in range(0, len(key_list), 500):
                part = key_list[start : start + 500]
                marks = ",".join("?" * len(part))
                for k, blob in self._db.execute(f"SELECT k, vec FROM v WHERE k IN ({marks})", part):
                    found[keys[k]] = np.frombuffer(blob, dtype=np.float32)
        return found

    def put_many(self, texts: Sequence[str], vectors: np.ndarray) -> None:
        rows = [(self.key(t), np.asarray(v, dtype=np.float32).tobytes())
                for t, v in zip(texts, vectors, strict=True)]
        with self._lock:
            self._db.executemany("INSERT OR REPLACE INTO v (k, vec) VALUES (?, ?)", rows)
            self._db.commit()

    def close(self) -> None:
        with self._lock:
            self._db.close()


class DocumentEmbedder:
    """Chunked, pooled, title-weighted document vectors over a ``TextEmbedder``."""

    def __init__(
        self,
        embedder: TextEmbedder,
        settings: ChunkSettings | None = None,
        *,
        cache: VectorCache | None = None,
        batch_size: int = 256,
    ) -> None:
        self.embedder = embedder
        self.settings = settings or ChunkSettings()
        self.cache = cache
        self.batch_size = batch_size

    @property
    def model_id(self) -> str:
        return self.embedder.model.id

    def pieces(self, title: str, body: str) -> tuple[str, list[str]]:
        """The title and body chunks a document is embedded as (a text with no body
        becomes its own single chunk, so a bare title is still read)."""
        s = self.settings
        chunks = chunk_words(body, s.words_per_chunk, s.max_chunks)
        if not chunks and title.strip():
            return "", [" ".join(title.split())]
        return " ".join(title.split()), chunks

    def encode_unique(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Vectors for distinct texts, from the cache where present."""
        unique = list(dict.fromkeys(t for t in texts if t))
        found = self.cache.get_many(unique) if self.cache is not None else {}
        missing = [t for t in unique if t not in found]
        for start in range(0, len(missing), self.batch_size):
            part = missing[start : start + self.batch_size]
            vectors = np.asarray(self.embedder.encode(part), dtype=np.float32)
            if self.cache is not None:
                self.cache.put_many(part, vectors)
            found.update(zip(part, vectors, strict=True))
        return found

    def embed(self, titles: Sequence[str], bodies: Sequence[str]) -> np.ndarray:
        """``(n, dim)`` L2-normalised document vectors."""
        if len(titles) != len(bodies):
            raise InvalidConfig(f"{len(titles)} titles but {len(bodies)} bodies")
        pieces = [self.pieces(t, b) for t, b in zip(titles, bodies, strict=True)]
        vectors = self.encode_unique(
            [text for title, chunks in pieces for text in (title, *chunks)]
        )
        out = np.zeros((len(pieces), self.embedder.dim), dtype=np.float32)
        weight = self.settings.title_weight
        for row, (title, chunks) in enumerate(pieces):
            if not chunks:
                continue  # an empty document stays a zero vector; callers reject those
            sizes = np.array([len(c.split()) for c in chunks], dtype=np.float32)
            body = (sizes[:, None] * np.stack([vectors[c] for c in chunks])).sum(axis=0)
            body = body / max(float(np.linalg.norm(body)), 1e-12)
            out[row] = (1.0 - weight) * body + weight * vectors[title] if title else body
        return l2_normalise(out)

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Documents given as one string each, title (if any) on the first line."""
        split = [split_title(t) for t in texts]
        return self.embed([t for t, _ in split], [b for _, b in split])
