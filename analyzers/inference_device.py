"""Where the models run: CPU, or a CUDA GPU when asked for and present.

``REELSIFT_INFERENCE_DEVICE`` (``Settings.inference_device``):

- ``cpu`` (the default): every onnxruntime session on ``CPUExecutionProvider``, torch on
  the CPU. What every test and figure in this repository ran on.
- ``cuda``: the GPU, falling back to the CPU with a logged warning that says why
  (onnxruntime without ``CUDAExecutionProvider``: the ``onnxruntime`` wheel rather than
  ``onnxruntime-gpu``; torch without CUDA; CUDA present but no usable device), so a
  model service on a node without a GPU still serves, slower.
- ``auto``: the GPU where there is one, the CPU otherwise (logged at info level).

onnxruntime takes a list of providers in order of preference; CUDA's list ends with the
CPU provider, which runs any operator CUDA does not implement. A session whose CUDA
provider failed to start (driver or CUDA libraries missing) is created on the CPU by
onnxruntime itself; ``confirm_providers`` logs that, as no error is raised.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Literal, get_args

log = logging.getLogger(__name__)

InferenceDevice = Literal["cpu", "cuda", "auto"]
DEVICES: tuple[str, ...] = get_args(InferenceDevice)
CPU_PROVIDER = "CPUExecutionProvider"
CUDA_PROVIDER = "CUDAExecutionProvider"


def _check(device: str) -> None:
    if device not in DEVICES:
        raise ValueError(f"unknown inference device {device!r}; use one of {DEVICES}")


def _fallback(device: str, reason: str) -> None:
    if device == "cuda":
        log.warning("inference device cuda asked for, running on the CPU: %s", reason)
    else:
        log.info("inference device auto: running on the CPU (%s)", reason)


def onnx_providers(device: str, available: Sequence[str] | None = None) -> list[str]:
    """onnxruntime providers for ``device``; ``available``: onnxruntime's own list
    (``onnxruntime.get_available_providers()``) unless given."""
    _check(device)
    if device == "cpu":
        return [CPU_PROVIDER]
    installed = available is None  # (a given list is a question, not this process's state)
    if available is None:
        import onnxruntime as ort

        available = ort.get_available_providers()
    if CUDA_PROVIDER in available:
        if installed:
            _preload_cuda_libraries()
        return [CUDA_PROVIDER, CPU_PROVIDER]
    _fallback(device, f"onnxruntime {_ort_version()} has no {CUDA_PROVIDER} (it offers "
              f"{', '.join(available) or 'none'}); install onnxruntime-gpu in place of "
              "onnxruntime for the GPU")
    return [CPU_PROVIDER]


_preloaded = False


def _preload_cuda_libraries() -> None:
    """onnxruntime-gpu's ``preload_dlls`` (1.21+) loads the CUDA and cuDNN libraries from
    the ``nvidia-*`` wheels torch brought into the image, which are on no library path;
    without it the CUDA provider may not find them. Once per process."""
    global _preloaded
    if _preloaded:
        return
    _preloaded = True
    import onnxruntime as ort

    preload = getattr(ort, "preload_dlls", None)
    if preload is None:
        return
    try:
        preload()
    except Exception as exc:  # the session still starts; confirm_providers reports where
        log.warning("onnxruntime could not preload the CUDA libraries: %s", exc)


def confirm_providers(session: Any, providers: Sequence[str], what: str) -> list[str]:
    """The providers ``session`` runs on; logs when CUDA was asked for and is not among
    them (onnxruntime falls back to the CPU without raising when CUDA cannot start)."""
    running = list(session.get_providers())
    if providers and providers[0] == CUDA_PROVIDER and CUDA_PROVIDER not in running:
        log.warning("%s: onnxruntime could not start %s (CUDA libraries or driver missing, "
                    "or no GPU visible): running on %s", what, CUDA_PROVIDER,
                    ", ".join(running))
    return running


def torch_device(device: str, cuda_available: bool | None = None) -> str:
    """``"cuda"`` or ``"cpu"`` for torch models; ``cuda_available``: torch's own answer
    (``torch.cuda.is_available()``) unless given."""
    _check(device)
    if device == "cpu":
        return "cpu"
    if cuda_available is None:
        import torch

        cuda_available = bool(torch.cuda.is_available())
        if not cuda_available:
            reason = (f"torch {torch.__version__} was built without CUDA"
                      if torch.version.cuda is None else
                      f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no GPU")
        else:
            reason = ""
    else:
        reason = "torch sees no GPU"
    if cuda_available:
        return "cuda"
    _fallback(device, reason)
    return "cpu"


def _ort_version() -> str:
    try:
        import onnxruntime as ort

        return str(ort.__version__)
    except ImportError:  # pragma: no cover - a dependency of the project
        return "(not installed)"
