"""The evidence map of preprints (`/-/evidence-map?kind=preprint`): every cell counts exactly the
preprints its link lists in the preprints table, the default map of peer-reviewed records is
unchanged, a preprint published as a catalog record is counted there and not here, the filters
narrow preprint cells as they narrow article cells, and a bad `kind` gets one line.

Its catalog: the evidence-map tests' catalog (tests/test_evidence_map.py: real records and their
derived clones, summaries counted), then harvested from the Europe PMC stand-in as a user's run
does, serving tests/sources_catalog.py's world (the 24 real preprints of the recorded answer and
its two linked clones) and, since those are not about ketamine, clones derived here: each a real
recorded preprint under a new id (PPR95...) with the title of one of the real catalog records on
ketamine and depression and the abstract and year of another real record on depression, so that
the harvester's own tagger gives them designs, populations, molecules, routes and outcomes. One
more (PPR9600001) carries the title and abstract of the real record 34034067, whose (derived)
core record names it "Preprint in" beside sources_world's PPR1036674, so the harvester links it to
that record by Europe PMC's own link: a published preprint. (Not by DOI: the map's article
clones carry their source's DOI, so a DOI there names two records and links none.)
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections import Counter
from itertools import product
from pathlib import Path
from unittest import mock
from urllib.parse import parse_qsl, urlsplit

import pytest

from harvest import evidence_map
from harvest.config import EuropepmcSettings
from harvest.europepmc import EuropepmcClient
from harvest.runner import run_preprints_harvest
from harvest.tags import primary_design
from tests.europepmc_stand_in import EuropepmcStandIn
from tests.sources_catalog import EUROPEPMC_LINKED, TODAY, sources_world
from tests.test_catalog import Client
from tests.test_evidence_map import CLONE_BASE, build_map_site, every_cell

PUBLISHED = "PPR9600001"  # the text of 34034067, whose core record names it: linked to it
PUBLISHED_PMID = 34034067
_BUILT: dict[str, Path] = {}


def derive_preprints(world, conn: sqlite3.Connection) -> int:
    """Clones of the real recorded preprints with the text of real catalog records (see above)."""
    real = "pmid < ? and matches_query = 1 and is_deleted = 0 and psychiatric = 1 and abstract != ''"
    titles = [
        t
        for (t,) in conn.execute(
            f"select title from articles where {real} and title like '%ketamine%' order by pmid", [CLONE_BASE]
        )
    ]
    texts = conn.execute(f"select abstract, pub_year from articles where {real} order by pmid", [CLONE_BASE]).fetchall()
    recorded = [r for r in world.preprints() if r["id"].startswith("PPR1")]
    assert len(titles) >= 3 and len(texts) >= 30 and len(recorded) == 24
    for i, (title, (abstract, year)) in enumerate(product(titles, texts)):
        source = recorded[i % len(recorded)]
        world.clone(
            source["id"],
            f"PPR95{i:05d}",
            title=title,
            abstractText=abstract,
            pubYear=str(year),
            doi=f"{source['doi']}.k{i:03d}",  # a DOI of its own: a clone is not its source's version
        )
    title, abstract, year = conn.execute(
        "select title, abstract, pub_year from articles where pmid = ?", [PUBLISHED_PMID]
    ).fetchone()
    source = recorded[0]
    world.clone(
        source["id"], PUBLISHED, title=title, abstractText=abstract, doi=f"{source['doi']}.p1", pubYear=str(year)
    )
    world.add_published("39709209", PUBLISHED_PMID, [EUROPEPMC_LINKED, PUBLISHED])
    return len(titles) * len(texts) + 1


def build_preprint_map_site(tmp_path_factory) -> Path:
    if "site" in _BUILT:
        return _BUILT["site"]
    site = tmp_path_factory.mktemp("evidence-map-preprints") / "site"
    shutil.copytree(
        build_map_site(tmp_path_factory), site, ignore=shutil.ignore_patterns("inspect-data.json", "*.lock")
    )
    world = sources_world()
    with sqlite3.connect(site / "catalog.db") as conn:
        derived = derive_preprints(world, conn)
    with mock.patch.dict(os.environ, {"HARVEST_TODAY": TODAY}):  # restored as it was after
        with EuropepmcStandIn(world) as epmc:
            settings = EuropepmcSettings(base_url=epmc.url, requests_per_second=50, backoff_base=0.05, backoff_cap=1)
            result = run_preprints_harvest(site / "catalog.db", client=EuropepmcClient(settings))
    assert result.status == "success" and result.new == 24 + 1 + derived, result
    with sqlite3.connect(site / "catalog.db") as conn:
        assert conn.execute(
            "select published_pmid, link_method from preprints where ppr_id = ?", [PUBLISHED]
        ).fetchone() == (
            PUBLISHED_PMID,
            "europepmc",
        )
    _BUILT["site"] = site
    return site


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    return build_preprint_map_site(tmp_path_factory)


@pytest.fixture(scope="module")
def client(site):
    c = Client(site)
    yield c
    c.close()


def listed(client, url: str) -> list[str]:
    """Every preprint the preprints table lists at `url`, following its pages to the end."""
    assert urlsplit(url).path == "/catalog/preprints"
    path, _, query = url.partition("?")
    next_url: str | None = f"{path}.json?{query}&_size=7&_nofacet=1&_col=ppr_id&_shape=objects"
    found: list[str] = []
    while next_url:
        page = client.json(next_url)
        found += [r["ppr_id"] for r in page["rows"]]
        next_url = page["next_url"] and "{0.path}?{0.query}".format(urlsplit(page["next_url"]))
    return found


def expected_cells(db: sqlite3.Connection, axis: str, route: str = "", year_from: int = 0) -> Counter:
    """The preprint cells counted straight from the base tables: the works of `catalog_records`
    (preprints not published as a current catalog record), on depression in the psychiatric
    sense, their level from tags.primary_design over their tags (Python, not the page's SQL)."""
    works = {
        r for (r,) in db.execute("select record_id from catalog_records where kind = 'preprint' and counts_as_work = 1")
    }
    years = dict(db.execute("select ppr_id, pub_year from preprints"))
    tags: dict[str, list[dict]] = {}
    for ppr, facet, value, method in db.execute("select ppr_id, facet, value, method from preprint_tags"):
        tags.setdefault(ppr, []).append({"facet": facet, "value": value, "method": method})
    level_of = {d: key for key, _, designs in evidence_map.LEVELS for d in designs}
    facets = evidence_map.AXES[axis][1]
    expected: Counter = Counter()
    for ppr in works:
        own = tags.get(ppr, [])
        values = {f: {t["value"] for t in own if t["facet"] == f} for f in ("depression", "route", *facets)}
        level = level_of.get(primary_design(own))
        if not level or "psychiatric" not in values["depression"] or (years[ppr] or 0) < year_from:
            continue
        if route and route not in values["route"]:
            continue
        for combination in product(*(sorted(values[f] & set(evidence_map.AXIS_VALUES[f])) for f in facets)):
            expected[("|".join(combination), level)] += 1
    return expected


@pytest.fixture(scope="module")
def db(site):
    conn = sqlite3.connect(f"file:{site / 'catalog.db'}?mode=ro", uri=True)
    yield conn
    conn.close()


# -- every preprint cell is its list ------------------------------------------------------------


@pytest.mark.parametrize("axis", ["population_molecule", "outcome", "theme"])
def test_every_preprint_cell_counts_exactly_the_preprints_its_link_lists(client, db, axis):
    matrix = client.json(f"/-/evidence-map.json?axis={axis}&kind=preprint")
    assert matrix["filters"]["kind"] == "preprint" and matrix["counted_from"] == "live"
    found: Counter[tuple[str, str]] = Counter()
    for row, cell in every_cell(matrix):
        ids = listed(client, cell["url"])
        assert len(ids) == len(set(ids)) == cell["count"], (row["key"], cell["level"], cell["url"])
        found[(row["key"], cell["level"])] = cell["count"]
    # The same numbers from the base tables, and enough of them to mean something.
    assert +found == expected_cells(db, axis)
    assert sum(n > 0 for n in found.values()) >= {"population_molecule": 5, "outcome": 5, "theme": 4}[axis]


def test_a_preprint_level_is_the_primary_design_its_tags_give_it(db, site):
    spec = evidence_map.definition(psychiatric=True)["preprints"]
    by_sql = dict(db.execute(f"select p.ppr_id, {spec['design_sql']} from preprints p"))
    tags: dict[str, list[dict]] = {}
    for ppr, facet, value, method in db.execute("select ppr_id, facet, value, method from preprint_tags"):
        tags.setdefault(ppr, []).append({"facet": facet, "value": value, "method": method})
    assert by_sql == {ppr: primary_design(tags.get(ppr, [])) for ppr in by_sql}
    on_the_map = Counter(d for d in by_sql.values() if d in {d for _, _, ds in evidence_map.LEVELS for d in ds})
    assert len(on_the_map) >= 4, on_the_map  # several designs, so several levels, are tested


def test_the_peer_reviewed_map_is_the_default_and_unchanged_by_preprints(client, tmp_path_factory):
    before = Client(build_map_site(tmp_path_factory))
    try:
        for query in ("axis=population_molecule", "axis=outcome&route=intranasal&from=2015"):
            default = client.json(f"/-/evidence-map.json?{query}")
            assert default["filters"]["kind"] == "peer_reviewed" and default["counted_from"] == "summaries"
            assert client.json(f"/-/evidence-map.json?{query}&kind=peer_reviewed")["rows"] == default["rows"]
            assert default["rows"] == before.json(f"/-/evidence-map.json?{query}")["rows"]
            assert all(urlsplit(c["url"]).path == "/catalog/articles" for _, c in every_cell(default))
            assert all("kind" not in dict(parse_qsl(urlsplit(r["url"]).query)) for r in default["rows"])
    finally:
        before.close()


def test_a_preprint_published_as_a_catalog_record_is_counted_there_not_here(client, site, tmp_path):
    html = client.get("/-/evidence-map?kind=preprint").text
    assert "A preprint whose published version is in the catalog is counted there" in html
    matrix = client.json("/-/evidence-map.json?kind=preprint")
    assert not any(PUBLISHED in listed(client, c["url"]) for _, c in every_cell(matrix) if c["count"])
    # Once its published version is no longer a current catalog record, it is a work of its own.
    copy = tmp_path / "site"
    shutil.copytree(site, copy, ignore=shutil.ignore_patterns("*.lock"))
    with sqlite3.connect(copy / "catalog.db") as conn:
        conn.execute("update articles set is_deleted = 1 where pmid = ?", [PUBLISHED_PMID])
    unpublished = Client(copy)
    try:
        after = unpublished.json("/-/evidence-map.json?kind=preprint")
        grown = [
            (row["key"], new["level"])
            for row, new_row in zip(matrix["rows"], after["rows"])
            for old, new in zip(row["cells"], new_row["cells"])
            if new["count"] == old["count"] + 1
        ]
        changed = [
            (r["key"], c["level"])
            for r, nr in zip(matrix["rows"], after["rows"])
            for c, nc in zip(r["cells"], nr["cells"])
            if c["count"] != nc["count"]
        ]
        assert grown and grown == changed  # it answers TRD x some ketamine: one more in each of its cells
        for row_key, level in grown:
            cell = next(c for r in after["rows"] if r["key"] == row_key for c in r["cells"] if c["level"] == level)
            assert PUBLISHED in listed(unpublished, cell["url"])
    finally:
        unpublished.close()


def test_the_filters_narrow_preprint_cells_as_they_narrow_article_cells(client, db):
    query = "axis=outcome&kind=preprint&route=intravenous&from=2021"
    matrix = client.json(f"/-/evidence-map.json?{query}")
    unfiltered = client.json("/-/evidence-map.json?axis=outcome&kind=preprint")
    total = sum(c["count"] for _, c in every_cell(matrix))
    assert 0 < total < sum(c["count"] for _, c in every_cell(unfiltered))
    found: Counter[tuple[str, str]] = Counter()
    for row, cell in every_cell(matrix):
        args = dict(parse_qsl(urlsplit(cell["url"]).query))
        assert args["_route"] == "intravenous" and args["pub_year__gte"] == "2021"
        assert len(listed(client, cell["url"])) == cell["count"], (row["key"], cell["level"])
        found[(row["key"], cell["level"])] = cell["count"]
    assert +found == expected_cells(db, "outcome", route="intravenous", year_from=2021)


def test_the_form_csv_json_and_shared_rows_carry_the_kind(client):
    html = client.get("/-/evidence-map?kind=preprint&axis=outcome").text
    assert '<select id="map-kind" name="kind">' in html and '<option value="preprint" selected>' in html
    assert 'href="/-/evidence-map.csv?axis=outcome&amp;kind=preprint"' in html
    matrix = client.json("/-/evidence-map.json?axis=outcome&kind=preprint")
    row = next(r for r in matrix["rows"] if any(c["count"] for c in r["cells"]))
    assert dict(parse_qsl(urlsplit(row["url"]).query)) == {"axis": "outcome", "row": row["key"], "kind": "preprint"}
    assert client.json(row["url"].replace("/-/evidence-map?", "/-/evidence-map.json?"))["rows"] == [row]
    response = client.get("/-/evidence-map.csv?axis=outcome&kind=preprint")
    assert 'filename="evidence-map-outcome-preprints.csv"' in response.headers["content-disposition"]
    lines = response.text.splitlines()[1:]
    assert lines == [",".join([r["key"], r["label"], *(str(c["count"]) for c in r["cells"])]) for r in matrix["rows"]]


def test_a_bad_kind_gets_one_line_naming_it(client):
    message = "kind='all' is not a kind of record the map counts: choose peer_reviewed, preprint"
    page = client.get("/-/evidence-map?kind=all")
    assert page.status_code == 400 and page.text == f"Evidence map: {message}\n"
    answer = client.get("/-/evidence-map.json?kind=all")
    assert answer.status_code == 400 and answer.json() == {"ok": False, "error": message}


@pytest.mark.parametrize(
    "query, message",
    [
        (
            "_population=cats",
            "_population='cats' is not a population the catalog tags: choose treatment_resistant_depression",
        ),
        (
            "_study_design=rct,trial",
            "_study_design='trial' is not a design the catalog tags: choose rct, crossover_rct",
        ),
        (
            "_counts_as_work=yes",
            "_counts_as_work='yes' is not 1 (not published as a catalog record) or 0 (published as one)",
        ),
    ],
)
def test_the_preprints_table_refuses_a_filter_value_it_does_not_know_in_one_line(client, query, message):
    answer = client.get(f"/catalog/preprints.json?{query}")
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error.startswith(message) and "\n" not in error


def test_the_live_count_reads_preprints_by_index_and_articles_only_by_primary_key(site, db):
    import importlib.util

    from datasette.app import Datasette  # noqa: F401  (the plugin module imports datasette)

    spec_file = importlib.util.spec_from_file_location("evidence_map_plugin", site / "plugins" / "evidence_map.py")
    assert spec_file is not None and spec_file.loader is not None
    plugin = importlib.util.module_from_spec(spec_file)
    spec_file.loader.exec_module(plugin)
    spec = evidence_map.definition(psychiatric=True)
    for axis in evidence_map.AXES:
        choices = {"axis": axis, "route": "oral", "comparator": "placebo", "from": 2019, "to": 2024}
        sql = plugin.preprint_count_sql(spec, choices)
        plan = [r[3] for r in db.execute("explain query plan " + sql, {**choices})]
        assert not any(line.startswith("SCAN") for line in plan), plan
        assert [line for line in plan if line.startswith("SEARCH a ")] == [
            "SEARCH a USING INTEGER PRIMARY KEY (rowid=?)"
        ]
