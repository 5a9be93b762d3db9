"""``reelsift``: serve, analyze, migrate, load demo data, manage keys, train, evaluate."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from serving.settings import Settings, get_settings

app = typer.Typer(help="reelsift: content analysis, moderation and a feed.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
train_app = typer.Typer(help="Train models from labelled data.", no_args_is_help=True)
evaluate_app = typer.Typer(help="Measure models on labelled data.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(train_app, name="train")
app.add_typer(evaluate_app, name="evaluate")

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
    from moderation.risk.cli import app as risk_app
    from recommender import cli as rec
    from serving.auth import keys_app
    from taxonomy import cli as tax

    app.add_typer(keys_app, name="keys")
    train_app.add_typer(risk_app, name="risk")
    train_app.command("taxonomy")(tax.train)
    train_app.command("ranker")(rec.train_ranker)
    evaluate_app.command("taxonomy")(tax.evaluate)
    evaluate_app.command("recommender")(rec.evaluate)
    app.command("import-events")(rec.import_events)
    app.command("feed-batch")(rec.feed_batch)


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Apply Alembic migrations to the configured database."""
    from core.storage.db import current_revision, make_engine, upgrade

    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.db_url)
    upgrade(engine, revision)
    typer.echo(f"database at revision {current_revision(engine)}: {engine.url!r}")


def _in_process_components(settings: Settings):  # type: ignore[no-untyped-def]
    from serving.wiring import build_components, build_text_embedder

    embedder, reason = build_text_embedder(settings)
    return build_components(settings, embedder=embedder, embedder_unavailable_reason=reason)


@app.command()
def analyze(
    text_or_file: Annotated[str, typer.Argument(help="text, or a path to a UTF-8 text file")],
    as_json: Annotated[bool, typer.Option("--json", help="print the analysis as JSON")] = False,
    title: str = "",
) -> None:
    """Analyze one text without storing it: language, entities, keywords, labels, risk."""
    from serving.ingest import analyze_documents
    from serving.wiring import build_analysis_stack, build_text_embedder

    path = Path(text_or_file)
    text = path.read_text(encoding="utf-8") if path.is_file() else text_or_file
    if not text.strip():
        raise typer.BadParameter("the text is empty")
    settings = get_settings()
    embedder, reason = build_text_embedder(settings)
    stack = build_analysis_stack(settings, embedder, reason)
    from analyzers.text import document_text

    [analysis], [vectors] = analyze_documents(
        stack.analyzer, stack.enrichment, [title], [document_text(title, text)]
    )
    payload = analysis.model_dump(mode="json")
    payload["vectors"] = {k: {"model_id": m, "dim": int(v.shape[0])} for k, (m, v) in vectors.items()}
    if as_json:
        typer.echo(json.dumps(payload, indent=2, ensure_ascii=False))
        return
    text_part = analysis.text
    if text_part is not None:
        typer.echo(f"language: {text_part.language.code if text_part.language else 'unknown'}")
        typer.echo("entities: " + ", ".join(f"{e.text} [{e.label}]" for e in text_part.entities))
        typer.echo("keywords: " + ", ".join(k.text for k in text_part.keywords))
    typer.echo("labels:   " + ", ".join(" > ".join(lb.path) for lb in analysis.labels if lb.path))
    for score in analysis.risk:
        value = "not assessed" if score.score is None else f"{score.score:.3f}"
        typer.echo(f"risk {score.category.value:<12} {value}")


@app.command()
def demo() -> None:
    """Load the demo items into the configured database through the full pipeline."""
    from serving.schemas import TextItemIn

    settings = get_settings()
    components = _in_process_components(settings)
    items = [TextItemIn.model_validate(json.loads(line)) for line in DEMO_ITEMS.read_text().splitlines() if line.strip()]
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
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
    try:
        _wait_ready(url, process, timeout_s=600)
        if demo_data:
            typer.echo(f"demo items: {_load_demo_over_http(url, keys['demo-uploader'])}")
            typer.echo("demo API keys (also in " + str(settings.data_dir / "demo-keys.json") + "):")
            for name, key in keys.items():
                typer.echo(f"  {name:<18} {key}")
        typer.echo(f"reelsift is serving at {url}  (API docs: {url}/v1/docs, console: {url}/console)")
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
