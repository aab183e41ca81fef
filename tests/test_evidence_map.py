"""The evidence map (`/-/evidence-map`, `.csv`, `.json`): every cell counts exactly the records
of the articles-table list it links to, every row of the fixed lists is shown, the filters
narrow both, and bad input gets one line.

Its catalog: the session's catalog of real records (tests/test_catalog.py), copied, plus one
derived variant of every record whose primary design is on the map: a clone with a new PMID
(900,000,000 + its position) and its evidence tags replaced by a population, molecule, route,
comparator, outcome and theme chosen by that position, and on depression in the psychiatric sense
(`psychiatric = 1` and its tag), since the map counts only those. The shared records hold three on
ketamine, so without the clones nearly every cell would be zero and prove nothing. The
summaries are then counted by the harvester's own refresh, as the end of a harvest counts them.
"""

from __future__ import annotations

import csv
import io
import re
import shutil
import sqlite3
from collections import Counter
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
import sqlite_utils

from harvest import evidence_map, summaries
from tests.test_catalog import Client, build_catalog_site

CLONE_BASE = 900_000_000
DESIGNS_ON_THE_MAP = [d for _, _, designs in evidence_map.LEVELS for d in designs]
_MAP_SITE: dict[str, Path] = {}


def derive_clones(path: Path) -> int:
    """Clone every current record whose design is on the map, with tags chosen by position."""
    conn = sqlite3.connect(path)
    columns = [row[1] for row in conn.execute("pragma table_info(articles)")]
    marks = ", ".join("?" * len(DESIGNS_ON_THE_MAP))
    sources = [
        row[0]
        for row in conn.execute(
            f"select pmid from articles where matches_query = 1 and is_deleted = 0 and study_design in ({marks}) "
            "order by pmid",
            DESIGNS_ON_THE_MAP,
        )
    ]
    populations, molecules = evidence_map.POPULATIONS, evidence_map.AXIS_VALUES["molecule"]
    routes, comparators = evidence_map.FILTERS["route"], evidence_map.FILTERS["comparator"]
    outcomes, themes = evidence_map.AXIS_VALUES["outcome"], evidence_map.AXIS_VALUES["theme"]
    names = ", ".join(f"[{c}]" for c in columns)
    # A clone is about depression in the psychiatric sense, whatever its source record was about.
    select = ", ".join("?" if c == "pmid" else "1" if c == "psychiatric" else f"[{c}]" for c in columns)
    for i, pmid in enumerate(sources):
        clone = CLONE_BASE + i
        conn.execute(f"insert into articles ({names}) select {select} from articles where pmid = ?", [clone, pmid])
        tags = {
            ("population", populations[i % len(populations)]),
            ("molecule", molecules[(i // len(populations)) % len(molecules)]),
            ("outcome", outcomes[i % len(outcomes)]),
            ("theme", themes[i % len(themes)]),
            ("depression", "psychiatric"),
        }
        if i % 3 == 0:  # some answer two populations, or two molecules
            tags.add(("population", populations[(i + 4) % len(populations)]))
        if i % 4 == 1:
            tags.add(("molecule", molecules[(i + 2) % len(molecules)]))
        if i % 5:  # a fifth name no route
            tags.add(("route", routes[i % len(routes)]))
        if i % 3 != 2:  # a third name no comparator
            tags.add(("comparator", comparators[(i // len(routes)) % len(comparators)]))
            if i % 7 == 1:
                tags.add(("comparator", comparators[(i // len(routes) + 1) % len(comparators)]))
        conn.executemany(
            "insert into article_tags (pmid, facet, value, method, evidence, confidence) "
            "values (?, ?, ?, 'rule', 'derived for the evidence-map tests', 1.0)",
            [(clone, facet, value) for facet, value in sorted(tags)],
        )
    conn.commit()
    conn.close()
    summaries.refresh(sqlite_utils.Database(path))
    return len(sources)


def build_map_site(tmp_path_factory) -> Path:
    if "site" not in _MAP_SITE:
        site = tmp_path_factory.mktemp("evidence-map-site") / "site"
        shutil.copytree(build_catalog_site(tmp_path_factory), site, ignore=shutil.ignore_patterns("inspect-data.json"))
        assert derive_clones(site / "catalog.db") > 200
        _MAP_SITE["site"] = site
    return _MAP_SITE["site"]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    return build_map_site(tmp_path_factory)


@pytest.fixture(scope="module")
def client(site):
    c = Client(site)
    yield c
    c.close()


def list_count(client, url: str) -> int:
    """How many records the articles table lists at `url` (its own count, facets off)."""
    path, _, query = url.partition("?")
    return client.json(f"{path}.json?{query}&_size=1&_nofacet=1")["filtered_table_rows_count"]


def every_cell(matrix: dict):
    for row in matrix["rows"]:
        for cell in row["cells"]:
            yield row, cell


# -- every cell is its list -------------------------------------------------------------------


@pytest.mark.parametrize("axis", ["population_molecule", "outcome", "theme"])
def test_every_cell_counts_exactly_the_records_of_the_list_it_links_to(client, axis):
    matrix = client.json(f"/-/evidence-map.json?axis={axis}")
    assert matrix["counted_from"] == "summaries"
    nonzero = 0
    for row, cell in every_cell(matrix):
        assert urlsplit(cell["url"]).path == "/catalog/articles"
        assert list_count(client, cell["url"]) == cell["count"], (row["label"], cell["level"], cell["url"])
        nonzero += cell["count"] > 0
    # The derived records fill most cells: the equality above is tested on real numbers.
    assert nonzero >= {"population_molecule": 100, "outcome": 40, "theme": 30}[axis]


def test_the_filters_narrow_every_cell_and_its_list_alike(client):
    query = "axis=population_molecule&route=intravenous&comparator=placebo&from=2015&to=2021"
    matrix = client.json(f"/-/evidence-map.json?{query}")
    unfiltered = client.json("/-/evidence-map.json?axis=population_molecule")
    assert sum(c["count"] for _, c in every_cell(matrix)) < sum(c["count"] for _, c in every_cell(unfiltered))
    assert sum(c["count"] for _, c in every_cell(matrix)) > 0
    for row, cell in every_cell(matrix):
        args = dict(parse_qsl(urlsplit(cell["url"]).query))
        assert args["_route"] == "intravenous" and args["_comparator"] == "placebo"
        assert args["pub_year__gte"] == "2015" and args["pub_year__lte"] == "2021"
        assert list_count(client, cell["url"]) == cell["count"], (row["label"], cell["level"])


def test_counts_are_the_same_counted_live_while_the_summaries_are_stale(client, site):
    queries = [
        "axis=population_molecule",
        "axis=outcome&comparator=ect&from=2019",
        "axis=theme&route=intranasal&to=2020",
    ]
    summarised = {q: client.json(f"/-/evidence-map.json?{q}") for q in queries}
    conn = sqlite3.connect(site / "catalog.db")
    conn.execute("update summary_state set stale = 1")
    conn.commit()
    try:
        for q in queries:
            live = client.json(f"/-/evidence-map.json?{q}")
            assert live["counted_from"] == "live"
            assert live["rows"] == summarised[q]["rows"]
    finally:
        conn.execute("update summary_state set stale = 0")
        conn.commit()
        conn.close()


def test_every_combination_is_a_row_even_where_it_counts_zero(client, site):
    matrix = client.json("/-/evidence-map.json")
    assert matrix["axis"] == "population_molecule"
    molecules = evidence_map.AXIS_VALUES["molecule"]
    assert [r["key"] for r in matrix["rows"]] == [f"{p}|{m}" for p in evidence_map.POPULATIONS for m in molecules]
    assert [lv["key"] for lv in matrix["levels"]] == [key for key, _, _ in evidence_map.LEVELS]
    assert any(c["count"] == 0 for _, c in every_cell(matrix))  # the gaps are there
    trd_esketamine = next(r for r in matrix["rows"] if r["key"] == "treatment_resistant_depression|esketamine")
    assert trd_esketamine["label"] == "Treatment-resistant depression × esketamine"
    for axis, facet in (("outcome", "outcome"), ("theme", "theme")):
        rows = client.json(f"/-/evidence-map.json?axis={axis}")["rows"]
        assert [r["key"] for r in rows] == list(evidence_map.AXIS_VALUES[facet])


def test_the_page_is_a_table_of_links_with_its_filters_and_downloads(client):
    html = client.get("/-/evidence-map?axis=population_molecule&route=intranasal").text
    matrix = client.json("/-/evidence-map.json?axis=population_molecule&route=intranasal")
    assert '<table class="evidence-map">' in html and "<script" not in html.split("<footer")[0].split("</nav>")[1]
    assert html.count('<th scope="row"') == len(matrix["rows"]) == 50
    assert html.count('<th scope="col" class="map-level">') == 6
    for row, cell in every_cell(matrix):  # each cell's link and number, as the JSON has them
        href = cell["url"].replace("&", "&amp;")
        assert re.search(
            rf'<a href="{re.escape(href)}"><span class="map-cell-level" aria-hidden="true">'
            rf'[^<]*</span><span class="map-count">{cell["count"]:,}</span>',
            html,
        ), (row["key"], cell)
    for name in ("axis", "route", "comparator", "from", "to"):
        assert f'name="{name}"' in html
    assert '<option value="intranasal" selected>' in html
    assert 'href="/-/evidence-map.csv?axis=population_molecule&amp;route=intranasal"' in html
    assert 'href="/-/evidence-map.json?axis=population_molecule&amp;route=intranasal"' in html


def test_a_row_is_shareable_as_a_url(client):
    matrix = client.json("/-/evidence-map.json?axis=population_molecule&comparator=placebo")
    row = next(r for r in matrix["rows"] if r["key"] == "treatment_resistant_depression|esketamine")
    assert dict(parse_qsl(urlsplit(row["url"]).query)) == {
        "axis": "population_molecule",
        "row": row["key"],
        "comparator": "placebo",
    }
    shared = client.json(row["url"].replace("/-/evidence-map?", "/-/evidence-map.json?"))
    assert shared["rows"] == [row]
    html = client.get(row["url"]).text
    assert html.count('<th scope="row"') == 1 and "Show every row" in html
    assert 'id="cell-treatment_resistant_depression-esketamine-rcts"' in html  # a cell, as #fragment


def test_csv_is_the_same_matrix(client):
    response = client.get("/-/evidence-map.csv?axis=outcome&from=2010")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(response.text)))
    matrix = client.json("/-/evidence-map.json?axis=outcome&from=2010")
    assert rows[0] == ["row", "Outcome", *(lv["label"] for lv in matrix["levels"])]
    assert rows[1:] == [[r["key"], r["label"], *(str(c["count"]) for c in r["cells"])] for r in matrix["rows"]]


@pytest.mark.parametrize(
    "query, message",
    [
        ("axis=journal", "axis='journal' is not one of the map's rows: choose population_molecule, outcome, theme"),
        (
            "route=rectal",
            "route='rectal' is not a route the catalog tags: choose intravenous, intranasal, oral, "
            "intramuscular, subcutaneous, sublingual_buccal",
        ),
        ("from=2O19", "from='2O19' is not a year: give four digits, e.g. from=2019"),
        ("to=²⁰¹⁹", "to='²⁰¹⁹' is not a year: give four digits, e.g. to=2019"),  # digits int() cannot read
        ("from=2021&to=2015", "from=2021 is after to=2015: the years are the wrong way round"),
        ("axis=theme&row=esketamine", "row='esketamine' is not a row of the theme map"),
    ],
)
def test_bad_input_gets_one_line_naming_what_was_wrong(client, query, message):
    page = client.get(f"/-/evidence-map?{query}")
    assert page.status_code == 400 and page.text == f"Evidence map: {message}\n"
    answer = client.get(f"/-/evidence-map.json?{query}")
    assert answer.status_code == 400 and answer.json() == {"ok": False, "error": message}


def test_the_front_page_and_the_articles_table_link_to_the_map(client):
    assert 'class="evidence-map-link" href="/-/evidence-map"' in client.get("/").text
    assert 'class="evidence-map-link" href="/-/evidence-map"' in client.get("/catalog/articles").text


def test_the_summary_counts_each_record_once_per_cell(site):
    """The map's summary rows against a count straight from the base tables."""
    conn = sqlite3.connect(f"file:{site / 'catalog.db'}?mode=ro", uri=True)
    level_of = {d: key for key, _, designs in evidence_map.LEVELS for d in designs}
    design = dict(
        conn.execute(
            "select pmid, study_design from articles where matches_query = 1 and is_deleted = 0 and psychiatric = 1"
        )
    )
    tags: dict[int, dict[str, set]] = {}
    for pmid, facet, value in conn.execute("select pmid, facet, value from article_tags"):
        tags.setdefault(pmid, {}).setdefault(facet, set()).add(value)
    expected: Counter[tuple] = Counter()
    for pmid, facets in tags.items():
        level = level_of.get(design.get(pmid) or "")  # no design: no level
        if level:
            for p in facets.get("population", ()):
                for m in facets.get("molecule", ()):
                    if p in evidence_map.POPULATIONS:
                        expected[(f"{p}|{m}", level)] += 1
    found = Counter(
        {
            (row, level): n
            for row, level, n in conn.execute(
                "select row, level, sum(count) from evidence_map_counts where axis = 'population_molecule' "
                "and route = '' and comparator = '' group by 1, 2"
            )
        }
    )
    conn.close()
    assert found == expected and sum(found.values()) > 200


def test_a_catalog_from_before_the_map_gets_it_on_upgrade_and_the_page_says_what_to_do_until_then(site, tmp_path):
    copy = tmp_path / "site"
    shutil.copytree(site, copy)
    conn = sqlite3.connect(copy / "catalog.db")
    expected = conn.execute(
        "select axis, row, level, pub_year, route, comparator, count from evidence_map_counts order by 1, 2, 3, 4, 5, 6"
    ).fetchall()
    conn.execute("drop table evidence_map_counts")
    conn.execute("drop table evidence_map_definition")
    conn.execute("delete from _sqlite_migrations where name = '0009_evidence_map'")
    conn.commit()
    conn.close()
    before = Client(copy)
    try:
        page = before.get("/-/evidence-map")
        assert page.status_code == 404
        assert page.text == (
            "Evidence map: this catalog predates the evidence map: run a harvest or "
            "`python -m harvest retag` once to count it\n"
        )
    finally:
        before.close()

    from harvest import rebuild

    rebuild.open_for_writing(copy / "catalog.db").conn.close()  # what every harvest, import and retag opens with
    conn = sqlite3.connect(copy / "catalog.db")
    assert (
        conn.execute(
            "select axis, row, level, pub_year, route, comparator, count from evidence_map_counts "
            "order by 1, 2, 3, 4, 5, 6"
        ).fetchall()
        == expected
    )
    conn.close()
    after = Client(copy)
    try:
        assert after.json("/-/evidence-map.json")["counted_from"] == "summaries"
    finally:
        after.close()


def test_once_the_catalog_knows_the_sense_of_depression_only_psychiatric_records_are_counted(site, tmp_path):
    """h2's `articles.psychiatric` (1: depression in the psychiatric sense): the map counts and
    lists only those records. Here the column is derived: every other record set to 0."""
    copy = tmp_path / "site"
    shutil.copytree(site, copy)
    db = sqlite_utils.Database(copy / "catalog.db")
    if "psychiatric" not in db["articles"].columns_dict:
        db.execute("alter table articles add column psychiatric integer")
    db.execute("update articles set psychiatric = pmid % 2")
    db.conn.commit()
    summaries.refresh(db)
    db.conn.close()
    c = Client(copy)
    try:
        matrix = c.json("/-/evidence-map.json?axis=population_molecule")
        for row, cell in every_cell(matrix):
            assert dict(parse_qsl(urlsplit(cell["url"]).query))["psychiatric"] == "1"
            assert list_count(c, cell["url"]) == cell["count"], (row["label"], cell["level"])
    finally:
        c.close()
    conn = sqlite3.connect(f"file:{copy / 'catalog.db'}?mode=ro", uri=True)
    counted = conn.execute(
        "select sum(count) from evidence_map_counts where axis = 'population_molecule' "
        "and route = '' and comparator = ''"
    ).fetchone()[0]
    conn.close()
    assert 0 < sum(cell["count"] for _, cell in every_cell(matrix)) == counted
    everything = sqlite3.connect(f"file:{site / 'catalog.db'}?mode=ro", uri=True)
    assert (
        counted
        < everything.execute(
            "select sum(count) from evidence_map_counts where axis = 'population_molecule' "
            "and route = '' and comparator = ''"
        ).fetchone()[0]
    )
    everything.close()
