"""What every section shares: the real records, clone files, the machine, the load while measuring.

Clones are made here, in code, from the shared real records (new PMIDs, and new dates
where a section needs them); they live in a temporary folder and are never committed.
"""

from __future__ import annotations

import gzip
import json
import os
import platform
import re
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("KETAMINE_SHARED_DATA") or ROOT.parent / "shared" / "data")
PUBMED = DATA / "pubmed"
LARGE_FILES = [PUBMED / "pubmed20n0014-part1.xml.gz", PUBMED / "pubmed21n1298-part1.xml.gz"]
SHARED_GZ_FILES = [*LARGE_FILES, PUBMED / "medline16n0902.xml.gz"]
# The header every clone file gets: the 2021 file's XML declaration and https DOCTYPE
# (the same DTD, pubmed_190101, as the 2020 file), so Bio.Entrez reads clones as they are.
HEADER_SOURCE = PUBMED / "pubmed21n1298-part1.xml.gz"

_RECORD = re.compile(rb"<PubmedArticle>.*?</PubmedArticle>", re.S)
_PMID = re.compile(rb"(<PMID Version=\"\d+\">)(\d+)(</PMID>)")
_SELF_ID = rb'(<ArticleId IdType="pubmed">)%s(</ArticleId>)'
CLONE_PMID_BASE = 50_000_000  # far above any real PMID, so clones never meet a real record


def real_records() -> list[bytes]:
    """The raw bytes of every PubmedArticle in the two large shared files, as published."""
    if not hasattr(real_records, "cache"):
        out = []
        for path in LARGE_FILES:
            out.extend(m.group(0) for m in _RECORD.finditer(gzip.open(path).read()))
        real_records.cache = out
    return real_records.cache


def file_header() -> bytes:
    head = gzip.open(HEADER_SOURCE).read(1000)
    return head[: head.index(b"<PubmedArticleSet>")] + b"<PubmedArticleSet>\n"


def clone(raw: bytes, new_pmid: int) -> bytes:
    """A real record under a new PMID (its own PMID and its pubmed ArticleId)."""
    match = _PMID.search(raw)
    old = match.group(2)
    new = str(new_pmid).encode()
    raw = raw[: match.start(2)] + new + raw[match.end(2) :]
    return re.sub(_SELF_ID % old, rb"\g<1>" + new + rb"\g<2>", raw)


def write_clone_file(path: Path, count: int, first_pmid: int, offset: int = 0) -> Path:
    """A PubmedArticleSet of `count` clones of the shared records (cycled from `offset`),
    PMIDs first_pmid, first_pmid + 1, ...; gzip level 1, like a baseline file."""
    records = real_records()
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb", compresslevel=1) as out:
        out.write(file_header())
        for i in range(count):
            out.write(b"  " + clone(records[(offset + i) % len(records)], first_pmid + i) + b"\n")
        out.write(b"</PubmedArticleSet>\n")
    return path


def machine() -> dict:
    cpu = ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem_gib = None
    try:
        kib = next(int(line.split()[1]) for line in open("/proc/meminfo") if line.startswith("MemTotal"))
        mem_gib = round(kib / 2**20, 1)
    except (OSError, StopIteration):
        pass
    import lxml.etree

    return {
        "cpus": os.cpu_count(),
        "cpu": cpu or platform.processor(),
        "memory_gib": mem_gib,
        "os": platform.platform(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "lxml": ".".join(map(str, lxml.etree.LXML_VERSION)),
        "libxml2": ".".join(map(str, lxml.etree.LIBXML_VERSION)),
    }


class LoadSampler:
    """The machine's 1-minute load average, sampled while a section runs (other agents and
    test suites share this machine: every figure is reported with the load it ran under)."""

    def __init__(self, every: float = 2.0):
        self.every = every
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.samples.append(os.getloadavg()[0])
            self._stop.wait(self.every)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict:
        s = self.samples or [os.getloadavg()[0]]
        return {"min": round(min(s), 2), "mean": round(sum(s) / len(s), 2), "max": round(max(s), 2)}


@contextmanager
def timed(results: dict, key: str):
    start = time.perf_counter()
    yield
    results[key] = round(time.perf_counter() - start, 2)


def run_json(args: list[str], timeout: float = 1800, env: dict | None = None) -> dict:
    """Run `python ARGS` in a fresh process (so its peak memory is its own); it prints one JSON line."""
    proc = subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def peak_rss_mib() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss it starts afresh at exec,
    so a child of a large parent does not inherit the parent's peak)."""
    with open("/proc/self/status") as f:
        kib = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    return round(kib / 1024, 1)


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return round(int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def fresh(db: Path) -> Path:
    """`db` gone with its WAL, shared memory and lock file: every import and harvest is measured into a new
    catalog, also when BENCH_DIR keeps an earlier run's (re-importing into it stores nothing new
    and measured 1,022 records/s for what was a comparison of unchanged records; the citations
    section found every record already read and asked for nothing)."""
    for suffix in ("", "-wal", "-shm", ".lock"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    return db
