"""The book as a reader meets it: every page of _build/html, opened in headless Chromium.

Run by ``make test`` after it builds the book (``pytest -m browser tests/browser``).
The default ``pytest`` run deselects these tests (see ``addopts`` in pyproject.toml).
The fixtures live in book_browser.py, imported by name (hence ruff's F811 is off here).
"""
# ruff: noqa: F811

from __future__ import annotations

import json
import re
from urllib.parse import unquote, urlsplit

import pytest
import yaml
from book_browser import (  # noqa: F401  (fixtures are used by name)
    HTML,
    NOTEBOOKS,
    NUMBERED,
    PAGES,
    ROOT,
    SCREENSHOTS,
    SPECIAL,
    book,
    context,
    html_of,
    server,
    visit,
)

pytestmark = pytest.mark.browser

# Every figure, formula and widget below must be there: a test of an empty page proves nothing.
EXPECTED_FIGURES = {"chapters/01_pizza": 2}
EXPECTED_MATH = {"chapters/01_pizza": 10, "glossary": 3}
GLOSSARY_TERMS = ["latent factor", "embedding", "bias", "weight decay", "sigmoid_range",
                  "cold start", "collaborative filtering", "dot product", "overfitting", "RMSE"]
CITED = {"howard2020fastbook": "Howard", "koren2009matrix": "Koren",
         "rendle2019difficulty": "Rendle", "harper2015movielens": "Harper",
         "hug2020surprise": "Hug"}


def _all_pages() -> list[str]:
    return [html_of(p) for p in PAGES + SPECIAL]


def test_the_book_has_exactly_the_pages_of_the_toc(book):
    """No orphan page, and nothing in the table of contents is missing from the build."""
    built = {str(p.relative_to(book)) for p in book.rglob("*.html")
             if not p.relative_to(book).parts[0].startswith("_")}
    assert built == set(_all_pages())


def test_requests_to_other_hosts_are_blocked_and_counted(visit):
    """The guard itself: a page that reaches for a CDN is caught, and nothing gets out."""
    seen = visit("intro.html?guard-self-test")
    outcome = seen.page.evaluate("""() => fetch('https://cdn.jsdelivr.net/npm/mathjax@3')
        .then(() => 'fetched', () => 'refused')""")
    assert outcome == "refused"
    assert seen.blocked == ["https://cdn.jsdelivr.net/npm/mathjax@3"]
    assert any("jsdelivr" in problem for problem in seen.problems())


@pytest.mark.parametrize("path", _all_pages())
def test_page_loads_cleanly_and_offline(visit, path):
    seen = visit(path)
    page = seen.page
    assert seen.problems() == [], f"{path}: " + "; ".join(seen.problems())
    assert seen.served, "the page was served by the local server"
    assert page.title(), f"{path} has no title"
    # Nothing on the page even refers to an external script or stylesheet.
    external = page.evaluate("""() => [
        ...Array.from(document.querySelectorAll('script[src]'), e => e.src),
        ...Array.from(document.querySelectorAll('link[rel=stylesheet]'), e => e.href),
    ].filter(u => new URL(u).host !== location.host)""")
    assert external == [], f"{path} references external scripts/styles: {external}"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / (path.replace("/", "__")[:-5] + ".png"), full_page=True)


@pytest.mark.parametrize("page_name", PAGES)
def test_every_figure_loads(visit, page_name):
    page = visit(html_of(page_name)).page
    images = page.locator("article img")
    for i in range(images.count()):
        images.nth(i).scroll_into_view_if_needed()
    page.wait_for_function("() => Array.from(document.images).every(i => i.complete)")
    sizes = page.evaluate("""() => Array.from(document.querySelectorAll('article img'),
        i => [i.getAttribute('src'), i.naturalWidth])""")
    broken = [src for src, width in sizes if width == 0]
    assert broken == [], f"{page_name}: images that did not load: {broken}"
    assert len(sizes) >= EXPECTED_FIGURES.get(page_name, 0)


@pytest.mark.parametrize("page_name", PAGES)
def test_math_is_typeset(visit, page_name):
    page = visit(html_of(page_name)).page
    counts = page.evaluate("""() => {
        const math = Array.from(document.querySelectorAll('article .math'));
        return {math: math.length,
                typeset: math.filter(m => m.querySelector('mjx-container')).length,
                errors: document.querySelectorAll('mjx-merror').length,
                raw: math.filter(m => /\\\\[(\\[]/.test(m.textContent)
                                      && !m.querySelector('mjx-container')).length};
    }""")
    assert counts["math"] >= EXPECTED_MATH.get(page_name, 0), counts
    assert counts["typeset"] == counts["math"] and counts["raw"] == 0, counts
    assert counts["errors"] == 0, f"{page_name}: MathJax reported errors"


def test_pizza_widget_snapshot_renders(visit):
    page = visit("chapters/01_pizza.html").page
    explorer = page.locator(".widget-subarea").first
    assert explorer.locator(".widget-slider").count() == 6  # three tastes, three qualities
    text = explorer.inner_text()
    assert "predicted enjoyment" in text and "Margherita" in text
    assert explorer.locator("table tr").count() == 6  # a header and the top five pizzas
    box = explorer.bounding_box()
    assert box["width"] > 300 and box["height"] > 150
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    explorer.screenshot(path=SCREENSHOTS / "widget__pizza_explorer.png")


def test_sidebar_links_resolve_and_cover_the_book(visit, server):
    page = visit("index.html").page
    hrefs = page.evaluate("""() => Array.from(
        document.querySelectorAll('nav.bd-docs-nav a.reference'), a => a.href)""")
    targets = {urlsplit(h).path.lstrip("/") for h in hrefs}
    assert targets == {html_of(p) for p in PAGES}, "the sidebar lists every page"
    for href in hrefs:
        response = page.request.get(href)
        assert response.status == 200, f"{href}: HTTP {response.status}"


@pytest.mark.parametrize("page_name", PAGES + SPECIAL)
def test_internal_links_and_anchors_resolve(visit, page_name, book):
    page = visit(html_of(page_name)).page
    hrefs = page.evaluate("() => Array.from(document.querySelectorAll('a[href]'), a => a.href)")
    host = urlsplit(page.url).netloc
    missing = []
    for href in hrefs:
        parts = urlsplit(href)
        if parts.netloc != host:
            continue
        target = book / unquote(parts.path).lstrip("/")
        if target.is_dir():
            target = target / "index.html"
        if not target.is_file():
            missing.append(href)
        elif parts.fragment and target.suffix == ".html":
            html = target.read_text(encoding="utf-8")
            if f'id="{unquote(parts.fragment)}"' not in html:
                missing.append(href)
    assert missing == [], f"{page_name}: links to nothing: {missing}"


@pytest.mark.parametrize("page_name", NUMBERED)
def test_course_chapters_are_numbered(visit, page_name):
    number = NUMBERED.index(page_name) + 1
    heading = visit(html_of(page_name)).page.locator("article h1").first
    assert heading.locator(".section-number").inner_text().strip() == f"{number}."


@pytest.mark.parametrize("page_name", NOTEBOOKS)
def test_notebook_pages_offer_download_and_colab(visit, page_name):
    page = visit(html_of(page_name)).page
    download = page.locator(".dropdown-download-buttons a[href$='.ipynb']")
    assert download.count() == 1, "a download button for the notebook"
    response = page.request.get(download.evaluate("a => a.href"))
    assert response.status == 200
    assert json.loads(response.body())["cells"], "the download is the notebook itself"
    repository = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]
    launch = page.locator(".dropdown-launch-buttons a[href*='colab.research.google.com']")
    assert launch.count() == 1, "a launch button for Colab"
    expected = repository.replace("https://github.com/", "/github/") + "/blob/main/"
    assert launch.get_attribute("href").endswith(f"{page_name}.ipynb")
    assert expected in launch.get_attribute("href")


def test_glossary_defines_the_terms_and_chapters_use_it(visit):
    page = visit("glossary.html").page
    terms = page.evaluate("""() => Array.from(
        document.querySelectorAll('dl.glossary > dt'),
        t => t.textContent.replace('#', '').trim())""")
    for term in GLOSSARY_TERMS:
        assert term in terms, f"the glossary lacks {term!r}"
    built = [p for p in PAGES if (HTML / html_of(p)).is_file()]  # missing: see the first test
    unlinked = [p for p in built if p not in ("glossary", "bibliography")
                and not re.search(r'href="[./]*glossary\.html#term-',
                                  (HTML / html_of(p)).read_text(encoding="utf-8"))]
    assert unlinked == [], (f"{unlinked} link no glossary term: mark the first use of a "
                            "glossary word with the {term} role, e.g. {term}`embedding`")


def test_bibliography_lists_the_works_and_chapters_cite_them(visit):
    page = visit("bibliography.html").page
    entries = page.locator(".citation")
    assert entries.count() >= len(CITED)
    text = page.locator("article").inner_text()
    for author in CITED.values():
        assert author in text
    cited_from = {p for p in PAGES if (HTML / html_of(p)).is_file()
                  and re.search(r'href="[./]*bibliography\.html#',
                               (HTML / html_of(p)).read_text(encoding="utf-8"))}
    assert {"intro", "chapters/00_how_to_use", "chapters/01_pizza"} <= cited_from


def test_search_finds_embedding(visit):
    page = visit("search.html?q=embedding").page
    page.wait_for_selector("#search-results ul.search li")
    results = page.evaluate("""() => Array.from(
        document.querySelectorAll('#search-results ul.search li a'), a => a.href)""")
    assert any("glossary.html" in r for r in results), results
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / "search__embedding.png")
