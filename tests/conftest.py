"""Shared fixtures: real databases (SQLite file and, when configured, PostgreSQL).

PostgreSQL tests need ``REELSIFT_TEST_POSTGRES_URL`` (``scripts/start-test-postgres.sh``
prints it). Without it they are skipped, unless ``REELSIFT_REQUIRE_POSTGRES=1`` (CI),
where a missing server is a failure rather than a silent skip.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, create_engine, text

from core.storage.db import make_engine, upgrade
from core.storage.models_index import import_all_table_modules
from serving.launcher import launch, stop_process

PG_URL = os.environ.get("REELSIFT_TEST_POSTGRES_URL")
REQUIRE_PG = os.environ.get("REELSIFT_REQUIRE_POSTGRES") == "1"
REDIS_URL = os.environ.get("REELSIFT_TEST_REDIS_URL")
REQUIRE_REDIS = os.environ.get("REELSIFT_REQUIRE_REDIS") == "1"
REDIS_CLUSTER_URL = os.environ.get("REELSIFT_TEST_REDIS_CLUSTER_URL")


def _migrated(engine: Engine) -> Engine:
    # The schema comes from the migrations alone, as in production.
    upgrade(engine)
    import_all_table_modules()
    return engine


@pytest.fixture
def sqlite_engine(tmp_path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'reelsift.db'}")
    yield _migrated(engine)
    engine.dispose()


@contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """The URL of a new, empty database on the test server, dropped afterwards."""
    if not PG_URL:
        if REQUIRE_PG:
            pytest.fail("REELSIFT_REQUIRE_POSTGRES=1 but REELSIFT_TEST_POSTGRES_URL is not set")
        pytest.skip(
            "no PostgreSQL: set REELSIFT_TEST_POSTGRES_URL (scripts/start-test-postgres.sh)"
        )
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def postgres_engine() -> Iterator[Engine]:
    with fresh_postgres_database() as url:
        engine = make_engine(url)
        try:
            yield _migrated(engine)
        finally:
            engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_database_url(request, tmp_path) -> Iterator[str]:
    """A database with no schema yet, on both databases."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_engine(request) -> Engine:
    """The same test on both databases the design supports."""
    return request.getfixturevalue(f"{request.param}_engine")


def required_redis_url() -> str:
    """The test redis-server's URL (``scripts/start-test-redis.sh``); skips without one
    unless ``REELSIFT_REQUIRE_REDIS=1`` (CI). Tests share the server: each uses its own
    key namespace (``redis_namespace``) instead of flushing it."""
    if not REDIS_URL:
        if REQUIRE_REDIS:
            pytest.fail("REELSIFT_REQUIRE_REDIS=1 but REELSIFT_TEST_REDIS_URL is not set")
        pytest.skip("no Redis: set REELSIFT_TEST_REDIS_URL (scripts/start-test-redis.sh)")
    return REDIS_URL


@pytest.fixture
def redis_url() -> str:
    return required_redis_url()


@pytest.fixture
def redis_namespace() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@dataclass(frozen=True)
class RedisServer:
    """A test Redis: one redis-server, or a Redis Cluster reached through one node."""

    url: str
    cluster: bool

    def connect(self, **options):
        from recommender.stream.connection import connect

        return connect(self.url, cluster=self.cluster, **options)


def required_redis_server(kind: str) -> RedisServer:
    """``redis``: the test redis-server; ``redis-cluster``: the test Redis Cluster
    (``scripts/start-test-redis-cluster.sh``: REELSIFT_TEST_REDIS_CLUSTER_URL), required
    with ``REELSIFT_REQUIRE_REDIS=1``, skipped without it otherwise."""
    if kind == "redis":
        return RedisServer(required_redis_url(), cluster=False)
    if not REDIS_CLUSTER_URL:
        if REQUIRE_REDIS:
            pytest.fail("REELSIFT_REQUIRE_REDIS=1 but REELSIFT_TEST_REDIS_CLUSTER_URL is not set")
        pytest.skip("no Redis Cluster: set REELSIFT_TEST_REDIS_CLUSTER_URL "
                    "(scripts/start-test-redis-cluster.sh)")
    return RedisServer(REDIS_CLUSTER_URL, cluster=True)


@pytest.fixture(params=["redis", "redis-cluster"])
def redis_server(request) -> RedisServer:
    """The same test on one redis-server and on a Redis Cluster."""
    return required_redis_server(request.param)


# -- a real server ---------------------------------------------------------------------------




REPO = Path(__file__).resolve().parent.parent


@dataclass
class LiveServer:
    url: str
    data_dir: Path
    keys: dict[str, str]  # demo key name -> plaintext key (see serving.cli.DEMO_KEY_ROLES)
    log: Path

    def client(self, key_name: str | None = "demo-admin") -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.keys[key_name]}"} if key_name else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=120)


def start_live_server(data_dir: Path, *, demo: bool = True, extra_env: dict[str, str] | None = None,
                      timeout_s: float = 300) -> tuple[LiveServer, subprocess.Popen[bytes]]:
    """`reelsift serve` in a subprocess on a free port, with its own data dir."""
    launched = launch(data_dir, demo=demo, extra_env=extra_env, timeout_s=timeout_s)
    keys_file = data_dir / "demo-keys.json"
    keys = json.loads(keys_file.read_text()) if keys_file.exists() else {}
    server = LiveServer(url=launched.url, data_dir=data_dir, keys=keys, log=launched.log)
    return server, launched.process


stop_live_server = stop_process


@contextmanager
def live_server_at(data_dir: Path, *, extra_env: dict[str, str] | None = None
                   ) -> Iterator[LiveServer]:
    """A real server on ``data_dir`` for the duration of the block."""
    server, process = start_live_server(data_dir, extra_env=extra_env)
    try:
        yield server
    finally:
        stop_live_server(process)


@pytest.fixture(scope="session")
def live_server(tmp_path_factory) -> Iterator[LiveServer]:
    """One real HTTP server for the session, SQLite under a temp dir, demo keys and items."""
    with live_server_at(tmp_path_factory.mktemp("live") / "var") as server:
        yield server


def build_in_process(data_dir: Path):  # type: ignore[no-untyped-def]
    """The whole service's components in this process (no HTTP), on SQLite under data_dir."""
    from serving.settings import Settings
    from serving.wiring import build_components, build_text_embedder

    settings = Settings(data_dir=data_dir, model_cache_dir=REPO / "var" / "test-cache")
    embedder, reason = build_text_embedder(settings)
    return build_components(settings, embedder=embedder, embedder_unavailable_reason=reason)


def analysis_json(item) -> dict:  # type: ignore[no-untyped-def,type-arg]
    """An item's analysis as clients read it (JSON), for assertions on its fields."""
    return item.model_dump(mode="json")["analysis"]
