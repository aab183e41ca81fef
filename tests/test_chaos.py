"""The fast chaos subset in `make test`: `python -m tests.chaos --fast`, one test per scenario.

The scenarios run once per session, four at a time (tests/chaos.py says what each does and
checks); each test below asserts its scenario's rows: every check passed, nothing lost,
nothing stored twice, nothing fetched again after an interruption, no request over the rate
limit. `make chaos` runs the full set (ten kills, a 60 s outage, NCBI's 3 requests/s).
"""

from __future__ import annotations

import time

import pytest

from harvest.eutils import RateLimiter
from tests import chaos


@pytest.fixture(scope="session")
def fast_rows(tmp_path_factory) -> dict[str, list[chaos.Row]]:
    grouped = chaos.run_scenarios(chaos.FAST, fast=True, jobs=4, workdir=tmp_path_factory.mktemp("chaos"))
    print("\n" + chaos.table([r for name in chaos.FAST for r in grouped[name]]))
    return grouped


@pytest.mark.parametrize("name", chaos.FAST)
def test_scenario(fast_rows, name):
    rows = fast_rows[name]
    assert rows
    for row in rows:
        assert row.ok, f"{row.scenario}: " + "\n".join(row.problems)
        assert row.lost in (0, None) and row.duplicates == 0 and row.refetched == 0, row
        assert row.rate_violations == 0, row
        assert row.checks, f"{row.scenario} checked nothing"


def test_every_fast_scenario_reports_its_numbers(fast_rows):
    harvests = [r for name in chaos.FAST if name != "catalog" for r in fast_rows[name]]
    assert all(r.requests > 0 and r.exits for r in harvests)
    assert any(r.faults > 0 for r in harvests) and any("KILL" in r.exits for r in harvests)
    table = chaos.table(harvests)
    assert table.count("\n") == len(harvests) + 1 and "FAIL" not in table


def test_rate_limiter_counts_a_request_until_its_answer_arrives():
    """A request slow to reach the server must not share the server's window with `limit` later ones."""
    limiter = RateLimiter(3, window=0.4, margin=0.0)
    first = limiter.acquire()
    time.sleep(0.25)  # in flight: the server may count it only now
    limiter.release(first)
    answered = time.monotonic()
    for _ in range(2):
        limiter.release(limiter.acquire())
    limiter.release(limiter.acquire())  # the fourth waits until the first's answer is a window old
    assert time.monotonic() - answered >= 0.4


def _fresh_client(server):
    from harvest.config import Settings
    from harvest.eutils import EutilsClient

    settings = Settings(base_url=server.url, email="chaos-tests@example.org", backoff_base=0.05, backoff_cap=1)
    return settings, EutilsClient(settings, limiter=RateLimiter(3))  # a new process: a limiter of its own


def test_a_run_right_after_another_leaves_it_its_rate_window(tmp_path):
    """Found by the full chaos run at 3 requests/s: a run started the moment the previous
    one ended (a retry after a failure) added its first requests to the previous run's last."""
    from harvest.runner import run_harvest
    from tests.eutils_stand_in import Corpus, EutilsStandIn

    db_path = tmp_path / "catalog.db"
    with EutilsStandIn(Corpus.cached([chaos.RECORDS]).copy()) as server:
        for _ in range(2):  # each in its own "process": its own limiter
            settings, client = _fresh_client(server)
            assert run_harvest(db_path, settings=settings, client=client, batch_size=100).status == "success"
        assert server.rate_violations(limit=3) == 0
        assert server.count(fault="rate_limit") == 0


def test_a_run_after_a_killed_one_leaves_it_its_rate_window(tmp_path):
    """NCBI counts per client: a process that died may have used the whole window just now."""
    import requests

    from harvest import store
    from harvest.query import QUERY_VERSION
    from harvest.runner import run_harvest
    from tests.eutils_stand_in import Corpus, EutilsStandIn

    db_path = tmp_path / "catalog.db"
    with EutilsStandIn(Corpus.cached([chaos.RECORDS]).copy()) as server:
        db = store.open_db(db_path)
        with db.atomic():  # the dead process's run, still 'running' ...
            db.table("harvest_runs").insert(
                {
                    "started_at": store.now_utc(),
                    "mode": "full (new catalog)",
                    "query_version": QUERY_VERSION,
                    "status": "running",
                    "pid": 999999,
                }
            )
        db.close()
        for _ in range(3):  # ... and its last three requests, the instant before it was killed
            requests.post(server.url + "esearch.fcgi", data={"db": "pubmed", "term": "x"}, timeout=10)
        settings, client = _fresh_client(server)
        outcome = run_harvest(db_path, settings=settings, client=client, batch_size=100)
        assert outcome.status == "success" and outcome.stored == 215
        assert server.rate_violations(limit=3) == 0
        assert server.count(fault="rate_limit") == 0
