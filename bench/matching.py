"""`import --match-topic` at the speed of decompression (issue #22, goal 1).

A baseline-sized file -- 30,000 clones of the records of the two large shared files, which are
real baseline and update records: a fraction of a percent mention ketamine, a few are on the
topic, as in NLM's baseline -- is imported with `python -m harvest import --match-topic` as a
user runs it (a new process, start-up included, into a new catalog), beside `zcat FILE >
/dev/null` on the same file and `python -m harvest --version` (the start-up alone). Runs
alternate so that each command sees the same load; the best of each is compared.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from bench.common import CLONE_PMID_BASE, ROOT, LoadSampler, log, write_clone_file

RECORDS = 30_000
ROUNDS = 3
GOAL_RATIO = 2.0


def _wall(args: list[str], **kwargs) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, **kwargs)
    seconds = time.perf_counter() - start
    if proc.returncode:
        raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}): {proc.stderr[-2000:]!r}")
    return seconds, proc


def run(workdir: Path) -> dict:
    log(f"match: writing a {RECORDS:,}-record clone file")
    path = write_clone_file(workdir / "match_30000.xml.gz", RECORDS, CLONE_PMID_BASE + 200_000_000)
    runs: dict[str, list[float]] = {"zcat": [], "startup": [], "import": []}
    summary = ""
    with LoadSampler() as load:
        for round_ in range(ROUNDS):
            seconds, _ = _wall(["zcat", str(path)])
            runs["zcat"].append(round(seconds, 2))
            seconds, _ = _wall([sys.executable, "-m", "harvest", "--version"])
            runs["startup"].append(round(seconds, 2))
            db = workdir / f"match_{round_}.db"
            db.unlink(missing_ok=True)
            seconds, proc = _wall(
                [sys.executable, "-m", "harvest", "import", "--match-topic", str(path), "--db", str(db)], text=True
            )
            runs["import"].append(round(seconds, 2))
            summary = proc.stdout.strip()
            log(f"  round {round_ + 1}: zcat {runs['zcat'][-1]} s, import --match-topic {runs['import'][-1]} s")
            db.unlink(missing_ok=True)
    best = {name: min(times) for name, times in runs.items()}
    ratio = round(best["import"] / best["zcat"], 2)
    return {
        "records": RECORDS,
        "file_mib": round(path.stat().st_size / 2**20, 1),
        "runs": runs,
        "best": best,
        "import_summary": summary,
        "ratio_to_zcat": ratio,
        "goal_ratio": GOAL_RATIO,
        "load": load.summary(),
        "goals": {"match_topic_within_2x_zcat": ratio <= GOAL_RATIO},
    }


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        print(json.dumps(run(Path(d)), indent=1))
