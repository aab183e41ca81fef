"""Preprints and citations in a real browser (Debian's Chromium, as tests/test_browser.py drives
it): a preprint's page (published or not), the preprints table and its facets, the records of
both kinds (catalog_records, facet kind), an article page with its citations chart and its
preprint, and a search finding both kinds pass axe-core's WCAG 2.1 AA rules, load nothing from
elsewhere and log no error. The catalog is tests/sources_catalog.py's (real PubMed records,
Europe PMC's and OpenAlex's recorded answers)."""

from __future__ import annotations

import pytest

from tests.sources_catalog import EUROPEPMC_LINKED, TITLE_LINKED, TITLE_LINKED_PMID, build_sources_site
from tests.test_browser import axe_violations, browser, chromium_installed, page, serve_site, shot  # noqa: F401

UNLINKED = "PPR1037166"  # a real recorded preprint no catalog record publishes

PAGES = [
    "/",
    "/catalog/articles",
    f"/catalog/preprints/{TITLE_LINKED}",
    f"/catalog/preprints/{EUROPEPMC_LINKED}",
    f"/catalog/preprints/{UNLINKED}",
    "/catalog/preprints",
    "/catalog/preprints?_facet=server&has_published_version=1",
    "/catalog/catalog_records?_facet=kind",
    f"/catalog/articles/{TITLE_LINKED_PMID}",
    "/catalog/search?q=cancer",
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """Overrides test_browser's `server` for the `page` fixture: the catalog with both sources."""
    site = build_sources_site(tmp_path_factory)
    with serve_site(site.path) as base:
        yield base, site


@pytest.mark.parametrize("path", PAGES)
def test_preprint_and_citation_pages_pass_axe_wcag_21_aa(page, server, path):
    base, _ = server
    response = page.goto(base + path)
    assert response.status == 200, path
    violations = axe_violations(page)
    assert not violations, f"{path}:\n" + "\n".join(violations)


def test_the_article_page_shows_its_citations_chart_and_its_preprint(page, server):
    base, _ = server
    page.goto(f"{base}/catalog/articles/{TITLE_LINKED_PMID}")
    chart = page.locator("svg.citations-chart")
    assert chart.is_visible() and chart.locator("rect").count() >= 1
    assert page.locator(f"a[href='/catalog/preprints/{TITLE_LINKED}']").first.is_visible()
    shot(page, "sources-1-article-citations")
    page.locator(f"a[href='/catalog/preprints/{TITLE_LINKED}']").first.click()
    page.wait_for_url(f"**/catalog/preprints/{TITLE_LINKED}")
    assert page.locator(f"a[href='/catalog/articles/{TITLE_LINKED_PMID}']").first.is_visible()
    shot(page, "sources-2-preprint")
