"""`harvest import --engine dask`: files read, parsed and tagged on Dask workers, one writer, the same catalog."""

from __future__ import annotations

import gzip
import logging
import re
import sqlite3
import subprocess
import sys

import pytest
from click.testing import CliRunner

from harvest import cluster, importer, tags
from harvest.cli import cli
from harvest.cluster import MISSING_DASK
from tests.conftest import PUBMED, RECORDS, ROOT, run_cli

MEDLINE = PUBMED / "medline16n0902.xml.gz"
REVISED = 12  # records of MEDLINE the update file carries again, retitled
# Every table of the catalog is compared, except the run log (its times and pid differ) and the
# migrations' log; columns that hold when something was done, or how long it took, are left out.
NOT_COMPARED_TABLES = {"harvest_runs", "_sqlite_migrations"}
TIMESTAMP = re.compile(r"_at$|^deleted_date$|^seconds$")


@pytest.fixture(scope="module")
def scheduler():
    """A two-worker local cluster of processes, as `--engine dask` starts (about 3 s here)."""
    from dask.distributed import LocalCluster

    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=logging.CRITICAL
    ) as local:
        yield local.scheduler_address


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The real MEDLINE file (604 records and a DeleteCitation), an update file derived from it
    (its first records again with a new title, and a deletion of a record it stored), then real
    single-record files: the order decides which title wins and what ends deleted."""
    raw = gzip.open(MEDLINE).read()
    header = raw[: raw.index(b"<MedlineCitationSet>")] + b"<MedlineCitationSet>\n"
    records = re.findall(rb"<MedlineCitation .*?</MedlineCitation>", raw, re.S)
    revised = [
        re.sub(rb"<ArticleTitle>", rb"<ArticleTitle>Revised in an update file: ", record, count=1)
        for record in records[:REVISED]
    ]
    deleted_pmid = re.search(rb"<PMID Version=\"1\">(\d+)</PMID>", records[40]).group(1)
    update = tmp_path_factory.mktemp("update") / "update.xml.gz"
    with gzip.open(update, "wb") as out:
        out.write(header + b"\n".join(revised))
        out.write(b'\n<DeleteCitation>\n<PMID Version="1">' + deleted_pmid + b"</PMID>\n</DeleteCitation>\n")
        out.write(b"</MedlineCitationSet>\n")
    return [MEDLINE, update, *sorted(RECORDS.glob("*.xml"))[:60]]


@pytest.fixture(scope="module")
def in_process(files, tmp_path_factory):
    """The same files imported in this process, the reference every engine must match."""
    db = tmp_path_factory.mktemp("in_process") / "catalog.db"
    return importer.import_files(db, files), db


def _catalog(path) -> dict:
    conn = sqlite3.connect(path)
    tables = [
        name
        for (name,) in conn.execute("select name from sqlite_master where type = 'table' order by name")
        if name not in NOT_COMPARED_TABLES
    ]
    out = {}
    for table in tables:
        columns = [
            c for (c,) in conn.execute(f"select name from pragma_table_info('{table}')") if not TIMESTAMP.search(c)
        ]
        quoted = ", ".join(f'"{c}"' for c in columns)
        out[table] = conn.execute(f'select {quoted} from "{table}" order by {quoted}').fetchall()
    return out


def _counts(outcome: importer.ImportOutcome) -> tuple:
    return (outcome.files, outcome.records, outcome.new, outcome.updated, outcome.unchanged, outcome.deleted)


def test_dask_import_builds_the_same_catalog_in_file_order(files, in_process, scheduler, tmp_path):
    one, one_db = in_process
    dask = cluster.import_files_dask(tmp_path / "dask.db", files, scheduler=scheduler)
    assert _counts(dask) == _counts(one)
    assert [p for p, _ in dask.per_file] == [str(f) for f in files]
    expected, got = _catalog(one_db), _catalog(tmp_path / "dask.db")
    assert got.keys() == expected.keys()
    for table in expected:
        assert got[table] == expected[table], table
    conn = sqlite3.connect(tmp_path / "dask.db")
    # the update file came later: its titles won, its deletion stands
    titles = [t for (t,) in conn.execute("select title from articles where title like 'Revised in an update file: %'")]
    assert len(titles) == REVISED
    assert conn.execute("select count(*) from articles where is_deleted = 1").fetchone()[0] == 1
    assert expected["articles_fts"] and expected["article_tags"]


def test_dask_import_with_match_topic_keeps_what_the_in_process_import_keeps(files, scheduler, tmp_path):
    on_topic = [p for p in sorted(RECORDS.glob("*.xml")) if b"ketamine" in p.read_bytes().lower()]
    files = [*files, *on_topic]
    one = importer.import_files(tmp_path / "one.db", files, match_topic=True)
    dask = cluster.import_files_dask(tmp_path / "dask.db", files, scheduler=scheduler, match_topic=True)
    assert _counts(dask) == _counts(one) and dask.skipped_off_topic == one.skipped_off_topic
    assert 0 < dask.new < dask.records
    assert _catalog(tmp_path / "dask.db") == _catalog(tmp_path / "one.db")


def test_dask_import_reports_a_broken_file_and_keeps_what_came_before(scheduler, tmp_path):
    broken = tmp_path / "cut.xml"
    broken.write_bytes((RECORDS / "38011560.xml").read_bytes()[:-200])
    with pytest.raises(importer.ImportFailed, match=r"cut\.xml: .*\(0 records of this file stored before it\)"):
        cluster.import_files_dask(tmp_path / "c.db", [MEDLINE, broken], scheduler=scheduler)
    conn = sqlite3.connect(tmp_path / "c.db")
    assert conn.execute("select count(*) from articles").fetchone()[0] == 604
    assert conn.execute("select status from harvest_runs").fetchone()[0] == "failed"


def test_a_cluster_running_other_rules_is_refused_before_the_import_starts(scheduler, tmp_path, monkeypatch):
    # Other rules in this process (the writer, and the local cluster's scheduler, a thread here);
    # the worker processes run this checkout's rules as they are.
    real = tags.RULES_VERSION
    monkeypatch.setattr(tags, "RULES_VERSION", "rules-v0")
    with pytest.raises(
        importer.ImportFailed,
        match=rf"^Dask worker tcp://\S+ runs ketamine-catalog \S+ {real} .*this writer .* rules-v0 .*: install",
    ):
        cluster.import_files_dask(tmp_path / "c.db", [RECORDS / "38011560.xml"], scheduler=scheduler)
    assert not (tmp_path / "c.db").exists()  # no run recorded: nothing was imported


def test_import_command_with_a_local_dask_cluster_builds_the_same_catalog(files, in_process, tmp_path):
    one, one_db = in_process
    result = run_cli("import", *files, "--db", tmp_path / "cli.db", "--engine", "dask", "--workers", "2")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        f"import run 1: {one.files} files, {one.records} records read; {one.new} new, {one.updated} updated, "
        f"{one.unchanged} unchanged, {one.deleted} marked deleted"
    )
    assert "2 worker threads" in result.stderr
    assert _catalog(tmp_path / "cli.db") == _catalog(one_db)


def test_scheduler_without_the_dask_engine_is_a_usage_error(tmp_path):
    result = CliRunner().invoke(
        cli, ["import", str(MEDLINE), "--db", str(tmp_path / "c.db"), "--scheduler", "tcp://h:8786"]
    )
    assert result.exit_code == 2
    assert "--scheduler needs --engine dask" in result.output
    result = CliRunner().invoke(
        cli,
        ["import", str(MEDLINE), "--db", str(tmp_path / "c.db"), "--engine", "dask", "--scheduler", "tcp://h:8786"]
        + ["--workers", "2"],
    )
    assert result.exit_code == 2
    assert "--workers sizes a local cluster" in result.output
    assert not (tmp_path / "c.db").exists()


def test_dask_engine_without_dask_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "dask.distributed", None)  # as if dask[distributed] were not installed
    result = CliRunner().invoke(cli, ["import", str(MEDLINE), "--db", str(tmp_path / "c.db"), "--engine", "dask"])
    assert result.exit_code == 1
    assert result.output.strip() == f"harvest: error: {MISSING_DASK}"
    assert not (tmp_path / "c.db").exists()


def test_the_harvester_imports_without_dask_installed(tmp_path):
    blocked = "import sys; sys.modules.update(dask=None, distributed=None); from harvest.cli import cli; cli()"
    proc = subprocess.run(
        [sys.executable, "-c", blocked, "import", str(RECORDS / "38011560.xml"), "--db", str(tmp_path / "c.db")],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert "1 files, 1 records read; 1 new" in proc.stdout
