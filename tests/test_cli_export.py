"""`harvest export`: what a researcher pipes into a reference manager."""

from __future__ import annotations

import json

import bibtexparser
import rispy

from tests.conftest import harvest_env, run_cli


def test_export_command_writes_files_reference_managers_read(records_server, tmp_path):
    db_path = tmp_path / "c.db"
    assert run_cli("run", "--db", db_path, env=harvest_env(records_server.url)).returncode == 0

    ris = run_cli("export", "--db", db_path, "--format", "ris", "--search", "ketamine")
    assert ris.returncode == 0, ris.stderr
    # The one record of records/ that full-text search finds for "ketamine".
    (entry,) = rispy.loads(ris.stdout)
    assert entry["accession_number"] == "38011560"
    assert entry["title"].startswith("Ketamine and the neurobiology of depression")
    assert entry["authors"][0] == "Krystal, John H" and entry["doi"] == "10.1073/pnas.2305772120"

    out = tmp_path / "refs.bib"
    bib = run_cli("export", "--db", db_path, "--format", "bibtex", "--pmid", "38011560", "-o", out)
    assert bib.returncode == 0, bib.stderr
    library = bibtexparser.parse_string(out.read_text())
    (entry,) = library.entries
    assert entry["doi"] == "10.1073/pnas.2305772120"

    csl = run_cli("export", "--db", db_path, "--format", "csl-json", "--pmid", "38011560")
    (item,) = json.loads(csl.stdout)
    assert item["DOI"] == "10.1073/pnas.2305772120" and item["issued"]["date-parts"][0][0] == 2023

    bad = run_cli("export", "--db", db_path, "--format", "ris", "--search", '"unbalanced')
    assert bad.returncode == 2 and "--search" in bad.stderr


def test_export_with_no_matching_record_says_0_records_and_what_was_asked(records_server, tmp_path):
    db_path = tmp_path / "c.db"
    assert run_cli("run", "--db", db_path, env=harvest_env(records_server.url)).returncode == 0

    none = run_cli("export", "--db", db_path, "--format", "ris", "--search", "zzyzxnotaword")
    assert none.returncode == 0
    assert none.stdout.strip() == ""
    assert "0 records" in none.stderr and "--search 'zzyzxnotaword'" in none.stderr

    unknown = run_cli("export", "--db", db_path, "--format", "csl-json", "--pmid", "1")
    assert unknown.returncode == 0 and json.loads(unknown.stdout) == []
    assert "0 records" in unknown.stderr and "--pmid 1" in unknown.stderr

    some = run_cli("export", "--db", db_path, "--format", "ris", "--pmid", "38011560")
    assert some.returncode == 0 and "0 records" not in some.stderr
