"""Export a torch module to ONNX once, cache it, and open it with onnxruntime.

The cache key is the model's name and resolved version, so a new weights file or model
directory gets a new ONNX file and never reuses a stale one. Files are written to a
temporary name and renamed into place, so two processes exporting at once waste work
but never read a half-written model.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.contracts import ModelRef
from core.errors import ModelLoadFailed
from core.storage.files import atomic_path

OPSET = 17


def cache_dir_for(cache_root: Path, ref: ModelRef) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{ref.name}-{ref.version}")
    return Path(cache_root) / safe


def export_once(target: Path, export: Callable[[Path], None]) -> Path:
    """Run ``export(tmp_path)`` unless ``target`` exists, then move the result into place."""
    if target.is_file():
        return target
    try:
        with atomic_path(target, suffix=".onnx") as tmp:
            export(tmp)
    except ModelLoadFailed:
        raise
    except Exception as exc:
        raise ModelLoadFailed(f"exporting {target.name} to ONNX failed: {exc}") from exc
    return target


def torch_to_onnx(
    module: Any,
    example_inputs: tuple[Any, ...],
    path: Path,
    input_names: list[str],
    output_names: list[str],
    dynamic_axes: dict[str, dict[int, str]],
) -> None:
    import torch

    module.eval()
    with warnings.catch_warnings(), torch.no_grad():
        # The TorchScript exporter is deprecated in favour of the dynamo one, which needs
        # onnxscript (not a dependency); it still exports these architectures exactly.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            example_inputs,
            str(path),
            dynamo=False,
            input_names=input_names,
            output_names=output_names,
            dynamic_axes=dynamic_axes,
            opset_version=OPSET,
        )


def session_options(threads: int = 0) -> Any:
    """onnxruntime options: ``threads`` intra-op threads (0: one per core), no spinning.

    Spin-waiting worker threads make each run a little faster on an idle machine and
    several times slower on a busy one (other analyzers, other processes); the service
    is the busy case.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def open_session(path: Path, threads: int = 0, device: str = "cpu") -> Any:
    """A session on ``device`` (``analyzers.inference_device``: cpu, cuda, auto)."""
    import onnxruntime as ort

    from analyzers.inference_device import confirm_providers, onnx_providers

    providers = onnx_providers(device)
    try:
        session = ort.InferenceSession(
            str(path), sess_options=session_options(threads), providers=providers
        )
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ModelLoadFailed(f"ONNX model {path} failed to load: {exc}") from exc
    confirm_providers(session, providers, path.name)
    return session
