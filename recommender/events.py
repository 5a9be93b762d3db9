"""The event log: batches in, stored once by ``event_id``, applied before ingest returns.

Storage is append-only (``recommender.tables.EventRow``) with a unique ``event_id``; the
insert is ``INSERT … ON CONFLICT DO NOTHING RETURNING`` on both SQLite and PostgreSQL, so
a batch posted twice, or by two replicas at once, stores each event once. Applying reads
the log forward from the last applied row id (``catch_up``): the same call replays the
whole log at start and lets a replica pick up events another replica stored.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC
from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session, sessionmaker

from core.contracts import Event
from core.errors import InvalidInput
from core.storage.db import engine_of, transaction
from recommender.state import OnlineState
from recommender.tables import EventRow

INSERT_CHUNK = 500
READ_CHUNK = 5000
# The per-request catch-up probe, built once (110 us a call built each time, 30 prebuilt).
_ANY_EVENT_AFTER = select(EventRow.id).where(EventRow.id > bindparam("cursor")).limit(1)


class IngestResult(BaseModel):
    received: int
    stored: int
    duplicates: int


def parse_events(raw: Iterable[Event | Mapping[str, Any]]) -> list[Event]:
    """Validate a batch; the first invalid event names its position and field."""
    events: list[Event] = []
    for n, entry in enumerate(raw):
        if isinstance(entry, Event):
            events.append(entry)
            continue
        try:
            events.append(Event.model_validate(entry))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ()))
            raise InvalidInput(
                f"event {n}: {where or 'event'}: {first.get('msg')}", index=n, field=where,
            ) from exc
    return events


def _insert_statement(
    session: Session, rows: list[dict[str, Any]], table: Any = EventRow,
    keys: Sequence[str] = ("event_id",),
) -> Any:
    """``INSERT … ON CONFLICT (keys) DO NOTHING``; for events, ``RETURNING event_id``."""
    dialect = session.get_bind().dialect.name
    insert: Any
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        insert = pg_insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        insert = sqlite_insert
    else:  # pragma: no cover - the design supports these two
        raise InvalidInput(f"unsupported database dialect {dialect!r} for the event log")
    statement = insert(table).values(rows).on_conflict_do_nothing(index_elements=list(keys))
    return statement.returning(EventRow.event_id) if table is EventRow else statement


def row_to_event(row: EventRow) -> Event:
    ts = row.ts if row.ts.tzinfo is not None else row.ts.replace(tzinfo=UTC)
    return Event(
        event_id=row.event_id, user_id=row.user_id, item_id=row.item_id,
        type=row.type,  # type: ignore[arg-type]
        ts=ts, watch_ms=row.watch_ms, item_duration_ms=row.item_duration_ms,
        context=row.context or {},
    )


class EventLog:
    """``state`` None makes a store-only log (bulk imports in a separate process)."""

    def __init__(self, sessions: sessionmaker[Session], state: OnlineState | None) -> None:
        self.sessions = sessions
        self.state = state
        self._cursor = 0
        self._apply_lock = threading.Lock()

    def ingest(self, events: Sequence[Event | Mapping[str, Any]]) -> IngestResult:
        """Store new events and apply them; the next feed request sees them."""
        result = self.store(events)
        self.catch_up()
        return result

    def store(self, events: Sequence[Event | Mapping[str, Any]]) -> IngestResult:
        """Store new events without applying them (a running service applies on catch-up)."""
        parsed = parse_events(events)
        unique = list({e.event_id: e for e in parsed}.values())
        stored = 0
        with transaction(self.sessions) as session:
            for start in range(0, len(unique), INSERT_CHUNK):
                chunk = unique[start : start + INSERT_CHUNK]
                rows = [
                    {
                        "event_id": e.event_id, "user_id": e.user_id, "item_id": e.item_id,
                        "type": e.type, "ts": e.ts if e.ts.tzinfo else e.ts.replace(tzinfo=UTC),
                        "watch_ms": e.watch_ms, "item_duration_ms": e.item_duration_ms,
                        "context": e.context,
                    }
                    for e in chunk
                ]
                stored += len(session.execute(_insert_statement(session, rows)).all())
        return IngestResult(received=len(parsed), stored=stored,
                            duplicates=len(parsed) - stored)

    def catch_up(self) -> int:
        """Apply every stored event not applied yet, in log order; returns how many."""
        applied = 0
        state = self.state
        if state is None:
            return 0
        if not self._has_unapplied():
            return 0
        with self._apply_lock:
            while True:
                with self.sessions() as session:
                    rows = session.scalars(
                        select(EventRow).where(EventRow.id > self._cursor)
                        .order_by(EventRow.id).limit(READ_CHUNK)
                    ).all()
                    events = [(row.id, row_to_event(row)) for row in rows]
                if not events:
                    break
                for row_id, event in events:
                    state.apply(event)
                    self._cursor = row_id
                applied += len(events)
        if applied:
            state.cohorts.maybe_refresh(state.profiles, state.now())
            state.collaborative.maybe_refresh(background=state.settings.background_refits)
        return applied

    def _has_unapplied(self) -> bool:
        """One indexed probe on a Core connection: feeds ask this on every request."""
        with engine_of(self.sessions).connect() as conn:
            return conn.execute(_ANY_EVENT_AFTER, {"cursor": self._cursor}).first() is not None

    @property
    def cursor(self) -> int:
        return self._cursor

    def count(self) -> int:
        from sqlalchemy import func

        with self.sessions() as session:
            return int(session.scalar(select(func.count()).select_from(EventRow)) or 0)
