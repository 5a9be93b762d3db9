"""Files written whole or not at all: caches, model exports, artifacts and blobs.

Each is written under a temporary name beside its target and renamed over it, so a
killed process never leaves a torn file and a concurrent reader sees the old file or
the new one, never half of one.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(target: Path, *, suffix: str = ".tmp") -> Iterator[Path]:
    """A fresh temporary path beside ``target`` to write; renamed over ``target`` when the
    block ends normally, deleted when it raises."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}-", suffix=suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        # mkstemp makes files owner-only; these are shared caches and served blobs.
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
