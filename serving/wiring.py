"""Builds the running system from ``Settings``: the one place components are assembled."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import catalogue
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from analyzers.base import TextEmbedder
from analyzers.fusion import ItemFuser
from analyzers.model_registry import ModelRegistry
from core.contracts import ModelRef, TextAnalysis
from core.errors import InvalidConfig, ModelLoadFailed, ModelNotAvailable
from core.registry import (
    entity_extractors,
    resolve,
    risk_models,
    text_embedders,
    visual_embedders,
)
from core.storage.blobs import BlobStore
from core.storage.db import make_engine, make_session_factory, upgrade
from core.storage.items import ItemStore
from core.storage.processes import ProcessRegistry
from ingest import retry
from ingest.analysis import (
    AnalysedItem,
    Enrichment,
    InProcessTextAnalysis,
    MediaItemPipeline,
    ModerationGate,
    TextDocumentAnalyzer,
)
from ingest.intake import IntakeLimits, TextLimits
from ingest.jobs import JobRunner, JobStore, Spawner, inline_spawner
from ingest.media import MediaIngestService
from ingest.models import ItemOut
from ingest.near_duplicates import PerceptualHashIndex
from ingest.text import TextIngestService
from moderation.policy import Policy
from moderation.review.service import ReviewService
from recommender.service import Recommender
from serving.auth import ApiKeyStore
from serving.settings import Settings
from serving.stream_wiring import redis_online

if TYPE_CHECKING:
    # The text models (spaCy, the risk and taxonomy heads) are imported where they are
    # built: API workers reach them through the text-analysis service and never load them.
    from analyzers.media import MediaAnalyzer, MediaLimits, VisualEmbedder
    from analyzers.media.asr import Transcriber
    from analyzers.media.audio import SignalAnalyzer
    from analyzers.media.image import FaceDetector, NudityDetector
    from analyzers.text import TextAnalyzer
    from moderation.risk.model import TextRiskModel
    from taxonomy.classifier import TaxonomyClassifier

log = logging.getLogger(__name__)


def model_registry(settings: Settings) -> ModelRegistry:
    return ModelRegistry(explicit_paths=settings.model_paths, hf_cache_dir=settings.hf_cache_dir)


def _build_embedder(
    registry: catalogue.Registry, name: str, what: str, settings: Settings
) -> tuple[Any, str | None]:
    """The embedder ``name`` from ``registry`` (every embedder registry shares one factory
    signature), or None and the reason it is unavailable."""
    factory = resolve(registry, name)
    try:
        embedder = factory(model_registry(settings), settings.cache_dir,
                           threads=settings.inference_threads, device=settings.inference_device)
    except (ModelNotAvailable, ModelLoadFailed) as exc:
        log.error("%s embedding unavailable: %s", what, exc)
        return None, str(exc)
    return embedder, None


def build_text_embedder(settings: Settings) -> tuple[TextEmbedder | None, str | None]:
    """The configured text embedder, or None and the reason it is unavailable."""
    return _build_embedder(text_embedders, settings.text_embedder, "text", settings)


def build_visual_embedder(settings: Settings) -> tuple[VisualEmbedder | None, str | None]:
    """The configured visual embedder, or None and the reason it is unavailable."""
    import analyzers.media  # noqa: F401  (registers the visual embedders)

    return _build_embedder(visual_embedders, settings.visual_embedder, "visual", settings)


def media_limits(settings: Settings) -> MediaLimits:
    from analyzers.media import MediaLimits

    return MediaLimits(
        max_file_bytes=settings.max_file_bytes,
        max_image_pixels=settings.max_image_pixels,
        max_audio_seconds=settings.max_audio_seconds,
        max_video_seconds=settings.max_video_seconds,
        max_video_frames=settings.max_video_frames,
    )


def intake_limits(settings: Settings) -> IntakeLimits:
    return IntakeLimits(
        media=media_limits(settings),
        max_files_per_item=settings.max_files_per_item,
        async_media_bytes=settings.async_media_bytes,
        near_duplicate_max_distance=settings.near_duplicate_max_distance,
        spool_bytes=settings.upload_spool_bytes,
        spool_dir=settings.data_dir / "tmp" / "uploads",
    )


@dataclass
class MediaModelSet:
    """The models of media analysis besides the visual embedder: loaded here
    (``build_media_models``) or their clients (the media model service); None and a reason
    in ``unavailable`` (by output: nudity, faces, transcript) for one that is missing."""

    nudity: NudityDetector | None
    faces: FaceDetector | None
    speech: Transcriber | None
    unavailable: dict[str, str]
    # The audio features: None computes them here (librosa).
    audio_signal: SignalAnalyzer | None = None


def build_media_models(settings: Settings) -> MediaModelSet:
    """NudeNet (onnxruntime), OpenCV's Haar cascade and the speech recognizer; a model
    that cannot load is a reason, not an error."""
    from analyzers.media import DEFAULT_ASR_SPEC, NudeNetDetector, SpeechRecognizer
    from analyzers.media.faces import HaarFaceDetector

    threads = settings.inference_threads or 0
    unavailable: dict[str, str] = {}
    nudity = faces = speech = None
    try:
        nudity = NudeNetDetector(threads=threads, device=settings.inference_device)
    except (ModelNotAvailable, ModelLoadFailed) as exc:
        unavailable["nudity"] = exc.message
    try:
        faces = HaarFaceDetector()
    except ModelNotAvailable as exc:
        unavailable["faces"] = exc.message
    try:
        speech = SpeechRecognizer.from_registry(
            model_registry(settings), DEFAULT_ASR_SPEC, threads=threads,
            device=settings.inference_device,
        )
    except (ModelNotAvailable, ModelLoadFailed) as exc:
        unavailable["transcript"] = exc.message
    return MediaModelSet(nudity, faces, speech, unavailable)


def describe_media_models(models: MediaModelSet) -> dict[str, Any]:
    """What the media model service serves, so the API's clients name each model."""

    def entry(model: Any, output: str) -> dict[str, Any]:
        if model is None:
            return {"available": False, "reason": models.unavailable.get(output)}
        return {"available": True, "model": model.model.model_dump()}

    speech = entry(models.speech, "transcript")
    if models.speech is not None:
        speech["sample_rate"] = int(getattr(models.speech, "sample_rate", 16_000))
    return {"nudity": entry(models.nudity, "nudity"), "faces": entry(models.faces, "faces"),
            "transcript": speech}


def media_model_clients(client: Any, info: dict[str, Any]) -> MediaModelSet:
    """Clients of the media model service, from what its ``describe`` answered."""
    from serving.model_clients import AudioSignalClient, FaceClient, NudityClient, SpeechClient

    def ref(output: str) -> ModelRef:
        return ModelRef(**info[output]["model"])

    unavailable = {output: str(entry.get("reason")) for output, entry in info.items()
                   if not entry.get("available")}
    return MediaModelSet(
        nudity=NudityClient(client, ref("nudity")) if "nudity" not in unavailable else None,
        faces=FaceClient(client, ref("faces")) if "faces" not in unavailable else None,
        speech=(SpeechClient(client, ref("transcript"), int(info["transcript"]["sample_rate"]))
                if "transcript" not in unavailable else None),
        unavailable=unavailable,
        audio_signal=AudioSignalClient(client),
    )


def build_media_analyzer(
    settings: Settings, visual: VisualEmbedder | None, visual_unavailable_reason: str | None,
    transcripts: Callable[[str], TextAnalysis] | None = None,
    models: MediaModelSet | None = None,
) -> MediaAnalyzer:
    """Image, audio and video analyzers sharing one set of limits and loaded models;
    ``transcripts`` analyzes what speech recognition heard. ``models``: None loads them
    here (``build_media_models``)."""
    from analyzers.media import AudioAnalyzer, ImageAnalyzer, MediaAnalyzer
    from analyzers.media.audio import audio_signal

    models = models or build_media_models(settings)
    limits = media_limits(settings)
    image = ImageAnalyzer(
        embedder=visual, nudity=models.nudity, faces=models.faces, limits=limits,
        threads=settings.inference_threads or 0,
    )
    for output in ("nudity", "faces"):
        if output in models.unavailable:
            image.unavailable[output] = models.unavailable[output]
    if visual is None and visual_unavailable_reason:
        image.unavailable["visual_embedding"] = visual_unavailable_reason
    audio = AudioAnalyzer(
        speech_recognizer=models.speech, text_analyzer=transcripts, limits=limits,
        asr_unavailable_reason=models.unavailable.get("transcript"),
        signal=models.audio_signal or audio_signal,
    )
    return MediaAnalyzer(image=image, audio=audio, limits=limits)


def build_fuser(text_model_id: str | None, visual_model_id: str | None) -> ItemFuser:
    """The one fuser for every item: the recommender indexes by its model id, which names
    all three component models, so text-only and media items share one index."""
    from analyzers.media import AUDIO_EMBEDDER_NAME

    return ItemFuser(
        text_model=text_model_id,
        visual_model=visual_model_id,
        audio_model=f"{AUDIO_EMBEDDER_NAME}@1",
    )


@dataclass
class Components:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    items: ItemStore
    blobs: BlobStore
    keys: ApiKeyStore
    text: TextDocumentAnalyzer
    policy: Policy
    review: ReviewService
    ingest: TextIngestService
    recommender: Recommender
    taxonomy: TaxonomyClassifier | None
    text_risk: TextRiskModel | None
    fuser: ItemFuser | None
    media: MediaIngestService
    jobs: JobRunner
    processes: ProcessRegistry

    def recover_orphans(self) -> int:
        """Finish work no live process owns (a crashed worker's items and jobs); the
        server calls it at start and every ``recovery_seconds``."""
        self.media.remove_stale_spool_files(2 * self.settings.request_timeout_s)
        return self.ingest.resume_unfinished() + self.media.resume_unfinished()

    def retry_item(self, item_id: str) -> ItemOut:
        return retry.retry_item(self.ingest, self.media, item_id)

    def retry_failed(self) -> list[ItemOut]:
        return retry.retry_failed(self.ingest, self.media)

    def close(self) -> None:
        self.recommender.close()
        self.processes.retire()
        self.engine.dispose()


def build_text_risk(settings: Settings, embedder: TextEmbedder | None) -> TextRiskModel | None:
    import moderation.risk.model  # noqa: F401  (registers the risk models)

    factory = resolve(risk_models, settings.text_risk_model)
    try:
        model: TextRiskModel = factory(settings.text_risk_dir, embedder)
        return model
    except (ModelNotAvailable, ModelLoadFailed, InvalidConfig) as exc:
        log.error("text risk model unavailable, risk will be 'not assessed': %s", exc)
        return None


def build_taxonomy(settings: Settings, embedder: TextEmbedder | None) -> TaxonomyClassifier | None:
    if embedder is None:
        return None
    from taxonomy.classifier import ClassifierSettings, TaxonomyClassifier

    classifier = TaxonomyClassifier.load(
        embedder,
        tree=settings.taxonomy_tree,
        heads_dir=settings.taxonomy_heads_dir,
        cache_dir=settings.cache_dir,
        settings=ClassifierSettings(
            max_labels=settings.taxonomy_max_labels,
            min_confidence=settings.taxonomy_min_confidence,
        ),
    )
    classifier.warm()
    return classifier


def policy_gate(review: ReviewService) -> ModerationGate:
    def gate(items: Sequence[AnalysedItem]) -> None:
        review.apply_policies([(item_id, review.policy.route(scores, item_id))
                               for item_id, scores in items])

    return gate


@dataclass
class AnalysisStack:
    """Everything that turns an item into an analysis; no database needed. The text
    models run in this process (``build_analysis_stack``: the CLI, bulk import, tests,
    the text-analysis service) or in the text-analysis service (``build_remote_analysis_
    stack``: the API workers); ``analyzer``, ``enrichment``, ``text_risk`` and
    ``taxonomy`` are the text models where they are in this process."""

    text: TextDocumentAnalyzer
    fuser: ItemFuser | None
    media: MediaAnalyzer
    analyzer: TextAnalyzer | None = None
    enrichment: Enrichment | None = None
    text_risk: TextRiskModel | None = None
    taxonomy: TaxonomyClassifier | None = None

    def media_pipeline(self) -> MediaItemPipeline:
        return MediaItemPipeline(self.text, self.fuser, self.media)


def text_limits(settings: Settings) -> TextLimits:
    return TextLimits(
        max_text_chars=settings.max_text_chars,
        max_title_chars=settings.max_title_chars,
        max_tags=settings.max_tags,
    )


@dataclass
class TextModels:
    """The text models of one process: what the text-analysis service holds."""

    analyzer: TextAnalyzer
    text_risk: TextRiskModel | None
    taxonomy: TaxonomyClassifier | None

    def stages(self, fuser: ItemFuser | None) -> Enrichment:
        return Enrichment(
            risk=self.text_risk.score_items if self.text_risk is not None else None,
            labels=self.taxonomy.classify_documents if self.taxonomy is not None else None,
            fuser=fuser,
        )


def build_text_models(
    settings: Settings, embedder: TextEmbedder | None, embedder_unavailable_reason: str | None,
) -> TextModels:
    """spaCy, language id, keywords over the encoder, the text-risk and taxonomy heads."""
    import analyzers.entities  # noqa: F401  (registers the entity extractors)
    from analyzers.language import LanguageIdentifier
    from analyzers.text import TextAnalyzer

    analyzer = TextAnalyzer(
        embedder,
        resolve(entity_extractors, settings.entity_extractor)(settings.spacy_pipeline),
        LanguageIdentifier(),
        embedder_unavailable_reason=embedder_unavailable_reason,
        # One inference thread means one core for this process (a Ray actor's CPU): spaCy
        # and the encoder then take turns rather than overlap.
        overlap_encoder=settings.inference_threads != 1,
    )
    return TextModels(
        analyzer, build_text_risk(settings, embedder), build_taxonomy(settings, embedder)
    )


def build_analysis_stack(
    settings: Settings, embedder: TextEmbedder | None, embedder_unavailable_reason: str | None,
    *, visual: VisualEmbedder | None = None, visual_unavailable_reason: str | None = None,
) -> AnalysisStack:
    """Every model in this process. ``visual``/``visual_unavailable_reason`` both None:
    the visual embedder is built here."""
    if visual is None and visual_unavailable_reason is None:
        visual, visual_unavailable_reason = build_visual_embedder(settings)
    models = build_text_models(settings, embedder, embedder_unavailable_reason)
    fuser = build_fuser(
        embedder.model.id if embedder is not None else None,
        visual.model.id if visual is not None else None,
    )
    enrichment = models.stages(fuser)
    text = InProcessTextAnalysis(models.analyzer, enrichment)
    media = build_media_analyzer(
        settings, visual, visual_unavailable_reason, text.analyze_transcript
    )
    return AnalysisStack(
        text, fuser, media, analyzer=models.analyzer, enrichment=enrichment,
        text_risk=models.text_risk, taxonomy=models.taxonomy,
    )


def build_remote_analysis_stack(
    settings: Settings, text_client: Any, text_model_id: str | None,
    *, visual: VisualEmbedder | None, visual_unavailable_reason: str | None,
    media_models: MediaModelSet,
) -> AnalysisStack:
    """The text models behind the text-analysis service (``text_client``, whose encoder
    is ``text_model_id``), the media models behind theirs (``media_models``, their
    clients); in this process only fusion and media decoding, hashing and features."""
    from serving.model_clients import TextAnalysisClient

    fuser = build_fuser(text_model_id, visual.model.id if visual is not None else None)
    text = TextAnalysisClient(text_client, fuser)
    media = build_media_analyzer(
        settings, visual, visual_unavailable_reason, text.analyze_transcript, media_models
    )
    return AnalysisStack(text, fuser, media)


def build_components(
    settings: Settings,
    *,
    embedder: TextEmbedder | None = None,
    embedder_unavailable_reason: str | None = None,
    visual_embedder: VisualEmbedder | None = None,
    visual_unavailable_reason: str | None = None,
    analysis: AnalysisStack | None = None,
    job_spawner: Spawner = inline_spawner,
    migrate: bool = True,
    process_role: str = "cli",
) -> Components:
    """Jobs run with ``job_spawner`` (inline by default, as the CLI wants); the server
    passes one that runs them on its event loop's worker threads. ``analysis``: the
    server's (``build_remote_analysis_stack``); None builds every model here."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.db_url)
    if migrate:
        upgrade(engine)
    sessions = make_session_factory(engine)
    processes = ProcessRegistry(
        sessions, role=process_role, heartbeat_seconds=settings.heartbeat_seconds,
        orphan_after_s=2 * settings.request_timeout_s,
    )
    processes.register()
    items = ItemStore(sessions)
    stack = analysis or build_analysis_stack(
        settings, embedder, embedder_unavailable_reason,
        visual=visual_embedder, visual_unavailable_reason=visual_unavailable_reason,
    )
    policy = Policy.load(settings.policy_file)
    review = ReviewService(sessions, items, policy)
    recommender = Recommender.open(
        sessions,
        # Every REELSIFT_RECOMMENDER__... setting, with what only the wiring knows.
        settings.recommender.model_copy(update={
            "index_dir": settings.index_dir,
            "model_dir": settings.data_dir / "models" / "ranker",
            "fused_model_id": stack.fuser.model.id if stack.fuser is not None else None,
            "follow_seconds": settings.feed_follow_seconds,
            # Workers, replicas and CLI imports share the database.
            "multi_process": True,
        }),
        items,
        online=redis_online(settings),
    )
    ingest = TextIngestService(
        items, stack.text, text_limits(settings), policy_gate(review), processes=processes,
    )
    blobs = BlobStore(settings.media_dir)
    jobs = JobRunner(
        JobStore(sessions, processes), spawner=job_spawner, max_attempts=settings.max_job_attempts
    )
    limits = intake_limits(settings)
    media = MediaIngestService(
        ingest.views, ingest.gate, ingest.limits, blobs, stack.media_pipeline(), limits, jobs,
        PerceptualHashIndex(sessions, limits.near_duplicate_max_distance), processes=processes,
    )
    return Components(
        settings=settings, engine=engine, sessions=sessions, items=items,
        blobs=blobs, keys=ApiKeyStore(sessions, cache_seconds=settings.auth_cache_seconds),
        text=stack.text, policy=policy, review=review, ingest=ingest,
        recommender=recommender, taxonomy=stack.taxonomy, text_risk=stack.text_risk,
        fuser=stack.fuser, media=media, jobs=jobs, processes=processes,
    )
