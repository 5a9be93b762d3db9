from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import Engine

import recommender.tables  # noqa: F401  (registers the events table before create_all)
from core.contracts import Event
from core.storage.db import make_session_factory
from core.storage.items import ItemStore
from recommender.catalog import Catalog, CatalogItem
from recommender.service import Recommender
from recommender.settings import RecommenderSettings
from recommender.simulation import SyntheticWorld
from recommender.state import OnlineState

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


class ManualClock:
    def __init__(self, start: datetime = T0) -> None:
        self.now = start.timestamp()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    @property
    def dt(self) -> datetime:
        return datetime.fromtimestamp(self.now, tz=UTC)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


def make_settings(tmp_path: Path, **overrides: object) -> RecommenderSettings:
    base: dict[str, object] = {
        "index_dir": tmp_path / "index", "model_dir": tmp_path / "model",
        "exploration_epsilon": 0.0,
        "background_refits": False,  # collaborative refits inline: tests are repeatable
    }
    base.update(overrides)
    return RecommenderSettings.model_validate(base)


@pytest.fixture
def small_world() -> SyntheticWorld:
    return SyntheticWorld(n_items=120, n_categories=6, dim=16, seed=7,
                          start=T0 - timedelta(days=10), hours=24 * 10)


@pytest.fixture
def open_recommender(tmp_path) -> Callable[..., tuple[Recommender, ItemStore]]:
    def _open(engine: Engine, clock: ManualClock, **overrides: object):
        sessions = make_session_factory(engine)
        store = ItemStore(sessions)
        rec = Recommender.open(sessions, make_settings(tmp_path, **overrides), store,
                               clock=clock)
        return rec, store
    return _open


def memory_state(
    items: list[tuple[CatalogItem, np.ndarray | None]], settings: RecommenderSettings,
    clock: ManualClock, dim: int = 4,
) -> OnlineState:
    catalog = Catalog(settings, dim, "test@1")
    for item, vec in items:
        catalog.add(item, vec)
    return OnlineState.create(settings, catalog, clock)


_counter = iter(range(10**9))


def ev(user: str, item: str, kind: str, ts: datetime, **extra: object) -> Event:
    return Event(event_id=f"e{next(_counter)}", user_id=user, item_id=item, type=kind,  # type: ignore[arg-type]
                 ts=ts, **extra)  # type: ignore[arg-type]


class Helpers:
    """Plain helpers handed to tests as a fixture (conftest is not importable here)."""

    ManualClock = ManualClock
    make_settings = staticmethod(make_settings)
    memory_state = staticmethod(memory_state)
    ev = staticmethod(ev)
    T0 = T0


@pytest.fixture
def h() -> type[Helpers]:
    return Helpers
