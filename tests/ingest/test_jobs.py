"""Jobs in the database: claimed once, progress kept, failures explained, restarts survived."""

from __future__ import annotations

import asyncio
import threading

import pytest
from sqlalchemy import update

from core.contracts import ItemState
from core.errors import InvalidInput, NotFound
from core.storage.db import make_session_factory, transaction
from core.storage.tables import ItemRow
from ingest.jobs import (
    JobOut,
    JobRow,
    JobRunner,
    JobState,
    JobStore,
    ProgressFn,
    server_spawner,
    thread_spawner,
)
from tests.waiting import wait_until


@pytest.fixture
def store(db_engine) -> JobStore:
    sessions = make_session_factory(db_engine)
    with transaction(sessions) as session:
        for item_id in ("item-a", "item-b", "item-c"):
            session.add(ItemRow(id=item_id, creator_id="c", state=ItemState.RECEIVED.value,
                                content_sha256="0" * 64))
    return JobStore(sessions)


def new_job(store: JobStore, item_id: str = "item-a", kind: str = "work") -> str:
    with transaction(store.sessions) as session:
        return store.create(session, kind, item_id)


def test_a_job_runs_once_keeps_its_progress_and_ends_done(store):
    seen: list[float] = []
    calls: list[str] = []

    def handler(job: JobOut, progress: ProgressFn) -> None:
        calls.append(job.id)
        for value in (0.25, 0.6, 0.4):  # a step backwards must not lower it
            progress(value)
            seen.append(store.get(job.id).progress)

    runner = JobRunner(store, {"work": handler})
    job_id = new_job(store)
    assert store.get(job_id).state is JobState.QUEUED
    final = runner.run(job_id)
    assert seen == [0.25, 0.6, 0.6]
    assert final.state is JobState.DONE and final.progress == 1.0 and final.finished_at
    assert final.attempts == 1 and final.error is None
    runner.run(job_id)  # already done: not claimed again
    assert calls == [job_id]


def test_failures_end_failed_with_the_reason(store):
    def refuses(job: JobOut, progress: ProgressFn) -> None:
        raise InvalidInput("file 0 (clip.mp4): the video/mp4 file has no frames")

    def crashes(job: JobOut, progress: ProgressFn) -> None:
        raise ZeroDivisionError("division by zero")

    runner = JobRunner(store, {"refuses": refuses, "crashes": crashes})
    refused = runner.run(new_job(store, kind="refuses"))
    crashed = runner.run(new_job(store, "item-b", kind="crashes"))
    unknown = runner.run(new_job(store, "item-c", kind="nobody-handles-this"))
    assert refused.state is JobState.FAILED and "has no frames" in (refused.error or "")
    assert crashed.state is JobState.FAILED
    assert crashed.error == "ZeroDivisionError: division by zero"
    assert unknown.state is JobState.FAILED and "nobody-handles-this" in (unknown.error or "")
    with pytest.raises(NotFound):
        store.get("no-such-job")


def test_after_a_restart_running_jobs_resume_or_fail_with_a_reason(store):
    given_up: list[tuple[str, str]] = []
    ran: list[str] = []
    first, second, queued = new_job(store), new_job(store, "item-b"), new_job(store, "item-c")
    with transaction(store.sessions) as session:
        # What a killed server leaves: two jobs mid-run (one already retried), one waiting.
        session.execute(update(JobRow).where(JobRow.id == first)
                        .values(state="running", attempts=1, progress=0.4))
        session.execute(update(JobRow).where(JobRow.id == second)
                        .values(state="running", attempts=2, progress=0.7))

    runner = JobRunner(store, {"work": lambda job, progress: ran.append(job.id)}, max_attempts=2)
    runner.on_given_up = lambda item_id, reason: given_up.append((item_id, reason))
    assert runner.recover() == 2
    assert sorted(ran) == sorted([first, queued])
    assert store.get(first).state is JobState.DONE and store.get(first).attempts == 2
    failed = store.get(second)
    assert failed.state is JobState.FAILED
    assert "max_job_attempts=2" in (failed.error or "") and "2 time(s)" in (failed.error or "")
    assert given_up == [("item-b", failed.error)]


def test_thread_spawner_runs_jobs_in_the_background(store):
    release = threading.Event()
    runner = JobRunner(store, {"work": lambda job, progress: release.wait(10)},
                       spawner=thread_spawner(1))
    job_id = new_job(store)
    runner.submit(job_id)
    assert store.get(job_id).state in (JobState.QUEUED, JobState.RUNNING)
    release.set()
    wait_until(lambda: store.get(job_id).finished, "the background job never finished",
               interval_s=0.05)
    assert store.get(job_id).state is JobState.DONE


def test_event_loop_spawner_runs_jobs_on_anyio_worker_threads(store):
    """BentoML's sync clients need an anyio worker thread of the server's loop."""
    import anyio.from_thread

    def handler(job: JobOut, progress: ProgressFn) -> None:
        # Raises outside an anyio worker thread, so this proves where the job ran.
        anyio.from_thread.run_sync(lambda: None)

    async def main() -> JobOut:
        import anyio.to_thread

        # As in the server: components are built on a worker thread of the loop.
        spawner = await anyio.to_thread.run_sync(server_spawner, 1)
        runner = JobRunner(store, {"work": handler}, spawner=spawner)
        job_id = new_job(store)
        runner.submit(job_id)
        for _ in range(400):
            if store.get(job_id).finished:
                break
            await asyncio.sleep(0.025)
        return store.get(job_id)

    job = asyncio.run(main())
    assert job.state is JobState.DONE, job.error
