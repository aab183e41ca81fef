"""One search finds both kinds: /catalog/search lists the PubMed records (`articles_fts`) and the
preprints (`preprints_fts`) a search matches in one list, each ranked by its own index and the two
merged by place, with how many of each match and a link to all of each; `kind=` lists one kind;
the front page and the articles table point at the facet "peer-reviewed / preprint"
(catalog_records, kind).

The catalog is tests/sources_catalog.py's: real PubMed records and the 24 real preprints of
Europe PMC's recorded answer (about cancer: they stand for the topic's). Every expected answer
is worked out here from the base tables (a plain scan of `preprints`, never the FTS index the
page uses) except the ranking's order, which is checked against BM25 itself and the merge rule."""

from __future__ import annotations

import html
import re
import sqlite3

import lxml.html
import pytest

from tests.sources_catalog import TITLE_LINKED, TITLE_LINKED_PMID, client, site  # noqa: F401 - fixtures


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


def results(client, q: str, kind: str = ""):
    """The search page for `q`: (its tree, the listed results as ("pmid"|"preprint", id))."""
    page = client.get("/catalog/search", params={"q": q, **({"kind": kind} if kind else {})})
    assert page.status_code == 200
    tree = lxml.html.fromstring(page.text)
    listed = [
        ("preprint", li.get("data-ppr-id")) if li.get("data-ppr-id") else ("pmid", li.get("data-pmid"))
        for li in tree.xpath('//ol[@class="search-results"]/li')
    ]
    return tree, listed


def count_line(tree) -> str:
    return " ".join(tree.xpath("string(//p[@class='result-count'])").split())


def ranked(db, sql: str, q: str) -> list[tuple[str, float]]:
    return [(str(i), score) for i, score in db.execute(sql, [q])]


ARTICLES_BY_BM25 = (
    "select rowid, bm25(articles_fts, 10.0, 1.0, 4.0, 3.0) from articles_fts where articles_fts match ? order by 2"
)
PREPRINTS_BY_BM25 = (
    "select p.ppr_id, bm25(preprints_fts, 10.0, 1.0, 1.0, 4.0) from preprints_fts f join preprints p "
    "on p.rowid = f.rowid where preprints_fts match ? and p.in_topic = 1 order by 2"
)


def test_one_search_lists_records_and_real_preprints_in_one_list_merged_by_place(client, db):
    expected = containing(db, "cancer")
    assert len(expected) >= 10 and not any(p.startswith("PPR91") for p in expected)  # recorded ones only
    articles, preprints = ranked(db, ARTICLES_BY_BM25, "cancer"), ranked(db, PREPRINTS_BY_BM25, "cancer")
    assert {p for p, _ in preprints} == expected  # the index finds what a scan of the text finds
    assert len(articles) > len(preprints) > 0 and len(articles) + len(preprints) > 100
    tree, listed = results(client, "cancer")
    assert count_line(tree).startswith(
        f"{len(articles) + len(preprints)} records match: {len(articles)} peer-reviewed and {len(preprints)} preprints"
    )
    # Merged by place: the k-th of a kind's n matches stands at (k - 1) / n, records first on a tie,
    # so each kind takes its share of the 100 listed.
    places = sorted(
        [((k / len(articles)), 0, "pmid") for k in range(len(articles))]
        + [((k / len(preprints)), 1, "preprint") for k in range(len(preprints))]
    )[:100]
    assert [kind for kind, _ in listed] == [kind for _, _, kind in places]
    # Within each kind, BM25's own order (ties in any order).
    score = dict(articles + preprints)
    for kind in ("pmid", "preprint"):
        scores = [score[i] for k, i in listed if k == kind]
        assert scores == sorted(scores) and len(set(i for k, i in listed if k == kind)) == len(scores)
    listed_preprints = [i for k, i in listed if k == "preprint"]
    assert set(listed_preprints) <= expected and len(listed_preprints) == sum(1 for p in places if p[2] == "preprint")
    # A preprint opens its own page, says it is one, and its snippet marks the word.
    first = tree.xpath(f'//li[@data-ppr-id="{listed_preprints[0]}"]')[0]
    assert first.xpath(".//a[@class='result-title']/@href") == [f"/catalog/preprints/{listed_preprints[0]}"]
    assert first.xpath("string(.//span[contains(@class, 'badge-preprint')])") == "Preprint"
    assert [m.text_content().lower() for m in first.xpath(".//mark")][:1] == ["cancer"]


def test_the_search_answers_as_json_with_each_rows_kind(client, db):
    rows = client.json("/catalog/search.json?_shape=array&q=breast")
    expected = containing(db, "breast")
    assert {r["ppr_id"] for r in rows if r["kind"] == "preprint"} == expected
    sql_pmids = {r for (r,) in db.execute("select rowid from articles_fts where articles_fts match 'breast'")}
    assert {r["pmid"] for r in rows if r["kind"] == "peer-reviewed"} == sql_pmids
    assert all((r["pmid"] is None) == (r["kind"] == "preprint") for r in rows)
    assert {(r["peer_reviewed_matches"], r["preprint_matches"]) for r in rows} == {(len(sql_pmids), len(expected))}


def test_one_kind_only_and_a_kind_the_catalog_does_not_have(client, db):
    expected = containing(db, "cancer")
    tree, listed = results(client, "cancer", kind="preprint")
    assert {i for _, i in listed} == expected and {k for k, _ in listed} == {"preprint"}
    assert "listed: the preprints only" in count_line(tree)
    assert tree.xpath("//p[@class='kind-switch']//strong[@aria-current='page']/text()") == ["preprints only"]
    _, papers = results(client, "cancer", kind="Peer-Reviewed")
    sql_pmids = {str(r) for (r,) in db.execute("select rowid from articles_fts where articles_fts match 'cancer'")}
    assert len(sql_pmids) <= 100  # so the page lists every one
    assert {k for k, _ in papers} == {"pmid"} and {i for _, i in papers} == sql_pmids and len(papers) == len(sql_pmids)
    bad = client.get("/catalog/search", params={"q": "cancer", "kind": "poster"})
    said = html.unescape(bad.text)
    assert bad.status_code == 400 and "search: parameter kind: 'poster' is not a kind of record" in said


def test_the_links_to_all_matching_records_list_as_many_as_the_page_counts(client, db):
    expected = containing(db, "cancer")
    tree, _ = results(client, "cancer")
    (link,) = tree.xpath("//a[@class='all-preprints']/@href")
    assert link == "/catalog/preprints?_search=cancer&in_topic=1"
    listing = client.json(link.replace("/catalog/preprints?", "/catalog/preprints.json?") + "&_size=max")
    assert listing["filtered_table_rows_count"] == len(expected)
    assert {r[0] for r in listing["rows"]} == expected


def test_a_preprint_linked_to_a_paper_says_so_in_the_results(client):
    tree, listed = results(client, "neurobiology")
    assert ("preprint", TITLE_LINKED) in listed
    (item,) = tree.xpath(f"//li[@data-ppr-id='{TITLE_LINKED}']")
    assert item.xpath(".//a[contains(., 'PMID')]/@href") == [f"/catalog/articles/{TITLE_LINKED_PMID}"]


def test_no_preprint_matches_says_so_and_a_column_only_papers_have_does_not_break_the_page(client):
    tree, listed = results(client, "esketamine")
    assert "and 0 preprints" in count_line(tree) and listed and {k for k, _ in listed} == {"pmid"}
    tree, listed = results(client, "mesh_terms:Depression")
    assert "0 preprints (preprints have no such column)" in count_line(tree)
    assert listed and {k for k, _ in listed} == {"pmid"}
    tree, listed = results(client, "mesh_terms:Depression", kind="preprint")
    assert not listed and "No preprints match (preprints have no such column)" in " ".join(tree.text_content().split())


def test_the_search_reads_the_indexes_never_a_whole_table(site):
    """The latency goal: the search ranks FTS matches, it scans neither `articles` nor `preprints`."""
    import yaml

    sql = yaml.safe_load((site.path / "metadata.yml").read_text())["databases"]["catalog"]["queries"]["search"]["sql"]
    conn = sqlite3.connect(f"file:{site.path / 'catalog.db'}?mode=ro", uri=True)
    conn.create_function("fts_query", -1, lambda q, *index: q)
    conn.create_function("search_snippet", -1, lambda *a: None)
    plan = " | ".join(r[3] for r in conn.execute("explain query plan " + sql, {"q": "cancer", "kind": ""}))
    assert plan.count("VIRTUAL TABLE INDEX") == 4, plan  # two rankings, two counts
    assert re.search(r"SEARCH a USING INTEGER PRIMARY KEY", plan) and re.search(r"SEARCH p USING INTEGER", plan), plan
    assert not re.search(r"SCAN (a|p)\b", plan), plan
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
