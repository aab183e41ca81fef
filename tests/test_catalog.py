"""The catalog researchers browse: `datasette db/` over a catalog harvested from real records.

One catalog per session: the stand-in serves records/ plus the records of
pubmed21n1298-part1 that carry what the catalog shows (retractions, errata, trial
registrations, randomised trials, systematic reviews, ketamine); two harvests, the second
bringing the records/ files NLM revised in 2026. It lives in a temporary copy of db/
(tests never touch db/catalog.db) and is read in-process through Datasette's own client.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import json
import os
import re
import shutil
import sqlite3
from pathlib import Path

import bibtexparser
import pytest
import rispy
from lxml import etree

from harvest.config import Settings
from harvest.runner import run_harvest
from tests.conftest import PUBMED, RECORDS
from tests.eutils_stand_in import Corpus, EutilsStandIn
from tests.once import built_once

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "db"
UPDATE_FILE = PUBMED / "pubmed21n1298-part1.xml.gz"
# What makes a record of the 2021 update file worth serving to the catalog's tests.
WANTED = (
    b"ketamin",
    b"RetractionIn",
    b"RetractionOf",
    b"ErratumIn",
    b"ExpressionOfConcernIn",
    b"<DataBankName>ClinicalTrials.gov",
    b"Randomized Controlled Trial",
    b"Systematic Review",
    b"Meta-Analysis",
)
SECOND_HARVEST_SINCE = dt.date(2026, 1, 1)  # records/ files NLM revised in 2026 arrive in run 2
LATE_ARRIVALS = {39971531, 39166619, 15764155, 7550356}
KETAMINE = {33984391, 34034067, 38011560}
RETRACTED = {27602157, 31031480, 32743968, 33104149}
RETRACTION_NOTICES = {34082697, 34086808, 34086810, 34086832}
MEPOLIZUMAB_RCT = 30578883  # MEDLINE-indexed RCT: structured abstract, PMC, DOI, NCT02020889, MeSH
UPADACITINIB_RCTS = {34023008, 34023009}
ATOM = "{http://www.w3.org/2005/Atom}"


def catalog_corpus() -> Corpus:
    corpus = Corpus.cached([RECORDS]).copy()
    update = Corpus.cached([UPDATE_FILE])
    for pmid in update.pmids():
        record = update[pmid]
        if pmid not in corpus and any(marker in record.raw for marker in WANTED):
            corpus.put(record)
    return corpus


def copy_config(target: Path) -> Path:
    """A Datasette configuration directory like db/, without db/'s database (as publish does)."""
    target.mkdir(parents=True, exist_ok=True)
    for entry in load_publish().config_entries(CONFIG):
        if entry.is_dir():
            shutil.copytree(entry, target / entry.name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copyfile(entry, target / entry.name)
    return target


def load_publish():
    """db/publish.py, the publish step (a script beside the configuration, not a package module)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("catalog_publish", CONFIG / "publish.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def harvest_settings(server: EutilsStandIn) -> Settings:
    return Settings(base_url=server.url, email="catalog-tests@example.org", backoff_base=0.05, backoff_cap=1)


def _build_site(site: Path) -> None:
    copy_config(site)
    corpus = catalog_corpus()
    late = [corpus.remove(pmid) for pmid in LATE_ARRIVALS]
    with EutilsStandIn(corpus, enforce_rate_limit=False) as server:
        first = run_harvest(site / "catalog.db", settings=harvest_settings(server))
        for record in late:
            server.corpus.put(record)
        second = run_harvest(site / "catalog.db", settings=harvest_settings(server), since=SECOND_HARVEST_SINCE)
    assert second.new == len(LATE_ARRIVALS) and first.new > 700


def build_catalog_site(tmp_path_factory) -> Path:
    """The session's catalog, built once for every file and worker that reads it (tests/once.py)."""
    return built_once(tmp_path_factory, "catalog-site", _build_site)


class Client:
    """Datasette's in-process client, on one event loop for the whole session."""

    def __init__(self, site: Path):
        from datasette.app import Datasette

        self.loop = asyncio.new_event_loop()
        self.ds = Datasette(config_dir=site)
        self.loop.run_until_complete(self.ds.invoke_startup())

    def get(self, path: str, **kwargs):
        return self.loop.run_until_complete(self.ds.client.get(path, **kwargs))

    def json(self, path: str):
        response = self.get(path)
        assert response.status_code == 200, (path, response.text[:500])
        return response.json()

    def post(self, path: str, **kwargs):
        return self.loop.run_until_complete(self.ds.client.post(path, **kwargs))

    def close(self):
        self.loop.close()


@pytest.fixture(scope="session")
def site(tmp_path_factory) -> Path:
    return build_catalog_site(tmp_path_factory)


@pytest.fixture(scope="session")
def db(site):
    conn = sqlite3.connect(f"file:{site / 'catalog.db'}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    yield conn
    conn.close()


@pytest.fixture(scope="session")
def client(site):
    c = Client(site)
    yield c
    c.close()


def sql_set(db, sql, params=()) -> set:
    return {row[0] for row in db.execute(sql, params)}


def pmids_of(rows) -> list[int]:
    return [row["pmid"] for row in rows]


# What the front page, the default list, the feeds and the questions show: current records on
# depression in the psychiatric sense (the rest of what the topic query returns is set aside).
CURRENT_SQL = "matches_query = 1 and is_deleted = 0 and psychiatric = 1"


def psychiatric(db) -> set[int]:
    return sql_set(db, "select pmid from articles where psychiatric = 1")


# -- the front page ---------------------------------------------------------------------------


def test_front_page_says_what_the_catalog_holds_and_when_it_was_harvested(client, db):
    page = client.get("/")
    assert page.status_code == 200
    html = page.text
    assert "Ketamine for depression — a living literature catalog" in html
    current = db.execute(f"select count(*) from articles where {CURRENT_SQL}").fetchone()[0]
    assert f"<strong>{current:,}</strong> records" in html
    last = db.execute("select * from harvest_runs where status = 'success' order by id desc limit 1").fetchone()
    assert last["id"] == 2
    assert last["finished_at"][:16].replace("T", " ") in html
    assert f"query version {last['query_version']}" in html
    assert f"{len(LATE_ARRIVALS)} new</a>" in html
    assert "ketamin*[Title/Abstract]" in html  # the query text itself
    # Where to start: the ranked search box, the main table, every ready-made question.
    assert 'action="/catalog/search"' in html and 'name="q"' in html
    assert 'href="/catalog/articles?matches_query=1&amp;is_deleted=0&amp;psychiatric=1"' in html
    for name in (
        "new_since",
        "rcts_by_molecule",
        "systematic_reviews",
        "retracted_or_corrected",
        "counts_per_year_by_design",
        "registered_trials",
    ):
        assert f'href="/catalog/{name}"' in html
    assert 'href="/catalog/feed_new.atom"' in html


def test_front_page_shows_a_failure_since_the_last_full_sweep_even_after_a_later_success(site, tmp_path):
    copy = tmp_path / "site"
    shutil.copytree(site, copy, ignore=shutil.ignore_patterns("inspect-data.json"))
    reason = "could not store 20 of 22 promised records (PMIDs 34023008, 34023009, ...)"

    def add_run(conn, **changes):
        """A clone of the session's last real run (run 2), a field or two changed."""
        run = dict(conn.execute("select * from harvest_runs where id = 2").fetchone())
        run.update(id=conn.execute("select max(id) + 1 from harvest_runs").fetchone()[0], **changes)
        conn.execute(
            f"insert into harvest_runs ({', '.join(run)}) values ({', '.join('?' * len(run))})", list(run.values())
        )
        return run["id"]

    def failure_line(html):
        found = re.search(r'<p class="last-failure[^"]*"[^>]*>(.*?)</p>', html, re.S)
        return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", found.group(1))) if found else None

    c = Client(copy)
    try:
        conn = sqlite3.connect(copy / "catalog.db")
        conn.row_factory = sqlite3.Row
        with conn:
            failed = add_run(conn, mode="incremental", status="failed", error=reason)
            later = add_run(conn, mode="incremental", status="success", error=None)
        line = failure_line(c.get("/").text)
        assert line is not None and f"#{failed}" in line and "failed" in line and reason in line
        assert f"Run #{later} succeeded after it" in line
        with conn:  # a full sweep since: the failure is history
            add_run(conn, mode="full", status="success", error=None)
        assert failure_line(c.get("/").text) is None
        with conn:
            aborted = add_run(conn, mode="incremental", status="aborted", error="the harvest process died (pid 4242)")
        line = failure_line(c.get("/").text)
        assert f"#{aborted}" in line and "aborted" in line and "pid 4242" in line and "latest harvest failed" in line
        conn.close()
    finally:
        c.close()


def test_front_page_groups_the_ready_made_questions_by_what_a_researcher_is_doing(client):
    html = client.get("/").text
    section = html[html.index("<h2>Ready-made questions</h2>") : html.index('<section class="designs">')]
    groups = re.split(r'<h3 class="question-group">', section)[1:]
    titles = [g[: g.index("</h3>")] for g in groups]
    assert titles == [
        "Find studies",
        "Registered trials and their papers",
        "Follow what is new",
        "Audit the search (PRISMA)",
        "Explore the field",
    ]
    where = {
        name: title
        for title, g in zip(titles, groups)
        for name in re.findall(r'<li class="question"><a href="/catalog/(\w+)"', g)
    }
    assert where["rcts_by_molecule"] == "Find studies" and where["new_since"] == "Follow what is new"
    assert where["prisma_flow"] == where["search_strategy"] == "Audit the search (PRISMA)"
    assert where["counts_per_year_by_design"] == "Explore the field"
    # Every question once, the feeds and the search box apart; each description behind a <details>.
    questions = client.json("/catalog.json")["queries"]
    expected = {q["name"] for q in questions if q["name"] != "search" and not q["name"].startswith("feed_")}
    listed = re.findall(r'<li class="question"><a href="/catalog/(\w+)"', section)
    assert sorted(listed) == sorted(expected)
    description = "Records tagged as a systematic review or a meta-analysis"
    assert re.search(
        r"<details class=\"question-about\"><summary>[^<]*<span[^>]*>[^<]*</span></summary><p>"
        + re.escape(description),
        section,
    )


def test_front_page_names_designs_in_words(client, db):
    html = client.get("/").text
    designs = html[html.index('<ul class="design-counts">') :]
    designs = designs[: designs.index("</ul>")]
    shown = re.findall(r'study_design=(\w+)">([^<]+)</a>', designs)
    assert ("rct", "Randomised trial") in shown and ("systematic_review", "Systematic review") in shown
    assert all(label[0].isupper() and "_" not in label for _, label in shown), shown
    # The same words in the facet and on a record's line.
    labels = {v["value"]: v["label"] for v in facet_result(client, "study_design")["results"]}
    assert labels["rct"] == "Randomised trial"
    assert '<span class="design">Randomised trial</span>' in client.get("/catalog/articles?study_design=rct").text


def test_front_page_chart_counts_records_per_year_as_sql_does(client, db):
    html = client.get("/").text
    svg = html[html.index('<svg class="year-chart"') : html.index("</svg>") + 6]
    etree.fromstring(svg.encode())  # well-formed, inline, no external references
    assert "http" not in svg.replace("http://www.w3.org/2000/svg", "")
    drawn = {int(y): int(n.replace(",", "")) for y, n in re.findall(r"<title>(\d{4}): ([\d,]+) records</title>", svg)}
    expected = {
        row[0]: row[1]
        for row in db.execute(
            f"select pub_year, count(*) from articles where {CURRENT_SQL} and pub_year is not null group by pub_year"
        )
    }
    assert drawn == expected
    assert 'href="/catalog/articles?matches_query=1&amp;is_deleted=0&amp;psychiatric=1&amp;pub_year=2021"' in svg


# -- search -----------------------------------------------------------------------------------


def test_search_finds_the_ketamine_records_ranked_by_relevance(client, db):
    rows = client.json("/catalog/search.json?q=ketamine&_shape=array")
    found = pmids_of(rows)
    assert set(found) == sql_set(db, "select rowid from articles_fts where articles_fts match 'ketamine'")
    assert KETAMINE <= set(found)
    # bm25 with titles weighted: records with ketamine in the title come first.
    in_title = [("ketamine" in (r["title"] or "").lower()) for r in rows]
    assert in_title == sorted(in_title, reverse=True)
    assert [r["relevance"] for r in rows] == sorted(r["relevance"] for r in rows)
    assert "**" in rows[0]["search_snippet"]


def test_a_common_word_lists_the_100_most_relevant_and_says_how_many_match(client, db):
    total = db.execute("select count(*) from articles_fts where articles_fts match 'patients'").fetchone()[0]
    best = [
        r[0]
        for r in db.execute(
            "select rowid from articles_fts where articles_fts match 'patients' "
            "order by bm25(articles_fts, 10.0, 1.0, 4.0, 3.0) limit 100"
        )
    ]
    assert total > 100
    rows = client.json("/catalog/search.json?q=patients&_shape=array")
    assert len(rows) == 100 and {r["total_matches"] for r in rows} == {total}
    assert set(pmids_of(rows)) == set(best)
    page = client.get("/catalog/search?q=patients").text
    assert f"<strong>{total:,}</strong> records match" in page
    assert "the 100 most relevant are listed" in page and 'href="/catalog/articles?_search=patients"' in page


def test_search_supports_phrases_operators_prefixes_and_columns(client, db):
    def found(q):
        return set(pmids_of(client.json(f"/catalog/search.json?_shape=array&q={q}")))

    assert found("esketamine") == sql_set(db, "select rowid from articles_fts where articles_fts match 'esketamine'")
    assert 38011560 in found("%22rapid-acting antidepressant%22")
    assert found("title:ketamine") == sql_set(db, "select rowid from articles_fts where title match 'ketamine'")
    assert found("upadacitinib OR mepolizumab") == found("upadacitinib") | found("mepolizumab")
    assert found("antidepress*") >= {38011560, 33984391}
    assert 34034067 not in found("ketamine NOT cognitive")


@pytest.mark.parametrize(
    "q", ['"unclosed', "ketamine AND", "treatment-resistant depression", "nosuchcolumn:ketamine", "(", "*"]
)
def test_malformed_search_syntax_gets_a_message_not_an_error(client, q):
    page = client.get("/catalog/search", params={"q": q})
    assert page.status_code == 200
    assert "is not valid search syntax" in page.text
    assert client.get("/catalog/search.json", params={"q": q}).status_code == 200
    # The table page's own search box escapes its input too.
    assert client.get("/catalog/articles", params={"_search": q}).status_code == 200


def test_search_page_explains_the_syntax_and_runs_no_query_when_empty(client):
    page = client.get("/catalog/search")
    assert page.status_code == 200
    assert 'id="syntax"' in page.text and "title:esketamine" in page.text
    assert client.json("/catalog/search.json?_shape=array") == []


def test_search_results_link_to_article_pages_feed_and_exports(client):
    html = client.get("/catalog/search?q=ketamine").text
    assert 'href="/catalog/articles/38011560"' in html
    assert 'href="/catalog/feed_search.atom?q=ketamine"' in html
    assert 'href="/catalog/search.ris?q=ketamine"' in html
    assert 'href="/catalog/search.bib?q=ketamine"' in html
    assert 'href="/catalog/articles?_search=ketamine"' in html


# -- the articles table: facets, sort, descriptions, labels -----------------------------------


def facet_result(client, name, query="") -> dict:
    data = client.json(f"/catalog/articles.json?_facet_size=max&_size=1&_facet_catalog={name}{query}")
    return data["facet_results"][name]


def facet(client, name, query="") -> dict:
    return {str(v["value"]): v["count"] for v in facet_result(client, name, query)["results"]}


@pytest.mark.parametrize("column", ["pub_year", "study_design", "journal", "citation_status"])
def test_column_facets_count_what_sql_counts(client, db, column):
    expected = {
        str(k): n
        for k, n in db.execute(f"select {column}, count(*) from articles where {column} is not null group by {column}")
    }
    assert facet(client, column) == expected


@pytest.mark.parametrize(
    "name, pairs",
    [
        ("molecule", "select pmid, value from article_tags where facet = 'molecule'"),
        ("route", "select pmid, value from article_tags where facet = 'route'"),
        ("population", "select pmid, value from article_tags where facet = 'population'"),
        (
            "pubtype",
            "select p.pmid, t.name as value from article_publication_types p join publication_types t on t.ui = p.publication_type_ui",
        ),
        ("mesh", "select m.pmid, d.name as value from article_mesh m join mesh_descriptors d using (descriptor_ui)"),
        ("lang", "select pmid, language as value from article_languages"),
    ],
)
def test_multi_valued_facets_count_what_sql_counts(client, db, name, pairs):
    expected = {k: n for k, n in db.execute(f"select value, count(distinct pmid) from ({pairs}) group by value")}
    counts = facet(client, name)
    # At most max_returned_rows values, the most frequent first.
    assert counts == dict(sorted(expected.items(), key=lambda kv: (-kv[1], kv[0]))[:1000])
    assert counts  # the shared records do carry these


@pytest.mark.parametrize("name", ["pub_year", "study_design", "journal", "molecule", "population", "notice"])
def test_facets_of_a_page_filtered_by_one_facet_value_count_its_rows(client, db, name):
    """The summarised path (one facet value chosen) and the live path (two) agree with SQL."""
    design = "preclinical_animal"
    live_sql = (
        "select value, count(distinct pmid) from ({pairs}) where value is not null and pmid in "
        "(select pmid from articles where study_design = ?{more}) group by value"
    )
    pairs = db.execute("select pairs from facet_sources where name = ?", [name]).fetchone()[0]
    expected = {str(k): n for k, n in db.execute(live_sql.format(pairs=pairs, more=""), [design])}
    one = facet_result(client, name, f"&study_design={design}")
    assert one["summarised"] is True
    assert {str(v["value"]): v["count"] for v in one["results"]} == dict(
        sorted(expected.items(), key=lambda kv: (-kv[1], kv[0]))[:1000]
    )
    assert expected  # the shared records have animal studies with these facets
    more = " and pmid in (select pmid from article_tags where facet = 'population' and value = 'animals')"
    expected_two = {str(k): n for k, n in db.execute(live_sql.format(pairs=pairs, more=more), [design])}
    two = facet_result(client, name, f"&study_design={design}&_population=animals")
    assert two["summarised"] is False
    assert {str(v["value"]): v["count"] for v in two["results"]} == expected_two


def catalog_plugin(client):
    from datasette.plugins import pm

    return next(p for p in pm.get_plugins() if hasattr(p, "LIVE_FACETS_MS"))


def test_facets_counted_live_share_a_budget_and_the_page_names_those_left_uncounted(client, db, monkeypatch):
    """Two facet values chosen: no summary answers, the facets are counted live within one
    budget for the page. Those it had no time for are named on the page, never shown half-counted."""
    query = "study_design=preclinical_animal&_population=animals"
    counted = client.json(f"/catalog/articles.json?{query}&_size=1")["facet_results"]
    assert {"pub_year", "study_design", "journal", "population", "depression"} <= set(counted)
    monkeypatch.setattr(catalog_plugin(client), "LIVE_FACETS_MS", 0)
    # (Another page size each time: the catalog keeps each address's page for a minute.)
    assert client.json(f"/catalog/articles.json?{query}&_size=2")["facet_results"] == {}
    html = client.get(f"/catalog/articles?{query}&_size=3").text
    line = re.search(r'<p class="facets-timed-out">These facets timed out: ([^<]*)</p>', html)
    assert line and set(line.group(1).split(", ")) >= set(counted)
    assert 'id="facet-pub_year"' not in html
    # One value chosen: the summaries answer, whatever the budget.
    assert client.json("/catalog/articles.json?study_design=preclinical_animal&_size=4")["facet_results"]


@pytest.mark.parametrize(
    "query, where",
    [
        # A small page: every one-to-many facet is counted from the page's rows.
        (
            "study_design=preclinical_animal&_population=animals",
            "study_design = 'preclinical_animal' and pmid in "
            "(select pmid from article_tags where facet = 'population' and value = 'animals')",
        ),
        # A page of every current record: facets with far fewer rows are counted from their rows.
        ("matches_query=1&is_deleted=0", "matches_query = 1 and is_deleted = 0"),
    ],
)
def test_one_to_many_facets_counted_live_from_either_side_count_what_sql_counts(client, db, query, where):
    page_rows = db.execute(f"select count(*) from articles where {where}").fetchone()[0]
    for name in ("molecule", "route", "population", "notice", "depression"):
        pairs = db.execute("select pairs from facet_sources where name = ?", [name]).fetchone()[0]
        expected = {
            str(k): n
            for k, n in db.execute(
                f"select value, count(distinct pmid) from ({pairs}) where value is not null "
                f"and pmid in (select pmid from articles where {where}) group by value"
            )
        }
        shown = facet_result(client, name, f"&{query}")
        assert shown["summarised"] is False
        assert {str(v["value"]): v["count"] for v in shown["results"]} == expected, name
    totals = dict(db.execute("select facet, sum(count) from facet_counts group by facet").fetchall())
    from_values = {n for n in ("molecule", "route", "population", "notice", "depression") if totals[n] * 3 < page_rows}
    # The side each facet is counted from (db/plugins/catalog.py, CatalogFacet._live_sizes).
    if query.startswith("study_design"):
        assert from_values != {"molecule", "route", "population", "notice", "depression"}
    else:
        assert from_values and {"molecule", "route"} <= from_values


def test_unfiltered_facets_come_from_the_summaries_and_a_write_makes_them_count_live(site, tmp_path):
    copy = tmp_path / "site"
    shutil.copytree(site, copy, ignore=shutil.ignore_patterns("inspect-data.json"))
    c = Client(copy)
    try:
        assert facet_result(c, "pub_year")["summarised"] is True
        with sqlite3.connect(copy / "catalog.db") as conn:  # any write, even by hand
            # a current record of the year with the most of them, so the front page's count moves too
            year = conn.execute(
                f"select pub_year from articles where {CURRENT_SQL} group by pub_year order by count(*) desc limit 1"
            ).fetchone()[0]
            n = conn.execute("select count(*) from articles where pub_year = ?", [year]).fetchone()[0]
            conn.execute(
                f"delete from articles where pmid in (select pmid from articles where pub_year = ? "
                f"and {CURRENT_SQL} limit 1)",
                [year],
            )
        stale = facet_result(c, "pub_year")
        assert stale["summarised"] is False and facet(c, "pub_year")[str(year)] == n - 1
        with sqlite3.connect(copy / "catalog.db") as conn:  # the front page counts live too
            current = conn.execute(f"select count(*) from articles where {CURRENT_SQL}").fetchone()[0]
            assert conn.execute("select current from catalog_counts").fetchone()[0] == current + 1  # stale
        assert f"<strong>{current:,}</strong> records" in c.get("/").text
        from harvest import store

        store.refresh_summaries(store.open_db(copy / "catalog.db"))
        fresh = facet_result(c, "pub_year")
        assert fresh["summarised"] is True and facet(c, "pub_year")[str(year)] == n - 1
    finally:
        c.close()


@pytest.mark.parametrize("query", ["", "&study_design=rct", "&study_design=preclinical_animal&_population=animals"])
def test_the_year_facet_reads_newest_year_first(client, query):
    """Summarised, paired and live counts alike list years in year order, not by count."""
    years = [int(v["value"]) for v in facet_result(client, "pub_year", query)["results"]]
    assert len(years) > 1 and years == sorted(years, reverse=True)
    html = client.get(f"/catalog/articles?_facet_size=5{query}").text
    shown = re.findall(
        r"pub_year=(\d{4})", html[html.index('id="facet-pub_year"') : html.index('id="facet-study_design"')]
    )
    assert [int(y) for y in shown] == years[:5]


def test_a_facet_with_no_values_on_the_page_is_not_shown(client, db):
    # The mepolizumab trial carries no ketamine molecule or route: no empty headings for them.
    html = client.get(f"/catalog/articles?pmid={MEPOLIZUMAB_RCT}").text
    assert 'id="facet-pub_year"' in html and 'id="facet-study_design"' in html
    assert 'id="facet-molecule"' not in html and 'id="facet-route"' not in html


def test_a_record_without_authors_does_not_start_its_line_with_a_separator(client, db):
    authorless = sql_set(db, "select pmid from articles where first_author is null")
    assert authorless  # real records (e.g. 33743979) with no AuthorList
    html = client.get("/catalog/articles?first_author__isnull=1").text
    lines = re.findall(r'<div class="record-meta">(.*?)</div>', html, re.S)
    assert len(lines) == len(authorless)
    for line in lines:
        assert not line.strip().startswith(("·", "&middot;")) and "· ·" not in line, line
        assert line.strip().startswith("<em>")  # the journal comes first
    pmid = min(authorless)
    title = db.execute("select title from articles where pmid = ?", [pmid]).fetchone()[0]
    words = " ".join(re.findall(r"\w{4,}", title)[:4])
    page = client.get("/catalog/search", params={"q": words}).text
    item = page[page.index(f'data-pmid="{pmid}"') :]
    meta = re.search(r'<div class="result-meta">(.*?)</div>', item, re.S).group(1)
    assert not meta.strip().startswith(("·", "&middot;")), meta


def test_retraction_facet_and_its_filter(client, db):
    counts = facet(client, "notice")
    assert counts["Retracted"] == len(RETRACTED)
    assert counts["Retraction notice"] == len(RETRACTION_NOTICES)
    assert (
        counts["Erratum published"]
        == db.execute("select count(distinct pmid) from comments_corrections where ref_type = 'ErratumIn'").fetchone()[
            0
        ]
    )
    rows = client.json("/catalog/articles.json?_notice=Retracted&_shape=array")
    assert set(pmids_of(rows)) == RETRACTED


def test_facet_filters_combine_and_narrow_the_rows(client, db):
    rows = client.json("/catalog/articles.json?_shape=array&_size=max&_molecule=unspecified_ketamine")
    assert set(pmids_of(rows)) == sql_set(
        db, "select pmid from article_tags where facet = 'molecule' and value = 'unspecified_ketamine'"
    )
    narrowed = client.json(
        "/catalog/articles.json?_shape=array&_molecule=unspecified_ketamine&_route=intravenous&_population=treatment_resistant_depression"
    )
    assert pmids_of(narrowed) == [34034067]
    page = client.get("/catalog/articles?_molecule=unspecified_ketamine&_route=intravenous")
    assert (
        "molecule is &#34;unspecified ketamine&#34;" in page.text or 'molecule is "unspecified ketamine"' in page.text
    )
    # Within a filter the facet counts follow it.
    assert facet(client, "pub_year", "&_molecule=unspecified_ketamine") == {
        str(k): n
        for k, n in db.execute(
            "select pub_year, count(*) from articles where pmid in (select pmid from article_tags "
            "where facet = 'molecule' and value = 'unspecified_ketamine') group by pub_year"
        )
    }


def test_articles_open_newest_first_as_a_list_of_records(client, db):
    rows = client.json("/catalog/articles.json?_shape=array&_size=100")
    dates = [r["pub_date"] for r in rows]
    assert dates == sorted(dates, reverse=True)
    assert dates[0] == db.execute("select max(pub_date) from articles").fetchone()[0]
    html = client.get("/catalog/articles").text
    assert 'class="record-list"' in html and f'href="/catalog/articles/{rows[0]["pmid"]}"' in html
    assert 'class="rows-and-columns"' in client.get("/catalog/articles?_view=table").text


def test_every_column_of_every_table_has_a_description(client, db):
    import yaml

    tables = yaml.safe_load((CONFIG / "metadata.yml").read_text())["databases"]["catalog"]["tables"]
    names = [
        r[0]
        for r in db.execute(
            "select name from sqlite_master where type = 'table' and name not like '%\\_fts%' escape '\\' "
            "and name not like 'sqlite_%'"
        )
    ]
    missing = [
        f"{t}.{c[1]}"
        for t in names
        for c in db.execute(f"pragma table_info([{t}])")
        if t != "_sqlite_migrations" and c[1] not in (tables.get(t, {}).get("columns") or {})
    ]
    assert missing == []
    assert "PubMed identifier" in client.get("/catalog/articles?_view=table").text


def test_foreign_keys_show_names_not_ids(client, db):
    rows = client.json("/catalog/article_authors.json?_shape=array&_labels=on&pmid=38011560&_sort=position")
    assert rows[0]["author_id"]["label"] == "Krystal JH"
    assert rows[0]["pmid"]["label"].startswith("Ketamine and the neurobiology of depression")
    mesh = client.json(f"/catalog/article_mesh.json?_shape=array&_labels=on&pmid={MEPOLIZUMAB_RCT}")
    assert "Granulomatosis with Polyangiitis" in {r["descriptor_ui"]["label"] for r in mesh}
    types = client.get(f"/catalog/article_publication_types?pmid={MEPOLIZUMAB_RCT}").text
    assert "Randomized Controlled Trial" in types


# -- the article page -------------------------------------------------------------------------


def test_article_page_reads_like_a_record_with_links_out(client):
    page = client.get(f"/catalog/articles/{MEPOLIZUMAB_RCT}")
    assert page.status_code == 200
    html = page.text
    assert "Evaluation of clinical benefit from treatment with mepolizumab" in html
    assert "Wechsler ME" in html  # the byline
    assert "<em>The Journal of allergy and clinical immunology</em>" in html
    for label in ("BACKGROUND:", "OBJECTIVE:", "METHODS:", "RESULTS:", "CONCLUSION:"):
        assert f">{label}</strong>" in html
    assert "Granulomatosis with Polyangiitis" in html and "Randomized Controlled Trial" in html
    assert f'href="https://pubmed.ncbi.nlm.nih.gov/{MEPOLIZUMAB_RCT}/"' in html
    assert 'href="https://doi.org/10.1016/j.jaci.2018.11.041"' in html
    assert 'href="https://pmc.ncbi.nlm.nih.gov/articles/PMC7254609/"' in html
    assert 'href="https://clinicaltrials.gov/study/NCT02020889"' in html
    assert f'href="/catalog/articles/{MEPOLIZUMAB_RCT}.ris"' in html
    assert f'href="/catalog/articles/{MEPOLIZUMAB_RCT}.bib"' in html


def test_retracted_and_corrected_articles_carry_a_warning_first(client):
    html = client.get("/catalog/articles/27602157").text
    warning = html.index('class="notice notice-retracted"')
    assert warning < html.index('class="record-title"')
    assert "Retracted." in html and 'href="https://pubmed.ncbi.nlm.nih.gov/34093767/"' in html
    notice = client.get("/catalog/articles/34082697").text
    assert "Retraction notice." in notice and "https://pubmed.ncbi.nlm.nih.gov/18808659/" in notice
    erratum = client.get("/catalog/articles/34023008").text
    assert 'class="notice notice-erratum"' in erratum and "34090603" in erratum


# -- ready-made questions ---------------------------------------------------------------------


def query(client, name, **params):
    qs = "&".join(f"{k}={v}" for k, v in params.items())
    return client.json(f"/catalog/{name}.json?_shape=array&{qs}")


@pytest.mark.dated
def test_new_since_defaults_to_the_last_harvest_not_the_clock(client, db):
    assert set(pmids_of(query(client, "new_since"))) == LATE_ARRIVALS & psychiatric(db)
    everything = len(psychiatric(db))
    assert len(query(client, "new_since", since="2000-01-01")) == everything
    first_run = db.execute("select started_at from harvest_runs where id = 1").fetchone()[0]
    assert len(query(client, "new_since", since=first_run)) == everything
    html = client.get("/catalog/new_since").text
    assert "the last successful harvest (run 2" in html


def test_rcts_by_molecule(client, db):
    # Trials of upadacitinib (dermatitis) and mepolizumab (asthma) are not about depression: the
    # question lists only records in its psychiatric sense.
    assert not UPADACITINIB_RCTS & psychiatric(db) and MEPOLIZUMAB_RCT not in psychiatric(db)
    assert query(client, "rcts_by_molecule", molecule="upadacitinib") == []
    assert query(client, "rcts_by_molecule", molecule="mepolizumab") == []
    # A ketamine form is looked up in the tags: the shared records hold no ketamine RCT.
    tagged = sql_set(
        db,
        "select pmid from article_tags where facet = 'molecule' and value = 'unspecified_ketamine' "
        "and pmid in (select pmid from article_tags where facet = 'design' and value in ('rct', 'crossover_rct'))",
    )
    assert set(pmids_of(query(client, "rcts_by_molecule", molecule="unspecified ketamine"))) == tagged & psychiatric(db)


def test_systematic_reviews_and_meta_analyses(client, db):
    rows = query(client, "systematic_reviews")
    expected = sql_set(
        db, "select pmid from article_tags where facet = 'design' and value in ('systematic_review', 'meta_analysis')"
    )
    assert len(expected) > 100
    assert set(pmids_of(rows)) == expected & psychiatric(db) and rows
    # The intrathecal ketamine meta-analysis (33962333) is about analgesia: set aside.
    assert 33962333 not in psychiatric(db)
    assert query(client, "systematic_reviews", topic="ketamine") == []


def test_retracted_or_corrected(client, db):
    rows = query(client, "retracted_or_corrected")
    pmids = pmids_of(rows)
    assert set(pmids[:4]) == RETRACTED  # retractions first
    assert RETRACTION_NOTICES <= set(pmids)
    assert sql_set(db, "select pmid from comments_corrections where ref_type = 'ErratumIn'") <= set(pmids)
    assert set(pmids_of(query(client, "retracted_or_corrected", status="Retracted"))) == RETRACTED
    notice = next(r for r in rows if r["pmid"] == 27602157)
    assert notice["notices"] == "RetractionIn: PMID 34093767"


def test_counts_per_year_by_design(client, db):
    rows = query(client, "counts_per_year_by_design")
    assert (
        sum(r["records"] for r in rows)
        == db.execute(f"select count(*) from articles where {CURRENT_SQL}").fetchone()[0]
    )
    rct_2021 = db.execute(
        "select count(*) from articles where pub_year = 2021 and study_design = 'rct' and psychiatric = 1"
    ).fetchone()[0]
    assert {"pub_year": 2021, "study_design": "rct", "records": rct_2021} in rows
    assert all(r["study_design"] == "rct" for r in query(client, "counts_per_year_by_design", design="rct"))


def test_records_with_a_registered_trial(client, db):
    rows = query(client, "registered_trials")
    assert set(pmids_of(rows)) == sql_set(db, "select pmid from trial_registrations") & psychiatric(db) and rows
    [row] = query(client, "registered_trials", trial_id="nct04209296")  # 34034067, IV ketamine in TRD
    assert row["pmid"] == 34034067 and row["registry_url"] == "https://clinicaltrials.gov/study/NCT04209296"
    assert query(client, "registered_trials", trial_id="nct02020889") == []  # mepolizumab: set aside
    for r in query(client, "registered_trials", registry="ISRCTN"):
        assert r["registry_url"].startswith("https://www.isrctn.com/ISRCTN")


# Questions rewritten so that SQLite reads fewer rows at a million articles, each beside its
# plain form (as it was written before): the served question lists the same records in the same order.
PLAIN_FORMS = {
    "feed_search": """
        select a.pmid from articles_fts join articles a on a.pmid = articles_fts.rowid
        join harvest_runs r on r.id = a.first_seen_run
        where articles_fts match :q and a.is_deleted = 0 and a.psychiatric = 1
        order by r.started_at desc, a.entrez_date desc, a.pmid desc limit 100""",
    "systematic_reviews": """
        select a.pmid from articles a
        where exists (select 1 from article_tags t where t.pmid = a.pmid and t.facet = 'design'
                      and t.value in ('systematic_review', 'meta_analysis'))
          and a.psychiatric = 1
        order by a.pub_date desc, a.pmid desc""",
    "registered_trials": """
        select a.pmid from trial_registrations tr join articles a on a.pmid = tr.pmid
        where a.psychiatric = 1 order by a.pub_date desc, a.pmid desc, tr.trial_id""",
}


@pytest.mark.parametrize(
    "name, params",
    [("feed_search", {"q": q}) for q in ("ketamine", "depression", "mice")]
    + [("systematic_reviews", {}), ("registered_trials", {})],
)
def test_rewritten_questions_list_what_their_plain_form_lists(client, db, name, params):
    expected = [pmid for (pmid,) in db.execute(PLAIN_FORMS[name], params)]
    assert expected  # the real records have such rows
    assert pmids_of(query(client, name, **params)) == expected


def test_search_strategy_shows_each_runs_whole_query_and_counts(client, db):
    """What a PRISMA-S report cites: never cut at truncate_cells_html's 300 characters."""
    from markupsafe import escape

    html = client.get("/catalog/search_strategy").text
    runs = db.execute("select * from harvest_runs where status = 'success' order by id desc").fetchall()
    assert runs and all(len(r["query_text"]) > 300 for r in runs)
    for run in runs:
        section = html[html.index(f'id="run-{run["id"]}"') :]
        section = section[: section.index("</section>")]
        assert str(escape(run["query_text"])) in section
        assert "…" not in section and "&hellip;" not in section
        assert f'<td class="col-records_found">{run["records_promised"]:,}</td>' in section
        assert f'<td class="col-new">{run["new"]:,}</td>' in section
    # The exports keep every column, query text included.
    rows = client.json("/catalog/search_strategy.json?_shape=array")
    assert [r["query_text"] for r in rows] == [r["query_text"] for r in runs]


# -- feeds ------------------------------------------------------------------------------------


def assert_valid_atom(xml: bytes) -> list:
    """The RFC 4287 rules a feed reader relies on; returns the entries."""
    feed = etree.fromstring(xml)
    assert feed.tag == f"{ATOM}feed"
    for name in ("id", "title", "updated"):
        assert len(feed.findall(f"{ATOM}{name}")) == 1, name
    assert feed.find(f"{ATOM}link[@rel='self']") is not None
    entries = feed.findall(f"{ATOM}entry")
    for entry in entries:
        for name in ("id", "title", "updated"):
            assert len(entry.findall(f"{ATOM}{name}")) == 1, name
        assert dt.datetime.fromisoformat(entry.findtext(f"{ATOM}updated")).tzinfo is not None
        assert entry.find(f"{ATOM}author/{ATOM}name") is not None or feed.find(f"{ATOM}author") is not None
        assert entry.find(f"{ATOM}link") is not None or entry.find(f"{ATOM}content") is not None
    return entries


def test_feed_of_newly_added_records_is_valid_atom_newest_first(client, db):
    response = client.get("/catalog/feed_new.atom")
    assert response.status_code == 200 and "xml" in response.headers["content-type"]
    entries = assert_valid_atom(response.content)
    wanted = psychiatric(db) - sql_set(db, "select pmid from articles where is_deleted = 1")
    assert len(entries) == min(100, len(wanted))
    ids = [int(e.findtext(f"{ATOM}id").rstrip("/").rsplit("/", 1)[1]) for e in entries]
    assert set(ids) <= wanted
    late = LATE_ARRIVALS & wanted
    assert set(ids[: len(late)]) == late


def test_a_search_is_a_feed_too_even_when_nothing_matches(client, db):
    entries = assert_valid_atom(client.get("/catalog/feed_search.atom?q=ketamine").content)
    found = {int(e.findtext(f"{ATOM}id").rstrip("/").rsplit("/", 1)[1]) for e in entries}
    assert found == sql_set(db, "select rowid from articles_fts where articles_fts match 'ketamine'") & psychiatric(db)
    assert found >= KETAMINE
    empty = client.get("/catalog/feed_search.atom?q=zzzqqqxxx")
    assert empty.status_code == 200 and assert_valid_atom(empty.content) == []


def feed_links(entries) -> list[str]:
    """Every href in the entries' HTML content and every entry <link>."""
    links = []
    for entry in entries:
        links += [link.get("href") for link in entry.findall(f"{ATOM}link")]
        content = entry.findtext(f"{ATOM}content") or ""
        links += re.findall(r'href="([^"]*)"', content)
    return links


def test_each_search_feed_is_titled_with_its_search(client):
    titles = {}
    for q in ("esketamine", "ketamine depression", "zzzqqqxxx"):
        feed = etree.fromstring(client.get("/catalog/feed_search.atom", params={"q": q}).content)
        titles[q] = feed.findtext(f"{ATOM}title")
        assert q in titles[q], titles[q]
    assert len(set(titles.values())) == 3
    # A feed without a search keeps its own title.
    feed = etree.fromstring(client.get("/catalog/feed_new.atom").content)
    assert feed.findtext(f"{ATOM}title") == "Newly added records (Atom feed)"


@pytest.mark.parametrize("path", ["/catalog/feed_new.atom", "/catalog/feed_search.atom?q=ketamine"])
def test_links_inside_feed_entries_are_absolute(client, path):
    entries = assert_valid_atom(client.get(path).content)
    links = feed_links(entries)
    assert any("/catalog/articles/" in link for link in links)  # the entries link to the catalog
    assert all(link.startswith(("http://", "https://")) for link in links), [
        link for link in links if not link.startswith("http")
    ][:3]
    assert "http://localhost/catalog/articles/" in " ".join(links)


def test_front_page_feed_links_say_they_are_feeds(client):
    html = client.get("/").text
    feeds = re.findall(r'<li class="feed">(.*?)</li>', html, re.S)
    assert len(feeds) == 4  # new records, a search, what changed in the registered trials, new preprints
    for item in feeds:
        assert '<span class="badge badge-feed">Atom feed</span>' in item
        assert 'type="application/atom+xml"' in item and "feed reader" in item
    assert "A search as an Atom feed" not in html
    assert "copy it into the reader" in html


# -- exports ----------------------------------------------------------------------------------


def test_pages_export_ris_bibtex_and_csl_json(client, db):
    ris = client.get("/catalog/articles.ris?_molecule=unspecified_ketamine&_size=max")
    assert ris.status_code == 200 and ris.headers["content-type"].startswith("application/x-research-info-systems")
    entries = rispy.loads(ris.text)
    assert {int(e["accession_number"]) for e in entries} == sql_set(
        db, "select pmid from article_tags where facet = 'molecule' and value = 'unspecified_ketamine'"
    )
    bib = bibtexparser.parse_string(client.get("/catalog/search.bib?q=ketamine").text)
    assert bib.failed_blocks == [] and {f"pmid{p}" for p in KETAMINE} <= {e.key for e in bib.entries}
    [item] = json.loads(client.get(f"/catalog/articles/{MEPOLIZUMAB_RCT}.csljson").text)
    assert item["DOI"] == "10.1016/j.jaci.2018.11.041" and item["type"] == "article-journal"


def test_pages_export_csv_and_json(client, db):
    text = client.get("/catalog/articles.csv?_size=max&_notice=Retracted").text
    assert {int(r["pmid"]) for r in csv.DictReader(io.StringIO(text))} == RETRACTED
    data = client.json("/catalog/systematic_reviews.json")
    assert {r[0] for r in data["rows"]} == sql_set(
        db,
        "select pmid from article_tags where facet = 'design' and value in ('systematic_review', 'meta_analysis') "
        "and pmid in (select pmid from articles where psychiatric = 1)",
    )


# -- read-only and safe to publish -----------------------------------------------------------


def test_every_page_sends_a_content_security_policy_and_loads_nothing_from_elsewhere(client):
    for path in (
        "/",
        "/catalog",
        "/catalog/articles",
        "/catalog/search?q=ketamine",
        f"/catalog/articles/{MEPOLIZUMAB_RCT}",
        "/catalog/new_since",
    ):
        response = client.get(path)
        assert response.status_code == 200, path
        csp = response.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert response.headers["x-content-type-options"] == "nosniff"
        # Scripts, styles, fonts and images come from this server only.
        loaded = re.findall(
            r'<script[^>]+src="([^"]+)"|<link rel="stylesheet" href="([^"]+)"|<img[^>]+src="([^"]+)"', response.text
        )
        assert loaded and all(
            url.startswith("/") and not url.startswith("//") for found in loaded for url in found if url
        ), loaded


def test_no_inline_script_runs_but_the_ones_the_policy_names(client):
    """'unsafe-inline' in script-src would let an injected <script> run: every inline script a
    page carries is allowed by its hash instead, and the rest are files on this server."""
    import base64
    import hashlib

    for path in (
        "/",
        "/catalog",
        "/catalog/articles",
        "/catalog/articles?_facet=pub_year",
        "/catalog/search?q=ketamine",
        f"/catalog/articles/{MEPOLIZUMAB_RCT}",
        "/catalog/new_since",
        "/catalog?sql=select+pmid+from+articles+limit+1",
        "/catalog/harvest_runs",
        "/-/versions",
    ):
        response = client.get(path)
        assert response.status_code == 200, path
        script_src = next(
            part
            for part in response.headers["content-security-policy"].split(";")
            if part.strip().startswith("script-src")
        ).split()
        assert "'unsafe-inline'" not in script_src and "'self'" in script_src, path
        for attributes, body in re.findall(r"<script([^>]*)>(.*?)</script>", response.text, re.S):
            if "src=" in attributes:
                src = re.search(r'src="([^"]+)"', attributes).group(1)
                assert client.get(src).status_code == 200, (path, src)
            else:
                digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
                assert f"'sha256-{digest}'" in script_src, (path, body[:80])


def test_a_row_url_with_too_few_key_values_is_not_found_not_a_server_error(client, db):
    pmid = db.execute("select pmid from article_xml limit 1").fetchone()[0]
    assert client.get(f"/catalog/article_xml/{pmid},1.blob?_blob_column=xml_zlib").status_code == 200
    # article_xml's key is (pmid, pmid_version): one value is not a row.
    for path in (
        f"/catalog/article_xml/{pmid}.blob?_blob_column=xml_zlib",
        f"/catalog/article_xml/{pmid}.json",
        f"/catalog/article_xml/{pmid}",
    ):
        response = client.get(path)
        assert response.status_code == 404, (path, response.status_code)
        assert "No such row" in response.text


def test_pages_carry_an_etag_and_answer_304_until_the_catalog_changes(client):
    first = client.get("/catalog/articles?_facet=pub_year")
    etag = first.headers["etag"]
    assert first.status_code == 200 and first.headers["cache-control"] == "no-cache"
    again = client.get("/catalog/articles?_facet=pub_year", headers={"if-none-match": etag})
    assert again.status_code == 304 and again.headers["etag"] == etag
    assert client.get("/catalog/articles?_facet=pub_year").text == first.text
    # Other pages have other tags; SQL typed by hand is never kept, so it has none.
    assert client.get("/").headers["etag"] != etag
    assert "etag" not in client.get("/catalog.json", params={"sql": "select 1"}).headers


def test_robots_txt_lets_crawlers_read_articles_but_not_every_query(client):
    robots = client.get("/robots.txt").text.splitlines()
    assert robots[0] == "User-agent: *"
    assert "Allow: /catalog/articles/" in robots and "Disallow: /" in robots


def test_the_catalog_cannot_be_written_through_the_web(client, db):
    before = db.execute("select count(*) from articles").fetchone()[0]
    response = client.get("/catalog.json", params={"sql": "delete from articles"})
    assert response.status_code == 400 and "Statement must be a SELECT" in response.text
    for path in ("/catalog/articles", "/catalog/articles/-/insert", "/catalog/search", "/-/logout"):
        assert client.post(path, json={"rows": [{"pmid": 1}]}).status_code == 405, path
    assert client.get("/catalog.db").status_code in (403, 404)
    assert db.execute("select count(*) from articles").fetchone()[0] == before
    settings = client.json("/-/settings.json")
    assert settings["sql_time_limit_ms"] <= 5000 and settings["allow_download"] is False


def test_a_slow_query_stops_at_the_time_limit(client):
    slow = "with recursive n(i) as (select 1 union all select i + 1 from n) select count(*) from n"
    response = client.get("/catalog.json", params={"sql": slow, "_timelimit": "50"})
    assert response.status_code == 400 and "interrupted" in response.text.lower()


def test_served_catalog_shows_a_new_harvest_without_a_restart(tmp_path, records_corpus):
    """`make run` serves the live file read-only: a harvest's records appear at once."""
    site = copy_config(tmp_path / "site")
    corpus = records_corpus.copy()
    for pmid in corpus.pmids()[20:]:
        if pmid != 38011560:
            corpus.remove(pmid)  # twenty records are enough
    late = corpus.remove(38011560)  # a review of ketamine for depression, so new_since lists it
    with EutilsStandIn(corpus, enforce_rate_limit=False) as server:
        run_harvest(site / "catalog.db", settings=harvest_settings(server))
        client = Client(site)
        try:
            assert client.ds.databases["catalog"].is_mutable
            before = client.json("/catalog/articles.json?_size=1")["filtered_table_rows_count"]
            assert client.get(f"/catalog/articles/{late.pmid}").status_code == 404
            server.corpus.put(late)
            run_harvest(site / "catalog.db", settings=harvest_settings(server), full=True)
            assert client.json("/catalog/articles.json?_size=1")["filtered_table_rows_count"] == before + 1
            assert client.get(f"/catalog/articles/{late.pmid}").status_code == 200
            assert late.pmid in pmids_of(client.json("/catalog/new_since.json?_shape=array"))
        finally:
            client.close()


def test_publish_build_makes_an_immutable_copy_and_replaces_it_atomically(site, tmp_path):
    publish = load_publish()
    target = tmp_path / "published"
    published = publish.build(site / "catalog.db", target)
    inspect = json.loads((target / "inspect-data.json").read_text())
    assert inspect["catalog"]["file"] == "catalog.db"
    assert {p.name for p in target.iterdir()} == {"catalog.db", "inspect-data.json"} | {
        p.name for p in publish.config_entries(CONFIG)
    }
    assert {"metadata.yml", "settings.json", "templates", "plugins", "static"} <= {p.name for p in target.iterdir()}
    client = Client(target)
    try:
        assert not client.ds.databases["catalog"].is_mutable
        assert (
            client.json("/catalog/articles.json?_size=1")["filtered_table_rows_count"]
            == inspect["catalog"]["tables"]["articles"]["count"]
        )
        assert client.get("/catalog/search?q=ketamine").status_code == 200
        assert client.get("/catalog/articles/38011560.ris").status_code == 200
    finally:
        client.close()
    # A rebuild renames a new file over the old one: a reader holding the old file keeps it whole.
    reader = sqlite3.connect(f"file:{published}?immutable=1", uri=True)
    count = reader.execute("select count(*) from articles").fetchone()[0]
    old_inode = os.stat(published).st_ino
    publish.build(site / "catalog.db", target)
    assert os.stat(published).st_ino != old_inode
    assert reader.execute("select count(*) from articles").fetchone()[0] == count
    reader.close()
    assert not [p for p in target.iterdir() if p.name.startswith(".")]


# -- answers that say what they hold, and refuse what they cannot read ------------------------


def limited_client(site: Path, tmp_path: Path, max_rows: int) -> Client:
    """The catalog served with `max_returned_rows` lowered, so a list can outgrow one request."""
    copy = tmp_path / "limited"
    shutil.copytree(site, copy, ignore=shutil.ignore_patterns("inspect-data.json"))
    settings = json.loads((copy / "settings.json").read_text())
    settings["max_returned_rows"] = max_rows
    (copy / "settings.json").write_text(json.dumps(settings))
    return Client(copy)


def test_every_export_link_of_the_articles_page_takes_the_whole_list(client, db):
    year = 2021
    expected = sql_set(db, "select pmid from articles where pub_year = ?", [year])
    assert 50 < len(expected) < 1000
    html = client.get(f"/catalog/articles?pub_year={year}").text
    links: dict[str, str] = {}
    for url, fmt in re.findall(r'<a href="(/catalog/articles\.(\w+)\?[^"]*)"', html):
        links.setdefault(fmt, url)  # the "This data as" link, before the advanced ones
    assert {"json", "ris", "bib", "csljson", "csv"} <= set(links)
    got = {}
    for fmt, url in links.items():
        text = client.get(url.replace("&amp;", "&")).text
        if fmt == "json":
            got[fmt] = {r[0] for r in json.loads(text)["rows"]}
        elif fmt == "ris":
            got[fmt] = {int(e["accession_number"]) for e in rispy.loads(text)}
        elif fmt == "bib":
            got[fmt] = {int(e.key[4:]) for e in bibtexparser.parse_string(text).entries}
        elif fmt == "csljson":
            got[fmt] = {int(i["PMID"]) for i in json.loads(text)}
        elif fmt == "csv":
            got[fmt] = {int(r["pmid"]) for r in csv.DictReader(io.StringIO(text))}
    assert got == {fmt: expected for fmt in got}
    # The address a user types, without _size, is the whole list too.
    typed = rispy.loads(client.get(f"/catalog/articles.ris?pub_year={year}").text)
    assert {int(e["accession_number"]) for e in typed} == expected


def test_an_export_that_stops_at_the_limit_says_so(site, tmp_path, db):
    year, limit = 2021, 100
    total = db.execute("select count(*) from articles where pub_year = ?", [year]).fetchone()[0]
    assert total > limit
    c = limited_client(site, tmp_path, limit)
    try:
        ris = c.get(f"/catalog/articles.ris?pub_year={year}").text
        assert len(rispy.loads(ris)) == limit
        first = ris.splitlines()[0]
        assert f"first {limit:,} of {total:,} records" in first and "max_returned_rows" in first
        bib = bibtexparser.parse_string(c.get(f"/catalog/articles.bib?pub_year={year}").text)
        assert bib.failed_blocks == [] and len(bib.entries) == limit
        assert any(f"first {limit:,} of {total:,}" in comment.comment for comment in bib.comments)
        page = c.get(f"/catalog/articles?pub_year={year}").text
        assert f"first\n    {limit:,} records of {total:,}" in page or f"first {limit:,} records of {total:,}" in page
        # A list within the limit carries no such note.
        small = c.get("/catalog/articles.ris?_notice=Retracted").text
        assert not small.startswith("Note:") and len(rispy.loads(small)) == len(RETRACTED)
        assert 'class="export-note"' not in c.get("/catalog/articles?_notice=Retracted").text
    finally:
        c.close()
    # A question's answer past the limit: the page says so by its export links. (The question
    # lists psychiatric records only, fewer than the list above: its limit is one less than it has.)
    answers = db.execute(
        "select count(*) from articles a where psychiatric = 1 and matches_query = 1 "
        "and is_deleted = 0 and exists (select 1 from article_tags t where t.pmid = a.pmid "
        "and t.facet = 'design' and t.value in ('systematic_review', 'meta_analysis'))"
    ).fetchone()[0]
    assert answers > 2
    c = limited_client(site, tmp_path / "question", answers - 1)
    try:
        many = c.get("/catalog/systematic_reviews").text
        assert 'class="export-note"' in many and f"more than {answers - 1:,} rows" in many
        assert 'class="export-note"' not in client_page(
            site, tmp_path / "question-whole", "/catalog/systematic_reviews"
        )
    finally:
        c.close()


def client_page(site: Path, tmp_path: Path, path: str) -> str:
    """A page of the catalog served with its own settings (no lowered limit)."""
    c = limited_client(site, tmp_path, json.loads((site / "settings.json").read_text()).get("max_returned_rows", 1000))
    try:
        return c.get(path).text
    finally:
        c.close()


def test_questions_of_the_catalog_refuse_what_they_cannot_read(client, db):
    for path, param in (
        ("new_since?since=garbage", "since"),
        ("new_since?since=04.12.2026", "since"),
        ("new_since?since=2", "since"),
        ("retracted_or_corrected?status=nonsense", "status"),
        ("counts_per_year_by_design?design=nonsense", "design"),
        ("registered_trials?registry=Nowhere", "registry"),
        ("registered_trials?trial_id=%3Cscript%3E", "trial_id"),
    ):
        response = client.get("/catalog/" + path.replace("?", ".json?"))
        assert response.status_code == 400, path
        assert f"parameter {param}:" in response.json()["error"] and "Accepted:" in response.json()["error"]
        page = client.get("/catalog/" + path)
        assert page.status_code == 400 and f"parameter {param}:" in page.text
        assert "&#39;<script>" not in page.text  # the value as typed, escaped
    retracted = set(pmids_of(query(client, "retracted_or_corrected", status="retracted")))
    assert retracted == RETRACTED  # any case
    refused = client.get("/catalog/counts_per_year_by_design.ris")
    assert refused.status_code == 400 and "no article or preprint rows" in refused.text
    # An article question with nothing to list is an answer, and its file says so.
    empty = client.get("/catalog/new_since.ris?since=2999-01-01")
    assert empty.status_code == 200 and empty.text.startswith("Note: new_since: no records match")
    assert rispy.loads(empty.text) == []


@pytest.mark.dated
def test_new_since_reads_dates_as_people_write_them_and_run_ids_as_run_n(client, db):
    second = db.execute("select started_at from harvest_runs where id = 2").fetchone()[0]
    day = dt.date.fromisoformat(second[:10])
    written = [day.isoformat(), day.strftime("%Y/%m/%d"), f"{day.year}-{day.month}-{day.day}"]
    answers = [set(pmids_of(query(client, "new_since", since=w))) for w in written]
    # The question lists records on depression in the psychiatric sense.
    everything_that_day = sql_set(
        db,
        "select pmid from articles where psychiatric = 1 and first_seen_run in "
        "(select id from harvest_runs where started_at >= ?)",
        [day.isoformat()],
    )
    assert everything_that_day and answers == [everything_that_day] * 3
    # "run:1": first stored after run 1 (LATE_ARRIVALS, none of them psychiatric, and the trials
    # of the registry's runs are not articles).
    late = sql_set(db, "select pmid from articles where psychiatric = 1 and first_seen_run > 1")
    assert late <= LATE_ARRIVALS
    assert set(pmids_of(query(client, "new_since", since="run:1"))) == late
    assert set(pmids_of(query(client, "new_since", since="%231"))) == late
    # "run:0" / "#0": everything from run 1 on, i.e. every psychiatric record.
    every = sql_set(db, "select pmid from articles where psychiatric = 1")
    assert every and set(pmids_of(query(client, "new_since", since="run:0"))) == every
    assert set(pmids_of(query(client, "new_since", since="%230"))) == every


def test_unknown_sorts_and_facet_names_are_refused_and_only_get_and_head_are_served(client):
    response = client.get("/catalog/articles.json?_sort=nosuchcol")
    assert response.status_code == 400 and "nosuchcol" in response.json()["error"]
    assert client.get("/catalog/articles?_sort_desc=nosuchcol").status_code == 400
    assert client.get("/catalog/articles?_sort=pmid&_sort_desc=pmid").status_code == 400
    assert client.get("/catalog/article_xml.json?_sort=xml_zlib").status_code == 400
    unknown = client.get("/catalog/articles?_facet_catalog=language")
    assert unknown.status_code == 400
    assert "no facet named &#39;language&#39;" in unknown.text and "lang (Language)" in unknown.text
    assert client.get("/catalog/articles?_facet_catalog=lang").status_code == 200
    # Every facet name is on the page.
    page = client.get("/catalog/articles").text
    for name in ("pubtype", "mesh", "comparator", "outcome", "theme", "design", "lang", "registry"):
        assert f"_facet_catalog={name}" in page
    options = client.loop.run_until_complete(client.ds.client.request("OPTIONS", "/catalog/articles"))
    assert options.status_code == 405 and options.headers["allow"] == "GET, HEAD"
    head = client.loop.run_until_complete(client.ds.client.request("HEAD", "/catalog/articles"))
    assert head.status_code == 200


# -- the sense of "depression", and titles PubMed gives only in the original language -----------
# A small catalog of its own: real records on ketamine for depression (34034067, 33984391), a
# real anaesthesia record whose only "depression" is of ventilation (15278624), a real record
# with no English title (34086203, VernacularTitle only), and a clone of the ketamine review
# 38011560 whose title was moved from ArticleTitle to VernacularTitle, as PubMed gives twelve
# real records.

JULIELAB = PUBMED / "records-JULIELab-julielab-topic-modeling" / "pubmedsample18n0001.xml.gz"
PSYCHIATRIC = {34034067, 33984391, 38011560}
OTHER_SENSE = 15278624
VERNACULAR_ONLY = 34086203  # "Familiäre Tumorerkrankung: Erkennen ist Schutz."
VERNACULAR_CLONE = 38011560


def with_title_moved_to_vernacular(record):
    """The same record with its English title emptied and given as VernacularTitle instead."""
    from tests.eutils_stand_in import record_from_element

    raw = record.raw
    m = re.search(rb"<ArticleTitle>(.*?)</ArticleTitle>", raw, re.S)
    title = m.group(1)
    raw = raw[: m.start()] + b"<ArticleTitle></ArticleTitle>" + raw[m.end() :]
    assert b"<VernacularTitle>" not in raw
    raw = raw.replace(
        b"</PublicationTypeList>", b"</PublicationTypeList>\n<VernacularTitle>" + title + b"</VernacularTitle>", 1
    )
    return record_from_element(etree.fromstring(raw), raw, record.source), title.decode()


_SENSE_SITE: dict[str, object] = {}


@pytest.fixture(scope="module")
def sense_site(tmp_path_factory):
    if "site" not in _SENSE_SITE:
        site = copy_config(tmp_path_factory.mktemp("sense-site"))
        records, update = Corpus.cached([RECORDS]), Corpus.cached([UPDATE_FILE])
        clone, title = with_title_moved_to_vernacular(records[VERNACULAR_CLONE])
        corpus = Corpus(
            [update[34034067], update[33984391], update[VERNACULAR_ONLY], clone, Corpus.cached([JULIELAB])[OTHER_SENSE]]
        )
        with EutilsStandIn(corpus, enforce_rate_limit=False) as server:
            run_harvest(site / "catalog.db", settings=harvest_settings(server))
        _SENSE_SITE["site"], _SENSE_SITE["title"] = site, title
    return _SENSE_SITE["site"], _SENSE_SITE["title"]


@pytest.fixture(scope="module")
def sense(sense_site):
    site, title = sense_site
    c = Client(site)
    yield c, title
    c.close()


def test_store_keeps_the_sense_of_depression_with_its_evidence(sense_site):
    site, _ = sense_site
    with sqlite3.connect(site / "catalog.db") as conn:
        flags = dict(conn.execute("select pmid, psychiatric from articles"))
        tags = {
            row[0]: row[1:]
            for row in conn.execute("select pmid, value, method, evidence from article_tags where facet = 'depression'")
        }
    assert {p for p, flag in flags.items() if flag == 1} == PSYCHIATRIC
    assert flags[OTHER_SENSE] == 0 and flags[VERNACULAR_ONLY] == 0
    assert tags[OTHER_SENSE][:2] == ("other_sense_only", "rule:depression.other_sense")
    assert "ventilatory" in tags[OTHER_SENSE][2]
    assert VERNACULAR_ONLY not in tags  # it speaks of neither sense
    assert all(tags[p][0] == "psychiatric" for p in PSYCHIATRIC)


def test_front_page_counts_and_lists_only_psychiatric_records_and_links_the_rest(sense):
    c, _ = sense
    html = c.get("/").text
    assert f"<strong>{len(PSYCHIATRIC)}</strong> records" in html
    assert 'href="/catalog/articles?matches_query=1&amp;is_deleted=0&amp;psychiatric=1"' in html
    assert 'href="/catalog/articles?matches_query=1&amp;is_deleted=0&amp;psychiatric=0">2 records</a>' in html
    listed = c.json("/catalog/articles.json?matches_query=1&is_deleted=0&psychiatric=1&_shape=array")
    assert set(pmids_of(listed)) == PSYCHIATRIC
    # One facet away: the records that mention depression only in another sense.
    other = c.json("/catalog/articles.json?_depression=other_sense_only&_shape=array")
    assert pmids_of(other) == [OTHER_SENSE]
    page = c.get("/catalog/articles").text
    assert "mentions depression only in another sense" in page


def test_feeds_and_questions_show_only_psychiatric_records(sense):
    c, _ = sense
    for path in ("/catalog/feed_new.atom", "/catalog/feed_search.atom?q=ketamine"):
        entries = assert_valid_atom(c.get(path).content)
        assert {int(e.findtext(f"{ATOM}id").rstrip("/").rsplit("/", 1)[1]) for e in entries} == PSYCHIATRIC, path
    assert set(pmids_of(query(c, "new_since", since="2000-01-01"))) == PSYCHIATRIC
    assert sum(r["records"] for r in query(c, "counts_per_year_by_design")) == len(PSYCHIATRIC)
    flow = {r["step"]: r["all_records"] for r in query(c, "prisma_flow")}
    assert flow[1] == 5 and flow[6] == 2 and flow[7] == len(PSYCHIATRIC)
    # The search itself stays broad: it finds the anaesthesia record too.
    found = pmids_of(c.json("/catalog/search.json?q=ketamine&_shape=array"))
    assert set(found) == PSYCHIATRIC | {OTHER_SENSE}


def test_a_record_with_only_a_vernacular_title_is_listed_fed_and_exported_under_it(sense):
    c, title = sense
    assert title.startswith("Ketamine")
    pmid = VERNACULAR_CLONE
    assert title in c.get("/catalog/search?q=ketamine").text
    assert title in c.get("/catalog/articles?matches_query=1&is_deleted=0&psychiatric=1").text
    feed = assert_valid_atom(c.get("/catalog/feed_new.atom").content)
    assert title in {e.findtext(f"{ATOM}title") for e in feed}
    assert title in {r["title"] for r in query(c, "new_since", since="2000-01-01")}
    expected = title.rstrip(".")
    [ris] = rispy.loads(c.get(f"/catalog/articles.ris?pmid={pmid}").text)
    assert ris["title"] == expected
    bib = bibtexparser.parse_string(c.get(f"/catalog/articles.bib?pmid={pmid}").text)
    assert bib.entries[0]["title"] == "{" + expected + "}"
    [item] = json.loads(c.get(f"/catalog/articles.csljson?pmid={pmid}").text)
    assert item["title"] == expected
    # A real record PubMed gives without an English title at all.
    [item] = json.loads(c.get(f"/catalog/articles.csljson?pmid={VERNACULAR_ONLY}").text)
    assert item["title"] == "Familiäre Tumorerkrankung: Erkennen ist Schutz"
    assert "Familiäre Tumorerkrankung" in c.get("/catalog/articles").text


def test_an_older_catalog_learns_the_sense_of_depression_when_it_is_upgraded(sense_site, tmp_path):
    """A catalog from before migration 0010 (no psychiatric column, no depression tags, tagged by
    rules-v4) gets the column, the tags and the counts the next time the harvester opens it."""
    from harvest import rebuild, schema

    site, _ = sense_site
    path = tmp_path / "catalog.db"
    with sqlite3.connect(site / "catalog.db") as source, sqlite3.connect(path) as copy:
        source.backup(copy)  # with what the write-ahead log holds
    with sqlite3.connect(path) as conn:
        # Every index on the column (0010's and the later ones, 0017's: dropped with their migrations).
        for (index,) in conn.execute(
            "select name from sqlite_master where type = 'index' and sql like '%psychiatric%'"
        ).fetchall():
            conn.execute(f"drop index [{index}]")
        conn.execute("delete from _sqlite_migrations where name = '0017_counts_for_a_million_articles'")
        conn.execute("drop view article_overview")
        conn.execute("alter table articles drop column psychiatric")
        conn.execute("alter table catalog_counts drop column set_aside")
        conn.execute(f"create view article_overview as {schema.COOKBOOK_VIEWS['article_overview']}")
        conn.execute("delete from article_tags where facet = 'depression'")
        conn.execute("update articles set tags_version = 'rules-v4'")
        conn.execute("delete from _sqlite_migrations where name = '0010_depression_in_the_psychiatric_sense'")
    db = rebuild.open_for_writing(path)  # what every run, import and retag opens with
    assert {p for (p,) in db.execute("select pmid from articles where psychiatric = 1")} == PSYCHIATRIC
    assert (
        db.execute("select value from article_tags where pmid = ? and facet = 'depression'", [OTHER_SENSE]).fetchone()[
            0
        ]
        == "other_sense_only"
    )
    assert db.execute("select current, set_aside from catalog_counts").fetchone() == (len(PSYCHIATRIC), 2)
    overview = db.execute("select title, psychiatric from article_overview where pmid = ?", [VERNACULAR_CLONE])
    assert overview.fetchone()[1] == 1
    db.close()
