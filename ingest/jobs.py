"""Background jobs (video analysis, large uploads) whose state lives in the database.

A job is a row in ``jobs``: ``queued -> running -> done | failed``, with a progress in
[0, 1] and, when it failed, the reason. The row is written in the same transaction as
the item it works on, so an accepted upload always has either a finished analysis or a
job that will produce one (or say why not).

Running a job: ``JobRunner.submit(job_id)`` hands it to a *spawner* (in the server, an
anyio worker thread on the server's event loop, so the job may call BentoML clients
like any sync route; in the CLI, the calling thread). Claiming is a conditional
``UPDATE ... WHERE state = 'queued'``, so a job runs once even if submitted twice.

Restarts and several processes: a claim records the claiming process (``owner``, an id
in ``core.storage.processes``). ``JobRunner.recover()`` (at start, then periodically in the
server) puts every ``running`` job whose owner is no longer alive back to ``queued`` if
it has started fewer than ``max_attempts`` times, else ends it ``failed`` with the
reason; jobs of live processes are left alone. Then it submits the queued jobs: whichever
process claims one first runs it, so idle workers also take queued work from busy ones.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import DateTime, Float, ForeignKey, Integer, String, Text, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from core.contracts import UtcDateTime
from core.errors import NotFound, ReelsiftError
from core.storage.db import Base, transaction, write_transaction
from core.storage.processes import ProcessRegistry
from core.storage.tables import utcnow

log = logging.getLogger(__name__)


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class JobRow(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    item_id: Mapped[str] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"), index=True)
    state: Mapped[str] = mapped_column(String(16), index=True)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # The process (core.storage.processes) running it; recovery leaves live owners' jobs alone.
    owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class JobOut(BaseModel):
    """What ``GET /v1/jobs/{id}`` answers."""

    id: str
    kind: str
    state: JobState
    progress: float = Field(ge=0.0, le=1.0)
    item_id: str
    error: str | None
    attempts: int
    created_at: UtcDateTime
    updated_at: UtcDateTime
    finished_at: UtcDateTime | None

    @classmethod
    def from_row(cls, row: JobRow) -> JobOut:
        return cls(
            id=row.id, kind=row.kind, state=JobState(row.state), progress=row.progress,
            item_id=row.item_id, error=row.error, attempts=row.attempts,
            created_at=row.created_at, updated_at=row.updated_at, finished_at=row.finished_at,
        )

    @property
    def finished(self) -> bool:
        return self.state in (JobState.DONE, JobState.FAILED)


# Reports progress in [0, 1]; the runner stores it (monotonically) for GET /v1/jobs/{id}.
ProgressFn = Callable[[float], None]
# Does the work of one job; raising fails the job with the exception's message.
JobHandler = Callable[[JobOut, ProgressFn], None]
# Runs a zero-argument callable somewhere (a worker thread, or inline).
Spawner = Callable[[Callable[[], None]], None]


class JobStore:
    def __init__(
        self, sessions: sessionmaker[Session], processes: ProcessRegistry | None = None
    ) -> None:
        """``processes``: this process's registration; None (a single process, tests):
        every ``running`` job found at recovery is taken as interrupted."""
        self.sessions = sessions
        self.processes = processes

    @staticmethod
    def create(session: Session, kind: str, item_id: str) -> str:
        """A queued job, in the caller's transaction (so it commits with its item)."""
        job_id = uuid.uuid4().hex
        session.add(
            JobRow(id=job_id, kind=kind, item_id=item_id, state=JobState.QUEUED.value,
                   progress=0.0, attempts=0)
        )
        return job_id

    def get(self, job_id: str) -> JobOut:
        with transaction(self.sessions) as session:
            row = session.get(JobRow, job_id)
            if row is None:
                raise NotFound(f"no job with id {job_id!r}", job_id=job_id)
            return JobOut.from_row(row)

    def latest_for_item(self, session: Session, item_id: str) -> JobOut | None:
        row = session.scalars(
            select(JobRow).where(JobRow.item_id == item_id).order_by(JobRow.created_at.desc())
        ).first()
        return None if row is None else JobOut.from_row(row)

    def claim(self, job_id: str) -> bool:
        """queued -> running, counting the attempt; False when someone else has it."""
        with transaction(self.sessions) as session:
            result: Any = session.execute(
                update(JobRow)
                .where(JobRow.id == job_id, JobRow.state == JobState.QUEUED.value)
                .values(state=JobState.RUNNING.value, attempts=JobRow.attempts + 1,
                        error=None, updated_at=utcnow(),
                        owner=self.processes.id if self.processes is not None else None)
            )
            return bool(result.rowcount == 1)

    def set_progress(self, job_id: str, progress: float) -> None:
        value = min(max(float(progress), 0.0), 1.0)
        with transaction(self.sessions) as session:
            session.execute(
                update(JobRow)
                .where(JobRow.id == job_id, JobRow.state == JobState.RUNNING.value,
                       JobRow.progress < value)
                .values(progress=value, updated_at=utcnow())
            )

    def finish(self, job_id: str) -> None:
        self._end(job_id, JobState.DONE, None)

    def fail(self, job_id: str, reason: str) -> None:
        self._end(job_id, JobState.FAILED, reason)

    def _end(self, job_id: str, state: JobState, reason: str | None) -> None:
        now = utcnow()
        values: dict[str, Any] = {"state": state.value, "error": reason, "updated_at": now,
                                  "finished_at": now}
        if state is JobState.DONE:
            values["progress"] = 1.0
        with transaction(self.sessions) as session:
            session.execute(update(JobRow).where(JobRow.id == job_id).values(**values))

    def recover(self, max_attempts: int) -> tuple[list[str], list[tuple[str, str, str]]]:
        """After a restart: (job ids to run, [(job id, item id, reason)] given up on)."""
        given_up: list[tuple[str, str, str]] = []
        with write_transaction(self.sessions) as session:
            live = self.processes.live_ids(session) if self.processes is not None else set()
            for row in session.scalars(
                select(JobRow).where(JobRow.state == JobState.RUNNING.value)
                .with_for_update(skip_locked=True)
            ):
                if row.owner is not None and row.owner in live:
                    continue  # a live process is running it
                if row.attempts >= max_attempts:
                    reason = (
                        f"the server stopped while this job was running, {row.attempts} "
                        f"time(s); giving up after max_job_attempts={max_attempts} "
                        "(REELSIFT_MAX_JOB_ATTEMPTS)"
                    )
                    row.state = JobState.FAILED.value
                    row.error = reason
                    row.finished_at = utcnow()
                    given_up.append((row.id, row.item_id, reason))
                else:
                    row.state = JobState.QUEUED.value
                    row.owner = None
                    row.error = f"interrupted by a server restart during attempt {row.attempts}"
            queued = list(
                session.scalars(
                    select(JobRow.id)
                    .where(JobRow.state == JobState.QUEUED.value)
                    .order_by(JobRow.created_at)
                )
            )
        return queued, given_up


def inline_spawner(work: Callable[[], None]) -> None:
    """Runs the job in the caller's thread: the CLI and tests wait for their jobs."""
    work()


def thread_spawner(max_workers: int = 1) -> Spawner:
    """Plain daemon threads, at most ``max_workers`` jobs at a time (no BentoML clients)."""
    slots = threading.BoundedSemaphore(max_workers)

    def spawn(work: Callable[[], None]) -> None:
        def run() -> None:
            with slots:
                work()

        threading.Thread(target=run, name="reelsift-job", daemon=True).start()

    return spawn


def event_loop_spawner(loop: asyncio.AbstractEventLoop, max_workers: int = 1) -> Spawner:
    """Anyio worker threads of the server's loop, at most ``max_workers`` at a time.

    Jobs call the BentoML embedding clients, whose sync API works only from anyio worker
    threads of the loop they belong to, as sync routes do.
    """
    import anyio
    import anyio.to_thread

    limiter: list[anyio.CapacityLimiter] = []
    pending: set[Future[None]] = set()

    async def run(work: Callable[[], None]) -> None:
        if not limiter:
            limiter.append(anyio.CapacityLimiter(max_workers))
        await anyio.to_thread.run_sync(work, limiter=limiter[0])

    def spawn(work: Callable[[], None]) -> None:
        future = asyncio.run_coroutine_threadsafe(run(work), loop)
        # The loop only keeps weak references to tasks; this keeps them alive.
        pending.add(future)
        future.add_done_callback(pending.discard)

    return spawn


def server_spawner(max_workers: int = 1) -> Spawner:
    """For the server: the running event loop's worker threads, found from wherever this
    is called (the loop's thread or one of its anyio worker threads)."""
    import anyio.from_thread

    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        try:
            loop = anyio.from_thread.run_sync(asyncio.get_running_loop)
        except RuntimeError:
            log.warning("no event loop to run media jobs on; using plain threads")
            return thread_spawner(max_workers)
    return event_loop_spawner(loop, max_workers)


class JobRunner:
    """Runs jobs by kind; a job ends ``done`` or ``failed`` with the handler's reason."""

    def __init__(
        self, store: JobStore, handlers: dict[str, JobHandler] | None = None,
        spawner: Spawner = inline_spawner, max_attempts: int = 2,
    ) -> None:
        self.store = store
        self.handlers: dict[str, JobHandler] = dict(handlers or {})
        self.spawner = spawner
        self.max_attempts = max_attempts
        # Told about jobs given up at recovery, so their items can end ``failed`` too.
        self.on_given_up: Callable[[str, str], None] | None = None
        # Submitted here and not yet run: periodic recovery does not submit them again.
        self._submitted: set[str] = set()
        self._submitted_lock = threading.Lock()

    def register(self, kind: str, handler: JobHandler) -> None:
        self.handlers[kind] = handler

    def submit(self, job_id: str) -> None:
        with self._submitted_lock:
            if job_id in self._submitted:
                return
            self._submitted.add(job_id)

        def work() -> None:
            try:
                self.run(job_id)
            finally:
                with self._submitted_lock:
                    self._submitted.discard(job_id)

        self.spawner(work)

    def run(self, job_id: str) -> JobOut:
        """Claim and run one job now, in this thread; returns its final view."""
        if not self.store.claim(job_id):
            return self.store.get(job_id)
        job = self.store.get(job_id)
        handler = self.handlers.get(job.kind)
        try:
            if handler is None:
                raise ReelsiftError(f"no handler for job kind {job.kind!r}")
            handler(job, lambda p: self.store.set_progress(job_id, p))
        except ReelsiftError as exc:
            log.warning("job %s (%s) failed: %s", job_id, job.kind, exc)
            self.store.fail(job_id, exc.message)
        except Exception as exc:
            log.exception("job %s (%s) crashed", job_id, job.kind)
            self.store.fail(job_id, f"{type(exc).__name__}: {exc}")
        else:
            self.store.finish(job_id)
        return self.store.get(job_id)

    def recover(self) -> int:
        """End or requeue jobs of dead processes, then submit every queued one."""
        queued, given_up = self.store.recover(self.max_attempts)
        for job_id, item_id, reason in given_up:
            log.warning("job %s for item %s given up: %s", job_id, item_id, reason)
            if self.on_given_up is not None:
                self.on_given_up(item_id, reason)
        for job_id in queued:
            self.submit(job_id)
        return len(queued)
