"""The catalog in a real browser: Debian's headless Chromium, driven by Playwright, against
`datasette serve` over a temporary copy of db/ holding the session's catalog, on 127.0.0.1.

A researcher's path: the front page, a search, a result, a facet, a retracted record, a typo in
the search syntax. Every request the pages make must stay on this server (no CDN), and no page
may log a script error or a Content-Security-Policy violation. Screenshots go to screenshots/
(gitignored) for a person to look at.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.test_catalog import KETAMINE, MEPOLIZUMAB_RCT, RETRACTED, build_catalog_site

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(os.environ.get("CATALOG_SCREENSHOTS") or ROOT / "screenshots")


@pytest.fixture(scope="module", autouse=True)
def chromium_installed():
    """A missing browser fails these tests with the fix, never skips them (CI must not pass
    without having looked at a page)."""
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is missing: `make tools` installs it (as root)", pytrace=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve_site(site: Path):
    """`datasette serve` over a configuration directory, as `make serve` runs it: yields its URL."""
    port = free_port()
    datasette = Path(sys.executable).with_name("datasette")
    # The project importable (the RIS/BibTeX renderers use harvest.export).
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen(
        [str(datasette), "serve", str(site), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(base + "/-/versions.json", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"datasette did not start: {proc.stdout.read().decode(errors='replace')}"
                    ) from None
                time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    site = build_catalog_site(tmp_path_factory)
    with serve_site(site) as base:
        yield base, site


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, server):
    base, _ = server
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    pg.requested = []
    pg.problems = []
    pg.on("request", lambda r: pg.requested.append(r.url))
    pg.on("pageerror", lambda e: pg.problems.append(f"page error: {e}"))
    # A CSP violation or a failed script shows up as a console error.
    pg.on("console", lambda m: pg.problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    yield pg
    elsewhere = [u for u in pg.requested if not u.startswith(base) and not u.startswith("data:")]
    assert elsewhere == [], "the pages fetched from another host"
    assert pg.problems == []
    context.close()


def shot(pg, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    pg.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def test_a_researcher_searches_opens_a_record_and_filters_by_a_facet(page, server):
    base, site = server
    db = sqlite3.connect(f"file:{site / 'catalog.db'}?mode=ro", uri=True)

    page.goto(base + "/")
    assert page.locator("h1").inner_text().startswith("Ketamine for depression")
    assert page.locator("svg.year-chart rect").count() > 5
    assert page.locator("svg.year-chart").bounding_box()["width"] > 300
    shot(page, "1-front-page")

    # The front page's search box leads to ranked results.
    page.fill("input[name=q]", "ketamine depression")
    page.keyboard.press("Enter")
    page.wait_for_url("**/catalog/search?q=ketamine+depression")
    results = page.locator("ol.search-results > li")
    assert results.count() >= 3
    found = {int(results.nth(i).get_attribute("data-pmid")) for i in range(results.count())}
    assert KETAMINE <= found
    assert page.locator(".snippet mark").first.is_visible()
    shot(page, "2-search-results")

    # A result opens as a record: title, byline, abstract, links out.
    page.click("ol.search-results a[href='/catalog/articles/38011560']")
    page.wait_for_url("**/catalog/articles/38011560")
    assert "Ketamine and the neurobiology of depression" in page.locator("h1.record-title").inner_text()
    assert "Krystal JH" in page.locator("p.byline").inner_text()
    assert page.locator("a.link-pubmed").get_attribute("href") == "https://pubmed.ncbi.nlm.nih.gov/38011560/"
    assert page.locator("a.link-doi").get_attribute("href") == "https://doi.org/10.1073/pnas.2305772120"
    assert page.locator("a.link-pmc").is_visible()
    exports = page.locator("p.export-links").inner_text()
    assert "RIS" in exports and "BibTeX" in exports and "CSL-JSON" in exports
    shot(page, "3-article")

    # The articles table, newest first; a facet value narrows it.
    page.goto(base + "/catalog/articles")
    molecule = page.locator("#facet-molecule a", has_text="unspecified ketamine")
    molecule.click()
    page.wait_for_url("**/catalog/articles?_molecule=unspecified_ketamine")
    expected = db.execute(
        "select count(*) from article_tags where facet = 'molecule' and value = 'unspecified_ketamine'"
    ).fetchone()[0]
    assert page.locator("ol.record-list > li").count() == expected
    assert page.locator("#facet-molecule li.selected").inner_text().startswith("unspecified ketamine")
    shot(page, "4-facet")
    db.close()


def test_a_retracted_record_warns_before_anything_else(page, server):
    base, _ = server
    pmid = sorted(RETRACTED)[0]
    page.goto(f"{base}/catalog/articles/{pmid}")
    warning = page.locator(".notice-retracted")
    assert warning.is_visible() and "Retracted" in warning.inner_text()
    assert warning.bounding_box()["y"] < page.locator("h1.record-title").bounding_box()["y"]
    shot(page, "5-retracted")


def test_search_syntax_mistakes_get_a_message(page, server):
    base, _ = server
    page.goto(base + "/catalog/search")
    assert page.locator("#syntax").is_visible()
    page.fill("input[name=q]", '"rapid-acting antidepressant')
    page.keyboard.press("Enter")
    page.wait_for_load_state()
    assert "is not valid search syntax" in page.locator(".search-syntax-note").inner_text()
    assert page.locator("ol.search-results > li").count() >= 1
    shot(page, "6-search-syntax")


def test_datasettes_own_pages_run_under_the_content_security_policy(page, server):
    """The SQL editor (CodeMirror) and the spreadsheet view's column menus are Datasette's own
    scripts: served from /-/static/ and inline, they must run without a CSP violation."""
    base, _ = server
    page.goto(base + "/catalog?sql=select+pmid,+title+from+articles+limit+3")
    assert page.locator(".CodeMirror, .cm-editor").first.is_visible()
    assert page.locator("table.rows-and-columns tbody tr").count() == 3
    page.goto(base + "/catalog/articles?_view=table")
    page.locator("th.col-title svg").first.click()  # table.js's column menu
    assert page.locator(".dropdown-menu").first.is_visible()
    shot(page, "7-spreadsheet-view")


def test_facet_values_wrap_between_words_never_inside_one(page, server):
    """Datasette's app.css breaks facet values anywhere ("Process es", "healt h")."""
    base, _ = server
    page.goto(base + "/catalog/articles?_facet_catalog=mesh&_facet_catalog=pubtype&_facet_catalog=theme")
    report = page.evaluate("""() => {
        const broken = [], wrapped = [];
        for (const li of document.querySelectorAll('.facet-info li')) {
            const walker = document.createTreeWalker(li, NodeFilter.SHOW_TEXT);
            let lines = new Set();
            for (let node = walker.nextNode(); node; node = walker.nextNode()) {
                for (const m of node.textContent.matchAll(/\\S+/g)) {
                    const range = document.createRange();
                    range.setStart(node, m.index);
                    range.setEnd(node, m.index + m[0].length);
                    const tops = new Set([...range.getClientRects()].map(r => Math.round(r.top)));
                    if (tops.size > 1) broken.push(m[0]);
                    tops.forEach(t => lines.add(t));
                }
            }
            if (lines.size > 1) wrapped.push(li.innerText);
        }
        return {broken, wrapped};
    }""")
    assert report["wrapped"], "no facet value is long enough to wrap: the test proves nothing"
    assert report["broken"] == []
    shot(page, "8-facets")


def test_search_strategy_fits_a_1280_px_screen_with_the_whole_query(page, server):
    base, site = server
    db = sqlite3.connect(f"file:{site / 'catalog.db'}?mode=ro", uri=True)
    query_text = db.execute(
        "select query_text from harvest_runs where status = 'success' order by id desc limit 1"
    ).fetchone()[0]
    db.close()
    page.goto(base + "/catalog/search_strategy")
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280  # no sideways scrolling
    latest = page.locator("section.strategy-run").first
    assert latest.locator("pre.strategy-query").inner_text().strip() == query_text.strip()
    for box in (
        latest.locator("pre.strategy-query").bounding_box(),
        latest.locator("table.strategy-counts").bounding_box(),
    ):
        assert box["x"] >= 0 and box["x"] + box["width"] <= 1280
    assert latest.locator("td.col-records_found").is_visible()
    shot(page, "9-search-strategy")


# -- accessibility ----------------------------------------------------------------------------
# axe-core (npm, pinned in tests/package.json; `make tools` runs `npm ci` there) injected into
# each kind of page the catalog serves, its WCAG 2.0/2.1 A and AA rules run in Chromium.
AXE = ROOT / "tests" / "node_modules" / "axe-core" / "axe.min.js"
WCAG_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
EVERY_KIND_OF_PAGE = [
    "/",
    "/catalog",
    "/catalog/articles",
    "/catalog/articles?pub_year=2021&_molecule=unspecified_ketamine",
    "/catalog/articles?_view=table",
    f"/catalog/articles/{MEPOLIZUMAB_RCT}",
    f"/catalog/articles/{sorted(RETRACTED)[0]}",
    "/catalog/search",
    "/catalog/search?q=ketamine",
    "/catalog/prisma_flow",
    "/catalog/search_strategy",
    "/catalog/new_since",
    "/catalog/retracted_or_corrected",
    "/catalog/harvest_runs",
    "/catalog/harvest_runs/1",
    "/catalog/article_tags?facet=molecule",
    "/catalog?sql=select+pmid,+title+from+articles+limit+3",
]


def test_an_article_page_lists_similar_articles_that_lead_to_each_other(page, server, browser):
    # Issue #21: every article shows its most similar stored articles with the terms they share;
    # a researcher follows one and finds the way back. At 1280 px and on a phone.
    base, site = server
    db = sqlite3.connect(f"file:{site / 'catalog.db'}?mode=ro", uri=True)
    review = 38011560  # "Ketamine and the neurobiology of depression" (in KETAMINE)
    expected = [
        p for (p,) in db.execute("select similar_pmid from similar_articles where pmid = ? order by rank", [review])
    ]
    assert 1 <= len(expected) <= 10
    page.goto(f"{base}/catalog/articles/{review}")
    section = page.locator("section.similar-articles")
    section.scroll_into_view_if_needed()
    assert section.locator("h2").inner_text() == "Similar articles" and section.is_visible()
    items = section.locator("ol.similar > li")
    assert [int(p) for p in items.evaluate_all("els => els.map(e => e.dataset.pmid)")] == expected
    for i in range(items.count()):
        shared = items.nth(i).locator(".shared-terms")
        assert shared.is_visible() and shared.inner_text().startswith("Shared: ")
    shot(page, "article-similar")
    first = expected[0]
    items.first.locator("a").click()
    page.wait_for_url(f"**/catalog/articles/{first}")
    back = [
        int(p)
        for p in page.locator("section.similar-articles ol.similar > li").evaluate_all(
            "els => els.map(e => e.dataset.pmid)"
        )
    ]
    listed_back = db.execute("select 1 from similar_articles where pmid = ? and similar_pmid = ?", [first, review])
    assert (review in back) == (listed_back.fetchone() is not None) and back
    db.close()
    phone = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True)
    try:
        pg = phone.new_page()
        pg.goto(f"{base}/catalog/articles/{review}")
        assert pg.locator("section.similar-articles ol.similar > li").count() == len(expected)
        assert pg.evaluate("document.documentElement.scrollWidth") <= 390
        shot(pg, "article-similar-phone")
    finally:
        phone.close()


def axe_violations(pg) -> list[str]:
    if not AXE.exists():
        pytest.fail(f"{AXE.relative_to(ROOT)} is missing: `make tools` installs it (npm ci in tests/)", pytrace=False)
    # Evaluated through the DevTools protocol, so the page's Content-Security-Policy still holds for
    # the page itself and does not need loosening for the test.
    pg.evaluate(AXE.read_text())
    found = pg.evaluate(
        """async (tags) => {
        const result = await axe.run(document, {runOnly: {type: 'tag', values: tags}, resultTypes: ['violations']});
        return result.violations.map(v => v.id + ' (' + v.impact + '): ' +
            v.nodes.map(n => n.target.join(' ')).slice(0, 4).join(' | '));
    }""",
        WCAG_AA,
    )
    return found


@pytest.mark.parametrize("path", EVERY_KIND_OF_PAGE)
def test_every_kind_of_page_passes_axe_wcag_21_aa(page, server, path):
    base, _ = server
    response = page.goto(base + path)
    assert response.status == 200, path
    violations = axe_violations(page)
    assert not violations, f"{path}:\n" + "\n".join(violations)
