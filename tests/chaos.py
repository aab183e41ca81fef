"""Chaos: the real harvester against the E-utilities stand-in, under faults, crashes and hostile input.

    python -m tests.chaos [--fast] [--json PATH] [--only NAME,...] [--seed N] [--jobs N] [--keep]

Every scenario starts the harvester as cron does (`python -m harvest run --db ...` in a
subprocess; PubMed alone, except `trials`, which adds the ClinicalTrials.gov stand-in of
tests/ctgov_stand_in.py, `citations`, which adds the OpenAlex stand-in of tests/openalex_stand_in.py,
and `preprints`, which adds the Europe PMC stand-in of tests/europepmc_stand_in.py) against its own
E-utilities stand-in (tests/eutils_stand_in.py), which serves the
215 real PubMed records of ../shared/data/pubmed/records, plus clones of them with new PMIDs
where a scenario needs records to appear. Faults are drawn from a generator seeded with
`--seed` and the scenario's name, so a run can be repeated. After every scenario the catalog
must pass `integrity()`: `PRAGMA integrity_check` and `foreign_key_check` clean, the FTS index
matching `articles` (FTS5 'integrity-check' against its content table, one FTS row per
article), no PMID stored twice, every article with its XML, every stored record equal to what
the stand-in serves for it, no run left 'running', and the set of stored PMIDs equal to the
set the stand-in serves. Scenarios that resume check that no run fetched again a record an
interrupted run had already stored in full, and where the watermark lands.

The catalog side (`catalog`) serves a published copy of a harvested catalog with db/'s own
configuration (db/publish.py, `datasette serve DIR` on 127.0.0.1) and checks that it is
immutable, that SQL has a time limit, that crafted `?sql=` can neither write nor hang it,
and that 200 concurrent requests are all answered; the full run also serves a copy the way
`make serve` serves db/ (mutable, no inspect-data.json) and throws the same writes at it.

Report columns (one row per scenario; `--json` writes the same rows plus every check):
  requests  requests the stand-in received, faulted ones included
  faults    of those, how many were answered with an injected fault
  retries   retries the harvester recorded in harvest_runs (a killed run records none)
  promised  records the scenario's last run promised (what its searches listed)
  stored    PMIDs in the catalog at the end;  served: PMIDs the stand-in serves at the end
  lost      served PMIDs missing from the catalog at the end ("-": a run that fails by design,
            whose one-line error names the records it could not store)
  dup       PMIDs stored twice (articles, article_xml, FTS rows beyond the articles)
  refetch   records fetched again although an interrupted run had stored them in full
  rate      requests over NCBI's limit (3/s, 10/s with a key) as the stand-in counted them
  exits     exit status of every harvester process (KILL: SIGKILLed by the scenario)

Backoff: every scenario uses the test suite's (NCBI_BACKOFF_BASE=0.05 s, NCBI_BACKOFF_CAP=1 s,
8 tries) except the full 60 s outage, which uses the production settings (base 1 s, cap 60 s,
8 tries: the seven sleeps add up to at least 61.5 s and at most 123 s with jitter, so the run
rides out a 60 s outage); hostile answers are tried 5 times (NCBI_MAX_TRIES=5) before the run
gives up. `--fast` (the subset `make test` runs, tests/test_chaos.py) uses an API key (10
requests/s), a 1.5 s outage, three kills instead of ten, two disk sizes instead of three, four
hostile answers instead of nine (3 tries each), no random-30% scenario, and on the catalog side
no 6 concurrent hanging queries (each burns a CPU for the whole time limit) and only JSON
endpoints in the 200 concurrent requests; the full run (`make chaos`) uses no key: NCBI's
3 requests/s.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import datetime as dt
import functools
import hashlib
import importlib.util
import json
import os
import random
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import requests

from harvest import clock
from harvest.pubmed_xml import parse_pubmed_xml
from harvest.rows import record_sha1
from tests.conftest import HARVESTER_PYTHONPATH
from tests.eutils_stand_in import DEFAULT_RANDOM_KINDS, Corpus, EutilsStandIn

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("KETAMINE_SHARED_DATA") or ROOT.parent / "shared" / "data")
RECORDS = DATA / "pubmed" / "records"
API_KEY = "chaos-key-for-the-stand-in"
DEFAULT_SEED = 20261126
CLONE_BASE = 61_000_000  # PMIDs of clones (real records under new PMIDs), above every real one here
KILLED = -signal.SIGKILL


def today() -> dt.date:
    return clock.today()  # the harvester's own today, so that the stand-in and the runs agree


# ---------------------------------------------------------------------------------------------
# What a scenario reports
# ---------------------------------------------------------------------------------------------


@dataclass
class Proc:
    """One harvester process."""

    label: str
    exit: int | None
    stdout: str
    stderr: str
    seconds: float
    requests: tuple[int, int]  # its span of the stand-in's request log
    refetched: int = 0

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith("harvest: error:")]

    @property
    def shown_exit(self) -> str:
        return "KILL" if self.exit == KILLED else str(self.exit)


@dataclass
class Row:
    scenario: str
    what: str
    requests: int = 0
    faults: int = 0
    retries: int = 0
    promised: int = 0
    stored: int = 0
    served: int = 0
    lost: int | None = 0  # None: a run that failed by design (its error names what it could not store)
    duplicates: int = 0
    refetched: int = 0
    rate_violations: int = 0
    exits: list[str] = field(default_factory=list)
    seconds: float = 0.0
    checks: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


# ---------------------------------------------------------------------------------------------
# Integrity of a catalog
# ---------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4096)
def served_sha1(raw: bytes) -> str:
    """The record_sha1 the harvester stores for a record served as `raw`."""
    (record,) = [r for r in parse_pubmed_xml(raw, source_name="served record") if r["type"] == "article"]
    return record_sha1(record)


def stored_pmids(db_path: Path) -> set[int]:
    if not Path(db_path).exists():
        return set()
    conn = sqlite3.connect(db_path, timeout=30)
    try:
        return {r[0] for r in conn.execute("select pmid from articles")}
    except sqlite3.OperationalError:  # not created yet (killed during its first migration)
        return set()
    finally:
        conn.close()


def run_rows(db_path: Path) -> list[dict]:
    if not Path(db_path).exists():
        return []
    conn = sqlite3.connect(db_path, timeout=30)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute("select * from harvest_runs order by id")]
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()


def integrity(
    db_path: Path, corpus: Corpus | None = None, *, complete: bool = True, final: bool = True
) -> tuple[list[str], dict]:
    """(problems, counts) for the catalog at `db_path`; no problems means consistent.

    `corpus`: what the stand-in serves. `complete`: every served PMID must be stored (else
    only: nothing stored that is not served). `final`: no run may be left 'running'."""
    problems: list[str] = []
    counts = {"stored": 0, "duplicates": 0, "lost": 0, "served": len(corpus) if corpus else 0}
    if not Path(db_path).exists():
        return ["no catalog was written"], counts
    conn = sqlite3.connect(db_path, timeout=30)
    try:
        rows = [r[0] for r in conn.execute("pragma integrity_check")]
        if rows != ["ok"]:
            problems.append("integrity_check: " + "; ".join(rows[:3]))
        fk = conn.execute("pragma foreign_key_check").fetchall()
        if fk:
            problems.append(f"foreign_key_check: {len(fk)} rows, the first {fk[0]}")
        try:
            conn.execute("insert into articles_fts(articles_fts, rank) values ('integrity-check', 1)")
        except sqlite3.DatabaseError as exc:
            problems.append(f"the FTS index does not match articles: {exc}")
        n, distinct = conn.execute("select count(*), count(distinct pmid) from articles").fetchone()
        n_fts = conn.execute("select count(*) from articles_fts_docsize").fetchone()[0]
        if n_fts != n:
            problems.append(f"FTS holds {n_fts} rows for {n} articles")
        xml_dups = conn.execute(
            "select count(*) from (select 1 from article_xml group by pmid, pmid_version having count(*) > 1)"
        ).fetchone()[0]
        no_xml = conn.execute(
            "select count(*) from articles a where not exists (select 1 from article_xml x "
            "where x.pmid = a.pmid and x.pmid_version = a.pmid_version)"
        ).fetchone()[0]
        if no_xml:
            problems.append(f"{no_xml} articles without their XML")
        counts["duplicates"] = (n - distinct) + xml_dups + max(0, n_fts - n)
        if counts["duplicates"]:
            problems.append(f"{counts['duplicates']} duplicated PMIDs")
        counts["stored"] = distinct
        if final:
            running = conn.execute("select count(*) from harvest_runs where status = 'running'").fetchone()[0]
            if running:
                problems.append(f"{running} runs left 'running'")
        if corpus is not None:
            stored = dict(conn.execute("select pmid, record_sha1 from articles"))
            served = set(corpus.pmids())
            lost, extra = served - set(stored), set(stored) - served
            counts["lost"] = len(lost)
            if complete and lost:
                problems.append(f"{len(lost)} served records not stored (PMIDs {_sample(lost)})")
            if extra:
                problems.append(f"{len(extra)} stored records the stand-in does not serve ({_sample(extra)})")
            differ = [p for p in set(stored) & served if stored[p] != served_sha1(corpus[p].raw)]
            if differ:
                problems.append(f"{len(differ)} stored records differ from what is served ({_sample(differ)})")
    except sqlite3.DatabaseError as exc:
        problems.append(f"the catalog cannot be read: {exc}")
    finally:
        conn.close()
    return problems, counts


def _sample(pmids, n: int = 5) -> str:
    items = sorted(pmids)
    return ", ".join(map(str, items[:n])) + (" ..." if len(items) > n else "")


# ---------------------------------------------------------------------------------------------
# A scenario: a stand-in, a catalog, harvester processes
# ---------------------------------------------------------------------------------------------


class Chaos:
    """Settings shared by the scenarios of one chaos run."""

    def __init__(self, workdir: Path, *, fast: bool, seed: int):
        self.workdir = workdir
        self.fast = fast
        self.seed = seed
        self.api_key = API_KEY if fast else None
        self._base_lock = threading.Lock()
        self._base: Path | None = None

    def records(self) -> Corpus:
        return Corpus.cached([RECORDS]).copy()

    def base_catalog(self) -> Path:
        """A complete catalog of the records corpus, harvested once without faults."""
        with self._base_lock:
            if self._base is None:
                with Scenario(self, "base", "a clean harvest the other scenarios start from") as sc:
                    proc = sc.harvest("--batch-size", "50")
                    if proc.exit != 0:
                        raise RuntimeError(f"the base harvest failed: {proc.stderr[-2000:]}")
                self._base = sc.db
            return self._base


class Scenario:
    def __init__(self, chaos: Chaos, name: str, what: str, corpus: Corpus | None = None, *, db: Path | None = None):
        self.chaos = chaos
        self.name = name
        self.dir = chaos.workdir / re.sub(r"[^\w.-]+", "_", name)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.db = db or self.dir / "catalog.db"
        self.rng = random.Random(f"{chaos.seed}/{name}")
        self.corpus = corpus if corpus is not None else chaos.records()
        self.server = EutilsStandIn(self.corpus, seed=self.rng.randrange(1 << 30))
        self.limit = 10 if chaos.api_key else 3
        self.row = Row(name, what)
        self.procs: list[Proc] = []
        self.complete_at_success: set[int] = set()  # what the catalog held after its last successful run
        self._t0 = 0.0

    def __enter__(self) -> Scenario:
        self._t0 = time.monotonic()
        self.server.start()
        # A killed harvester resets its connections: expected here, not worth a traceback.
        # An instance's method replaced on purpose, as http.server documents handle_error for.
        self.server._httpd.handle_error = lambda request, address: None  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc) -> None:
        self.server.stop()
        self.row.seconds = round(time.monotonic() - self._t0, 1)

    # -- running the harvester ----------------------------------------------------------------

    def env(self, **extra: str) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("NCBI_", "CTGOV_", "CATALOG_DB"))}
        env.update(
            NCBI_EUTILS_URL=self.server.url,
            NCBI_EMAIL="chaos-tests@example.org",
            HARVEST_SOURCES="pubmed",
            NCBI_TOOL="ketamine-catalog-chaos",
            NCBI_BACKOFF_BASE="0.05",
            NCBI_BACKOFF_CAP="1",
            PYTHONPATH=HARVESTER_PYTHONPATH,
        )
        if self.chaos.api_key:
            env["NCBI_API_KEY"] = self.chaos.api_key
        env.update(extra)
        return env

    def start(self, *args: str, env: dict | None = None, command: list[str] | None = None) -> dict:
        begin = len(self.server.requests_log)
        popen = subprocess.Popen(
            command or [sys.executable, "-m", "harvest", "run", "--db", str(self.db), *args],
            cwd=ROOT,
            env=env or self.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        return {
            "popen": popen,
            "begin": begin,
            "before": stored_pmids(self.db),
            "t0": time.monotonic(),
            "label": " ".join(args) or "run",
        }

    def wait(self, running: dict, timeout: float = 600) -> Proc:
        popen = running["popen"]
        try:
            out, err = popen.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            popen.kill()
            out, err = popen.communicate()
            self.problem(f"a harvester process ran longer than {timeout:.0f} s and was stopped")
        end = len(self.server.requests_log)
        proc = Proc(
            running["label"], popen.returncode, out, err, time.monotonic() - running["t0"], (running["begin"], end)
        )
        # Records an interrupted run had stored in full, fetched again: resumption failed.
        interrupted_work = running["before"] - self.complete_at_success
        again = self.fetched_pmids(running["begin"], end) & interrupted_work
        proc.refetched = len(again)
        if again:
            self.problem(f"a run fetched again {len(again)} records an interrupted run had stored ({_sample(again)})")
        self.row.refetched += len(again)
        if proc.exit == 0:
            self.complete_at_success = stored_pmids(self.db)
        self.procs.append(proc)
        self.row.exits.append(proc.shown_exit)
        return proc

    def harvest(self, *args: str, env: dict | None = None, timeout: float = 600) -> Proc:
        return self.wait(self.start(*args, env=env), timeout)

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        """Another harvest command (status) on this catalog."""
        return subprocess.run(
            [sys.executable, "-m", "harvest", *args, "--db", str(self.db)],
            cwd=ROOT,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=120,
        )

    def fetched_pmids(self, begin: int, end: int) -> set[int]:
        """PMIDs the efetch requests in the log span asked for (by id or by history position)."""
        pmids: set[int] = set()
        for entry in self.server.requests_log[begin:end]:
            if entry.endpoint != "efetch":
                continue
            params = entry.params
            if params.get("id"):
                pmids |= {int(t) for t in re.split(r"[\s,+]+", params["id"]) if t.isdigit()}
            elif params.get("WebEnv"):
                query = (
                    self.server.history.get(params["WebEnv"], {})
                    .get("queries", {})
                    .get(int(params.get("query_key") or 0), [])
                )
                start = int(params.get("retstart") or 0)
                pmids |= set(query[start : start + int(params.get("retmax") or 20)])
        return pmids

    # -- checks -------------------------------------------------------------------------------

    def problem(self, text: str) -> None:
        self.row.problems.append(text)

    def expect(self, condition: bool, check: str, detail: str = "") -> bool:
        if condition:
            self.row.checks.append(check)
        else:
            self.problem(check + (f" -- {detail}" if detail else ""))
        return bool(condition)

    def note(self, text: str) -> None:
        self.row.notes.append(text)

    def check_integrity(self, when: str, *, complete: bool = False, final: bool = False) -> None:
        problems, _ = integrity(self.db, self.corpus, complete=complete, final=final)
        self.expect(not problems, f"catalog consistent {when}", "; ".join(problems))

    def expect_one_line_failure(self, proc: Proc, *needles: str, code: int = 1) -> str:
        """A failed run as cron sees it: exit `code`, exactly one `harvest: error:` line naming `needles`."""
        line = proc.error_lines[0] if len(proc.error_lines) == 1 else ""
        self.expect(proc.exit == code, f"run exits {code}", f"exit {proc.exit}: {proc.stderr[-600:]}")
        self.expect(
            len(proc.error_lines) == 1 and "Traceback" not in proc.stderr,
            "one-line reason on stderr, no traceback",
            proc.stderr[-1500:],
        )
        for needle in needles:
            self.expect(needle.lower() in line.lower(), f"the reason names {needle!r}", line or proc.stderr[-400:])
        return line

    def conclude(self, *, complete: bool = True, since_request: int = 0, since_run: int = 0) -> Row:
        """The row: counts from the stand-in's log (from `since_request` on) and the catalog's
        runs (after `since_run`), and the integrity checks of the whole catalog."""
        row = self.row
        log = list(self.server.requests_log)[since_request:]
        row.requests = len(log)
        row.faults = sum(1 for e in log if e.fault and e.fault != "rate_limit")
        row.rate_violations = self.server.rate_violations(limit=self.limit, window=1.0)
        self.expect(
            row.rate_violations == 0,
            "no request over the rate limit",
            f"{row.rate_violations} over {self.limit}/s; 429 for it: {self.server.count(fault='rate_limit')}",
        )
        runs = run_rows(self.db)
        row.retries = sum(r["retries"] or 0 for r in runs if r["id"] > since_run)
        row.promised = runs[-1]["records_promised"] or 0 if runs else 0
        problems, counts = integrity(self.db, self.corpus, complete=complete, final=True)
        self.expect(not problems, "catalog consistent at the end", "; ".join(problems))
        row.stored, row.served = counts["stored"], counts["served"]
        row.lost, row.duplicates = counts["lost"], counts["duplicates"]
        return row


# ---------------------------------------------------------------------------------------------
# Harvest scenarios
# ---------------------------------------------------------------------------------------------

SCENARIOS: dict[str, Callable[[Chaos], list[Row]]] = {}


def scenario(name: str):
    def register(fn):
        SCENARIOS[name] = fn
        return fn

    return register


def _clones(
    corpus: Corpus, n: int, *, first: int = CLONE_BASE, crdt: dt.date, mdat: dt.date | None = None
) -> list[int]:
    """`n` real records cloned under new PMIDs, created (and revised) on the given days."""
    made: list[int] = []
    sources = [p for p in corpus.pmids() if p < CLONE_BASE]
    i = 0
    while len(made) < n:
        source = sources[i % len(sources)]
        i += 1
        try:
            made.append(corpus.add_clone(first + len(made), source, crdt=crdt, mdat=mdat or crdt).pmid)
        except ValueError:  # a record without the history dates or DateRevised to set
            continue
    return made


def _simple(
    chaos: Chaos, name: str, what: str, arm: Callable[[Scenario], object], *args: str, env: dict | None = None
) -> list[Row]:
    """A new catalog harvested once under faults: the run must succeed with everything stored."""
    with Scenario(chaos, name, what) as sc:
        arm(sc)
        proc = sc.harvest(*args, env=sc.env(**(env or {})))
        sc.expect(proc.exit == 0, "the run succeeds despite the faults", proc.stderr[-1500:])
        sc.expect(bool(sc.server.faults_seen()), "faults were injected")
        runs = run_rows(sc.db)
        by_id = sum(1 for e in sc.server.requests_log if e.endpoint == "efetch" and e.params.get("id"))
        if runs:
            sc.expect(runs[-1]["retries"] >= 1 or by_id >= 1, "the harvester retried (or fell back to efetch by id)")
        if by_id:
            sc.note(f"{by_id} efetch requests by id after the history server failed")
    return [sc.conclude()]


@scenario("every-3rd")
def every_third(chaos: Chaos) -> list[Row]:
    kinds = list(DEFAULT_RANDOM_KINDS) + ([] if chaos.fast else ["timeout"])
    shuffled = random.Random(f"{chaos.seed}/every-3rd/kinds").sample(kinds, len(kinds))

    def arm(sc):
        sc.server.faults.every(3, shuffled, seconds=3)  # `seconds`: how long a timeout fault stays silent
        sc.note("kinds in turn: " + ", ".join(shuffled))

    return _simple(
        chaos,
        "every-3rd",
        "every 3rd request fails, kinds in a seeded order",
        arm,
        "--batch-size",
        "10",
        env={"NCBI_TIMEOUT": "2"},
    )


@scenario("random-30%")
def random_faults(chaos: Chaos) -> list[Row]:
    return _simple(
        chaos,
        "random-30%",
        "each request fails with p=0.3, kind drawn at random (seeded)",
        lambda sc: sc.server.faults.random(sc.rng.randrange(1 << 30), 0.3),
        "--batch-size",
        "10",
    )


@scenario("truncated")
def truncated(chaos: Chaos) -> list[Row]:
    # p = 0.3: eight failures in a row (the harvester's tries) stay below one in 10,000 per request.
    return _simple(
        chaos,
        "truncated",
        "3 in 10 answers cut short (Content-Length cut, or connection closed)",
        lambda sc: sc.server.faults.random(
            sc.rng.randrange(1 << 30), 0.3, ["truncated", "short_read"], fraction=round(sc.rng.uniform(0.1, 0.9), 2)
        ),
        "--batch-size",
        "20",
    )


@scenario("error-in-200")
def error_in_200(chaos: Chaos) -> list[Row]:
    return _simple(
        chaos,
        "error-in-200",
        "3 in 10 answers are 'Search Backend failed' inside HTTP 200",
        lambda sc: sc.server.faults.random(sc.rng.randrange(1 << 30), 0.3, ["error_in_200"]),
        "--batch-size",
        "20",
    )


@scenario("webenv-expiry")
def webenv_expiry(chaos: Chaos) -> list[Row]:
    def arm(sc):
        sc.server.faults.add("webenv_expired", path="efetch", after=2, times=1)

        def expire_all(server, entry):
            if entry.fault == "webenv_expired":
                server.expire_webenv()  # every WebEnv of the run, not only the one asked for

        sc.server.on_handled.append(expire_all)

    rows = _simple(
        chaos,
        "webenv-expiry",
        "the history server forgets every WebEnv after the 2nd efetch",
        arm,
        "--batch-size",
        "20",
    )
    return rows


@scenario("outage")
def outage(chaos: Chaos) -> list[Row]:
    seconds = 1.5 if chaos.fast else 60.0
    env = {} if chaos.fast else {"NCBI_BACKOFF_BASE": "1", "NCBI_BACKOFF_CAP": "60", "NCBI_MAX_TRIES": "8"}
    name = "outage-60s" if not chaos.fast else "outage"
    with Scenario(
        chaos,
        name,
        f"every request answers 503 for {seconds:g} s from the 3rd efetch on"
        + ("" if chaos.fast else " (production backoff)"),
    ) as sc:
        sc.server.faults.add("outage", path="efetch", after=2, seconds=seconds)
        proc = sc.harvest("--batch-size", "20", env=sc.env(**env))
        sc.expect(proc.exit == 0, "the run rides the outage out", proc.stderr[-1500:])
        answered = [e for e in sc.server.requests_log if e.fault == "outage"]
        sc.expect(bool(answered), "the outage was hit")
        after = [e for e in sc.server.requests_log if answered and e.t > answered[-1].t]
        if after:
            sc.note(
                f"{len(answered)} requests answered 503 over {answered[-1].t - answered[0].t:.1f} s; "
                f"the next came {after[0].t - answered[0].t:.1f} s after the outage began"
            )
    return [sc.conclude()]


@scenario("count-grows")
def count_grows(chaos: Chaos) -> list[Row]:
    """PubMed indexes records while we harvest, and its index lags."""
    with Scenario(
        chaos,
        "count-grows",
        "5 records appear between esearch and efetch; then 3 appear "
        "dated 2 days back (a lagging index) and 2 are revised",
    ) as sc:
        sc.server.grow_after_esearch(5, crdt=today())
        first = sc.harvest("--batch-size", "50")
        grown = set(sc.server.grown)
        sc.expect(first.exit == 0, "the first run succeeds", first.stderr[-800:])
        sc.expect(
            len(grown) == 5 and not grown & stored_pmids(sc.db),
            "the first run stores what its search listed, not what appeared after it",
        )
        lagging = _clones(sc.corpus, 3, first=CLONE_BASE + 1000, crdt=today() - dt.timedelta(days=2))
        revised = [p for p in sc.corpus.pmids() if p not in grown and p < CLONE_BASE][:2]
        for pmid in revised:
            sc.server.revise(pmid, mdat=today())
        second = sc.harvest("--batch-size", "50")
        sc.expect(second.exit == 0, "the next (incremental) run succeeds", second.stderr[-800:])
        runs = run_rows(sc.db)
        last = runs[-1]
        sc.expect(last["mode"] == "incremental", "the second run is incremental", last["mode"])
        sc.expect(
            (last["new"], last["updated"]) == (8, 2),
            "it stores the 5 grown and 3 lagging records and the 2 revisions",
            f"new {last['new']}, updated {last['updated']}",
        )
        sc.expect(grown | set(lagging) <= stored_pmids(sc.db), "nothing that appeared is skipped")
    return [sc.conclude()]


@scenario("sigkill")
def sigkill(chaos: Chaos) -> list[Row]:
    kills = 3 if chaos.fast else 10
    name = f"sigkill-x{kills}"
    with Scenario(chaos, name, f"SIGKILL at random points, {kills} times, then a run to the end") as sc:
        batch = "5"
        first_start = None
        for i in range(kills):
            how = sc.rng.choice(["time", "in-flight", "after-answer"])
            running = sc.start("--batch-size", batch)
            pid = running["popen"].pid
            fired = threading.Event()

            def kill(pid=pid, fired=fired):
                if not fired.is_set():
                    fired.set()
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass

            timer = None
            hook_list = None
            if how == "time":
                delay = sc.rng.uniform(0.05, 1.6)
                timer = threading.Timer(delay, kill)
                timer.start()
                point = f"{delay:.2f} s after start"
            else:
                nth = sc.rng.randint(1, 3)
                delay = sc.rng.uniform(0.0, 0.08)
                seen = [0]
                if how == "in-flight":  # the request has arrived, its answer is not sent yet

                    def on_arrival(server, entry, nth=nth, seen=seen):
                        if entry.endpoint == "efetch":
                            seen[0] += 1
                            if seen[0] == nth:
                                kill()

                    hook, hook_list = on_arrival, sc.server.on_request
                    point = f"with efetch #{nth} in flight"
                else:  # the answer is on its way: the process is parsing or storing it

                    def on_answer(server, entry, nth=nth, seen=seen, delay=delay):
                        if entry.endpoint == "efetch" and entry.status == 200:
                            seen[0] += 1
                            if seen[0] == nth:
                                threading.Timer(delay, kill).start()

                    hook, hook_list = on_answer, sc.server.on_handled
                    point = f"{delay * 1000:.0f} ms after efetch #{nth} was answered"
                hook_list.append(hook)
            proc = sc.wait(running, timeout=300)
            if timer:
                timer.cancel()
            if hook_list is not None:
                hook_list.remove(hook)
            sc.expect(proc.exit == KILLED, f"kill {i + 1} ({point}) lands before the run ends", f"exit {proc.exit}")
            if sc.db.exists():
                sc.note(f"kill {i + 1}: {point}; {len(stored_pmids(sc.db))} stored")
                sc.check_integrity(f"after kill {i + 1}")
            else:
                sc.note(f"kill {i + 1}: {point}; before the catalog was created")
            runs = run_rows(sc.db)
            if runs and first_start is None:
                first_start = runs[0]["started_at"][:10]
        final = sc.harvest("--batch-size", batch)
        sc.expect(final.exit == 0, "the run after the kills finishes the job", final.stderr[-1500:])
        # How close a restarted run's first request came to the killed run's last ones: NCBI
        # counts per client, and the new process cannot know when the dead one last sent.
        log = sc.server.requests_log
        gaps = []
        for old, new in zip(sc.procs, sc.procs[1:]):
            old_times = [e.t for e in log[old.requests[0] : old.requests[1]]]
            if old_times and new.requests[1] > new.requests[0]:
                first = log[new.requests[0]].t
                gaps.append((first - old_times[-1], sum(1 for t in old_times if t > first - 1.0)))
        if gaps:
            gap, near = min(gaps)
            sc.note(
                f"restarts: the first request came at least {gap:.2f} s after the killed run's last "
                f"({near} of the killed run's requests in the second before it)"
            )
        runs = run_rows(sc.db)
        sc.expect(
            all(r["status"] == "aborted" for r in runs[:-1]) and runs[-1]["status"] == "success",
            "killed runs are marked aborted, the last succeeds",
            str([r["status"] for r in runs]),
        )
        starts = [r["started_at"][:10] for r in runs[:-1]]
        if starts:
            sc.expect(
                runs[-1]["watermark"] == min(starts),
                "the watermark is the start of the earliest killed run",
                f"{runs[-1]['watermark']} vs {min(starts)}",
            )
    return [sc.conclude()]


def _tmpfs(path: Path, size: int, *, remount: bool = False) -> bool:
    options = f"size={max(4096, size // 4096 * 4096)}" + (",remount" if remount else "")
    args: list[str | Path] = (
        ["mount", "-o", options, path] if remount else ["mount", "-t", "tmpfs", "-o", options, "tmpfs", path]
    )
    try:
        return subprocess.run(args, capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


_PAGE_CAP = """\
import sys
import harvest.store as store
_open = store.open_db
def open_db(path):  # the disk is 'full' past {pages} pages: SQLite answers SQLITE_FULL as on ENOSPC
    db = _open(path)
    db.execute("pragma max_page_count = {pages}")
    return db
store.open_db = open_db
from harvest.cli import cli
sys.argv[0] = "harvest"
cli()
"""


# Where the disk fills, as fractions of a complete catalog's size: before the schema fits, in
# the first batch (the failure itself cannot be recorded), and half-way.
DISK_PHASES = (0.03, 0.12, 0.5)
DISK_PHASES_FAST = (0.12, 0.5)


@scenario("disk-full")
def disk_full(chaos: Chaos) -> list[Row]:
    base = chaos.base_catalog()
    full_size = base.stat().st_size
    mount = Path(tempfile.mkdtemp(prefix="chaos-disk-", dir=chaos.workdir))
    phases = DISK_PHASES_FAST if chaos.fast else DISK_PHASES
    sizes = [int(full_size * f) for f in phases]
    mounted = os.environ.get("CHAOS_DISK") != "pages" and os.geteuid() == 0 and _tmpfs(mount, sizes[0])
    how = (
        f"tmpfs of {', '.join(str(n // 1024) for n in sizes)} KiB (a full catalog: {full_size // 1024} KiB)"
        if mounted
        else "SQLite's max_page_count at "
        + ", ".join(f"{f:.0%}" for f in phases)
        + " of a full catalog's pages (no tmpfs)"
    )
    try:
        with Scenario(chaos, "disk-full", f"the disk fills: {how}; then space is freed", db=mount / "catalog.db") as sc:
            kept: set[int] = set()
            for phase, size in enumerate(sizes):
                if mounted and phase:
                    _tmpfs(mount, size, remount=True)
                command = (
                    None
                    if mounted
                    else [
                        sys.executable,
                        "-c",
                        _PAGE_CAP.format(pages=max(1, size // 4096)),
                        "run",
                        "--db",
                        str(sc.db),
                        "--batch-size",
                        "20",
                    ]
                )
                proc = sc.wait(sc.start("--batch-size", "20", command=command))
                line = sc.expect_one_line_failure(proc, "full")
                sc.note(f"{size // 1024} KiB: " + line.removeprefix("harvest: error: ")[:260])
                now = stored_pmids(sc.db)
                sc.expect(kept <= now, f"what was stored is kept ({size // 1024} KiB)", f"{len(kept - now)} gone")
                kept = now
                if not run_rows(sc.db):  # not even the run could be recorded: what does the operator see?
                    status = sc.cli("status")
                    if "Traceback" in status.stderr:
                        # harvest/cli.py `status` opens the catalog read-write (migrations): not ours to fix.
                        sc.note(
                            "KNOWN: `harvest status` on a catalog the full disk left without its schema "
                            "fails with a traceback: " + status.stderr.strip().splitlines()[-1][:120]
                        )
            sc.expect(
                0 < len(kept) < len(sc.corpus),
                "the batches stored before the disk filled are kept",
                f"{len(kept)} stored",
            )
            status = sc.cli("status")  # on the still full disk
            failed = [r for r in run_rows(sc.db) if r["status"] == "failed"]
            shown = status.stdout.split("recent runs:")[-1]
            sc.expect(
                status.returncode == 0
                and bool(failed)
                and shown.count(" failed ") == len(failed)
                and "disk is full" in shown,
                "`harvest status` shows the failed runs and why",
                status.stdout[-800:] + status.stderr[-300:],
            )
            if mounted:
                _tmpfs(mount, full_size * 4, remount=True)
            sc.check_integrity("after the disk filled")
            final = sc.harvest("--batch-size", "20")
            sc.expect(final.exit == 0, "with space again the next run finishes the job", final.stderr[-1200:])
        return [sc.conclude()]
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(mount)], capture_output=True, timeout=60)


@scenario("two-at-once")
def two_at_once(chaos: Chaos) -> list[Row]:
    with Scenario(chaos, "two-at-once", "two runs started together on one catalog") as sc:
        sc.server.faults.add("slow", times=1, path="esearch", seconds=1.5)  # the holder keeps the lock a while
        a, b = sc.start("--batch-size", "50"), sc.start("--batch-size", "50")
        pa, pb = sc.wait(a), sc.wait(b)
        sc.expect(
            [pa.exit, pb.exit] in ([0, 3], [3, 0]),
            "one run harvests, the other exits 3 at once",
            f"exits {pa.exit}, {pb.exit}",
        )
        loser = pa if pa.exit == 3 else pb
        sc.expect(
            len(loser.error_lines) == 1 and "another harvest is already running" in loser.error_lines[0],
            "the refused run says why in one line",
            loser.stderr[-500:],
        )
        sc.expect(
            sc.server.count("esearch") == 1,
            "only one run talked to E-utilities",
            f"{sc.server.count('esearch')} searches",
        )
        if not chaos.fast:
            third = sc.harvest("--batch-size", "50")
            sc.expect(third.exit == 0, "the next run after them works", third.stderr[-500:])
    return [sc.conclude()]


HOSTILE = [  # (variant or fault kind, on which endpoint, what the refusal must say)
    ("xxe", "efetch", "entity declarations"),
    ("entity_bomb", "efetch", "entity declarations"),
    ("huge_text", "efetch", "text node too large"),
    ("invalid_utf8", "efetch", "UTF-8"),
    ("esummary", "efetch", "eSummaryResult"),
    ("elink", "efetch", "eLinkResult"),
    ("html_200", "efetch", "html"),
    ("xxe", "esearch", "entit"),
    ("entity_bomb", "esearch", "entit"),
]
HOSTILE_FAST = [h for h in HOSTILE if h[0] in ("xxe", "invalid_utf8", "esummary")]


@scenario("hostile")
def hostile(chaos: Chaos) -> list[Row]:
    """Hostile answers on an existing catalog: each run is refused, fails, keeps its work."""
    tries = "3" if chaos.fast else "5"
    variants = HOSTILE_FAST if chaos.fast else HOSTILE
    corpus = chaos.records()
    new = _clones(corpus, 2 * len(variants) + 4, crdt=today())
    rows: list[Row] = []
    with Scenario(chaos, "hostile", "hostile answers to an incremental run", corpus) as sc:
        shutil.copyfile(chaos.base_catalog(), sc.db)
        last_success = run_rows(sc.db)[-1]
        sc.complete_at_success = stored_pmids(sc.db)
        shown_later: list[tuple[Row, int, str]] = []
        for variant, endpoint, says in variants:
            label = f"hostile: {variant}" + (" (esearch)" if endpoint == "esearch" else "")
            sub = Row(label, f"every {endpoint} answer after the first is refused: {says}")
            sc.row, main = sub, sc.row
            kind = "html_200" if variant == "html_200" else "hostile"
            options: dict[str, Any] = {} if kind == "html_200" else {"variant": variant}
            sc.server.faults.clear()
            fault = sc.server.faults.add(
                kind, path=endpoint, after=0 if endpoint == "esearch" else 1, times=None, **options
            )
            before = stored_pmids(sc.db)
            begin = len(sc.server.requests_log)
            t0 = time.monotonic()
            proc = sc.harvest("--batch-size", "2", env=sc.env(NCBI_MAX_TRIES=tries))
            line = sc.expect_one_line_failure(proc, endpoint, says)
            sc.expect(
                fault.fired == int(tries),
                f"the refused request was tried {tries} times",
                f"{fault.fired} hostile answers",
            )
            if endpoint == "efetch":
                sc.expect("could not store" in line, "the reason says what it could not store", line)
            after = stored_pmids(sc.db)
            sc.expect(before <= after, "what earlier runs stored is kept")
            expected_new = 2 if endpoint == "efetch" else 0
            sc.expect(
                len(after - before) == expected_new,
                f"the {expected_new} records fetched before the refusal are stored",
                f"{len(after - before)} new",
            )
            runs = run_rows(sc.db)
            sc.expect(
                runs[-1]["status"] == "failed" and runs[-1]["watermark"] is None, "the failed run sets no watermark"
            )
            sc.expect(
                max((r for r in runs if r["status"] == "success"), key=lambda r: r["id"])["watermark"]
                == last_success["watermark"],
                "the watermark stays where it was",
            )
            shown_later.append((sub, runs[-1]["id"], says))
            sc.check_integrity(f"after the {label} run")
            log = sc.server.requests_log[begin:]
            sub.requests, sub.faults = len(log), sum(1 for e in log if e.fault and e.fault != "rate_limit")
            sub.retries, sub.promised = runs[-1]["retries"] or 0, runs[-1]["records_promised"] or 0
            sub.stored, sub.served, sub.lost = len(after), len(corpus), None
            sub.seconds = round(time.monotonic() - t0, 1)
            sub.notes.append(line.removeprefix("harvest: error: ")[:300])
            sc.row = main
            rows.append(sub)
        # The operator's view of all those failures: one `harvest status`.
        status = sc.cli("status", "--runs", "50").stdout
        for sub, run_id, says in shown_later:
            block = status.split(f"\n  #{run_id} ", 1)[-1].split("\n  #", 1)[0]
            ok = f"#{run_id} " in status and block.split()[1] == "failed" and says.lower() in block.lower()
            (
                sub.checks.append("`harvest status` shows the failed run and why")
                if ok
                else sub.problems.append(
                    f"`harvest status` does not show run {run_id} failed with {says!r}: {block[:300]}"
                )
            )
        sc.server.faults.clear()
        rerun_from, last_run = len(sc.server.requests_log), run_rows(sc.db)[-1]["id"]
        final = sc.harvest("--batch-size", "2")
        sc.expect(final.exit == 0, "with honest answers again the next run finishes the job", final.stderr[-800:])
        sc.expect(set(new) <= stored_pmids(sc.db), "every new record is stored")
        runs = run_rows(sc.db)
        failed_starts = [r["started_at"][:10] for r in runs if r["status"] == "failed"]
        sc.expect(
            runs[-1]["watermark"] == min(failed_starts),
            "the watermark is the start of the earliest failed run",
            f"{runs[-1]['watermark']} vs {min(failed_starts)}",
        )
        sc.row.what = "then honest answers: the next run finishes the job (integrity: the whole scenario)"
        sc.row.scenario = "hostile: clean rerun"
    final_row = sc.conclude(since_request=rerun_from, since_run=last_run)
    final_row.notes.append(f"the whole hostile scenario took {final_row.seconds} s")
    final_row.seconds = round(final.seconds, 1)
    # The per-variant rows share the stand-in: only their own span counts; rate is the whole.
    for sub in rows:
        sub.rate_violations = final_row.rate_violations
        if final_row.rate_violations:
            sub.problems.append("rate limit exceeded during the hostile scenario")
    return rows + [final_row]


# ---------------------------------------------------------------------------------------------
# The catalog side: Datasette serving a published catalog
# ---------------------------------------------------------------------------------------------

WRITES = [
    "insert into articles (pmid) values (1)",
    "update articles set title = 'owned'",
    "delete from articles",
    "drop table articles",
    "create table owned (x)",
    "replace into articles (pmid) values (1)",
    "with x as (select 1) insert into articles (pmid) select 1",
    "select 1; delete from articles",
    "pragma writable_schema = 1",
    "pragma journal_mode = delete",
    "attach database '{dir}/owned.db' as owned",
    "vacuum into '{dir}/owned.db'",
    "insert into articles_fts (articles_fts) values ('delete-all')",
    "select load_extension('{dir}/owned')",
    "select writefile('{dir}/owned.txt', 'x')",
]
HANGS = [  # (sql, what the refusal must say)
    ("with recursive c(x) as (select 1 union all select x + 1 from c) select count(*) from c", "took too long"),
    ("select count(*) from articles a, articles b, articles c, articles d", "took too long"),
    # One C call the time limit cannot interrupt: refused before it runs (db/plugins/catalog.py).
    ("select length(randomblob(999999999))", "not authorized to use function: randomblob"),
    ("select length(printf('%.*c', 999999999, 'x'))", "user-defined function raised exception"),
]
# The burst: 200 requests, 50 at a time, over the pages a popular catalog is read through, while
# searches for common words run beside them; every one answered 200, p95 under BURST_P95 s.
BURST_REQUESTS, BURST_AT_ONCE, BURST_P95 = 200, 50, 3.0
BURST_PAGES = [
    "/",
    "/catalog/articles",
    "/catalog/articles?_facet=pub_year",
    "/catalog/articles/{pmid}",
    "/catalog/articles/{pmid}",
    "/catalog/search?q=ketamine",
    "/catalog/search?q=depression",
    "/catalog/search?q=patients+treatment",
    "/catalog/articles?study_design=narrative_review",
]
COMMON_WORDS = ["the", "of", "and", "patients", "with", "in", "study", "depression"]


def _answer(r: requests.Response) -> tuple[bool, str]:
    """(answered with rows, error text) of a Datasette JSON answer."""
    try:
        data = r.json()
    except ValueError:
        return False, f"HTTP {r.status_code}, not JSON"
    if not isinstance(data, dict):
        return r.status_code == 200, ""
    return r.status_code == 200 and data.get("ok") is not False and not data.get("error"), str(data.get("error") or "")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _load_publish():
    spec = importlib.util.spec_from_file_location("catalog_publish", ROOT / "db" / "publish.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def _datasette(site: Path, log: Path):
    """`datasette serve SITE` on a free loopback port, as `make serve` runs it; yields its URL."""
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    with open(log, "w") as log_file:
        server = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("datasette")),
                "serve",
                str(site),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            cwd=site.parent,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 90
            while server.poll() is None and time.monotonic() < deadline:
                try:
                    if requests.get(base + "/-/versions.json", timeout=2).status_code == 200:
                        break
                except requests.RequestException:
                    pass
                time.sleep(0.2)
            if server.poll() is not None or time.monotonic() >= deadline:
                raise RuntimeError("datasette did not start: " + log.read_text()[-2000:])
            yield base, server
        finally:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def _crafted_writes(base: str, workdir: Path) -> tuple[list[str], set[str]]:
    """(writes that were answered, the errors the refused ones got)."""
    accepted, refusals = [], set()
    for sql in WRITES:
        sql = sql.format(dir=workdir)
        r = requests.get(base + "/catalog.json", params={"sql": sql}, timeout=60)
        answered, error = _answer(r)
        if answered or r.status_code == 200:
            accepted.append(f"{sql!r} -> {r.status_code} {r.text[:120]}")
        refusals.add(re.sub(r"<[^>]+>|\s+", " ", error).strip()[:60])
    r = requests.post(base + "/catalog", data={"sql": "delete from articles"}, timeout=30)
    if r.status_code not in (403, 405):
        accepted.append(f"POST /catalog -> {r.status_code}")
    return accepted, refusals


def _count_articles(base: str) -> int | None:
    r = requests.get(
        base + "/catalog.json", params={"sql": "select count(*) as n from articles", "_shape": "array"}, timeout=30
    )
    return r.json()[0]["n"] if r.status_code == 200 else None


@scenario("catalog")
def catalog(chaos: Chaos) -> list[Row]:
    row = Row("catalog", "Datasette on a published copy: immutable, time-limited, crafted ?sql=, 200 at once, a burst")
    t0 = time.monotonic()
    site = chaos.workdir / "site"
    # The harvested catalog plus crafted copies of a real record (a 1 MB abstract, bidi controls
    # in a title: tests/hostile_records.py), loaded as a user loads files.
    from tests.hostile_records import BIG, crafted_records

    hostile = chaos.workdir / "hostile-catalog.db"
    shutil.copyfile(chaos.base_catalog(), hostile)
    (chaos.workdir / "crafted.xml").write_bytes(crafted_records())
    loaded = subprocess.run(
        [sys.executable, "-m", "harvest", "import", str(chaos.workdir / "crafted.xml"), "--db", str(hostile)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    if loaded.returncode != 0:
        row.problems.append(f"crafted records not imported: {loaded.stderr[-300:]}")
    published = _load_publish().build(hostile, site)
    digest = hashlib.sha256(published.read_bytes()).hexdigest()

    def check(ok: bool, name: str, detail: str = "") -> None:
        (row.checks.append(name) if ok else row.problems.append(name + (f" -- {detail}" if detail else "")))

    try:
        with _datasette(site, chaos.workdir / "datasette.log") as (base, server):
            databases = requests.get(base + "/-/databases.json", timeout=30).json()
            catalog_db = [d for d in databases if d["name"] == "catalog"]
            check(
                bool(catalog_db) and catalog_db[0]["is_mutable"] is False,
                "the catalog is served immutable",
                json.dumps(databases)[:300],
            )
            settings = requests.get(base + "/-/settings.json", timeout=30).json()
            limit_ms = settings.get("sql_time_limit_ms") or 0
            check(0 < limit_ms <= 10_000, f"SQL has a time limit ({limit_ms} ms)", str(settings))
            pmids = sorted(stored_pmids(published))
            articles = len(pmids)

            # Crafted SQL that tries to write: refused, and the file is untouched.
            accepted, refusals = _crafted_writes(base, chaos.workdir)
            check(not accepted, f"{len(WRITES)} crafted writes and a POST are refused", "; ".join(accepted))
            row.notes.append("writes refused with: " + "; ".join(sorted(refusals)))
            created = [p.name for p in chaos.workdir.glob("owned*")]
            check(not created, "no file written by crafted SQL", str(created))

            # Crafted SQL that tries to hang: cut off at the time limit, one at a time and many at once.
            slow = []
            hangs = [HANGS[0], HANGS[-1]] if chaos.fast else HANGS
            for sql, says in hangs:
                started = time.monotonic()
                r = requests.get(base + "/catalog.json", params={"sql": sql}, timeout=limit_ms / 1000 + 60)
                took = time.monotonic() - started
                answered, error = _answer(r)
                if answered or says not in error:
                    slow.append(f"{sql[:40]!r} -> HTTP {r.status_code} {error[:80]!r}")
                if took > limit_ms / 1000 + 5:
                    slow.append(f"{sql[:40]!r} took {took:.1f} s")
                row.notes.append(f"refused after {took:.1f} s (HTTP {r.status_code}, {says!r}): {sql[:60]}")
            check(not slow, f"{len(hangs)} hanging queries are cut off at the time limit", "; ".join(slow))
            at_once = 0 if chaos.fast else 6  # each burns a CPU for the whole time limit
            if at_once:
                with concurrent.futures.ThreadPoolExecutor(8) as pool:
                    hung = [
                        pool.submit(
                            requests.get,
                            base + "/catalog.json",
                            params={"sql": HANGS[0][0]},
                            timeout=limit_ms / 1000 * 8 + 60,
                        )
                        for _ in range(at_once)
                    ]
                    time.sleep(0.3)
                    probe_started = time.monotonic()
                    probe = requests.get(base + f"/catalog/articles/{pmids[0]}.json", timeout=limit_ms / 1000 * 8 + 60)
                    probe_took = time.monotonic() - probe_started
                    for f in hung:
                        f.result()
                check(
                    probe.status_code == 200 and probe_took < limit_ms / 1000 * 3 + 10,
                    f"a page is served while {at_once} hanging queries run ({probe_took:.1f} s)",
                    f"status {probe.status_code}",
                )

            # 200 concurrent requests: every one answered 200.
            rng = random.Random(f"{chaos.seed}/catalog")
            light = [
                "/-/versions.json",
                "/catalog/articles/{pmid}.json",
                "/catalog/articles.json?_size=10",
                "/catalog.json?sql=select+count(*)+from+articles",
                "/catalog/search.json?q=depression",
            ]
            pages = [
                "/",
                "/catalog",
                "/catalog/articles",
                "/catalog/articles/{pmid}",
                "/catalog/search?q=ketamine",
                "/catalog/articles?_facet=pub_year",
            ]
            mix = light + ([] if chaos.fast else pages)
            urls = [base + rng.choice(mix).format(pmid=rng.choice(pmids)) for _ in range(200)]
            barrier = threading.Barrier(len(urls))
            results: list[tuple[int | str, float]] = [(0, 0.0)] * len(urls)

            def hit(i: int) -> None:
                try:
                    barrier.wait(timeout=60)
                except threading.BrokenBarrierError:
                    pass
                started = time.monotonic()
                try:
                    results[i] = (requests.get(urls[i], timeout=120).status_code, time.monotonic() - started)
                except requests.RequestException as exc:
                    results[i] = (type(exc).__name__, time.monotonic() - started)

            load_started = time.monotonic()
            threads = [threading.Thread(target=hit, args=(i,)) for i in range(len(urls))]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=300)
            wall = time.monotonic() - load_started
            errors = [f"{urls[i][len(base) :]} -> {s}" for i, (s, _) in enumerate(results) if s != 200]
            times = sorted(t for _, t in results)
            check(
                not errors,
                f"200 concurrent requests all answered 200 (in {wall:.1f} s, "
                f"p50 {statistics.median(times):.2f} s, max {times[-1]:.2f} s)",
                "; ".join(errors[:5]),
            )
            row.requests = len(WRITES) + 1 + len(hangs) + (at_once + 1 if at_once else 0) + len(urls)
            row.notes.append(
                f"200 concurrent: {len(errors)} errors, p50 {statistics.median(times):.2f} s, "
                f"p95 {times[int(len(times) * 0.95) - 1]:.2f} s, max {times[-1]:.2f} s, wall {wall:.1f} s"
            )

            # The burst, 50 at a time, while common-word searches run (each a new query); the full
            # run only (`make chaos`): on two shared cores it is a measurement, not a unit test.
            if not chaos.fast:
                burst_urls = [
                    base + rng.choice(BURST_PAGES).format(pmid=rng.choice(pmids)) for _ in range(BURST_REQUESTS)
                ]
                stop = threading.Event()
                beside: list[tuple[int | str, float]] = []  # (status or exception, seconds)

                def common_word_searches() -> None:
                    while not stop.is_set():
                        q = " OR ".join(rng.sample(COMMON_WORDS, 3)) + f" OR NOT zz{len(beside)}"
                        started = time.monotonic()
                        status: int | str
                        try:
                            status = requests.get(base + "/catalog/search", params={"q": q}, timeout=120).status_code
                        except requests.RequestException as exc:
                            status = type(exc).__name__
                        beside.append((status, time.monotonic() - started))

                def timed(url: str) -> tuple[int | str, float]:
                    started = time.monotonic()
                    try:
                        return requests.get(url, timeout=120).status_code, time.monotonic() - started
                    except requests.RequestException as exc:
                        return type(exc).__name__, time.monotonic() - started

                searcher = threading.Thread(target=common_word_searches)
                load_before = os.getloadavg()[0]
                burst_started = time.monotonic()
                searcher.start()
                with concurrent.futures.ThreadPoolExecutor(BURST_AT_ONCE) as pool:
                    burst = list(pool.map(timed, burst_urls))
                burst_wall = time.monotonic() - burst_started
                stop.set()
                searcher.join(timeout=200)
                burst_errors = [f"{burst_urls[i][len(base) :]} -> {s}" for i, (s, _) in enumerate(burst) if s != 200]
                burst_errors += [f"common-word search -> {s}" for s, _ in beside if s != 200]
                times = sorted(t for _, t in burst)
                p95 = times[int(len(times) * 0.95) - 1]
                check(
                    not burst_errors and p95 < BURST_P95,
                    f"{BURST_REQUESTS} requests {BURST_AT_ONCE} at a time beside {len(beside)} common-word searches: "
                    f"0 errors, p95 {p95:.2f} s < {BURST_P95:.0f} s",
                    f"p95 {p95:.2f} s; " + "; ".join(burst_errors[:5]),
                )
                row.requests += len(burst_urls) + len(beside)
                row.notes.append(
                    f"burst {BURST_REQUESTS} at {BURST_AT_ONCE}: {len(burst_errors)} errors, "
                    f"p50 {statistics.median(times):.2f} s, p95 {p95:.2f} s, max {times[-1]:.2f} s, "
                    f"wall {burst_wall:.1f} s; {len(beside)} common-word searches beside it "
                    f"(max {max((t for _, t in beside), default=0):.2f} s); load average "
                    f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after"
                )
            big = requests.get(base + "/catalog/search.json", params={"q": "ketamine", "_shape": "array"}, timeout=120)
            check(
                big.status_code == 200 and BIG in [r["pmid"] for r in big.json()],
                "a search lists the record with a 1 MB abstract",
                f"HTTP {big.status_code} {big.text[:200]}",
            )

            # Nothing changed on disk, and the server still answers.
            check(_count_articles(base) == articles, "the server still answers, counts unchanged")
            check(hashlib.sha256(published.read_bytes()).hexdigest() == digest, "the published file is byte-identical")
            row.stored = row.served = articles
            row.exits.append("ok" if server.poll() is None else str(server.returncode))
            check(server.poll() is None, "datasette is still running")
        if not chaos.fast:
            # `make serve` serves db/ itself, mutable (a harvest may be writing): no write either.
            live = chaos.workdir / "live"
            shutil.copytree(site, live, ignore=shutil.ignore_patterns("inspect-data.json", "catalog.db"))
            shutil.copyfile(published, live / "catalog.db")
            live_digest = hashlib.sha256((live / "catalog.db").read_bytes()).hexdigest()
            with _datasette(live, chaos.workdir / "datasette-live.log") as (live_base, _):
                mutable = [
                    d["is_mutable"]
                    for d in requests.get(live_base + "/-/databases.json", timeout=30).json()
                    if d["name"] == "catalog"
                ]
                accepted, _ = _crafted_writes(live_base, chaos.workdir)
                check(
                    mutable == [True] and not accepted and _count_articles(live_base) == articles,
                    "served mutable like `make serve` (db/ as is), crafted writes are refused too",
                    f"mutable {mutable}; " + "; ".join(accepted),
                )
            check(
                hashlib.sha256((live / "catalog.db").read_bytes()).hexdigest() == live_digest,
                "the live catalog file is byte-identical after them",
            )
    except Exception as exc:  # the servers could not be checked at all
        row.problems.append(f"catalog checks aborted: {type(exc).__name__}: {exc}")
    finally:
        row.seconds = round(time.monotonic() - t0, 1)
    return [row]


@scenario("trials")
def trials(chaos: Chaos) -> list[Row]:
    """ClinicalTrials.gov after PubMed: the registry stand-in (tests/ctgov_stand_in.py) throws
    each of its faults, the harvester is SIGKILLed in the middle of the trials run, and the
    next run must store every study the registry serves once, at the registry's pace."""
    from tests.ctgov_stand_in import CtgovStandIn, StudyStore

    rate = 4  # requests/s: the real registry's is 1; faster here so the scenario stays short
    with (
        Scenario(chaos, "trials", "ClinicalTrials.gov: its faults, then a kill mid-run") as sc,
        CtgovStandIn(StudyStore.recorded()) as registry,
    ):
        served = set(registry.store.topic)
        kinds = ["429", "503", "truncated", "malformed", "502"]
        for after, kind in enumerate(kinds):
            registry.faults.add(kind, times=1, path="/studies", after=2 * after)
        env = sc.env(
            HARVEST_SOURCES="pubmed,trials",
            CTGOV_API_URL=registry.url,
            CTGOV_PAGE_SIZE="1",
            CTGOV_REQUESTS_PER_SECOND=str(rate),
            CTGOV_BACKOFF_BASE="0.05",
            CTGOV_BACKOFF_CAP="1",
        )
        # The first run is killed once the registry has answered a few pages.
        running = sc.start(env=env)
        deadline = time.monotonic() + 300
        while len(registry.requests) < 4 and running["popen"].poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        killed = running["popen"].poll() is None
        if killed:
            running["popen"].send_signal(signal.SIGKILL)
        sc.wait(running)
        sc.expect(killed, "the harvester was killed during the trials run")
        proc = sc.harvest(env=env)
        sc.expect(proc.exit == 0, "the run after the kill succeeds despite the faults", proc.stderr[-1500:])
        with sqlite3.connect(sc.db) as conn:
            stored = [n for (n,) in conn.execute("select nct_id from trials")]
            runs = conn.execute("select status, mode from harvest_runs where source = 'trials' order by id").fetchall()
        sc.expect(
            set(stored) == served,
            "every study the registry serves is stored",
            f"missing {sorted(served - set(stored))}",
        )
        sc.expect(len(stored) == len(set(stored)), "no study stored twice")
        sc.expect(
            runs[:1] == [("aborted", "full (new catalog)")] and runs[-1][0] == "success",
            "the killed trials run is marked aborted, the next one sweeps in full",
            str(runs),
        )
        fired = sum(f.fired for f in registry.faults.faults)
        sc.expect(fired == len(kinds), "each registry fault was thrown", f"{fired} of {len(kinds)}")
        row = sc.conclude()
        over = registry.rate_violations(limit=rate)
        sc.expect(over == 0, "no request to the registry over its rate", f"{over} over {rate}/s")
        row.requests += len(registry.requests)
        row.faults += fired
        row.rate_violations += over
        row.stored += len(stored)
        row.served += len(served)
        row.lost = (row.lost or 0) + len(served - set(stored))
    return [row]


@scenario("citations")
def citations(chaos: Chaos) -> list[Row]:
    """OpenAlex after PubMed: the OpenAlex stand-in (tests/openalex_stand_in.py), serving a clone
    of a real recorded work for every PMID the PubMed stand-in serves, throws each of its faults;
    the harvester is SIGKILLed in the middle of the citations run, and the next run must read
    every record once, asking again only for what the killed run had not stored, at OpenAlex's pace."""
    from tests.openalex_stand_in import OpenalexStandIn, WorkStore, clone_for

    rate = 4  # requests/s: the real default is 10; slower here so that the kill lands mid-run
    with Scenario(chaos, "citations", "OpenAlex: its faults, then a kill mid-run") as sc:
        works = WorkStore.recorded()
        served = set(sc.corpus.pmids())
        clone_for(works, sorted(served))
        with OpenalexStandIn(works) as openalex:
            # A killed harvester resets its connections: expected here, not worth a traceback.
            openalex.server.handle_error = lambda request, client_address: None  # type: ignore[method-assign]
            kinds = ["429", "503", "truncated", "malformed", "502"]
            for after, kind in enumerate(kinds):
                openalex.faults.add(kind, times=1, path="/works", after=after)
            env = sc.env(
                HARVEST_SOURCES="pubmed,citations",
                OPENALEX_API_URL=openalex.url,
                OPENALEX_REQUESTS_PER_SECOND=str(rate),
                OPENALEX_BACKOFF_BASE="0.05",
                OPENALEX_BACKOFF_CAP="1",
            )
            running = sc.start(env=env)
            deadline = time.monotonic() + 300
            while len(openalex.requests) < 4 and running["popen"].poll() is None and time.monotonic() < deadline:
                time.sleep(0.02)
            killed = running["popen"].poll() is None
            if killed:
                running["popen"].send_signal(signal.SIGKILL)
            sc.wait(running)
            sc.expect(killed, "the harvester was killed during the citations run")
            with sqlite3.connect(sc.db) as conn:
                read_before = {p for (p,) in conn.execute("select pmid from citations")}
            asked_before = len(openalex.requests)
            proc = sc.harvest(env=env)
            sc.expect(proc.exit == 0, "the run after the kill succeeds despite the faults", proc.stderr[-1500:])
            asked_again = set()
            for _, params in openalex.requests[asked_before:]:
                asked_again |= {int(p) for p in params.get("filter", "pmid:").split(":", 1)[1].split("|") if p}
            with sqlite3.connect(sc.db) as conn:
                read = [p for (p,) in conn.execute("select pmid from citations where found = 1")]
                runs = conn.execute("select status from harvest_runs where source = 'citations' order by id").fetchall()
            sc.expect(
                set(read) == served, "every record OpenAlex knows has its count", f"missing {len(served - set(read))}"
            )
            sc.expect(len(read) == len(set(read)), "no record read twice into the catalog")
            sc.expect(
                not (asked_again & read_before),
                "the run after the kill asks only for what the killed run had not stored",
                f"{len(asked_again & read_before)} asked again",
            )
            sc.expect(
                runs[:1] == [("aborted",)] and runs[-1] == ("success",),
                "the killed citations run is marked aborted, the next one succeeds",
                str(runs),
            )
            fired = sum(f.fired for f in openalex.faults.faults)
            sc.expect(fired == len(kinds), "each OpenAlex fault was thrown", f"{fired} of {len(kinds)}")
            row = sc.conclude()
            over = openalex.rate_violations(limit=rate)
            sc.expect(over == 0, "no request to OpenAlex over its rate", f"{over} over {rate}/s")
            row.requests += len(openalex.requests)
            row.faults += fired
            row.rate_violations += over
    return [row]


@scenario("preprints")
def preprints(chaos: Chaos) -> list[Row]:
    """Europe PMC after PubMed: the Europe PMC stand-in (tests/europepmc_stand_in.py) serves its
    recorded 10-page cursorMark chain (the topic's preprints) and a real core MED record cloned
    under a served PMID naming a real preprint "Preprint in"; it throws each of its faults, the
    harvester is SIGKILLed in the middle of the chain, and the next run must store every preprint
    once, rewrite none the killed run had stored, link the published version once, at Europe
    PMC's pace; a run after that changes nothing and costs one search. A cursor chain cannot be
    resumed (the harvester keeps no cursorMark), so the run after the kill asks the chain's pages
    again: what it must not do is store their preprints again."""
    from tests.europepmc_stand_in import EuropepmcStandIn, World

    rate = 4  # requests/s: the real default is 2; faster here so that the scenario stays short
    with Scenario(chaos, "preprints", "Europe PMC: its faults, then a kill mid-chain") as sc:
        world = World()
        published = min(sc.corpus.pmids())  # a served PMID whose core record names a real preprint
        world.add_published("39709209", published, ["PPR1036674"])
        served = {r["id"] for r in world.preprints()}
        with EuropepmcStandIn(world) as epmc:
            # A killed harvester resets its connections: expected here, not worth a traceback.
            epmc.server.handle_error = lambda request, client_address: None  # type: ignore[method-assign]
            kinds = ["429", "503", "truncated", "malformed", "502"]
            for after, kind in enumerate(kinds):
                epmc.faults.add(kind, times=1, path="/search", after=2 * after)
            env = sc.env(
                HARVEST_SOURCES="pubmed,preprints",
                EUROPEPMC_API_URL=epmc.url,
                EUROPEPMC_PAGE_SIZE="100",
                EUROPEPMC_REQUESTS_PER_SECOND=str(rate),
                EUROPEPMC_BACKOFF_BASE="0.05",
                EUROPEPMC_BACKOFF_CAP="1",
            )
            # The first run is killed once Europe PMC has answered a few of the chain's pages.
            running = sc.start(env=env)
            deadline = time.monotonic() + 300
            while len(epmc.requests) < 6 and running["popen"].poll() is None and time.monotonic() < deadline:
                time.sleep(0.02)
            killed = running["popen"].poll() is None
            if killed:
                running["popen"].send_signal(signal.SIGKILL)
            sc.wait(running)
            sc.expect(killed, "the harvester was killed during the preprints run")
            with sqlite3.connect(sc.db) as conn:
                before = dict(conn.execute("select ppr_id, last_changed_run from preprints"))
            sc.expect(0 < len(before) < len(served), "the killed run had stored part of the chain", str(len(before)))
            proc = sc.harvest(env=env)
            sc.expect(proc.exit == 0, "the run after the kill succeeds despite the faults", proc.stderr[-1500:])
            with sqlite3.connect(sc.db) as conn:
                stored = dict(conn.execute("select ppr_id, last_changed_run from preprints"))
                n_rows = conn.execute("select count(*) from preprints").fetchone()[0]
                n_fts = conn.execute("select count(*) from preprints_fts_docsize").fetchone()[0]
                try:
                    conn.execute("insert into preprints_fts(preprints_fts, rank) values ('integrity-check', 1)")
                    fts_ok = ""
                except sqlite3.DatabaseError as exc:
                    fts_ok = str(exc)
                links = conn.execute(
                    "select ppr_id, pmid, method from preprint_links where method = 'europepmc'"
                ).fetchall()
                linked = conn.execute(
                    "select published_pmid, link_method from preprints where ppr_id = 'PPR1036674'"
                ).fetchall()
                runs = conn.execute(
                    "select status, mode, new, unchanged from harvest_runs where source = 'preprints' order by id"
                ).fetchall()
            sc.expect(
                set(stored) == served,
                "every preprint Europe PMC serves is stored",
                f"missing {sorted(served - set(stored))}",
            )
            sc.expect(
                n_rows == len(served) and n_fts == n_rows and not fts_ok,
                "no preprint stored or indexed twice",
                f"{n_rows} rows, {n_fts} indexed {fts_ok}",
            )
            rewritten = [p for p, run in before.items() if stored.get(p) != run]
            sc.expect(
                not rewritten,
                "the run after the kill rewrote no preprint the killed run had stored",
                _sample(rewritten),
            )
            sc.expect(
                links == [("PPR1036674", published, "europepmc")] and linked == [(published, "europepmc")],
                "Europe PMC's link to the published record is stored once",
                f"{links} {linked}",
            )
            sc.expect(
                len(runs) == 2 and runs[0][0] == "aborted" and runs[1][:2] == ("success", "full (new catalog)"),
                "the killed preprints run is marked aborted, the next one sweeps in full",
                str(runs),
            )
            sc.expect(
                len(runs) == 2 and runs[1][2] == len(served) - len(before) and runs[1][3] == len(before),
                "the run after the kill counts the killed run's preprints unchanged, the rest new",
                str(runs),
            )
            fired = sum(f.fired for f in epmc.faults.faults)
            sc.expect(fired == len(kinds), "each Europe PMC fault was thrown", f"{fired} of {len(kinds)}")
            # A rerun: incremental by first index date, one search, nothing changed.
            asked = len(epmc.requests)
            again = sc.harvest(env=env)
            with sqlite3.connect(sc.db) as conn:
                later = dict(conn.execute("select ppr_id, last_changed_run from preprints"))
                last = conn.execute(
                    "select status, mode, new, updated from harvest_runs where source = 'preprints' order by id desc"
                ).fetchone()
            sc.expect(again.exit == 0 and later == stored, "a rerun changes nothing", f"{again.stderr[-600:]} {last}")
            sc.expect(
                last == ("success", "incremental", 0, 0) and len(epmc.requests) - asked == 1,
                "the rerun is incremental and costs one search",
                f"{last}, {len(epmc.requests) - asked} requests",
            )
            row = sc.conclude()
            over = epmc.rate_violations(limit=rate)
            sc.expect(over == 0, "no request to Europe PMC over its rate", f"{over} over {rate}/s")
            row.requests += len(epmc.requests)
            row.faults += fired
            row.rate_violations += over
            row.stored += len(stored)
            row.served += len(served)
            row.lost = (row.lost or 0) + len(served - set(stored))
    return [row]


# ---------------------------------------------------------------------------------------------
# Running and reporting
# ---------------------------------------------------------------------------------------------

FAST = [
    "every-3rd",
    "truncated",
    "error-in-200",
    "webenv-expiry",
    "outage",
    "count-grows",
    "sigkill",
    "disk-full",
    "two-at-once",
    "hostile",
    "catalog",
    "trials",
    "citations",
    "preprints",
]
FULL = [
    "every-3rd",
    "random-30%",
    "truncated",
    "error-in-200",
    "webenv-expiry",
    "outage",
    "count-grows",
    "sigkill",
    "disk-full",
    "two-at-once",
    "hostile",
    "catalog",
    "trials",
    "citations",
    "preprints",
]


def run_scenarios(
    names: list[str], *, fast: bool, seed: int = DEFAULT_SEED, jobs: int = 4, workdir: Path | None = None
) -> dict[str, list[Row]]:
    """Run the scenarios (`jobs` at once); their rows by scenario name."""
    own = workdir is None
    workdir = Path(workdir or tempfile.mkdtemp(prefix="chaos-"))
    chaos = Chaos(workdir, fast=fast, seed=seed)
    Corpus.cached([RECORDS])  # parse once, before the threads
    if {"hostile", "disk-full", "catalog"} & set(names):
        try:
            chaos.base_catalog()
        except RuntimeError:
            pass  # each scenario that needs it tries again and reports why
    # The longest first, so that they overlap the short ones.
    order = sorted(
        names, key=lambda n: ["outage", "sigkill", "hostile"].index(n) if n in ("outage", "sigkill", "hostile") else 9
    )
    rows: dict[str, list[Row]] = {}

    def one(name: str) -> list[Row]:
        try:
            return SCENARIOS[name](chaos)
        except Exception as exc:
            return [Row(name, "(crashed)", problems=[f"{type(exc).__name__}: {exc}", traceback.format_exc()[-1500:]])]

    try:
        with concurrent.futures.ThreadPoolExecutor(max(1, jobs)) as pool:
            futures = {name: pool.submit(one, name) for name in order}
            for name in names:
                rows[name] = futures[name].result()
    finally:
        if own:
            shutil.rmtree(workdir, ignore_errors=True)
    return rows


COLUMNS = [
    ("scenario", "scenario"),
    ("requests", "requests"),
    ("faults", "faults"),
    ("retries", "retries"),
    ("promised", "promised"),
    ("stored", "stored"),
    ("served", "served"),
    ("lost", "lost"),
    ("duplicates", "dup"),
    ("refetched", "refetch"),
    ("rate_violations", "rate"),
    ("exits", "exits"),
    ("seconds", "s"),
    ("ok", "result"),
]


def _exits(exits: list[str]) -> str:
    out, i = [], 0
    while i < len(exits):
        j = i
        while j < len(exits) and exits[j] == exits[i]:
            j += 1
        out.append(exits[i] if j - i == 1 else f"{j - i}x{exits[i]}")
        i = j
    return ",".join(out) or "-"


def table(rows: list[Row]) -> str:
    cells = [[h for _, h in COLUMNS]]
    for r in rows:
        values = []
        for key, _ in COLUMNS:
            if key == "exits":
                values.append(_exits(r.exits))
            elif key == "ok":
                values.append("pass" if r.ok else "FAIL")
            elif getattr(r, key) is None:
                values.append("-")
            else:
                values.append(str(getattr(r, key)))
        cells.append(values)
    widths = [max(len(c[i]) for c in cells) for i in range(len(COLUMNS))]
    lines = [
        "| "
        + " | ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells[0], widths)))
        + " |",
        "|" + "|".join("-" * (w + 2) if i == 0 else "-" * (w + 1) + ":" for i, w in enumerate(widths)) + "|",
    ]
    for c in cells[1:]:
        lines.append(
            "| " + " | ".join(x.ljust(w) if i == 0 else x.rjust(w) for i, (x, w) in enumerate(zip(c, widths))) + " |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__.split("\n\n")[0])
    ap.add_argument("--fast", action="store_true", help="the quick subset `make test` runs")
    ap.add_argument("--json", type=Path, help="write the report as JSON here")
    ap.add_argument("--only", help="comma-separated scenario names: " + ", ".join(FULL))
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    ap.add_argument("--jobs", type=int, default=4, help="scenarios run at once (default 4)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (catalogs, logs)")
    ap.add_argument("-v", "--verbose", action="store_true", help="list every check, not only problems")
    a = ap.parse_args(argv)
    names = a.only.split(",") if a.only else (FAST if a.fast else FULL)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        ap.error(f"unknown scenarios {unknown}; known: {', '.join(SCENARIOS)}")
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="chaos-"))
    try:
        grouped = run_scenarios(names, fast=a.fast, seed=a.seed, jobs=a.jobs, workdir=workdir)
        rows = [r for name in names for r in grouped[name]]
    finally:
        if not a.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    elapsed = time.monotonic() - started
    print(
        f"chaos {'--fast ' if a.fast else ''}(seed {a.seed}): {len(rows)} rows in {elapsed:.0f} s"
        + (f"; kept {workdir}" if a.keep else "")
    )
    print(table(rows))
    for r in rows:
        if r.notes or r.problems or a.verbose:
            print(f"\n{r.scenario}: {r.what}")
            for n in r.notes:
                print(f"  note: {n}")
            if a.verbose:
                for c in r.checks:
                    print(f"  ok: {c}")
            for p in r.problems:
                print(f"  PROBLEM: {p}")
    failed = [r.scenario for r in rows if not r.ok]
    print(f"\n{'FAILED: ' + ', '.join(failed) if failed else 'every scenario passed'}")
    if a.json:
        a.json.write_text(
            json.dumps(
                {
                    "seed": a.seed,
                    "fast": a.fast,
                    "seconds": round(elapsed, 1),
                    "passed": not failed,
                    "rows": [{**asdict(r), "ok": r.ok} for r in rows],
                },
                indent=2,
            )
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
