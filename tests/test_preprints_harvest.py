"""`python -m harvest run` with Europe PMC's preprints: PubMed, then the preprints, as a user runs it.

The PubMed side serves three real records. Europe PMC's stand-in serves its recorded answers
(24 real preprints among 1,000 records) plus clones of real preprints made in code: one whose
title is a stored record's title with a word replaced and whose first author and year fit it
(linked by title + first author + year), one carrying a stored record's DOI (linked by DOI), and
one by the same first author with another real record's title (a near miss: never linked).
A real core MED record cloned under a stored PMID names a real preprint "Preprint in" (Europe
PMC's own link; no recording holds one)."""

from __future__ import annotations

import datetime as dt
import re

import pytest
import sqlite_utils

from harvest.query import PREPRINTS_QUERY_VERSION
from harvest.runner import choose_preprints_mode
from tests.conftest import RECORDS, harvest_env, run_cli
from tests.ctgov_stand_in import CtgovStandIn, StudyStore
from tests.europepmc_stand_in import EuropepmcStandIn, World
from tests.eutils_stand_in import Corpus, EutilsStandIn

PAPERS = [RECORDS / "38011560.xml", RECORDS / "35123456.xml", RECORDS / "32051057.xml"]
KRYSTAL_TITLE = (
    "Ketamine and the neurobiology of depression: Toward next-generation rapid-acting antidepressant treatments."
)
# 38011560's byline, as Europe PMC writes one.
KRYSTAL_AUTHORS = "Krystal JH, Kaye AP, Jefferson S, Girgenti MJ, Wilkinson ST, Sanacora G, Esterlis I."
TODAY = "2025-06-20"  # two days after the recorded preprints were first indexed

pytestmark = pytest.mark.dated  # the incremental window is reasoned about from HARVEST_TODAY


def linked_world() -> World:
    world = World()
    # 38011560 (Krystal JH, 2023) posted a year before as a preprint whose title differs by a word.
    world.clone(
        "PPR1037166",
        "PPR9100001",
        title=KRYSTAL_TITLE.replace("Toward", "Towards").replace("treatments", "drugs"),
        authorString=KRYSTAL_AUTHORS,
        pubYear="2022",
        doi="10.21203/rs.3.rs-9100001/v1",
    )
    # A preprint carrying the DOI of 35123456 (Sions JM, 2022), its title left as recorded.
    world.clone("PPR1036674", "PPR9100002", doi="10.1186/s12891-022-05070-w")
    # A near miss: the byline and year of 38011560, another real record's title.
    world.clone(
        "PPR1037166",
        "PPR9100003",
        title="The biology of ergothioneine, an antioxidant nutraceutical.",
        authorString=KRYSTAL_AUTHORS,
        pubYear="2023",
    )
    # Europe PMC's own link: 32051057's core record names the real preprint PPR1036674.
    world.add_published("39709209", 32051057, ["PPR1036674"])
    return world


@pytest.fixture
def servers():
    with EutilsStandIn(Corpus.from_paths(PAPERS)) as eutils, EuropepmcStandIn(linked_world()) as epmc:
        yield eutils, epmc


def env_for(eutils, epmc, **extra):
    return harvest_env(eutils.url, europepmc_url=epmc.url, HARVEST_TODAY=TODAY, **extra)


def rows(db_path, sql, params=()):
    return [dict(r) for r in sqlite_utils.Database(db_path).query(sql, params)]


def snapshot(db_path) -> dict:
    """What a reader sees of the preprints (run bookkeeping left out)."""
    db = sqlite_utils.Database(db_path)
    return {
        "preprints": [
            dict(r)
            for r in db.query(
                "select ppr_id, title, server, version, doi, raw_sha1, in_topic, published_pmid, link_method, "
                "link_score, first_seen_run, last_changed_run from preprints order by ppr_id"
            )
        ],
        "links": [dict(r) for r in db.query("select ppr_id, pmid, method, score from preprint_links order by 1, 2")],
        "tags": [dict(r) for r in db.query("select * from preprint_tags order by 1, 2, 3")],
        "fts": [dict(r) for r in db.query("select rowid, * from preprints_fts order by rowid")],
    }


def test_a_run_stores_every_preprint_once_and_links_each_published_version(servers, tmp_path):
    eutils, epmc = servers
    db_path = tmp_path / "c.db"
    result = run_cli("run", "--db", db_path, env=env_for(eutils, epmc))
    assert result.returncode == 0, result.stderr
    pubmed_line, preprints_line = result.stdout.strip().splitlines()
    assert pubmed_line.startswith("run 1 (full (new catalog)): 3 records promised")
    assert preprints_line.startswith(
        "preprints run 2 (full (new catalog)): 27 preprints listed by the topic search: 27 new, 0 updated"
    )
    assert "linked to their published record: 1 by doi, 1 by europepmc, 1 by title_author_year" in preprints_line

    stored = [r["ppr_id"] for r in rows(db_path, "select ppr_id from preprints")]
    assert len(stored) == len(set(stored)) == 27
    assert set(stored) == {r["id"] for r in epmc.world.preprints()}
    linked = {
        r["ppr_id"]: (r["published_pmid"], r["link_method"])
        for r in rows(db_path, "select * from preprints where published_pmid is not null")
    }
    assert linked == {
        "PPR9100001": (38011560, "title_author_year"),
        "PPR9100002": (35123456, "doi"),
        "PPR1036674": (32051057, "europepmc"),
    }
    (title_link,) = rows(db_path, "select score, detail from preprint_links where ppr_id = 'PPR9100001'")
    assert 0.75 <= title_link["score"] < 1 and "first author Krystal" in title_link["detail"]
    # The preprint's own tags, from the same tagger as the papers'.
    assert {"unspecified_ketamine", "narrative_review"} <= {
        r["value"] for r in rows(db_path, "select value from preprint_tags where ppr_id = 'PPR9100001'")
    }
    # Records and works: three papers and 27 preprints, three of them versions of the papers.
    (counts,) = rows(
        db_path,
        "select count(*) as records, sum(counts_as_work) as works, sum(kind = 'preprint') as preprints "
        "from catalog_records",
    )
    assert counts == {"records": 30, "works": 27, "preprints": 27}
    # One search over the preprints' own index.
    assert rows(db_path, "select rowid from preprints_fts where preprints_fts match 'neurobiology'")
    runs = rows(db_path, "select source, status, requests from harvest_runs order by id")
    assert [(r["source"], r["status"]) for r in runs] == [("pubmed", "success"), ("preprints", "success")]
    # The topic page and Europe PMC's look-up of the three PMIDs' core records.
    assert runs[1]["requests"] == 3 and len(epmc.searches("SRC:MED")) == 1


def test_a_near_miss_by_the_same_author_in_the_same_year_is_never_linked(servers, tmp_path):
    eutils, epmc = servers
    db_path = tmp_path / "c.db"
    assert run_cli("run", "--db", db_path, env=env_for(eutils, epmc)).returncode == 0
    assert rows(db_path, "select published_pmid from preprints where ppr_id = 'PPR9100003'") == [
        {"published_pmid": None}
    ]
    assert rows(db_path, "select * from preprint_links where ppr_id = 'PPR9100003'") == []


def test_a_rerun_changes_nothing_and_costs_one_request(servers, tmp_path):
    eutils, epmc = servers
    db_path = tmp_path / "c.db"
    env = env_for(eutils, epmc)
    assert run_cli("run", "--db", db_path, env=env).returncode == 0
    before = snapshot(db_path)
    asked = len(epmc.requests)
    result = run_cli("run", "--db", db_path, env=env)
    assert result.returncode == 0, result.stderr
    assert "preprints run 4 (incremental)" in result.stdout
    assert snapshot(db_path) == before
    assert len(epmc.requests) - asked == 1  # the window's one page; no PubMed record changed
    (last,) = rows(db_path, "select * from harvest_runs where id = 4")
    assert (last["new"], last["updated"], last["status"]) == (0, 0, "success")
    assert last["window_from"] == "2025-06-17"  # the last success's day minus the 3-day overlap
    assert "FIRST_IDATE:[2025-06-17 TO 2025-06-20]" in epmc.searches()[-1]["query"]


def test_a_revised_preprint_is_rewritten_in_place(servers, tmp_path):
    eutils, epmc = servers
    db_path = tmp_path / "c.db"
    env = env_for(eutils, epmc)
    assert run_cli("run", "--db", db_path, env=env).returncode == 0
    epmc.world.revise("PPR1037166", lambda r: r.update(versionNumber=2))
    result = run_cli("run", "--db", db_path, env=env)
    assert result.returncode == 0, result.stderr
    assert rows(db_path, "select version, last_changed_run from preprints where ppr_id = 'PPR1037166'") == [
        {"version": 2, "last_changed_run": 4}
    ]
    assert rows(db_path, "select count(*) as n from preprints")[0]["n"] == 27


def test_one_failing_source_fails_the_run_naming_it_and_keeps_the_others_rows(tmp_path):
    studies = StudyStore.recorded()
    with (
        EutilsStandIn(Corpus.from_paths(PAPERS)) as eutils,
        CtgovStandIn(studies) as registry,
        EuropepmcStandIn(linked_world()) as epmc,
    ):
        epmc.faults.add("503", times=None, path="/search", after=3)
        env = harvest_env(
            eutils.url,
            ctgov_url=registry.url,
            europepmc_url=epmc.url,
            HARVEST_TODAY=TODAY,
            EUROPEPMC_MAX_TRIES="2",
            EUROPEPMC_PAGE_SIZE="100",
        )
        db_path = tmp_path / "c.db"
        result = run_cli("run", "--db", db_path, "--sources", "pubmed,trials,preprints", env=env)
        assert result.returncode == 1
        assert result.error_lines == [
            "harvest: error: preprints run 3 failed: the preprints search of Europe PMC failed after 6 preprints "
            "(those are kept): preprints search, page 4: gave up after 2 tries; last problem: HTTP 503"
        ]
        assert rows(db_path, "select count(*) as n from articles")[0]["n"] == 3
        assert rows(db_path, "select count(*) as n from trials")[0]["n"] == 6
        assert rows(db_path, "select count(*) as n from preprints")[0]["n"] == 6  # the pages it had
        assert [(r["source"], r["status"]) for r in rows(db_path, "select * from harvest_runs order by id")] == [
            ("pubmed", "success"),
            ("trials", "success"),
            ("preprints", "failed"),
        ]
        status = run_cli("status", "--db", db_path, "--max-age", "preprints=2d", env=env)
        assert status.returncode == 4
        assert "last success, preprints: none yet" in status.stdout
        assert "next preprints run: full (new catalog)" in status.stdout
        # The fault passes: the next run sweeps in full and stores every preprint once.
        epmc.faults.faults.clear()
        again = run_cli("run", "--db", db_path, "--sources", "preprints", env=env)
        assert again.returncode == 0, again.stderr
        assert rows(db_path, "select count(*) as n from preprints")[0]["n"] == 27


def test_an_empty_topic_is_a_success_with_nothing_stored(tmp_path):
    with EutilsStandIn(Corpus.from_paths(PAPERS)) as eutils, EuropepmcStandIn(World(empty=True)) as epmc:
        db_path = tmp_path / "c.db"
        result = run_cli("run", "--db", db_path, env=env_for(eutils, epmc))
        assert result.returncode == 0, result.stderr
        assert "0 preprints listed by the topic search" in result.stdout
        assert rows(db_path, "select status from harvest_runs where source = 'preprints'") == [{"status": "success"}]


def test_a_preprints_run_is_incremental_after_a_success_with_the_overlap():
    assert choose_preprints_mode(None, full=False, overlap_days=3) == ("full (new catalog)", None)
    last = {"query_version": PREPRINTS_QUERY_VERSION, "watermark": "2025-06-20"}
    assert choose_preprints_mode(last, full=False, overlap_days=3) == ("incremental", dt.date(2025, 6, 17))
    assert choose_preprints_mode({**last, "query_version": "0"}, full=False, overlap_days=3)[0].startswith(
        "full (query changed"
    )


def test_the_pages_say_published_as_and_preprint(servers, tmp_path):
    from tests.test_catalog import Client, copy_config

    eutils, epmc = servers
    site = copy_config(tmp_path / "site")
    assert run_cli("run", "--db", site / "catalog.db", env=env_for(eutils, epmc)).returncode == 0
    client = Client(site)
    page = client.get("/catalog/preprints/PPR9100001")
    assert page.status_code == 200
    assert "Preprint (not peer reviewed) · Research Square · version 1" in page.text
    assert 'Published as PMID <a href="/catalog/articles/38011560">38011560</a></strong> in ' in page.text
    assert "the title, first author and year match, score 0." in page.text
    article = client.get("/catalog/articles/32051057")
    assert article.status_code == 200
    assert 'preprint: <a href="/catalog/preprints/PPR1036674">PPR1036674</a> on medRxiv' in article.text
    assert "Europe PMC links them" in article.text
    assert "No published version in the catalog" in client.get("/catalog/preprints/PPR9100003").text
    facets = client.json("/catalog/catalog_records.json?_facet=kind")
    counts = {v["value"]: v["count"] for v in facets["facet_results"]["kind"]["results"]}
    assert counts == {"preprint": 27, "peer-reviewed": 3}
    listing = client.json("/catalog/preprints.json?_facet=server&_facet=has_published_version")
    assert {v["value"]: v["count"] for v in listing["facet_results"]["has_published_version"]["results"]} == {
        0: 24,
        1: 3,
    }


def test_a_preprints_candidates_are_found_by_the_first_author_index_not_a_scan(tmp_path):
    """Linking by title asks, per preprint, for the records by its first author's surname: on the
    index of migration 0018 (a scan of every record took 1.7 s a preprint at a million articles),
    and still in any case, as LIKE compares."""
    from harvest import store

    db = store.open_db(tmp_path / "catalog.db")
    plan = " | ".join(
        r[3] for r in db.execute("explain query plan " + store.PREPRINT_CANDIDATES_SQL, ["Krystal %", 2022, 2026])
    )
    assert "USING INDEX idx_articles_first_author_nocase_pub_year (first_author>? AND first_author<?)" in plan, plan
    assert not re.search(r"SCAN a\b", plan), plan
    db["articles"].insert_all(
        [
            {"pmid": 1, "first_author": "Krystal JH", "pub_year": 2023, "is_deleted": 0},
            {"pmid": 2, "first_author": "KRYSTAL J", "pub_year": 2024, "is_deleted": 0},
            {"pmid": 3, "first_author": "Krystalle A", "pub_year": 2023, "is_deleted": 0},
            {"pmid": 4, "first_author": "Krystal JH", "pub_year": 2019, "is_deleted": 0},
            {"pmid": 5, "first_author": "Krystal JH", "pub_year": 2023, "is_deleted": 1},
        ]
    )
    found = {r[0] for r in db.execute(store.PREPRINT_CANDIDATES_SQL, ["krystal %", 2022, 2026])}
    assert found == {1, 2}
