"""Preprints leave the catalog as reference managers and feed readers read them: the preprints
table and a search's preprint rows as RIS (rispy), BibTeX (bibtexparser, pandoc, biber) and
CSL-JSON (json, pandoc's citeproc reading), every stored preprint whole: an unpublished work from
its server, with its Europe PMC id, DOI, authors and the note that it is not peer reviewed; and
the Atom feeds (feedparser): new preprints, and a followed search's preprints beside its records.

The catalog is tests/sources_catalog.py's: the real preprints of Europe PMC's recorded answer
and the one clone linked to a stored paper. What each format should hold is worked out here
from the preprints table's own columns, not from the export code's citation dicts."""

from __future__ import annotations

import json
import sqlite3
import subprocess

import bibtexparser
import feedparser
import pytest
import rispy

from tests.sources_catalog import TITLE_LINKED, TITLE_LINKED_PMID, client, site  # noqa: F401 - fixtures
from tests.test_hostile_exports import PANDOC, name_words, one, run_biber, typographic


@pytest.fixture(scope="module")
def stored(site) -> list[dict]:
    """Every stored preprint."""
    conn = sqlite3.connect(f"file:{site.path / 'catalog.db'}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    rows = [dict(r) for r in conn.execute("select * from preprints order by ppr_id")]
    conn.close()
    assert len(rows) >= 25 and any(r["published_pmid"] for r in rows)
    return rows


def export(client, path: str) -> str:
    response = client.get(path)
    assert response.status_code == 200, response.text[:500]
    return response.text


def authors(row: dict) -> list[str]:
    return [a.strip() for a in (row["authors"] or "").split(";") if a.strip()]


def as_person(name: str) -> dict:
    """How a reader files "van Duijnhoven FJ": family name and initials (a consortium: one literal)."""
    family, _, initials = name.rpartition(" ")
    return {"family": family, "given": initials} if family and initials.isupper() else {"literal": name}


def note(row: dict) -> str:
    text = "Preprint (not peer reviewed)" + (f", {row['server']}" if row["server"] else "")
    text += f", version {row['version']}" if row["version"] else ""
    return text + (f"; published as PMID {row['published_pmid']}" if row["published_pmid"] else "")


def test_every_preprint_reads_back_from_ris(client, stored):
    entries = rispy.loads(export(client, "/catalog/preprints.ris"))
    assert sorted(e["accession_number"] for e in entries) == [r["ppr_id"] for r in stored]
    for row, entry in zip(stored, sorted(entries, key=lambda e: e["accession_number"])):
        assert entry["type_of_reference"] == "UNPB"  # an unpublished work, not a journal article
        assert entry["title"] == one(row["title"]), row["ppr_id"]
        assert entry.get("authors", []) == [
            ", ".join(filter(None, [p.get("family"), p.get("given")])) or p["literal"]
            for p in map(as_person, authors(row))
        ]
        assert entry.get("publisher") == row["server"] and entry.get("doi") == row["doi"]
        assert entry.get("abstract") == (one(row["abstract"]) or None)
        assert entry["urls"] == [f"https://europepmc.org/article/PPR/{row['ppr_id']}"]
        assert entry["name_of_database"] == "Europe PMC" and note(row) in entry.get("notes", [])
        assert entry.get("year") == (str(row["pub_year"]) if row["pub_year"] else None)


def test_every_preprint_is_one_bibtex_entry_for_bibtexparser_pandoc_and_biber(client, stored, tmp_path):
    text = export(client, "/catalog/preprints.bib")
    library = bibtexparser.parse_string(text)
    assert library.failed_blocks == []
    entries = sorted(library.entries, key=lambda e: e.key)
    assert [e.key for e in entries] == [r["ppr_id"] for r in stored]
    assert {e.entry_type for e in entries} == {"misc"}
    for row, entry in zip(stored, entries):
        assert entry["howpublished"] == row["server"] and entry["url"].endswith(row["ppr_id"])
        assert "pmid" not in entry.fields_dict
    assert run_biber(text, tmp_path) == sorted(r["ppr_id"] for r in stored)
    path = tmp_path / "preprints.bib"
    path.write_text(text)
    done = subprocess.run([PANDOC, "-f", "bibtex", "-t", "csljson", str(path)], capture_output=True, text=True)
    assert done.returncode == 0 and "warning" not in done.stderr.lower(), done.stderr
    items = sorted(json.loads(done.stdout), key=lambda i: i["id"])
    assert [i["id"] for i in items] == [r["ppr_id"] for r in stored]
    for row, item in zip(stored, items):
        assert typographic(one(item["title"])) == typographic(one(row["title"])), row["ppr_id"]
        assert item.get("DOI") == row["doi"]
        assert [name_words(p) for p in item.get("author", [])] == [name_words(as_person(a)) for a in authors(row)]
        assert typographic(item.get("note")) == typographic(note(row))


def test_every_preprint_is_a_csl_article_pandoc_reads(client, stored, tmp_path):
    text = export(client, "/catalog/preprints.csljson")
    items = sorted(json.loads(text), key=lambda i: i["id"])
    assert [i["id"] for i in items] == [r["ppr_id"] for r in stored]
    for row, item in zip(stored, items):
        assert item["type"] == "article" and item["genre"] == "Preprint" and "PMID" not in item
        assert item.get("publisher") == row["server"] and item.get("DOI") == row["doi"]
        assert item.get("author", []) == [as_person(a) for a in authors(row)] and item["note"] == note(row)
        posted = [int(p) for p in (row["first_publication_date"] or "").split("-")]
        expected = posted if posted[:1] == [row["pub_year"]] else [row["pub_year"]]  # its year, the day if in it
        assert item["issued"] == {"date-parts": [expected]}, row["ppr_id"]
    path = tmp_path / "preprints.json"
    path.write_text(text)
    done = subprocess.run([PANDOC, "-f", "csljson", "-t", "csljson", str(path)], capture_output=True, text=True)
    assert done.returncode == 0 and "warning" not in done.stderr.lower(), done.stderr
    read = sorted(json.loads(done.stdout), key=lambda i: i["id"])
    assert [(i["id"], i["type"], i.get("DOI")) for i in read] == [(r["ppr_id"], "article", r["doi"]) for r in stored]


def test_a_search_exports_its_records_and_preprints_in_the_order_listed(client):
    rows = client.json("/catalog/search.json?_shape=array&q=depression")
    listed = [r["ppr_id"] if r["kind"] == "preprint" else f"pmid{r['pmid']}" for r in rows]
    assert TITLE_LINKED in listed and any(key.startswith("pmid") for key in listed)
    library = bibtexparser.parse_string(export(client, "/catalog/search.bib?q=depression"))
    assert [e.key for e in library.entries] == listed
    (linked,) = [e for e in library.entries if e.key == TITLE_LINKED]
    assert f"published as PMID {TITLE_LINKED_PMID}" in linked["note"]
    ris = rispy.loads(export(client, "/catalog/search.ris?q=depression"))
    assert [("UNPB" if e["accession_number"].startswith("PPR") else "JOUR") for e in ris] == [
        "UNPB" if key.startswith("PPR") else "JOUR" for key in listed
    ]


def test_a_list_with_neither_kind_of_record_says_what_to_take_instead(client):
    response = client.get("/catalog/preprint_tags.bib")
    assert response.status_code == 200  # preprint_tags rows name their preprint
    response = client.get("/catalog/harvest_runs.ris")
    assert response.status_code == 400 and "no pmid or ppr_id column" in response.text


def entries(client, path: str) -> list:
    feed = feedparser.parse(export(client, path))
    assert not feed.bozo, feed.bozo_exception
    return feed.entries


def links_of(entry) -> list[str]:
    import lxml.html

    return lxml.html.fromstring(entry.content[0].value).xpath("//a/@href")


def test_the_new_preprints_feed_lists_the_topics_preprints_newest_first(client, site):
    conn = sqlite3.connect(f"file:{site.path / 'catalog.db'}?mode=ro", uri=True)
    expected = [
        r[0]
        for r in conn.execute(
            "select ppr_id from preprints where in_topic = 1 "
            "order by first_seen_run desc, first_index_date desc, ppr_id desc limit 100"
        )
    ]
    conn.close()
    got = entries(client, "/catalog/feed_preprints.atom")
    assert [e.id.rsplit("/", 1)[1] for e in got] == expected and len(expected) >= 24
    for entry in got:
        ppr_id = entry.id.rsplit("/", 1)[1]
        assert entry.link == f"https://europepmc.org/article/PPR/{ppr_id}"
        assert "Preprint (not peer reviewed)" in entry.content[0].value
        hosts = {link.split("/")[2] for link in links_of(entry)}
        assert hosts <= {"localhost", "europepmc.org", "doi.org", "pubmed.ncbi.nlm.nih.gov"}, hosts
    (linked,) = [e for e in got if e.id.endswith(TITLE_LINKED)]
    assert f"http://localhost/catalog/articles/{TITLE_LINKED_PMID}" in links_of(linked)


def test_a_followed_search_brings_its_preprints_beside_its_records(client, site):
    conn = sqlite3.connect(f"file:{site.path / 'catalog.db'}?mode=ro", uri=True)
    papers = {
        f"https://pubmed.ncbi.nlm.nih.gov/{r[0]}/"
        for r in conn.execute(
            "select pmid from articles where is_deleted = 0 and psychiatric = 1 and pmid in "
            "(select rowid from articles_fts where articles_fts match 'depression')"
        )
    }
    preprints = {
        f"https://europepmc.org/article/PPR/{r[0]}"
        for r in conn.execute(
            "select ppr_id from preprints where in_topic = 1 and rowid in "
            "(select rowid from preprints_fts where preprints_fts match 'depression')"
        )
    }
    runs = dict(conn.execute("select started_at, id from harvest_runs"))
    conn.close()
    assert papers and preprints and len(papers | preprints) <= 100
    got = entries(client, "/catalog/feed_search.atom?q=depression")
    assert {e.id for e in got} == papers | preprints and len(got) == len(papers | preprints)
    added = [runs[e.updated] for e in got]
    assert added == sorted(added, reverse=True)  # newest harvest first, whichever source it was


def test_a_preprints_feed_entry_is_text_with_only_our_links():
    import importlib.util

    from tests.test_catalog import CONFIG

    spec = importlib.util.spec_from_file_location("catalog_plugin", CONFIG / "plugins" / "catalog.py")
    assert spec and spec.loader
    plugin = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(plugin)
    hostile = '<img src="http://tracker.example/x.gif"><a href="javascript:alert(1)">x</a>'
    html_text = plugin.preprint_entry_html(
        'PPR1"><script>', hostile, 2, "2025-06-16", hostile, '10.1/x"><script>', "12345678"
    )
    assert "<img" not in html_text and "<script" not in html_text  # the server's text, as text
    assert "&lt;img src=" in html_text
    import lxml.html

    links = lxml.html.fromstring(html_text).xpath("//a/@href")
    assert links == [
        "https://doi.org/10.1/x%22%3E%3Cscript%3E",
        "/catalog/articles/12345678",
        "https://pubmed.ncbi.nlm.nih.gov/12345678/",
    ]  # no catalog or Europe PMC link for an id that is not a PPR id
