"""The command line given what an operator should not give it: the catalog as the export's
output, a device or FIFO as the catalog, settings a source cannot use, numbers past any range.
One line naming what was wrong, a non-zero exit, nothing stored lost."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import sqlite3
from pathlib import Path

import pytest

from harvest import store
from tests.conftest import RECORDS, harvest_env, run_cli


@pytest.fixture(scope="module")
def catalog(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cli-hostile") / "catalog.db"
    result = run_cli("import", *sorted(RECORDS.glob("*.xml"))[:20], "--db", path)
    assert result.returncode == 0, result.stderr
    return path


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def one_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    return lines[0]


def test_an_export_into_the_catalog_itself_is_refused_and_the_catalog_kept(catalog):
    before = digest(catalog)
    for target in (catalog, Path(f"{catalog}-wal")):
        result = run_cli("export", "--format", "ris", "--db", catalog, "-o", target)
        assert result.returncode == 2
        assert one_line(result) == (
            f"harvest: error: -o {target} is the catalog itself (or one of its files): give the export another path"
        )
    assert digest(catalog) == before


def test_every_writer_while_a_harvest_holds_the_catalog_exits_3_in_one_line(catalog):
    before = digest(catalog)
    with store.harvest_lock(catalog):
        for command in (("retag",), ("rebuild",), ("import", sorted(RECORDS.glob("*.xml"))[-1])):
            result = run_cli(*command, "--db", catalog)
            assert result.returncode == 3, (command, result.stderr[-1000:])
            assert one_line(result).startswith("harvest: error: another harvest"), command
    assert digest(catalog) == before


def test_a_fifo_or_a_directory_as_the_catalog_is_refused_and_left_as_it_was(tmp_path):
    fifo = tmp_path / "catalog.fifo"
    os.mkfifo(fifo)
    for command in (("status",), ("retag",), ("import", next(RECORDS.glob("*.xml")))):
        result = run_cli(*command, "--db", fifo, timeout=60)
        assert result.returncode == 1, (command, result.stderr[-1000:])
        assert one_line(result) == (
            f"harvest: error: {fifo} is not a regular file (a device, FIFO or socket); "
            "give --db a catalog file's path, or a new one"
        )
    assert fifo.is_fifo()
    result = run_cli("status", env=harvest_env(CATALOG_DB=str(tmp_path)))
    assert result.returncode == 1
    assert one_line(result).startswith(f"harvest: error: {tmp_path} is a directory")


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("CTGOV_PAGE_SIZE", "abc", "CTGOV_PAGE_SIZE must be a number, got 'abc'"),
        ("NCBI_MAX_TRIES", "inf", "NCBI_MAX_TRIES must be a finite number up to 1e9, got 'inf'"),
        (
            "OPENALEX_REQUESTS_PER_SECOND",
            "nan",
            "OPENALEX_REQUESTS_PER_SECOND must be a finite number up to 1e9, got 'nan'",
        ),
        (
            "NCBI_EUTILS_URL",
            "eutils.ncbi.nlm.nih.gov/entrez/eutils/",
            "NCBI_EUTILS_URL must be an http:// or https:// address, got 'eutils.ncbi.nlm.nih.gov/entrez/eutils/'",
        ),
        ("CTGOV_API_URL", "http://[::1", "CTGOV_API_URL must be an http:// or https:// address, got 'http://[::1'"),
        (
            "NCBI_TOOL",
            "ketamine\nX-Injected: 1",
            "NCBI_TOOL must be one line of printable text, got 'ketamine\\nX-Injected: 1'",
        ),
        ("HARVEST_TODAY", "0001-01-01", "HARVEST_TODAY must be a date from 1900 to 2999, got '0001-01-01'"),
    ],
)
def test_a_setting_no_source_can_use_stops_the_run_before_any_source(tmp_path, name, value, message):
    """Read before the first source runs: a bad setting of a later source (trials, citations)
    must not end the run after PubMed's, hiding its outcome. Nothing is asked, nothing created."""
    env = harvest_env("http://127.0.0.1:9/entrez/eutils/", NCBI_EMAIL="tests@example.org", **{name: value})
    env["HARVEST_SOURCES"] = "pubmed,trials,preprints,citations"
    result = run_cli("run", "--db", tmp_path / "catalog.db", env=env, timeout=60)
    assert result.returncode == 1
    assert one_line(result) == f"harvest: error: {message}"
    assert not (tmp_path / "catalog.db").exists()


@pytest.mark.parametrize(
    "args",
    [
        ("status", "--runs", "99999999999999999999"),
        ("status", "--runs", "-1"),
        ("status", "--max-age", "99999999999d"),
        ("export", "--format", "ris", "--pmid", "9223372036854775808"),
    ],
)
def test_numbers_past_any_range_are_usage_errors(catalog, args):
    result = run_cli(*args, "--db", catalog)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-1000:]


def test_an_export_to_a_full_disk_fails_in_one_line(catalog):
    pmid = sorted(RECORDS.glob("*.xml"))[0].stem  # stored by the import (the file's record)
    result = run_cli("export", "--format", "ris", "--db", catalog, "--pmid", pmid, "-o", "/dev/full")
    assert result.returncode == 1
    assert one_line(result) == "harvest: error: No space left on device"


def test_train_tagger_on_files_without_a_labels_examples_says_so_in_one_line(tmp_path):
    result = run_cli("train-tagger", next(RECORDS.glob("*.xml")), "-o", tmp_path / "model.json", timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("harvest: error: train_tagger: label rct has 0 positives")
    assert "Traceback" not in result.stderr and not (tmp_path / "model.json").exists()


def test_import_says_what_a_path_that_is_no_file_is(tmp_path):
    fifo, loop, missing = tmp_path / "records.fifo", tmp_path / "loop.xml", tmp_path / "missing.xml"
    os.mkfifo(fifo)
    loop.symlink_to(loop)
    result = run_cli("import", fifo, loop, missing, "--db", tmp_path / "catalog.db", timeout=60)
    assert result.returncode == 1
    assert one_line(result) == (
        f"harvest: error: {fifo} is not a regular file (a directory, device or FIFO); "
        f"{loop} is a symbolic link that leads to no file (or to itself); no such file: {missing}"
    )


# ESC ] 0 ; ... BEL retitles a terminal's window, ESC [ 2 J clears its screen.
TERMINAL_CONTROL = "\x1b]0;owned\x07\x1b[2J"


def test_a_servers_words_cannot_drive_the_operators_terminal(records_server, tmp_path):
    """E-utilities' <ERROR> text is quoted in the retries' warnings and the run's error line."""
    records_server.faults.add("error_in_200", times=None, message=f"Search Backend failed{TERMINAL_CONTROL}\nsecond")
    env = harvest_env(records_server.url, NCBI_MAX_TRIES="2", NCBI_BACKOFF_BASE="0.01")
    result = run_cli("run", "--db", tmp_path / "catalog.db", env=env)
    assert result.returncode == 1
    assert "\x1b" not in result.stderr and "\x07" not in result.stderr
    (line,) = result.error_lines
    assert "Search Backend failed\\x1b]0;owned\\x07\\x1b[2J second" in line, line
    assert "Search Backend failed\\x1b]0;owned" in result.stderr.split("harvest: error:")[0]  # the warning


def test_a_file_name_cannot_drive_the_operators_terminal(tmp_path):
    named = tmp_path / f"records{TERMINAL_CONTROL}.xml"
    result = run_cli("import", named, "--db", tmp_path / "catalog.db")
    assert result.returncode == 1
    assert one_line(result) == f"harvest: error: no such file: {tmp_path}/records\\x1b]0;owned\\x07\\x1b[2J.xml"


def test_a_log_line_quoting_a_server_stays_one_printable_line(capsys):
    from harvest.cli import _setup_logging

    harvest_log = logging.getLogger("harvest")
    kept = (harvest_log.handlers[:], harvest_log.level, harvest_log.propagate)
    try:  # the CLI's own logging, set up in this process for one line
        _setup_logging(verbose=False)
        logging.getLogger("harvest.runner").warning("history server unusable for %s (%s)", "slice 1", TERMINAL_CONTROL)
    finally:
        harvest_log.handlers[:], harvest_log.propagate = kept[0], kept[2]
        harvest_log.setLevel(kept[1])  # setLevel, not .level: it clears the loggers' cached levels
    (line,) = capsys.readouterr().err.splitlines()
    assert line.endswith("WARNING harvest.runner: history server unusable for slice 1 (\\x1b]0;owned\\x07\\x1b[2J)")


def test_status_prints_a_stored_error_as_one_printable_line(catalog, tmp_path):
    handed_over = tmp_path / "catalog.db"
    shutil.copy(catalog, handed_over)
    with sqlite3.connect(handed_over) as conn:
        conn.execute("update harvest_runs set error = ?", [f"failed{TERMINAL_CONTROL}\nnext"])
    result = run_cli("status", "--db", handed_over, "--runs", "5")
    assert result.returncode == 0, result.stderr
    assert "\x1b" not in result.stdout
    assert "      error: failed\\x1b]0;owned\\x07\\x1b[2J next" in result.stdout.splitlines()
