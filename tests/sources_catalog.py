"""A catalog with Europe PMC's preprints and OpenAlex's citation counts beside its papers, built
once per session for the pages that show them (tests/test_sources_browser.py, the search tests
of tests/test_preprints_search.py).

The session's catalog of real PubMed records (tests/test_catalog.py) is copied with its
configuration, then harvested once from each stand-in, as a user's `run` does after PubMed:

* Europe PMC (tests/europepmc_stand_in.py): its recorded 1,000-record page, whose 24 real
  preprints stand for the topic's, plus two links derived in code from real records. PPR9100001
  is the real preprint PPR1037166 under a new id with the title of 38011560 a word or two
  changed and that paper's byline and an earlier year (linked by title + first author + year);
  the real core MED record of 39709209, cloned under 34034067, names the real preprint
  PPR1036674 "Preprint in" (Europe PMC's own link; no recording holds one).
* OpenAlex (tests/openalex_stand_in.py): a clone of a real recorded work carrying each catalog
  PMID (tests/openalex_stand_in.clone_for), and each preprint's DOI but the first two by DOI
  (clone_for_dois), read on the harvester's clock of 2026-03-02, so that every article page and
  most preprint pages have a count and a chart per year.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import pytest

from harvest.config import EuropepmcSettings, OpenalexSettings
from harvest.europepmc import EuropepmcClient
from harvest.openalex import OpenalexClient
from harvest.runner import run_citations_harvest, run_preprints_harvest
from tests.europepmc_stand_in import EuropepmcStandIn, World
from tests.openalex_stand_in import OpenalexStandIn, WorkStore, clone_for, clone_for_dois
from tests.test_catalog import Client, build_catalog_site

TODAY = "2026-03-02"
UNKNOWN_TO_OPENALEX = 2  # preprints whose DOI no served work carries
TITLE_LINKED = "PPR9100001"  # PPR1037166 as the preprint of 38011560 (title + first author + year)
TITLE_LINKED_PMID = 38011560
EUROPEPMC_LINKED = "PPR1036674"  # a real preprint; 34034067's core record names it
EUROPEPMC_LINKED_PMID = 34034067
KRYSTAL_TITLE = (
    "Ketamine and the neurobiology of depression: Toward next-generation rapid-acting antidepressant treatments."
)
KRYSTAL_AUTHORS = "Krystal JH, Kaye AP, Jefferson S, Girgenti MJ, Wilkinson ST, Sanacora G, Esterlis I."


@dataclass
class SourcesSite:
    path: Path
    preprints: list[dict]  # every preprint the stand-in served (real records and the one clone)


_BUILT: dict[str, SourcesSite] = {}


def sources_world() -> World:
    world = World()
    world.clone(
        "PPR1037166",
        TITLE_LINKED,
        title=KRYSTAL_TITLE.replace("Toward", "Towards").replace("treatments", "drugs"),
        authorString=KRYSTAL_AUTHORS,
        pubYear="2022",
    )
    world.add_published("39709209", EUROPEPMC_LINKED_PMID, [EUROPEPMC_LINKED])
    return world


def build_sources_site(tmp_path_factory) -> SourcesSite:
    if "site" in _BUILT:
        return _BUILT["site"]
    base = build_catalog_site(tmp_path_factory)
    site = tmp_path_factory.mktemp("sources-site")
    shutil.copytree(
        base, site, dirs_exist_ok=True, ignore=shutil.ignore_patterns("inspect-data.json", "*.lock", "__pycache__")
    )
    db_path = site / "catalog.db"
    with sqlite3.connect(db_path) as conn:
        pmids = [p for (p,) in conn.execute("select pmid from articles order by pmid")]
    world = sources_world()
    works = WorkStore.recorded()
    clone_for(works, pmids)
    # Every preprint with a DOI but the first UNKNOWN_TO_OPENALEX gets a work carrying it.
    preprint_dois = sorted({p["doi"].lower() for p in world.preprints() if p.get("doi")})
    clone_for_dois(works, preprint_dois[UNKNOWN_TO_OPENALEX:])
    with mock.patch.dict(os.environ, {"HARVEST_TODAY": TODAY}):  # restored as it was after
        with EuropepmcStandIn(world) as epmc:
            settings = EuropepmcSettings(base_url=epmc.url, requests_per_second=50, backoff_base=0.05, backoff_cap=1)
            preprints = run_preprints_harvest(db_path, client=EuropepmcClient(settings))
        with OpenalexStandIn(works) as openalex:
            settings_oa = OpenalexSettings(
                base_url=openalex.url, requests_per_second=50, backoff_base=0.05, backoff_cap=1
            )
            citations = run_citations_harvest(db_path, client=OpenalexClient(settings_oa))
    assert preprints.status == "success" and preprints.new == len(world.preprints())
    assert preprints.linked.get("europepmc") == 1 and preprints.linked.get("title_author_year") == 1, preprints.linked
    assert citations.status == "success" and citations.new == len(pmids)
    # (PPR9100001 has the DOI of the real preprint it clones: two preprints, one work.)
    with_doi = sum(1 for p in world.preprints() if p.get("doi"))
    assert citations.preprints_read == with_doi and citations.preprints_not_found == UNKNOWN_TO_OPENALEX, citations
    _BUILT["site"] = SourcesSite(site, world.preprints())
    return _BUILT["site"]


# The fixtures of the files that read this catalog (imported by name where they are used).
@pytest.fixture(scope="module")
def site(tmp_path_factory) -> SourcesSite:
    return build_sources_site(tmp_path_factory)


@pytest.fixture(scope="module")
def client(site):
    datasette = Client(site.path)
    yield datasette
    datasette.close()
