"""`harvest retag` and `harvest evaluate` on a harvested catalog, through the CLI."""

from __future__ import annotations

import sqlite3

from tests.conftest import harvest_env, run_cli


def test_retag_rewrites_the_same_tags_and_evaluate_prints_the_report_split(records_server, tmp_path):
    db_path = tmp_path / "c.db"
    assert run_cli("run", "--db", db_path, env=harvest_env(records_server.url)).returncode == 0

    def tags():
        return (
            sqlite3.connect(db_path)
            .execute("select pmid, facet, value, method, evidence from article_tags order by 1, 2, 3")
            .fetchall()
        )

    before = tags()
    assert before
    # A lost tag (as after a rule change) comes back with one command.
    with sqlite3.connect(db_path) as conn:
        conn.execute("delete from article_tags where pmid = 38011560")
    result = run_cli("retag", "--db", db_path)
    assert result.returncode == 0, result.stderr
    from harvest.tags import RULES_VERSION

    assert result.stdout.strip() == f"re-tagged 215 records with {RULES_VERSION}"
    assert tags() == before
    designs = sqlite3.connect(db_path).execute("select count(*) from articles where study_design is null").fetchone()[0]
    assert designs == 0

    report = run_cli("evaluate", "--db", db_path)
    assert report.returncode == 0, report.stderr
    gold = (
        sqlite3.connect(db_path)
        .execute("select count(*) from articles where citation_status = 'MEDLINE' and pmid % 5 = 0")
        .fetchone()[0]
    )
    assert f"report split: PMID % 5 == 0, citation status MEDLINE: {gold} records" in report.stdout
    assert "baseline: TF-IDF + logistic regression" in report.stdout


def test_the_next_scheduled_run_retags_what_older_rules_tagged(records_server, tmp_path):
    from harvest.tags import RULES_VERSION

    db_path = tmp_path / "c.db"
    env = harvest_env(records_server.url)
    assert run_cli("run", "--db", db_path, env=env).returncode == 0
    with sqlite3.connect(db_path) as conn:
        before = conn.execute("select pmid, facet, value, method from article_tags order by 1, 2, 3").fetchall()
        # As a catalog tagged by an older release looks after the upgrade: old versions,
        # a tag the old rules made that the new ones do not.
        other = conn.execute("select min(pmid) from articles where pmid != 38011560").fetchone()[0]
        conn.execute("update articles set tags_version = 'rules-v0' where pmid in (38011560, ?)", [other])
        conn.execute("delete from article_tags where pmid = 38011560")
        conn.execute("insert into article_tags values (?, 'theme', 'cost_access', 'rule:old', 'x', 1.0)", [other])
    result = run_cli("run", "--db", db_path, env=env)  # an incremental run: nothing new upstream
    assert result.returncode == 0, result.stderr
    assert "re-tagged 2 records tagged by older rules" in result.stderr
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("select pmid, facet, value, method from article_tags order by 1, 2, 3").fetchall() == before
        assert {v for (v,) in conn.execute("select distinct tags_version from articles")} == {RULES_VERSION}
