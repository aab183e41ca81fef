"""The catalog's data model: bulk import, versions, deletions, revisions as events, migrations."""

from __future__ import annotations

import gzip
import re
import sqlite3
import zlib

import pytest
import sqlite_utils

from harvest import store
from harvest.schema import migrations
from tests import shared_import
from tests.conftest import KETAMINE_PMIDS, PUBMED, RECORDS, ROOT, harvest_env, run_cli

UPDATE_FILE = PUBMED / "pubmed21n1298-part1.xml.gz"


@pytest.fixture(scope="session")
def imported_catalog(tmp_path_factory):
    """Every shared PubMed file imported once, through the CLI (shared with test_hostile_exports)."""
    return shared_import.imported_catalog(tmp_path_factory)


def real_record_bytes(pmid: int) -> bytes:
    """One record's own bytes, cut from the real file it came in."""
    return (RECORDS / f"{pmid}.xml").read_bytes()


def test_import_stores_one_row_per_pmid_with_versions_books_and_old_format(imported_catalog):
    db_path, result = imported_catalog
    db = sqlite_utils.Database(db_path)
    total, distinct = db.execute("select count(*), count(distinct pmid) from articles").fetchone()
    assert total == distinct
    # 32,998 PMIDs in the two large files, 604 in the 2016 MEDLINE file, 215 in records/ (overlaps counted once)
    assert total >= 32998 + 215
    assert (
        db.execute(
            "select count(*) from articles where pmid in (select pmid from article_xml where run_id = 1)"
        ).fetchone()[0]
        == total
    )
    # Versioned citation: the latest in articles, every version kept.
    assert db.table("articles").get(30271887)["pmid_version"] == 3
    versions = [r[0] for r in db.execute("select pmid_version from article_xml where pmid = 30271887 order by 1")]
    assert versions == [1, 2, 3]
    assert b'<PMID Version="1">30271887</PMID>' in (store.stored_record_xml(db, 30271887, 1) or b"")
    assert b'<PMID Version="3">30271887</PMID>' in (store.stored_record_xml(db, 30271887) or b"")
    # A book is stored and flagged.
    book = db.table("articles").get(20301546)
    assert book["is_book"] == 1 and book["title"]
    # The 2016 MedlineCitationSet records (no PubmedData) are stored too.
    assert db.execute("select count(*) from articles where pmid = 17942999").fetchone()[0] == 1
    assert "import run 1:" in result.stdout


def test_import_flags_deletions_listed_in_the_update_file(imported_catalog):
    db = sqlite_utils.Database(imported_catalog[0])
    listed = {
        int(p)
        for p in re.findall(
            rb"<PMID Version=\"\d+\">(\d+)</PMID>", gzip.open(UPDATE_FILE).read().split(b"<DeleteCitation>")[1]
        )
    }
    assert len(listed) == 20
    deleted = {r[0] for r in db.execute("select pmid from articles where is_deleted = 1")}
    # Only PMIDs the catalog holds can be flagged; none of the shared files holds one of these.
    assert deleted == listed & {r[0] for r in db.execute("select pmid from articles")}


def test_deletecitation_for_a_stored_record_keeps_it_flagged_with_an_event(records_server, tmp_path):
    db_path = tmp_path / "c.db"
    assert run_cli("run", "--db", db_path, env=harvest_env(records_server.url)).returncode == 0
    # The real DeleteCitation block of the update file, naming a record this catalog holds.
    block = gzip.open(UPDATE_FILE).read().split(b"<DeleteCitation>")[1].split(b"</DeleteCitation>")[0]
    block = re.sub(rb"(<PMID Version=\"1\">)\d+(</PMID>)", rb"\g<1>38011560\g<2>", block, count=1)
    head = gzip.open(UPDATE_FILE).read(400).split(b"<PubmedArticleSet>")[0]
    update = tmp_path / "update.xml"
    update.write_bytes(
        head + b"<PubmedArticleSet>\n<DeleteCitation>" + block + b"</DeleteCitation>\n</PubmedArticleSet>\n"
    )
    result = run_cli("import", update, "--db", db_path)
    assert result.returncode == 0, result.stderr
    assert "1 marked deleted" in result.stdout
    db = sqlite_utils.Database(db_path)
    row = db.table("articles").get(38011560)
    assert row["is_deleted"] == 1 and row["deleted_date"] and row["title"]  # kept, flagged, dated
    events = list(db.query("select event, run_id from article_events where pmid = 38011560"))
    assert events == [{"event": "deleted", "run_id": 2}]
    assert db.execute("select count(*) from articles where is_deleted = 1").fetchone()[0] == 1


def revised(raw: bytes) -> bytes:
    """A real record as NLM might revise it: new abstract words, a new MeSH heading, a retraction."""
    raw = re.sub(rb"<AbstractText([^>]*)>", rb"<AbstractText\1>Quokka sentinel cohort. ", raw, count=1)
    raw = raw.replace(
        b"<MeshHeadingList>",
        b'<MeshHeadingList><MeshHeading><DescriptorName UI="D000818" '
        b'MajorTopicYN="N">Animals</DescriptorName></MeshHeading>',
        1,
    )
    raw = raw.replace(b"<PubmedData>", b"", 1)
    comments = (
        b'<CommentsCorrectionsList><CommentsCorrections RefType="RetractionIn"><RefSource>Proc Natl Acad '
        b'Sci U S A. 2024</RefSource><PMID Version="1">39000001</PMID></CommentsCorrections>'
        b"</CommentsCorrectionsList>"
    )
    raw = raw.replace(b"</MedlineCitation>", comments + b"</MedlineCitation><PubmedData>", 1)
    return raw


def test_revision_is_updated_in_place_with_events_and_searchable_by_new_words(tmp_path):
    db_path = tmp_path / "c.db"
    original = tmp_path / "38011560.xml"
    original.write_bytes(real_record_bytes(38011560))
    assert run_cli("import", original, "--db", db_path).returncode == 0
    db = sqlite_utils.Database(db_path)
    assert db.table("articles").get(38011560)["is_retracted"] == 0
    changed = tmp_path / "38011560-revised.xml"
    changed.write_bytes(revised(real_record_bytes(38011560)))
    result = run_cli("import", changed, "--db", db_path)
    assert result.returncode == 0, result.stderr
    assert "0 new, 1 updated" in result.stdout
    row = db.table("articles").get(38011560)
    assert row["is_retracted"] == 1 and row["abstract"].startswith("Quokka sentinel cohort.")
    assert "Animals" in row["mesh_terms"]
    events = {
        r["event"]: r["detail"] for r in db.query("select event, detail from article_events where pmid = 38011560")
    }
    assert events["retracted"] == "39000001"
    assert events["mesh_added"] == "Animals"
    assert "abstract_changed" in events

    def fts(q):
        return [
            r[0]
            for r in db.execute(
                "select a.pmid from articles_fts f join articles a on a.rowid = f.rowid where articles_fts match ?", [q]
            )
        ]

    assert fts("quokka") == [38011560]
    assert fts("animals") == [38011560]  # MeSH names are searchable too
    assert (
        db.execute(
            "select count(*) from comments_corrections where pmid = 38011560 and ref_type = 'RetractionIn'"
        ).fetchone()[0]
        == 1
    )
    # Importing the same file again changes nothing.
    again = run_cli("import", changed, "--db", db_path)
    assert "0 new, 0 updated, 1 unchanged" in again.stdout


def test_match_topic_keeps_only_records_the_query_matches(tmp_path):
    db_path = tmp_path / "c.db"
    result = run_cli("import", UPDATE_FILE, *sorted(RECORDS.glob("*.xml")), "--db", db_path, "--match-topic")
    assert result.returncode == 0, result.stderr
    kept = {r[0] for r in sqlite3.connect(db_path).execute("select pmid from articles")}
    # Out of 13,215 records: the three ketamine-and-depression records, and 34023336, whose
    # abstract opens on "the newfound antidepressant efficacy of ketamine" (a methoxetamine
    # study PubMed's own search with this query returns too: ketamin*[tiab] AND antidepressant*[tiab]).
    assert kept == KETAMINE_PMIDS | {34023336}


def test_status_tells_records_an_import_kept_outside_the_topic_from_no_longer_matching(tmp_path):
    """Without --match-topic an import stores every record; those the topic does not match
    never matched it, and `status` must not report them as a full sweep's leavers."""
    files = sorted(RECORDS.glob("*.xml"))
    plain, topic_only = tmp_path / "plain.db", tmp_path / "topic.db"
    assert run_cli("import", *files, "--db", plain).returncode == 0
    assert run_cli("import", *files, "--db", topic_only, "--match-topic").returncode == 0
    stored = {r[0]: r[1] for r in sqlite3.connect(plain).execute("select pmid, matches_query from articles")}
    kept = {r[0] for r in sqlite3.connect(topic_only).execute("select pmid from articles")}
    assert {p for p, m in stored.items() if m == 1} == kept and 0 < len(kept) < len(stored)
    status = run_cli("status", "--db", plain)
    assert status.returncode == 0, status.stderr
    first = status.stdout.splitlines()[0]
    assert (
        f"{len(stored)} articles ({len(kept)} matching the query, 0 no longer matching, "
        f"{len(stored) - len(kept)} outside the topic, stored by an import, 0 deleted by NLM)"
    ) in first, first


def test_hostile_document_is_refused_and_nothing_stored_changes(records_server, tmp_path):
    db_path = tmp_path / "c.db"
    assert run_cli("run", "--db", db_path, env=harvest_env(records_server.url)).returncode == 0
    before = sqlite3.connect(db_path).execute("select count(*), sum(length(title)) from articles").fetchone()
    real = real_record_bytes(38011560)
    bomb = real.replace(
        b"<PubmedArticleSet>",
        b'<!DOCTYPE PubmedArticleSet [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
        b'<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]>\n<PubmedArticleSet>',
        1,
    ).replace(b"<ArticleTitle>", b"<ArticleTitle>&c;", 1)
    bomb = re.sub(rb"<!DOCTYPE PubmedArticleSet PUBLIC[^>]*>\n?", b"", bomb, count=1)
    hostile = tmp_path / "hostile.xml"
    hostile.write_bytes(bomb)
    result = run_cli("import", hostile, "--db", db_path)
    assert result.returncode == 1
    assert "hostile.xml" in result.error_lines[0] and "entit" in result.error_lines[0].lower()
    after = sqlite3.connect(db_path).execute("select count(*), sum(length(title)) from articles").fetchone()
    assert after == before
    last = next(sqlite_utils.Database(db_path).query("select status, error from harvest_runs order by id desc limit 1"))
    assert last["status"] == "failed" and "hostile.xml" in last["error"]


def test_catalog_built_by_the_first_migration_upgrades_in_place(tmp_path):
    """A catalog from the first slice (migration 1 only) gains the full model without a re-harvest,
    the first time the harvester opens it for writing (the rebuild from the stored XML)."""
    from harvest import rebuild, rows
    from harvest.pubmed_xml import parse_articles

    db_path = tmp_path / "old.db"
    db = sqlite_utils.Database(db_path)
    migrations.apply(db, stop_before="0002_full_record_model")
    v1_columns = {c.name for c in db["articles"].columns}
    records = [r for f in sorted(RECORDS.glob("*.xml"))[:40] for r in parse_articles(f.read_bytes())]
    for r in records:  # what the first slice stored: its own columns and the original XML
        fp = rows.fingerprint(r)
        db.table("articles").insert({k: v for k, v in rows.article_row(r).items() if k in v1_columns})
        db.table("article_xml").insert(
            {"pmid": fp.pmid, "pmid_version": fp.pmid_version, "sha1": fp.sha1, "xml_zlib": zlib.compress(r["xml"])}
        )
    assert "mesh_terms" not in v1_columns and not db["authors"].exists()

    upgraded = rebuild.open_for_writing(db_path)  # what every run, import and retag opens with
    assert [m.name for m in migrations.pending(upgraded)] == []
    assert store.derived_versions(upgraded) == rebuild.current_versions()
    with_mesh = [r for r in records if r["mesh"]]
    sample = with_mesh[0]
    row = upgraded.table("articles").get(sample["pmid"])
    assert row["mesh_terms"].split("; ")[0] == sample["mesh"][0]["descriptor_name"]
    assert row["journal_iso"] == sample["journal_iso"]
    assert upgraded.execute("select count(*) from article_authors").fetchone()[0] == sum(
        len(r["authors"]) for r in records
    )
    # ... and tagged: every record has its primary design, and the rules' version.
    assert upgraded.execute(
        "select count(*) from articles where study_design is not null and tags_version is not null"
    ).fetchone()[0] == len(records)
    assert upgraded.execute("select count(*) from article_tags").fetchone()[0] > 0
    word = sample["mesh"][0]["descriptor_name"].split()[0].strip(",")
    hits = {
        r[0]
        for r in upgraded.execute(
            "select a.pmid from articles_fts f join articles a on a.rowid = f.rowid where articles_fts match ?",
            [f'"{word}"'],
        )
    }
    assert sample["pmid"] in hits
    assert upgraded.execute("pragma foreign_key_check").fetchall() == []


def test_a_process_killed_while_creating_the_catalog_leaves_no_half_built_catalog(tmp_path):
    """Killed between two migrations of a new catalog: nothing at the catalog's path that
    `export` or Datasette would open without its tables; the next open builds it whole and
    clears the dead process's temporary files."""
    import signal
    import subprocess
    import sys

    db_path = tmp_path / "catalog.db"
    # The child applies the schema's first migration, then dies as a SIGKILL would leave it.
    child = (
        "import os, signal, sys\n"
        "from harvest import store\n"
        "from harvest.schema import migrations\n"
        "real = migrations.apply\n"
        "def apply_then_die(db, **kw):\n"
        "    real(db, stop_before='0002_full_record_model')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "migrations.apply = apply_then_die\n"
        "store.open_db(sys.argv[1])\n"
    )
    proc = subprocess.run([sys.executable, "-c", child, str(db_path)], cwd=ROOT)
    assert proc.returncode == -signal.SIGKILL
    assert not db_path.exists()
    leftovers = sorted(p.name for p in tmp_path.iterdir())
    assert leftovers and all(".creating-" in name for name in leftovers)

    result = run_cli("export", "--db", db_path, "--format", "ris")
    assert result.returncode != 0 and "no catalog at" in result.stderr

    db = store.open_db(db_path)
    assert db["articles"].exists() and migrations.pending(db) == []
    assert [p.name for p in tmp_path.iterdir() if ".creating-" in p.name] == []
    db.close()

    # A bare connect leaves an empty file at the path; it is built over, not served empty.
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    assert empty.exists() and empty.stat().st_size == 0
    assert store.open_db(empty)["articles"].exists()


def test_schema_is_consistent_and_every_field_is_populated_where_pubmed_has_it(imported_catalog):
    db = sqlite_utils.Database(imported_catalog[0])
    assert db.execute("pragma integrity_check").fetchone()[0] == "ok"
    assert db.execute("pragma foreign_key_check").fetchall() == []
    assert (
        db.execute("select count(*) from articles_fts").fetchone()[0]
        == db.execute("select count(*) from articles").fetchone()[0]
    )

    def filled(column):
        return db.execute(f"select count(*) from articles where {column} is not null and {column} != ''").fetchone()[0]

    for column in (
        "title",
        "abstract",
        "journal",
        "journal_iso",
        "pub_date",
        "pub_year",
        "doi",
        "pmcid",
        "language",
        "publication_types",
        "mesh_terms",
        "keywords",
        "citation_status",
        "date_revised",
        "entrez_date",
        "first_author",
        "nlm_unique_id",
        "volume",
        "pages",
        "study_design",
    ):
        assert filled(column) > 0, column
    for table in (
        "authors",
        "article_authors",
        "article_author_affiliations",
        "abstract_sections",
        "article_mesh",
        "article_mesh_qualifiers",
        "article_publication_types",
        "keywords",
        "article_ids",
        "grants",
        "trial_registrations",
        "databanks",
        "comments_corrections",
        "chemicals",
        "supplementary_concepts",
        "article_history",
        "article_tags",
    ):
        assert db[table].count > 0, table
    # Structured abstracts keep their labels; ORCIDs are normalised; NCT ids from DataBankList and the text.
    assert (
        db.execute(
            "select count(*) from abstract_sections where label is not null and nlm_category is not null"
        ).fetchone()[0]
        > 0
    )
    orcids = [r[0] for r in db.execute("select orcid from article_authors where orcid is not null")]
    assert orcids and all(re.fullmatch(r"\d{4}-\d{4}-\d{4}-\d{3}[\dX]", o) for o in orcids)
    sources = {r[0] for r in db.execute("select distinct source from trial_registrations where trial_id like 'NCT%'")}
    assert {"databank"} <= sources
    statuses = {r[0] for r in db.execute("select distinct citation_status from articles")}
    assert {"MEDLINE", "In-Process", "Publisher"} <= statuses
    retracted = db.execute("select count(*) from articles where is_retracted = 1").fetchone()[0]
    assert retracted >= 4
