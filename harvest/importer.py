"""Bulk import of PubMed XML files (efetch output, NLM baseline and update files).

Owns reading files from disk and feeding them through the same stages as a harvest --
read (the file) -> parse -> tag -> rows -> save, then summarise -- applying their
DeleteCitation blocks, and logging the import as a run. With workers, parse, tag and rows
run in other processes (`read_prepared_batches`) and this one saves. Must never: hold a whole file in memory (files are streamed, stored
in batches, one transaction each), or leave a run marked as anything but
success when a file could not be read to its end.
"""

from __future__ import annotations

import gzip
import io
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from . import rebuild, rows, store
from .prefilter import TopicPrefilter
from .pubmed_xml import ArticleRecord, Deletion, PubmedXMLError, parse_pubmed_xml
from .query import QUERY_VERSION, TOPIC_QUERY, matches_topic
from .runner import HarvestFailed, NoProgress, Progress
from .tags import tag_record

log = logging.getLogger("harvest.import")

BATCH = 1000


class ImportFailed(HarvestFailed):
    """An import that could not read a file to its end (what it stored stays)."""


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


def record_matches_topic(record: Mapping) -> bool:
    return matches_topic(
        record.get("title"),
        record.get("abstract"),
        [k["keyword"] for k in record.get("keywords") or []],
        [m["descriptor_name"] for m in record.get("mesh") or []],
    )


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
def open_xml(path: Path, on_read=lambda n: None) -> Iterator[io.BufferedIOBase]:
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
    workers: int = 1,
) -> ImportOutcome:
    """Import `paths` in order into the catalog at `db_path`, as one run.

    `workers` > 1 parses and tags files in that many processes (`import_files_parallel`);
    the catalog ends up the same either way.
    """
    if workers > 1:
        return import_files_parallel(db_path, paths, workers, match_topic=match_topic, progress=progress)
    return _import(db_path, paths, match_topic, progress, _read_sequentially)


def import_files_parallel(
    db_path: Path | str,
    paths: list[Path],
    workers: int,
    *,
    match_topic: bool = False,
    progress: Progress | None = None,
) -> ImportOutcome:
    """`import_files` with parsing, hashing, compressing and tagging in `workers` processes.

    File i goes to worker i % workers, which streams it as batches of prepared records
    (`read_prepared_batches`, the same function a Dask or Spark job would map over files)
    into a bounded queue; this process is the one writer and stores the files strictly in
    the order given, so a later update file still wins over an earlier one and memory
    stays bounded (at most `QUEUE_BATCHES` batches per worker are in flight).
    """
    return _import(
        db_path,
        paths,
        match_topic,
        progress,
        lambda paths, match_topic, progress: _read_in_processes(paths, match_topic, workers),
    )


def _not_a_file(path: Path) -> str:
    """Why `path` cannot be read as a file of records (it is not a regular file)."""
    if path.exists():
        return f"{path} is not a regular file (a directory, device or FIFO)"
    if path.is_symlink():
        return f"{path} is a symbolic link that leads to no file (or to itself)"
    return f"no such file: {path}"


def _import(db_path, paths, match_topic, progress, read) -> ImportOutcome:
    progress = progress or NoProgress()
    problems = [_not_a_file(Path(p)) for p in paths if not Path(p).is_file()]
    if problems:
        raise ImportFailed("; ".join(problems))
    with store.harvest_lock(db_path):
        db = rebuild.open_for_writing(db_path)  # derived rows older code built are rebuilt first
        store.mark_abandoned_runs(db)
        run_id = store.start_run(
            db, mode="import", query_version=QUERY_VERSION, query_text=TOPIC_QUERY, window_from=None
        )
        outcome = ImportOutcome(run_id=run_id)
        progress.start(sum(Path(p).stat().st_size for p in paths))
        try:
            for path, items in read([Path(p) for p in paths], match_topic, progress):
                _store_file(db, path, items, run_id, match_topic, progress, outcome)
            progress.finish()
            store.refresh_summaries(db)
            store.refresh_similar(db)  # new and changed records, and their neighbours
            store.finish_run(db, run_id, status="success", **_values(outcome))
            return outcome
        except BaseException as exc:
            progress.finish()
            message = str(exc) or type(exc).__name__
            try:
                if isinstance(exc, Exception):
                    store.refresh_summaries(db)  # what was stored before the failure is kept: count it
                store.finish_run(
                    db,
                    run_id,
                    status="aborted" if isinstance(exc, KeyboardInterrupt) else "failed",
                    error=message,
                    **_values(outcome),
                )
            except Exception as unrecorded:  # e.g. the full disk that failed the import
                log.error("import run %d: its failure could not be recorded in the catalog: %s", run_id, unrecorded)
                message += f" (the catalog could not record this failure: {unrecorded})"
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


# -- reading: one file -> batches ----------------------------------------------------------


class FileFault(Exception):
    """A file could not be read to its end (the message names it)."""


def read_batches(path: Path, match_topic: bool, on_read=lambda n: None, *, prepare: bool = False):
    """One file as a stream of items, in document order:
    ("batch", records, records_read, skipped_off_topic) per BATCH records kept,
    then ("end", deletions, records_read, skipped_off_topic); raises FileFault when the
    file is cut off or not PubMed XML. With `prepare`, a batch holds the records' rows
    (tagged, `rows.ArticleRows`, what `_prepared` makes) instead of the parsed records."""
    batch: list[ArticleRecord] = []
    deletions: list[Deletion] = []
    read = skipped = 0
    try:
        with open_xml(path, on_read) as stream, _prefiltered(stream, match_topic) as prefilter:
            # --match-topic: records that cannot match are dropped on their bytes, unparsed
            # (harvest/prefilter.py); they count as read and skipped like any other.
            counted = 0

            def dropped_since_last() -> int:
                nonlocal counted
                if prefilter is None:
                    return 0
                new, counted = prefilter.dropped - counted, prefilter.dropped
                return new

            for item in parse_pubmed_xml(prefilter or stream, source_name=str(path)):
                if item["type"] == "delete":
                    deletions.append(item)
                    continue
                read += 1
                if match_topic and not record_matches_topic(item):
                    skipped += 1
                    continue
                batch.append(item)
                if len(batch) >= BATCH:
                    dropped = dropped_since_last()
                    yield (
                        "batch",
                        _prepared(batch, match_topic) if prepare else batch,
                        read + dropped,
                        skipped + dropped,
                    )
                    batch, read, skipped = [], 0, 0
            dropped = dropped_since_last()
            read, skipped = read + dropped, skipped + dropped
            if batch:
                yield ("batch", _prepared(batch, match_topic) if prepare else batch, read, skipped)
                read = skipped = 0
    except (PubmedXMLError, OSError, EOFError) as exc:
        raise FileFault(str(exc)) from None
    yield ("end", deletions, read, skipped)


@contextmanager
def _prefiltered(stream, match_topic: bool) -> Iterator[TopicPrefilter | None]:
    """With --match-topic, the file's bytes through the prefilter, gunzipped in a thread beside
    it; stopped before the file is closed."""
    if not match_topic:
        yield None
        return
    prefilter = TopicPrefilter(stream, read_ahead=True)
    try:
        yield prefilter
    finally:
        prefilter.close()


def read_prepared_batches(path: Path, match_topic: bool = False):
    """`read_batches` with the database-free work done: what a worker process runs per file."""
    return read_batches(path, match_topic, prepare=True)


def _prepared(records: list[ArticleRecord], match_topic: bool) -> list[rows.ArticleRows]:
    """tag -> rows, with the local evaluation of the topic query (what new records are marked by;
    with --match-topic only matching records get this far)."""
    return [_rows_of(record, match_topic) for record in records]


def _rows_of(record: ArticleRecord, match_topic: bool) -> rows.ArticleRows:
    topic = True if match_topic else record_matches_topic(record)
    return rows.article_rows(record, tag_record(record), topic_match=topic)


def _read_sequentially(paths: list[Path], match_topic: bool, progress: Progress):
    for path in paths:
        yield path, read_batches(path, match_topic, progress.advance)


def _store_file(
    db, path: Path, items, run_id: int, match_topic: bool, progress: Progress, outcome: ImportOutcome
) -> None:
    stored_here = 0
    deletions: list[dict] = []
    try:
        for item in items:
            kind, payload, read, skipped = item
            outcome.records += read
            outcome.skipped_off_topic += skipped
            if kind == "end":
                deletions = payload
                continue
            if kind == "bytes":
                progress.advance(payload)
                continue
            # Workers send rows; read in this process, records are tagged and made rows here,
            # only those the catalog lacks. New records are marked by the local evaluation of
            # the query; a record a harvest already stored keeps what PubMed's search said of it.
            if payload and isinstance(payload[0], rows.ArticleRows):
                seen, batch = [item.fingerprint for item in payload], payload
            else:
                seen = [rows.fingerprint(r) for r in payload]
                lacking = store.not_stored(db, seen)
                batch = [_rows_of(r, match_topic) for r, fp in zip(payload, seen) if fp in lacking]
            counts = store.save_articles(db, seen, batch, run_id, matches_query=None)
            outcome.new += counts.new
            outcome.updated += counts.updated
            outcome.unchanged += counts.unchanged
            stored_here += len(payload)
    except FileFault as exc:
        raise ImportFailed(f"{path}: {exc} ({stored_here} records of this file stored before it)") from None
    flagged = store.apply_deletions(db, deletions, run_id) if deletions else 0
    outcome.deleted += flagged
    outcome.files += 1
    outcome.per_file.append((str(path), stored_here))
    log.log(
        logging.INFO if stored_here >= BATCH or deletions else logging.DEBUG,
        "%s: %d records stored; %d deletions listed, %d stored records marked deleted",
        path,
        stored_here,
        len(deletions),
        flagged,
    )


# -- reading in worker processes -------------------------------------------------------------

# Batches a worker may have waiting for the writer: enough to keep every worker busy while
# the writer is on another worker's file, small enough that memory stays bounded.
QUEUE_BATCHES = 12


def _worker(index: int, workers: int, paths: list[Path], match_topic: bool, queue) -> None:
    for i in range(index, len(paths), workers):
        path = paths[i]
        size = path.stat().st_size
        try:
            for item in read_prepared_batches(path, match_topic):
                queue.put((i, item))
        except FileFault as exc:
            queue.put((i, ("fault", str(exc), 0, 0)))
            return
        except BaseException as exc:  # anything else: the writer reports it and stops
            queue.put((i, ("error", f"{type(exc).__name__}: {exc}", 0, 0)))
            return
        queue.put((i, ("bytes", size, 0, 0)))
        queue.put((i, ("done", None, 0, 0)))


def _read_in_processes(paths: list[Path], match_topic: bool, workers: int):
    import multiprocessing

    workers = max(1, min(workers, len(paths)))
    fork = "fork" in multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork") if fork else multiprocessing.get_context("spawn")
    queues = [context.Queue(QUEUE_BATCHES) for _ in range(workers)]
    processes = [
        context.Process(target=_worker, args=(w, workers, paths, match_topic, queues[w]), daemon=True)
        for w in range(workers)
    ]
    for process in processes:
        process.start()
    try:
        for i, path in enumerate(paths):
            yield path, _items_of(i, path, queues[i % workers], processes[i % workers])
        for process in processes:
            process.join()
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
                process.join()


def _items_of(i: int, path: Path, queue, process):
    import queue as queue_module

    while True:
        try:
            index, item = queue.get(timeout=5)
        except queue_module.Empty:
            if not process.is_alive():
                raise ImportFailed(
                    f"{path}: the worker process reading it died (exit code {process.exitcode})"
                ) from None
            continue
        assert index == i, (index, i)  # each worker sends its files in order
        kind = item[0]
        if kind == "fault":
            raise FileFault(item[1])
        if kind == "error":
            raise RuntimeError(f"{path}: {item[1]}")
        if kind == "done":
            return
        yield item
