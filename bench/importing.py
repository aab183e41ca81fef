"""Import speed: `harvest import` of the shared files and of 300,000 cloned records, beside the
time pubmed_parser takes merely to parse the same files; the per-file process pool's speed-up,
and the same files through a local Dask cluster (`--engine dask`); `harvest retag` and
`harvest rebuild` over the cloned catalog.

Every import runs in its own process into a new catalog with the full schema (FTS and all
indexes), exactly as `python -m harvest import` builds it.
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from pathlib import Path

from bench.common import CLONE_PMID_BASE, SHARED_GZ_FILES, LoadSampler, fresh, log, run_json, write_clone_file

CLONE_FILES = 10
PER_FILE = 30_000  # a baseline file holds about 30,000 records


class _FileTimes:
    """Progress sink that notes when each file is finished (the pool reports a file's bytes at its end)."""

    def __init__(self):
        self.marks: list[float] = []

    def start(self, total):
        self.marks.append(time.perf_counter())

    def advance(self, n):
        self.marks.append(time.perf_counter())

    def finish(self):
        pass


def one(db: Path, workers: int, files: list[Path]) -> dict:
    from harvest.importer import import_files

    progress = _FileTimes()
    start = time.perf_counter()
    outcome = import_files(fresh(db), files, workers=workers, progress=progress)
    seconds = time.perf_counter() - start
    per_file = []
    if workers > 1:
        marks = progress.marks
        for (path, stored), a, b in zip(outcome.per_file, marks, marks[1:]):
            per_file.append({"file": Path(path).name, "records": stored, "seconds": round(b - a, 2)})
    return {
        "workers": workers,
        "files": outcome.files,
        "records": outcome.records,
        "new": outcome.new,
        "seconds": round(seconds, 1),
        "records_per_s": round(outcome.records / seconds),
        "per_file": per_file,
        "db_mib": round(db.stat().st_size / 2**20),
    }


def parse_only(files: list[Path]) -> dict:
    warnings.filterwarnings("ignore")
    import pubmed_parser

    start = time.perf_counter()
    n = 0
    for path in files:
        for record in pubmed_parser.parse_medline_xml(str(path)):
            n += not record.get("delete")
    seconds = time.perf_counter() - start
    return {"records": n, "seconds": round(seconds, 1), "records_per_s": round(n / seconds)}


def _cli_import(db: Path, files: list[Path], *options: str) -> dict:
    import subprocess

    fresh(db)
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "harvest", "import", *map(str, files), "--db", str(db), *options],
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - start
    if proc.returncode:
        raise RuntimeError(proc.stderr[-2000:])
    import sqlite3

    records = sqlite3.connect(db).execute("select count(*) from article_xml").fetchone()[0]
    return {
        "seconds": round(seconds, 1),
        "records": records,
        "records_per_s": round(records / seconds),
        "stdout": proc.stdout.strip(),
    }


def _cli_over_catalog(command: str, db: Path) -> dict:
    """`python -m harvest COMMAND --db DB` (retag, rebuild) as a user runs it, over every stored record."""
    import sqlite3
    import subprocess

    records = sqlite3.connect(db).execute("select count(*) from articles").fetchone()[0]
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "harvest", command, "--db", str(db)], capture_output=True, text=True, timeout=3600
    )
    seconds = time.perf_counter() - start
    if proc.returncode:
        raise RuntimeError(proc.stderr[-2000:])
    return {
        "records": records,
        "seconds": round(seconds, 1),
        "records_per_s": round(records / seconds),
        "stdout": proc.stdout.strip(),
    }


def run(workdir: Path, *, clone_files: int = CLONE_FILES) -> dict:
    out: dict = {}
    shared = [str(p) for p in SHARED_GZ_FILES]
    with LoadSampler() as load:
        log("import: shared files through the CLI (one process)")
        out["shared_cli"] = _cli_import(workdir / "shared_cli.db", SHARED_GZ_FILES)
        log(f"  {out['shared_cli']}")
        log("import: shared files, 2 worker processes + the writer")
        out["shared_pool2"] = run_json(["-m", "bench.importing", "one", str(workdir / "shared_pool.db"), "2", *shared])
        log(f"  {out['shared_pool2']}")
        log("import: shared files through the CLI, a local Dask cluster of 2 workers + the writer")
        # start-up included: the cluster's processes start and import the harvester (about 3 s)
        out["shared_dask2"] = _cli_import(
            workdir / "shared_dask.db", SHARED_GZ_FILES, "--engine", "dask", "--workers", "2"
        )
        log(f"  {out['shared_dask2']}")
        log("import: pubmed_parser parsing the shared files")
        out["shared_pubmed_parser"] = run_json(["-m", "bench.importing", "parse", *shared])
        log(f"  {out['shared_pubmed_parser']}")
        out["shared_speedup_2_workers"] = round(out["shared_cli"]["seconds"] / out["shared_pool2"]["seconds"], 2)
        # Goal 2: the whole import in one process against pubmed_parser's parse alone (<= 1.0)
        out["shared_one_process_ratio_to_pubmed_parser"] = round(
            out["shared_cli"]["seconds"] / out["shared_pubmed_parser"]["seconds"], 2
        )
        out["shared_load"] = load.summary()
    files = []
    for i in range(clone_files):
        files.append(
            write_clone_file(
                workdir / f"clone_batch_{i:02d}.xml.gz",
                PER_FILE,
                CLONE_PMID_BASE + 100_000_000 + i * PER_FILE,
                offset=i * 3_301,
            )
        )
    with LoadSampler() as load:
        log(f"import: {clone_files * PER_FILE:,} cloned records in {clone_files} files, 2 worker processes")
        big = run_json(
            ["-m", "bench.importing", "one", str(workdir / "clones.db"), "2", *map(str, files)], timeout=3600
        )
        log(f"  {big['records']} records in {big['seconds']} s ({big['records_per_s']} rec/s)")
        out["clones_pool2"] = big
        log("import: pubmed_parser parsing two of those files (the rest scaled by record count)")
        pp = run_json(["-m", "bench.importing", "parse", *map(str, files[:2])])
        pp["estimated_seconds_all"] = round(pp["seconds"] * big["records"] / pp["records"], 1)
        out["clones_pubmed_parser"] = pp
        # Goal 3: after a rules change every record is re-tagged (or every derived row rebuilt)
        # from the stored XML, over the catalog just built.
        for command in ("retag", "rebuild"):
            log(f"import: `harvest {command}` over the {big['records']:,}-record clone catalog")
            out[f"clones_{command}"] = _cli_over_catalog(command, workdir / "clones.db")
            log(f"  {out[f'clones_{command}']}")
        out["clones_load"] = load.summary()
    per = [f["seconds"] / f["records"] * 1000 for f in big["per_file"] if f["records"]]
    out["clones_ms_per_record_first_last"] = [round(per[0], 3), round(per[-1], 3)] if per else None
    out["clone_catalog"] = str(workdir / "clones.db")
    out["goals"] = {
        "shared_import_not_slower_than_pubmed_parser_parse": min(
            out["shared_cli"]["seconds"], out["shared_pool2"]["seconds"]
        )
        <= out["shared_pubmed_parser"]["seconds"],
        "clones_import_not_slower_than_pubmed_parser_parse": big["seconds"] <= pp["estimated_seconds_all"],
        "at_least_5000_records_per_s": big["records_per_s"] >= 5000,
        "retag_and_rebuild_at_5000_records_per_s": min(
            out["clones_retag"]["records_per_s"], out["clones_rebuild"]["records_per_s"]
        )
        >= 5000,
        # flat: the last file costs at most 25% more per record than the first
        "time_per_record_flat": bool(per) and per[-1] <= per[0] * 1.25,
    }
    return out


if __name__ == "__main__":
    if sys.argv[1:2] == ["one"]:
        print(json.dumps(one(Path(sys.argv[2]), int(sys.argv[3]), [Path(p) for p in sys.argv[4:]])))
    elif sys.argv[1:2] == ["parse"]:
        print(json.dumps(parse_only([Path(p) for p in sys.argv[2:]])))
    else:
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            print(json.dumps(run(Path(d), clone_files=int(sys.argv[1]) if sys.argv[1:] else CLONE_FILES), indent=1))
