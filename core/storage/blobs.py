"""Media blobs addressed by sha256: the same bytes are stored once."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from core.storage.files import atomic_path

COPY_BLOCK = 1024 * 1024


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path_for(self, sha256: str) -> Path:
        # Two levels of fan-out keep directories small at millions of blobs.
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def put(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        self._write(digest, lambda fh: fh.write(data))
        return digest

    def put_file(self, path: Path, sha256: str) -> str:
        """Store a file already hashed (``sha256``) by copying it in blocks, so a large
        upload spooled to disk never passes through memory whole."""
        def copy(fh: BinaryIO) -> None:
            with path.open("rb") as source:
                shutil.copyfileobj(source, fh, COPY_BLOCK)

        self._write(sha256, copy)
        return sha256

    def _write(self, digest: str, write: Callable[[BinaryIO], object]) -> None:
        target = self.path_for(digest)
        if target.exists():
            return
        # A crash never leaves a half-written blob under its hash.
        with atomic_path(target) as tmp, tmp.open("wb") as fh:
            write(fh)

    def get(self, sha256: str) -> bytes:
        return self.path_for(sha256).read_bytes()

    def exists(self, sha256: str) -> bool:
        return self.path_for(sha256).exists()
