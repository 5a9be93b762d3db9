"""One convention for everything a module saves and loads again: a directory holding
``config.json`` and the data files that config names.

``config.json`` is the module's own declared keys plus three that every artifact has::

    {
      "kind": "taxonomy.heads",        # which reader it is for
      "format": 3,                     # the layout that reader must understand
      ...                              # the module's own keys (hyper-parameters, version)
      "files": {"heads.npz": {"sha256": "…", "bytes": 4012345}}
    }

A module declares one :class:`ArtifactKind` and calls ``write_config`` after writing its
data files, ``read_config`` before reading them. The data files are written first and
``config.json`` last (atomically), so a directory with a config is complete; reading checks
every named file's size and, where the kind hashes its files, its sha256 before the module
parses it. For a pickle that check is what separates loading a model from running someone
else's code; for arrays it turns a truncated copy into a clear error instead of a crash
three calls later.

The formats this replaced (``manifest.json``, ``ranker.json``, a config without hashes)
are listed per kind in ``legacy_formats`` where they can still be read.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import ModelLoadFailed, ModelNotAvailable
from core.storage.files import atomic_path

CONFIG_FILE = "config.json"
RESERVED_KEYS = ("kind", "format", "files")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _json_default(value: object) -> object:
    if isinstance(value, tuple):
        return list(value)
    if hasattr(value, "item"):
        return value.item()  # numpy scalars
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


@dataclass(frozen=True)
class ArtifactKind:
    """What one module saves: its name, layout version and how a user makes one."""

    name: str  # "taxonomy.heads": the reader this directory is for
    format: int  # the layout written now; bumped when a reader could misread the old one
    description: str  # "taxonomy heads": for messages
    make_with: str  # the command that makes one, named in every "missing" message
    hashed: bool = True  # sha256 every file (off only for large, rebuildable state)
    legacy_formats: tuple[object, ...] = ()  # "format" values of unhashed configs still read
    legacy_files: tuple[str, ...] = ()  # what a legacy config needs beside it (it names none)

    def write_config(self, directory: Path, config: Mapping[str, Any],
                     files: Sequence[str]) -> dict[str, Any]:
        """Record the data files already written in ``directory`` and write the config
        (last, so its presence means the artifact is whole). Returns what was written."""
        clash = [key for key in RESERVED_KEYS if key in config]
        if clash:
            raise ValueError(f"{self.name} config may not set {clash}: the convention owns them")
        entries: dict[str, dict[str, Any]] = {}
        for name in files:
            path = directory / name
            entry: dict[str, Any] = {"bytes": path.stat().st_size}
            if self.hashed:
                entry["sha256"] = file_sha256(path)
            entries[name] = entry
        body = {"kind": self.name, "format": self.format, **config, "files": entries}
        text = json.dumps(body, indent=2, default=_json_default) + "\n"
        with atomic_path(directory / CONFIG_FILE) as tmp:
            tmp.write_text(text, encoding="utf-8")
        written: dict[str, Any] = json.loads(text)  # as a reader will see it (lists, not tuples)
        return written

    def read_config(self, directory: Path) -> dict[str, Any]:
        """The config of the artifact in ``directory``, after checking that it is this
        kind, in a format this code reads, and that every file it names is intact."""
        path = directory / CONFIG_FILE
        if not path.is_file():
            raise ModelNotAvailable(
                f"no {self.description} in {directory} (no {CONFIG_FILE}); make one with "
                f"`{self.make_with}`", path=str(directory),
            )
        try:
            config: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelLoadFailed(f"{path} is unreadable: {exc}", path=str(path)) from exc
        if not isinstance(config, dict):
            raise ModelLoadFailed(f"{path} holds no JSON object", path=str(path))
        if "kind" not in config and config.get("format") in self.legacy_formats:
            # Written before files were recorded: only their presence can be checked.
            for name in self.legacy_files:
                if not (directory / name).is_file():
                    raise ModelNotAvailable(
                        f"{self.description} file {directory / name} is missing; make it "
                        f"again with `{self.make_with}`", path=str(directory / name),
                    )
            return config
        if config.get("kind") != self.name:
            raise ModelLoadFailed(
                f"{path} is a {config.get('kind')!r} artifact, not a {self.name!r} one",
                path=str(path),
            )
        if config.get("format") != self.format:
            raise ModelLoadFailed(
                f"{path} has {self.name} format {config.get('format')!r}; this code reads "
                f"format {self.format}: make it again with `{self.make_with}`",
                path=str(path),
            )
        files = config.get("files")
        if not isinstance(files, dict):
            raise ModelLoadFailed(f"{path} names no data files", path=str(path))
        for name, entry in files.items():
            self._check_file(directory / name, entry)
        return config

    def _check_file(self, path: Path, entry: Mapping[str, Any]) -> None:
        if not path.is_file():
            raise ModelNotAvailable(
                f"{self.description} file {path} is missing; make it again with "
                f"`{self.make_with}`", path=str(path),
            )
        size = path.stat().st_size
        if size != entry.get("bytes"):
            raise ModelLoadFailed(
                f"refusing to load {path}: {size} bytes, its config says {entry.get('bytes')} "
                "(truncated or replaced); restore it or make it again", path=str(path),
            )
        if self.hashed:
            actual = file_sha256(path)
            if actual != entry.get("sha256"):
                raise ModelLoadFailed(
                    f"refusing to load {path}: sha256 {actual} differs from its config's "
                    f"{entry.get('sha256')} (changed after it was written); restore it or "
                    f"make it again with `{self.make_with}`", path=str(path),
                )
