"""Saving and loading the trained bundle, guarded by a manifest of sha256 hashes.

The bundle is a joblib pickle of plain dicts and scikit-learn objects. Unpickling runs
code, so ``load`` hashes the file and refuses it unless the hash equals the one the
manifest recorded at training time: a swapped or corrupted file never gets unpickled.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from core.errors import InvalidConfig, ModelLoadFailed, ModelNotAvailable
from moderation.risk.datasets import file_sha256

log = logging.getLogger(__name__)

MODEL_NAME = "reelsift.text_risk.v1"
MODEL_MAJOR = 2
BUNDLE_FORMAT = 2  # 2: pooled-domain lexical heads (profanity, harassment, hate, spam, clickbait)
BUNDLE_FILE = "text_risk.joblib"
MANIFEST_FILE = "manifest.json"
DEFAULT_ARTIFACT_DIR = Path(__file__).resolve().parent / "artifacts"


def save(
    output_dir: Path,
    bundle: dict[str, Any],
    *,
    training_data: list[dict[str, Any]],
    config: dict[str, Any],
    metrics: dict[str, Any],
) -> dict[str, Any]:
    import joblib
    import sklearn

    from moderation.risk.features import strip_for_pickling

    for vectorizer in bundle["vectorizers"].values():
        strip_for_pickling(vectorizer)
    output_dir.mkdir(parents=True, exist_ok=True)
    bundle_path = output_dir / BUNDLE_FILE
    joblib.dump(bundle, bundle_path, compress=("xz", 6))
    bundle_sha = file_sha256(bundle_path)
    data_digest = hashlib.sha256(
        "".join(d["sha256"] for d in training_data).encode()
    ).hexdigest()
    manifest = {
        "name": MODEL_NAME,
        # Same code, data and seed give the same bytes, hence the same version.
        "version": f"{MODEL_MAJOR}.0+{bundle_sha[:8]}",
        "format": BUNDLE_FORMAT,
        "sklearn_version": sklearn.__version__,
        "training_data": training_data,
        "training_data_digest": data_digest,
        "config": config,
        "metrics": metrics,
        "artifacts": {BUNDLE_FILE: {"sha256": bundle_sha, "bytes": bundle_path.stat().st_size}},
    }
    (output_dir / MANIFEST_FILE).write_text(
        json.dumps(manifest, indent=2, sort_keys=False, default=_json_default) + "\n",
        encoding="utf-8",
    )
    return manifest


def _json_default(value: object) -> object:
    if isinstance(value, tuple):
        return list(value)
    if hasattr(value, "item"):
        return value.item()  # numpy scalars
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def read_manifest(directory: Path) -> dict[str, Any]:
    path = directory / MANIFEST_FILE
    if not path.is_file():
        raise ModelNotAvailable(
            f"text risk model: no {MANIFEST_FILE} in {directory}; train one with "
            "`reelsift train risk --output-dir {directory}` or point at the shipped "
            "moderation/risk/artifacts",
            model=MODEL_NAME,
            path=str(directory),
        )
    try:
        manifest: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelLoadFailed(f"text risk manifest {path} is unreadable: {exc}") from exc
    if manifest.get("format") != BUNDLE_FORMAT:
        raise ModelLoadFailed(
            f"text risk manifest {path} has format {manifest.get('format')!r}; this code reads "
            f"format {BUNDLE_FORMAT}. Retrain with `reelsift train risk`."
        )
    return manifest


def load_bundle(directory: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    import joblib
    import sklearn

    entry = manifest.get("artifacts", {}).get(BUNDLE_FILE)
    if not entry or "sha256" not in entry:
        raise InvalidConfig(
            f"text risk manifest in {directory} records no sha256 for {BUNDLE_FILE}"
        )
    path = directory / BUNDLE_FILE
    if not path.is_file():
        raise ModelNotAvailable(
            f"text risk model file {path} is missing; retrain with `reelsift train risk`",
            model=MODEL_NAME,
            path=str(path),
        )
    actual = file_sha256(path)
    if actual != entry["sha256"]:
        raise ModelLoadFailed(
            f"refusing to load {path}: sha256 {actual} differs from the manifest's "
            f"{entry['sha256']} (file changed after training); restore it or retrain",
            path=str(path),
        )
    if manifest.get("sklearn_version") != sklearn.__version__:
        log.warning(
            "text risk model trained with scikit-learn %s, running %s",
            manifest.get("sklearn_version"), sklearn.__version__,
        )
    bundle: dict[str, Any] = joblib.load(path)
    return bundle
