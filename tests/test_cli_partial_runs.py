"""A `--since` run or an import covers part of what the query matches: it never stands for a
full sweep, and a catalog that has never had one gets one on its next plain run."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlite_utils

from harvest import clock
from tests.conftest import RECORDS, harvest_env, run_cli


def runs(db_path) -> list[dict]:
    return list(sqlite_utils.Database(db_path).query("select * from harvest_runs order by id"))


def next_run(status_stdout: str) -> str:
    return status_stdout.split("next run:")[1].strip()


def stored_count(db_path) -> int:
    return sqlite_utils.Database(db_path).execute("select count(*) from articles").fetchone()[0]


def test_a_since_run_on_a_new_catalog_leaves_the_next_plain_run_a_full_sweep(records_server, tmp_path):
    db_path = tmp_path / "c.db"
    env = harvest_env(records_server.url)
    partial = run_cli("run", "--db", db_path, "--since", "2024-06-01", env=env)
    assert partial.returncode == 0, partial.stderr
    first = runs(db_path)[0]
    assert first["mode"] == "since" and first["watermark"] is None
    assert 0 < stored_count(db_path) < 215  # only what was created or revised since then

    status = run_cli("status", "--db", db_path, env=env)
    assert next_run(status.stdout).startswith("full (no full sweep yet): every record the query matches")
    stale = run_cli("status", "--db", db_path, "--max-age", "2d", env=env)
    assert stale.returncode == 4 and "no successful harvest yet" in stale.error_lines[0]

    full = run_cli("run", "--db", db_path, env=env)
    assert full.returncode == 0, full.stderr
    sweep = runs(db_path)[-1]
    assert sweep["mode"] == "full (no full sweep yet)" and sweep["window_from"] is None
    assert sweep["records_promised"] == 215 and stored_count(db_path) == 215
    assert sweep["watermark"] is not None
    assert next_run(run_cli("status", "--db", db_path, env=env).stdout).startswith("incremental")


def test_an_import_into_a_new_catalog_leaves_the_next_plain_run_a_full_sweep(records_server, tmp_path):
    db_path = tmp_path / "c.db"
    env = harvest_env(records_server.url)
    imported = run_cli("import", "--db", db_path, RECORDS / "38011560.xml", env=env)
    assert imported.returncode == 0, imported.stderr
    assert next_run(run_cli("status", "--db", db_path, env=env).stdout).startswith("full (no full sweep yet)")

    full = run_cli("run", "--db", db_path, env=env)
    assert full.returncode == 0, full.stderr
    assert runs(db_path)[-1]["mode"] == "full (no full sweep yet)"
    assert runs(db_path)[-1]["records_promised"] == 215 and stored_count(db_path) == 215


@pytest.mark.dated
def test_a_since_run_never_moves_the_full_sweeps_watermark(records_server, tmp_path):
    db_path = tmp_path / "c.db"
    today = clock.today()
    # The full sweep "ran" ten days ago: its watermark is where the next incremental run starts.
    env = harvest_env(records_server.url, HARVEST_TODAY=(today - dt.timedelta(days=10)).isoformat())
    assert run_cli("run", "--db", db_path, env=env).returncode == 0
    sweep_mark = runs(db_path)[0]["watermark"]
    assert sweep_mark == (today - dt.timedelta(days=10)).isoformat()

    env = harvest_env(records_server.url, HARVEST_TODAY=today.isoformat())
    since = run_cli("run", "--db", db_path, "--since", (today - dt.timedelta(days=1)).isoformat(), env=env)
    assert since.returncode == 0, since.stderr
    assert runs(db_path)[-1]["watermark"] is None
    status = run_cli("status", "--db", db_path, env=env)
    window_from = dt.date.fromisoformat(sweep_mark) - dt.timedelta(days=3)
    assert next_run(status.stdout).startswith(f"incremental: records created or revised since {window_from}")


@pytest.mark.dated
def test_since_in_the_future_is_a_usage_error_naming_the_option(records_server, tmp_path):
    db_path = tmp_path / "c.db"
    tomorrow = clock.today() + dt.timedelta(days=1)
    result = run_cli("run", "--db", db_path, "--since", tomorrow.isoformat(), env=harvest_env(records_server.url))
    assert result.returncode == 2
    assert "--since" in result.stderr and "after today" in result.stderr
    assert records_server.count() == 0 and not db_path.exists()
    # Today itself is a window of one day, and fine.
    today = run_cli("run", "--db", db_path, "--since", clock.today().isoformat(), env=harvest_env(records_server.url))
    assert today.returncode == 0, today.stderr
