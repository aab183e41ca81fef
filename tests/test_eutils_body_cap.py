"""The harvester reads answers streamed, up to a cap counted after decompression: a gzip bomb
from E-utilities fails the run loudly with the reason, in bounded memory."""

from __future__ import annotations

import sqlite_utils

from tests.conftest import harvest_env, run_cli
from tests.memory import run_cli_peak


def runs(db_path) -> list[dict]:
    return list(sqlite_utils.Database(db_path).query("select * from harvest_runs order by id"))


def test_a_gzip_bomb_fails_the_run_with_the_reason_in_bounded_memory(records_server, tmp_path):
    # A real efetch answer, gzip-encoded (1 MB on the wire), that inflates to 1 GB.
    fault = records_server.faults.add("gzip_bomb", times=None, path="efetch", inflated_mb=1024)
    db_path = tmp_path / "c.db"
    env = harvest_env(records_server.url, NCBI_MAX_BODY_MB="64")
    result, peak_mb = run_cli_peak("run", "--db", db_path, env=env)

    assert fault.fired == 1  # over the cap is not retried: it would only come again
    assert result.returncode == 1
    assert len(result.error_lines) == 1, result.stderr
    line = result.error_lines[0]
    assert "run 1 failed" in line and "NCBI_MAX_BODY_MB=64 MB" in line and "gzip" in line
    (run,) = runs(db_path)
    assert run["status"] == "failed" and "NCBI_MAX_BODY_MB" in run["error"]
    assert peak_mb < 500, f"peak {peak_mb:.0f} MB"


def test_a_gzip_encoded_answer_under_the_cap_is_read_whole(records_server, tmp_path):
    # The same real answer with 8 MB of padding (a big real batch) stays under the default cap.
    records_server.faults.add("gzip_bomb", times=1, path="efetch", inflated_mb=8)
    db_path = tmp_path / "c.db"
    result = run_cli("run", "--db", db_path, env=harvest_env(records_server.url))
    assert result.returncode == 0, result.stderr
    assert runs(db_path)[0]["records_stored"] == 215


def test_a_cap_that_is_not_a_positive_number_is_refused_in_one_line(records_server, tmp_path):
    result = run_cli("run", "--db", tmp_path / "c.db", env=harvest_env(records_server.url, NCBI_MAX_BODY_MB="0"))
    assert result.returncode != 0 and "NCBI_MAX_BODY_MB must be a number above 0" in result.stderr
    assert records_server.count() == 0
