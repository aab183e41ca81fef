"""The registered trials in a real browser (Debian's Chromium, as tests/test_browser.py drives
it): the trial page, the trials table and its facets, the trials questions and the pages that
link to them pass axe-core's WCAG 2.1 AA rules, load nothing from elsewhere and log no error.
The catalog is tests/trials_catalog.py's (real PubMed records, registry stand-in studies)."""

from __future__ import annotations

import pytest

from tests.test_browser import axe_violations, browser, chromium_installed, page, serve_site, shot  # noqa: F401
from tests.trials_catalog import HOSTILE, KETAMINE_PAPER, build_trials_site


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """Overrides test_browser's `server` for the `page` fixture: the catalog with trials."""
    site = build_trials_site(tmp_path_factory)
    with serve_site(site.path) as base:
        yield base, site


def trial_pages(site) -> list[str]:
    return [
        f"/catalog/trials/{site.clones['two_papers']}",
        f"/catalog/trials/{site.clones['ketamine']}",
        f"/catalog/trials/{HOSTILE}",
        "/catalog/trials/NCT03630471",
    ]


PAGES = [
    "/",
    "/catalog/trials",
    "/catalog/trials?_phase=PHASE2&_results_paper=yes",
    "/catalog/trials?_view=table",
    f"/catalog/articles/{KETAMINE_PAPER}",
    "/catalog/trials_completed_without_paper",
    "/catalog/trials_results_without_paper",
    "/catalog/trials_ongoing_by_molecule",
    "/catalog/trials_reported_in_several_papers",
    "/catalog/trial_status_changes",
]


@pytest.mark.parametrize("path", PAGES + ["trial pages"])
def test_trials_pages_pass_axe_wcag_21_aa(page, server, path):
    base, site = server
    for one in trial_pages(site) if path == "trial pages" else [path]:
        response = page.goto(base + one)
        assert response.status == 200, one
        violations = axe_violations(page)
        assert not violations, f"{one}:\n" + "\n".join(violations)


def test_a_reader_filters_the_trials_by_molecule_and_opens_a_trial(page, server):
    base, site = server
    page.goto(base + "/catalog/trials")
    page.locator("#facet-molecule a", has_text="unspecified ketamine").click()
    page.wait_for_url("**/catalog/trials?_molecule=unspecified_ketamine")
    items = page.locator("ol.trial-list > li")
    assert items.count() == 1
    items.first.locator("a.record-link").click()
    page.wait_for_url(f"**/catalog/trials/{site.clones['ketamine']}")
    assert page.locator("dl.trial-facts").first.is_visible()
    assert (
        page.locator(f"li.linked-paper[data-pmid='{KETAMINE_PAPER}'] a").get_attribute("href")
        == f"/catalog/articles/{KETAMINE_PAPER}"
    )
    shot(page, "trials-1-trial-page")
