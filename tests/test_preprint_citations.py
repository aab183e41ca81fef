"""Citation counts of preprints, from OpenAlex by DOI (a preprint has no PMID): every in-topic
preprint with a DOI is read on the records' schedule, 50 DOIs a request, its count and counts per
year stored (`preprint_citations`, `preprint_citations_by_year`, `preprints.cited_by_count`) and
shown on its page; one OpenAlex holds no work for says so.

The catalog is tests/sources_catalog.py's: its OpenAlex stand-in serves a clone of a real recorded
work for each preprint's DOI but the first two (by DOI). What each preprint should hold is worked
out here from the recorded works themselves, in the order the clones were made."""

from __future__ import annotations

import math
import os
import sqlite3
from unittest import mock

import lxml.html
import pytest

from harvest.config import OpenalexSettings
from harvest.openalex import OpenalexClient, askable_doi
from harvest.runner import run_citations_harvest
from tests.openalex_stand_in import OpenalexStandIn, WorkStore, clone_for, clone_for_dois, pmid_of, recorded_works
from tests.sources_catalog import TODAY, UNKNOWN_TO_OPENALEX, client, site  # noqa: F401 - fixtures


def connect(path):
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    return conn


@pytest.fixture(scope="module")
def expected(site) -> dict[str, dict | None]:
    """DOI -> the recorded work its clone copies (None: no work carries the DOI)."""
    conn = connect(site.path / "catalog.db")
    dois = sorted({r[0] for r in conn.execute("select doi from preprints where in_topic = 1 and doi is not null")})
    conn.close()
    sources = [w for w in recorded_works() if pmid_of(w) is not None]
    out: dict[str, dict | None] = {doi: None for doi in dois[:UNKNOWN_TO_OPENALEX]}
    out.update({doi: sources[i % len(sources)] for i, doi in enumerate(dois[UNKNOWN_TO_OPENALEX:])})
    return out


def test_every_preprint_with_a_doi_has_the_count_of_the_work_carrying_it(site, expected):
    conn = connect(site.path / "catalog.db")
    rows = [dict(r) for r in conn.execute("select * from preprint_citations")]
    in_topic = conn.execute("select count(*) from preprints where in_topic = 1 and doi is not null").fetchone()[0]
    assert {r["doi"] for r in rows} == set(expected) and len(rows) == in_topic and len(expected) >= 20
    for row in rows:
        doi = row["doi"]
        work = expected[doi]
        assert row["read_at"].startswith(TODAY), row
        if work is None:
            assert (row["found"], row["cited_by_count"], row["openalex_id"]) == (0, None, None), row
            continue
        assert (row["found"], row["cited_by_count"]) == (1, work["cited_by_count"]), doi
        years = [
            tuple(y)
            for y in conn.execute(
                "select year, count from preprint_citations_by_year where ppr_id = ? order by year", [row["ppr_id"]]
            )
        ]
        assert years == sorted((e["year"], e["cited_by_count"]) for e in work.get("counts_by_year") or [])
        (sort_count,) = conn.execute(
            "select cited_by_count from preprints where ppr_id = ?", [row["ppr_id"]]
        ).fetchone()
        assert sort_count == work["cited_by_count"]
    conn.close()


def test_a_preprints_page_shows_its_count_or_that_openalex_has_no_work(site, client, expected):
    conn = connect(site.path / "catalog.db")
    by_doi = dict(conn.execute("select doi, ppr_id from preprints"))
    conn.close()
    known = next(doi for doi, work in expected.items() if work is not None and work["cited_by_count"] > 0)
    page = lxml.html.fromstring(client.get(f"/catalog/preprints/{by_doi[known]}").text)
    (section,) = page.xpath("//section[@class='citations']")
    assert section.xpath("string(.//strong[@class='cited-by-count'])") == f"{expected[known]['cited_by_count']:,}"
    assert f"read {TODAY}" in " ".join(section.text_content().split())
    unknown = next(doi for doi, work in expected.items() if work is None)
    page = lxml.html.fromstring(client.get(f"/catalog/preprints/{by_doi[unknown]}").text)
    text = " ".join(page.xpath("string(//section[@class='citations'])").split())
    assert f"OpenAlex holds no work with DOI {unknown} (read {TODAY})" in text
    # The preprints table sorts by the count.
    listing = client.json("/catalog/preprints.json?_sort_desc=cited_by_count&_shape=objects&_size=3")
    assert listing["rows"][0]["cited_by_count"] == max(w["cited_by_count"] for w in expected.values() if w)


def test_the_same_day_asks_nothing_and_a_week_later_every_preprint_is_read_again(site, tmp_path):
    path = tmp_path / "catalog.db"
    with sqlite3.connect(site.path / "catalog.db") as source, sqlite3.connect(path) as copy:
        source.backup(copy)  # with what the write-ahead log holds
    conn = connect(path)
    pmids = [r[0] for r in conn.execute("select pmid from articles where is_deleted = 0 order by pmid")]
    dois = sorted({r[0] for r in conn.execute("select doi from preprints where in_topic = 1 and doi is not null")})
    asked = conn.execute("select count(*) from preprints where in_topic = 1 and doi is not null").fetchone()[0]
    before = [tuple(r) for r in conn.execute("select * from preprint_citations order by ppr_id")]
    conn.close()
    works = WorkStore.recorded()
    clone_for(works, pmids)
    clone_for_dois(works, dois[UNKNOWN_TO_OPENALEX:])
    with OpenalexStandIn(works) as server:
        settings = OpenalexSettings(base_url=server.url, requests_per_second=50, backoff_base=0.05, backoff_cap=1)
        with mock.patch.dict(os.environ, {"HARVEST_TODAY": TODAY}):
            same_day = run_citations_harvest(path, client=OpenalexClient(settings))
        assert same_day.status == "success" and (same_day.preprints_due, len(server.requests)) == (0, 0)
        with mock.patch.dict(os.environ, {"HARVEST_TODAY": "2026-03-09"}):
            week = run_citations_harvest(path, client=OpenalexClient(settings))
        doi_requests = [params for _, params in server.requests if params.get("filter", "").startswith("doi:")]
    assert week.status == "success" and week.preprints_read == asked
    assert (week.preprints_unchanged, week.preprints_not_found, week.preprints_updated) == (
        asked - UNKNOWN_TO_OPENALEX,
        UNKNOWN_TO_OPENALEX,
        0,
    )
    assert len(doi_requests) == math.ceil(asked / 50)
    conn = connect(path)
    after = [tuple(r) for r in conn.execute("select * from preprint_citations order by ppr_id")]
    conn.close()
    assert [r[:6] for r in after] == [r[:6] for r in before]  # the same counts, read again


def test_a_doi_an_or_filter_cannot_hold_is_never_asked_for():
    assert askable_doi("10.21203/rs.3.rs-6664819/v1") and askable_doi("https://doi.org/10.1101/2025.06.13.25329599")
    assert not askable_doi("10.1000/a,b") and not askable_doi("10.1000/a|b") and not askable_doi("not a doi")
    with pytest.raises(ValueError, match="not a DOI an OR filter can hold: '10.1000/a,b'"):
        OpenalexClient(OpenalexSettings(base_url="http://127.0.0.1:9/")).works_by_dois(["10.1000/a,b"])
