"""Saving and loading the trained bundle in the project's artifact convention
(``core.artifacts``): ``config.json`` holds the model's name, version, training data,
config and test figures, and the sha256 of ``text_risk.joblib``.

The bundle is a joblib pickle of plain dicts and scikit-learn objects. Unpickling runs
code, so ``load_bundle`` only unpickles after ``read_config`` has checked the file's hash
against the one recorded at training time: a swapped or corrupted file never gets
unpickled.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

from core.artifacts import ArtifactKind, file_sha256

log = logging.getLogger(__name__)

MODEL_NAME = "reelsift.text_risk.v1"
# 3: hate, profanity and spam may stack a head over the encoder's word pieces.
MODEL_MAJOR = 3
BUNDLE_FILE = "text_risk.joblib"
# The pickled bundle's own layout, stored inside it: 2, pooled-domain lexical heads; 3, a
# head may add "token" arrays and a "stack_calibrator", and "token_encoder" names the
# encoder they read.
BUNDLE_FORMAT = 3
DEFAULT_ARTIFACT_DIR = Path(__file__).resolve().parent / "artifacts"
# Format 3: the project-wide config.json (format 2 was manifest.json, same bundle).
TEXT_RISK = ArtifactKind(
    name="moderation.text_risk", format=3, description="text risk model",
    make_with="reelsift train risk --output-dir DIR",
)


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
    data_digest = hashlib.sha256(
        "".join(d["sha256"] for d in training_data).encode()
    ).hexdigest()
    return TEXT_RISK.write_config(output_dir, {
        "name": MODEL_NAME,
        # Same code, data and seed give the same bytes, hence the same version.
        "version": f"{MODEL_MAJOR}.0+{file_sha256(bundle_path)[:8]}",
        "sklearn_version": sklearn.__version__,
        "training_data": training_data,
        "training_data_digest": data_digest,
        "config": config,
        "metrics": metrics,
    }, files=[BUNDLE_FILE])


def load_bundle(directory: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Unpickle the bundle whose config ``TEXT_RISK.read_config`` has checked (its sha256
    included): ``manifest`` is that config."""
    import joblib
    import sklearn

    if manifest.get("sklearn_version") != sklearn.__version__:
        log.warning(
            "text risk model trained with scikit-learn %s, running %s",
            manifest.get("sklearn_version"), sklearn.__version__,
        )
    bundle: dict[str, Any] = joblib.load(directory / BUNDLE_FILE)
    return bundle
