"""``reelsift``: serve, analyze, migrate, load demo data, manage keys, train, evaluate."""

from __future__ import annotations

import functools
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from serving.settings import Settings, get_settings

app = typer.Typer(help="reelsift: content analysis, moderation and a feed.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
train_app = typer.Typer(help="Train models from labelled data.", no_args_is_help=True)
evaluate_app = typer.Typer(help="Measure models on labelled data.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(train_app, name="train")
app.add_typer(evaluate_app, name="evaluate")
worker_app = typer.Typer(help="Background workers of the scaled-out layout.",
                         no_args_is_help=True)
app.add_typer(worker_app, name="worker")

DEMO_ITEMS = Path(__file__).parent / "demo" / "items.jsonl"
DEMO_KEY_ROLES = {
    "demo-admin": "admin",
    "demo-uploader": "uploader",
    "demo-moderator": "moderator",
    "demo-moderator-2": "moderator",
    "demo-senior": "senior_moderator",
    "demo-feed": "feed",
}


def _lazy_subcommands() -> None:
    # Imported here so `reelsift --help` stays fast; each package owns its own commands.
    from analyzers import cli as analyzers_cli
    from moderation.risk import cli as risk_cli
    from moderation.risk.cli import app as risk_app
    from recommender import cli as rec
    from serving.auth import keys_app
    from taxonomy import cli as tax

    app.add_typer(keys_app, name="keys")
    train_app.add_typer(risk_app, name="risk")
    train_app.command("taxonomy")(tax.train)
    # The recommender's commands take their database and directories from the settings.
    settings = get_settings()
    configured: dict[str, Any] = {"default_map": {
        "db_url": settings.db_url,
        "index_dir": str(settings.index_dir),
        "model_dir": str(settings.data_dir / "models" / "ranker"),
        "cache_dir": str(settings.cache_dir),
        "recommender_settings_json": settings.recommender.model_dump_json(exclude_unset=True),
        # import-events appends to the shared stream when there is one
        "redis_url": settings.redis_url, "redis_namespace": settings.redis_namespace,
        "redis_cluster": settings.redis_cluster,
        "stream_partitions": settings.stream_partitions,
    }}
    rec.text_embedder_factory = lambda: _text_embedder(settings)
    train_app.command("ranker", context_settings=configured)(rec.train_ranker)
    evaluate_app.command("taxonomy")(tax.evaluate)
    evaluate_app.command("risk")(risk_cli.evaluate)
    evaluate_app.command("entities")(analyzers_cli.evaluate_entities)
    evaluate_app.command("recommender", context_settings=configured)(rec.evaluate)
    app.command("import-events", context_settings=configured)(rec.import_events)
    app.command("feed-batch", context_settings=configured)(rec.feed_batch)
    app.add_typer(rec.ranker_app(configured), name="ranker")
    app.add_typer(rec.experiments_app(configured), name="experiments")


@worker_app.command("events")
def worker_events(
    name: Annotated[str | None, typer.Option(help="consumer name; default host-pid")] = None,
) -> None:
    """Apply the shared event stream to the profiles in Redis (REELSIFT_REDIS_URL) until
    SIGTERM or Ctrl-C; run as many as there are machines to spare, up to the partitions."""
    import threading

    from serving.stream_wiring import build_event_worker

    worker = build_event_worker(get_settings(), name)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    typer.echo(f"event worker {worker.name}: {worker.layout.partitions} partitions "
               f"in namespace {worker.layout.namespace!r}", err=True)
    worker.run(stop)
    typer.echo(f"event worker {worker.name} stopped: {worker.stats}", err=True)


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Apply Alembic migrations to the configured database."""
    from core.storage.db import current_revision, make_engine, upgrade

    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.db_url)
    upgrade(engine, revision)
    typer.echo(f"database at revision {current_revision(engine)}: {engine.url!r}")


def _text_embedder(settings: Settings):  # type: ignore[no-untyped-def]
    from serving.wiring import build_text_embedder

    return build_text_embedder(settings)


def command_components(settings: Settings):  # type: ignore[no-untyped-def]
    """Everything a one-shot command (import, retry-failed, demo) needs, in this process."""
    from serving.wiring import build_components, build_text_embedder

    # A command serves no feed: its catalog needs only this process's own changes (its
    # listener) and is saved for the servers at exit, so it does not poll the database
    # for everyone else's, which during a bulk import is every row it writes.
    settings = settings.model_copy(update={"feed_follow_seconds": None})
    embedder, reason = build_text_embedder(settings)
    return build_components(settings, embedder=embedder, embedder_unavailable_reason=reason)


def _offline_pipeline(settings: Settings):  # type: ignore[no-untyped-def]
    from serving.wiring import build_analysis_stack, build_text_embedder, intake_limits

    embedder, reason = build_text_embedder(settings)
    stack = build_analysis_stack(settings, embedder, reason)
    return stack.media_pipeline(), intake_limits(settings)


# `reelsift import --ray local`: a Ray instance on this machine.
LOCAL_RAY = "local"


def worker_analysis_stack(settings: Settings, threads: int):  # type: ignore[no-untyped-def]
    """The text analyzer and its enrichment in a Ray actor (``ingest.ray_bulk``), using
    ``threads`` inference threads."""
    from serving.wiring import build_analysis_stack, build_text_embedder

    settings = settings.model_copy(update={"inference_threads": threads})
    embedder, reason = build_text_embedder(settings)
    stack = build_analysis_stack(settings, embedder, reason)
    return stack.analyzer, stack.enrichment


def _progress():  # type: ignore[no-untyped-def]
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TimeRemainingColumn(), console=Console(stderr=True),
    )


def _print_failures(failures: list[tuple[int, str | None, str]]) -> None:
    if not failures:
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(failures)} item(s) failed", show_lines=False)
    for column in ("line", "id", "reason"):
        table.add_column(column, overflow="fold")
    for number, item_id, reason in sorted(failures, key=lambda f: f[0]):
        table.add_row(str(number), item_id or "-", reason)
    Console(stderr=True).print(table)


def _print_analysis(payload: dict[str, object]) -> None:
    text_part = payload.get("text")
    if isinstance(text_part, dict):
        language = text_part.get("language") or {}
        typer.echo(f"language: {language.get('code', 'unknown')}")
        typer.echo("entities: " + ", ".join(
            f"{e['text']} [{e['label']}]" for e in text_part.get("entities", [])
        ))
        typer.echo("keywords: " + ", ".join(k["text"] for k in text_part.get("keywords", [])))
    labels = payload.get("labels") or []
    assert isinstance(labels, list)
    typer.echo("labels:   " + ", ".join(" > ".join(lb["path"]) for lb in labels if lb["path"]))
    media = payload.get("media") or []
    assert isinstance(media, list)
    for entry in media:
        result = entry["analysis"]
        line = f"media {entry['position']}: {entry['media_type']} {entry['size_bytes']} bytes"
        if "width" in result:
            line += f", {result['width']}x{result['height']}"
        if "duration_ms" in result:
            line += f", {result['duration_ms']} ms"
        typer.echo(line)
        if result.get("faces"):
            typer.echo(f"  faces: {result['faces']['count']}")
        if result.get("quality"):
            quality = result["quality"]
            typer.echo(f"  quality: {'low' if quality['low_quality'] else 'ok'} "
                       f"{', '.join(quality['reasons'])}")
        if result.get("speech_music"):
            typer.echo(f"  sound: {result['speech_music']['label']}, "
                       f"{result['loudness_dbfs']:.1f} dBFS")
        for keyframe in entry.get("keyframes", []):
            typer.echo(f"  keyframe at {keyframe['t_ms']} ms "
                       f"({keyframe['start_ms']}-{keyframe['end_ms']} ms)")
    risk = payload.get("risk") or []
    assert isinstance(risk, list)
    for score in risk:
        value = "not assessed" if score["score"] is None else f"{score['score']:.3f}"
        typer.echo(f"risk {score['category']:<12} {value}")
    vectors = payload.get("vectors") or {}
    assert isinstance(vectors, dict)
    for kind, info in sorted(vectors.items()):
        typer.echo(f"vector {kind:<7} {info['dim']} dims  {info['model_id']}")


@app.command()
def analyze(
    inputs: Annotated[
        list[str] | None,
        typer.Argument(help="texts, UTF-8 text files, or image/audio/video files",
                       show_default=False),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the analysis as JSON")] = False,
    title: str = "",
    batch: Annotated[
        Path | None,
        typer.Option("--batch", exists=True, dir_okay=False,
                     help="items to analyze, JSON Lines (DESIGN.md item format)"),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="with --batch: one analysis JSON per input line")
    ] = None,
) -> None:
    """Analyze without storing: texts, local media files, or a JSON Lines batch."""
    from core.errors import ReelsiftError
    from ingest.bulk import analyze_batch, analyze_input, count_lines, result_payload

    if batch is None and not inputs:
        raise typer.BadParameter("give texts or files to analyze, or --batch IN --out OUT")
    if batch is not None and (out is None or inputs):
        raise typer.BadParameter("--batch IN needs --out OUT and no other inputs")
    for value in inputs or []:
        if not value.strip() and not Path(value).is_file():
            raise typer.BadParameter("the text is empty")  # before loading any model
    settings = get_settings()
    pipeline, limits = _offline_pipeline(settings)
    if batch is not None:
        assert out is not None
        with _progress() as progress:
            task = progress.add_task("analyzing", total=count_lines(batch))
            summary = analyze_batch(
                pipeline, limits, batch, out, advance=lambda n: progress.advance(task, n)
            )
        typer.echo(json.dumps({"lines": summary.lines, "analyzed": summary.analyzed,
                               "failed": len(summary.failed), "out": str(out)}))
        _print_failures(summary.failed)
        if summary.failed:
            raise typer.Exit(1)
        return
    assert inputs is not None
    payloads = []
    for value in inputs:
        try:
            payloads.append(result_payload(analyze_input(pipeline, limits, value, title)))
        except ReelsiftError as exc:
            raise typer.BadParameter(f"{value[:80]!r}: {exc.message}") from exc
    if as_json:
        document = payloads[0] if len(payloads) == 1 else payloads
        typer.echo(json.dumps(document, indent=2, ensure_ascii=False))
        return
    for value, payload in zip(inputs, payloads, strict=True):
        if len(inputs) > 1:
            typer.echo(f"== {value}")
        _print_analysis(payload)


@app.command("import")
def import_items(
    items_file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="items, JSON Lines")
    ],
    chunk: Annotated[int, typer.Option(min=1, max=1024, help="text items embedded together")] = 32,
    ray_address: Annotated[
        str | None,
        typer.Option("--ray", metavar="local|ADDRESS", show_default=False,
                     help="analyze on Ray (the `ray` extra): `--ray local` starts a Ray "
                          "instance here, `--ray auto` or `--ray ray://HEAD:10001` joins a "
                          "cluster"),
    ] = None,
    ray_workers: Annotated[
        int, typer.Option(min=1, help="with --ray: analysis actors (each loads the models once)")
    ] = 2,
    ray_cpus: Annotated[
        float, typer.Option(min=0.1, help="with --ray: CPUs per actor (its inference threads)")
    ] = 1.0,
) -> None:
    """Store and analyze items from JSON Lines; resumable (done ids are skipped), idempotent."""
    from ingest.bulk import count_lines
    from ingest.bulk import import_items as run_import

    settings = get_settings()
    components = command_components(settings)
    try:
        with _progress() as progress:
            task = progress.add_task("importing", total=count_lines(items_file))
            if ray_address is None:
                summary = run_import(
                    components, items_file, advance=lambda n: progress.advance(task, n),
                    chunk=chunk,
                )
            else:
                from ingest.ray_bulk import RayOptions, import_items_ray

                options = RayOptions(
                    address=None if ray_address == LOCAL_RAY else ray_address,
                    workers=ray_workers, cpus_per_worker=ray_cpus, batch_size=chunk,
                )
                summary = import_items_ray(
                    components, items_file, functools.partial(worker_analysis_stack, settings),
                    options, advance=lambda n: progress.advance(task, n), chunk=chunk,
                )
    finally:
        components.close()
    typer.echo(json.dumps(summary.as_dict()))
    _print_failures(summary.failed)
    if summary.failed:
        raise typer.Exit(1)


@app.command("retry-failed")
def retry_failed() -> None:
    """Analyze every `failed` item again (after a model or analyzer fix); prints the
    state each one reached."""
    settings = get_settings()
    components = command_components(settings)
    try:
        items = components.retry_failed()
    finally:
        components.close()
    states: dict[str, int] = {}
    for item in items:
        states[item.state] = states.get(item.state, 0) + 1
    typer.echo(json.dumps({"retried": len(items), "states": states}))
    still_failed = [item for item in items if item.state == "failed"]
    for item in still_failed:
        typer.echo(f"  {item.id}: {item.state_reason}", err=True)
    if still_failed:
        raise typer.Exit(1)


@app.command()
def demo() -> None:
    """Load the demo items into the configured database through the full pipeline."""
    from ingest.models import TextItemIn

    settings = get_settings()
    components = command_components(settings)
    items = [
        TextItemIn.model_validate(json.loads(line))
        for line in DEMO_ITEMS.read_text().splitlines()
        if line.strip()
    ]
    results = components.ingest.submit_text_items(items)
    created = sum(1 for _, was_created in results if was_created)
    states: dict[str, int] = {}
    for out, _ in results:
        states[out.state] = states.get(out.state, 0) + 1
    typer.echo(f"demo items: {len(results)} ({created} new); states: {states}")
    components.close()


def ensure_demo_keys(settings: Settings) -> dict[str, str]:
    """Demo keys, created once; their plaintext is kept in <data_dir>/demo-keys.json (0600)."""
    from core.storage.db import make_engine, make_session_factory, upgrade
    from serving.auth import ApiKeyStore

    path = settings.data_dir / "demo-keys.json"
    keys: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    engine = make_engine(settings.db_url)
    upgrade(engine)
    store = ApiKeyStore(make_session_factory(engine))
    existing = {k.name for k in store.list_keys() if not k.revoked}
    for name, role in DEMO_KEY_ROLES.items():
        if name not in existing or name not in keys:
            if name in existing:
                store.revoke(name)
                name_to_use = f"{name}-{int(time.time())}"
                keys[name] = store.create(role, name_to_use)
            else:
                keys[name] = store.create(role, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(keys, indent=1))
    path.chmod(0o600)
    engine.dispose()
    return keys


def _wait_ready(url: str, process: subprocess.Popen[bytes], timeout_s: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise typer.Exit(process.returncode or 1)
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise RuntimeError(f"server at {url} not ready after {timeout_s:.0f}s")


def _load_demo_over_http(url: str, uploader_key: str) -> str:
    import httpx

    items = [json.loads(line) for line in DEMO_ITEMS.read_text().splitlines() if line.strip()]
    response = httpx.post(
        f"{url}/v1/items/batch", json={"items": items},
        headers={"Authorization": f"Bearer {uploader_key}"}, timeout=300,
    )
    response.raise_for_status()
    statuses = [r["status"] for r in response.json()["results"]]
    return f"{statuses.count(201)} new, {statuses.count(200)} already there"


@app.command()
def serve(
    demo_data: Annotated[bool, typer.Option("--demo", help="create demo keys and items")] = False,
    host: Annotated[str | None, typer.Option(help="default: REELSIFT_HOST")] = None,
    port: Annotated[int | None, typer.Option(help="default: REELSIFT_PORT")] = None,
) -> None:
    """Run the HTTP service (BentoML) on the embedded default: SQLite and files under ./var."""
    from core.storage.db import make_engine, upgrade

    settings = get_settings()
    host = host or settings.host
    port = port or settings.port
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(make_engine(settings.db_url))
    keys = ensure_demo_keys(settings) if demo_data else {}
    env = dict(os.environ)
    env.setdefault("REELSIFT_DATA_DIR", str(settings.data_dir.resolve()))
    command = [
        sys.executable, "-m", "bentoml", "serve", "serving.service:Reelsift",
        "--host", host, "--port", str(port),
        "--working-dir", str(Path(__file__).resolve().parent.parent),
    ]
    process = subprocess.Popen(command, env=env)
    # SIGTERM (systemd, Kubernetes, test harnesses) must reach BentoML too: handle it like
    # Ctrl-C so the finally block below stops the server and its workers.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
    try:
        _wait_ready(url, process, timeout_s=600)
        if demo_data:
            typer.echo(f"demo items: {_load_demo_over_http(url, keys['demo-uploader'])}")
            typer.echo("demo API keys (also in " + str(settings.data_dir / "demo-keys.json") + "):")
            for name, key in keys.items():
                typer.echo(f"  {name:<18} {key}")
        typer.echo(
            f"reelsift is serving at {url}  (API docs: {url}/v1/docs, console: {url}/console)"
        )
        process.wait()
    except KeyboardInterrupt:
        process.terminate()
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=30)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    _lazy_subcommands()
    app()


if __name__ == "__main__":
    main()
