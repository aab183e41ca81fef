"""One search finds both kinds: /catalog/search lists the PubMed records a search matches and,
in a second labelled section, the preprints (`preprints_fts`) with their count and a link to all
of them in the preprints table; the front page and the articles table point at the facet
"peer-reviewed / preprint" (catalog_records, kind).

The catalog is tests/sources_catalog.py's: real PubMed records and the 24 real preprints of
Europe PMC's recorded answer (about cancer: they stand for the topic's). Every expected answer
is worked out here from the base tables (a plain scan of `preprints`, never the FTS index the
page uses) except the ranking's order, which is checked against BM25 itself."""

from __future__ import annotations

import re
import sqlite3

import lxml.html
import pytest

from tests.sources_catalog import TITLE_LINKED, TITLE_LINKED_PMID, build_sources_site
from tests.test_catalog import Client


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    return build_sources_site(tmp_path_factory)


@pytest.fixture(scope="module")
def client(site):
    c = Client(site.path)
    yield c
    c.close()


@pytest.fixture(scope="module")
def db(site):
    conn = sqlite3.connect(f"file:{site.path / 'catalog.db'}?mode=ro", uri=True)
    yield conn
    conn.close()


def containing(db, word: str) -> set[str]:
    """Preprints whose title, abstract, authors or keywords hold `word` (a whole word, any case)."""
    pattern = re.compile(rf"\b{re.escape(word)}\b", re.IGNORECASE)
    return {
        ppr
        for ppr, *texts in db.execute(
            "select ppr_id, title, abstract, authors, keywords from preprints where in_topic = 1"
        )
        if any(pattern.search(t or "") for t in texts)
    }


def section(client, q: str):
    page = client.get(f"/catalog/search?q={q}")
    assert page.status_code == 200
    tree = lxml.html.fromstring(page.text)
    (found,) = tree.xpath('//section[@class="preprint-results"]')
    return tree, found


def test_a_search_lists_the_matching_real_preprints_in_a_labelled_section_with_their_count(client, db):
    expected = containing(db, "breast")
    assert len(expected) >= 5 and not any(p.startswith("PPR91") for p in expected)  # recorded ones only
    tree, found = section(client, "breast")
    assert found.xpath("string(.//h2)") == "Preprints (Europe PMC, not peer reviewed)"
    listed = found.xpath(".//ol/li/@data-ppr-id")
    assert set(listed) == expected and len(listed) == len(expected)
    assert f"{len(expected)} preprints match" in " ".join(
        found.xpath("string(.//p[contains(@class, 'preprint-count')])").split()
    )
    # Ranked by BM25 (title first, as the articles' search weighs it), best first.
    best = [
        r[0]
        for r in db.execute(
            "select p.ppr_id from preprints_fts f join preprints p on p.rowid = f.rowid "
            "where preprints_fts match 'breast' order by bm25(preprints_fts, 10.0, 1.0, 1.0, 4.0)"
        )
    ]
    assert listed == best
    # Each result opens its preprint page; the snippet marks the word.
    first = found.xpath(".//ol/li")[0]
    assert first.xpath(".//a[@class='result-title']/@href") == [f"/catalog/preprints/{listed[0]}"]
    assert [m.text_content().lower() for m in first.xpath(".//mark")][:1] == ["breast"]
    # The PubMed records the same search finds are still the first section.
    pmids = tree.xpath('//ol[@class="search-results"]/li/@data-pmid')
    sql_pmids = {str(p) for (p,) in db.execute("select rowid from articles_fts where articles_fts match 'breast'")}
    assert set(pmids) == sql_pmids


def test_the_link_to_all_matching_preprints_lists_as_many_as_the_section_counts(client, db):
    expected = containing(db, "cancer")
    _, found = section(client, "cancer")
    (link,) = found.xpath(".//a[@class='all-preprints']/@href")
    assert link == "/catalog/preprints?_search=cancer&in_topic=1"
    assert f"see all {len(expected)} in the preprints table" in found.text_content()
    listing = client.json(link.replace("/catalog/preprints?", "/catalog/preprints.json?") + "&_size=max")
    assert listing["filtered_table_rows_count"] == len(expected)
    assert {r[0] for r in listing["rows"]} == expected
    assert len(found.xpath(".//ol/li")) == min(20, len(expected))


def test_a_preprint_linked_to_a_paper_says_so_in_the_results(client):
    _, found = section(client, "neurobiology")
    (item,) = found.xpath(f".//li[@data-ppr-id='{TITLE_LINKED}']")
    assert item.xpath(".//a[contains(., 'PMID')]/@href") == [f"/catalog/articles/{TITLE_LINKED_PMID}"]


def test_no_preprint_matches_says_so_and_a_column_only_papers_have_does_not_break_the_page(client):
    _, found = section(client, "esketamine")
    assert "0 preprints match" in " ".join(found.text_content().split())
    _, found = section(client, "mesh_terms:Depression")
    assert found.xpath(".//p[contains(@class, 'message-warning')]") and not found.xpath(".//ol")


def test_the_preprint_search_reads_the_index_never_the_whole_table(site):
    """The latency goal: the search ranks FTS matches, it does not scan `preprints`."""
    import importlib.util

    from datasette.app import Datasette  # noqa: F401  (the plugin module imports datasette)

    spec = importlib.util.spec_from_file_location("preprints_plugin", site.path / "plugins" / "preprints.py")
    assert spec and spec.loader
    plugin = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(plugin)
    conn = sqlite3.connect(f"file:{site.path / 'catalog.db'}?mode=ro", uri=True)
    conn.create_function("fts_query", 1, lambda q: q)
    conn.create_function("search_snippet", -1, lambda *a: None)
    for sql in (plugin.PREPRINT_SEARCH_SQL, plugin.PREPRINT_COUNT_SQL):
        plan = " | ".join(r[3] for r in conn.execute("explain query plan " + sql, {"q": "cancer"}))
        assert "VIRTUAL TABLE INDEX" in plan and re.search(r"SEARCH p USING INTEGER PRIMARY KEY", plan), plan
        assert "SCAN p" not in plan, plan
    conn.close()


def test_the_front_page_and_the_articles_table_point_at_the_kind_facet(client, db):
    total, published = db.execute(
        "select count(*), sum(has_published_version) from preprints where in_topic = 1"
    ).fetchone()
    front = lxml.html.fromstring(client.get("/").text)
    (line,) = front.xpath('//p[@class="preprints-count"]')
    assert " ".join(line.text_content().split()).startswith(f"{total} preprints from Europe PMC, not peer reviewed")
    assert f"{published} published as a record above" in line.text_content()
    assert "/catalog/catalog_records?_facet=kind" in line.xpath(".//a/@href")
    articles = lxml.html.fromstring(client.get("/catalog/articles").text)
    assert "/catalog/catalog_records?_facet=kind" in articles.xpath("//a/@href")
    facets = client.json("/catalog/catalog_records.json?_facet=kind")
    counts = {v["value"]: v["count"] for v in facets["facet_results"]["kind"]["results"]}
    assert counts["preprint"] == total
