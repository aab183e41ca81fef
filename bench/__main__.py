"""`python -m bench [SECTION ...]`: run the benchmarks, print the figures, write bench/results.json
and bench/RESULTS.md. Sections: requests, citations, parse, match, import, catalog (default: all, in that order).

BENCH_CLONE_FILES (default 4) sets how many 30,000-record clone files the import section
loads (10 = the 300,000-record run); BENCH_FULL=1 also parses the 120,000-record file with
pubmed_parser (its memory beside ours); BENCH_DIR keeps the working files (clones, catalogs)
in a folder of your choice instead of a temporary one that is removed at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench import common, report

SECTIONS = ("requests", "citations", "parse", "match", "import", "catalog")


def main(argv: list[str]) -> int:
    sections = [s for s in argv if s in SECTIONS] or list(SECTIONS)
    unknown = [s for s in argv if s not in SECTIONS]
    if unknown:
        print(f"unknown section(s) {unknown}; choose from {SECTIONS}", file=sys.stderr)
        return 2
    keep = os.environ.get("BENCH_DIR")
    workdir = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="ketamine-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    results_path = common.ROOT / "bench" / "results.json"
    previous = json.loads(results_path.read_text()) if results_path.exists() else {}
    results = {
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": common.machine(),
        "load_at_start": os.getloadavg()[0],
        "sections": {},
    }
    start = time.perf_counter()
    try:
        if "requests" in sections:
            from bench import request_economy

            results["sections"]["requests"] = request_economy.run(workdir)
        if "citations" in sections:
            from bench import citations

            results["sections"]["citations"] = citations.run(workdir)
        if "parse" in sections:
            from bench import parsing

            results["sections"]["parse"] = parsing.run(workdir, peers_at_largest=bool(os.environ.get("BENCH_FULL")))
        if "match" in sections:
            from bench import matching

            results["sections"]["match"] = matching.run(workdir)
        if "import" in sections:
            from bench import importing

            files = int(os.environ.get("BENCH_CLONE_FILES", "4"))
            results["sections"]["import"] = importing.run(workdir, clone_files=files)
        if "catalog" in sections:
            from bench import catalog

            source = Path(results["sections"].get("import", {}).get("clone_catalog", workdir / "clones.db"))
            if not source.exists():
                from bench import importing

                source = workdir / "shared_pool.db"
                if not source.exists():  # BENCH_DIR keeps it from an earlier run
                    common.log("catalog: no imported catalog yet; importing the shared files as its source")
                    importing.one(source, 2, common.SHARED_GZ_FILES)
            results["sections"]["catalog"] = catalog.run(workdir, source)
    finally:
        results["seconds"] = round(time.perf_counter() - start, 1)
        # How long a whole `make bench` takes: this run if it ran every section, else the last that did.
        if set(sections) == set(SECTIONS):
            results["all_sections"] = {
                "seconds": results["seconds"],
                "at": results["started_at"],
                "clone_files": int(os.environ.get("BENCH_CLONE_FILES", "4")),
            }
        elif previous.get("all_sections") or previous.get("seconds"):
            results["all_sections"] = previous.get("all_sections") or {
                "seconds": previous["seconds"],
                "at": previous.get("started_at"),
                "clone_files": 4,
            }
        # Sections not run this time keep their last figures, marked with when they were measured.
        for name, section in (previous.get("sections") or {}).items():
            if name not in results["sections"]:
                results["sections"][name] = {
                    **section,
                    "from_run": section.get("from_run") or previous.get("started_at"),
                }
        results_path.write_text(json.dumps(results, indent=1) + "\n")
        table = report.markdown(results)
        (common.ROOT / "bench" / "RESULTS.md").write_text(table)
        print(table)
        print(f"\nthis run: {results['seconds'] / 60:.1f} minutes; results in {results_path}")
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
