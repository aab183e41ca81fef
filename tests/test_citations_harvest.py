"""`python -m harvest run --sources pubmed,citations` against the E-utilities and OpenAlex stand-ins.

PubMed serves real records: records/, 31978945 (records-illumination-k) and the 106 records of
records-filiperigueiro-ArticleSearch. One of the recorded OpenAlex works carries 31978945 for
real; every third other record gets a clone of a recorded work carrying
its PMID (the recorded works are not about ketamine: they stand for what OpenAlex knows of the
topic's records). The rest OpenAlex does not know.
"""

from __future__ import annotations

import datetime as dt
import math

import pytest
import sqlite_utils

from harvest import store
from tests.conftest import PUBMED, RECORDS, harvest_env, run_cli
from tests.eutils_stand_in import Corpus, EutilsStandIn
from tests.openalex_stand_in import OpenalexStandIn, WorkStore, clone_for, pmid_of, recorded_works

PAPERS = [
    RECORDS,
    PUBMED / "records-illumination-k" / "31978945.xml",
    PUBMED / "records-filiperigueiro-ArticleSearch" / "pubmed_result.xml",
]
REAL_MATCHES = {31978945}  # a recorded work that carries a PMID these records have
TODAY = "2026-03-02"

pytestmark = pytest.mark.dated  # the schedule is reasoned about from HARVEST_TODAY


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    return Corpus.from_paths(PAPERS)


@pytest.fixture
def servers(corpus):
    works = WorkStore.recorded()
    pmids = sorted(corpus.pmids())
    clone_for(works, [p for p in pmids[::3] if p not in REAL_MATCHES])
    with EutilsStandIn(corpus.copy()) as eutils, OpenalexStandIn(works) as openalex:
        yield eutils, openalex


def env_for(eutils, openalex, today=TODAY, **extra):
    return harvest_env(eutils.url, openalex_url=openalex.url, HARVEST_TODAY=today, **extra)


def rows(db_path, sql, params=()):
    return [dict(r) for r in sqlite_utils.Database(db_path).query(sql, params)]


def snapshot(db_path) -> dict:
    db = sqlite_utils.Database(db_path)
    return {
        "citations": [dict(r) for r in db.query("select * from citations order by pmid")],
        "by_year": [dict(r) for r in db.query("select * from citations_by_year order by pmid, year")],
        "articles": [dict(r) for r in db.query("select pmid, cited_by_count from articles order by pmid")],
    }


def known(openalex) -> dict[int, list[dict]]:
    out: dict[int, list[dict]] = {}
    for work in openalex.store.works:
        pmid = pmid_of(work)
        if pmid is not None:
            out.setdefault(pmid, []).append(work)
    return out


def test_a_run_reads_every_record_in_batches_of_fifty_and_stores_what_openalex_knows(servers, tmp_path):
    eutils, openalex = servers
    db_path = tmp_path / "c.db"
    result = run_cli("run", "--db", db_path, env=env_for(eutils, openalex))
    assert result.returncode == 0, result.stderr
    pubmed_line, citations_line = result.stdout.strip().splitlines()
    stored = {r["pmid"] for r in rows(db_path, "select pmid from articles")}
    works = known(openalex)
    found = stored & set(works)
    assert REAL_MATCHES <= found
    batches = math.ceil(len(stored) / 50)
    assert citations_line == (
        f"citations run 2 (scheduled): {len(stored)} records due ({len(stored)} never read, 0 read a week ago or "
        f"more, 0 newest): {len(found)} new, 0 updated, 0 unchanged, {len(stored) - len(found)} unknown to "
        f"OpenAlex; {batches} requests to OpenAlex"
    )
    assert len(openalex.requests) == batches  # one request per 50 PMIDs: no page beyond the first

    citations = {r["pmid"]: r for r in rows(db_path, "select * from citations")}
    assert set(citations) == stored  # every record read once, known or not
    assert {p for p, r in citations.items() if r["found"]} == found
    for pmid in found:
        (work,) = works[pmid]
        row = citations[pmid]
        assert (row["openalex_id"], row["cited_by_count"]) == (work["id"].rsplit("/", 1)[1], work["cited_by_count"])
        assert row["read_at"].startswith(TODAY) and row["read_run"] == 2
        years = rows(db_path, "select year, count from citations_by_year where pmid = ? order by year", [pmid])
        assert years == sorted(
            ({"year": e["year"], "count": e["cited_by_count"]} for e in work["counts_by_year"]),
            key=lambda y: y["year"],
        )
    # The lists' sort column equals the count; records OpenAlex does not know have none.
    assert {r["pmid"]: r["cited_by_count"] for r in rows(db_path, "select pmid, cited_by_count from articles")} == {
        p: citations[p]["cited_by_count"] for p in stored
    }
    # The real recorded work of 31978945 (read from ../shared/data/openalex), not a clone.
    (real,) = [w for w in recorded_works() if pmid_of(w) == 31978945]
    assert (citations[31978945]["openalex_id"], citations[31978945]["cited_by_count"]) == (
        real["id"].rsplit("/", 1)[1],
        real["cited_by_count"],
    )
    assert real["cited_by_count"] > 0
    assert rows(db_path, "select stale from summary_state") == [{"stale": 0}]
    runs = rows(db_path, "select source, status, requests, records_promised from harvest_runs order by id")
    assert runs[1] == {"source": "citations", "status": "success", "requests": batches, "records_promised": len(stored)}


def test_a_rerun_the_same_day_asks_nothing_and_changes_nothing(servers, tmp_path):
    eutils, openalex = servers
    db_path = tmp_path / "c.db"
    env = env_for(eutils, openalex)
    assert run_cli("run", "--db", db_path, env=env).returncode == 0
    before, asked = snapshot(db_path), len(openalex.requests)
    result = run_cli("run", "--db", db_path, env=env)
    assert result.returncode == 0, result.stderr
    assert "citations run 4 (scheduled): 0 records due" in result.stdout and "; 0 requests to OpenAlex" in result.stdout
    assert len(openalex.requests) == asked and snapshot(db_path) == before


def test_a_week_later_every_count_is_read_again_and_a_change_is_stored(servers, tmp_path):
    eutils, openalex = servers
    db_path = tmp_path / "c.db"
    assert run_cli("run", "--db", db_path, env=env_for(eutils, openalex)).returncode == 0
    stored = len(rows(db_path, "select pmid from articles"))

    def cited_once_more(work):
        work["cited_by_count"] += 1
        work["counts_by_year"][0]["cited_by_count"] += 1

    openalex.store.revise("W3001897055", cited_once_more)  # the real work of PMID 31978945
    asked = len(openalex.requests)
    later = (dt.date.fromisoformat(TODAY) + dt.timedelta(days=7)).isoformat()
    result = run_cli("run", "--db", db_path, "--sources", "citations", env=env_for(eutils, openalex, later))
    assert result.returncode == 0, result.stderr
    assert f"{stored} records due (0 never read, {stored} read a week ago or more, 0 newest)" in result.stdout
    assert " 0 new, 1 updated, " in result.stdout
    assert len(openalex.requests) - asked == math.ceil(stored / 50)
    (row,) = rows(db_path, "select * from citations where pmid = 31978945")
    assert row["cited_by_count"] == 29211 and row["read_at"].startswith(later)
    assert rows(db_path, "select cited_by_count from articles where pmid = 31978945") == [{"cited_by_count": 29211}]


def test_the_newest_records_are_due_daily_the_rest_weekly(servers, tmp_path):
    eutils, openalex = servers
    db_path = tmp_path / "c.db"
    assert run_cli("run", "--db", db_path, env=env_for(eutils, openalex)).returncode == 0
    db = store.open_db(db_path)
    entered = {r["pmid"]: r["d"] for r in db.query("select pmid, coalesce(entrez_date, pub_date) as d from articles")}
    read_on = dt.date.fromisoformat(TODAY)
    # Pretend the newest records entered PubMed within 90 days of the read: due the next day.
    newest = max(entered.values())
    day = dt.date.fromisoformat(newest) + dt.timedelta(days=30)
    with db.atomic():
        db.execute("update citations set read_at = ?", [(day - dt.timedelta(days=1)).isoformat() + "T02:00:00+00:00"])
    due = store.citations_due(db, day)
    expected = {
        p for p, d in entered.items() if d >= (day - dt.timedelta(days=store.CITATIONS_NEWEST_DAYS)).isoformat()
    }
    assert expected and set(due.newest) == expected and not due.stale and not due.never_read
    assert store.citations_due(db, day - dt.timedelta(days=1)).pmids == []  # read that day: nothing due
    assert len(store.citations_due(db, day + dt.timedelta(days=6)).stale) == len(entered)
    assert store.citations_due(db, read_on, full=True).pmids == sorted(entered)


def test_openalex_failing_fails_the_run_naming_it_and_keeps_what_every_source_stored(servers, tmp_path):
    eutils, openalex = servers
    db_path = tmp_path / "c.db"
    openalex.faults.add("503", times=None, path="/works", after=2)  # the third batch never comes
    env = env_for(eutils, openalex, OPENALEX_MAX_TRIES="2")
    result = run_cli("run", "--db", db_path, env=env)
    assert result.returncode == 1
    (line,) = result.error_lines
    assert line.startswith("harvest: error: citations run 2 failed: asking OpenAlex for the works of 50 PMIDs")
    assert "after 100 records (those are kept)" in line and "gave up after 2 tries" in line
    stored = len(rows(db_path, "select pmid from articles"))
    assert rows(db_path, "select source, status from harvest_runs order by id") == [
        {"source": "pubmed", "status": "success"},
        {"source": "citations", "status": "failed"},
    ]
    assert rows(db_path, "select count(*) as n from citations") == [{"n": 100}]
    status = run_cli("status", "--db", db_path, "--max-age", "citations=1d", env=env)
    assert status.returncode == 4 and "no successful citations harvest yet" in status.stderr

    openalex.faults.faults.clear()
    result = run_cli("run", "--db", db_path, "--sources", "citations", env=env)
    assert result.returncode == 0, result.stderr
    assert f"{stored - 100} records due ({stored - 100} never read" in result.stdout
    assert rows(db_path, "select count(*) as n from citations") == [{"n": stored}]
