"""Complete past the 9,999 cap, and kept current by incremental runs that never skip a record."""

from __future__ import annotations

import datetime as dt
import re
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
import sqlite_utils

from harvest import clock
from tests.conftest import ROOT, harvest_env, run_cli
from tests.eutils_stand_in import EutilsStandIn

# The harvester and the stand-in read the same clock, pinned for the session so that a run that
# crosses midnight cannot split them. The tests that reason about "today" (records added today,
# the incremental window and watermark a run takes from its day) are `dated`: `make test` runs
# them again 400 days ahead (faketime). The others work on records of fixed, past dates (the
# large files end in June 2021, the crafted day is 2025-03-03), whose outcome no later day can
# change; their windows' ends are tested for any day in test_windows.py.
TODAY = clock.today()
# An API key lifts both the client's and the stand-in's limit to 10 requests/s: the big runs go
# faster. HARVEST_TODAY gives the harvester the very date the stand-in was given.
FAST = {"NCBI_API_KEY": "test-key-for-the-stand-in", clock.ENV: TODAY.isoformat()}


def stored(db_path) -> set[int]:
    with sqlite3.connect(db_path) as conn:
        return {r[0] for r in conn.execute("select pmid from articles")}


def last_run(db_path) -> dict:
    return next(sqlite_utils.Database(db_path).query("select * from harvest_runs order by id desc limit 1"))


def slice_terms(server) -> list[str]:
    return [e.params["term"] for e in server.requests_log if e.endpoint == "esearch"]


@pytest.fixture(scope="session")
def large_catalog(large_corpus, tmp_path_factory):
    """The two large shared files (33,000 records, 32,998 PMIDs) harvested once for the session."""
    db_path = tmp_path_factory.mktemp("large") / "catalog.db"
    with EutilsStandIn(large_corpus.copy(), today=TODAY) as server:
        result = run_cli("run", "--db", db_path, env=harvest_env(server.url, **FAST))
        log = list(server.requests_log)
    assert result.returncode == 0, result.stderr
    return db_path, result, log


def copy_catalog(db_path, tmp_path):
    target = tmp_path / "catalog.db"
    source = sqlite3.connect(db_path)
    with sqlite3.connect(target) as dest:
        source.backup(dest)
    source.close()
    return target


def test_full_harvest_past_the_cap_stores_each_pmid_once(large_catalog, large_corpus):
    db_path, result, log = large_catalog
    assert len(large_corpus) == 32998  # 30271887 comes in versions 1, 2 and 3
    assert stored(db_path) == set(large_corpus.pmids())
    db = sqlite_utils.Database(db_path)
    assert db.execute("select count(*) from articles").fetchone()[0] == 32998
    assert db.table("articles").get(30271887)["pmid_version"] == 3
    run = last_run(db_path)
    assert (run["status"], run["records_promised"], run["new"]) == ("success", 32998, 32998)
    assert run["count_discrepancy"] is None
    searches = [e for e in log if e.endpoint == "esearch"]
    # Sliced by create date: every slice's list was under the cap, none hit the cap error.
    assert all("[crdt]" in e.params["term"] for e in searches)
    assert not any(e.fault for e in log)
    assert all(int(e.params.get("retstart", 0)) <= 9998 for e in log)


def test_no_change_incremental_run_makes_at_most_three_requests(large_catalog, large_corpus, tmp_path):
    db_path = copy_catalog(large_catalog[0], tmp_path)
    before = sqlite3.connect(db_path).execute("select count(*), max(last_changed_run) from articles").fetchone()
    with EutilsStandIn(large_corpus.copy(), today=TODAY) as server:
        result = run_cli("run", "--db", db_path, env=harvest_env(server.url, **FAST))
        assert result.returncode == 0, result.stderr
        assert server.count() <= 3
    run = last_run(db_path)
    assert run["mode"] == "incremental" and run["records_promised"] == 0
    assert sqlite3.connect(db_path).execute("select count(*), max(last_changed_run) from articles").fetchone() == before


def test_revision_day_over_the_cap_is_split_by_create_date(large_catalog, large_corpus, tmp_path):
    """11,461 records share DateRevised 2021-06-07 (a mass re-indexing): one [mdat] day over the cap."""
    db_path = copy_catalog(large_catalog[0], tmp_path)
    with EutilsStandIn(large_corpus.copy(), today=TODAY) as server:
        result = run_cli("run", "--db", db_path, "--since", "2021-06-07", env=harvest_env(server.url, **FAST))
        assert result.returncode == 0, result.stderr
        terms = slice_terms(server)
    day_terms = [t for t in terms if '"2021/06/07"[mdat] : "2021/06/07"[mdat]' in t]
    assert any("[crdt]" in t for t in day_terms)  # crossed with create-date ranges
    run = last_run(db_path)
    revised_that_day = sum(1 for p in large_corpus.pmids() if large_corpus[p].mdat >= 20210607)
    assert run["records_promised"] == revised_that_day >= 11461
    assert run["unchanged"] == revised_that_day and run["new"] == 0


def test_one_create_day_over_the_cap_is_split_by_publication_date(records_corpus, tmp_path):
    corpus = records_corpus.copy()
    sources = corpus.pmids()
    day = dt.date(2025, 3, 3)
    for i in range(10050):  # clones of real records, all created on one day
        corpus.add_clone(50_000_000 + i, sources[i % len(sources)], crdt=day)
    db_path = tmp_path / "catalog.db"
    with EutilsStandIn(corpus, today=TODAY) as server:
        result = run_cli("run", "--db", db_path, env=harvest_env(server.url, **FAST))
        assert result.returncode == 0, result.stderr
        terms = slice_terms(server)
    assert any('"2025/03/03"[crdt] : "2025/03/03"[crdt]' in t and "[dp]" in t for t in terms)
    assert stored(db_path) == set(corpus.pmids())
    assert len(stored(db_path)) == 215 + 10050


@pytest.mark.dated
def test_incremental_run_fetches_only_added_and_revised_records(records_corpus, tmp_path):
    db_path = tmp_path / "catalog.db"
    with EutilsStandIn(records_corpus.copy(), today=TODAY) as server:
        env = harvest_env(server.url, **FAST)
        assert run_cli("run", "--db", db_path, env=env).returncode == 0
        server.clear_log()
        # PubMed adds a record today and revises another's abstract.
        added = server.add_clone(60_000_001, 38011560, crdt=TODAY).pmid
        revised = 33984391 if 33984391 in server.corpus else 23435529
        server.revise(
            revised,
            mdat=TODAY,
            change=lambda raw: re.sub(
                rb"<AbstractText([^>]*)>", rb"<AbstractText\1>Zanthoxylum revisited. ", raw, count=1
            ),
        )
        result = run_cli("run", "--db", db_path, env=env)
        assert result.returncode == 0, result.stderr
        fetched = [e for e in server.requests_log if e.endpoint == "efetch"]
    run = last_run(db_path)
    assert run["mode"] == "incremental"
    assert run["window_from"] == (TODAY - dt.timedelta(days=3)).isoformat()
    assert (run["records_promised"], run["new"], run["updated"], run["unchanged"]) == (2, 1, 1, 0)
    assert len(fetched) <= 2
    db = sqlite_utils.Database(db_path)
    assert added in stored(db_path)
    hits = [
        r[0]
        for r in db.execute(
            "select a.pmid from articles_fts f join articles a on a.rowid = f.rowid where articles_fts match 'zanthoxylum'"
        )
    ]
    assert hits == [revised]
    events = {r["event"] for r in db.query("select event from article_events where pmid = ?", [revised])}
    assert "abstract_changed" in events


@pytest.mark.dated
def test_records_growing_between_search_and_fetch_are_caught(records_corpus, tmp_path):
    db_path = tmp_path / "catalog.db"
    with EutilsStandIn(records_corpus.copy(), today=TODAY) as server:
        env = harvest_env(server.url, **FAST)
        server.grow_after_esearch(5, crdt=TODAY)  # PubMed indexes five more mid-run
        first = run_cli("run", "--db", db_path, env=env)
        assert first.returncode == 0, first.stderr
        grown = set(server.grown)
        assert len(grown) == 5 and not grown & stored(db_path)  # the run kept its promise as listed
        second = run_cli("run", "--db", db_path, env=env)
        assert second.returncode == 0, second.stderr
    assert grown <= stored(db_path)  # the overlap window of the next run picks them up
    assert last_run(db_path)["new"] == 5


@pytest.mark.dated
def test_killed_run_is_finished_by_the_next_without_refetching(records_corpus, tmp_path):
    db_path = tmp_path / "catalog.db"
    with EutilsStandIn(records_corpus.copy(), today=TODAY) as server:
        env = harvest_env(server.url, **FAST)
        proc = subprocess.Popen(
            [sys.executable, "-m", "harvest", "run", "--db", str(db_path), "--batch-size", "5"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        count = 0
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
            try:
                count = sqlite3.connect(db_path, timeout=1).execute("select count(*) from articles").fetchone()[0]
            except sqlite3.Error:
                continue
            if count >= 60:
                proc.send_signal(signal.SIGKILL)
                break
        proc.wait()
        assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
        kept = stored(db_path)
        assert 60 <= len(kept) < 215
        result = run_cli("run", "--db", db_path, "--batch-size", "5", env=env)
        assert result.returncode == 0, result.stderr
    runs = list(sqlite_utils.Database(db_path).query("select * from harvest_runs order by id"))
    assert [r["status"] for r in runs] == ["aborted", "success"]
    resumed = runs[-1]
    assert resumed["mode"] == "full (new catalog)"
    assert stored(db_path) == set(server.corpus.pmids())
    # What the killed run stored in full was not fetched again.
    assert resumed["unchanged"] == 0
    assert resumed["new"] == 215 - len(kept)
    assert resumed["watermark"] == runs[0]["started_at"][:10]


def test_new_query_version_triggers_a_full_sweep_and_marks_unmatched(records_corpus, tmp_path):
    db_path = tmp_path / "catalog.db"
    with EutilsStandIn(records_corpus.copy(), today=TODAY) as server:
        env = harvest_env(server.url, **FAST)
        assert run_cli("run", "--db", db_path, env=env).returncode == 0
        # The catalog was built by an earlier query; PubMed no longer returns one record.
        db = sqlite_utils.Database(db_path)
        db.execute("update harvest_runs set query_version = '0'")
        db.conn.commit()
        server.remove(38011560)
        result = run_cli("run", "--db", db_path, env=env)
        assert result.returncode == 0, result.stderr
    run = last_run(db_path)
    assert run["mode"].startswith("full (query changed 0 -> ")
    assert (run["records_promised"], run["unchanged"], run["unmatched"]) == (214, 214, 1)
    row = sqlite_utils.Database(db_path).table("articles").get(38011560)
    assert (row["matches_query"], row["unmatched_run"], row["is_deleted"]) == (0, run["id"], 0)
    status = run_cli("status", "--db", db_path, env=env)
    assert "1 no longer matching" in status.stdout
