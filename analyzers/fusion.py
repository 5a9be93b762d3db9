"""One vector per item for the recommender, fused from its text, visual and audio vectors.

How (version ``reelsift.fusion.v1``):
  1. Each modality vector (already L2-normalised by its model) is mapped into a shared
     256-d space by a fixed random matrix with orthonormal columns (or rows, when the
     input is wider than 256), drawn from a Gaussian with a seed derived from the fusion
     version, the modality and the model id, then orthonormalised (QR). For inputs up
     to 256 dims this preserves inner products exactly; wider inputs (384-d MiniLM text,
     512-d CLIP) are projected onto a random 256-d subspace and rescaled by
     sqrt(d_in / 256), which preserves inner products in expectation.
  2. The projected vectors are summed with weights text 0.5, visual 0.35, audio 0.15;
     weights of the modalities an item lacks are dropped and the rest renormalised, so a
     text-only item is simply its projected text vector.
  3. The sum is L2-normalised.

The fusion model id names the version and every component model (text, visual, audio)
that the fuser is configured with, hashed into its version: an index built by one fuser
never receives vectors from a fuser with a different model set. A vector from a model
other than the configured one is refused rather than fused.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache

import numpy as np
from pydantic import BaseModel, ConfigDict

from analyzers.media.schemas import ModalityVector
from core.contracts import ModelRef
from core.errors import InvalidConfig, InvalidInput

FUSION_NAME = "reelsift.fusion.v1"
FUSED_DIM = 256
MODALITIES = ("text", "visual", "audio")
DEFAULT_WEIGHTS: dict[str, float] = {"text": 0.5, "visual": 0.35, "audio": 0.15}


@cache
def projection_matrix(modality: str, model_id: str, input_dim: int) -> np.ndarray:
    """The fixed (input_dim, 256) matrix that maps one model's vectors into fused space."""
    digest = hashlib.sha256(f"{FUSION_NAME}|{modality}|{model_id}|{input_dim}".encode()).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
    gaussian = rng.standard_normal((max(input_dim, FUSED_DIM), min(input_dim, FUSED_DIM)))
    orthonormal, upper = np.linalg.qr(gaussian)  # orthonormal columns
    # Fix QR's sign ambiguity so the matrix is the same whatever LAPACK is underneath.
    orthonormal = orthonormal * np.where(np.diag(upper) < 0, -1.0, 1.0)
    if input_dim <= FUSED_DIM:
        # (256, d) with orthonormal columns, transposed: x -> x @ M keeps every inner product.
        matrix = orthonormal.T
    else:
        # (d, 256): onto a random 256-d subspace, rescaled to keep norms in expectation.
        matrix = orthonormal * np.sqrt(input_dim / FUSED_DIM)
    return np.ascontiguousarray(matrix, dtype=np.float32)


class FusedVector(BaseModel):
    """The fused item vector plus the per-modality vectors it was made from."""

    model_config = ConfigDict(protected_namespaces=())

    fusion_model: str
    dim: int
    values: list[float]
    modalities: list[str]
    weights: dict[str, float]
    components: dict[str, ModalityVector]

    def as_array(self) -> np.ndarray:
        return np.asarray(self.values, dtype=np.float32)


@dataclass(frozen=True)
class ItemFuser:
    """Fuses vectors from one configured set of models (``None``: modality not used)."""

    text_model: str | None
    visual_model: str | None = None
    audio_model: str | None = None
    weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))

    def __post_init__(self) -> None:
        if not any(self.configured.values()):
            raise InvalidConfig("ItemFuser needs at least one modality model")
        unknown = set(self.weights) - set(MODALITIES)
        if unknown or any(w <= 0 for w in self.weights.values()):
            raise InvalidConfig(f"fusion weights must be positive, for {MODALITIES}")

    @property
    def configured(self) -> dict[str, str | None]:
        return {"text": self.text_model, "visual": self.visual_model, "audio": self.audio_model}

    @property
    def model(self) -> ModelRef:
        parts = "|".join(f"{k}={v or '-'}" for k, v in self.configured.items())
        weights = ",".join(f"{k}={self.weights.get(k, 0)}" for k in MODALITIES)
        version = hashlib.sha256(f"{parts}|{weights}".encode()).hexdigest()[:12]
        return ModelRef(name=FUSION_NAME, version=version, source="builtin")

    def fuse(self, vectors: Mapping[str, ModalityVector | None]) -> FusedVector:
        present = {m: v for m, v in vectors.items() if v is not None}
        for modality, vector in present.items():
            expected = self.configured.get(modality, "unknown modality")
            if modality not in MODALITIES:
                raise InvalidInput(f"unknown modality {modality!r}; known: {MODALITIES}")
            if vector.model != expected:
                raise InvalidInput(
                    f"{modality} vector comes from {vector.model!r} but this fuser "
                    f"({self.model.id}) is configured for {expected!r}; re-embed or use a "
                    "fuser for that model",
                    modality=modality,
                )
            array = vector.as_array()
            if array.shape != (vector.dim,) or not np.isfinite(array).all():
                raise InvalidInput(f"{modality} vector is malformed or not finite")
        if not present:
            raise InvalidInput("an item needs at least one modality vector to be fused")

        total = sum(self.weights.get(m, 0.0) for m in present)
        weights = {m: self.weights.get(m, 0.0) / total for m in present}
        fused = np.zeros(FUSED_DIM, dtype=np.float64)
        for modality, vector in present.items():
            array = vector.as_array()
            unit = array / max(float(np.linalg.norm(array)), 1e-12)
            fused += weights[modality] * (
                unit @ projection_matrix(modality, vector.model, vector.dim)
            )
        fused /= max(float(np.linalg.norm(fused)), 1e-12)
        return FusedVector(
            fusion_model=self.model.id,
            dim=FUSED_DIM,
            values=fused.astype(np.float32).tolist(),
            modalities=sorted(present),
            weights={m: round(w, 6) for m, w in weights.items()},
            components=present,
        )


def pool(
    vectors: Sequence[ModalityVector], weights: Sequence[float] | None = None
) -> ModalityVector:
    """Several vectors of one model (images of one item) as one, weighted mean, L2-normalised."""
    if not vectors:
        raise InvalidInput("nothing to pool")
    models = {v.model for v in vectors}
    if len(models) != 1:
        raise InvalidInput(f"cannot pool vectors of different models: {sorted(models)}")
    stacked = np.stack([v.as_array() for v in vectors]).astype(np.float64)
    w = np.ones(len(vectors)) if weights is None else np.asarray(weights, dtype=np.float64)
    mean = (stacked * w[:, None]).sum(axis=0)
    mean /= max(float(np.linalg.norm(mean)), 1e-12)
    return ModalityVector.from_array(vectors[0].modality, vectors[0].model, mean)


def fuse(
    fuser: ItemFuser,
    text: np.ndarray | ModalityVector | None = None,
    visual: ModalityVector | None = None,
    audio: ModalityVector | None = None,
) -> FusedVector:
    """Convenience: ``text`` may be a raw row from the configured TextEmbedder."""
    if isinstance(text, np.ndarray):
        if fuser.text_model is None:
            raise InvalidConfig("this fuser has no text model configured")
        text = ModalityVector.from_array("text", fuser.text_model, text)
    return fuser.fuse({"text": text, "visual": visual, "audio": audio})
