"""`reelsift import --ray`: the analysis on a local Ray instance, the writes through the same
store path as the in-process import (same results, idempotent, resumable)."""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import func, select

from core.contracts import ItemState
from core.storage.db import transaction
from core.storage.tables import AnalysisRow, EmbeddingRow, ItemRow
from ingest.bulk import import_items
from ingest.ray_bulk import RayOptions, import_items_ray
from serving import cli
from serving.wiring import Components
from tests.analyzers.media import synth
from tests.conftest import analysis_json, build_in_process

# Before Ray is imported (it reads this once): workers run this interpreter, not `uv run`.
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow  # a local Ray instance and two actor pools: minutes on 2 cores

TEXTS = [
    ("Derby day", "Arsenal beat Chelsea 2-1 in London on Saturday. #PremierLeague"),
    ("", "Lemon pasta in 15 minutes with butter, parmesan and black pepper"),
    ("Rates", "The central bank held interest rates at 4% on Thursday"),
    ("New phone", "Apple unveiled a thinner iPhone with a better camera in Cupertino"),
    ("", "WIN A FREE PRIZE!!! click here now to claim your gift card, limited offer"),
    ("Trail run", "Ten kilometres through the hills above Edinburgh before breakfast"),
    ("Election", "Voters in Berlin head to the polls on Sunday for the regional election"),
    ("", "How to repot a monstera without hurting its roots"),
    ("Match report", "Serena Williams won the final in straight sets at Wimbledon"),
]


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def in_process(tmp_path_factory) -> Iterator[Components]:
    built = build_in_process(tmp_path_factory.mktemp("bulk-inproc") / "var")
    yield built
    built.close()


@pytest.fixture(scope="module")
def on_ray(tmp_path_factory) -> Iterator[Components]:
    built = build_in_process(tmp_path_factory.mktemp("bulk-ray") / "var")
    yield built
    built.close()


def factory(components: Components) -> Any:
    # What `reelsift import --ray` hands the actors: the settings, the stack built there.
    return functools.partial(cli.worker_analysis_stack, components.settings)


def write_items(path: Path, records: list[dict[str, Any] | str]) -> Path:
    path.write_text("".join(
        (r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records), encoding="utf-8")
    return path


def counts(components: Components) -> tuple[int, int, int]:
    with transaction(components.sessions) as session:
        return tuple(  # type: ignore[return-value]
            int(session.scalar(select(func.count()).select_from(table)) or 0)
            for table in (ItemRow, AnalysisRow, EmbeddingRow)
        )


def items_file(folder: Path, prefix: str) -> Path:
    (folder / "beach.jpg").write_bytes(synth.encode(synth.scene(5)))
    records: list[dict[str, Any] | str] = [
        {"id": f"{prefix}-{i}", "creator_id": "c", "title": title, "text": text}
        for i, (title, text) in enumerate(TEXTS)
    ]
    records[3:3] = [
        "{not json",
        {"id": f"{prefix}-photo", "creator_id": "c", "title": "Beach", "media": ["beach.jpg"]},
        {"id": f"{prefix}-extra", "creator_id": "c", "text": "hi", "colour": "red"},
    ]
    return write_items(folder / f"{prefix}.jsonl", records)


def assert_same_analysis(mine: dict[str, Any], theirs: dict[str, Any]) -> None:
    assert mine["text"]["entities"] == theirs["text"]["entities"]
    assert mine["text"]["language"] == theirs["text"]["language"]
    assert [k["text"] for k in mine["text"]["keywords"]] == [
        k["text"] for k in theirs["text"]["keywords"]]
    assert [label["id"] for label in mine["labels"]] == [label["id"] for label in theirs["labels"]]
    assert mine["models"] == theirs["models"]
    for a, b in zip(mine["risk"], theirs["risk"], strict=True):
        assert a["category"] == b["category"] and (a["score"] is None) == (b["score"] is None)
        if a["score"] is not None:
            assert abs(a["score"] - b["score"]) < 1e-3


def test_ray_import_matches_the_in_process_import_and_is_idempotent(
    local_ray, in_process, on_ray, tmp_path
):
    source = items_file(tmp_path, "same")
    expected = import_items(in_process, source)
    got = import_items_ray(on_ray, source, factory(on_ray),
                           RayOptions(workers=2, batch_size=4))

    assert got.as_dict() == expected.as_dict()
    assert got.imported == len(TEXTS) + 1 and {line for line, _, _ in got.failed} == {4, 6}
    for i in [*range(len(TEXTS)), "photo"]:
        item_id = f"same-{i}"
        theirs = in_process.ingest.get_item(item_id, include_vectors=True)
        mine = on_ray.ingest.get_item(item_id, include_vectors=True)
        assert mine.state == theirs.state and mine.state not in (
            ItemState.RECEIVED, ItemState.ANALYZING, ItemState.FAILED)
        assert_same_analysis(analysis_json(mine), analysis_json(theirs))
        assert {e.kind for e in mine.embeddings} == {e.kind for e in theirs.embeddings}
        for a, b in zip(sorted(mine.embeddings, key=lambda e: e.kind),
                        sorted(theirs.embeddings, key=lambda e: e.kind), strict=True):
            assert a.model_id == b.model_id
            np.testing.assert_allclose(a.vector, b.vector, atol=1e-4)
    # The spam-like text went where the policy sends it, on both paths.
    assert on_ray.ingest.get_item("same-4").state == in_process.ingest.get_item("same-4").state

    before = counts(on_ray)
    again = import_items_ray(on_ray, source, factory(on_ray), RayOptions(workers=1))
    assert again.imported == 0 and again.skipped == len(TEXTS) + 1 and len(again.failed) == 2
    assert counts(on_ray) == before


def test_a_stopped_ray_import_resumes_and_analyzes_each_item_once(local_ray, on_ray, tmp_path):
    source = write_items(tmp_path / "resume.jsonl", [
        {"id": f"res-{i}", "creator_id": "c", "title": title, "text": text}
        for i, (title, text) in enumerate(TEXTS)
    ])
    batches: list[int] = []

    def stop_after_first_batch(n: int) -> None:
        batches.append(n)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        import_items_ray(on_ray, source, factory(on_ray), RayOptions(workers=1, batch_size=3),
                         advance=stop_after_first_batch)
    states = {i: on_ray.ingest.get_item(f"res-{i}").state for i in range(len(TEXTS))}
    done = [i for i, state in states.items() if state != ItemState.RECEIVED]
    # One batch was written; the rest were handed back, none left claimed.
    assert len(done) == batches[0] == 3
    assert ItemState.ANALYZING not in states.values()

    summary = import_items_ray(on_ray, source, factory(on_ray), RayOptions(workers=1))
    assert summary.skipped == 3 and summary.retried == len(TEXTS) - 3
    assert summary.imported == len(TEXTS) - 3 and not summary.failed
    with transaction(on_ray.sessions) as session:
        analyses = dict(session.execute(
            select(AnalysisRow.item_id, func.count()).where(AnalysisRow.item_id.like("res-%"))
            .group_by(AnalysisRow.item_id)).all())
    assert analyses == {f"res-{i}": 1 for i in range(len(TEXTS))}
    assert all(on_ray.ingest.get_item(f"res-{i}").state != ItemState.RECEIVED
               for i in range(len(TEXTS)))


def test_cli_import_ray_takes_local_or_a_cluster_address(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from ingest import bulk, ray_bulk

    class _Closing:
        def close(self) -> None:
            pass

    seen: list[RayOptions] = []

    def fake_import(components, source, factory, options, advance=None, chunk=32):
        seen.append(options)
        assert factory.func is cli.worker_analysis_stack
        return bulk.ImportSummary(lines=1, imported=1)

    monkeypatch.setattr(ray_bulk, "import_items_ray", fake_import)
    monkeypatch.setattr(cli, "command_components", lambda settings: _Closing())
    source = write_items(tmp_path / "one.jsonl", [{"id": "a", "creator_id": "c", "text": "x"}])
    runner = CliRunner()
    local = runner.invoke(cli.app, ["import", "--ray", "local", str(source)])
    assert local.exit_code == 0, local.output
    remote = runner.invoke(cli.app, ["import", str(source), "--ray", "ray://head:10001",
                                     "--ray-workers", "4", "--ray-cpus", "2"])
    assert remote.exit_code == 0, remote.output
    assert [(o.address, o.workers, o.cpus_per_worker) for o in seen] == [
        (None, 2, 1.0), ("ray://head:10001", 4, 2.0)]
