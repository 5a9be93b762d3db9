"""The moderator console in a real browser (Chromium through Playwright) against a real server.

The module starts its own server (its own queue, so no other test can take its tasks)
with a 30-second lease, so heartbeats happen within a test, and seeds it through the
public API: spam text items, an image item and a video item (both pushed to the top of
the queue by user reports). Screenshots of each screen go to var/screenshots/, or to
docs/screenshots/ (the README's pictures) with REELSIFT_UPDATE_SCREENSHOTS=1, so that a
test run leaves the tracked tree as it found it.

Skipped when /usr/bin/chromium or the playwright package is missing, unless
REELSIFT_REQUIRE_BROWSER=1 (CI), where that is a failure.
"""

from __future__ import annotations

import io
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.conftest import REPO, LiveServer, start_live_server, stop_live_server

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
REQUIRE_BROWSER = os.environ.get("REELSIFT_REQUIRE_BROWSER") == "1"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
SCREENSHOTS = REPO / (
    "docs" if os.environ.get("REELSIFT_UPDATE_SCREENSHOTS") == "1" else "var"
) / "screenshots"
LEASE_SECONDS = 30
IMAGE_ITEM = "console-image-1"
VIDEO_ITEM = "console-video-1"
WAIT_MS = 30_000

OFFERS = ["cheap followers", "free likes", "a cash bonus", "discount watches", "crypto signals",
          "weight loss pills"]
CALLS = ["Click the link", "Visit our site", "Sign up today", "Message us now"]


def _require_browser() -> None:
    problem = None
    if not CHROMIUM.exists():
        problem = f"{CHROMIUM} is missing (apt-get install chromium)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            problem = "the playwright package is missing (uv pip install playwright)"
    if problem is None:
        return
    if REQUIRE_BROWSER:
        pytest.fail(f"REELSIFT_REQUIRE_BROWSER=1 but {problem}")
    pytest.skip(f"browser tests need Chromium and Playwright: {problem}")


# -- the server and its data ------------------------------------------------------------------


@dataclass
class ConsoleServer:
    live: LiveServer
    keys: dict[str, str]
    spam_items: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"{self.live.url}/console/"

    def http(self, key_name: str) -> httpx.Client:
        return httpx.Client(base_url=self.live.url, timeout=120,
                            headers={"Authorization": f"Bearer {self.keys[key_name]}"})


def _short_lease_policy(path: Path) -> Path:
    policy = (REPO / "moderation" / "policy.yaml").read_text()
    shortened, count = re.subn(r"lease_seconds: \d+", f"lease_seconds: {LEASE_SECONDS}", policy)
    assert count == 1, "the packaged policy no longer names lease_seconds"
    path.write_text(shortened)
    return path


def _png() -> bytes:
    import cv2

    yy, xx = np.mgrid[0:360, 0:480]
    image = np.stack([(xx * 255 // 480), (yy * 255 // 360), 255 - (xx * 255 // 480)], axis=-1)
    image = image.astype(np.uint8)
    cv2.putText(image, "WIN CASH NOW", (40, 200), cv2.FONT_HERSHEY_SIMPLEX, 1.6, (255, 255, 255), 4)
    ok, encoded = cv2.imencode(".png", image)
    assert ok
    return encoded.tobytes()


def _mp4() -> bytes:
    """One second of a sharp checkerboard, then five of black: flagged low quality there."""
    import av

    buffer = io.BytesIO()
    yy, xx = np.mgrid[0:240, 0:320]
    board = np.where(((yy // 20 + xx // 20) % 2)[..., None] == 0,
                     np.array([230, 200, 60]), np.array([20, 40, 160])).astype(np.uint8)
    black = np.zeros((240, 320, 3), np.uint8)
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        for i in range(60):
            frame = av.VideoFrame.from_ndarray(board if i < 10 else black, format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()


def _wav() -> bytes:
    import soundfile

    t = np.linspace(0, 3, 3 * 16_000, endpoint=False)
    buffer = io.BytesIO()
    soundfile.write(buffer, 0.3 * np.sin(2 * np.pi * 440 * t), 16_000, format="WAV")
    return buffer.getvalue()


def _upload(http: httpx.Client, item: dict[str, Any], *files: tuple[str, bytes, str]) -> None:
    response = http.post("/v1/items", files=[
        ("metadata", (None, json.dumps(item), "application/json")),
        *(("file", file) for file in files),
    ])
    assert response.status_code in (201, 202), response.text
    if response.status_code == 202:
        job_url = response.json()["status_url"]
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            job = http.get(job_url).json()
            if job["state"] not in ("queued", "running"):
                assert job["state"] == "done", job
                return
            time.sleep(0.5)
        pytest.fail(f"media job for {item['id']} did not finish")


def _report(http: httpx.Client, item_id: str, count: int) -> None:
    for n in range(count):
        response = http.post("/v1/reports", json={
            "item_id": item_id, "reporter_id": f"viewer-{n}", "reason": "looks like a scam",
        })
        assert response.status_code == 200, response.text


def _seed(server: ConsoleServer) -> None:
    with server.http("demo-uploader") as up:
        items = [
            {"id": f"promo-{i:02d}", "creator_id": "promo", "title": "",
             "text": f"Limited offer number {i}: get {OFFERS[i % 6]} fast from home. "
                     f"{CALLS[i % 4]} and earn money for free."}
            for i in range(36)
        ]
        results = up.post("/v1/items/batch", json={"items": items}).json()["results"]
        server.spam_items = [r["item"]["id"] for r in results
                             if r["item"] and r["item"]["state"] == "pending_review"]
        _upload(up, {"id": IMAGE_ITEM, "creator_id": "promo", "title": "Limited offer",
                     "text": "Limited offer: earn money fast from home, visit our site and "
                             "sign up today"},
                ("offer.png", _png(), "image/png"), ("jingle.wav", _wav(), "audio/wav"))
        _upload(up, {"id": VIDEO_ITEM, "creator_id": "nightowl", "title": "Night drive",
                     "text": "Filmed on my way home."}, ("night.mp4", _mp4(), "video/mp4"))
    with server.http("demo-feed") as feed:
        # Reports lift priority: the image comes first, then the video.
        _report(feed, IMAGE_ITEM, 12)
        _report(feed, VIDEO_ITEM, 6)
    with server.http("demo-admin") as admin:
        for item_id in (IMAGE_ITEM, VIDEO_ITEM):
            assert admin.get(f"/v1/items/{item_id}").json()["state"] == "pending_review"
        open_tasks = admin.get("/v1/review/tasks", params={"limit": 500}).json()
    assert len(server.spam_items) >= 20, "the spam template no longer lands in the queue"
    assert len(open_tasks) >= 25


def _more_tasks(server: ConsoleServer, prefix: str, first: int, count: int,
                title: str = "") -> list[str]:
    """Post more spam items for one test, numbered from ``first`` so that their texts
    differ from every other item's; the ids that went to review (at least one)."""
    items = [
        {"id": f"{prefix}-{n}", "creator_id": prefix, "title": f"{title} {n}" if title else "",
         "text": f"Limited offer number {n}: get {OFFERS[n % 6]} fast from home. "
                 f"{CALLS[n % 4]} and earn money for free."}
        for n in range(first, first + count)
    ]
    with server.http("demo-uploader") as up:
        results = up.post("/v1/items/batch", json={"items": items}).json()["results"]
    queued = [r["item"]["id"] for r in results
              if r["item"] and r["item"]["state"] == "pending_review"]
    assert queued, "the spam template no longer lands in the queue"
    return queued


def _create_key(data_dir: Path, role: str, name: str) -> str:
    from core.storage.db import make_engine, make_session_factory
    from serving.auth import ApiKeyStore

    engine = make_engine(f"sqlite:///{(data_dir / 'reelsift.db').resolve()}")
    try:
        return ApiKeyStore(make_session_factory(engine)).create(role, name)
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def console_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleServer]:
    _require_browser()
    root = tmp_path_factory.mktemp("console")
    policy = _short_lease_policy(root / "policy.yaml")
    live, process = start_live_server(root / "var", extra_env={"REELSIFT_POLICY_FILE": str(policy)})
    try:
        keys = dict(live.keys)
        keys["walker"] = _create_key(live.data_dir, "moderator", "walker")
        keys["lease-tester"] = _create_key(live.data_dir, "moderator", "lease-tester")
        for name in ("skipper", "skip-other", "opener", "opener-2", "filterer"):
            keys[name] = _create_key(live.data_dir, "moderator", name)
        server = ConsoleServer(live=live, keys=keys)
        _seed(server)
        yield server
    finally:
        stop_live_server(process)


@pytest.fixture(scope="module")
def browser(console_server: ConsoleServer) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


# -- driving the console ------------------------------------------------------------------------


class Console:
    """One moderator's browser tab."""

    def __init__(self, page: Any, server: ConsoleServer) -> None:
        self.page = page
        self.server = server
        self.errors: list[str] = []
        page.on("pageerror", lambda error: self.errors.append(str(error)))

    def open(self) -> None:
        self.page.goto(self.server.url)
        self.page.wait_for_selector("#view-signin:not([hidden])")

    def sign_in(self, key_name: str) -> None:
        self.open()
        self.page.fill("#key-input", self.server.keys[key_name])
        self.page.keyboard.press("Enter")
        self.page.wait_for_selector("#view-overview:not([hidden]), #view-task:not([hidden])")

    def press(self, key: str) -> None:
        self.page.keyboard.press(key)

    def take_task(self) -> int:
        """The task this moderator holds (resumed at sign-in), else the next one claimed."""
        if self.page.is_hidden("#view-task"):
            self.press("n")
        return self.wait_for_task()

    def task_id(self) -> int | None:
        value = self.page.get_attribute("#view-task", "data-task-id")
        return int(value) if value else None

    def _state(self) -> str:
        return str(self.page.evaluate(
            """() => ({view: document.body.dataset.current,
                       task: document.querySelector('#view-task').dataset.taskId,
                       notice: document.querySelector('#notice').hidden ? null
                           : document.querySelector('#notice').textContent.trim()})"""
        ))

    def _wait(self, script: str, arg: str) -> None:
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        try:
            self.page.wait_for_function(script, arg=arg, timeout=WAIT_MS)
        except PlaywrightTimeout:
            pytest.fail(f"the console did not get there; it shows {self._state()}")

    def wait_for_task(self, not_id: int | None = None) -> int:
        self._wait(
            """previous => {
                const view = document.querySelector('#view-task');
                return !view.hidden && view.dataset.taskId && view.dataset.taskId !== previous;
            }""",
            str(not_id) if not_id is not None else "",
        )
        task_id = self.task_id()
        assert task_id is not None
        return task_id

    def wait_for_next(self, previous: int) -> int | None:
        """The next task after a decision, or None when the overview came back instead."""
        self._wait(
            """previous => {
                const view = document.querySelector('#view-task');
                const overview = document.querySelector('#view-overview');
                return (!view.hidden && view.dataset.taskId && view.dataset.taskId !== previous)
                    || !overview.hidden;
            }""",
            str(previous),
        )
        return self.task_id() if self.page.is_visible("#view-task") else None

    def notice(self, says: str) -> tuple[str, str | None, str]:
        """The notice once it says ``says``: its text, error code and kind."""
        expect(self.page.locator("#notice-text")).to_contain_text(says)
        text = self.page.text_content("#notice-text") or ""
        code = None
        if self.page.is_visible("#notice-code"):
            code = self.page.text_content("#notice-code")
        return text, code, self.page.get_attribute("#notice", "data-kind") or ""

    def shot(self, name: str) -> None:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SCREENSHOTS / f"console-{name}.png"))


@pytest.fixture
def open_console(browser: Any, console_server: ConsoleServer) -> Iterator[Callable[[], Console]]:
    contexts: list[Any] = []
    consoles: list[Console] = []

    def make() -> Console:
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        context.set_default_timeout(WAIT_MS)
        contexts.append(context)
        console = Console(context.new_page(), console_server)
        consoles.append(console)
        return console

    yield make
    for context in contexts:
        context.close()
    for console in consoles:
        assert not console.errors, f"script errors in the page: {console.errors}"


def _task(server: ConsoleServer, task_id: int) -> dict[str, Any]:
    with server.http("demo-admin") as admin:
        return admin.get(f"/v1/review/tasks/{task_id}").json()


def _decision(server: ConsoleServer, task_id: int) -> dict[str, Any]:
    task = _task(server, task_id)
    with server.http("demo-admin") as admin:
        history = admin.get(f"/v1/review/items/{task['item_id']}/history").json()
    decided = [e for e in history if e["action"] == "task.decided" and e["task_id"] == task_id]
    assert len(decided) == 1, history
    return dict(decided[0]["after"]["decision"])


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def _when(iso: str) -> datetime:
    return datetime.fromisoformat(iso.replace("Z", "+00:00"))


def _filter(locator: Any) -> str:
    return str(locator.evaluate("el => getComputedStyle(el).filter"))


# -- the tests ------------------------------------------------------------------------------------


def test_sign_in_keeps_the_key_out_of_the_url_and_shows_the_queue(open_console) -> None:
    console = open_console()
    console.open()
    console.shot("signin")
    console.sign_in("demo-moderator")
    page = console.page
    page.wait_for_selector("#depth-table tbody tr[data-category=spam]")
    key = console.server.keys["demo-moderator"]
    assert key not in page.url
    assert page.evaluate("sessionStorage.getItem('reelsift.console.key')") == key
    assert page.evaluate("localStorage.length === 0 || !JSON.stringify(localStorage).includes("
                         f"'{key}')")
    assert "demo-moderator" in (page.text_content("#who") or "")
    spam_row = page.locator("#depth-table tbody tr[data-category=spam] td").all_text_contents()
    assert int(spam_row[0]) >= 20
    assert page.text_content("#stat-open") not in ("", "–")
    assert re.match(r"\d+ (s|min)", page.text_content("#stat-oldest") or "")
    assert page.is_hidden("#tier2"), "tier 2 is for senior moderators only"
    console.shot("overview")


@pytest.mark.parametrize("key_name", ["demo-feed", "demo-uploader"])
def test_a_key_without_review_rights_is_refused(open_console, key_name) -> None:
    console = open_console()
    console.open()
    console.page.fill("#key-input", console.server.keys[key_name])
    console.press("Enter")
    text, code, kind = console.notice("may not use the review queue")
    assert kind == "error" and code == "E107"
    assert key_name.split("-")[1] in text
    assert console.page.is_visible("#view-signin")
    assert console.page.evaluate("sessionStorage.getItem('reelsift.console.key')") is None


def test_the_image_is_blurred_until_the_moderator_unblurs_it(open_console) -> None:
    console = open_console()
    console.sign_in("demo-moderator")
    page = console.page
    console.press("n")
    console.wait_for_task()
    assert page.get_attribute("#view-task", "data-item-id") == IMAGE_ITEM
    page.wait_for_function(
        "() => { const i = document.querySelector('#media img'); return i && i.naturalWidth > 0; }"
    )
    # The item's audio file plays from the same authenticated blob store.
    page.wait_for_function(
        "() => { const a = document.querySelector('#media audio'); "
        "return a && a.src.startsWith('blob:') && a.readyState >= 1; }"
    )
    assert abs(page.evaluate("document.querySelector('#media audio').duration") - 3) < 0.1
    stage = page.locator("#media .sensitive > *").first
    assert "blur(16px)" in _filter(stage) and "grayscale(1)" in _filter(stage)
    # The twelve reports show with the task (one line per reason), from the audit history.
    reports = page.locator("#item-past li[data-action='report.received']")
    assert reports.count() == 1 and reports.get_attribute("data-count") == "12"
    assert "looks like a scam" in (reports.text_content() or "")
    assert re.fullmatch(r"\d+:\d\d", page.text_content("#lease-time") or "")
    # Text spans flagged as spam are highlighted and named.
    marks = page.locator("#doc-body mark.risk[data-categories~=spam]")
    assert marks.count() >= 1
    console.shot("task")

    console.press("?")
    page.wait_for_selector("#help:not([hidden])")
    assert "Reject" in (page.text_content("#help") or "")
    console.shot("help")
    console.press("Escape")
    page.wait_for_selector("#help", state="hidden")

    console.press("u")
    assert _filter(stage) == "none"
    assert page.get_attribute("#reveal", "aria-pressed") == "true"
    console.press("u")
    assert "blur(16px)" in _filter(stage)

    # A stronger blur from the settings applies at once and is remembered.
    page.click("#open-settings")
    page.select_option("#setting-blur", "strong")
    console.press("Escape")
    assert "blur(32px)" in _filter(stage)
    page.click("#open-settings")
    page.select_option("#setting-blur", "medium")
    console.press("Escape")
    assert "blur(16px)" in _filter(stage)


def test_video_keyframes_mark_the_risky_ranges_and_the_player_jumps_there(open_console) -> None:
    console = open_console()
    console.sign_in("demo-moderator")
    page = console.page
    image_task = console.take_task()  # the image again: resumed, or the top of the queue
    assert page.get_attribute("#view-task", "data-item-id") == IMAGE_ITEM
    console.press("a")
    video_task = console.wait_for_task(not_id=image_task)
    assert _decision(console.server, image_task)["action"] == "approve"
    assert page.get_attribute("#view-task", "data-item-id") == VIDEO_ITEM

    frames = page.locator("#media .keyframes .keyframe")
    assert frames.count() >= 2
    page.wait_for_function(
        "() => [...document.querySelectorAll('#media .keyframes img')]"
        ".every(i => i.naturalWidth > 0)"
    )
    # The checkerboard second is fine; the black seconds after it are flagged.
    assert "risky" not in (frames.first.get_attribute("class") or "")
    assert "risky" in (frames.last.get_attribute("class") or "")
    ranges = page.locator("#media .timeline .range.cat-low_quality")
    assert ranges.count() >= 1
    assert "blur(" in _filter(page.locator("#media .sensitive > video"))
    page.wait_for_function("() => document.querySelector('#media video').readyState >= 1")
    ranges.first.click()
    page.wait_for_function(
        "() => Math.abs(document.querySelector('#media video').currentTime - 1) < 0.05"
    )
    frames.last.click()
    assert page.evaluate("document.querySelector('#media video').currentTime") > 1
    console.shot("video")
    console.press("a")
    console.wait_for_next(video_task)


def test_reject_with_a_policy_code_using_only_the_keyboard(open_console) -> None:
    console = open_console()
    console.sign_in("demo-moderator")
    page = console.page
    first = console.take_task()
    assert page.get_attribute("#view-task", "data-item-id") in console.server.spam_items

    console.press("r")
    page.wait_for_selector("#reject-panel:not([hidden])")
    # Codes of the flagged category come first: 1 and 2 are the spam codes.
    suggested = page.locator("#code-list li.suggested .code").all_text_contents()
    assert suggested == ["spam.repetitive", "spam.scam"]
    console.press("Enter")  # nothing picked yet: refused, calmly, and nothing sent
    _, _, kind = console.notice("at least one policy code")
    assert kind == "error"
    assert console.task_id() == first
    console.press("2")
    assert page.is_checked("#code-list input[value='spam.scam']")
    console.shot("reject")
    console.press("Enter")

    second = console.wait_for_task(not_id=first)
    decision = _decision(console.server, first)
    assert decision["action"] == "reject" and decision["policy_codes"] == ["spam.scam"]
    assert decision["moderator"] == "demo-moderator"
    assert _task(console.server, second)["claimed_by"] == "demo-moderator"
    assert page.is_hidden("#reject-panel")

    # The history of the rejected item, opened with the keyboard from the overview.
    item_id = _task(console.server, first)["item_id"]
    page.click("#nav-queue")
    page.wait_for_selector("#view-overview:not([hidden])")
    page.focus("#history-item-id")
    page.keyboard.type(item_id)
    console.press("Enter")
    page.wait_for_selector("#history-table tbody tr[data-action='task.decided']")
    assert page.url.endswith(f"/console/history/{item_id}")
    actions = page.locator("#history-table tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.action)"
    )
    opened, claimed, decided = (actions.index(a) for a in ("task.opened", "task.claimed",
                                                          "task.decided"))
    assert opened < claimed < decided
    decided_row = page.text_content("#history-table tbody tr[data-action='task.decided']") or ""
    assert "demo-moderator" in decided_row and "spam.scam" in decided_row
    console.shot("history")
    console.press("Escape")  # back to where the moderator was: the held task
    console.wait_for_task()
    assert console.task_id() == second


def test_ten_items_without_the_mouse(open_console) -> None:
    console = open_console()
    console.sign_in("walker")
    current = console.take_task()
    # Shortcuts do nothing with a modifier held, nor while typing in a text field.
    console.press("Control+a")
    console.press("Alt+a")
    console.press("r")
    console.page.focus("#reject-note")
    console.page.keyboard.type("a note with the letters a, n, e and u")
    console.press("Escape")
    assert console.page.is_hidden("#reject-panel")
    assert console.task_id() == current and _task(console.server, current)["status"] == "open"
    decided: list[tuple[int, str]] = []
    for step in range(10):
        if step % 3 == 0:
            console.press("a")
            decided.append((current, "approve"))
        elif step % 3 == 1:
            console.press("r")
            console.press("1")
            console.press("Enter")
            decided.append((current, "reject"))
        else:
            console.press("e")
            console.page.keyboard.type(f"second opinion please ({step})")
            console.press("Enter")
            decided.append((current, "escalate"))
        following = console.wait_for_next(current)
        assert following is not None, "the queue ran dry before ten items"
        current = following
    for task_id, action in decided:
        decision = _decision(console.server, task_id)
        assert decision["action"] == action and decision["moderator"] == "walker"
        if action == "reject":
            # "1" picks the first code of the category the task was flagged for.
            category = _task(console.server, task_id)["category"]
            assert len(decision["policy_codes"]) == 1
            assert category is None or decision["policy_codes"][0].startswith(f"{category}.")
        if action == "escalate":
            assert decision["note"].startswith("second opinion please")
    assert len({task_id for task_id, _ in decided}) == 10
    console.page.click("#nav-queue")
    console.page.wait_for_selector("#view-overview:not([hidden])")
    expect(console.page.locator("#stat-mine")).to_have_text("10")


def test_two_moderators_never_see_the_same_task(open_console) -> None:
    first, second = open_console(), open_console()
    first.sign_in("demo-moderator")
    second.sign_in("demo-moderator-2")
    seen: dict[str, list[int]] = {"demo-moderator": [], "demo-moderator-2": []}
    held = {"demo-moderator": first.take_task(), "demo-moderator-2": second.take_task()}
    for _round in range(3):
        assert held["demo-moderator"] != held["demo-moderator-2"]
        for name, task_id in held.items():
            seen[name].append(task_id)
            assert _task(first.server, task_id)["claimed_by"] == name
        # Both approve at once: the two claims for the next task race on the server.
        first.press("a")
        second.press("a")
        held = {
            "demo-moderator": first.wait_for_next(held["demo-moderator"]),
            "demo-moderator-2": second.wait_for_next(held["demo-moderator-2"]),
        }
        assert None not in held.values()
    assert not set(seen["demo-moderator"]) & set(seen["demo-moderator-2"])


def test_senior_moderator_sees_tier_two_and_the_escalation_note(open_console) -> None:
    console = open_console()
    console.sign_in("demo-senior")
    page = console.page
    page.wait_for_selector("#tier2:not([hidden]) #tier2-table tbody tr[data-task-id]")
    notes = page.locator("#tier2-table tbody").text_content() or ""
    assert "second opinion please" in notes
    console.press("n")
    console.wait_for_task()
    assert "tier 2" in (page.text_content("#task-meta") or "")
    assert "second opinion please" in (page.text_content("#task-note") or "")
    earlier = page.text_content("#item-past li[data-action='task.decided']") or ""
    assert "walker" in earlier and "escalate" in earlier


def test_a_lost_lease_is_explained_calmly_and_the_next_claim_works(open_console) -> None:
    console = open_console()
    console.sign_in("lease-tester")
    page = console.page
    task_id = console.take_task()
    claimed = _when(_task(console.server, task_id)["lease_expires_at"])
    # Heartbeats renew the lease while the tab is open (every quarter of the lease).
    with page.expect_response(lambda r: r.url.endswith(f"/review/tasks/{task_id}/heartbeat")
                              and r.status == 200, timeout=LEASE_SECONDS * 1000):
        pass
    assert _when(_task(console.server, task_id)["lease_expires_at"]) > claimed
    assert page.get_attribute("#lease", "data-state") in ("ok", "low")

    # Someone (here: the same key, from another client) gives the task back.
    with console.server.http("lease-tester") as http:
        assert http.post(f"/v1/review/tasks/{task_id}/release").status_code == 200
    console.press("a")
    text, code, kind = console.notice("no longer yours")
    assert kind == "error" and code == "E105"
    assert "Nothing was decided" in text
    assert page.is_disabled("#approve")
    assert _task(console.server, task_id)["status"] == "open"
    console.press("n")
    page.wait_for_function("() => !document.querySelector('#approve').disabled")
    again = console.task_id()
    assert again is not None
    assert _task(console.server, again)["claimed_by"] == "lease-tester"


def test_skip_moves_on_to_another_task_each_time(open_console) -> None:
    """Release then "claim next" hands the same task back; skip never does, while another
    moderator still gets the skipped task first."""
    console = open_console()
    _more_tasks(console.server, "skip", 100, 12)
    console.sign_in("skipper")
    page = console.page
    first = console.take_task()
    seen = [first]
    for _ in range(5):
        console.press("s")
        seen.append(console.wait_for_task(not_id=seen[-1]))
        console.notice("Skipped task")
    assert len(set(seen)) == len(seen), f"a skipped task came back: {seen}"
    for task_id in seen[:-1]:
        task = _task(console.server, task_id)
        assert task["status"] == "open" and task["claimed_by"] is None
    with console.server.http("demo-admin") as admin:
        history = admin.get(f"/v1/review/items/{_task(console.server, first)['item_id']}/history")
    skipped = [e for e in history.json() if e["action"] == "task.skipped"]
    assert [(e["actor"], e["task_id"]) for e in skipped] == [("skipper", first)]
    # Someone else is not affected: the top task they may take is the one skipped first.
    with console.server.http("skip-other") as other:
        claimed = other.post("/v1/review/claim").json()
        assert claimed["id"] == first
        assert other.post(f"/v1/review/tasks/{first}/release").status_code == 200
    # The skip button does the same as the key; the held task is given back at the end.
    page.click("#skip")
    seen.append(console.wait_for_task(not_id=seen[-1]))
    assert seen[-1] not in seen[:-1]
    page.click("#release")
    page.wait_for_selector("#view-overview:not([hidden])")
    assert _task(console.server, seen[-1])["claimed_by"] is None


def test_the_waiting_list_opens_a_task_or_shows_it_read_only(open_console, console_server) -> None:
    queued = _more_tasks(console_server, "lister", 200, 6, title="Lister sample")
    target = queued[-1]
    with console_server.http("demo-feed") as feed:
        _report(feed, target, 3)  # reports lift it into the first rows of the list
    console = open_console()
    console.sign_in("opener")
    page = console.page
    row = page.locator(f"#waiting-table tbody tr[data-item-id='{target}']")
    expect(row).to_have_count(1)
    cells = row.locator("td").all_text_contents()
    priority, preview, categories, why, waiting, status = cells
    assert float(priority) > 0
    number = target.rsplit("-", 1)[1]
    assert preview.startswith(f"Lister sample {number} — Limited offer number {number}: ")
    with console_server.http("demo-admin") as admin:
        listed_task = admin.get("/v1/review/tasks", params={"item_id": target}).json()[0]
    flagged = listed_task["categories"]
    assert flagged and categories.startswith("".join(c.replace("_", " ") for c in flagged[:3]))
    assert row.locator("td.cats").get_attribute("title") == ", ".join(flagged)
    assert "3 reports" in why
    assert re.fullmatch(r"\d+ (s|min)", waiting)
    assert status == "free"
    listed = page.locator("#waiting-table tbody tr[data-task-id]").count()
    assert listed >= len(queued)
    console.shot("overview")

    # Keyboard: focus the row's button and press Enter. A free task is claimed.
    row.locator("button.open-task").focus()
    console.press("Enter")
    task_id = console.wait_for_task()
    assert page.get_attribute("#view-task", "data-item-id") == target
    assert page.get_attribute("#view-task", "data-mode") == "claimed"
    assert _task(console.server, task_id)["claimed_by"] == "opener"
    assert re.fullmatch(r"\d+:\d\d", page.text_content("#lease-time") or "")

    # A colleague sees it held and opens it read only: no lease, no decisions.
    colleague = open_console()
    colleague.sign_in("opener-2")
    other_page = colleague.page
    other_row = other_page.locator(f"#waiting-table tbody tr[data-task-id='{task_id}']")
    expect(other_row).to_have_attribute("data-held", "other")
    assert "in review: opener" in (other_row.text_content() or "")
    other_row.locator("button.open-task").click()
    colleague.wait_for_task()
    assert other_page.get_attribute("#view-task", "data-mode") == "readonly"
    expect(other_page.locator("#task-readonly")).to_contain_text("opener is reviewing this task")
    assert other_page.text_content("#lease-time") == "read only"
    for button in ("#approve", "#reject", "#escalate", "#skip", "#release"):
        assert other_page.is_disabled(button), button
    assert "Limited offer" in (other_page.text_content("#doc-body") or "")
    colleague.press("a")
    colleague.press("r")
    assert other_page.is_hidden("#reject-panel")
    colleague.shot("readonly")
    assert _task(console.server, task_id)["claimed_by"] == "opener"
    assert _task(console.server, task_id)["status"] == "open"
    # From the read-only view, n claims the colleague's own next task.
    colleague.press("n")
    other_page.wait_for_function(
        "() => document.querySelector('#view-task').dataset.mode === 'claimed'")
    own = colleague.task_id()
    assert own is not None and own != task_id
    assert _task(console.server, own)["claimed_by"] == "opener-2"
    other_page.click("#release")
    other_page.wait_for_selector("#view-overview:not([hidden])")

    # The holder opening another task from the list is told to finish this one first.
    page.click("#nav-queue")
    page.wait_for_selector("#waiting-table tbody tr[data-held=me]")
    page.locator("#waiting-table tbody tr[data-held=free] button.open-task").first.click()
    console.notice(f"Decide, skip or release task #{task_id} first")
    assert console.task_id() == task_id
    page.click("#release")
    page.wait_for_selector("#view-overview:not([hidden])")


def test_policy_codes_are_filtered_by_typing(open_console) -> None:
    console = open_console()
    with console.server.http("demo-moderator") as http:
        codes = http.get("/v1/review/policy").json()["codes"]
    assert len(codes) > 10, "number keys reach all codes: nothing to filter"
    _more_tasks(console.server, "filter", 300, 6)
    console.sign_in("filterer")
    page = console.page
    task_id = console.take_task()
    console.press("r")
    page.wait_for_selector("#reject-panel:not([hidden])")
    assert page.is_visible("#code-filter")
    assert page.evaluate("document.activeElement.id") == "code-filter"
    shown = page.locator("#code-list li[data-code]:not([hidden])")
    assert shown.count() == len(codes)

    page.keyboard.type("copy")
    expect(shown).to_have_count(1)
    assert shown.first.get_attribute("data-code") == "other.copyright"
    assert shown.first.locator("kbd").text_content() == "1"
    expect(page.locator("#code-shown")).to_have_text(f"1 of {len(codes)} codes")
    console.press("1")  # a digit picks a shown code; it is not typed into the filter
    assert page.input_value("#code-filter") == "copy"
    assert page.is_checked("#code-list input[value='other.copyright']")

    console.press("Escape")  # clears the filter, keeps the panel and the pick
    assert page.input_value("#code-filter") == ""
    assert page.is_visible("#reject-panel")
    expect(shown).to_have_count(len(codes))
    page.keyboard.type("fraud")  # descriptions match too: "Scams, phishing or fraudulent"
    expect(shown).to_have_count(1)
    console.press("ArrowDown")
    assert page.evaluate("document.activeElement.value") == "spam.scam"
    page.keyboard.type("x")  # typing on a code goes on in the filter
    assert page.input_value("#code-filter") == "fraudx"
    expect(page.locator("#code-list li.empty")).to_be_visible()
    console.press("Backspace")
    expect(shown).to_have_count(1)
    console.press("1")
    expect(page.locator("#code-picked")).to_have_text("Picked: spam.scam, other.copyright")
    console.press("Escape")
    page.keyboard.type("spam")
    console.shot("reject")
    console.press("Enter")
    console.wait_for_next(task_id)
    decision = _decision(console.server, task_id)
    assert decision["action"] == "reject"
    assert sorted(decision["policy_codes"]) == ["other.copyright", "spam.scam"]
    if page.is_visible("#view-task"):
        page.click("#release")
        page.wait_for_selector("#view-overview:not([hidden])")
