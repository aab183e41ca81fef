"""The SQL cookbook (db/queries.sql), its views (migration 0004) and its canned queries.

Every query runs against a catalog of real records (tests/catalog_fixtures.py), and its rows
are checked against the same answer worked out independently: in Python, from the base
tables, never through the views or the query under test.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sqlite3
from collections import Counter, defaultdict
from pathlib import Path
from urllib.parse import urlencode

import pytest
import yaml

from harvest.query import TOPIC_QUERY
from tests.catalog_fixtures import LIVING_RCT, connect_ro, evidence_catalog, living_catalog  # noqa: F401
from tests.conftest import RECORDS, ROOT, run_cli

QUERIES_SQL = ROOT / "db" / "queries.sql"
RCT = ("rct", "crossover_rct")
PRIMARY = RCT + ("open_label_trial", "observational_cohort", "case_control", "case_report_series")
VIEWS = ("article_overview", "article_mesh_named", "article_mesh_names", "article_authors_named", "harvest_health")


def load_plugin():
    spec = importlib.util.spec_from_file_location("catalog_cookbook_plugin", ROOT / "db" / "plugins" / "cookbook.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


cookbook = load_plugin()
QUERIES = cookbook.load_cookbook(QUERIES_SQL)
CASES = [(name, example) for name, q in QUERIES.items() for example in q["examples"]]


def run(conn, name: str, **params) -> list[dict]:
    query = QUERIES[name]
    args = {p: str(params.get(p, "")) for p in query["params"]}  # Datasette sends "" for an empty field
    return [dict(r) for r in conn.execute(query["sql"], args).fetchall()]


# -- the base tables, read once per catalog ---------------------------------------------------


class Base:
    """The catalog's base tables as plain Python, for computing expected answers."""

    def __init__(self, path: Path):
        conn = connect_ro(path)
        self.articles = {r["pmid"]: dict(r) for r in conn.execute("select * from articles")}
        # The questions ask for current records on depression in the psychiatric sense.
        self.current = {
            p
            for p, a in self.articles.items()
            if a["matches_query"] == 1 and a["is_deleted"] == 0 and a["psychiatric"] == 1
        }
        self.tags: defaultdict[int, defaultdict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
        self.tag_rows = [dict(r) for r in conn.execute("select * from article_tags")]
        for t in self.tag_rows:
            self.tags[t["pmid"]][t["facet"]].add(t["value"])
        self.runs = {r["id"]: dict(r) for r in conn.execute("select * from harvest_runs")}
        self.trials = [dict(r) for r in conn.execute("select * from trial_registrations")]
        self.corrections = [dict(r) for r in conn.execute("select * from comments_corrections")]
        self.pub_types: defaultdict[int, set[str]] = defaultdict(set)
        for r in conn.execute(
            "select apt.pmid, pt.name from article_publication_types apt "
            "join publication_types pt on pt.ui = apt.publication_type_ui"
        ):
            self.pub_types[r["pmid"]].add(r["name"])
        self.mesh: defaultdict[int, dict[str, tuple]] = defaultdict(dict)
        for r in conn.execute(
            "select am.pmid, am.descriptor_ui, d.name, am.major from article_mesh am "
            "join mesh_descriptors d on d.descriptor_ui = am.descriptor_ui"
        ):
            self.mesh[r["pmid"]][r["descriptor_ui"]] = (r["name"], r["major"])
        self.authors = {r["id"]: dict(r) for r in conn.execute("select * from authors")}
        self.article_authors = [dict(r) for r in conn.execute("select * from article_authors")]
        self.grants = [dict(r) for r in conn.execute("select * from grants")]
        conn.close()

    def design(self, pmid) -> str:
        return self.articles[pmid]["study_design"] or "other"

    def cutoff(self, since: str):
        """Which records are new, as the cookbook's `since` parameter defines it."""
        since = since.strip()
        if since == "":
            successes = sorted(i for i, r in self.runs.items() if r["status"] == "success")
            after = successes[-2] if len(successes) > 1 else 0
            return lambda a: a["first_seen_run"] > after
        run = since.removeprefix("run:").removeprefix("#")
        if run.isdigit():  # run:12 or #12 (and a bare 12, which only SQL typed by hand may pass)
            return lambda a: a["first_seen_run"] > int(run)
        return lambda a: (self.runs.get(a["first_seen_run"]) or {}).get("started_at", "") >= since


_bases: dict[Path, Base] = {}


def base_of(path: Path) -> Base:
    if path not in _bases:
        _bases[path] = Base(path)
    return _bases[path]


@pytest.fixture(scope="module")
def catalog(evidence_catalog):
    conn = connect_ro(evidence_catalog)
    yield conn
    conn.close()


@pytest.fixture(scope="module")
def base(evidence_catalog) -> Base:
    return base_of(evidence_catalog)


# -- expected answers, one function per query ------------------------------------------------

ESKETAMINE_WORDS = ("esketamin", "spravato", " s-ketamin", "(s)-ketamin", "(s)ketamin", "(s+)-ketamin", "s(+)-ketamin")


def expect_esketamine_trials(b: Base, design=""):
    design = design.strip().lower() or "randomised"
    named = set()
    for p, a in b.articles.items():
        text = " " + " ".join(a[k] or "" for k in ("title", "abstract", "keywords")).lower()
        if any(w in text for w in ESKETAMINE_WORDS) or "esketamine" in b.tags[p]["molecule"]:
            named.add(p)
    keep = [
        p
        for p in named & b.current
        if design == "any" or (design == "randomised" and b.design(p) in RCT) or b.design(p) == design
    ]
    ncts = defaultdict(list)
    for t in b.trials:
        if t["trial_id"].startswith("NCT"):
            ncts[t["pmid"]].append(t["trial_id"])
    return {p: "; ".join(sorted(ncts[p])) or None for p in keep}


def check_esketamine_trials(rows, b, design=""):
    assert {r["pmid"]: r["nct_ids"] for r in rows} == expect_esketamine_trials(b, design)


def check_retractions_explained(rows, b):
    retracted = {p for p, types in b.pub_types.items() if "Retracted Publication" in types}
    notices = defaultdict(set)
    for c in b.corrections:
        if c["ref_type"] == "RetractionIn":
            retracted.add(c["pmid"])
            notices[c["pmid"]].add(c["ref_pmid"])
    assert retracted, "the shared records hold retracted publications"
    got = defaultdict(set)
    for r in rows:
        if r["retraction_notice_pmid"] is not None:
            got[r["pmid"]].add(r["retraction_notice_pmid"])
    assert {r["pmid"] for r in rows} == retracted & set(b.articles)
    assert dict(got) == dict(notices)


def check_top_rct_authors(rows, b, min_trials=""):
    trials: defaultdict[str, set] = defaultdict(set)
    firsts: Counter[str] = Counter()
    names: dict[str, str] = {}
    for aa in b.article_authors:
        p = aa["pmid"]
        if aa["role"] != "author" or aa["valid"] == 0 or p not in b.current or b.design(p) not in RCT:
            continue
        au = b.authors[aa["author_id"]]
        names[aa["author_id"]] = au["collective_name"] or au["display_name"]
        trials[aa["author_id"]].add(p)
        firsts[aa["author_id"]] += aa["position"] == 1
    floor = int(min_trials) if min_trials.strip() else 1
    ranked = sorted(
        (i for i in trials if len(trials[i]) >= floor), key=lambda i: (-len(trials[i]), -firsts[i], names[i], i)
    )[:50]
    assert [(r["author_id"], r["trials"], r["as_first_author"]) for r in rows] == [
        (i, len(trials[i]), firsts[i]) for i in ranked
    ]
    for r in rows:
        assert set(map(int, r["pmids"].split())) == trials[r["author_id"]]


def check_mesh_cooccurrence(rows, b, term=""):
    term = (term.strip() or "Suicidal Ideation").casefold()
    focus = [p for p in b.current if any(n.casefold() == term for n, _ in b.mesh[p].values())]
    counts: Counter[str] = Counter()
    names: dict[str, str] = {}
    for p in focus:
        for ui, (name, _) in b.mesh[p].items():
            if name.casefold() != term:
                counts[ui] += 1
                names[ui] = name
    expected = sorted(counts, key=lambda ui: (-counts[ui], names[ui]))
    assert [(r["descriptor_ui"], r["records"]) for r in rows] == [(ui, counts[ui]) for ui in expected]
    for r in rows:
        assert r["percent_of_focus_records"] == round(100.0 * r["records"] / len(focus), 1)


def check_rct_share_by_year(rows, b):
    years: defaultdict[int, Counter[str]] = defaultdict(Counter)
    for p in b.current:
        a = b.articles[p]
        if a["pub_year"] is not None and b.design(p) in PRIMARY:
            years[a["pub_year"]]["primary"] += 1
            years[a["pub_year"]]["rct"] += b.design(p) in RCT
    assert [(r["pub_year"], r["primary_studies"], r["randomised_trials"]) for r in rows] == [
        (y, years[y]["primary"], years[y]["rct"]) for y in sorted(years)
    ]


def check_route_population_mix(rows, b):
    cells: Counter[tuple] = Counter()
    rcts: Counter[tuple] = Counter()
    for p in b.current:
        if not b.tags[p]["molecule"]:
            continue
        for route in b.tags[p]["route"] or {"(not stated)"}:
            for population in b.tags[p]["population"] or {"(not stated)"}:
                cells[route, population] += 1
                rcts[route, population] += b.design(p) in RCT
    expected = sorted(cells, key=lambda c: (-cells[c], c[0], c[1]))
    assert [(r["route"], r["population"], r["records"], r["randomised_trials"]) for r in rows] == [
        (*c, cells[c], rcts[c]) for c in expected
    ]


def check_top_journals(rows, b, design=""):
    counts = Counter(
        b.articles[p]["journal"]
        for p in b.current
        if b.articles[p]["journal"] is not None
        and (not design.strip() or b.articles[p]["study_design"] == design.strip())
    )
    expected = sorted(counts, key=lambda j: (-counts[j], j))[:25]
    assert [(r["journal"], r["records"]) for r in rows] == [(j, counts[j]) for j in expected]


def check_trials_reported_more_than_once(rows, b):
    reports = defaultdict(set)
    for t in b.trials:
        if t["pmid"] in b.current:
            reports[t["trial_id"]].add(t["pmid"])
    expected = {t: ps for t, ps in reports.items() if len(ps) > 1}
    assert {r["trial_id"]: r["records"] for r in rows} == {t: len(ps) for t, ps in expected.items()}
    for r in rows:
        assert {int(part.split(" (")[0]) for part in r["reports"].split("; ")} == expected[r["trial_id"]]


def check_rcts_awaiting_indexing(rows, b):
    expected = {p for p in b.current if b.articles[p]["awaiting_indexing"] == 1 and "rct" in b.tags[p]["design"]}
    assert sorted(r["pmid"] for r in rows) == sorted(expected)


def check_funders_of_rcts(rows, b):
    trials = defaultdict(set)
    for g in b.grants:
        if g["pmid"] in b.current and b.design(g["pmid"]) in RCT:
            trials[g["agency"] or "(agency not given)", g["country"]].add(g["pmid"])
    expected = sorted(trials, key=lambda k: (-len(trials[k]), k[0], k[1] is not None, k[1] or ""))[:50]
    assert [(r["agency"], r["country"], r["randomised_trials"]) for r in rows] == [
        (*k, len(trials[k])) for k in expected
    ]


def check_new_records_by_design(rows, b, since=""):
    is_new = b.cutoff(since)
    counts = Counter(b.design(p) for p, a in b.articles.items() if is_new(a))
    assert {r["study_design"]: r["new_records"] for r in rows} == dict(counts)
    current = Counter(b.design(p) for p, a in b.articles.items() if is_new(a) and p in b.current)
    retracted = Counter(b.design(p) for p, a in b.articles.items() if is_new(a) and a["is_retracted"] == 1)
    assert {r["study_design"]: r["current"] for r in rows} == {d: current[d] for d in counts}
    assert {r["study_design"]: r["retracted"] for r in rows} == {d: retracted[d] for d in counts}


def check_new_rcts_for_screening(rows, b, since=""):
    is_new = b.cutoff(since)
    expected = {
        p for p in b.current if is_new(b.articles[p]) and b.articles[p]["is_retracted"] == 0 and b.design(p) in RCT
    }
    assert sorted(r["pmid"] for r in rows) == sorted(expected)


def prisma_expected(b: Base, since=""):
    is_new = b.cutoff(since)

    def fate(a):
        if a["is_deleted"] == 1:
            return "deleted"
        if a["matches_query"] == 0:
            return "unmatched"
        if a["is_retracted"] == 1:
            return "retracted"
        if a["is_retraction_notice"] == 1:
            return "notice"
        if not a["psychiatric"]:
            return "other_sense"
        return "remaining"

    # A record an import stored although the topic never matched it was never identified.
    identified = [a for a in b.articles.values() if not (a["matches_query"] == 0 and a["unmatched_run"] is None)]
    fates = [(fate(a), is_new(a)) for a in identified]
    order = [None, "deleted", "unmatched", "retracted", "notice", "other_sense", "remaining"]
    return [
        (sum(1 for f, _ in fates if s is None or f == s), sum(1 for f, n in fates if n and (s is None or f == s)))
        for s in order
    ]


def check_prisma_flow(rows, b, since=""):
    assert [(r["all_records"], r["new_records"]) for r in rows] == prisma_expected(b, since)
    for column in ("all_records", "new_records"):
        identified, *removed, remaining = [r[column] for r in rows]
        assert identified == sum(removed) + remaining


def check_search_strategy(rows, b):
    successes = sorted((r for r in b.runs.values() if r["status"] == "success"), key=lambda r: -r["id"])
    assert [r["run_id"] for r in rows] == [r["id"] for r in successes]
    for row, run_ in zip(rows, successes):
        assert row["query_text"] == run_["query_text"] == TOPIC_QUERY
        assert row["date_searched"] == run_["started_at"][:10]
        assert row["records_found"] == run_["records_promised"]
        assert row["records_in_catalog_after_run"] == sum(
            1 for a in b.articles.values() if a["first_seen_run"] <= run_["id"]
        )
        assert ("E-utilities" in row["database_searched"]) == (run_["mode"] != "import")


def check_harvest_health_now(rows, b):
    harvests = [r for r in b.runs.values() if r["mode"] != "import"]
    success = max((r["id"] for r in harvests if r["status"] == "success"), default=None)
    failure = max((r["id"] for r in harvests if r["status"] in ("failed", "aborted")), default=None)
    [row] = rows
    assert (row["last_success_run"], row["last_failure_run"]) == (success, failure)
    assert row["failing_since_last_success"] == int(failure is not None and (success is None or failure > success))


CHECKS = {name[len("check_") :]: f for name, f in globals().items() if name.startswith("check_")}


# -- the cookbook file ----------------------------------------------------------------------


def test_the_cookbook_has_at_least_ten_documented_queries_each_checked_here():
    assert len(QUERIES) >= 10
    for name, q in QUERIES.items():
        assert q["title"] and len(q["description"]) > 40, name
        assert q["examples"], f"{name}: no `-- example:` line, so no test would run it"
    assert set(QUERIES) == set(CHECKS), "every cookbook query needs its independent check in this file"


def test_cookbook_names_do_not_collide_with_the_metadata_canned_queries():
    metadata = yaml.safe_load((ROOT / "db" / "metadata.yml").read_text())
    from_metadata = set(((metadata.get("databases") or {}).get("catalog") or {}).get("queries") or {})
    assert not set(QUERIES) & from_metadata


def test_the_parser_keeps_comments_in_sql_and_rejects_broken_entries():
    text = (
        "-- intro\n-- name: a\n-- title: A\n-- description: first\n--   continued\n-- example: x=1\n"
        "select :x -- a comment; with a semicolon\n, 'a;b' as s;\n\n-- name: b\n-- title: B\nselect 1\n"
    )
    parsed = cookbook.parse_queries(text)
    assert parsed["a"]["description"] == "first continued"
    assert parsed["a"]["params"] == ["x"] and parsed["a"]["examples"] == [{"x": "1"}]
    assert parsed["a"]["sql"].endswith("'a;b' as s") and parsed["b"]["sql"] == "select 1"
    for broken in (
        "-- name: a\n-- title: A\nselect 1; select 2",
        "-- name: a\n-- title: A\n-- example: y=1\nselect :x",
        "-- name: a\nselect 1",
        "-- name: a\n-- title: A\nselect 1\n-- name: a\n-- title: A\nselect 2",
    ):
        with pytest.raises(cookbook.CookbookError):
            cookbook.parse_queries(broken)


# -- every query, every example, against the real records -------------------------------------


@pytest.mark.parametrize("name,example", CASES, ids=[f"{n}[{json.dumps(e)}]" for n, e in CASES])
def test_query_returns_the_rows_it_should(catalog, base, name, example):
    rows = run(catalog, name, **example)
    CHECKS[name](rows, base, **example)


def test_known_records_come_out_where_they_should(catalog):
    esketamine = {r["pmid"]: r for r in run(catalog, "esketamine_trials", design="any")}
    # 34034067 names esketamine (keywords) and cites its registration. 33813054 names (S)-ketamine
    # but, a commentary on a study in healthy volunteers, never speaks of depression: set aside.
    assert esketamine[34034067]["nct_ids"] == "NCT04209296"
    assert 34034067 in esketamine and 33813054 not in esketamine
    assert run(catalog, "esketamine_trials", design="observational_cohort")[0]["pmid"] == 34034067
    retractions = run(catalog, "retractions_explained")
    assert len(retractions) >= 4 and all(r["retraction_notice_pmid"] for r in retractions)
    # NCT03275311 is reported twice (33895695, 33984675), but in records that are not about
    # depression: the question lists none of it (the records stay one facet away).
    reporting = {p for (p,) in catalog.execute("select pmid from trial_registrations where trial_id = 'NCT03275311'")}
    assert {33895695, 33984675} <= reporting
    assert "NCT03275311" not in {r["trial_id"] for r in run(catalog, "trials_reported_more_than_once")}
    assert len(run(catalog, "mesh_cooccurrence")) > 10  # "Suicidal Ideation" is indexed in the shared records
    assert run(catalog, "new_records_by_design", since="2999-01-01") == []


def test_new_and_flow_queries_over_a_catalog_that_lived_two_runs(living_catalog):
    path, late, gone = living_catalog
    conn = connect_ro(path)
    b = base_of(path)
    # The default: what the latest run (2) added — exactly the records run 1 did not see.
    new = run(conn, "new_records_by_design")
    assert sum(r["new_records"] for r in new) == len(late)
    check_new_records_by_design(new, b)
    # records/'s one trial, 29226023 (run 2), tests dental whitening strips: not about depression;
    # the trial to screen is LIVING_RCT, on electroconvulsive therapy for depression.
    assert b.articles[29226023]["first_seen_run"] == 2 and b.articles[29226023]["psychiatric"] == 0
    assert b.articles[LIVING_RCT]["first_seen_run"] == 2 and b.articles[LIVING_RCT]["psychiatric"] == 1
    assert [r["pmid"] for r in run(conn, "new_rcts_for_screening")] == [LIVING_RCT]
    assert run(conn, "new_rcts_for_screening", since="2") == []
    flow = {r["step"]: r for r in run(conn, "prisma_flow")}
    assert flow[1]["all_records"] == len(b.articles) and flow[1]["new_records"] == len(late)
    assert flow[3]["all_records"] == len(gone) and flow[3]["new_records"] == 0
    for since in ("", "1", "0", "2000-01-01"):
        check_prisma_flow(run(conn, "prisma_flow", since=since), b, since)
        check_new_rcts_for_screening(run(conn, "new_rcts_for_screening", since=since), b, since)
    strategy = run(conn, "search_strategy")
    assert [r["run_id"] for r in strategy] == [2, 1]
    assert strategy[0]["unmatched"] == len(gone) and strategy[0]["new"] == len(late)
    check_search_strategy(strategy, b)
    assert run(conn, "harvest_health_now")[0]["last_success_run"] == 2
    conn.close()


def test_questions_about_new_records_answer_alike_from_the_summaries_and_from_the_rows(living_catalog, tmp_path):
    """new_records_by_design, prisma_flow and search_strategy read the per-run counts
    harvest/summaries.py keeps while they are current, and count the articles themselves once a
    write has made them stale: both forms give the rows the independent checks expect, for
    every form of `since`."""
    path, _, _ = living_catalog
    b = base_of(path)
    fresh = connect_ro(path)
    assert fresh.execute("select stale from summary_state").fetchone()[0] == 0
    assert fresh.execute("select sum(records) from article_run_counts").fetchone()[0] == len(b.articles)
    copy = tmp_path / "catalog.db"
    writer = sqlite3.connect(copy)
    fresh.backup(writer)
    with writer:  # any write to articles marks the counts stale (a trigger)
        writer.execute("update articles set title = title where pmid = (select min(pmid) from articles)")
    writer.close()
    stale = connect_ro(copy)
    assert stale.execute("select stale from summary_state").fetchone()[0] == 1
    for since in ("", "run:1", "#0", "2000-01-01", "2999-01-01"):
        for name, check in (("new_records_by_design", check_new_records_by_design), ("prisma_flow", check_prisma_flow)):
            answers = [run(conn, name, since=since) for conn in (fresh, stale)]
            assert answers[0] == answers[1], (name, since)
            check(answers[0], b, since)
    answers = [run(conn, "search_strategy") for conn in (fresh, stale)]
    assert answers[0] == answers[1]
    check_search_strategy(answers[0], b)
    fresh.close()
    stale.close()


def test_prisma_flow_leaves_out_what_an_import_stored_outside_the_topic(tmp_path):
    """`harvest import` without --match-topic stores every record of the files; those the topic
    does not match were never identified by the query, so the flow neither counts them as
    identified nor as removed for no longer matching, from the summaries or from the rows."""
    path = tmp_path / "imported.db"
    result = run_cli("import", *sorted(RECORDS.glob("*.xml")), "--db", path)
    assert result.returncode == 0, result.stderr
    b = Base(path)
    outside = [a for a in b.articles.values() if a["matches_query"] == 0 and a["unmatched_run"] is None]
    matched = [a for a in b.articles.values() if a["matches_query"] == 1]
    assert outside and matched and len(outside) + len(matched) == len(b.articles)
    fresh = connect_ro(path)
    assert fresh.execute("select stale from summary_state").fetchone()[0] == 0  # the import counted them
    assert fresh.execute("select sum(records) from article_run_counts where outside_topic = 1").fetchone()[0] == len(
        outside
    )
    copy = tmp_path / "stale.db"
    writer = sqlite3.connect(copy)
    fresh.backup(writer)
    with writer:  # any write to articles marks the counts stale: the rows are counted instead
        writer.execute("update articles set title = title where pmid = (select min(pmid) from articles)")
    writer.close()
    stale = connect_ro(copy)
    for conn in (fresh, stale):
        flow = run(conn, "prisma_flow", since="run:0")
        assert flow[0]["all_records"] == flow[0]["new_records"] == len(matched)
        assert flow[2]["stage"] == "Removed: no longer matching the topic query" and flow[2]["all_records"] == 0
        check_prisma_flow(flow, b, "run:0")
    fresh.close()
    stale.close()


# -- the views ------------------------------------------------------------------------------


def test_migration_creates_the_views(catalog, base):
    views = {r[0] for r in catalog.execute("select name from sqlite_master where type = 'view'")}
    assert set(VIEWS) <= views
    applied = {r[0] for r in catalog.execute("select name from _sqlite_migrations")}
    assert "0004_cookbook_views" in applied
    overview = {r["pmid"]: dict(r) for r in catalog.execute("select * from article_overview")}
    assert set(overview) == set(base.articles)
    row = overview[34034067]
    assert (row["first_author"], row["journal"], row["study_design"], row["trial_ids"], row["is_current"]) == (
        "McIntyre RS",
        "Psychiatry research",
        "observational_cohort",
        "NCT04209296",
        1,
    )
    first_orcids = {
        aa["pmid"]: aa["orcid"] for aa in base.article_authors if aa["role"] == "author" and aa["position"] == 1
    }
    for pmid, r in overview.items():
        assert r["first_author_orcid"] == first_orcids.get(pmid)
        assert r["molecules"] == ("; ".join(sorted(base.tags[pmid]["molecule"])) or None)
        assert r["routes"] == ("; ".join(sorted(base.tags[pmid]["route"])) or None)


def test_mesh_views_match_the_base_tables(catalog, base):
    named = Counter((r["pmid"], r["descriptor_name"]) for r in catalog.execute("select * from article_mesh_named"))
    assert named == Counter((p, n) for p, d in base.mesh.items() for n, _ in d.values())
    rows = {r["pmid"]: r for r in catalog.execute("select * from article_mesh_names")}
    assert set(rows) == {p for p, d in base.mesh.items() if d}
    for pmid, r in rows.items():
        names = sorted(n for n, _ in base.mesh[pmid].values())
        assert r["mesh_names"] == "; ".join(names) and r["mesh_count"] == len(names)
        majors = sorted(n for n, major in base.mesh[pmid].values() if major)
        assert r["major_mesh_names"] == ("; ".join(majors) or None)


# -- served by Datasette -----------------------------------------------------------------------


def test_every_query_is_a_canned_query_of_the_catalog(evidence_catalog, catalog):
    """Served as `datasette serve db/` serves it: the config dir's metadata, settings, plugins
    (the cookbook among them) and templates, over a catalog named catalog.db."""
    from datasette.app import Datasette

    metadata = yaml.safe_load((ROOT / "db" / "metadata.yml").read_text())
    settings = json.loads((ROOT / "db" / "settings.json").read_text())
    ds = Datasette(
        [str(evidence_catalog)],
        metadata=metadata,
        settings=settings,
        plugins_dir=str(ROOT / "db" / "plugins"),
        template_dir=str(ROOT / "db" / "templates"),
    )

    async def fetch_all():
        listed = await ds.get_canned_queries("catalog", None)
        results = {}
        for name, example in CASES:
            response = await ds.client.get(f"/catalog/{name}.json?" + urlencode({"_shape": "objects", **example}))
            results[name, json.dumps(example)] = (response.status_code, response.json())
        page = await ds.client.get("/catalog")
        return listed, results, page.text

    listed, results, page = asyncio.run(fetch_all())
    for name, q in QUERIES.items():
        assert listed[name]["sql"] == q["sql"] and listed[name]["title"] == q["title"]
        assert f"/catalog/{name}" in page
    for (name, example), (status, body) in results.items():
        assert status == 200, (name, body)
        expected = run(catalog, name, **json.loads(example))
        assert body["rows"] == json.loads(json.dumps(expected)), name
        assert not body.get("truncated"), name
    # Metadata's own canned queries are still served as the metadata defines them.
    metadata_queries = ((metadata.get("databases") or {}).get("catalog") or {}).get("queries") or {}
    for name in metadata_queries:
        assert name in listed


# -- the questions' parameters: read as a person types them, or refused with the reason -----


def load_catalog_plugin():
    spec = importlib.util.spec_from_file_location("catalog_plugin_for_params", ROOT / "db" / "plugins" / "catalog.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_parameter_of_every_question_has_a_rule():
    plugin = load_catalog_plugin()
    metadata = yaml.safe_load((ROOT / "db" / "metadata.yml").read_text())
    questions = {name: q["params"] for name, q in QUERIES.items()}
    for name, q in metadata["databases"]["catalog"]["queries"].items():
        questions[name] = plugin._PARAMS.findall(q["sql"])
    missing = [
        f"{name}?{p}" for name, params in questions.items() for p in params if plugin.param_rule(name, p) is None
    ]
    assert missing == []


def test_questions_refuse_what_they_cannot_read_and_accept_what_people_type(evidence_catalog, catalog):
    from datasette.app import Datasette

    ds = Datasette(
        [str(evidence_catalog)],
        metadata=yaml.safe_load((ROOT / "db" / "metadata.yml").read_text()),
        settings=json.loads((ROOT / "db" / "settings.json").read_text()),
        plugins_dir=str(ROOT / "db" / "plugins"),
        template_dir=str(ROOT / "db" / "templates"),
    )
    refused = {
        "prisma_flow?since=2020": ("since", "run:2020"),  # a year or a run id? say which
        "new_records_by_design?since=2": ("since", "run:2"),
        "new_rcts_for_screening?since=04.12.2026": ("since", "2026-12-04"),
        "new_records_by_design?since=2026-02-30": ("since", "not a date on the calendar"),
        "top_rct_authors?min_trials=abc": ("min_trials", "whole number"),
        "top_rct_authors?min_trials=0": ("min_trials", "whole number"),
        "esketamine_trials?design=nonsense": ("design", "randomised"),
        "top_journals?design=randomized": ("design", "study design"),
        "mesh_cooccurrence?term=No Such Heading": ("term", "MeSH heading"),
    }

    async def fetch(path):
        return await ds.client.get(path)

    async def fetch_all():
        out = {}
        for path in refused:
            out[path] = (await fetch("/catalog/" + path.replace("?", ".json?", 1)), await fetch("/catalog/" + path))
        for since in ("run:1", "#1", "RUN:1", "2000-01-01", "2000/01/01", "2000-1-1"):
            out[since] = await fetch("/catalog/prisma_flow.json?_shape=array&" + urlencode({"since": since}))
        out["ris"] = await fetch("/catalog/rct_share_by_year.ris")
        out["term"] = await fetch("/catalog/mesh_cooccurrence.json?_shape=array&term=suicidal+ideation")
        return out

    out = asyncio.run(fetch_all())
    for path, (param, hint) in refused.items():
        as_json, as_page = out[path]
        assert as_json.status_code == 400 and as_page.status_code == 400, path
        message = as_json.json()["error"]
        assert f"parameter {param}:" in message and "Accepted:" in message and hint in message, message
        assert f"parameter {param}:" in as_page.text
    # One catalog of one run: run:1, #1 and a date before it mean the same records.
    flows = {
        since: [(r["all_records"], r["new_records"]) for r in out[since].json()]
        for since in ("run:1", "#1", "RUN:1", "2000-01-01", "2000/01/01", "2000-1-1")
    }
    assert flows["run:1"] == flows["#1"] == flows["RUN:1"] == prisma_expected(base_of(evidence_catalog), "run:1")
    assert (
        flows["2000-01-01"]
        == flows["2000/01/01"]
        == flows["2000-1-1"]
        == prisma_expected(base_of(evidence_catalog), "2000-01-01")
    )
    assert out["ris"].status_code == 400 and "no article or preprint rows" in out["ris"].text
    assert out["term"].status_code == 200 and out["term"].json() == json.loads(
        json.dumps(run(catalog, "mesh_cooccurrence", term="Suicidal Ideation"))
    )
