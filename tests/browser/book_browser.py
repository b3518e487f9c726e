"""Fixtures for the end-to-end tests: the built book served locally, read by headless Chromium.

Every request a page makes goes through a route: requests to the local server pass, anything
else is aborted and recorded, so a page that reaches for a CDN fails its test instead of
silently working only online. Each visit returns a :class:`Visit` with what went wrong.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
HTML = ROOT / "_build" / "html"
SCREENSHOTS = ROOT / "_build" / "screenshots"
CHROMIUM = os.environ.get("CFCOURSE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
# The book's own pages, in reading order, from the table of contents.
TOC = yaml.safe_load((ROOT / "_toc.yml").read_text())
PAGES = [TOC["root"]] + [c["file"] for part in TOC["parts"] for c in part["chapters"]]
NUMBERED = [c["file"] for part in TOC["parts"] if part.get("numbered")
            for c in part["chapters"]]
NOTEBOOKS = [p for p in PAGES if (ROOT / f"{p}.ipynb").is_file()]
SPECIAL = ["index", "genindex", "search"]  # pages Sphinx and Jupyter Book add
# Requests per page visited this session, written to _build/screenshots/requests.json.
REQUEST_LOG: dict[str, dict] = {}


def html_of(page: str) -> str:
    return f"{page}.html"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep pytest's output readable
        pass


@pytest.fixture(scope="session")
def book() -> Path:
    if not (HTML / "index.html").is_file():
        pytest.fail("no built book in _build/html: run `make book` first "
                    "(`make test` builds it before the browser tests).")
    return HTML


@pytest.fixture(scope="session")
def server(book):
    """``http://127.0.0.1:<free port>`` serving _build/html, for the whole session."""
    handler = functools.partial(_QuietHandler, directory=str(book))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="session")
def context(server, tmp_path_factory):
    """A Chromium context with a fresh profile; it only ever talks to ``server``."""
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (`make chromium`).")
    with sync_api.sync_playwright() as playwright:
        ctx = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=CHROMIUM,
            headless=True, args=CHROMIUM_ARGS, viewport={"width": 1280, "height": 900},
        )
        ctx.set_default_timeout(30_000)
        yield ctx
        ctx.close()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    (SCREENSHOTS / "requests.json").write_text(json.dumps(REQUEST_LOG, indent=1) + "\n")


@dataclass
class Visit:
    """One page load and everything that went wrong during it."""

    page: object  # playwright Page
    url: str
    served: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        return ([f"request to another host: {u}" for u in self.blocked]
                + [f"failed request: {f}" for f in self.failed]
                + [f"console error: {e}" for e in self.console_errors])


@pytest.fixture
def visit(context, server):
    """``visit(path)`` opens ``server/path`` in a new tab and waits until it has settled.

    Settled means: no network activity, MathJax finished typesetting, and (on pages with
    saved widget state) the widget views rendered.
    """
    pages, records = [], []

    def open_page(path: str) -> Visit:
        page = context.new_page()
        pages.append(page)
        record = Visit(page, f"{server}/{path}")
        records.append(record)
        origin = urlsplit(server).netloc

        def gate(route) -> None:  # the local server only; everything else is refused
            url = route.request.url
            if urlsplit(url).netloc == origin:
                record.served.append(url)
                route.continue_()
            else:
                record.blocked.append(url)
                route.abort()

        page.route("**/*", gate)
        page.on("console", lambda m: record.console_errors.append(m.text)
                if m.type == "error" else None)
        page.on("pageerror", lambda err: record.console_errors.append(f"uncaught: {err}"))
        page.on("requestfailed", lambda r: record.failed.append(f"{r.url} ({r.failure})")
                if urlsplit(r.url).netloc == origin else None)
        page.on("response", lambda r: record.failed.append(f"{r.url} (HTTP {r.status})")
                if r.status >= 400 else None)
        page.goto(record.url, wait_until="load")
        page.wait_for_load_state("networkidle")
        page.evaluate("() => window.MathJax && MathJax.startup && MathJax.startup.promise")
        if page.locator('script[type="application/vnd.jupyter.widget-state+json"]').count():
            page.wait_for_selector(".widget-subarea .jupyter-widgets")
            page.wait_for_load_state("networkidle")
        return record

    yield open_page
    for page in pages:
        page.close()
    for record in records:
        parts = urlsplit(record.url)
        path = parts.path.lstrip("/") + (f"?{parts.query}" if parts.query else "")
        REQUEST_LOG[path] = {"served": len(record.served), "blocked": record.blocked,
                             "failed": record.failed, "console_errors": record.console_errors}
