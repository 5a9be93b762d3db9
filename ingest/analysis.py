"""Turning an item into one ``ItemAnalysis`` and its vectors (nothing stored here).

Text: language, entities, keywords and the text vector (``analyzers.text``), then the
optional enrichment stages (risk, taxonomy labels, fusion); each absent stage is
reported as not assessed, never faked. Media: one analyzer per file (image, audio,
video), keyframes as JPEGs, risk merged across modalities by ``moderation.risk.merge``.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, cast, runtime_checkable

import numpy as np

from analyzers.base import TokenStates
from analyzers.fusion import ItemFuser, fuse, pool
from analyzers.media.dispatch import MediaAnalysis, MediaAnalyzer
from analyzers.media.schemas import (
    AudioAnalysis,
    ImageAnalysis,
    ModalityVector,
    VideoAnalysis,
)
from analyzers.media.sniff import MediaKind
from analyzers.text import TextAnalyzer, document_text, token_states_of
from core.contracts import (
    ItemAnalysis,
    Label,
    NotAssessed,
    RiskCategory,
    RiskScore,
    TextAnalysis,
)
from core.errors import (
    InvalidInput,
    ReelsiftError,
)

if TYPE_CHECKING:
    from analyzers.media.image import ImageAnalyzer

from ingest.intake import CheckedFile, about_file, file_label
from ingest.jobs import ProgressFn
from moderation.risk.merge import merge_risk

log = logging.getLogger(__name__)


KEYFRAME_MAX_SIDE = 640
KEYFRAME_JPEG_QUALITY = 85


# An analysed item: its id and risk scores.
AnalysedItem = tuple[str, list[RiskScore]]
# Moves analysed items out of ``analyzing`` given their risk scores, a batch in one
# transaction: moderation's policy and review queue in the running service (see
# serving/wiring.py).
ModerationGate = Callable[[Sequence[AnalysedItem]], None]
# (titles, documents, the documents' text vectors or None, their word-piece states from
# the same encoder pass or None) -> risk scores per document.
TextRiskScorer = Callable[
    [Sequence[str], Sequence[str], np.ndarray | None, TokenStates | None],
    list[list[RiskScore]],
]
# (titles, bodies, the documents' text vectors) -> hierarchical labels per document; long
# bodies are read by chunks (``TaxonomyClassifier.classify_documents``).
Labeler = Callable[[Sequence[str], Sequence[str], np.ndarray], list[list[Label]]]


@dataclass
class Enrichment:
    """Optional stages after the text analyzer; each absent one is reported, not faked."""

    risk: TextRiskScorer | None = None
    labels: Labeler | None = None
    fuser: ItemFuser | None = None


def route_analysed(gate: ModerationGate, items: Sequence[AnalysedItem]) -> None:
    """Route analysed items in one transaction. When that fails (an item another process
    moved meanwhile), they are routed one at a time, so only the item at fault is left in
    ``analyzing`` for recovery; its error is raised once the others are routed."""
    if not items:
        return
    try:
        gate(items)
    except ReelsiftError:
        if len(items) == 1:
            raise
        first: ReelsiftError | None = None
        for item in items:
            try:
                gate([item])
            except ReelsiftError as exc:
                first = first or exc
        if first is not None:
            raise first from None


def unassessed_risk(reason: str) -> list[RiskScore]:
    return [RiskScore(category=c, score=None, not_assessed_reason=reason) for c in RiskCategory]


# kind ("text", "fused", ...) -> (model id, vector) of one item.
Vectors = dict[str, tuple[str, np.ndarray]]


def analyze_documents(
    analyzer: TextAnalyzer, stages: Enrichment, titles: Sequence[str], documents: Sequence[str],
    bodies: Sequence[str] | None = None,
) -> tuple[list[ItemAnalysis], list[Vectors]]:
    """Analyses and vectors (kind -> (model id, vector)) for a batch of documents (title
    and text together); ``bodies``, the texts without their titles, let the taxonomy
    weigh titles apart and read long bodies by chunks."""
    results = analyzer.analyze(documents)
    have_vectors = all(r.vector is not None for r in results)
    matrix = np.stack([r.vector for r in results]) if have_vectors and results else None  # type: ignore[misc]
    risks = (
        stages.risk(titles, documents, matrix, token_states_of(analyzer.embedder, results))
        if stages.risk is not None
        else [unassessed_risk("no text risk model configured") for _ in documents]
    )
    labels = (
        stages.labels(titles, documents if bodies is None else bodies, matrix)
        if stages.labels is not None and matrix is not None else None
    )
    analyses, vectors = [], []
    for i, result in enumerate(results):
        analysis = ItemAnalysis(text=result.analysis, risk=risks[i])
        item_vectors: Vectors = {}
        if result.vector is not None and result.analysis.embedding_model:
            analysis.models["text_embedding"] = result.analysis.embedding_model
            item_vectors["text"] = (result.analysis.embedding_model, result.vector)
        if labels is not None:
            analysis.labels = labels[i]
        else:
            analysis.not_assessed.append(NotAssessed(
                output="labels",
                reason="no taxonomy classifier" if stages.labels is None
                else "no text embedding to classify",
            ))
        analyses.append(analysis)
        vectors.append(item_vectors)
    if stages.fuser is not None:
        fuse_text_vectors(stages.fuser, analyses, vectors)
    return analyses, vectors


def fuse_text_vectors(
    fuser: ItemFuser, analyses: Sequence[ItemAnalysis], vectors: Sequence[Vectors]
) -> None:
    """Adds the fused vector of each text-only item that has a text vector. Cheap NumPy:
    it runs where the fuser is (its model id names the visual model too), after the text
    models ran here or in the text-analysis service."""
    for analysis, item_vectors in zip(analyses, vectors, strict=True):
        if "text" in item_vectors:
            fused = fuse(fuser, text=item_vectors["text"][1])
            analysis.models["fusion"] = fused.fusion_model
            item_vectors["fused"] = (fused.fusion_model, fused.as_array())


@runtime_checkable
class TextDocumentAnalyzer(Protocol):
    """The text analysis of documents (language, entities, keywords, text vector, risk,
    labels, the fused vector): in this process (``InProcessTextAnalysis``) or through the
    text-analysis model service (``serving.model_clients.TextAnalysisClient``); both give
    the same result for the same documents."""

    def analyze_documents(
        self, titles: Sequence[str], documents: Sequence[str], bodies: Sequence[str] | None = None
    ) -> tuple[list[ItemAnalysis], list[Vectors]]: ...

    def analyze_transcript(self, text: str) -> TextAnalysis:
        """The text part only (an audio transcript's language, entities, keywords)."""
        ...


@dataclass
class InProcessTextAnalysis:
    """The text models loaded in this process (CLI, bulk import, tests, the service)."""

    analyzer: TextAnalyzer
    enrichment: Enrichment

    def analyze_documents(
        self, titles: Sequence[str], documents: Sequence[str], bodies: Sequence[str] | None = None
    ) -> tuple[list[ItemAnalysis], list[Vectors]]:
        return analyze_documents(self.analyzer, self.enrichment, titles, documents, bodies)

    def analyze_transcript(self, text: str) -> TextAnalysis:
        return self.analyzer.analyze([text])[0].analysis


def text_document_analyzer(
    analyzer: TextAnalyzer | TextDocumentAnalyzer, enrichment: Enrichment | None
) -> TextDocumentAnalyzer:
    """A ``TextAnalyzer`` and its enrichment in process; a ready ``TextDocumentAnalyzer``
    (which brings its own stages) as it is."""
    if isinstance(analyzer, TextDocumentAnalyzer):
        return analyzer
    return InProcessTextAnalysis(analyzer, enrichment or Enrichment())


# -- the wire form of a text analysis (the text-analysis service and its clients) -------


def encode_vectors(vectors: Vectors) -> dict[str, list[str]]:
    """float32 bytes in base64: exact, and a third of the size of JSON numbers."""
    return {
        kind: [model_id, base64.b64encode(
            np.ascontiguousarray(vector, dtype=np.float32).tobytes()).decode("ascii")]
        for kind, (model_id, vector) in vectors.items()
    }


def decode_vectors(encoded: Mapping[str, Sequence[str]]) -> Vectors:
    return {
        kind: (model_id, np.frombuffer(base64.b64decode(data), dtype=np.float32).copy())
        for kind, (model_id, data) in encoded.items()
    }


def wire_documents(
    titles: Sequence[str], documents: Sequence[str], bodies: Sequence[str] | None = None
) -> list[dict[str, str]]:
    """What the text-analysis service takes per document: title, document (title and text
    joined, which every offset points into) and body (the text alone)."""
    return [{"title": t, "document": d, "body": d if bodies is None else bodies[i]}
            for i, (t, d) in enumerate(zip(titles, documents, strict=True))]


class RemoteAnalysisFailed(RuntimeError):
    """The text-analysis service failed on a document (its content, as in process)."""


def analyze_wire_documents(
    text: TextDocumentAnalyzer, documents: Sequence[Mapping[str, str]]
) -> list[dict[str, Any]]:
    """``wire_documents`` -> ``{"analysis", "vectors"}`` per document: the analysis as its
    JSON contract (``ItemAnalysis``), the vectors by ``encode_vectors``. Calls merged by
    adaptive batching arrive here as one batch (the encoder and spaCy run batched). When
    the batch fails, each document is analyzed alone, so a document the analyzers fail
    on answers ``{"error"}`` and fails no other caller's documents merged with it."""
    try:
        return _analyze_wire(text, documents)
    except Exception:
        if len(documents) == 1:
            return [_wire_error(text, documents[0])]
        log.warning("a batch of %d documents failed; analyzing each alone", len(documents))
        return [_wire_error(text, document) for document in documents]


def _analyze_wire(
    text: TextDocumentAnalyzer, documents: Sequence[Mapping[str, str]]
) -> list[dict[str, Any]]:
    analyses, vectors = text.analyze_documents(
        [d["title"] for d in documents], [d["document"] for d in documents],
        bodies=[d["body"] for d in documents],
    )
    return [{"analysis": a.model_dump(mode="json"), "vectors": encode_vectors(v)}
            for a, v in zip(analyses, vectors, strict=True)]


def _wire_error(text: TextDocumentAnalyzer, document: Mapping[str, str]) -> dict[str, Any]:
    try:
        [answer] = _analyze_wire(text, [document])
    except Exception as exc:
        log.exception("analysis of a document failed")
        return {"error": f"{type(exc).__name__}: {exc}"}
    return answer


def read_wire_documents(
    answer: Sequence[Mapping[str, Any]],
) -> tuple[list[ItemAnalysis], list[Vectors]]:
    """The analyses and vectors ``analyze_wire_documents`` answered; raises
    ``RemoteAnalysisFailed`` when it failed on a document."""
    for entry in answer:
        if "error" in entry:
            raise RemoteAnalysisFailed(entry["error"])
    analyses = [ItemAnalysis.model_validate(entry["analysis"]) for entry in answer]
    return analyses, [decode_vectors(entry["vectors"]) for entry in answer]


# -- analysis (no storage) ----------------------------------------------------------------


@dataclass(frozen=True)
class KeyframeImage:
    t_ms: int
    jpeg: bytes
    sha256: str
    width: int
    height: int


@dataclass
class AnalyzedFile:
    file: CheckedFile
    analysis: MediaAnalysis
    keyframes: list[KeyframeImage] = field(default_factory=list)

    def phashes(self) -> list[tuple[str, int | None]]:
        """(pHash hex, t_ms) of the image, or of every keyframe of a video."""
        if isinstance(self.analysis, ImageAnalysis):
            return [(self.analysis.phash, None)]
        if isinstance(self.analysis, VideoAnalysis):
            return [(s.image.phash, s.keyframe_ms) for s in self.analysis.segments]
        return []


@dataclass
class ItemResult:
    analysis: ItemAnalysis
    vectors: dict[str, tuple[str, np.ndarray]]  # kind -> (model id, vector)
    files: list[AnalyzedFile]


def encode_jpeg(rgb: np.ndarray, max_side: int = KEYFRAME_MAX_SIDE) -> tuple[bytes, int, int]:
    import cv2

    from analyzers.media.decode import resize_max_side

    small = resize_max_side(np.ascontiguousarray(rgb), max_side)
    ok, buffer = cv2.imencode(
        ".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR),
        [cv2.IMWRITE_JPEG_QUALITY, KEYFRAME_JPEG_QUALITY],
    )
    if not ok:
        raise InvalidInput("could not encode a keyframe as JPEG")
    return buffer.tobytes(), int(small.shape[1]), int(small.shape[0])


class _KeyframeRecorder:
    """Stands in for the ImageAnalyzer during one video analysis: every keyframe the video
    analyzer hands over is analyzed as usual, and also kept as a JPEG (for the console's
    strip) and reported as progress. The video analyzer keeps no frames itself."""

    def __init__(
        self, inner: ImageAnalyzer, duration_ms: int | None, progress: ProgressFn | None
    ) -> None:
        self.inner = inner
        self.duration_ms = duration_ms
        self.progress = progress
        self.keyframes: list[KeyframeImage] = []

    def analyze_array(
        self, rgb: np.ndarray, t_ms: int | None = None, media_type: str = "image/raw"
    ) -> ImageAnalysis:
        analysis = self.inner.analyze_array(rgb, t_ms=t_ms, media_type=media_type)
        jpeg, width, height = encode_jpeg(rgb)
        self.keyframes.append(
            KeyframeImage(t_ms or 0, jpeg, hashlib.sha256(jpeg).hexdigest(), width, height)
        )
        if self.progress is not None and self.duration_ms and t_ms is not None:
            self.progress(min(t_ms / self.duration_ms, 1.0))
        return analysis


def _media_entry(analyzed: AnalyzedFile) -> dict[str, Any]:
    file = analyzed.file
    entry: dict[str, Any] = {
        "position": file.position,
        "filename": file.filename,
        "sha256": file.sha256,
        "media_type": file.media_type.value,
        "kind": file.kind.value,
        "size_bytes": file.size_bytes,
        "analysis": analyzed.analysis.summary(),
        "near_duplicate_of": [],
        "near_duplicates": [],
    }
    if isinstance(analyzed.analysis, VideoAnalysis):
        frames = {k.t_ms: k for k in analyzed.keyframes}
        entry["keyframes"] = [
            {
                "t_ms": s.keyframe_ms, "start_ms": s.start_ms, "end_ms": s.end_ms,
                "sha256": frames[s.keyframe_ms].sha256 if s.keyframe_ms in frames else None,
                "media_type": "image/jpeg",
                "width": frames[s.keyframe_ms].width if s.keyframe_ms in frames else None,
                "height": frames[s.keyframe_ms].height if s.keyframe_ms in frames else None,
            }
            for s in analyzed.analysis.segments
        ]
    return entry


class MediaItemPipeline:
    """Turns a checked item (text fields plus files) into one ``ItemAnalysis`` and vectors.

    Pure: no database, no blob store. Used by the service (inside requests and jobs) and
    by the CLI's ``analyze``.
    """

    def __init__(
        self, text: TextDocumentAnalyzer, fuser: ItemFuser | None, media: MediaAnalyzer,
    ) -> None:
        self.text = text
        self.fuser = fuser
        self.media = media

    def analyze_file(self, file: CheckedFile, progress: ProgressFn | None = None) -> AnalyzedFile:
        """Analyze one file; bad media raises a coded error naming the file."""
        try:
            if file.kind is MediaKind.IMAGE:
                return AnalyzedFile(file, self.media.image.analyze(file.read()))
            if file.kind is MediaKind.AUDIO:
                return AnalyzedFile(file, self.media.audio.analyze(file.read()))
            return self._analyze_video(file, progress)
        except ReelsiftError as exc:
            raise about_file(file.position, file.filename, exc) from exc
        except Exception as exc:
            # Decoders fail on malformed media in ways no one enumerates; the upload is
            # at fault far more often than the server, and the client must hear why.
            log.exception("analyzing %s failed", file_label(file.position, file.filename))
            raise InvalidInput(
                f"{file_label(file.position, file.filename)}: the {file.media_type.value} file "
                f"could not be analyzed ({type(exc).__name__}: {exc})",
                file=file.position, media_type=file.media_type.value,
            ) from exc

    def _analyze_video(self, file: CheckedFile, progress: ProgressFn | None) -> AnalyzedFile:
        duration = file.probe.duration_ms if file.probe is not None else None
        recorder = _KeyframeRecorder(self.media.image, duration, progress)
        # A shallow copy shares the loaded models; only this run sees the recorder.
        video = copy.copy(self.media.video)
        video.image_analyzer = cast("ImageAnalyzer", recorder)
        analysis = (
            video.analyze_path(file.path) if file.path is not None else video.analyze(file.read())
        )
        return AnalyzedFile(file, analysis, recorder.keyframes)

    def build_texts(self, items: Sequence[tuple[str, str]]) -> list[ItemResult]:
        """Text-only items (title, text), their text analyzed in one batch (the encoder
        and spaCy run batched), each then built as ``build`` would."""
        documents = [document_text(title, text) for title, text in items]
        parts = self.text.analyze_documents(
            [t for t, _ in items], documents, bodies=[text for _, text in items],
        )
        return [
            self.build(title, text, [], text_part=(analysis, text_vectors))
            for (title, text), analysis, text_vectors in zip(items, *parts, strict=True)
        ]

    def build(
        self, title: str, text: str, files: Sequence[AnalyzedFile],
        text_part: tuple[ItemAnalysis, dict[str, tuple[str, np.ndarray]]] | None = None,
    ) -> ItemResult:
        """Combine the text part (if any; ``text_part`` when already analyzed) and the
        analyzed files into one analysis."""
        vectors: dict[str, tuple[str, np.ndarray]] = {}
        document = document_text(title, text)
        if document.strip():
            if text_part is None:
                [analysis], [text_vectors] = self.text.analyze_documents(
                    [title], [document], bodies=[text]
                )
            else:
                analysis, text_vectors = text_part
            if "text" in text_vectors:
                vectors["text"] = text_vectors["text"]
            text_risk = list(analysis.risk)
        else:
            analysis = ItemAnalysis()
            analysis.not_assessed.append(NotAssessed(
                output="labels", reason="the item has no text to classify (no title or text)"
            ))
            text_risk = unassessed_risk("the item has no text")

        sources: list[tuple[str, Sequence[RiskScore]]] = [("text", text_risk)]
        visual: list[ModalityVector] = []
        audio: list[ModalityVector] = []
        seen_missing: set[tuple[str, str]] = set()
        for analyzed in files:
            result = analyzed.analysis
            label = file_label(analyzed.file.position, analyzed.file.filename)
            analysis.media.append(_media_entry(analyzed))
            for role, model_id in result.models.items():
                analysis.models.setdefault(role, model_id)
            for missing in result.not_assessed:
                key = (missing.output, missing.reason)
                if key not in seen_missing:
                    seen_missing.add(key)
                    analysis.not_assessed.append(
                        NotAssessed(output=f"media.{missing.output}", reason=missing.reason)
                    )
            if isinstance(result, ImageAnalysis):
                sources.append((label, result.risk))
                if result.embedding is not None:
                    visual.append(result.embedding)
            elif isinstance(result, AudioAnalysis):
                audio.append(result.embedding)
            else:
                sources.append((label, result.risk))
                if result.visual_embedding is not None:
                    visual.append(result.visual_embedding)
                if result.audio is not None:
                    audio.append(result.audio.embedding)
        analysis.risk = merge_risk(sources)

        pooled = {"visual": _pool(visual), "audio": _pool(audio)}
        for kind, vector in pooled.items():
            if vector is not None:
                vectors[kind] = (vector.model, vector.as_array())
        self._fuse(analysis, vectors, pooled)
        return ItemResult(analysis=analysis, vectors=vectors, files=list(files))

    def _fuse(
        self, analysis: ItemAnalysis, vectors: dict[str, tuple[str, np.ndarray]],
        pooled: dict[str, ModalityVector | None],
    ) -> None:
        if self.fuser is None:
            analysis.not_assessed.append(NotAssessed(output="fused_embedding", reason="no fuser"))
            return
        parts: dict[str, ModalityVector | None] = dict(pooled)
        if "text" in vectors:
            model_id, text_vector = vectors["text"]
            parts["text"] = ModalityVector.from_array("text", model_id, text_vector)
        if not any(v is not None for v in parts.values()):
            analysis.not_assessed.append(
                NotAssessed(output="fused_embedding", reason="no modality produced a vector")
            )
            return
        try:
            fused = self.fuser.fuse(parts)
        except InvalidInput as exc:
            analysis.not_assessed.append(NotAssessed(output="fused_embedding", reason=exc.message))
            return
        analysis.models["fusion"] = fused.fusion_model
        vectors["fused"] = (fused.fusion_model, fused.as_array())


def _pool(vectors: list[ModalityVector]) -> ModalityVector | None:
    if not vectors:
        return None
    return vectors[0] if len(vectors) == 1 else pool(vectors)
