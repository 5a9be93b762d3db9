"""The recommender's commands; serving mounts them on the ``reelsift`` CLI.

``import-events`` (→ ``reelsift import-events``), ``feed-batch`` (→ ``reelsift
feed-batch``), ``train-ranker`` (→ ``reelsift train ranker``) and ``evaluate``
(→ ``reelsift evaluate recommender``). The database comes from ``--db-url`` or
``REELSIFT_DATABASE_URL``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from core.errors import InvalidInput, ReelsiftError
from core.storage.db import make_engine, make_session_factory
from recommender.settings import RecommenderSettings

DEFAULT_DB_URL = "sqlite:///var/reelsift.db"
DEFAULTS = RecommenderSettings()

app = typer.Typer(help="Recommender: events, feeds, ranker training, evaluation.",
                  no_args_is_help=True)
console = Console(stderr=True)

DbUrl = Annotated[str | None, typer.Option("--db-url", help="database URL "
                                           "(default: the configured database)")]
IndexDir = Annotated[Path, typer.Option(help="vector index directory")]
ModelDir = Annotated[Path, typer.Option(help="ranker model directory")]


def _sessions(db_url: str | None):  # type: ignore[no-untyped-def]
    import recommender.tables  # noqa: F401  (the events table on Base)

    # `reelsift` passes the configured URL as this option's default (serving owns settings).
    url = db_url or DEFAULT_DB_URL
    return make_session_factory(make_engine(url))


def _fail(exc: ReelsiftError) -> typer.Exit:
    console.print(f"[red]{exc}[/red]")
    return typer.Exit(code=2)


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console)


@app.command("import-events")
def import_events(
    events_file: Annotated[Path, typer.Argument(exists=True, dir_okay=False,
                                                help="events, JSON Lines")],
    db_url: DbUrl = None,
    batch_size: Annotated[int, typer.Option(min=1, max=10_000)] = 1000,
) -> None:
    """Store events from a JSON Lines file; running it twice stores each event once."""
    from recommender.evaluation import read_jsonl
    from recommender.events import EventLog

    log = EventLog(_sessions(db_url), state=None)
    total = sum(1 for line in events_file.open(encoding="utf-8") if line.strip())
    stored = duplicates = 0
    try:
        with _progress() as progress:
            task = progress.add_task("importing events", total=total)
            batch: list[dict[str, object]] = []
            for record in read_jsonl(events_file):
                batch.append(record)
                if len(batch) >= batch_size:
                    result = log.store(batch)
                    stored, duplicates = stored + result.stored, duplicates + result.duplicates
                    progress.advance(task, len(batch))
                    batch = []
            if batch:
                result = log.store(batch)
                stored, duplicates = stored + result.stored, duplicates + result.duplicates
                progress.advance(task, len(batch))
    except ReelsiftError as exc:
        raise _fail(exc) from exc
    typer.echo(json.dumps({"read": total, "stored": stored, "duplicates": duplicates}))


@app.command("feed-batch")
def feed_batch(
    users: Annotated[Path, typer.Option(exists=True, dir_okay=False, help="one user id a line")],
    out: Annotated[Path, typer.Option(help="recommendations, JSON Lines")],
    k: Annotated[int, typer.Option(min=1, max=100)] = 10,
    db_url: DbUrl = None,
    index_dir: IndexDir = DEFAULTS.index_dir,
    model_dir: ModelDir = DEFAULTS.model_dir,
) -> None:
    """Write each user's feed as one JSON line."""
    from recommender.service import Recommender

    user_ids = [u.strip() for u in users.read_text(encoding="utf-8").splitlines() if u.strip()]
    settings = RecommenderSettings(index_dir=index_dir, model_dir=model_dir)
    try:
        rec = Recommender.open(_sessions(db_url), settings)
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("w", encoding="utf-8") as handle, _progress() as progress:
            task = progress.add_task("feeds", total=len(user_ids))
            for user_id in user_ids:
                response = rec.feed.feed(user_id, k)
                handle.write(response.model_dump_json() + "\n")
                progress.advance(task)
        rec.close()
    except ReelsiftError as exc:
        raise _fail(exc) from exc
    typer.echo(json.dumps({"users": len(user_ids), "out": str(out)}))


@app.command("train-ranker")
def train_ranker(
    db_url: DbUrl = None,
    model_dir: ModelDir = DEFAULTS.model_dir,
    index_dir: IndexDir = DEFAULTS.index_dir,
    epochs: Annotated[int, typer.Option(min=1, max=200)] = 8,
) -> None:
    """Train the DeepFM ranker from logged impressions and outcomes; export ONNX."""
    from recommender.deepfm import train_from_log

    settings = RecommenderSettings(index_dir=index_dir, model_dir=model_dir)
    try:
        version, report = train_from_log(_sessions(db_url), settings, epochs=epochs)
    except ReelsiftError as exc:
        raise _fail(exc) from exc
    typer.echo(json.dumps({"version": version, "model_dir": str(model_dir),
                           "report": report.__dict__}))


@app.command("evaluate")
def evaluate(
    items: Annotated[Path, typer.Option(exists=True, dir_okay=False,
                                        help="items, JSON Lines with embeddings")],
    events: Annotated[Path, typer.Option(exists=True, dir_okay=False, help="events, JSON Lines")],
    test_share: Annotated[float, typer.Option(min=0.05, max=0.9)] = 0.2,
    model_dir: ModelDir = DEFAULTS.model_dir,
    out: Annotated[Path | None, typer.Option(help="write the report as JSON")] = None,
) -> None:
    """Recall, NDCG, coverage and novelty of the feed and of a popularity baseline."""
    from recommender.evaluation import evaluate as run_evaluation

    settings = RecommenderSettings(model_dir=model_dir)
    try:
        with _progress() as progress:
            task = progress.add_task("users", total=None)

            def tick(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total)

            report = run_evaluation(items, events, settings=settings, test_share=test_share,
                                    progress=tick)
    except (ReelsiftError, InvalidInput) as exc:
        raise _fail(exc) from exc
    names = list(report.results[0].metrics) if report.results else []
    table = Table(title=f"{report.users_evaluated} users, {report.items} items, "
                        f"{report.events} events")
    table.add_column("model")
    for name in names:
        table.add_column(name, justify="right")
    for result in report.results:
        table.add_row(result.model, *(f"{result.metrics[n]:.4f}" for n in names))
    Console(width=160).print(table)
    if out is not None:
        out.write_text(report.model_dump_json(indent=2))
