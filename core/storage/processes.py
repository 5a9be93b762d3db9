"""Which reelsift processes are alive, so recovery never takes work from a live one.

Several processes share one database: the BentoML workers of one server, replicas on
PostgreSQL, a ``reelsift import`` beside a running server. Each registers a row in
``server_processes`` and renews ``last_seen`` every ``heartbeat_seconds`` on a daemon
thread; a row not renewed for ``STALE_AFTER_BEATS`` beats belongs to a dead process.

Recovery uses it two ways:

- a job records the process that claimed it (``jobs.owner``): a ``running`` job whose
  owner is not alive is requeued (or failed after its attempts), and no other job is;
- an item left in ``received``/``analyzing`` by a synchronous request carries no owner,
  but the process that was analyzing it registered before it touched it. So the item is
  orphaned when it was last updated before every live process started (the server
  restarted), or longer ago than ``orphan_after_s`` (no request lives that long).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import DateTime, Integer, String, delete, func, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from core.storage.db import Base, transaction
from core.storage.tables import as_utc, utcnow

log = logging.getLogger(__name__)

STALE_AFTER_BEATS = 3
# Rows of processes dead this long are deleted (they only matter for a few beats).
FORGET_AFTER = timedelta(days=1)


class ProcessRow(Base):
    __tablename__ = "server_processes"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    role: Mapped[str] = mapped_column(String(32))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class ProcessRegistry:
    """This process's row in ``server_processes`` and the liveness questions recovery asks."""

    def __init__(
        self, sessions: sessionmaker[Session], *, role: str = "server",
        heartbeat_seconds: float = 5.0, orphan_after_s: float = 600.0,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        """``orphan_after_s``: unowned work untouched this long is nobody's even while
        other processes live (set it above the longest request)."""
        self.sessions = sessions
        self.role = role
        self.heartbeat_seconds = heartbeat_seconds
        self.orphan_after = timedelta(seconds=orphan_after_s)
        self.clock = clock
        self.id = uuid.uuid4().hex
        self.started_at: datetime | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def stale_after(self) -> timedelta:
        return timedelta(seconds=self.heartbeat_seconds * STALE_AFTER_BEATS)

    def register(self, *, heartbeat: bool = True) -> None:
        """Insert this process's row; ``heartbeat`` starts the thread that keeps it alive."""
        with transaction(self.sessions) as session:
            row = self._new_row(session)
            session.execute(delete(ProcessRow).where(
                ProcessRow.last_seen < row.last_seen - FORGET_AFTER))
        if heartbeat and self._thread is None:
            self._thread = threading.Thread(target=self._beat_forever, daemon=True,
                                            name="reelsift-heartbeat")
            self._thread.start()

    def beat(self) -> None:
        with transaction(self.sessions) as session:
            updated = session.execute(
                update(ProcessRow).where(ProcessRow.id == self.id)
                .values(last_seen=self.clock())
            )
            if getattr(updated, "rowcount", 1) == 0:
                # Deleted as dead (a long pause, a clock jump): alive again from now on.
                self._new_row(session)

    def _new_row(self, session: Session) -> ProcessRow:
        now = self.clock()
        self.started_at = now
        row = ProcessRow(id=self.id, host=socket.gethostname()[:255], pid=os.getpid(),
                         role=self.role, started_at=now, last_seen=now)
        session.add(row)
        return row

    def _beat_forever(self) -> None:
        while not self._stop.wait(self.heartbeat_seconds):
            try:
                self.beat()
            except Exception:  # the next beat retries; three misses make us look dead
                log.exception("process heartbeat failed")

    def retire(self) -> None:
        """Stop beating and delete the row: this process's work is now recoverable."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with transaction(self.sessions) as session:
            session.execute(delete(ProcessRow).where(ProcessRow.id == self.id))

    # -- questions recovery asks -------------------------------------------------------
    def reap_local(self, session: Session) -> int:
        """Delete rows of processes on this host whose pid is gone: a restart on one
        machine recovers at once instead of waiting for their heartbeats to go stale."""
        host = socket.gethostname()[:255]
        dead = [
            process_id
            for process_id, pid in session.execute(
                select(ProcessRow.id, ProcessRow.pid).where(ProcessRow.host == host,
                                                            ProcessRow.id != self.id)
            )
            if not _pid_alive(pid)
        ]
        if dead:
            session.execute(delete(ProcessRow).where(ProcessRow.id.in_(dead)))
        return len(dead)

    def live_ids(self, session: Session) -> set[str]:
        self.reap_local(session)
        cutoff = self.clock() - self.stale_after
        return set(session.scalars(select(ProcessRow.id).where(ProcessRow.last_seen >= cutoff)))

    def orphaned_before(self, session: Session) -> datetime:
        """Unowned work last updated before this instant belongs to no live process."""
        self.reap_local(session)
        now = self.clock()
        oldest_live = session.scalar(
            select(func.min(ProcessRow.started_at))
            .where(ProcessRow.last_seen >= now - self.stale_after)
        )
        by_timeout = now - self.orphan_after
        if oldest_live is None:
            return now
        return max(as_utc(oldest_live), by_timeout)



def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True
