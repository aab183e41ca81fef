"""Citations in the catalog as a reader meets them: the articles list sorted by citations, the
questions "most cited randomised trials by molecule" and "rising", and the article page's count
and chart per year with the date read and the source.

One catalog per module: the session's catalog of real PubMed records (tests/test_catalog.py),
copied with its configuration, then one citations run (on the harvester's clock, 2026-03-02)
against the OpenAlex stand-in, which serves clones of the real recorded works carrying the
catalog's PMIDs (four in five; the fifth OpenAlex does not know). Every expected answer is worked
out here from the works the stand-in served and the base tables, never through the query under
test.

The shared records hold no randomised trial of a ketamine form, so the copy's seven randomised
trials on depression in the psychiatric sense are tagged, in code, with the molecule a ketamine
trial would carry (alternately esketamine and racemic_ketamine, the first two both; method
`derived-in-test`): the question then has trials of two forms to rank.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
from unittest import mock

import lxml.html
import pytest

from harvest.config import OpenalexSettings
from harvest.openalex import OpenalexClient
from harvest.runner import run_citations_harvest
from tests.openalex_stand_in import OpenalexStandIn, WorkStore, clone_for, pmid_of
from tests.test_catalog import Client, build_catalog_site

TODAY = "2026-03-02"
LAST_TWO_FULL_YEARS = (2024, 2025)
KETAMINE_FORMS = (
    "racemic_ketamine",
    "esketamine",
    "arketamine",
    "hydroxynorketamine_metabolites",
    "unspecified_ketamine",
)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    base = build_catalog_site(tmp_path_factory)
    site = tmp_path_factory.mktemp("citations-site")
    shutil.copytree(
        base, site, dirs_exist_ok=True, ignore=shutil.ignore_patterns("inspect-data.json", "*.lock", "__pycache__")
    )
    conn = sqlite3.connect(site / "catalog.db")
    pmids = [p for (p,) in conn.execute("select pmid from articles order by pmid")]
    rcts = [
        p
        for (p,) in conn.execute(
            "select pmid from articles where psychiatric = 1 and pmid in (select pmid from article_tags "
            "where facet = 'design' and value in ('rct', 'crossover_rct')) order by pmid"
        )
    ]
    derived = [(p, "esketamine" if i % 2 == 0 else "racemic_ketamine") for i, p in enumerate(rcts)]
    derived += [(p, "racemic_ketamine") for p in rcts[:2] if (p, "racemic_ketamine") not in derived]
    with conn:
        conn.executemany(
            "insert into article_tags (pmid, facet, value, method, evidence, confidence) "
            "values (?, 'molecule', ?, 'derived-in-test', null, 1.0)",
            derived,
        )
    conn.close()
    works = WorkStore.recorded()
    clone_for(works, [p for i, p in enumerate(pmids) if i % 5])
    served = {pmid_of(w): w for w in works.works if pmid_of(w) in set(pmids)}
    with mock.patch.dict(os.environ, {"HARVEST_TODAY": TODAY}):  # restored as it was after
        with OpenalexStandIn(works) as server:
            settings = OpenalexSettings(base_url=server.url, requests_per_second=50, backoff_base=0.05, backoff_cap=1)
            outcome = run_citations_harvest(site / "catalog.db", client=OpenalexClient(settings))
    assert outcome.status == "success" and outcome.new == len(served)
    return site, served


@pytest.fixture(scope="module")
def client(built):
    c = Client(built[0])
    yield c
    c.close()


@pytest.fixture(scope="module")
def db(built):
    conn = sqlite3.connect(f"file:{built[0] / 'catalog.db'}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    yield conn
    conn.close()


def question(client, name, **params) -> list[dict]:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    data = client.json(f"/catalog/{name}.json?_shape=objects&{query}")
    return data["rows"]


def having_class(tree, tag: str, cls: str) -> list:
    return tree.xpath(f'.//{tag}[contains(concat(" ", normalize-space(@class), " "), " {cls} ")]')


def recent(work: dict) -> int:
    return sum(e["cited_by_count"] for e in work["counts_by_year"] if e["year"] in LAST_TWO_FULL_YEARS)


def test_most_cited_rcts_rank_each_molecules_trials_by_their_openalex_count(client, db, built):
    _, served = built
    trials = db.execute("""
        select distinct m.value as molecule, a.pmid, a.pub_date from article_tags m
        join article_tags d on d.pmid = m.pmid and d.facet = 'design' and d.value in ('rct', 'crossover_rct')
        join articles a on a.pmid = m.pmid
        where m.facet = 'molecule' and a.psychiatric = 1""").fetchall()
    assert trials, "the session catalog holds psychiatric randomised trials tagged with a ketamine form"
    expected: dict[str, list[int]] = {}
    for t in trials:
        expected.setdefault(t["molecule"], []).append(t["pmid"])
    got = question(client, "most_cited_rcts_by_molecule")
    by_molecule: dict[str, list[dict]] = {}
    for row in got:
        by_molecule.setdefault(row["molecule"], []).append(row)
    assert set(by_molecule) == set(expected)
    for molecule, rows in by_molecule.items():
        dates = {t["pmid"]: t["pub_date"] for t in trials if t["molecule"] == molecule}
        order = sorted(expected[molecule], reverse=True)  # the last tie-break: pmid, descending
        order.sort(key=lambda p: dates[p] or "", reverse=True)  # then the newest publication
        order.sort(key=lambda p: (p not in served, -(served[p]["cited_by_count"] if p in served else 0)))
        assert [r["pmid"] for r in rows] == order[:20]
        assert [r["rank"] for r in rows] == list(range(1, len(rows) + 1))
        for r in rows:
            work = served.get(r["pmid"])
            assert r["cited_by_count"] == (work["cited_by_count"] if work else None)
            assert r["cited_last_two_full_years"] == ((recent(work) or None) if work else None)
            assert r["counts_source"] == "OpenAlex"
            assert (r["counts_read_at"] or TODAY).startswith(TODAY)
    one = next(iter(expected))
    assert {
        r["molecule"] for r in question(client, "most_cited_rcts_by_molecule", molecule=one.replace("_", "%20"))
    } == {one}
    refused = client.get("/catalog/most_cited_rcts_by_molecule.json?molecule=aspirin")
    assert refused.status_code == 400 and "a ketamine form" in refused.text


def test_rising_ranks_records_by_citations_in_the_last_two_full_years_of_the_read_date(client, db, built):
    _, served = built
    psychiatric = {p for (p,) in db.execute("select pmid from articles where psychiatric = 1")}
    expected = {p: recent(w) for p, w in served.items() if p in psychiatric and recent(w) > 0}
    assert expected, "some served works were cited in 2024-2025"
    rows = question(client, "rising", _size="max")
    assert {r["pmid"]: r["cited_in_those_years"] for r in rows} == expected
    assert [r["cited_in_those_years"] for r in rows] == sorted(expected.values(), reverse=True)
    assert {r["years"] for r in rows} == {"2024-2025"}
    for r in rows:
        total = served[r["pmid"]]["cited_by_count"]
        assert r["cited_in_all"] == total and r["share_pct"] == round(100.0 * r["cited_in_those_years"] / total, 1)
    design = rows[0]["study_design"]
    assert {r["study_design"] for r in question(client, "rising", design=design)} == {design}


def test_the_articles_list_sorts_by_citations_and_shows_each_count(client, db):
    page = client.get("/catalog/articles?matches_query=1&_sort_desc=cited_by_count")
    assert page.status_code == 200
    tree = lxml.html.fromstring(page.text)
    shown = [int(li.get("data-pmid")) for li in having_class(tree, "li", "record-item")]
    counts = dict(db.execute("select pmid, cited_by_count from articles where matches_query = 1").fetchall())
    ordered = sorted(counts, key=lambda p: (counts[p] is None, -(counts[p] or 0), -p))
    assert [counts[p] for p in shown] == [counts[p] for p in ordered[: len(shown)]]
    first = having_class(tree, "li", "record-item")[0]
    assert f"cited by {counts[shown[0]]:,}" in first.text_content()
    default = lxml.html.fromstring(client.get("/catalog/articles").text)
    (link,) = having_class(default, "a", "sort-cited")
    assert link.get("href").endswith("_sort_desc=cited_by_count")


def test_the_article_page_shows_the_count_the_date_read_the_source_and_a_chart(client, db, built):
    _, served = built
    pmid, work = max(served.items(), key=lambda item: (len(item[1]["counts_by_year"]), item[0]))
    page = client.get(f"/catalog/articles/{pmid}")
    assert page.status_code == 200
    tree = lxml.html.fromstring(page.text)
    (section,) = having_class(tree, "section", "citations")
    text = " ".join(section.text_content().split())
    assert f"{work['cited_by_count']:,} citing works, as counted by OpenAlex ({work['id'].rsplit('/', 1)[1]})" in text
    assert f"read {TODAY}" in text
    (svg,) = section.xpath(".//*[local-name()='svg']")
    assert svg.get("role") == "img" and svg.get("aria-labelledby")
    title = section.xpath(f".//*[@id='{svg.get('aria-labelledby')}']")[0].text_content()
    years = sorted(e["year"] for e in work["counts_by_year"])
    assert title.startswith(f"Citations per year, {years[0]} to {years[-1]}")
    assert len(svg.xpath(".//*[local-name()='rect']")) == years[-1] - years[0] + 1
    table = {int(tr[0].text): int(tr[1].text) for tr in section.xpath(".//details//tbody/tr")}
    assert table == {e["year"]: e["cited_by_count"] for e in work["counts_by_year"]}
    assert not re.search(r"<script", section.text_content())

    unknown = next(p for (p,) in db.execute("select pmid from citations where found = 0 order by pmid"))
    text = " ".join(
        having_class(lxml.html.fromstring(client.get(f"/catalog/articles/{unknown}").text), "section", "citations")[0]
        .text_content()
        .split()
    )
    assert f"OpenAlex holds no work with PMID {unknown} (read {TODAY})" in text
