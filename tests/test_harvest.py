"""The first catalog end to end: `python -m harvest run` against the stand-in serving real records."""

from __future__ import annotations

import fcntl
import socket
import sqlite3
import time

import pytest
import sqlite_utils

from harvest.query import QUERY_VERSION, TOPIC_QUERY
from tests.conftest import KETAMINE_PMIDS, RECORDS, harvest_env, run_cli


def served_pmids(server) -> set[int]:
    return set(server.corpus.pmids())


def stored_pmids(db_path) -> set[int]:
    with sqlite3.connect(db_path) as conn:
        return {row[0] for row in conn.execute("select pmid from articles")}


def runs(db_path) -> list[dict]:
    return list(sqlite_utils.Database(db_path).query("select * from harvest_runs order by id"))


def test_full_harvest_stores_every_served_record_once(records_server, tmp_path):
    db_path = tmp_path / "catalog.db"
    result = run_cli("run", "--db", db_path, env=harvest_env(records_server.url))
    assert result.returncode == 0, result.stderr
    served = served_pmids(records_server)
    assert len(served) == 215  # 216 files: one is PubMed's empty answer
    assert stored_pmids(db_path) == served
    db = sqlite_utils.Database(db_path)
    assert db.execute("select count(*), count(distinct pmid) from articles").fetchone() == (215, 215)
    (run,) = runs(db_path)
    assert run["status"] == "success"
    assert run["mode"] == "full (new catalog)"
    assert (run["records_promised"], run["records_stored"], run["new"]) == (215, 215, 215)
    assert run["query_version"] == QUERY_VERSION and run["query_text"] == TOPIC_QUERY
    assert "215 stored: 215 new" in result.stdout
    # The fields the first slice promises, on a real ketamine record.
    row = db.table("articles").get(38011560)
    assert row["title"].startswith("Ketamine and the neurobiology of depression")
    assert row["journal"] == "Proceedings of the National Academy of Sciences of the United States of America"
    assert (row["pub_year"], row["doi"], row["language"]) == (2023, "10.1073/pnas.2305772120", "eng")
    assert "Review" in row["publication_types"]
    assert row["abstract"].startswith("Ketamine has emerged")
    # Full-text search finds it by a word of its abstract.
    hits = {
        r[0]
        for r in db.execute(
            "select a.pmid from articles_fts join articles a on a.rowid = articles_fts.rowid "
            "where articles_fts match 'reconceptualization'"
        )
    }
    assert hits == {38011560}
    # Efetch by batch from the history server: two requests in all for 215 records.
    assert records_server.count("esearch") == 1 and records_server.count("efetch") == 1


def test_second_run_changes_nothing(records_server, tmp_path):
    db_path = tmp_path / "catalog.db"
    env = harvest_env(records_server.url)
    assert run_cli("run", "--db", db_path, env=env).returncode == 0
    before = sqlite_utils.Database(db_path).execute("select * from articles order by pmid").fetchall()

    again = run_cli("run", "--db", db_path, env=env)
    assert again.returncode == 0, again.stderr
    full = run_cli("run", "--db", db_path, "--full", env=env)
    assert full.returncode == 0, full.stderr

    _, incremental, full_run = runs(db_path)
    assert incremental["mode"] == "incremental"
    assert (incremental["new"], incremental["updated"]) == (0, 0)
    assert full_run["mode"] == "full"
    assert (full_run["new"], full_run["updated"], full_run["unchanged"]) == (0, 0, 215)
    after = sqlite_utils.Database(db_path).execute("select * from articles order by pmid").fetchall()
    # Only the bookkeeping column saying which run last saw a record moves.
    columns = [c.name for c in sqlite_utils.Database(db_path)["articles"].columns]
    seen = columns.index("last_fetched_run")
    strip = lambda rows: [r[:seen] + r[seen + 1 :] for r in rows]  # noqa: E731
    assert strip(after) == strip(before)


def test_every_request_carries_tool_and_email(records_server, tmp_path):
    env = harvest_env(records_server.url, NCBI_EMAIL="catalog-tests@example.org", NCBI_TOOL="catalog-tests")
    result = run_cli("run", "--db", tmp_path / "c.db", env=env)
    assert result.returncode == 0, result.stderr
    assert len(records_server.requests_log) >= 2
    for entry in records_server.requests_log:
        assert entry.params.get("tool") == "catalog-tests"
        assert entry.params.get("email") == "catalog-tests@example.org"
    assert "NCBI_EMAIL is not set" not in result.stderr


def test_missing_email_warns_once_and_sends_none(records_server, tmp_path):
    result = run_cli("run", "--db", tmp_path / "c.db", env=harvest_env(records_server.url))
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("NCBI_EMAIL is not set") == 1
    assert all("email" not in e.params for e in records_server.requests_log)
    assert all(e.params.get("tool") == "ketamine-catalog" for e in records_server.requests_log)


def test_api_key_is_sent_but_never_shown(records_server, tmp_path):
    key = "k" + "3f9a1c77e0d24b5b8a6c" * 2
    db_path = tmp_path / "c.db"
    records_server.faults.add("502", path="efetch")  # so the retry path logs something too
    env = harvest_env(records_server.url, NCBI_API_KEY=key)
    result = run_cli("-v", "run", "--db", db_path, "--batch-size", "50", env=env)
    assert result.returncode == 0, result.stderr
    assert {e.params.get("api_key") for e in records_server.requests_log} == {key}
    assert "502" in result.stderr  # the retry was logged ...
    assert key not in result.stderr + result.stdout  # ... without the key
    status = run_cli("status", "--db", db_path, env=env)
    assert key not in status.stdout + status.stderr
    dump = "\n".join(sqlite3.connect(db_path).iterdump())
    assert key not in dump


def test_rate_limit_is_never_exceeded(records_server, tmp_path):
    # batch size 10: 22 efetch requests plus the search, as fast as the client allows.
    result = run_cli("run", "--db", tmp_path / "c.db", "--batch-size", "10", env=harvest_env(records_server.url))
    assert result.returncode == 0, result.stderr
    assert records_server.count() >= 23
    assert records_server.rate_violations(limit=3, window=1.0) == 0
    assert records_server.count(fault="rate_limit") == 0
    times = [e.t for e in records_server.requests_log]
    assert all(later - earlier > 1.0 for earlier, later in zip(times, times[3:]))


@pytest.mark.parametrize(
    "kind, path",
    [
        ("429", "efetch"),
        ("502", "efetch"),
        ("503", "esearch"),
        ("truncated", "efetch"),
        ("short_read", "efetch"),
        ("error_in_200", "esearch"),
        ("error_in_200", "efetch"),
        ("html_200", "efetch"),
        ("reset", "efetch"),
        ("webenv_expired", "efetch"),
    ],
)
def test_harvest_survives_fault(records_server, tmp_path, kind, path):
    fault = records_server.faults.add(kind, times=2, path=path)
    db_path = tmp_path / "c.db"
    result = run_cli("run", "--db", db_path, "--batch-size", "100", env=harvest_env(records_server.url))
    assert result.returncode == 0, result.stderr
    assert fault.fired >= 1
    assert stored_pmids(db_path) == served_pmids(records_server)
    # An <ERROR> in a history-server answer (what an expired WebEnv gets) is not retried:
    # the batch is fetched by id instead, so those two kinds need no retry.
    history_refusal = kind == "webenv_expired" or (kind, path) == ("error_in_200", "efetch")
    assert runs(db_path)[-1]["retries"] >= (0 if history_refusal else 1)


def test_persistent_failure_exits_nonzero_and_keeps_what_was_stored(records_server, tmp_path):
    db_path = tmp_path / "c.db"
    env = harvest_env(records_server.url, NCBI_MAX_TRIES="3")
    # The first efetch batches succeed, then efetch keeps failing.
    records_server.faults.add("502", times=None, path="efetch", after=2)
    result = run_cli("run", "--db", db_path, "--batch-size", "50", env=env)
    assert result.returncode == 1
    assert len(result.error_lines) == 1
    assert "run 1 failed" in result.error_lines[0] and "HTTP 502" in result.error_lines[0]
    (run,) = runs(db_path)
    assert run["status"] == "failed" and "HTTP 502" in run["error"]
    assert run["watermark"] is None
    kept = stored_pmids(db_path)
    assert len(kept) == 100  # the two batches that arrived stay stored
    status = run_cli("status", "--db", db_path, env=env)
    assert "failed" in status.stdout and "HTTP 502" in status.stdout
    assert "full (new catalog)" in status.stdout.split("next run:")[1]

    records_server.faults.clear()
    records_server.clear_log()
    retry = run_cli("run", "--db", db_path, "--batch-size", "50", env=env)
    assert retry.returncode == 0, retry.stderr
    assert stored_pmids(db_path) == served_pmids(records_server)
    # The records the failed run stored in full are not fetched again.
    fetched = set()
    for entry in records_server.requests_log:
        if entry.endpoint == "efetch" and "id" in entry.params:
            fetched |= {int(i) for i in entry.params["id"].split(",")}
    assert not fetched & kept
    assert runs(db_path)[-1]["new"] == 115


def test_record_missing_from_efetch_is_asked_for_by_id_then_reported(records_server, tmp_path):
    gone = 38011560

    def drop_after_search(server, entry):
        if entry.endpoint == "esearch" and gone in server.corpus:
            server.remove(gone)

    records_server.on_handled.append(drop_after_search)
    db_path = tmp_path / "c.db"
    result = run_cli("run", "--db", db_path, env=harvest_env(records_server.url))
    assert result.returncode == 1
    assert str(gone) in result.error_lines[0]
    assert "1 of 215 records" in result.error_lines[0]
    asked_by_id = [e for e in records_server.requests_log if e.endpoint == "efetch" and "id" in e.params]
    # The first batch (215 records, under one batch) goes by id; every later request asks
    # for the missing record alone.
    assert len(asked_by_id[0].params["id"].split(",")) == 215
    assert len(asked_by_id) >= 2 and all(e.params["id"] == str(gone) for e in asked_by_id[1:])
    assert len(stored_pmids(db_path)) == 214
    assert runs(db_path)[-1]["watermark"] is None


def test_second_concurrent_run_is_refused(records_server, tmp_path):
    db_path = tmp_path / "c.db"
    with open(f"{db_path}.lock", "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = run_cli("run", "--db", db_path, env=harvest_env(records_server.url))
    assert result.returncode == 3
    assert "another harvest is already running" in result.error_lines[0]
    assert records_server.count() == 0
    # Once the holder is gone the lock is free again.
    assert run_cli("run", "--db", db_path, env=harvest_env(records_server.url)).returncode == 0


def leave_a_run_running(db_path) -> None:
    """What a SIGKILLed harvest leaves behind: its run row, still 'running'."""
    sqlite_utils.Database(db_path).table("harvest_runs").insert(
        {
            "started_at": "2026-01-01T00:00:00+00:00",
            "mode": "incremental",
            "query_version": QUERY_VERSION,
            "status": "running",
            "pid": 999999,
        }
    )


def test_run_left_running_by_a_dead_process_is_marked_aborted(records_server, tmp_path):
    db_path = tmp_path / "c.db"
    env = harvest_env(records_server.url)
    assert run_cli("run", "--db", db_path, env=env).returncode == 0
    leave_a_run_running(db_path)
    assert run_cli("run", "--db", db_path, env=env).returncode == 0
    statuses = [r["status"] for r in runs(db_path)]
    assert statuses == ["success", "aborted", "success"]


def test_unreachable_pubmed_fails_within_a_minute_with_a_hint(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = harvest_env(f"http://127.0.0.1:{port}/entrez/eutils/")
    env.pop("NCBI_BACKOFF_BASE")  # the real backoff
    started = time.monotonic()
    result = run_cli("run", "--db", tmp_path / "c.db", env=env, timeout=120)
    assert time.monotonic() - started < 60
    assert result.returncode == 1
    assert len(result.error_lines) == 1
    assert "PubMed could not be reached" in result.error_lines[0]
    assert "NCBI_EUTILS_URL" in result.error_lines[0]


def test_status_max_age_flags_a_stale_catalog(records_server, tmp_path):
    db_path = tmp_path / "c.db"
    env = harvest_env(records_server.url)
    assert run_cli("status", "--db", db_path, "--max-age", "2d", env=env).returncode == 4
    assert run_cli("run", "--db", db_path, env=env).returncode == 0
    fresh = run_cli("status", "--db", db_path, "--max-age", "2d", env=env)
    assert fresh.returncode == 0, fresh.stderr
    assert "next run: incremental" in fresh.stdout
    db = sqlite_utils.Database(db_path)
    db.execute("update harvest_runs set finished_at = '2020-01-01T00:00:00+00:00'")
    db.conn.commit()
    stale = run_cli("status", "--db", db_path, "--max-age", "2d", env=env)
    assert stale.returncode == 4
    assert "last successful harvest finished 2020-01-01" in stale.error_lines[0]


def test_known_ketamine_record_is_in_the_catalog(records_server, tmp_path):
    db_path = tmp_path / "c.db"
    assert run_cli("run", "--db", db_path, env=harvest_env(records_server.url)).returncode == 0
    assert KETAMINE_PMIDS & stored_pmids(db_path) == {38011560}


def test_status_tells_a_run_in_progress_from_a_dead_one(records_server, tmp_path):
    db_path = tmp_path / "c.db"
    env = harvest_env(records_server.url)
    assert run_cli("run", "--db", db_path, env=env).returncode == 0
    leave_a_run_running(db_path)
    dead = run_cli("status", "--db", db_path, env=env)
    assert "no process holds the lock: it died" in dead.stdout
    with open(f"{db_path}.lock", "w") as held:
        held.write("pid 4242 on cron-host since 2026-01-01T00:00:00+00:00\n")
        held.flush()
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        alive = run_cli("status", "--db", db_path, env=env)
    assert "in progress: pid 4242 on cron-host" in alive.stdout


COMMANDS_ON_A_CATALOG = [
    ("run",),
    ("status",),
    ("retag",),
    ("import", str(RECORDS / "38011560.xml")),
    ("export", "--format", "ris"),
    ("evaluate", "--no-baseline"),
]


def test_every_command_refuses_a_db_that_is_not_a_catalog_and_leaves_it_as_it_was(records_server, tmp_path):
    """`--db` pointed at the wrong file: a PubMed XML file, another tool's SQLite database.
    Each command says what the file is in one line and exits 1; the file is not touched
    (before, `status` and `run` would have added the catalog's tables to it)."""
    env = harvest_env(records_server.url)
    xml_file = tmp_path / "38011560.xml"
    xml_file.write_bytes((RECORDS / "38011560.xml").read_bytes())
    other = tmp_path / "notes.db"
    sqlite_utils.Database(other).table("notes").insert({"pmid": 38011560, "note": "read in full"})
    for path, says in [
        (xml_file, "is not a SQLite database"),
        (other, "is a SQLite database but not a ketamine catalog (its tables: notes)"),
    ]:
        before = path.read_bytes()
        for command in COMMANDS_ON_A_CATALOG:
            result = run_cli(*command, "--db", path, env=env)
            assert result.returncode == 1, (command, result.stdout, result.stderr)
            assert result.error_lines == [
                f"harvest: error: {path} {says}"
                + ("; give --db a catalog's path, or a new one" if path == other else " (file is not a database)")
            ], (command, result.stderr)
            assert "Traceback" not in result.stderr
        assert path.read_bytes() == before
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(path.name) and p != path) == []


def test_a_catalog_from_a_newer_version_is_not_written_to(records_server, tmp_path):
    """A checkout rolled back under a catalog that a newer one migrated: no run writes
    into a schema it does not know."""
    env = harvest_env(records_server.url)
    db_path = tmp_path / "c.db"
    assert run_cli("run", "--db", db_path, env=env).returncode == 0
    db = sqlite_utils.Database(db_path)
    db.table("_sqlite_migrations").insert(
        {"migration_set": "ketamine-catalog", "name": "9999_from_the_future", "applied_at": "2027-01-01 00:00:00+00:00"}
    )
    db.close()
    stored, run_count = len(stored_pmids(db_path)), len(runs(db_path))
    for command in [("run", "--full"), ("retag",)]:
        result = run_cli(*command, "--db", db_path, env=env)
        assert result.returncode == 1
        assert result.error_lines == [
            f"harvest: error: {db_path} was built by a newer ketamine-catalog (schema migration "
            "9999_from_the_future is unknown to this one); upgrade this checkout before writing to it"
        ]
    assert len(stored_pmids(db_path)) == stored and len(runs(db_path)) == run_count
