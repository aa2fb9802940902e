"""The dashboard in a real headless Chromium (Debian's package, driven by Playwright): it
loads without console errors, follows jobs live, retries failed jobs, runs no injected
script, and logs in with the token."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from conveyor.web import WebSettings
from tests.web.live import CHROMIUM_ARGS, LiveServer, LiveWorker, chromium, wait_for
from tests.web.support import Tasks

TIMEOUT = 15_000  # ms: the longest a page is given to show something
expect.set_options(timeout=TIMEOUT)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless Chromium for the module."""
    path = chromium()
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@dataclass
class Tab:
    """A page and what it reported: console errors, uncaught exceptions, dialogs."""

    page: Page
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)


@pytest.fixture
def tab(browser: Browser) -> Iterator[Tab]:
    """A fresh browser context and page that records errors and dialogs."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT)
    page = context.new_page()
    t = Tab(page)
    page.on("console", lambda m: t.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: t.errors.append(f"uncaught: {e}"))

    def on_dialog(dialog: Any) -> None:
        t.dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    try:
        yield t
    finally:
        context.close()


@dataclass
class Site:
    """A live server and worker on one SQLite file, and an HTTP client of the API."""

    tasks: Tasks
    server: LiveServer
    http: httpx.Client

    @property
    def url(self) -> str:
        """The server's base URL."""
        return self.server.url

    def enqueue(self, task: str, **body: Any) -> str:
        """Enqueue through the API; returns the job id."""
        response = self.http.post("/api/jobs", json={"task": task, **body})
        assert response.status_code == 202, response.text
        job_id: str = response.json()["id"]
        return job_id

    def status(self, job_id: str) -> str:
        """The job's status, read through the API."""
        status: str = self.http.get(f"/api/jobs/{job_id}").json()["status"]
        return status

    def until(self, job_id: str, status: str) -> None:
        """Wait until the job has ``status``."""
        wait_for(lambda: self.status(job_id) == status, f"job {job_id} to be {status}")


def _site(tmp_path: Path, settings: WebSettings, **worker: Any) -> Iterator[Site]:
    tasks = Tasks(f"sqlite:///{tmp_path / 'dash.db'}")
    headers = {"Authorization": f"Bearer {settings.token}"} if settings.token else {}
    try:
        with (
            LiveServer(tasks.app, settings) as server,
            LiveWorker(tasks.app, **worker),
            httpx.Client(base_url=server.url, headers=headers, timeout=10) as http,
        ):
            yield Site(tasks, server, http)
    finally:
        tasks.fixed.set()
        tasks.release.set()
        tasks.app.close()


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    """A server without a token (unknown task names allowed) and a worker of "default"."""
    yield from _site(tmp_path, WebSettings(sample_every=0.2, allow_unknown=True))


def test_every_page_loads_without_console_errors(site: Site, tab: Tab) -> None:
    """Overview (with its charts), jobs, one job, failed jobs and workers: no error at all."""
    done = site.enqueue("t.add", args=[2, 3])
    broken = site.enqueue("t.boom", args=["disk full"])
    site.until(done, "succeeded")
    site.until(broken, "failed")
    page = tab.page
    page.goto(site.url + "/")
    expect(page.locator('#queues tbody tr[data-queue="default"]')).to_be_visible()
    expect(page.locator("#cards .card")).to_have_count(6)
    for chart in ["#chart-depth", "#chart-throughput", "#chart-failures"]:
        expect(page.locator(f"{chart} canvas")).to_have_count(1)
    expect(page.locator("#live")).to_have_text("live")
    page.goto(site.url + "/jobs")
    expect(page.locator(f'#jobs tr[data-id="{done}"] .badge')).to_have_text("succeeded")
    page.goto(f"{site.url}/jobs/{broken}")
    expect(page.locator("#job-error")).to_have_text("ValueError: disk full")
    expect(page.locator("#job-traceback")).to_contain_text("raise ValueError(message)")
    page.goto(site.url + "/failed")
    expect(page.locator(f'#failed tr[data-id="{broken}"]')).to_be_visible()
    page.goto(site.url + "/workers")
    expect(page.locator("#workers tbody tr[data-id]")).to_have_count(1)
    assert tab.errors == []


def test_a_job_enqueued_through_the_api_shows_up_and_succeeds_live(site: Site, tab: Tab) -> None:
    """The jobs page follows a job from running to succeeded without a reload."""
    page = tab.page
    page.goto(site.url + "/jobs")
    expect(page.locator("#jobs tbody td.empty")).to_have_text("No jobs match.")
    page.evaluate("window.notReloaded = true")
    job_id = site.enqueue("t.block")
    badge = page.locator(f'#jobs tr[data-id="{job_id}"] .badge')
    expect(badge).to_have_text("running")
    site.tasks.release.set()
    expect(badge).to_have_text("succeeded")
    assert page.evaluate("window.notReloaded") is True
    assert tab.errors == []


def test_a_failed_job_is_retried_from_the_page(site: Site, tab: Tab) -> None:
    """Retry from the failed-jobs list and from the job's own page; both then succeed."""
    first = site.enqueue("t.flaky")
    second = site.enqueue("t.flaky")
    site.until(first, "failed")
    site.until(second, "failed")
    site.tasks.fixed.set()
    page = tab.page
    page.goto(site.url + "/failed")
    row = page.locator(f'#failed tr[data-id="{first}"]')
    expect(row).to_contain_text("ConnectionError: the gateway is down")
    row.get_by_role("button", name="Retry").click()
    expect(row).to_have_count(0)
    site.until(first, "succeeded")
    page.goto(f"{site.url}/jobs/{second}")
    expect(page.locator("#job-status .badge")).to_have_text("failed")
    page.locator("#job-actions").get_by_role("button", name="Retry").click()
    expect(page.locator("#job-status .badge")).to_have_text("succeeded")
    expect(page.locator("#job-result")).to_have_text('"done"')
    assert tab.errors == []


PAYLOADS = [
    "<script>window.pwned = 'script'</script>",
    "<img src=x onerror=\"window.pwned = 'img'\">",
    '"><svg onload="window.pwned = \'svg\'">',
    "javascript:window.pwned='link'",
]


def test_payloads_in_jobs_run_no_script(site: Site, tab: Tab) -> None:
    """Task names, arguments, keys, queues and errors holding markup are shown as text."""
    script, img, svg, _ = PAYLOADS
    unknown = site.enqueue(img, args=PAYLOADS, kwargs={svg: script}, key=script)
    boom = site.enqueue("t.boom", args=[img + svg + script])
    queued = site.enqueue("t.add", args=[1, 2], queue=svg)
    site.until(unknown, "failed")
    site.until(boom, "failed")
    page = tab.page
    pages = [
        ("/", "#queues tbody tr[data-queue]"),
        ("/jobs", f'#jobs tr[data-id="{queued}"]'),
        (f"/jobs/{unknown}", "#job-args"),
        (f"/jobs/{boom}", "#job-traceback"),
        ("/failed", f'#failed tr[data-id="{boom}"]'),
        ("/workers", "#workers tbody tr[data-id]"),
        ("/jobs/" + quote(img), "#job-task:text('No such job')"),
    ]
    for path, ready in pages:
        page.goto(site.url + path)
        expect(page.locator(ready).first).to_be_visible()
        page.wait_for_timeout(300)  # give any injected handler the chance to fire
        assert page.evaluate("window.pwned") is None, path
        assert page.locator("main img, main svg, main script, main iframe").count() == 0, path
    page.goto(f"{site.url}/jobs/{unknown}")
    expect(page.locator("#job-task")).to_have_text(img)
    expect(page.locator("#job-args")).to_contain_text("<script>window.pwned")
    expect(page.locator("#job-error")).to_contain_text("no task named '<img src=x onerror=")
    page.goto(f"{site.url}/jobs/{boom}")
    expect(page.locator("#job-error")).to_have_text(f"ValueError: {img}{svg}{script}")
    page.goto(site.url + "/")
    expect(
        page.locator(f'#queues tr[data-queue="{svg.replace(chr(34), chr(92) + chr(34))}"]')
    ).to_be_visible()
    assert tab.dialogs == []
    # The only error: the API's 404 for the job page of a made-up id (shown as "No such job").
    assert tab.errors == [
        "Failed to load resource: the server responded with a status of 404 (Not Found)"
    ]


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[Site]:
    """A server that requires a token."""
    yield from _site(tmp_path, WebSettings(token="browser-token", sample_every=0.2))


def test_login_then_pause_a_queue(guarded: Site, tab: Tab) -> None:
    """The browser logs in with the token; actions carry the session's CSRF token."""
    guarded.enqueue("t.add", args=[1, 2], delay=3600)
    page = tab.page
    page.goto(guarded.url + "/workers")
    expect(page).to_have_url(guarded.url + "/login?next=/workers")
    page.get_by_label("Token").fill("wrong")
    page.get_by_role("button", name="Log in").click()
    expect(page.locator(".error-line")).to_have_text("That is not the token.")
    page.get_by_label("Token").fill("browser-token")
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(guarded.url + "/workers")
    page.goto(guarded.url + "/")
    row = page.locator('#queues tr[data-queue="default"]')
    row.get_by_role("button", name="Pause").click()
    expect(row.locator(".badge")).to_have_text("paused")
    assert guarded.http.get("/api/queues").json()["queues"][0]["paused"] is True
    errors = [e for e in tab.errors if "401" not in e]  # the failed login answers 401
    assert errors == []
