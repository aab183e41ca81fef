"""Every record of ../shared/data/pubmed (the three .xml.gz files and records/: 33,800 PMIDs)
imported through the CLI (`python -m harvest import`, as a user loads NLM's files), once per
session for every file that reads it: test_store checks the import, test_hostile_exports reads
every record back through the export formats. Tests only read it."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from tests.conftest import LARGE_FILES, PUBMED, RECORDS, CliResult, run_cli
from tests.once import built_once

MEDLINE_FILE = PUBMED / "medline16n0902.xml.gz"
SHARED_FILES = [*LARGE_FILES, MEDLINE_FILE, *sorted(RECORDS.glob("*.xml"))]


def _import(directory: Path) -> None:
    result = run_cli("import", *SHARED_FILES, "--db", directory / "catalog.db")
    assert result.returncode == 0, result.stderr
    (directory / "import.json").write_text(json.dumps(vars(result)))


def imported_catalog(tmp_path_factory) -> tuple[Path, CliResult]:
    """(the catalog's path, what `harvest import` answered)."""
    directory = built_once(tmp_path_factory, "shared-import", _import)
    return directory / "catalog.db", CliResult(**json.loads((directory / "import.json").read_text()))


def connect_ro(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)
