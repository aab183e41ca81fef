"""A catalog with registered trials beside its papers, built once per session for the catalog's
trial pages, questions and feed (tests/test_trials_catalog.py, tests/test_trials_browser.py).

The session's catalog of real PubMed records (tests/test_catalog.py) is copied with its
configuration, then harvested from the ClinicalTrials.gov stand-in, twice, as a user's `run`
does. The stand-in serves its six real recorded studies as the topic's results, and clones of
real studies made in code, each under an NCT id that a real catalog record cites (nothing here
is an invented record; each clone changes only what its line says), by role (`TrialsSite.clones`):

* completed_reported: the first cited id whose citing records include a randomised
  trial, as a copy of the completed NCT03630471 (with its real references: background
  papers, and three DERIVED publications not in the catalog): a completed trial with papers.
* results_reported: the next such id, as a copy of NCT05594173 (results posted) whose
  referencesModule points at its citing record as a RESULT, both directions linked.
* two_papers: the next such id, as a copy of NCT04267848 keeping its real DERIVED
  reference to PMID 33878954 (not in the catalog): one trial, two papers, one of them a gap.
* protocol_only: the first cited id whose citing records are all trial protocols, as a copy of
  NCT05594173 (completed, results posted, no references): its only paper reports no results.
* ketamine: the id 34034067 ("The effect of intravenous ketamine on cognitive
  functions...") cites, as a copy of NCT03934567 (active, not recruiting) whose intervention is
  named as that record names it ("Intravenous ketamine"): the molecule and route facets.
* hostile: NCT99000001, a copy of NCT00184067 with markup in its title, intervention and
  sponsor, and in its second version an overall status that is markup (the feed and pages must
  show it as text).

Between the two trials runs the registry revises NCT06171568 (NOT_YET_RECRUITING -> RECRUITING)
and HOSTILE, so trial_events holds status changes recorded this month.
"""

from __future__ import annotations

import re
import shutil
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from harvest.config import CtgovSettings
from harvest.ctgov import CtgovClient
from harvest.runner import run_trials_harvest
from tests.ctgov_stand_in import CtgovStandIn, StudyStore
from tests.test_catalog import build_catalog_site

KETAMINE_PAPER = 34034067
REVISED = "NCT06171568"
HOSTILE = "NCT99000001"
HOSTILE_TITLE = '<script>alert("title")</script> Booster trial & <b>bold</b>'
HOSTILE_INTERVENTION = '<img src=x onerror=alert("intervention")>'
HOSTILE_SPONSOR = '<a href="https://evil.example/">Sponsor</a>'
HOSTILE_STATUS = '<img src=x onerror=alert("status")>'


@dataclass
class TrialsSite:
    path: Path
    clones: dict[str, str] = field(default_factory=dict)  # role -> NCT id


_BUILT: dict[str, TrialsSite] = {}


def _cited(conn) -> dict[str, list[dict]]:
    """NCT id -> the catalog records that cite it (with their design)."""
    out: dict[str, list[dict]] = {}
    for row in conn.execute("""
            select tr.trial_id, a.pmid, a.study_design from trial_registrations tr join articles a using (pmid)
            where tr.trial_id glob 'NCT[0-9]*' and tr.source not like 'registry_reference:%'
            order by tr.trial_id, a.pmid"""):
        out.setdefault(row["trial_id"], []).append(dict(row))
    return out


def _rename_intervention(study: dict, name: str) -> None:
    module = study["protocolSection"]["armsInterventionsModule"]
    old = module["interventions"][0]["name"]
    module["interventions"][0]["name"] = name
    for arm in module.get("armGroups") or []:
        arm["interventionNames"] = [n.replace(old, name) for n in arm.get("interventionNames") or []]


def build_trials_site(tmp_path_factory) -> TrialsSite:
    if "site" in _BUILT:
        return _BUILT["site"]
    base = build_catalog_site(tmp_path_factory)
    site = tmp_path_factory.mktemp("trials-site")
    shutil.copytree(
        base, site, dirs_exist_ok=True, ignore=shutil.ignore_patterns("inspect-data.json", "*.lock", "__pycache__")
    )
    conn = sqlite3.connect(f"file:{site / 'catalog.db'}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    cited = _cited(conn)
    title = conn.execute("select title from articles where pmid = ?", [KETAMINE_PAPER]).fetchone()[0]
    conn.close()

    with_rct = [nct for nct, papers in cited.items() if any(p["study_design"] == "rct" for p in papers)]
    protocol_only = [nct for nct, papers in cited.items() if all(p["study_design"] == "trial_protocol" for p in papers)]
    ketamine = [nct for nct, papers in cited.items() if any(p["pmid"] == KETAMINE_PAPER for p in papers)]
    clones = {
        "completed_reported": with_rct[0],
        "results_reported": with_rct[1],
        "two_papers": with_rct[2],
        "protocol_only": protocol_only[0],
        "ketamine": ketamine[0],
        "hostile": HOSTILE,
    }

    studies = StudyStore.recorded()
    studies.add_clone(clones["completed_reported"], "NCT03630471")
    citing = cited[clones["results_reported"]][0]["pmid"]
    studies.add_clone(clones["results_reported"], "NCT05594173", references=[(citing, "RESULT")])
    studies.add_clone(clones["two_papers"], "NCT04267848")
    studies.add_clone(clones["protocol_only"], "NCT05594173")
    named = re.search(r"intravenous ketamine", title, re.I).group(0)
    _rename_intervention(studies.add_clone(clones["ketamine"], "NCT03934567"), named[0].upper() + named[1:])
    hostile = studies.add_clone(HOSTILE, "NCT00184067", topic=True)
    hostile["protocolSection"]["identificationModule"]["briefTitle"] = HOSTILE_TITLE
    hostile["protocolSection"]["sponsorCollaboratorsModule"]["leadSponsor"]["name"] = HOSTILE_SPONSOR
    _rename_intervention(hostile, HOSTILE_INTERVENTION)

    with CtgovStandIn(studies) as registry:
        settings = CtgovSettings(base_url=registry.url, requests_per_second=50, backoff_base=0.05, backoff_cap=1)
        first = run_trials_harvest(site / "catalog.db", client=CtgovClient(settings))
        assert first.status == "success" and first.new == len(registry.store.studies)

        def recruit(study):
            study["protocolSection"]["statusModule"]["overallStatus"] = "RECRUITING"

        def hostile_status(study):
            study["protocolSection"]["statusModule"]["overallStatus"] = HOSTILE_STATUS

        registry.store.revise(REVISED, recruit)
        registry.store.revise(HOSTILE, hostile_status)
        second = run_trials_harvest(site / "catalog.db", full=True, client=CtgovClient(settings))
        assert second.status == "success" and second.updated == 2 and second.events == 2
    _BUILT["site"] = TrialsSite(site, clones)
    return _BUILT["site"]
