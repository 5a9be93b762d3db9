"""The recommender's commands; serving mounts them on the ``reelsift`` CLI.

``import-events`` (→ ``reelsift import-events``), ``feed-batch`` (→ ``reelsift
feed-batch``), ``train-ranker`` (→ ``reelsift train ranker``) and ``evaluate``
(→ ``reelsift evaluate recommender``). The database comes from ``--db-url`` or
``REELSIFT_DATABASE_URL``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

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

# Set by serving (which owns configuration and models): returns the configured text
# embedder (an object with ``encode(texts) -> array``) or None and why it is unavailable.
text_embedder_factory: Callable[[], tuple[Any, str | None]] | None = None

SettingsJson = Annotated[str | None, typer.Option(
    "--recommender-settings", hidden=True,
    help="RecommenderSettings as JSON (serving passes the configured ones)")]
SetOption = Annotated[list[str] | None, typer.Option(
    "--set", help="a recommender setting, dotted path=value (JSON values), e.g. "
    "--set exploration_epsilon=0 --set quotas.mf=200 --set weights.channels.mf=1.5; "
    "repeatable; see recommender/settings.py")]
DbUrl = Annotated[str | None, typer.Option("--db-url", help="database URL "
                                           "(default: the configured database)")]
IndexDir = Annotated[Path, typer.Option(help="vector index directory")]
ModelDir = Annotated[Path, typer.Option(help="ranker model directory")]


def _sessions(db_url: str | None):  # type: ignore[no-untyped-def]
    import recommender.tables  # noqa: F401  (the events table on Base)

    # `reelsift` passes the configured URL as this option's default (serving owns settings).
    url = db_url or DEFAULT_DB_URL
    return make_session_factory(make_engine(url))


def recommender_settings(
    configured: str | None, assignments: list[str] | None, **fixed: Any,
) -> RecommenderSettings:
    """The configured settings (``REELSIFT_RECOMMENDER__…``, via serving), then ``fixed``
    (paths the command's own options give), then each ``--set path=value``."""
    data: dict[str, Any] = json.loads(configured) if configured else {}
    data.update(fixed)
    for assignment in assignments or []:
        path, sep, raw = assignment.partition("=")
        if not sep or not path.strip():
            raise InvalidInput(f"--set takes path=value, got {assignment!r}")
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = raw  # a bare string
        keys = path.strip().split(".")
        node = data
        for key in keys[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise InvalidInput(f"--set {path}: {key} is not a group of settings")
        node[keys[-1]] = value
    try:
        return RecommenderSettings.model_validate(data)
    except ValueError as exc:
        raise InvalidInput(f"recommender settings: {exc}") from exc


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
    redis_url: Annotated[str | None, typer.Option(
        help="append to the shared event stream (REELSIFT_REDIS_URL; the event workers "
        "apply and archive them) instead of the database log")] = None,
    redis_cluster: Annotated[bool, typer.Option(
        help="--redis-url names a node of a Redis Cluster (REELSIFT_REDIS_CLUSTER)")] = False,
    redis_namespace: Annotated[str, typer.Option(hidden=True)] = "reelsift",
    stream_partitions: Annotated[int, typer.Option(hidden=True)] = 16,
) -> None:
    """Store events from a JSON Lines file; running it twice stores each event once."""
    from recommender.evaluation import read_jsonl
    from recommender.events import EventLog, IngestResult

    store: Callable[[list[dict[str, object]]], IngestResult]
    if redis_url:
        from recommender.stream.online import RedisOnline

        online = RedisOnline.connect(redis_url, namespace=redis_namespace,
                                     partitions=stream_partitions, cluster=redis_cluster)
        store = online.event_log(_sessions(db_url), None).ingest
    else:
        store = EventLog(_sessions(db_url), state=None).store
    total = sum(1 for line in events_file.open(encoding="utf-8") if line.strip())
    stored = duplicates = 0
    try:
        with _progress() as progress:
            task = progress.add_task("importing events", total=total)
            batch: list[dict[str, object]] = []
            for record in read_jsonl(events_file):
                batch.append(record)
                if len(batch) >= batch_size:
                    result = store(batch)
                    stored, duplicates = stored + result.stored, duplicates + result.duplicates
                    progress.advance(task, len(batch))
                    batch = []
            if batch:
                result = store(batch)
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
    recommender_settings_json: SettingsJson = None,
    set_: SetOption = None,
) -> None:
    """Write each user's feed as one JSON line."""
    from recommender.service import Recommender

    user_ids = [u.strip() for u in users.read_text(encoding="utf-8").splitlines() if u.strip()]
    try:
        settings = recommender_settings(
            recommender_settings_json, set_, index_dir=str(index_dir), model_dir=str(model_dir),
            background_refits=False)
        rec = Recommender.open(_sessions(db_url), settings)
        rec.state.collaborative.refresh()  # a batch wants the models fitted before it
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
    movielens: Annotated[Path | None, typer.Option(
        exists=True, file_okay=False,
        help="a MovieLens directory (movies.csv, ratings.csv), e.g. ml-latest-small")] = None,
    items: Annotated[Path | None, typer.Option(
        exists=True, dir_okay=False, help="items, JSON Lines with embeddings")] = None,
    events: Annotated[Path | None, typer.Option(
        exists=True, dir_okay=False, help="events, JSON Lines")] = None,
    test_share: Annotated[float, typer.Option(min=0.05, max=0.9)] = 0.2,
    validation: Annotated[bool, typer.Option(
        help="drop each user's last share first and evaluate on the rest (for tuning)")] = False,
    text_embedder: Annotated[bool, typer.Option(
        help="MovieLens: embed title and genres with the configured text embedder "
        "(cached under data_dir/cache); --no-text-embedder: no content vectors")] = True,
    model_dir: ModelDir = DEFAULTS.model_dir,
    recommender_settings_json: SettingsJson = None,
    set_: SetOption = None,
    out: Annotated[Path | None, typer.Option(help="write the report as JSON")] = None,
    plot: Annotated[Path | None, typer.Option(help="write a bar chart (PNG)")] = None,
    cache_dir: Annotated[Path, typer.Option(help="text vector cache")] = Path("var/cache"),
) -> None:
    """Recall, NDCG, coverage and novelty of the feed (with and without exploration and
    diversity) and of popularity, ItemKNN and EASE, on a per-user temporal split."""
    from recommender import evaluation

    try:
        settings = recommender_settings(recommender_settings_json, set_,
                                        model_dir=str(model_dir))
        with _progress() as progress:
            task = progress.add_task("feeds", total=None)

            def tick(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total)

            if movielens is not None:
                records, log = evaluation.movielens_log(movielens)
                notes = [f"MovieLens {movielens.name}: rating -> view (watch ratio rating/5) "
                         "+ like for 4 stars and up"]
                if text_embedder:
                    encoder, model_id = _text_encoder()
                    progress.update(task, description="embedding titles")
                    evaluation.attach_text_vectors(records, encoder, cache_dir, model_id)
                    notes.append(f"item vectors: {model_id} on title and genres")
                else:
                    notes.append("item vectors: none (--no-text-embedder)")
                progress.update(task, description="feeds")
                report = evaluation.evaluate_log(
                    records, log, settings=settings, test_share=test_share, progress=tick,
                    validation=validation, notes=notes)
            elif items is not None and events is not None:
                report = evaluation.evaluate(items, events, settings=settings,
                                             test_share=test_share, progress=tick,
                                             validation=validation)
            else:
                raise InvalidInput("give --movielens DIR, or --items and --events")
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
    Console(width=180).print(table)
    for note in report.notes:
        typer.echo(note)
    if out is not None:
        out.write_text(report.model_dump_json(indent=2))
    if plot is not None:
        evaluation.plot_report(report, plot)


def _text_encoder() -> tuple[Callable[[list[str]], Any], str]:
    if text_embedder_factory is None:
        raise InvalidInput("no text embedder is configured here: pass --no-text-embedder")
    embedder, reason = text_embedder_factory()
    if embedder is None:
        raise InvalidInput(f"text embedder unavailable ({reason}): pass --no-text-embedder")
    model = getattr(embedder, "model", None)
    model_id = str(getattr(model, "id", None) or type(embedder).__name__)
    return embedder.encode, model_id


def ranker_app(context_settings: dict[str, Any] | None = None) -> typer.Typer:
    """``reelsift ranker …``: the online ranker's versions (serving mounts it)."""
    group = typer.Typer(help="The self-training ranker's versions.", no_args_is_help=True)
    group.command("rollback", context_settings=context_settings)(ranker_rollback)
    group.command("versions", context_settings=context_settings)(ranker_versions)
    return group


def ranker_rollback(model_dir: ModelDir = DEFAULTS.model_dir) -> None:
    """Drop the serving version: the previous one serves again (the heuristic if none is
    left). Running servers pick it up on their next update tick; the admin endpoint
    POST /v1/admin/ranker/rollback does it in the answering process at once."""
    from recommender.online_ranker import RankerStore

    store = RankerStore(model_dir / "online")
    try:
        serving = store.rollback()
    except LookupError as exc:
        raise _fail(InvalidInput(str(exc))) from exc
    typer.echo(json.dumps({"serving_version": serving,
                           "ranker": "online" if serving is not None else "heuristic"}))


def ranker_versions(model_dir: ModelDir = DEFAULTS.model_dir) -> None:
    """The promoted versions, oldest first; the last one serves."""
    from recommender.online_ranker import RankerStore

    typer.echo(json.dumps(RankerStore(model_dir / "online").history(), indent=2))


def experiments_app(context_settings: dict[str, Any] | None = None) -> typer.Typer:
    """``reelsift experiments …`` (serving mounts it)."""
    group = typer.Typer(help="Online experiments: per-arm outcomes.", no_args_is_help=True)
    group.command("report", context_settings=context_settings)(experiments_report)
    return group


def experiments_report(
    experiment_id: Annotated[str, typer.Argument(help="the experiment's id")],
    db_url: DbUrl = None,
    recommender_settings_json: SettingsJson = None,
    set_: SetOption = None,
) -> None:
    """Per arm: users, CTR, watch time, completion, likes and hides per impression, with
    95% intervals, and each arm's difference from the first (Welch's t-test; q: its p-value
    adjusted for the five metrics, Benjamini-Hochberg)."""
    from recommender.experiments import find, report_from_db

    try:
        settings = recommender_settings(recommender_settings_json, set_)
        report = report_from_db(_sessions(db_url), find(settings.experiments, experiment_id))
    except ReelsiftError as exc:
        raise _fail(exc) from exc
    table = Table(title=f"experiment {report.experiment_id} (control: {report.control})")
    for column in ("arm", "users", "impressions", "metric", "mean [95% CI]",
                   "vs control [95% CI]", "p", "q"):
        table.add_column(column)
    for arm in report.arms:
        for n, (metric, value) in enumerate(arm.metrics.items()):
            diff = arm.difference.get(metric)
            table.add_row(
                arm.arm if n == 0 else "", str(arm.users) if n == 0 else "",
                str(arm.impressions) if n == 0 else "", metric,
                f"{value.mean:.4g} [{value.low:.4g}, {value.high:.4g}]",
                f"{diff.mean:+.4g} [{diff.low:+.4g}, {diff.high:+.4g}]" if diff else "",
                f"{arm.p_value[metric]:.3g}" if metric in arm.p_value else "",
                f"{arm.q_value[metric]:.3g}" if metric in arm.q_value else "")
    Console(width=160).print(table)
    typer.echo(report.model_dump_json())
