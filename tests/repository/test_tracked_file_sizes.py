"""No tracked file may reach 4 MiB: GitHub mirrors drop such files, and a mirrored clone
would lose shipped artifacts (the taxonomy heads were 4.56 MB once)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[2]
MIRROR_LIMIT = 4 * 1024 * 1024  # bytes; a file of this size or more is dropped


def tracked_files() -> list[Path]:
    if shutil.which("git") is None or not (REPOSITORY / ".git").exists():
        pytest.skip("not a git checkout: no tracked files to check")
    listing = subprocess.run(["git", "ls-files", "-z"], cwd=REPOSITORY, check=True,
                             capture_output=True).stdout
    return [REPOSITORY / name for name in listing.decode("utf-8").split("\0") if name]


def test_every_tracked_file_is_under_the_mirror_limit() -> None:
    files = tracked_files()
    assert files, "git ls-files listed nothing"
    # A tracked file deleted in the working tree is not checked (it will not be pushed as is).
    too_large = {str(p.relative_to(REPOSITORY)): p.stat().st_size
                 for p in files if p.is_file() and p.stat().st_size >= MIRROR_LIMIT}
    assert not too_large, f"tracked files of 4 MiB or more: {too_large}"
