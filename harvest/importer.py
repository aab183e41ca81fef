"""Bulk import of PubMed XML files (efetch output, NLM baseline and update files).

Owns reading files from disk and feeding them through the same parse-and-store
path as a harvest, applying their DeleteCitation blocks, and logging the import
as a run. Must never: hold a whole file in memory (files are streamed, stored
in batches, one transaction each), or leave a run marked as anything but
success when a file could not be read to its end.
"""

from __future__ import annotations

import gzip
import io
import logging
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Iterator

from . import store
from .pubmed_xml import PubmedXMLError, parse_pubmed_xml
from .query import QUERY_VERSION, TOPIC_QUERY, matches_topic
from .runner import NoProgress, Progress

log = logging.getLogger("harvest.import")

BATCH = 1000


class ImportFailed(RuntimeError):
    def __init__(self, message: str, run_id: int | None = None):
        super().__init__(message)
        self.run_id = run_id


@dataclass
class ImportOutcome:
    run_id: int
    files: int = 0
    records: int = 0
    skipped_off_topic: int = 0
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    per_file: list[tuple[str, int]] = field(default_factory=list)


def record_matches_topic(record: dict) -> bool:
    return matches_topic(
        record.get("title"),
        record.get("abstract"),
        [k["keyword"] for k in record.get("keywords") or []],
        [m["descriptor_name"] for m in record.get("mesh") or []],
    )


def _matched(record: dict) -> bool:
    return True  # --match-topic: only matching records reach the store


class _CountingReader(io.RawIOBase):
    """The file on disk, reporting the bytes read (compressed or not) for progress."""

    def __init__(self, path: Path, on_read):
        self.file = open(path, "rb")
        self.on_read = on_read

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = self.file.readinto(buffer)
        self.on_read(n or 0)
        return n

    def close(self) -> None:
        self.file.close()
        super().close()


@contextmanager
def open_xml(path: Path, on_read=lambda n: None) -> Iterator[BinaryIO]:
    """A PubMed XML file, gunzipped when it is gzip (by its magic bytes, not its name)."""
    with open(path, "rb") as probe:
        gzipped = probe.read(2) == b"\x1f\x8b"
    raw = _CountingReader(path, on_read)
    try:
        yield gzip.GzipFile(fileobj=raw, mode="rb") if gzipped else io.BufferedReader(raw)
    finally:
        raw.close()


def import_files(
    db_path: Path | str,
    paths: list[Path],
    *,
    match_topic: bool = False,
    progress: Progress | None = None,
) -> ImportOutcome:
    progress = progress or NoProgress()
    missing = [str(p) for p in paths if not Path(p).is_file()]
    if missing:
        raise ImportFailed(f"no such file: {', '.join(missing)}")
    with store.harvest_lock(db_path):
        db = store.open_db(db_path)
        store.mark_abandoned_runs(db)
        run_id = store.start_run(db, mode="import", query_version=QUERY_VERSION, query_text=TOPIC_QUERY,
                                 window_from=None)
        outcome = ImportOutcome(run_id=run_id)
        progress.start(sum(Path(p).stat().st_size for p in paths))
        try:
            for path in paths:
                _import_one(db, Path(path), run_id, match_topic, progress, outcome)
            progress.finish()
            store.finish_run(db, run_id, status="success", **_values(outcome))
            return outcome
        except BaseException as exc:
            progress.finish()
            message = str(exc) or type(exc).__name__
            store.finish_run(db, run_id, status="aborted" if isinstance(exc, KeyboardInterrupt) else "failed",
                             error=message, **_values(outcome))
            if isinstance(exc, Exception):
                raise ImportFailed(message, run_id) from exc
            raise


def _values(outcome: ImportOutcome) -> dict:
    return {
        "records_promised": outcome.records,
        "records_stored": outcome.new + outcome.updated + outcome.unchanged,
        "new": outcome.new,
        "updated": outcome.updated,
        "unchanged": outcome.unchanged,
        "unmatched": outcome.skipped_off_topic,
        "deleted": outcome.deleted,
        "requests": 0,
    }


def _import_one(db, path: Path, run_id: int, match_topic: bool, progress: Progress, outcome: ImportOutcome) -> None:
    batch: list[dict] = []
    deletions: list[dict] = []
    stored_here = 0

    def flush() -> None:
        nonlocal stored_here
        if not batch:
            return
        # New records are marked by the local evaluation of the query; a record a
        # harvest already stored keeps what PubMed's own search said of it.
        counts = store.save_articles(db, batch, run_id, matches_query=None,
                                     topic_match=_matched if match_topic else record_matches_topic)
        outcome.new += counts.new
        outcome.updated += counts.updated
        outcome.unchanged += counts.unchanged
        stored_here += len(batch)
        batch.clear()

    with open_xml(path, progress.advance) as stream:
        try:
            for item in parse_pubmed_xml(stream, source_name=str(path)):
                if item["type"] == "delete":
                    deletions.append(item)
                    continue
                outcome.records += 1
                if match_topic and not record_matches_topic(item):
                    outcome.skipped_off_topic += 1
                    continue
                batch.append(item)
                if len(batch) >= BATCH:
                    flush()
            flush()
        except (PubmedXMLError, OSError, EOFError) as exc:
            raise ImportFailed(f"{path}: {exc} ({stored_here} records of this file stored before it)") from None
    flagged = store.apply_deletions(db, deletions, run_id) if deletions else 0
    outcome.deleted += flagged
    outcome.files += 1
    outcome.per_file.append((str(path), stored_here))
    log.log(logging.INFO if stored_here >= BATCH or deletions else logging.DEBUG,
            "%s: %d records stored; %d deletions listed, %d stored records marked deleted",
            path, stored_here, len(deletions), flagged)
