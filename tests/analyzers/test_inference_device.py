"""REELSIFT_INFERENCE_DEVICE: the providers and torch device chosen, and the fall back to
the CPU (with the reason logged) where CUDA is missing. No GPU runs these tests: what is
checked on a GPU-less machine is the choice and the fallback, with real onnxruntime
sessions; the CUDA path itself has not run here."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from pydantic import ValidationError

from analyzers.inference_device import (
    CPU_PROVIDER,
    CUDA_PROVIDER,
    confirm_providers,
    onnx_providers,
    torch_device,
)
from analyzers.media.nudity import NudeNetDetector
from analyzers.model_registry import ModelRegistry
from analyzers.text_embedding import MINILM, OnnxTextEmbedder
from serving.settings import Settings
from tests.analyzers.media import synth

CACHE = Path(__file__).resolve().parents[2] / "var" / "test-cache"  # as test_text_embedding
ORT_HAS_CUDA = CUDA_PROVIDER in ort.get_available_providers()
needs_no_cuda = pytest.mark.skipif(
    ORT_HAS_CUDA, reason="onnxruntime here has CUDA: the fallback cannot be seen")


def test_cpu_asks_for_the_cpu_provider_alone():
    assert onnx_providers("cpu") == [CPU_PROVIDER]
    assert onnx_providers("cpu", available=[CUDA_PROVIDER, CPU_PROVIDER]) == [CPU_PROVIDER]
    assert torch_device("cpu", cuda_available=True) == "cpu"


@pytest.mark.parametrize("device", ["cuda", "auto"])
def test_cuda_first_then_the_cpu_where_onnxruntime_offers_it(device, caplog):
    available = ["TensorrtExecutionProvider", CUDA_PROVIDER, CPU_PROVIDER]
    with caplog.at_level(logging.INFO, logger="analyzers.inference_device"):
        assert onnx_providers(device, available=available) == [CUDA_PROVIDER, CPU_PROVIDER]
        assert torch_device(device, cuda_available=True) == "cuda"
    assert not caplog.records


@needs_no_cuda
def test_cuda_without_onnxruntime_gpu_runs_on_the_cpu_and_says_why(caplog):
    with caplog.at_level(logging.INFO, logger="analyzers.inference_device"):
        assert onnx_providers("cuda") == [CPU_PROVIDER]
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert "onnxruntime-gpu" in record.getMessage()
    assert ort.__version__ in record.getMessage()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="analyzers.inference_device"):
        assert onnx_providers("auto") == [CPU_PROVIDER]
    [record] = caplog.records
    assert record.levelno == logging.INFO  # auto: the CPU is an expected answer


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible here")
def test_torch_without_a_gpu_runs_on_the_cpu_and_says_why(caplog):
    with caplog.at_level(logging.INFO, logger="analyzers.inference_device"):
        assert torch_device("cuda") == "cpu"
    [record] = caplog.records
    assert record.levelno == logging.WARNING and torch.__version__ in record.getMessage()


def test_an_unknown_device_is_refused_by_name():
    with pytest.raises(ValueError, match="'gpu'"):
        onnx_providers("gpu")
    with pytest.raises(ValueError, match="'tpu'"):
        torch_device("tpu")
    with pytest.raises(ValidationError, match="inference_device"):
        Settings(inference_device="gpu")  # type: ignore[arg-type]


def test_the_setting_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("REELSIFT_INFERENCE_DEVICE", "cuda")
    assert Settings().inference_device == "cuda"
    monkeypatch.delenv("REELSIFT_INFERENCE_DEVICE")
    assert Settings().inference_device == "cpu"


@needs_no_cuda
def test_a_model_asked_onto_cuda_serves_from_the_cpu_with_the_same_answers(caplog):
    rgb = synth.cartoon_faces()
    on_cpu = NudeNetDetector(threads=1, device="cpu")
    with caplog.at_level(logging.WARNING, logger="analyzers.inference_device"):
        asked_cuda = NudeNetDetector(threads=1, device="cuda")
    assert asked_cuda.session.get_providers() == [CPU_PROVIDER]
    assert any("onnxruntime-gpu" in r.getMessage() for r in caplog.records)
    assert [(d.label, d.score) for d in asked_cuda.detect(rgb)] == [
        (d.label, d.score) for d in on_cpu.detect(rgb)]


@needs_no_cuda
def test_the_text_encoder_asked_onto_cuda_reports_the_cpu_it_runs_on():
    encoder = OnnxTextEmbedder(ModelRegistry().resolve(MINILM), CACHE, threads=1,
                               device="cuda")
    assert encoder.providers == [CPU_PROVIDER]
    vector = encoder.encode(["a sentence about trains"])
    assert vector.shape == (1, encoder.dim) and np.isclose(np.linalg.norm(vector), 1.0)


def test_a_session_that_did_not_start_cuda_is_reported(caplog):
    """onnxruntime creates the session on the CPU, without raising, when the CUDA
    provider cannot start: the providers asked for and those running differ."""
    session = NudeNetDetector(threads=1).session  # a real session, on the CPU
    with caplog.at_level(logging.WARNING, logger="analyzers.inference_device"):
        running = confirm_providers(session, [CUDA_PROVIDER, CPU_PROVIDER], "NudeNet")
    assert running == [CPU_PROVIDER]
    [record] = caplog.records
    assert "NudeNet" in record.getMessage() and CUDA_PROVIDER in record.getMessage()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="analyzers.inference_device"):
        confirm_providers(session, [CPU_PROVIDER], "NudeNet")
    assert not caplog.records
