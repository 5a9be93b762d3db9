"""Fixtures for the review queue: a real database, item store, policy and a settable clock."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert

import moderation.review.tables  # noqa: F401  (registers the tables before create_all)
from core.contracts import ItemState, RiskCategory, RiskScore
from core.storage.db import make_session_factory
from core.storage.items import ItemStore, StateChange
from core.storage.tables import ItemRow
from moderation.policy import Policy, Route
from moderation.review import ReviewService
from serving.auth import Principal, Role


class SettableClock:
    def __init__(self) -> None:
        self.now = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def add_items(store: ItemStore, ids: Iterable[str], state: ItemState) -> None:
    rows = [
        {"id": i, "creator_id": "creator", "title": f"title {i}", "text": "", "tags": [],
         "state": state.value, "content_sha256": "0" * 64}
        for i in ids
    ]
    with store.sessions() as session, session.begin():
        session.execute(insert(ItemRow), rows)


def flag(service: ReviewService, item_id: str, **values: float) -> int:
    """Route an analysed item through the policy to review; returns its task id."""
    scores = [RiskScore(category=RiskCategory(k), score=v) for k, v in values.items()]
    decision = service.policy.route(scores, item_id=item_id)
    assert decision.route is Route.REVIEW
    task = service.apply_policy(item_id, decision)
    assert task is not None
    return task.id


def item_state(store: ItemStore, item_id: str) -> str:
    with store.sessions() as session:
        return store.get(session, item_id).state


@pytest.fixture
def clock() -> SettableClock:
    return SettableClock()


@pytest.fixture
def policy() -> Policy:
    return Policy.load()


@pytest.fixture
def store(db_engine) -> ItemStore:
    return ItemStore(make_session_factory(db_engine))


@pytest.fixture
def changes(store: ItemStore) -> list[StateChange]:
    seen: list[StateChange] = []
    store.subscribe(seen.extend)
    return seen


@pytest.fixture
def service(store: ItemStore, policy: Policy, clock: SettableClock) -> ReviewService:
    return ReviewService(store.sessions, store, policy, clock=clock)


@pytest.fixture
def alice() -> Principal:
    return Principal("alice", Role.MODERATOR)


@pytest.fixture
def bob() -> Principal:
    return Principal("bob", Role.MODERATOR)


@pytest.fixture
def senior() -> Principal:
    return Principal("sam", Role.SENIOR_MODERATOR)
