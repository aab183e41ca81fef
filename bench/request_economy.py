"""Requests per record for a full harvest of 25,000 records and for incremental runs.

The E-utilities stand-in (tests/eutils_stand_in.py) serves 25,000 clones of the shared
real records, with new PMIDs and creation dates spread over 2000-2025; the harvester runs
as `harvest run` does, against it. The minimum any client needs is one esearch per slice
of at most 9,999 records (ceil(records / 9,999)) plus ceil(records / batch) efetch calls;
an incremental run needs its two window searches plus the efetches of what changed.
"""

from __future__ import annotations

import datetime as dt
import math
import random
import tempfile
import time
from pathlib import Path

from bench.common import CLONE_PMID_BASE, LARGE_FILES, LoadSampler, fresh, log

RECORDS = 25_000
CHANGED = 50


def _corpus(n: int, seed: int = 1):
    from tests.eutils_stand_in import Corpus

    base = Corpus.cached([str(p) for p in LARGE_FILES])
    corpus = base.copy()
    originals = list(corpus.pmids())
    rng = random.Random(seed)
    first, last = dt.date(2000, 1, 1), dt.date(2025, 12, 31)
    span = (last - first).days
    for i in range(n):
        day = first + dt.timedelta(days=rng.randrange(span + 1))
        corpus.add_clone(CLONE_PMID_BASE + i, originals[i % len(originals)], crdt=day, mdat=day)
    for pmid in originals:
        corpus.remove(pmid)
    return corpus


def _run(db_path: Path, server, **kw):
    from harvest.config import Settings
    from harvest.runner import run_harvest

    settings = Settings(base_url=server.url, api_key="bench", backoff_base=0.05, backoff_cap=1.0)
    server.clear_log()
    start = time.perf_counter()
    outcome = run_harvest(db_path, settings=settings, **kw)
    seconds = time.perf_counter() - start
    esearch, efetch = server.count("esearch"), server.count("efetch")
    return {
        "records_promised": outcome.promised,
        "new": outcome.new,
        "updated": outcome.updated,
        "unchanged": outcome.unchanged,
        "esearch": esearch,
        "efetch": efetch,
        "requests": esearch + efetch + server.count("einfo"),
        "seconds": round(seconds, 1),
    }


def run(workdir: Path) -> dict:
    from harvest.runner import DEFAULT_BATCH
    from tests.eutils_stand_in import EutilsStandIn

    log(f"request economy: cloning {RECORDS:,} records into the E-utilities stand-in")
    t = time.perf_counter()
    corpus = _corpus(RECORDS)
    setup = round(time.perf_counter() - t, 1)
    db_path = fresh(workdir / "requests.db")
    out: dict = {"records": RECORDS, "efetch_batch": DEFAULT_BATCH, "setup_seconds": setup}
    with LoadSampler() as load, EutilsStandIn(corpus, enforce_rate_limit=True) as server:
        full = _run(db_path, server, full=True)
        full["minimum"] = math.ceil(RECORDS / 9999) + math.ceil(RECORDS / DEFAULT_BATCH)
        full["per_1000_records"] = round(full["requests"] / RECORDS * 1000, 2)
        full["minimum_per_1000_records"] = round(full["minimum"] / RECORDS * 1000, 2)
        full["over_minimum_pct"] = round((full["requests"] / full["minimum"] - 1) * 100, 1)
        log(f"full harvest: {full}")
        out["full"] = full
        none = _run(db_path, server)
        none["minimum"] = 2
        log(f"incremental, nothing changed: {none}")
        out["incremental_0"] = none
        rng = random.Random(2)
        today = dt.date.today()
        for pmid in rng.sample(corpus.pmids(), CHANGED):
            server.revise(pmid, mdat=today)
        some = _run(db_path, server)
        some["minimum"] = 2 + math.ceil(CHANGED / DEFAULT_BATCH)
        log(f"incremental, {CHANGED} revised: {some}")
        out[f"incremental_{CHANGED}"] = some
    out["load"] = load.summary()
    out["goals"] = {
        "full_within_10pct_of_minimum": full["requests"] <= full["minimum"] * 1.10,
        "no_change_incremental_at_most_3": none["requests"] <= 3,
        "changed_incremental_at_minimum": some["requests"] <= some["minimum"],
    }
    return out


if __name__ == "__main__":
    import json

    with tempfile.TemporaryDirectory() as d:
        print(json.dumps(run(Path(d)), indent=1))
