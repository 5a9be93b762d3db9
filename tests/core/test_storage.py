from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import inspect

from core.contracts import ItemState
from core.errors import NotFound
from core.storage.blobs import BlobStore
from core.storage.db import current_revision, make_session_factory, transaction
from core.storage.items import InvalidTransition, ItemStore, StateChange
from core.storage.tables import ItemRow


def _add_item(store: ItemStore, item_id: str = "i1") -> None:
    with transaction(store.sessions) as s:
        s.add(
            ItemRow(
                id=item_id,
                creator_id="c1",
                title="t",
                text="x",
                tags=[],
                state=ItemState.RECEIVED.value,
                content_sha256="0" * 64,
            )
        )


def test_migrations_create_every_table(db_engine):
    names = set(inspect(db_engine).get_table_names())
    assert {"items", "media_blobs", "item_media", "analyses", "embeddings"} <= names
    assert current_revision(db_engine) is not None


def test_state_transitions_follow_the_design_and_notify(db_engine):
    store = ItemStore(make_session_factory(db_engine))
    seen: list[StateChange] = []
    store.subscribe(seen.extend)
    _add_item(store)
    store.transition("i1", ItemState.ANALYZING)
    store.transition("i1", ItemState.APPROVED)
    with pytest.raises(InvalidTransition):
        store.transition("i1", ItemState.RECEIVED)
    with pytest.raises(NotFound):
        store.transition("missing", ItemState.APPROVED)
    assert [(c.before, c.after) for c in seen] == [
        (ItemState.RECEIVED, ItemState.ANALYZING),
        (ItemState.ANALYZING, ItemState.APPROVED),
    ]
    with transaction(store.sessions) as s:
        assert store.get(s, "i1").state == "approved"


def test_embeddings_round_trip_as_float32(db_engine):
    store = ItemStore(make_session_factory(db_engine))
    _add_item(store)
    vec = np.random.default_rng(0).normal(size=384).astype(np.float32)
    with transaction(store.sessions) as s:
        store.put_embedding(s, "i1", "text", "m@1", vec)
    with transaction(store.sessions) as s:
        store.put_embedding(s, "i1", "text", "m@1", vec * 2)  # replaces, no second row
    with transaction(store.sessions) as s:
        got = store.embeddings(s, "i1")
    assert set(got) == {"text"}
    assert got["text"][0] == "m@1"
    np.testing.assert_array_equal(got["text"][1], vec * 2)


def test_blob_store_deduplicates_by_content(tmp_path):
    blobs = BlobStore(tmp_path)
    a = blobs.put(b"hello")
    b = blobs.put(b"hello")
    assert a == b and blobs.get(a) == b"hello"
    assert len([p for p in tmp_path.rglob("*") if p.is_file()]) == 1


def test_migrations_match_the_table_declarations(db_engine):
    """A table or column declared without a migration fails here, on both databases."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from core.storage.db import Base
    from core.storage.models_index import import_all_table_modules

    import_all_table_modules()
    with db_engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_processes_starting_together_on_a_fresh_database_migrate_one_at_a_time(
        empty_database_url):
    """BentoML starts its workers at once; each upgrades the schema at start (without the
    lock, PostgreSQL fails the second with 'relation already exists')."""
    import subprocess
    import sys

    url = empty_database_url
    import time

    # Everything imported first, then all upgrade at the same instant.
    script = ("import sys, time; import alembic.command; "
              "from core.storage.db import make_engine, upgrade; "
              "engine = make_engine(sys.argv[1]); "
              "time.sleep(max(0.0, float(sys.argv[2]) - time.time())); upgrade(engine)")
    start = str(time.time() + 5)
    workers = [subprocess.Popen([sys.executable, "-c", script, url, start],
                                stderr=subprocess.PIPE) for _ in range(3)]
    errors = [w.communicate(timeout=120)[1].decode() for w in workers]
    assert [w.returncode for w in workers] == [0, 0, 0], errors
    from alembic.script import ScriptDirectory

    from core.storage.db import alembic_config, make_engine

    engine = make_engine(url)
    head = ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
    assert head is not None and current_revision(engine) == head
