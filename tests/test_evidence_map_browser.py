"""The evidence map in a real browser (Debian's Chromium, as tests/test_browser.py drives it):
at 1280 px a table that fits the screen, on a phone (390 px) one card per row with no sideways
scrolling, with JavaScript off the same numbers and links, and axe-core's WCAG 2.1 AA rules
clean. Served over the evidence-map tests' catalog (real records plus derived variants, see
tests/test_evidence_map.py). Screenshots go to screenshots/.
"""

from __future__ import annotations

import pytest

from tests.test_browser import (  # noqa: F401
    CHROMIUM,
    CHROMIUM_ARGS,
    ROOT,
    axe_violations,
    browser,
    chromium_installed,
    page,
    serve_site,
    shot,
)
from tests.test_evidence_map import build_map_site

PHONE = {"width": 390, "height": 844}
TRD_ESKETAMINE = "treatment_resistant_depression|esketamine"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`datasette serve` over the map's catalog (the `page` fixture of test_browser uses it)."""
    site = build_map_site(tmp_path_factory)
    with serve_site(site) as base:
        yield base, site


def cell_of(pg, row_key: str, level: str):
    return pg.locator(f"#cell-{row_key.replace('|', '-')}-{level} a")


def test_at_1280_px_the_map_fits_and_a_cell_opens_its_list(page, server):
    base, _ = server
    page.goto(base + "/")
    page.click("a.evidence-map-link")
    page.wait_for_url("**/-/evidence-map")
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280
    table = page.locator("table.evidence-map")
    box = table.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= 1280
    assert page.locator("table.evidence-map tbody tr").count() == 50
    assert page.locator("table.evidence-map thead th").count() == 7  # the question and six levels
    shot(page, "evidence-map-1280")

    # A non-empty cell opens the articles table with exactly its records.
    link = page.locator("td.map-cell:not(.map-zero) a").first
    count = int(link.locator(".map-count").inner_text().replace(",", ""))
    link.click()
    page.wait_for_url("**/catalog/articles?**")
    assert page.locator("ol.record-list > li").count() == min(count, 100)
    shot(page, "evidence-map-cell-list")


def test_filters_and_a_shared_row_work_without_javascript(browser, server):
    base, _ = server
    context = browser.new_context(viewport={"width": 1280, "height": 900}, java_script_enabled=False)
    pg = context.new_page()
    pg.goto(base + "/-/evidence-map")
    pg.select_option("#map-route", "intranasal")
    pg.fill("#map-from", "2015")
    pg.click(".map-filters button[type=submit]")
    # the form names every choice, the kind of record (peer-reviewed, the default) among them
    pg.wait_for_url(
        "**/-/evidence-map?axis=population_molecule&kind=peer_reviewed&route=intranasal&comparator=&from=2015&to="
    )
    assert pg.locator("caption").inner_text().endswith("route Intranasal, published 2015–…")
    pg.click(f"#row-{TRD_ESKETAMINE.replace('|', '-')} th a")
    pg.wait_for_load_state()
    assert pg.locator("table.evidence-map tbody tr").count() == 1
    assert "row=treatment_resistant_depression%7Cesketamine" in pg.url and "route=intranasal" in pg.url
    shot(pg, "evidence-map-row-no-js")
    context.close()


def test_on_a_phone_each_row_is_a_card_with_no_sideways_scrolling(browser, server):
    base, _ = server
    context = browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)
    pg = context.new_page()
    pg.goto(base + "/-/evidence-map?axis=theme")
    assert pg.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    row = pg.locator("table.evidence-map tbody tr").first
    assert row.bounding_box()["width"] <= PHONE["width"]
    # Each number carries its level's name beside it, readable without the header row.
    first = row.locator("td.map-cell").first
    assert first.locator(".map-cell-level").is_visible()
    assert first.locator(".map-cell-level").inner_text() == "Systematic reviews and meta-analyses"
    font = pg.evaluate("parseFloat(getComputedStyle(document.querySelector('td.map-cell a')).fontSize)")
    assert font >= 14
    shot(pg, "evidence-map-phone")
    context.close()


@pytest.mark.parametrize(
    "path",
    [
        "/-/evidence-map",
        "/-/evidence-map?axis=outcome&comparator=placebo&from=2010",
        f"/-/evidence-map?axis=population_molecule&row={TRD_ESKETAMINE}",
    ],
)
@pytest.mark.parametrize("width", [1280, PHONE["width"]])
def test_the_map_passes_axe_wcag_21_aa(page, server, path, width):
    base, _ = server
    page.set_viewport_size({"width": width, "height": 900})
    response = page.goto(base + path)
    assert response.status == 200
    violations = axe_violations(page)
    assert not violations, f"{path} at {width} px:\n" + "\n".join(violations)
