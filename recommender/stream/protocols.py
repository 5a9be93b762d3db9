"""The narrow interfaces the service depends on, so the log behind them can change.

``recommender.events.EventLog`` (the database, applied in process) and
``recommender.stream.log.RedisEventLog`` both satisfy ``EventLogProtocol``; a Kafka log
would be a third (not shipped: no broker here to test it against).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from sqlalchemy.orm import Session, sessionmaker

from core.contracts import Event
from recommender.events import IngestResult


class EventLogProtocol(Protocol):
    sessions: sessionmaker[Session]

    def ingest(self, events: Sequence[Event | Mapping[str, Any]]) -> IngestResult:
        """Accept a batch (each ``event_id`` once); the next feed of any process sees it."""
        ...

    def catch_up(self) -> int:
        """Fold into this process what others appended since the last call."""
        ...

    def count(self) -> int:
        ...
