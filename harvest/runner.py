"""One harvest run: plan the searches, fetch every promised record, store it, log the run.

Each batch goes fetch (`eutils`) -> parse (`pubmed_xml`) -> tag (`tags`) -> rows (`rows`)
-> save (`store`), and the run ends with summarise (`store.refresh_summaries`, `refresh_similar`).

Owns the run's life cycle and its promise: a run succeeds only when every PMID
its searches listed is stored, and only then does it move the watermark that
the next incremental run starts from. A failed or killed run leaves the
watermark where it was; the next run re-covers the gap, re-using (without
re-fetching) what the interrupted run already stored in full.
Must never: swallow an error into a success, or write outside store.py.
"""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from . import clock, rebuild, rows, store
from .config import Settings
from .eutils import EutilsClient, error_in_body
from .pubmed_xml import ArticleRecord, parse_articles
from .query import QUERY_VERSION, TOPIC_QUERY
from .search import DateRange, Plan, Slice, full_window, plan_window, since_windows, today_utc
from .tags import tag_record

log = logging.getLogger("harvest.run")

DEFAULT_BATCH = 500
DEFAULT_OVERLAP_DAYS = 3
# How many times a PMID that esearch listed but efetch left out is asked for again by id.
MISSING_RETRIES = 2


class Progress(Protocol):
    def start(self, total: int) -> None: ...
    def advance(self, n: int) -> None: ...
    def finish(self) -> None: ...


class NoProgress:
    def start(self, total: int) -> None:
        pass

    def advance(self, n: int) -> None:
        pass

    def finish(self) -> None:
        pass


class HarvestFailed(RuntimeError):
    def __init__(self, message: str, run_id: int | None = None):
        super().__init__(message)
        self.run_id = run_id


class HistoryUnusable(Exception):
    """The history server answered with an error (expired WebEnv, backend trouble)."""


@dataclass
class RunOutcome:
    run_id: int
    mode: str
    status: str
    promised: int = 0
    stored: int = 0
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    unmatched: int = 0
    requests: int = 0
    reused: int = 0
    discrepancies: list[str] = field(default_factory=list)
    promised_pmids: set[int] = field(default_factory=set, repr=False)


def choose_mode(
    last: dict | None, *, full: bool, since: dt.date | None, overlap_days: int, partial: bool = False
) -> tuple[str, dt.date | None]:
    """(mode, since-date) for this run; since is None for a full sweep.

    `last` is the last successful run of the full-sweep chain (`store.last_successful_run`);
    `partial` says whether `--since` runs or imports stored records without one (the catalog
    is then not new, but it is not complete either)."""
    if full:
        return "full", None
    if since is not None:
        return "since", since
    if last is None:
        return ("full (no full sweep yet)" if partial else "full (new catalog)"), None
    if last["query_version"] != QUERY_VERSION:
        return f"full (query changed {last['query_version']} -> {QUERY_VERSION})", None
    watermark = dt.date.fromisoformat(last["watermark"])
    return "incremental", watermark - dt.timedelta(days=overlap_days)


def run_harvest(
    db_path: Path | str,
    *,
    settings: Settings | None = None,
    full: bool = False,
    since: dt.date | None = None,
    overlap_days: int = DEFAULT_OVERLAP_DAYS,
    batch_size: int = DEFAULT_BATCH,
    progress: Progress | None = None,
    client: EutilsClient | None = None,
) -> RunOutcome:
    progress = progress or NoProgress()
    client = client or EutilsClient(settings)
    with _catalog_trouble(db_path), store.harvest_lock(db_path):
        # A catalog whose derived rows older code built (row model, tagging rules, summaries)
        # is rebuilt from its stored XML first (harvest/rebuild.py).
        db = rebuild.open_for_writing(db_path)
        aborted = store.mark_abandoned_runs(db)
        if aborted:
            log.warning("runs %s were left running by a process that died: marked aborted", aborted)
        # NCBI counts requests per client, not per process: a run that died (killed, then
        # restarted) or ended a moment ago may still have requests in the server's window.
        # Leave it that window before our first request (a second at most).
        ended = db.execute("select max(finished_at) from harvest_runs").fetchone()[0]
        if aborted or (ended and _seconds_since(ended) < RATE_WINDOW_AFTER_A_RUN):
            client.limiter.assume_full()
        last = store.last_successful_run(db)
        mode, since_date = choose_mode(
            last, full=full, since=since, overlap_days=overlap_days, partial=store.has_partial_runs(db)
        )
        today = today_utc()
        refuse_clock_behind("PubMed", last, mode, today)
        windows = [full_window(today)] if since_date is None else since_windows(since_date, today)

        # Work that interrupted runs stored after the last success is still good:
        # skip those PMIDs, and let the watermark start where they started.
        interrupted = store.interrupted_runs_since(db, last["id"] if last else None)
        reuse_runs = [r["id"] for r in interrupted]
        reusable = store.pmids_fetched_by_runs(db, reuse_runs)
        starts = [today] + [dt.date.fromisoformat(r["started_at"][:10]) for r in interrupted]
        # Only the full-sweep chain (full and incremental runs) moves the watermark: a
        # `--since` window covers part of what the query matches, never all of it.
        watermark = None if mode == "since" else min(starts)

        run_id = store.start_run(
            db,
            mode=mode,
            query_version=QUERY_VERSION,
            query_text=TOPIC_QUERY,
            window_from=None if since_date is None else since_date.isoformat(),
        )
        outcome = RunOutcome(run_id=run_id, mode=mode, status="running")
        log.info(
            "run %d: %s harvest%s",
            run_id,
            mode,
            f" of records created or revised since {since_date}" if since_date else "",
        )
        try:
            _harvest(db, client, run_id, windows, reusable, batch_size, progress, outcome)
            if since_date is None:
                outcome.unmatched = store.mark_unmatched(db, outcome.promised_pmids, run_id)
            store.refresh_summaries(db)
            store.refresh_similar(db)  # new and changed records, and their neighbours
            outcome.status = "success"
            outcome.requests = client.stats.requests
            store.finish_run(
                db,
                run_id,
                status="success",
                watermark=watermark.isoformat() if watermark else None,
                **_run_values(outcome, client),
            )
            return outcome
        except BaseException as exc:
            status = "aborted" if isinstance(exc, KeyboardInterrupt) else "failed"
            message = client.redact(str(exc) or type(exc).__name__)
            outcome.status = status
            if isinstance(exc, Exception):
                store.refresh_summaries(db)  # what the run stored is kept: count it
            try:
                store.finish_run(db, run_id, status=status, error=message, **_run_values(outcome, client))
            except Exception as unrecorded:  # e.g. the full disk that failed the run
                log.error("run %d: its failure could not be recorded in the catalog: %s", run_id, unrecorded)
                message += f" (the catalog could not record this failure: {unrecorded})"
            finally:
                progress.finish()
            if isinstance(exc, Exception):
                raise HarvestFailed(message, run_id) from exc
            raise


# finished_at has whole seconds; one more covers the rate window (1 s + margin) after it.
RATE_WINDOW_AFTER_A_RUN = 2.1


def _seconds_since(iso: str) -> float:
    try:
        then = dt.datetime.fromisoformat(iso)
    except ValueError:
        return float("inf")
    if then.tzinfo is None:
        then = then.replace(tzinfo=dt.timezone.utc)
    return (clock.now() - then).total_seconds()


@contextmanager
def _catalog_trouble(db_path):
    """A catalog that cannot be opened or written (full disk, read-only, corrupt) fails
    the run with a one-line reason, like any other failure, not a traceback."""
    try:
        yield
    except (sqlite3.Error, OSError) as exc:
        raise HarvestFailed(f"the catalog {db_path} cannot be opened or written: {exc}") from exc


def _source_run_succeeded(db, client, run_id: int, outcome, values: Callable[..., dict], watermark: str) -> None:
    """Record a trials, preprints or citations run as a success, its watermark moved."""
    outcome.status = "success"
    outcome.requests = client.stats.requests
    store.finish_run(db, run_id, status="success", watermark=watermark, **values(outcome, client))


@contextmanager
def _recording_source_run(db, client, label: str, run_id: int, outcome, values: Callable[..., dict]):
    """A trials, preprints or citations run that fails (or is interrupted) is recorded as such,
    with its counts so far, and fails as HarvestFailed with the run's id (an interrupt goes on
    as itself). A failure that cannot be recorded says so in the message."""
    try:
        yield
    except BaseException as exc:
        status = "aborted" if isinstance(exc, KeyboardInterrupt) else "failed"
        message = client.redact(str(exc) or type(exc).__name__)
        outcome.status = status
        try:
            store.finish_run(db, run_id, status=status, error=message, **values(outcome, client))
        except Exception as unrecorded:
            log.error("%s run %d: its failure could not be recorded in the catalog: %s", label, run_id, unrecorded)
            message += f" (the catalog could not record this failure: {unrecorded})"
        if isinstance(exc, Exception):
            raise HarvestFailed(message, run_id) from exc
        raise


class ClockBehind(HarvestFailed):
    """Today (the system clock, or HARVEST_TODAY) is before the last successful run's watermark."""


def refuse_clock_behind(source: str, last: dict | None, mode: str, today: dt.date) -> None:
    """An incremental run when the clock says a day before the last success's watermark: the
    clock went back (or HARVEST_TODAY names an earlier day). Its window would end where the last
    run's did or earlier (past the overlap, before it starts: nothing searched), it would
    "succeed" and move the watermark back; refused in one line before the run is recorded.
    Replaying a day is `--since DATE` (PubMed) or `--full`."""
    if mode != "incremental" or last is None or not last.get("watermark"):
        return
    watermark = dt.date.fromisoformat(last["watermark"])
    if today < watermark:
        raise ClockBehind(
            f"today is {today} by the clock (or HARVEST_TODAY), before {watermark}, the watermark of "
            f"the last successful {source} run ({last['id']}); an incremental run now would move the "
            f"watermark back: fix the clock, or replay with --since DATE or --full"
        )


def _choose_source_mode(
    last: dict | None, *, full: bool, overlap_days: int, query_version: str
) -> tuple[str, dt.date | None]:
    """(mode, since-date) of a trials or preprints run: full on request, for a new catalog or a
    changed query; else incremental from the last success's watermark less the overlap."""
    if full:
        return "full", None
    if last is None:
        return "full (new catalog)", None
    if last["query_version"] != query_version:
        return f"full (query changed {last['query_version']} -> {query_version})", None
    return "incremental", dt.date.fromisoformat(last["watermark"]) - dt.timedelta(days=overlap_days)


def _run_values(outcome: RunOutcome, client: EutilsClient) -> dict:
    return {
        "records_promised": outcome.promised,
        "records_stored": outcome.stored,
        "new": outcome.new,
        "updated": outcome.updated,
        "unchanged": outcome.unchanged,
        "unmatched": outcome.unmatched,
        "requests": client.stats.requests,
        "retries": client.stats.retries,
        "count_discrepancy": "; ".join(outcome.discrepancies) or None,
    }


def _harvest(
    db,
    client: EutilsClient,
    run_id: int,
    windows: list[DateRange],
    reusable: set[int],
    batch_size: int,
    progress: Progress,
    outcome: RunOutcome,
) -> None:
    plans: list[Plan] = [plan_window(client, TOPIC_QUERY, window) for window in windows]
    outcome.discrepancies = [p.discrepancy for p in plans if p.discrepancy]
    promised: set[int] = set().union(*(p.ids for p in plans)) if plans else set()
    outcome.promised_pmids = promised
    outcome.promised = len(promised)
    reused = promised & reusable
    outcome.reused = len(reused)
    log.info(
        "run %d: %d records promised by %d searches%s",
        run_id,
        len(promised),
        sum(p.requests for p in plans),
        f"; {len(reused)} already stored by an interrupted run" if reused else "",
    )
    progress.start(len(promised))
    progress.advance(len(reused))
    done: set[int] = set(reused)
    try:
        # Whole batches come from each slice's history; what is left of every slice (its last,
        # part-filled batch, or PMIDs an interrupted run already stored) is pooled and fetched
        # by id in full batches, so a run needs no more efetches than ceil(records / batch).
        pooled: list[int] = []
        missing: list[int] = []
        for plan in plans:
            for piece in plan.slices:
                _fetch_slice(db, client, run_id, piece, done, batch_size, progress, outcome, pooled, missing)
        pooled = list(dict.fromkeys(pmid for pmid in pooled if pmid not in done))
        if pooled:
            log.info(
                "run %d: fetching the %d records left over from the slices' whole batches by id", run_id, len(pooled)
            )
        missing.extend(_fetch_ids(db, client, run_id, pooled, done, batch_size, progress, outcome))
        for _ in range(MISSING_RETRIES):
            missing = list(dict.fromkeys(pmid for pmid in missing if pmid not in done))
            if not missing:
                break
            log.warning("run %d: %d listed records missing from efetch; asking for them by id", run_id, len(missing))
            missing = _fetch_ids(db, client, run_id, missing, done, batch_size, progress, outcome)
    except Exception as exc:
        # Say what is missing, not only which request failed: the operator's one line.
        outcome.stored = len(done)
        not_stored = promised - done
        raise HarvestFailed(
            f"could not store {len(not_stored)} of {len(promised)} promised records "
            f"(PMIDs {_sample(not_stored)}; the {len(done)} stored are kept): {exc}"
        ) from exc
    progress.finish()
    not_stored = promised - done
    if not_stored:
        raise HarvestFailed(
            f"{len(not_stored)} of {len(promised)} records that esearch listed were not returned by "
            f"efetch, even when asked for by id (PMIDs {_sample(not_stored)})"
        )
    outcome.stored = len(done)


def _sample(pmids: set[int], n: int = 10) -> str:
    return ", ".join(str(p) for p in sorted(pmids)[:n]) + (" ..." if len(pmids) > n else "")


def _fetch_slice(
    db,
    client: EutilsClient,
    run_id: int,
    piece: Slice,
    done: set[int],
    batch_size: int,
    progress: Progress,
    outcome: RunOutcome,
    pooled: list[int],
    missing: list[int],
) -> None:
    """Fetch the slice's whole batches from the history server; add to `pooled` the PMIDs
    left for fetching by id, and to `missing` those a batch was asked for and did not return."""
    for start in range(0, len(piece.ids), batch_size):
        batch = piece.ids[start : start + batch_size]
        wanted = [pmid for pmid in batch if pmid not in done]
        if not wanted:
            continue
        if len(batch) < batch_size or len(wanted) < len(batch) or not (piece.webenv and piece.query_key):
            pooled.extend(wanted)
            continue
        try:
            records = client.efetch_history(piece.webenv, piece.query_key, start, len(batch), _parse_history_answer)
        except HistoryUnusable as exc:
            log.warning("history server unusable for %s (%s); fetching by id", piece.label, exc)
            pooled.extend(wanted)
            continue
        got = _store(db, records, run_id, outcome)
        progress.advance(len((got & set(batch)) - done))
        done |= got
        missing.extend(pmid for pmid in wanted if pmid not in got)


def _fetch_ids(
    db,
    client: EutilsClient,
    run_id: int,
    pmids: list[int],
    done: set[int],
    batch_size: int,
    progress: Progress,
    outcome: RunOutcome,
) -> list[int]:
    """Fetch `pmids` by id in batches; return those efetch did not return."""
    missing: list[int] = []
    for start in range(0, len(pmids), batch_size):
        chunk = pmids[start : start + batch_size]
        got = _store(db, client.efetch_ids(chunk, _parse_answer), run_id, outcome)
        progress.advance(len((got & set(chunk)) - done))
        done |= got
        missing.extend(pmid for pmid in chunk if pmid not in got)
    return missing


def _store(db, records: list[ArticleRecord], run_id: int, outcome: RunOutcome) -> set[int]:
    """Parsed records -> tag -> rows -> save; only records the catalog lacks are tagged."""
    seen = [rows.fingerprint(r) for r in records]
    lacking = store.not_stored(db, seen)
    batch = [rows.article_rows(r, tag_record(r)) for r, fp in zip(records, seen) if fp in lacking]
    counts = store.save_articles(db, seen, batch, run_id)
    outcome.new += counts.new
    outcome.updated += counts.updated
    outcome.unchanged += counts.unchanged
    return counts.stored_pmids


def _parse_answer(body: bytes) -> list[ArticleRecord]:
    return list(parse_articles(body, source_name="efetch answer"))


def _parse_history_answer(body: bytes) -> list[ArticleRecord]:
    message = error_in_body(body)
    if message:
        raise HistoryUnusable(message[:200])
    return _parse_answer(body)


# -- ClinicalTrials.gov ----------------------------------------------------------------


@dataclass
class TrialsOutcome:
    run_id: int
    mode: str
    status: str
    listed: int = 0  # studies the topic search listed
    cited: int = 0  # cited NCT ids asked for by id this run
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    events: int = 0
    not_in_registry: int = 0
    out_of_topic: int = 0
    requests: int = 0
    discrepancy: str | None = None


def choose_trials_mode(last: dict | None, *, full: bool, overlap_days: int) -> tuple[str, dt.date | None]:
    """(mode, since-date) of a trials run: incremental by LastUpdatePostDate after a success."""
    from .query import TRIALS_QUERY_VERSION

    return _choose_source_mode(last, full=full, overlap_days=overlap_days, query_version=TRIALS_QUERY_VERSION)


def run_trials_harvest(
    db_path: Path | str,
    *,
    full: bool = False,
    overlap_days: int = DEFAULT_OVERLAP_DAYS,
    client=None,
) -> TrialsOutcome:
    """One ClinicalTrials.gov run: the topic's studies (every page), then every NCT id a catalog
    record cites that is not stored yet, and a recheck of the ids the registry did not know.

    Succeeds only when every listed study is stored; only then does the watermark move."""
    from . import ctgov
    from .query import TRIALS_QUERY_VERSION, trials_query_text

    client = client or ctgov.CtgovClient()
    with _catalog_trouble(db_path), store.harvest_lock(db_path):
        db = rebuild.open_for_writing(db_path)
        store.mark_abandoned_runs(db)
        last = store.last_successful_source_run(db, "trials")
        mode, since = choose_trials_mode(last, full=full, overlap_days=overlap_days)
        watermark = today_utc()
        refuse_clock_behind("trials", last, mode, watermark)
        run_id = store.start_source_run(
            db,
            source="trials",
            mode=mode,
            query_version=TRIALS_QUERY_VERSION,
            query_text=trials_query_text(),
            window_from=since.isoformat() if since else None,
        )
        outcome = TrialsOutcome(run_id=run_id, mode=mode, status="running")
        log.info("trials run %d: %s harvest%s", run_id, mode, f" of studies updated since {since}" if since else "")
        with _recording_source_run(db, client, "trials", run_id, outcome, _trials_values):
            _harvest_trials(db, client, run_id, since, outcome)
            store.refresh_summaries(db)  # trial_registrations is counted (the registry facet)
            _source_run_succeeded(db, client, run_id, outcome, _trials_values, watermark.isoformat())
            return outcome


def _trials_values(outcome: TrialsOutcome, client) -> dict:
    return {
        "records_promised": outcome.listed + outcome.cited,
        "records_stored": outcome.new + outcome.updated + outcome.unchanged,
        "new": outcome.new,
        "updated": outcome.updated,
        "unchanged": outcome.unchanged,
        "unmatched": outcome.out_of_topic,
        "requests": client.stats.requests,
        "retries": client.stats.retries,
        "count_discrepancy": outcome.discrepancy,
    }


def _add_counts(outcome: TrialsOutcome, counts) -> None:
    outcome.new += counts.new
    outcome.updated += counts.updated
    outcome.unchanged += counts.unchanged
    outcome.events += counts.events


def _harvest_trials(db, client, run_id: int, since: dt.date | None, outcome: TrialsOutcome) -> None:
    from . import ctgov
    from .query import last_update_filter, trials_query_params

    # (a) the topic's studies, every page; a page that cannot be had fails the run.
    params = trials_query_params()
    if since is not None:
        params["filter.advanced"] = last_update_filter(since.isoformat())
    listed: set[str] = set()
    total = None
    stored_before = 0
    try:
        for number, page in enumerate(client.iter_pages(params, describe="topic search"), 1):
            if number == 1:
                total = page.total_count
            records = [ctgov.parse_study(s) for s in page.studies]
            counts = store.save_trials(db, records, run_id, in_topic=True)
            _add_counts(outcome, counts)
            listed |= counts.stored_ids
            stored_before = len(listed)
    except Exception as exc:
        kept = f" after {stored_before} studies (those are kept)" if stored_before else ""
        raise HarvestFailed(f"the topic search of ClinicalTrials.gov failed{kept}: {exc}") from exc
    outcome.listed = len(listed)
    if total is not None and total != len(listed):
        outcome.discrepancy = f"ClinicalTrials.gov counted {total} studies, its pages listed {len(listed)}"
        log.warning("trials run %d: %s", run_id, outcome.discrepancy)
    if since is None:
        outcome.out_of_topic = store.mark_trials_out_of_topic(db, listed, run_id)

    # (b) every NCT id a catalog record cites: new ones in full; ids the registry did not know
    # and stored studies outside the topic, rechecked once a run (incrementally: only if updated).
    cited = store.cited_nct_ids(db)
    stored = store.stored_trials(db)
    unknown = store.not_in_registry_ids(db)
    new_ids = sorted(cited - set(stored) - unknown - listed)
    recheck = sorted((unknown | {n for n, topic in stored.items() if not topic and n in cited}) - listed)
    asks: list[tuple[list[str], dict]] = []
    if since is None:
        asks.append((sorted(set(new_ids) | set(recheck)), {}))
    else:
        asks.append((new_ids, {}))
        asks.append((recheck, {"filter.advanced": last_update_filter(since.isoformat())}))
    missing: set[str] = set()
    for ids, extra in asks:
        for start in range(0, len(ids), ctgov.IDS_PER_REQUEST):
            batch = ids[start : start + ctgov.IDS_PER_REQUEST]
            outcome.cited += len(batch)
            try:
                found = client.studies_by_ids(batch, extra)
            except Exception as exc:
                raise HarvestFailed(
                    f"asking ClinicalTrials.gov for {len(batch)} cited studies ({_sample_ids(batch)}) failed: {exc}"
                ) from exc
            counts = store.save_trials(db, [ctgov.parse_study(s) for s in found], run_id, in_topic=False)
            _add_counts(outcome, counts)
            # Not returned: unknown to the registry (without a date filter), or not updated (with one).
            if not extra:
                missing |= set(batch) - counts.stored_ids
            else:
                missing |= (set(batch) & unknown) - counts.stored_ids
    outcome.not_in_registry = store.mark_not_in_registry(db, missing, run_id) if missing else 0
    log.info(
        "trials run %d: %d studies listed by the topic search, %d cited ids asked for; %d new, "
        "%d updated, %d unchanged, %d not in the registry",
        run_id,
        outcome.listed,
        outcome.cited,
        outcome.new,
        outcome.updated,
        outcome.unchanged,
        outcome.not_in_registry,
    )


def _sample_ids(ids: list[str], n: int = 5) -> str:
    return ", ".join(ids[:n]) + (" ..." if len(ids) > n else "")


# -- Europe PMC preprints ----------------------------------------------------------------


@dataclass
class PreprintsOutcome:
    run_id: int
    mode: str
    status: str
    listed: int = 0  # preprints the topic search listed
    hit_count: int | None = None
    not_preprints: int = 0  # records of another source in the answers (left out)
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    out_of_topic: int = 0
    pmids_asked: int = 0  # catalog records whose Europe PMC core record was read for preprint links
    europepmc_links: int = 0
    linked: dict[str, int] = field(default_factory=dict)
    requests: int = 0
    discrepancy: str | None = None


def choose_preprints_mode(last: dict | None, *, full: bool, overlap_days: int) -> tuple[str, dt.date | None]:
    """(mode, since-date) of a preprints run: incremental by Europe PMC's first index date."""
    from .query import PREPRINTS_QUERY_VERSION

    return _choose_source_mode(last, full=full, overlap_days=overlap_days, query_version=PREPRINTS_QUERY_VERSION)


def run_preprints_harvest(
    db_path: Path | str,
    *,
    full: bool = False,
    overlap_days: int = DEFAULT_OVERLAP_DAYS,
    client=None,
) -> PreprintsOutcome:
    """One Europe PMC run: the topic's preprints (every cursor page), then the core records of
    the catalog's PubMed records for Europe PMC's preprint links, then every preprint linked to
    its published version (Europe PMC's link, else DOI, else title + first author + year).

    Succeeds only when every page was had; only then does the watermark move."""
    from . import europepmc
    from .query import PREPRINTS_QUERY_VERSION, preprints_query

    client = client or europepmc.EuropepmcClient()
    with _catalog_trouble(db_path), store.harvest_lock(db_path):
        db = store.open_db(db_path)
        store.mark_abandoned_runs(db)
        last = store.last_successful_source_run(db, "preprints")
        mode, since = choose_preprints_mode(last, full=full, overlap_days=overlap_days)
        today = today_utc()
        refuse_clock_behind("preprints", last, mode, today)
        run_id = store.start_source_run(
            db,
            source="preprints",
            mode=mode,
            query_version=PREPRINTS_QUERY_VERSION,
            query_text=preprints_query(since.isoformat(), today.isoformat()) if since else preprints_query(),
            window_from=since.isoformat() if since else None,
        )
        outcome = PreprintsOutcome(run_id=run_id, mode=mode, status="running")
        log.info(
            "preprints run %d: %s harvest%s",
            run_id,
            mode,
            f" of preprints first indexed since {since}" if since else "",
        )
        with _recording_source_run(db, client, "preprints", run_id, outcome, _preprints_values):
            _harvest_preprints(db, client, run_id, since, today, last["id"] if last and since else None, outcome)
            _source_run_succeeded(db, client, run_id, outcome, _preprints_values, today.isoformat())
            return outcome


def _preprints_values(outcome: PreprintsOutcome, client) -> dict:
    return {
        "records_promised": outcome.listed,
        "records_stored": outcome.new + outcome.updated + outcome.unchanged,
        "new": outcome.new,
        "updated": outcome.updated,
        "unchanged": outcome.unchanged,
        "unmatched": outcome.out_of_topic,
        "requests": client.stats.requests,
        "retries": client.stats.retries,
        "count_discrepancy": outcome.discrepancy,
    }


def _harvest_preprints(
    db, client, run_id: int, since: dt.date | None, today: dt.date, after_run: int | None, outcome: PreprintsOutcome
) -> None:
    from . import europepmc
    from .query import preprints_query, published_versions_query

    # (a) the topic's preprints, every cursor page; a page that cannot be had fails the run.
    query = preprints_query(since.isoformat(), today.isoformat()) if since else preprints_query()
    listed: set[str] = set()
    seen = 0
    try:
        for number, page in enumerate(client.iter_pages(query, describe="preprints search"), 1):
            if number == 1:
                outcome.hit_count = page.hit_count
            seen += len(page.results)
            preprints = [r for r in page.results if r.get("source") == "PPR"]
            outcome.not_preprints += len(page.results) - len(preprints)
            counts = store.save_preprints(db, [europepmc.parse_preprint(r) for r in preprints], run_id)
            outcome.new += counts.new
            outcome.updated += counts.updated
            outcome.unchanged += counts.unchanged
            listed |= counts.stored_ids
    except Exception as exc:
        kept = f" after {len(listed)} preprints (those are kept)" if listed else ""
        raise HarvestFailed(f"the preprints search of Europe PMC failed{kept}: {exc}") from exc
    outcome.listed = len(listed)
    if outcome.not_preprints:
        log.warning(
            "preprints run %d: %d records of other sources in the answers left out", run_id, outcome.not_preprints
        )
    if outcome.hit_count is not None and outcome.hit_count != seen:
        outcome.discrepancy = f"Europe PMC counted {outcome.hit_count} records, its pages listed {seen}"
        log.warning("preprints run %d: %s", run_id, outcome.discrepancy)
    if since is None:
        outcome.out_of_topic = store.mark_preprints_out_of_topic(db, listed, run_id)

    # (b) Europe PMC's own links: the core records of the catalog's PubMed records (all of them on
    # a full sweep, those new or changed since the last preprints run otherwise).
    pmids = store.pmids_for_preprint_lookup(db, after_run)
    for start in range(0, len(pmids), europepmc.PMIDS_PER_REQUEST):
        batch = pmids[start : start + europepmc.PMIDS_PER_REQUEST]
        links: list[tuple[str, int]] = []
        try:
            for page in client.iter_pages(
                published_versions_query(batch), page_size=len(batch), describe=f"published records ({len(batch)})"
            ):
                for result in page.results:
                    links.extend(europepmc.preprint_links_in(result))
        except Exception as exc:
            raise HarvestFailed(
                f"asking Europe PMC for the preprint links of {len(batch)} catalog records "
                f"(PMIDs {_sample(set(batch))}) failed: {exc}"
            ) from exc
        outcome.pmids_asked += len(batch)
        outcome.europepmc_links += store.save_europepmc_links(db, batch, links, run_id)

    # (c) every stored preprint linked to its published version among the catalog's records.
    outcome.linked = store.link_preprints(db, run_id)
    log.info(
        "preprints run %d: %d preprints listed; %d new, %d updated, %d unchanged; %d catalog records asked "
        "for their preprint links; linked to a published record: %s",
        run_id,
        outcome.listed,
        outcome.new,
        outcome.updated,
        outcome.unchanged,
        outcome.pmids_asked,
        ", ".join(f"{n} by {m}" for m, n in sorted(outcome.linked.items())) or "none",
    )


# -- OpenAlex citations ----------------------------------------------------------------

CITATIONS_SCHEDULE_VERSION = "1"


@dataclass
class CitationsOutcome:
    run_id: int
    mode: str
    status: str
    due: int = 0  # records the schedule asked for
    never_read: int = 0
    stale: int = 0
    newest: int = 0
    read: int = 0  # records asked for and stored (found or not)
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    not_found: int = 0
    requests: int = 0
    # The in-topic preprints, asked for by DOI on the same schedule (their own counts).
    preprints_due: int = 0
    preprints_read: int = 0
    preprints_new: int = 0
    preprints_updated: int = 0
    preprints_unchanged: int = 0
    preprints_not_found: int = 0


def citations_schedule_text() -> str:
    return (
        "OpenAlex /works?filter=pmid:A|B|... (50 PMIDs a request), and filter=doi:A|B|... for the "
        f"in-topic preprints (50 DOIs a request): those never read, read {store.CITATIONS_STALE_DAYS} "
        f"or more days ago, and those in PubMed (posted) for less than {store.CITATIONS_NEWEST_DAYS} "
        "days not yet read today"
    )


def run_citations_harvest(db_path: Path | str, *, full: bool = False, client=None) -> CitationsOutcome:
    """One OpenAlex run: read the citation counts of the records the schedule says are due, 50
    PMIDs a request. Each batch is stored as it arrives; a batch that cannot be had after its
    retries fails the run (what the batches before it stored is kept, and the records it missed
    are still due next time)."""
    from . import openalex

    client = client or openalex.OpenalexClient()
    with _catalog_trouble(db_path), store.harvest_lock(db_path):
        db = store.open_db(db_path)
        store.mark_abandoned_runs(db)
        today = clock.today()
        due = store.citations_due(db, today, full=full)
        mode = "full" if full else "scheduled"
        run_id = store.start_source_run(
            db,
            source="citations",
            mode=mode,
            query_version=CITATIONS_SCHEDULE_VERSION,
            query_text=citations_schedule_text(),
            window_from=None,
        )
        outcome = CitationsOutcome(
            run_id=run_id,
            mode=mode,
            status="running",
            due=len(due.pmids),
            never_read=len(due.never_read),
            stale=len(due.stale),
            newest=len(due.newest),
        )
        log.info(
            "citations run %d: %d records due (%d never read, %d read %d+ days ago, %d newest)",
            run_id,
            outcome.due,
            outcome.never_read,
            outcome.stale,
            store.CITATIONS_STALE_DAYS,
            outcome.newest,
        )
        with _recording_source_run(db, client, "citations", run_id, outcome, _citations_values):
            pmids = due.pmids
            for start in range(0, len(pmids), openalex.PMIDS_PER_REQUEST):
                batch = pmids[start : start + openalex.PMIDS_PER_REQUEST]
                try:
                    works = client.works_by_pmids(batch)
                except Exception as exc:
                    kept = f" after {outcome.read} records (those are kept)" if outcome.read else ""
                    raise HarvestFailed(
                        f"asking OpenAlex for the works of {len(batch)} PMIDs "
                        f"({_sample(set(batch), 5)}) failed{kept}: {exc}"
                    ) from exc
                found = {p: c for p, c in openalex.citations_of(works).items() if p in set(batch)}
                counts = store.save_citations(db, batch, found, run_id, clock.now_iso())
                outcome.read += len(batch)
                outcome.new += counts.new
                outcome.updated += counts.updated
                outcome.unchanged += counts.unchanged
                outcome.not_found += counts.not_found
            _read_preprint_citations(db, client, run_id, today, full, outcome)
            _source_run_succeeded(db, client, run_id, outcome, _citations_values, today.isoformat())
            log.info(
                "citations run %d: %d records read: %d new, %d updated, %d unchanged, %d unknown to OpenAlex; "
                "%d preprints read by DOI: %d new, %d updated, %d unchanged, %d unknown",
                run_id,
                outcome.read,
                outcome.new,
                outcome.updated,
                outcome.unchanged,
                outcome.not_found,
                outcome.preprints_read,
                outcome.preprints_new,
                outcome.preprints_updated,
                outcome.preprints_unchanged,
                outcome.preprints_not_found,
            )
            return outcome


def _read_preprint_citations(db, client, run_id: int, today, full: bool, outcome: CitationsOutcome) -> None:
    """The due preprints' counts, 50 DOIs a request; a batch that cannot be had fails the run
    (the batches before it are kept)."""
    from . import openalex

    due = store.preprint_citations_due(db, today, full=full)
    outcome.preprints_due = len(due)
    for start in range(0, len(due), openalex.DOIS_PER_REQUEST):
        batch = due[start : start + openalex.DOIS_PER_REQUEST]
        try:
            works = client.works_by_dois([doi for _, doi in batch])
        except Exception as exc:
            kept = f" after {outcome.preprints_read} preprints (those are kept)" if outcome.preprints_read else ""
            raise HarvestFailed(
                f"asking OpenAlex for the works of {len(batch)} preprint DOIs "
                f"({_sample_ids([ppr for ppr, _ in batch])}) failed{kept}: {exc}"
            ) from exc
        counts = store.save_preprint_citations(db, batch, openalex.citations_by_doi(works), run_id, clock.now_iso())
        outcome.preprints_read += len(batch)
        outcome.preprints_new += counts.new
        outcome.preprints_updated += counts.updated
        outcome.preprints_unchanged += counts.unchanged
        outcome.preprints_not_found += counts.not_found


def _citations_values(outcome: CitationsOutcome, client) -> dict:
    return {
        # Catalog records of both kinds: PubMed records and preprints.
        "records_promised": outcome.due + outcome.preprints_due,
        "records_stored": outcome.read + outcome.preprints_read,
        "new": outcome.new + outcome.preprints_new,
        "updated": outcome.updated + outcome.preprints_updated,
        "unchanged": outcome.unchanged + outcome.preprints_unchanged,
        "unmatched": outcome.not_found + outcome.preprints_not_found,
        "requests": client.stats.requests,
        "retries": client.stats.retries,
    }
