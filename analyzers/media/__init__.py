"""Media analyzers: images, audio and video, from bytes to pydantic analyses.

Importing this package is cheap (OpenCV, librosa, onnxruntime, torch and PyAV load on
first use) and registers the visual and audio embedders in ``core.registry``:
``reelsift.visual.opencv_descriptor.v1`` (default), ``reelsift.visual.clip_onnx.v1``,
``reelsift.visual.resnet_onnx.v1`` and ``reelsift.audio.librosa_features.v1``.
"""

from __future__ import annotations

from analyzers.media import clip as _clip  # noqa: F401  (registers its embedder)
from analyzers.media import resnet as _resnet  # noqa: F401  (registers its embedder)
from analyzers.media.asr import DEFAULT_ASR_SPEC, SpeechRecognizer
from analyzers.media.audio import AUDIO_EMBEDDER_NAME, AudioAnalyzer, LibrosaAudioEmbedder
from analyzers.media.clip import DEFAULT_CLIP_SPEC, ClipOnnxEmbedder
from analyzers.media.decode import DecodedImage, decode_image
from analyzers.media.dispatch import MediaAnalysis, MediaAnalyzer
from analyzers.media.image import ImageAnalyzer
from analyzers.media.limits import MediaLimits
from analyzers.media.names import safe_filename
from analyzers.media.nudity import NudeNetDetector
from analyzers.media.phash import hamming_distance, is_near_duplicate, phash, phash_hex
from analyzers.media.resnet import ResNetOnnxEmbedder, resnet_spec
from analyzers.media.schemas import (
    AudioAnalysis,
    ImageAnalysis,
    ModalityVector,
    VideoAnalysis,
    VideoSegment,
)
from analyzers.media.sniff import MediaKind, MediaType, sniff_media_type
from analyzers.media.video import VideoAnalyzer
from analyzers.media.visual import DESCRIPTOR_NAME, OpenCVDescriptorEmbedder, VisualEmbedder

__all__ = [
    "AUDIO_EMBEDDER_NAME",
    "DEFAULT_ASR_SPEC",
    "DEFAULT_CLIP_SPEC",
    "DESCRIPTOR_NAME",
    "AudioAnalysis",
    "AudioAnalyzer",
    "ClipOnnxEmbedder",
    "DecodedImage",
    "ImageAnalysis",
    "ImageAnalyzer",
    "LibrosaAudioEmbedder",
    "MediaAnalysis",
    "MediaAnalyzer",
    "MediaKind",
    "MediaLimits",
    "MediaType",
    "ModalityVector",
    "NudeNetDetector",
    "OpenCVDescriptorEmbedder",
    "ResNetOnnxEmbedder",
    "SpeechRecognizer",
    "VideoAnalysis",
    "VideoAnalyzer",
    "VideoSegment",
    "VisualEmbedder",
    "decode_image",
    "hamming_distance",
    "is_near_duplicate",
    "phash",
    "phash_hex",
    "resnet_spec",
    "safe_filename",
    "sniff_media_type",
]
