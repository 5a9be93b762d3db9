from __future__ import annotations

import numpy as np
import pytest

from core.contracts import ItemState
from core.errors import InvalidInput
from core.storage.db import make_session_factory, transaction
from core.storage.items import ItemStore
from recommender.catalog import Catalog
from recommender.simulation.world import SIM_MODEL_ID
from recommender.vector_index import VectorIndex


def _all_feed_ids(rec, users, k=50):
    return {i.item_id for u in users for i in rec.feed.feed(u, k).items}


def test_catalog_holds_only_approved_items_with_labels_and_vectors(
        db_engine, small_world, clock, open_recommender):
    sessions = make_session_factory(db_engine)
    small_world.write_to_db(sessions)
    store = ItemStore(sessions)
    held_back = small_world.items[0].id
    store.transition(held_back, ItemState.PENDING_REVIEW)
    rec, _ = open_recommender(db_engine, clock)
    catalog = rec.catalog
    assert len(catalog) == len(small_world.items) - 1 and held_back not in catalog
    assert catalog.index.model_id == SIM_MODEL_ID and len(catalog.index) == len(catalog)
    item = small_world.items[1]
    entry = catalog.get(item.id)
    assert entry.tags == item.tags and entry.categories == ((f"cat-{item.category}", 0.9),)
    assert item.id in catalog.by_tag[item.tags[0]]
    assert item.id in catalog.by_creator[item.creator_id]
    assert catalog.category_names[f"cat-{item.category}"]


@pytest.mark.parametrize("new_state", [ItemState.REMOVED, ItemState.PENDING_REVIEW])
def test_takedown_leaves_every_feed_before_transition_returns(
        db_engine, small_world, clock, open_recommender, new_state):
    small_world.write_to_db(make_session_factory(db_engine))
    rec, store = open_recommender(db_engine, clock, max_per_creator=50, max_per_category=50)
    users = ["new-user", "fan"]
    target = small_world.items[-1]  # newest: the fresh channel proposes it to everyone
    for n in range(3):  # make "fan" a fan of target's category, with a user vector
        same = [i for i in small_world.items if i.category == target.category][n]
        rec.events.ingest([{
            "event_id": f"f{n}", "user_id": "fan", "item_id": same.id, "type": "like",
            "ts": clock.dt,
        }])
    assert target.id in _all_feed_ids(rec, users)
    assert rec.catalog.index.search(target.vector, 1)[0][0] == target.id

    store.transition(target.id, new_state, reason="test takedown")

    assert target.id not in rec.catalog
    assert target.id not in _all_feed_ids(rec, users)
    assert all(hit != target.id for hit, _ in rec.catalog.index.search(target.vector, 5))
    assert all(target.id not in b for b in rec.catalog.by_tag.values())
    if new_state == ItemState.PENDING_REVIEW:  # approved again after review: back
        store.transition(target.id, ItemState.APPROVED)
        assert target.id in rec.catalog
        assert rec.catalog.index.search(target.vector, 1)[0][0] == target.id


def test_changes_made_in_one_transaction_reach_the_catalog_together(
        db_engine, small_world, clock, open_recommender):
    small_world.write_to_db(make_session_factory(db_engine))
    rec, store = open_recommender(db_engine, clock)
    back, down, bounced = (i.id for i in small_world.items[:3])
    for item_id in (back, bounced):
        store.transition(item_id, ItemState.PENDING_REVIEW)
    assert back not in rec.catalog and bounced not in rec.catalog
    with store.changing() as changes:
        changes.transition(back, ItemState.APPROVED)  # approved again
        changes.transition(down, ItemState.REMOVED)  # taken down
        changes.transition(bounced, ItemState.APPROVED)  # approved, then held again
        changes.transition(bounced, ItemState.PENDING_REVIEW)
    assert back in rec.catalog and rec.catalog.index.search(
        small_world.items[0].vector, 1)[0][0] == back
    assert down not in rec.catalog and bounced not in rec.catalog


def test_persisted_index_is_reused_and_aligned_with_the_database(
        sqlite_engine, small_world, clock, open_recommender, tmp_path):
    sessions = make_session_factory(sqlite_engine)
    small_world.write_to_db(sessions)
    rec, store = open_recommender(sqlite_engine, clock)
    rec.close()
    saved = VectorIndex.saved_in(tmp_path / "index")
    assert saved is not None and (saved / "catalog.faiss").exists()
    gone = small_world.items[5]
    # changed while no process followed: the database wins on the next start
    with transaction(sessions) as s:
        store.get(s, gone.id).state = ItemState.REMOVED.value
    rec2, _ = open_recommender(sqlite_engine, clock)
    assert gone.id not in rec2.catalog and gone.id not in rec2.catalog.index
    assert len(rec2.catalog.index) == len(small_world.items) - 1
    assert rec2.catalog.index.rows == len(small_world.items)  # reused, not re-added


def test_vectors_of_another_model_are_never_mixed_in(sqlite_engine, small_world, h, tmp_path):
    sessions = make_session_factory(sqlite_engine)
    small_world.write_to_db(sessions)
    with transaction(sessions) as s:
        ItemStore.put_embedding(s, small_world.items[0].id, "fused", "other@2",
                                np.ones(8, np.float32))
    catalog = Catalog.load(sessions, h.make_settings(tmp_path))
    assert catalog.index.model_id == SIM_MODEL_ID and catalog.index.dim == 16
    assert len(catalog.index) == len(small_world.items)


def test_hnsw_index_removes_at_once_and_compacts(tmp_path):
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(400, 16)).astype(np.float32)
    ids = [f"i{n}" for n in range(400)]
    index = VectorIndex(16, "m@1", exact_below=100, rebuild_fraction=0.25)
    index.add(ids[:50], vectors[:50])
    assert index.kind == "flat"
    index.add(ids[50:], vectors[50:])  # grows past exact_below: switches to HNSW
    assert index.kind == "hnsw" and len(index) == 400
    assert index.search(vectors[7], 1)[0][0] == "i7"
    assert index.remove("i7") and not index.remove("i7")
    assert "i7" not in {i for i, _ in index.search(vectors[7], 20)}
    for n in range(8, 108):  # past the tombstone fraction: compacted
        index.remove(f"i{n}")
    assert index.rows == len(index) == 299
    assert index.search(vectors[200], 1)[0][0] == "i200"
    index.save(tmp_path)
    loaded = VectorIndex.load(tmp_path)
    assert loaded.kind == "hnsw" and len(loaded) == 299
    assert loaded.search(vectors[300], 1)[0][0] == "i300"
    with pytest.raises(InvalidInput):
        index.add(["x"], np.ones((1, 8), np.float32))
