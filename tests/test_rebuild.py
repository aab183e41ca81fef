"""Derived rows come back from the stored XML when the recorded versions say so, and by hand."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from harvest import rebuild, store
from harvest.cli import cli
from harvest.pubmed_xml import parse_articles
from tests.conftest import RECORDS
from tests.pipeline import save_records


@pytest.fixture
def catalog(tmp_path):
    path = tmp_path / "catalog.db"
    db = rebuild.open_for_writing(path)
    run_id = store.start_run(db, mode="import", query_version="test", query_text="records/", window_from=None)
    records = [r for f in sorted(RECORDS.glob("*.xml"))[:30] for r in parse_articles(f.read_bytes())]
    save_records(db, records, run_id)
    store.refresh_summaries(db)
    return path, db


def _snapshot(db):
    return (
        db.execute(
            "select pmid, first_author, mesh_terms, study_design, tags_version from articles order by 1"
        ).fetchall(),
        db.execute("select * from article_tags order by 1, 2, 3").fetchall(),
        db.execute("select count(*) from article_authors").fetchone()[0],
    )


def test_a_new_catalog_records_the_versions_that_built_it(catalog):
    _, db = catalog
    assert store.derived_versions(db) == rebuild.current_versions()
    assert rebuild.stale_parts(db) == set()


def test_rows_built_by_another_row_model_are_rebuilt_when_the_catalog_is_next_opened(catalog):
    path, db = catalog
    before = _snapshot(db)
    first_seen = db.execute("select pmid, first_seen_run from articles order by 1").fetchall()
    with db.atomic():
        db.execute("update derived_versions set version = 'rows-v0' where part = 'rows'")
        db.execute("update articles set first_author = null, mesh_terms = null")
        db.execute("delete from article_authors")
        db.execute("delete from article_tags")
    assert rebuild.stale_parts(db) == {"rows"}
    db.close()

    reopened = rebuild.open_for_writing(path)
    assert _snapshot(reopened) == before
    assert reopened.execute("select pmid, first_seen_run from articles order by 1").fetchall() == first_seen
    assert store.derived_versions(reopened) == rebuild.current_versions()
    assert rebuild.stale_parts(reopened) == set()


def test_records_tagged_by_older_rules_are_retagged_and_counted(catalog):
    path, db = catalog
    before = _snapshot(db)
    with db.atomic():
        pmid = db.execute("select min(pmid) from articles").fetchone()[0]
        db.execute("update articles set tags_version = 'rules-v0', study_design = 'x' where pmid = ?", [pmid])
        db.execute("delete from article_tags where pmid = ?", [pmid])
    assert rebuild.stale_parts(db) == {"tags"}
    outcome = rebuild.bring_up_to_date(db)
    assert (outcome.retagged, outcome.rebuilt) == (1, 0)
    assert _snapshot(db) == before
    assert db.execute("select stale from summary_state").fetchone()[0] == 0


def test_python_m_harvest_rebuild_rebuilds_everything_by_hand(catalog):
    path, db = catalog
    before = _snapshot(db)
    with db.atomic():
        db.execute("update articles set mesh_terms = 'wrong'")
    db.close()
    result = CliRunner().invoke(cli, ["rebuild", "--db", str(path)])
    assert result.exit_code == 0, result.output
    assert (
        result.output.strip().splitlines()[-1]
        == f"rebuilt 30 records with {rebuild.ROW_MODEL_VERSION} and {rebuild.RULES_VERSION}"
    )
    assert _snapshot(store.open_db(path)) == before
