"""Registries of implementations, picked by versioned name from config (spaCy style).

An implementation registers a factory under a name such as
``"reelsift.text_embedder.onnx.v1"``; settings name the factory, so swapping an
implementation is a config change, not a code change. Built on ``catalogue``, the
library spaCy's own registry uses.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import catalogue

from core.errors import InvalidConfig

# One factory signature per registry (spaCy's rule), so the wiring calls every entry the
# same way; a factory declares its own defaults and ignores what it does not need.
#
# text, visual and audio embedders:
#     factory(registry: ModelRegistry, cache_dir: Path, *, threads: int | None, device: str)
# entity extractors:  factory(pipeline: str | Path | None)   (a spaCy pipeline, or rules only)
# risk models:        factory(path: Path | None, embedder: TextEmbedder | None)   (None: shipped)
# rankers:            factory(settings: RecommenderSettings)
text_embedders = catalogue.create("reelsift", "text_embedders", entry_points=True)
visual_embedders = catalogue.create("reelsift", "visual_embedders", entry_points=True)
audio_embedders = catalogue.create("reelsift", "audio_embedders", entry_points=True)
entity_extractors = catalogue.create("reelsift", "entity_extractors", entry_points=True)
risk_models = catalogue.create("reelsift", "risk_models", entry_points=True)
rankers = catalogue.create("reelsift", "rankers", entry_points=True)

# The text encoder everything uses unless configured otherwise (the service's setting, and
# what `reelsift train/evaluate taxonomy` train and measure): float MiniLM on onnxruntime.
# ``reelsift.text_embedder.onnx_int8.v1`` runs 2-3x faster on CPU at a small cost in
# labels on short texts (docs/encoders.md).
DEFAULT_TEXT_EMBEDDER = "reelsift.text_embedder.onnx.v1"


def resolve(registry: catalogue.Registry, name: str) -> Callable[..., Any]:
    """Look up ``name`` or fail with the list of names that do exist."""
    try:
        return registry.get(name)
    except catalogue.RegistryError as exc:
        known = ", ".join(sorted(registry.get_all())) or "none"
        raise InvalidConfig(
            f"no implementation named {name!r} in registry {registry.namespace[-1]!r}; "
            f"known names: {known}"
        ) from exc
