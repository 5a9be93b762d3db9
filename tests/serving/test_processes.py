"""Several processes on one database: recovery takes only what dead processes left.

Workers of one server (BentoML ``workers=2``), replicas, and a ``reelsift import`` share
the database; a process that starts, or a periodic sweep, must never resume an item or a
job a live process is working on, and must resume those of a dead one.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select, update

from analyzers.entities import EntityPipeline
from analyzers.language import LanguageIdentifier
from analyzers.text import TextAnalyzer
from core.contracts import ItemState
from core.storage.db import make_session_factory, transaction
from core.storage.items import ItemStore
from core.storage.processes import ProcessRegistry, ProcessRow
from core.storage.tables import AnalysisRow, ItemRow, utcnow
from ingest.intake import TextLimits
from ingest.jobs import JobRow, JobRunner, JobState, JobStore
from ingest.text import TextIngestService
from moderation.policy import Policy
from moderation.review.service import ReviewService
from serving.wiring import policy_gate


class Clock:
    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def sessions(db_engine):
    return make_session_factory(db_engine)


def registry(sessions, clock: Clock | None = None) -> ProcessRegistry:
    process = ProcessRegistry(sessions, heartbeat_seconds=1.0, orphan_after_s=600,
                              clock=clock or utcnow)
    process.register(heartbeat=False)
    return process


def test_a_process_is_live_until_it_misses_three_beats_or_retires(sessions):
    clock = Clock()
    worker, other = registry(sessions, clock), registry(sessions, clock)
    with sessions() as session:
        assert {worker.id, other.id} <= other.live_ids(session)
    clock.now += timedelta(seconds=2)
    worker.beat()
    clock.now += timedelta(seconds=2)  # other last beat 4 s ago: three beats missed
    with sessions() as session:
        assert worker.id in worker.live_ids(session)
        assert other.id not in worker.live_ids(session)
    worker.retire()
    with sessions() as session:
        assert session.get(ProcessRow, worker.id) is None


def test_a_dead_pid_on_this_host_is_reaped_without_waiting_for_its_heartbeat(sessions):
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    dead = ProcessRegistry(sessions)
    dead.register(heartbeat=False)
    with transaction(sessions) as session:
        session.execute(update(ProcessRow).where(ProcessRow.id == dead.id)
                        .values(pid=child.pid))
    alive = registry(sessions)
    with sessions() as session:
        assert dead.id not in alive.live_ids(session)
        assert session.get(ProcessRow, dead.id) is None


@pytest.fixture
def jobs_on_items(sessions) -> list[str]:
    with transaction(sessions) as session:
        for item_id in ("a", "b"):
            session.add(ItemRow(id=item_id, creator_id="c", state=ItemState.RECEIVED.value,
                                content_sha256="0" * 64))
        return [JobStore.create(session, "work", item_id) for item_id in ("a", "b")]


def test_recovery_requeues_only_the_jobs_of_processes_that_are_gone(sessions, jobs_on_items):
    busy_worker, crashed_worker, recovering = (registry(sessions) for _ in range(3))
    mine, theirs = jobs_on_items
    assert JobStore(sessions, busy_worker).claim(mine)
    assert JobStore(sessions, crashed_worker).claim(theirs)
    crashed_worker.retire()

    ran: list[str] = []
    runner = JobRunner(JobStore(sessions, recovering),
                       {"work": lambda job, progress: ran.append(job.id)})
    assert runner.recover() == 1
    assert ran == [theirs]
    store = JobStore(sessions)
    assert store.get(theirs).state is JobState.DONE and store.get(theirs).attempts == 2
    running = store.get(mine)
    assert running.state is JobState.RUNNING and running.attempts == 1  # left alone
    with sessions() as session:
        assert session.get(JobRow, mine).owner == busy_worker.id


def test_a_job_submitted_twice_in_one_process_is_queued_once(sessions, jobs_on_items):
    release = threading.Event()
    spawned: list[object] = []

    def spawner(work) -> None:  # held until released, as a busy job worker would
        spawned.append(work)

    runner = JobRunner(JobStore(sessions, registry(sessions)),
                       {"work": lambda job, progress: release.set()}, spawner=spawner)
    runner.submit(jobs_on_items[0])
    runner.submit(jobs_on_items[0])  # e.g. a periodic recovery sweep while it waits
    assert len(spawned) == 1
    spawned[0]()  # type: ignore[operator]
    runner.submit(jobs_on_items[0])  # finished: a later submission is a no-op claim
    assert len(spawned) == 2 and release.is_set()


@pytest.fixture
def bare_analyzer() -> TextAnalyzer:
    return TextAnalyzer(None, EntityPipeline(), LanguageIdentifier(),
                        embedder_unavailable_reason="model deliberately absent")


def ingest_for(sessions, analyzer: TextAnalyzer, process: ProcessRegistry) -> TextIngestService:
    store = ItemStore(sessions)
    review = ReviewService(sessions, store, Policy.load())
    return TextIngestService(store, analyzer, TextLimits(max_text_chars=100), policy_gate(review),
                         processes=process)


def stuck_item(sessions, item_id: str, updated_at: datetime) -> None:
    with transaction(sessions) as session:
        session.add(ItemRow(id=item_id, creator_id="c", title="", text="left mid-analysis",
                            tags=[], state=ItemState.ANALYZING.value, content_sha256="0" * 64,
                            created_at=updated_at, updated_at=updated_at))


def test_an_item_a_live_process_may_still_be_analyzing_is_left_to_it(sessions, bare_analyzer):
    clock = Clock()
    earlier = clock.now - timedelta(seconds=30)
    stuck_item(sessions, "before-restart", earlier)  # older than every live process
    busy = registry(sessions, clock)
    clock.now += timedelta(seconds=1)
    stuck_item(sessions, "in-flight", clock.now)  # touched after `busy` started
    clock.now += timedelta(seconds=1)
    restarted = ingest_for(sessions, bare_analyzer, registry(sessions, clock))

    assert restarted.resume_unfinished() == 1
    assert restarted.get_item("before-restart").state == ItemState.PENDING_REVIEW.value
    assert restarted.get_item("in-flight").state == ItemState.ANALYZING.value
    busy.retire()  # its work is now nobody's: the next sweep takes it
    assert restarted.resume_unfinished() == 1
    assert restarted.get_item("in-flight").state == ItemState.PENDING_REVIEW.value


def test_an_item_older_than_any_request_can_last_is_resumed_even_with_live_processes(
        sessions, bare_analyzer):
    clock = Clock()
    registry(sessions, clock)  # alive since before the item
    clock.now += timedelta(seconds=5)
    stuck_item(sessions, "ancient", clock.now)
    sweeper = ingest_for(sessions, bare_analyzer, registry(sessions, clock))
    assert sweeper.resume_unfinished() == 0
    clock.now += timedelta(seconds=601)
    with transaction(sessions) as session:  # keep everyone's heartbeat fresh
        session.execute(update(ProcessRow).values(last_seen=clock.now))
    assert sweeper.resume_unfinished() == 1


def test_two_processes_sweeping_at_once_resume_each_item_once(sessions, bare_analyzer):
    clock = Clock()
    for n in range(12):
        stuck_item(sessions, f"s{n}", clock.now - timedelta(seconds=60))
    sweepers = [ingest_for(sessions, bare_analyzer, registry(sessions, clock))
                for _ in range(2)]
    counts: list[int] = []
    barrier = threading.Barrier(2)

    def sweep(service: TextIngestService) -> None:
        barrier.wait()
        counts.append(service.resume_unfinished())

    threads = [threading.Thread(target=sweep, args=(s,)) for s in sweepers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(counts) == 12
    with sessions() as session:
        analyses = session.scalars(select(AnalysisRow.item_id)).all()
    assert sorted(analyses) == sorted(f"s{n}" for n in range(12))  # one analysis each


