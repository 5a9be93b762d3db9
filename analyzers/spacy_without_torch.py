"""Import spaCy without loading PyTorch, where no installed pipeline can use it.

spaCy's model library thinc imports torch when it is installed, only to offer PyTorch
layers (``thinc.compat.has_torch``). The pipelines reelsift runs (``en_core_web_sm``,
the rules) are thinc/numpy models, and torch with its CUDA libraries costs an API worker
about 500 MB resident (benchmarks/api_memory.py). So thinc is imported while torch is
hidden; torch stays importable afterwards for what really needs it (speech recognition,
a sentence-transformers embedder), which imports it on first use.

Transformer pipelines need thinc's PyTorch support: when spacy-transformers or
spacy-curated-transformers is installed, or torch is already loaded, nothing is hidden.

Imported for its effect, before any ``spacy`` or ``thinc`` import (``analyzers.entities``).
"""

from __future__ import annotations

import importlib.util
import sys

TRANSFORMER_PACKAGES = ("spacy_transformers", "spacy_curated_transformers")


def import_spacy_without_torch() -> bool:
    """Import spaCy (and thinc) with torch hidden; True when torch was hidden."""
    if "thinc" in sys.modules or "torch" in sys.modules or any(
        importlib.util.find_spec(name) is not None for name in TRANSFORMER_PACKAGES
    ):
        return False
    sys.modules["torch"] = None  # type: ignore[assignment]  # `import torch` -> ImportError
    try:
        import spacy  # noqa: F401
    finally:
        del sys.modules["torch"]
    return True


TORCH_HIDDEN_FROM_SPACY = import_spacy_without_torch()
