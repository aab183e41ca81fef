"""Catalogs of real records for the notebook and cookbook tests, each built once per session.

* `evidence_catalog`: the 13,213 records of pubmed21n1298-part1 and records/ harvested through
  the E-utilities stand-in in one full run (every record matches, as the stand-in answers any
  term with its whole corpus) — the size a real ketamine catalog has.
* `living_catalog`: records/ (and one randomised trial on depression from pubmed21n1298-part1,
  since records/ holds none in the psychiatric sense) harvested in two full runs, as a catalog
  lives: run 1 sees all but
  LATE (they appear later in PubMed), run 2 sees all but GONE (the query no longer returns
  them). So run 2 adds LATE as new records and marks GONE as no longer matching.

Import the fixtures into a test module (`from tests.catalog_fixtures import evidence_catalog`);
the catalogs are built once per session whichever module (and xdist worker) asks first
(tests/once.py). Tests only read them.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tests.conftest import PUBMED, RECORDS, harvest_env, run_cli
from tests.eutils_stand_in import Corpus, EutilsStandIn
from tests.once import built_once

EVIDENCE_SOURCES = [PUBMED / "pubmed21n1298-part1.xml.gz", RECORDS]

# records/ PMIDs that run 1 of the living catalog does not see: every 8th, plus the one
# randomised trial (29226023, on dental whitening strips: set aside from the psychiatric
# catalog) and the ketamine review (38011560), so run 2 brings both, and with them
# LIVING_RCT, a randomised trial of electroconvulsive therapy for depression from
# pubmed21n1298-part1, the living review's one new trial to screen.
# GONE: every 8th from the 5th on, which run 2 no longer finds.
LIVING_RCT = 33586144
_LIVING_EXTRA_LATE = {29226023, 38011560, LIVING_RCT}


def _harvest(path: Path, corpus: Corpus, *args: str) -> None:
    # With a key the harvester allows itself 10 requests/s instead of 3 (the stand-in takes any key).
    with EutilsStandIn(corpus, enforce_rate_limit=False) as server:
        result = run_cli("run", "--db", path, *args, env=harvest_env(server.url, NCBI_API_KEY="stand-in"))
    assert result.returncode == 0, result.stderr[-3000:]


def _build_evidence(directory: Path) -> None:
    _harvest(directory / "catalog.db", Corpus.cached(EVIDENCE_SOURCES).copy())


def evidence_catalog_path(tmp_path_factory) -> Path:
    return built_once(tmp_path_factory, "evidence-catalog", _build_evidence) / "catalog.db"


def living_split(corpus: Corpus) -> tuple[set[int], set[int]]:
    pmids = sorted(corpus.pmids())
    late = set(pmids[::8]) | (_LIVING_EXTRA_LATE & set(pmids))
    gone = set(pmids[4::8]) - late
    return late, gone


def _build_living(directory: Path) -> None:
    records = Corpus.cached([RECORDS]).copy()
    records.put(Corpus.cached(EVIDENCE_SOURCES)[LIVING_RCT])
    late, gone = living_split(records)
    first = records.copy()
    for pmid in late:
        first.remove(pmid)
    _harvest(directory / "catalog.db", first)
    second = records.copy()
    for pmid in gone:
        second.remove(pmid)
    _harvest(directory / "catalog.db", second, "--full")
    (directory / "split.json").write_text(json.dumps({"late": sorted(late), "gone": sorted(gone)}))


def living_catalog_path(tmp_path_factory) -> tuple[Path, set[int], set[int]]:
    directory = built_once(tmp_path_factory, "living-catalog", _build_living)
    split = json.loads((directory / "split.json").read_text())
    return directory / "catalog.db", set(split["late"]), set(split["gone"])


@pytest.fixture(scope="session")
def evidence_catalog(tmp_path_factory) -> Path:
    return evidence_catalog_path(tmp_path_factory)


@pytest.fixture(scope="session")
def living_catalog(tmp_path_factory):
    """(path, LATE, GONE) — see the module doc."""
    return living_catalog_path(tmp_path_factory)


def connect_ro(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    return conn
