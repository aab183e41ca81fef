"""The notebooks run end to end (nbclient) over catalogs of real records and show their plots.

Each run appends one probe cell that prints the notebook's own numbers as JSON; the test
checks them against the same numbers computed independently from the base tables.
The committed notebooks carry no outputs, so their diffs stay readable.
"""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict

import nbformat
import pytest
import rispy
from nbclient import NotebookClient

from tests.catalog_fixtures import LIVING_RCT, connect_ro, evidence_catalog, living_catalog  # noqa: F401
from tests.conftest import ROOT

NOTEBOOKS = ROOT / "notebooks"
RCT = ("rct", "crossover_rct")
PRIMARY = RCT + ("open_label_trial", "observational_cohort", "case_control", "case_report_series")

EVIDENCE_PROBE = """\
import json as _json
print("PROBE " + _json.dumps({
    "current": int(catalog.current_records),
    "design_by_year": {f"{y}|{d}": int(n) for (y, d), n in design_table.stack().items() if n},
    "molecule_by_year": {f"{y}|{m}": int(n) for (y, m), n in molecule_table.stack().items() if n},
    "rct_share": [[int(v) for v in row] for row in rct_share[["pub_year", "primary_studies", "randomised_trials"]].values],
    "routes": {k: int(v) for k, v in routes.items()},
    "populations": {k: int(v) for k, v in populations.items()},
    "journals": [[j, int(n)] for j, n in journals[["journal", "records"]].values],
    "evidence_matrix": {f"{r}|{c}": int(n) for (r, c), n in evidence_matrix.stack().items() if n},
    "evidence_rows": len(evidence_matrix),
}))"""

LIVING_PROBE = """\
import json as _json
print("PROBE " + _json.dumps({
    "snapshot": int(snapshot.id),
    "new_by_design": {d: int(n) for d, n in new_by_design[["study_design", "new_records"]].values},
    "prisma": [[int(a), int(n)] for a, n in prisma[["all_records", "new_records"]].values],
    "new_rcts": [int(p) for p in new_rcts.pmid],
    "ris_path": str(ris_path) if ris_path else None,
}))"""


def execute(name: str, probe: str, **env: str):
    """Run notebooks/NAME.ipynb from the project root as a user would, plus the probe cell."""
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(probe))
    kernel_env = {k: v for k, v in os.environ.items() if not k.startswith(("CATALOG_DB", "REVIEW_"))}
    kernel_env.update(env, MPLBACKEND="module://matplotlib_inline.backend_inline")
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute(
        env=kernel_env
    )
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    probe_line = next(line for line in text.splitlines() if line.startswith("PROBE "))
    images = sum("image/png" in o.get("data", {}) for o in outputs)
    return json.loads(probe_line[len("PROBE ") :]), text, images


@pytest.mark.parametrize("name", ["evidence_map", "living_review"])
def test_notebooks_are_committed_without_outputs(name):
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
    source = "\n".join(c.source for c in nb.cells)
    assert 'os.environ.get("CATALOG_DB")' in source  # the catalog the harvester uses, not a path of its own


def test_evidence_map(evidence_catalog):
    numbers, text, images = execute("evidence_map", EVIDENCE_PROBE, CATALOG_DB=str(evidence_catalog))
    assert images == 6  # the evidence map, design, molecule, RCT share, routes and populations, journals

    conn = connect_ro(evidence_catalog)
    articles = [
        dict(r)
        for r in conn.execute(
            "select pmid, pub_year, study_design, journal from articles "
            "where matches_query = 1 and is_deleted = 0 and psychiatric = 1"
        )
    ]
    tags: defaultdict[int, defaultdict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for t in conn.execute("select pmid, facet, value from article_tags"):
        tags[t["pmid"]][t["facet"]].add(t["value"])
    conn.close()

    assert numbers["current"] == len(articles) > 300
    assert f"{len(articles):,} current" in text
    dated = [a for a in articles if a["pub_year"] is not None]
    assert numbers["design_by_year"] == dict(Counter(f"{a['pub_year']}|{a['study_design'] or 'other'}" for a in dated))
    assert numbers["molecule_by_year"] == dict(
        Counter(f"{a['pub_year']}|{m}" for a in dated for m in tags[a["pmid"]]["molecule"])
    )
    assert numbers["molecule_by_year"], "the shared records hold records that name ketamine"
    share: defaultdict[str, Counter[str]] = defaultdict(Counter)
    for a in dated:
        if (a["study_design"] or "other") in PRIMARY:
            share[a["pub_year"]]["primary"] += 1
            share[a["pub_year"]]["rct"] += a["study_design"] in RCT
    assert numbers["rct_share"] == [[y, share[y]["primary"], share[y]["rct"]] for y in sorted(share)]
    on_ketamine = [a["pmid"] for a in articles if tags[a["pmid"]]["molecule"]]
    assert numbers["routes"] == dict(Counter(r for p in on_ketamine for r in tags[p]["route"]))
    assert numbers["populations"] == dict(Counter(r for p in on_ketamine for r in tags[p]["population"]))
    journals = Counter(a["journal"] for a in articles if a["journal"])
    assert numbers["journals"] == [[j, journals[j]] for j in sorted(journals, key=lambda j: (-journals[j], j))[:25]]
    assert_the_figure_is_the_map(numbers, text, evidence_catalog)


def map_cells(path) -> dict:
    """The served map's cells (population x molecule, no filter), from the harvester's summary
    of them, keyed as the notebook's probe keys them: "row label|level label"."""
    conn = connect_ro(path)
    spec = json.loads(conn.execute("select definition from evidence_map_definition").fetchone()[0])
    axis = next(a for a in spec["axes"] if a["key"] == "population_molecule")
    rows = {r["key"]: r["label"] for r in axis["rows"]}
    levels = {lv["key"]: lv["label"] for lv in spec["levels"]}
    cells = {
        f"{rows[row]}|{levels[level]}": n
        for row, level, n in conn.execute(
            "select row, level, sum(count) from evidence_map_counts where axis = 'population_molecule' "
            "and route = '' and comparator = '' group by row, level having sum(count) > 0"
        )
    }
    conn.close()
    return cells


def assert_the_figure_is_the_map(numbers, text, path):
    cells = map_cells(path)
    assert numbers["evidence_matrix"] == cells
    assert numbers["evidence_rows"] == 50  # every population x molecule, also where it counts zero
    assert f"{50 * 6 - len(cells)} of 300 cells are empty: the gaps." in text


def test_evidence_map_figure_over_a_catalog_with_many_tagged_studies(tmp_path_factory):
    """The shared records hold three on ketamine: the map's figure is checked again over the
    evidence-map tests' catalog, whose derived records fill most of its cells."""
    from tests.test_evidence_map import build_map_site

    path = build_map_site(tmp_path_factory) / "catalog.db"
    numbers, text, images = execute("evidence_map", EVIDENCE_PROBE, CATALOG_DB=str(path))
    assert images == 6
    assert len(numbers["evidence_matrix"]) > 100
    assert_the_figure_is_the_map(numbers, text, path)


def test_living_review_over_the_evidence_catalog(evidence_catalog, tmp_path):
    numbers, text, images = execute(
        "living_review", LIVING_PROBE, CATALOG_DB=str(evidence_catalog), REVIEW_OUTPUT_DIR=str(tmp_path)
    )
    assert images == 2  # new records by design, the PRISMA flow diagram

    conn = connect_ro(evidence_catalog)
    [run] = conn.execute("select * from harvest_runs where status = 'success'").fetchall()
    rcts = {
        r[0]
        for r in conn.execute(
            "select pmid from articles where matches_query = 1 and is_deleted = 0 and psychiatric = 1 "
            "and is_retracted = 0 and study_design in ('rct', 'crossover_rct')"
        )
    }
    total, retracted, notices = conn.execute(
        "select count(*), sum(is_retracted = 1), sum(is_retraction_notice = 1 and is_retracted = 0) from articles"
    ).fetchone()
    [included] = conn.execute(
        "select count(*) from articles where psychiatric = 1 and is_retracted = 0 and is_retraction_notice = 0"
    ).fetchone()
    conn.close()

    # One run: everything is new, and the RIS file holds every current randomised trial.
    assert numbers["snapshot"] == run["id"]
    assert set(numbers["new_rcts"]) == rcts and len(rcts) > 20
    with open(numbers["ris_path"], encoding="utf-8") as handle:
        entries = rispy.load(handle)
    assert {int(e["accession_number"]) for e in entries} == rcts
    assert all(e["type_of_reference"] == "JOUR" and e["title"] for e in entries)
    assert numbers["ris_path"].startswith(str(tmp_path))
    # The flow's last removal: records on depression only in another sense (set aside).
    set_aside = total - retracted - notices - included
    assert numbers["prisma"] == [
        [total, total],
        [0, 0],
        [0, 0],
        [retracted, retracted],
        [notices, notices],
        [set_aside, set_aside],
        [included, included],
    ]
    assert 0 < included < set_aside
    # PRISMA-S: database, query and version, date, run id, counts.
    assert "Database: PubMed" in text and "E-utilities" in text
    assert f"Search strategy (query version {run['query_version']})" in text and run["query_text"] in text
    assert f"Date of search: {run['started_at'][:10]} (run #{run['id']}" in text
    assert f"Records found by this run: {run['records_promised']:,}" in text
    assert f"ketamine-catalog run #{run['id']}: {total:,} records identified" in text


def test_living_review_after_a_second_harvest(living_catalog, tmp_path):
    path, late, gone = living_catalog
    numbers, text, images = execute(
        "living_review", LIVING_PROBE, CATALOG_DB=str(path), REVIEW_OUTPUT_DIR=str(tmp_path)
    )
    assert images == 2
    assert numbers["snapshot"] == 2
    assert sum(numbers["new_by_design"].values()) == len(late)
    identified, deleted, unmatched, *_ = numbers["prisma"]
    assert identified[1] == len(late) and unmatched == [len(gone), 0] and deleted == [0, 0]
    # The one randomised trial on depression first seen by run 2 (records/'s own, 29226023, on
    # respiratory depression, is set aside).
    assert numbers["new_rcts"] == [LIVING_RCT]
    entries = rispy.load(open(numbers["ris_path"], encoding="utf-8"))
    assert [e["accession_number"] for e in entries] == [str(LIVING_RCT)]
    assert "first stored after run #1 (the previous successful run), i.e. added by run #2" in text
    assert "Limits: none: the whole database (a full sweep)" in text

    # Screened run 2 already: nothing new since, and the notebook says so instead of failing.
    numbers, text, images = execute(
        "living_review", LIVING_PROBE, CATALOG_DB=str(path), REVIEW_OUTPUT_DIR=str(tmp_path / "again"), REVIEW_SINCE="2"
    )
    assert numbers["new_rcts"] == [] and numbers["ris_path"] is None and numbers["new_by_design"] == {}
    assert "No new randomised trials to screen." in text
    assert images == 1  # the flow diagram; no chart of nothing
    assert not (tmp_path / "again").exists()
