"""Requests to OpenAlex per 1,000 records: the first read, a rerun, and a week of daily runs.

A catalog of 1,000 clones of the shared real records (bench/request_economy.py's clones: new
PMIDs, creation dates spread over 2000-2025) is harvested from the E-utilities stand-in; the
OpenAlex stand-in (tests/openalex_stand_in.py) serves a clone of a real recorded work for each
of its PMIDs. The harvester's clock (HARVEST_TODAY) is set 30 days after the newest record
entered PubMed, so the newest records are due daily as in a live catalog; then eight daily
citations runs (days 0 to 7) are counted. The minimum any client needs for a full read is
ceil(records / 50): OpenAlex takes 50 PMIDs in one filter.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import time
from pathlib import Path

from bench.common import fresh, log

RECORDS = 1_000


def run(workdir: Path) -> dict:
    from bench.request_economy import _corpus
    from harvest import store
    from harvest.config import OpenalexSettings, Settings
    from harvest.openalex import PMIDS_PER_REQUEST, OpenalexClient
    from harvest.runner import run_citations_harvest, run_harvest
    from tests.eutils_stand_in import EutilsStandIn
    from tests.openalex_stand_in import OpenalexStandIn, WorkStore, clone_for

    log(f"citations: cloning {RECORDS:,} records into the E-utilities stand-in")
    corpus = _corpus(RECORDS, seed=3)
    db_path = fresh(workdir / "citations.db")
    with EutilsStandIn(corpus) as eutils:
        run_harvest(db_path, settings=Settings(base_url=eutils.url, api_key="bench", backoff_base=0.05), full=True)
    db = store.open_db(db_path)
    newest = db.execute("select max(coalesce(entrez_date, pub_date)) from articles").fetchone()[0]
    pmids = [p for (p,) in db.execute("select pmid from articles order by pmid")]
    db.close()
    works = WorkStore.recorded()
    clone_for(works, pmids)
    first_day = dt.date.fromisoformat(newest) + dt.timedelta(days=30)
    days = []
    before = os.environ.get("HARVEST_TODAY")
    try:
        with OpenalexStandIn(works) as server:
            settings = OpenalexSettings(base_url=server.url, requests_per_second=50, backoff_base=0.05)
            for offset in [0, 0, 1, 2, 3, 4, 5, 6, 7]:
                os.environ["HARVEST_TODAY"] = (first_day + dt.timedelta(days=offset)).isoformat()
                asked = len(server.requests)
                start = time.perf_counter()
                outcome = run_citations_harvest(db_path, client=OpenalexClient(settings))
                days.append(
                    {
                        "day": offset,
                        "due": outcome.due,
                        "never_read": outcome.never_read,
                        "stale": outcome.stale,
                        "newest": outcome.newest,
                        "requests": len(server.requests) - asked,
                        "seconds": round(time.perf_counter() - start, 2),
                    }
                )
                log(f"citations day {offset}: {days[-1]}")
    finally:
        if before is None:
            os.environ.pop("HARVEST_TODAY", None)
        else:
            os.environ["HARVEST_TODAY"] = before
    first, rerun, week = days[0], days[1], days[2:]
    minimum = math.ceil(RECORDS / PMIDS_PER_REQUEST)
    weekly = sum(d["requests"] for d in week)  # days 1 to 7: one full week of daily runs after the first read
    return {
        "records": RECORDS,
        "pmids_per_request": PMIDS_PER_REQUEST,
        "newest_days": store.CITATIONS_NEWEST_DAYS,
        "stale_days": store.CITATIONS_STALE_DAYS,
        "days": days,
        "first_read_requests_per_1000": round(first["requests"] / RECORDS * 1000, 2),
        "minimum_per_1000": round(minimum / RECORDS * 1000, 2),
        "rerun_same_day_requests": rerun["requests"],
        "week_requests_per_1000": round(weekly / RECORDS * 1000, 2),
        "goals": {
            "first_read_at_minimum": first["requests"] <= minimum,
            "rerun_same_day_asks_nothing": rerun["requests"] == 0,
        },
    }
