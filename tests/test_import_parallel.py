"""The parallel import (parsing and tagging in worker processes, one writer) builds the same catalog."""

from __future__ import annotations

import sqlite3

from harvest import importer
from tests.conftest import PUBMED, RECORDS

COMPARED = {
    "articles": "select pmid, pmid_version, record_sha1, title, study_design, awaiting_indexing, tags_version, "
    "matches_query, is_deleted, first_author, mesh_terms from articles order by pmid",
    "article_tags": "select * from article_tags order by pmid, facet, value",
    "article_xml": "select pmid, pmid_version, sha1, length(xml_zlib) > 0 from article_xml order by 1, 2",
    "article_authors": "select pmid, role, position, orcid from article_authors order by 1, 2, 3",
    "fts": "select rowid from articles_fts where articles_fts match 'patients OR depression' order by rowid",
}


def _catalog(path):
    conn = sqlite3.connect(path)
    return {name: conn.execute(sql).fetchall() for name, sql in COMPARED.items()}


def test_parallel_import_builds_the_same_catalog_in_file_order(tmp_path):
    # Files whose order matters: records/ holds 23435529 twice in different spellings
    # (records-metapub-repo-extra is not among them) and the MEDLINE file deletes records.
    files = [PUBMED / "medline16n0902.xml.gz", *sorted(RECORDS.glob("*.xml"))[:120]]
    one = importer.import_files(tmp_path / "one.db", files)
    two = importer.import_files(tmp_path / "two.db", files, workers=2)
    assert (two.files, two.records, two.new, two.updated, two.unchanged, two.deleted) == (
        one.files,
        one.records,
        one.new,
        one.updated,
        one.unchanged,
        one.deleted,
    )
    assert [p for p, _ in two.per_file] == [str(f) for f in files]
    assert _catalog(tmp_path / "two.db") == _catalog(tmp_path / "one.db")
    assert _catalog(tmp_path / "one.db")["fts"]


def test_parallel_import_reports_a_broken_file_and_keeps_what_came_before(tmp_path):
    good = PUBMED / "medline16n0902.xml.gz"
    broken = tmp_path / "cut.xml"
    broken.write_bytes((RECORDS / "38011560.xml").read_bytes()[:-200])
    try:
        importer.import_files(tmp_path / "c.db", [good, broken], workers=2)
    except importer.ImportFailed as exc:
        assert "cut.xml" in str(exc)
    else:
        raise AssertionError("a cut-off file must fail the import")
    conn = sqlite3.connect(tmp_path / "c.db")
    assert conn.execute("select count(*) from articles").fetchone()[0] >= 600
    assert conn.execute("select status from harvest_runs").fetchone()[0] == "failed"


def test_import_command_with_workers_builds_the_same_catalog(tmp_path):
    from tests.conftest import PUBMED, RECORDS, run_cli

    files = [*sorted(RECORDS.glob("*.xml"))[:60], PUBMED / "medline16n0902.xml.gz"]
    summaries, contents = [], []
    for workers in ("1", "2"):
        db_path = tmp_path / f"w{workers}.db"
        result = run_cli("import", *files, "--db", db_path, "--workers", workers)
        assert result.returncode == 0, result.stderr
        summaries.append(result.stdout.split(":", 1)[1])
        with sqlite3.connect(db_path) as conn:
            contents.append(
                conn.execute(
                    "select pmid, title, abstract, mesh_terms, study_design, matches_query from articles order by pmid"
                ).fetchall()
            )
    assert summaries[0] == summaries[1] and "664 records read; 664 new" in summaries[0]
    assert contents[0] == contents[1] and len(contents[0]) == 664
