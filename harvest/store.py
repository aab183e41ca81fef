"""Rows into SQLite: opening (and creating) the catalog, the lock, the run log, and writing
the rows `harvest.rows` makes, each batch in one transaction.

Owns every write to the catalog database. Writes are idempotent upserts keyed
by PMID (NCT id for trials), each batch one transaction, so a killed process leaves whole
batches or nothing, and storing the same rows twice changes nothing. Must never: talk to the
network, parse XML, tag, or decide what a record's rows are (that is `harvest.rows`).
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import sqlite3
import time
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import sqlite_utils

from . import clock, rows
from .schema import migrations

log = logging.getLogger("harvest.store")


CACHE_KIB = 256 * 1024


def open_db(path: Path | str) -> sqlite_utils.Database:
    """Open (creating if needed) the catalog at `path`, with the schema up to date.

    A new catalog is built beside `path` and linked into place only once its schema is
    complete: a process killed while creating it leaves no catalog rather than one that
    Datasette and `export` would open and find without its tables."""
    path = Path(path)
    refuse_non_regular(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.stat().st_size == 0:
        _create_catalog(path)
    else:
        check_catalog(path)
    db = _connect(path)
    migrations.apply(db)  # an existing catalog: each pending migration is one transaction
    return db


class NotACatalog(ValueError):
    """The file at a catalog path is something else: not SQLite, another tool's database,
    or a catalog from a newer version of this one."""


def refuse_non_regular(path: Path) -> None:
    """A catalog is a regular file: a device, FIFO or directory at its path (`--db /dev/null`)
    has size 0 and would otherwise be replaced by a new catalog, or block a reader for ever."""
    if path.exists() and not path.is_file():
        kind = "a directory" if path.is_dir() else "not a regular file (a device, FIFO or socket)"
        raise NotACatalog(f"{path} is {kind}; give --db a catalog file's path, or a new one")


def check_catalog(path: Path | str) -> None:
    """Refuse, naming what is wrong, a file that is not a catalog this code can keep:
    a `--db` pointed at the wrong file must fail, not gain the catalog's tables or be
    half-read. A SQLite file with no tables yet is fine (it becomes a catalog)."""
    path = Path(path)
    refuse_non_regular(path)
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        try:
            tables = {name for (name,) in conn.execute("select name from sqlite_master where type = 'table'")}
        except sqlite3.DatabaseError as exc:
            raise NotACatalog(f"{path} is not a SQLite database ({exc})") from None
        if not tables:
            return
        applied = set()
        if migrations.migrations_table in tables:
            applied = {
                name
                for (name,) in conn.execute(
                    f"select name from [{migrations.migrations_table}] where migration_set = ?", [migrations.name]
                )
            }
        if not applied:
            shown = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
            raise NotACatalog(
                f"{path} is a SQLite database but not a ketamine catalog (its tables: {shown}); "
                f"give --db a catalog's path, or a new one"
            )
        # Every registered migration is pending on an empty database: the public way to list them.
        known = {m.name for m in migrations.pending(sqlite_utils.Database(memory=True))}
        unknown = sorted(applied - known)
        if unknown:
            raise NotACatalog(
                f"{path} was built by a newer ketamine-catalog (schema migration {unknown[-1]} is "
                f"unknown to this one); upgrade this checkout before writing to it"
            )
    finally:
        conn.close()


def _connect(path: Path) -> sqlite_utils.Database:
    db = sqlite_utils.Database(path)
    # WAL: Datasette keeps reading while a harvest writes; a reader never
    # sees half a batch.
    db.execute("PRAGMA journal_mode=WAL")
    # In WAL mode NORMAL still never corrupts the file; a power cut can lose the last
    # commits, which the next run re-fetches. FULL cost an fsync per batch.
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA foreign_keys=ON")
    db.execute("PRAGMA busy_timeout=30000")
    # Bulk loads touch many indexes with random keys (authors, keywords, identifiers):
    # a page cache of 256 MiB (an upper bound, allocated as used) keeps per-record cost
    # flat as the catalog grows.
    db.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
    return db


CREATING_SUFFIX = ".creating-"


def _create_catalog(path: Path) -> None:
    """Build an empty catalog with the whole schema at a temporary name, then put it at
    `path`: a hard link when nothing is there (never replacing a catalog another process
    made meanwhile), a rename over an empty file (a bare connect leaves one; it holds
    nothing to lose)."""
    _remove_abandoned_builds(path)
    tmp = path.with_name(f"{path.name}{CREATING_SUFFIX}{os.getpid()}")
    _remove_with_sidecars(tmp)
    try:
        db = _connect(tmp)
        migrations.apply(db)
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db.close()
        _remove_with_sidecars(tmp, keep_main=True)
        if path.exists():
            if path.stat().st_size == 0:
                os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass  # another process created it first; theirs is as good
            except OSError:  # a file system without hard links
                if not path.exists():
                    os.replace(tmp, path)
    finally:
        _remove_with_sidecars(tmp)


def _remove_abandoned_builds(path: Path) -> None:
    """Temporary catalogs left by creators that were killed (their PID is gone)."""
    for leftover in path.parent.glob(f"{path.name}{CREATING_SUFFIX}*"):
        pid = leftover.name.rsplit(CREATING_SUFFIX, 1)[1].split("-", 1)[0]
        if not pid.isdecimal():
            continue
        try:
            os.kill(int(pid), 0)
            continue  # still running
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        leftover.unlink(missing_ok=True)


def _remove_with_sidecars(db_file: Path, *, keep_main: bool = False) -> None:
    for suffix in ("-wal", "-shm", "-journal") + (() if keep_main else ("",)):
        Path(f"{db_file}{suffix}").unlink(missing_ok=True)


def now_utc() -> str:
    return clock.now_iso()


# -- the lock ---------------------------------------------------------------


class HarvestLocked(RuntimeError):
    pass


@contextmanager
def harvest_lock(db_path: Path | str) -> Iterator[Path]:
    """An OS lock beside the database: one writer at a time, freed when the process dies."""
    if Path(db_path).is_file() and Path(db_path).stat().st_size:
        check_catalog(db_path)  # no lock file beside a file that is not ours
    lock_path = Path(f"{db_path}.lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(lock_path, "a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise HarvestLocked(
                f"another harvest is already running on {db_path} ({holder}); "
                f"the lock {lock_path} frees itself when that process ends"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()} since {now_utc()}\n")
        handle.flush()
        yield lock_path
    finally:
        handle.close()


def lock_holder(db_path: Path | str) -> str | None:
    """Who holds the harvest lock now (None when nobody does); takes nothing."""
    lock_path = Path(f"{db_path}.lock")
    if not lock_path.exists():
        return None
    with open(lock_path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            return handle.read().strip() or "another process"
        return None


# -- the run log --------------------------------------------------------------


def _inserted_id(table: sqlite_utils.db.Table) -> int:
    """The id of the row `table` has just inserted (sqlite-utils types last_pk as optional)."""
    assert table.last_pk is not None, f"no row inserted into {table.name}"
    return table.last_pk


def start_run(
    db: sqlite_utils.Database, *, mode: str, query_version: str, query_text: str, window_from: str | None
) -> int:
    """A PubMed run (or import) in the run log."""
    return start_source_run(
        db, source="pubmed", mode=mode, query_version=query_version, query_text=query_text, window_from=window_from
    )


def finish_run(db: sqlite_utils.Database, run_id: int, *, status: str, **values) -> None:
    with db.atomic():
        db.table("harvest_runs").update(run_id, {"status": status, "finished_at": now_utc(), **values})


def mark_abandoned_runs(db: sqlite_utils.Database) -> list[int]:
    """Runs still 'running' while we hold the lock belong to a process that died."""
    ids = [row["id"] for row in db.query("select id from harvest_runs where status = 'running'")]
    with db.atomic():
        for run_id in ids:
            db.table("harvest_runs").update(
                run_id,
                {"status": "aborted", "error": "the process ended before the run finished (killed or crashed)"},
            )
    return ids


# Runs that never move the full sweep's watermark: a `--since` window and an import cover
# only part of what the query matches, so neither can stand for a full sweep.
PARTIAL_MODES = ("since", "import")


def last_successful_run(db: sqlite_utils.Database) -> dict | None:
    """The last successful run of the full-sweep chain (a full sweep, or an incremental run
    that continued one): the run whose watermark the next plain run starts from. None when
    the catalog has never completed a full sweep, whatever `--since` runs or imports did."""
    rows = list(
        db.query(
            "select * from harvest_runs where status = 'success' and mode not in (?, ?) "
            "and coalesce(source, 'pubmed') = 'pubmed' order by id desc limit 1",
            PARTIAL_MODES,
        )
    )
    return rows[0] if rows else None


def has_partial_runs(db: sqlite_utils.Database) -> bool:
    """Whether a `--since` run or an import has stored records (successfully or not)."""
    return bool(db.execute("select 1 from harvest_runs where mode in (?, ?) limit 1", PARTIAL_MODES).fetchone())


def interrupted_runs_since(db: sqlite_utils.Database, after_run: int | None) -> list[dict]:
    """Failed or aborted harvests after the last success: their stored work can be reused."""
    return list(
        db.query(
            "select * from harvest_runs where status in ('failed', 'aborted') and mode != 'import' "
            "and coalesce(source, 'pubmed') = 'pubmed' and id > ? order by id",
            [after_run or 0],
        )
    )


def pmids_fetched_by_runs(db: sqlite_utils.Database, run_ids: list[int]) -> set[int]:
    if not run_ids:
        return set()
    marks = ",".join("?" * len(run_ids))
    return {row[0] for row in db.execute(f"select pmid from articles where last_fetched_run in ({marks})", run_ids)}


# -- articles -----------------------------------------------------------------
# What the rows stage (harvest/rows.py) made of parsed, tagged records, written here: each
# batch one transaction, keyed by PMID, so storing the same records twice changes nothing.


@dataclass
class SaveCounts:
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    stored_pmids: set[int] = field(default_factory=set)
    new_pmids: set[int] = field(default_factory=set)

    def add(self, other: SaveCounts) -> None:
        self.new += other.new
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.deleted += other.deleted
        self.stored_pmids |= other.stored_pmids
        self.new_pmids |= other.new_pmids


# Rows of a child table that a re-parsed article does not own: the links the registry makes
# to a paper (trial_registrations from ClinicalTrials.gov) are the trials harvest's to keep.
CHILD_KEEP = {"trial_registrations": " and coalesce(source, '') not like 'registry_reference:%'"}


def _placeholders(n: int) -> str:
    return ",".join("?" * n)


def _in_chunks(values: list, size: int = 500):
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _upsert_sql(columns: list[str]) -> str:
    updates = ", ".join(f"[{c}] = excluded.[{c}]" for c in columns if c not in ("pmid", "first_seen_run"))
    return (
        f"insert into articles ({', '.join(f'[{c}]' for c in columns)}) values ({_placeholders(len(columns))}) "
        f"on conflict(pmid) do update set {updates}"
    )


def _stored_fingerprints(db: sqlite_utils.Database, pmids: list[int]) -> dict[int, tuple[str, int]]:
    """pmid -> (record_sha1, pmid_version) of the stored current versions."""
    stored: dict[int, tuple[str, int]] = {}
    for chunk in _in_chunks(pmids):
        for pmid, sha1, version in db.execute(
            f"select pmid, record_sha1, pmid_version from articles where pmid in ({_placeholders(len(chunk))})", chunk
        ):
            stored[pmid] = (sha1, version)
    return stored


def not_stored(db: sqlite_utils.Database, seen: Iterable[rows.Fingerprint]) -> set[rows.Fingerprint]:
    """Which of these records the catalog does not hold byte-identical: the ones a save needs
    the rows of (the others it only notes as seen), so that unchanged records are not tagged."""
    seen = list(seen)
    stored = _stored_fingerprints(db, list({fp.pmid for fp in seen}))
    return {fp for fp in seen if stored.get(fp.pmid) != (fp.sha1, fp.pmid_version)}


def _write_article_rows(
    db: sqlite_utils.Database, batch: list[rows.ArticleRows], articles: list[dict], replace: list[int]
) -> None:
    """`articles` rows, then every child table, the vocabularies and the tags of `batch`
    (`replace`: PMIDs whose old child and tag rows go first); callers hold the transaction."""
    by_columns: dict[tuple, list[dict]] = {}
    for row in articles:  # new rows carry first_seen_run, revised ones must not touch it
        by_columns.setdefault(tuple(row), []).append(row)
    for columns, group in by_columns.items():
        db.conn.executemany(_upsert_sql(list(columns)), [tuple(r[c] for c in columns) for r in group])
    for chunk in _in_chunks(replace):
        marks = _placeholders(len(chunk))
        for table in rows.CHILD_TABLES:
            db.execute(f"delete from [{table}] where pmid in ({marks}){CHILD_KEEP.get(table, '')}", chunk)
    descriptors: dict[str, str] = {}
    pub_types: dict[str, str] = {}
    authors: dict[str, tuple] = {}
    for item in batch:
        descriptors.update(item.mesh_descriptors)
        pub_types.update(item.publication_types)
        for key, author in item.authors.items():
            authors.setdefault(key, author)
    db.conn.executemany(
        "insert or ignore into mesh_descriptors (descriptor_ui, name) values (?, ?)", descriptors.items()
    )
    db.conn.executemany("insert or ignore into publication_types (ui, name) values (?, ?)", pub_types.items())
    db.conn.executemany(
        "insert or ignore into authors (name_key, last_name, fore_name, initials, suffix, collective_name, "
        "display_name) values (?, ?, ?, ?, ?, ?, ?)",
        authors.values(),
    )
    author_ids: dict[str, int] = {}
    for chunk in _in_chunks(list(authors)):
        for key, author_id in db.execute(
            f"select name_key, id from authors where name_key in ({_placeholders(len(chunk))})", chunk
        ):
            author_ids[key] = author_id
    children: dict[str, list[tuple]] = {table: [] for table in rows.CHILD_TABLES}
    for item in batch:
        for table, table_rows in item.children.items():
            children[table].extend(table_rows)
        children["article_authors"].extend(
            (pmid, role, position, author_ids[key], *rest) for pmid, role, position, key, *rest in item.authorships
        )
    for table, table_rows in children.items():
        if table_rows:
            db.conn.executemany(
                f"insert or replace into [{table}] values ({_placeholders(len(table_rows[0]))})", table_rows
            )
    _write_tag_rows(db, [item.tagged for item in batch], replace)


def _write_tag_rows(db: sqlite_utils.Database, tagged: list[rows.TagRows], replace: list[int]) -> None:
    for chunk in _in_chunks(replace):
        db.execute(f"delete from article_tags where pmid in ({_placeholders(len(chunk))})", chunk)
    db.conn.executemany(
        "insert or replace into article_tags values (?, ?, ?, ?, ?, ?)", [t for item in tagged for t in item.tags]
    )


def stored_record_xml(db: sqlite_utils.Database, pmid: int, version: int | None = None) -> bytes | None:
    """The original XML of a stored record (its current version unless one is named)."""
    if version is None:
        sql = (
            "select x.xml_zlib from article_xml x join articles a on a.pmid = x.pmid "
            "and a.pmid_version = x.pmid_version where x.pmid = ?"
        )
        params = [pmid]
    else:
        sql, params = "select xml_zlib from article_xml where pmid = ? and pmid_version = ?", [pmid, version]
    row = db.execute(sql, params).fetchone()
    return zlib.decompress(row[0]) if row else None


def _old_state(db: sqlite_utils.Database, pmids: list[int]) -> dict[int, dict]:
    """What `rows.change_events` compares a revision with."""
    state: dict[int, dict] = {}
    for chunk in _in_chunks(pmids):
        marks = _placeholders(len(chunk))
        for row in db.query(
            f"select pmid, title, abstract, citation_status, is_retracted, has_correction, is_deleted "
            f"from articles where pmid in ({marks})",
            chunk,
        ):
            state[row["pmid"]] = {**row, "mesh": set(), "pub_types": set(), "refs": set()}
        for pmid, name in db.execute(
            f"select am.pmid, d.name from article_mesh am join mesh_descriptors d using (descriptor_ui) "
            f"where am.pmid in ({marks})",
            chunk,
        ):
            state[pmid]["mesh"].add(name)
        for pmid, name in db.execute(
            f"select ap.pmid, p.name from article_publication_types ap join publication_types p "
            f"on p.ui = ap.publication_type_ui where ap.pmid in ({marks})",
            chunk,
        ):
            state[pmid]["pub_types"].add(name)
        for pmid, ref_type, ref_pmid in db.execute(
            f"select pmid, ref_type, ref_pmid from comments_corrections where pmid in ({marks})", chunk
        ):
            state[pmid]["refs"].add((ref_type, ref_pmid))
    return state


def save_articles(
    db: sqlite_utils.Database,
    seen: Iterable[rows.Fingerprint],
    batch: Iterable[rows.ArticleRows],
    run_id: int,
    *,
    matches_query: bool | None = True,
) -> SaveCounts:
    """Store one batch in one transaction; count what changed.

    `seen`: every record the batch holds; `batch`: the rows of (at least) those the catalog
    does not hold byte-identical (`not_stored`). Per PMID the highest version goes to
    `articles`; every version's XML is kept. A record whose XML is byte-identical to the
    stored one is 'unchanged' (only noted as seen by this run); a changed one is rewritten in
    place and what changed lands in article_events. With `matches_query=None`, a record new
    to the catalog takes its rows' `topic_match` (when evaluated); stored ones keep theirs.
    """
    made = {item.fingerprint: item for item in batch}
    counts = SaveCounts()
    latest: dict[int, rows.Fingerprint] = {}
    for fp in [*seen, *made]:
        current = latest.get(fp.pmid)
        if current is None or fp.pmid_version >= current.pmid_version:
            latest[fp.pmid] = fp
    if not latest:
        return counts
    stored = _stored_fingerprints(db, list(latest))
    articles: list[dict] = []
    to_write: list[rows.ArticleRows] = []
    replace: list[int] = []
    seen_only: list[tuple] = []
    events: list[tuple[int, int, str, str | None, str]] = []  # article_events rows
    changed_old = _old_state(db, [p for p, fp in latest.items() if p in stored and stored[p][0] != fp.sha1])
    now = now_utc()
    for pmid, fp in latest.items():
        counts.stored_pmids.add(pmid)
        previous = stored.get(pmid)
        if previous is not None and fp.pmid_version < (previous[1] or 1):
            counts.unchanged += 1  # an older version than ours: its XML is kept below, nothing else
            continue
        if previous is not None and previous[0] == fp.sha1:
            counts.unchanged += 1  # nothing changed: only note that this run saw it
            seen_only.append((run_id, None if matches_query is None else int(matches_query), pmid))
            continue
        item = made[fp]  # KeyError: the caller left out the rows of a record the catalog lacks
        row = {**item.article, "last_fetched_run": run_id, "last_changed_run": run_id}
        if matches_query is not None:
            row["matches_query"] = int(matches_query)
        if previous is None:
            if matches_query is None and item.topic_match is not None:
                row["matches_query"] = int(item.topic_match)
            row["first_seen_run"] = run_id
            counts.new += 1
            counts.new_pmids.add(pmid)
        else:
            counts.updated += 1
            replace.append(pmid)
            if row["pmid_version"] > (previous[1] or 1):
                events.append((pmid, run_id, "version_added", f"version {row['pmid_version']}", now))
            events.extend((pmid, run_id, e, d, now) for e, d in rows.change_events(changed_old[pmid], item))
        articles.append(row)
        to_write.append(item)
    # XML rows for what is not stored yet: an unchanged record's XML is already there.
    xml_rows = [
        (fp.pmid, fp.pmid_version, fp.sha1, item.xml_zlib, run_id)
        for fp, item in made.items()
        if stored.get(fp.pmid) != (fp.sha1, fp.pmid_version)
    ]
    with db.atomic():
        db.conn.executemany(
            "update articles set last_fetched_run = ?, matches_query = coalesce(?, matches_query) where pmid = ?",
            seen_only,
        )
        _write_article_rows(db, to_write, articles, replace)
        db.conn.executemany(
            "insert or ignore into article_xml (pmid, pmid_version, sha1, xml_zlib, run_id) values (?, ?, ?, ?, ?)",
            xml_rows,
        )
        if events:
            db.conn.executemany(
                "insert into article_events (pmid, run_id, event, detail, recorded_at) values (?, ?, ?, ?, ?)", events
            )
    return counts


def rewrite_articles(db: sqlite_utils.Database, batch: list[rows.ArticleRows]) -> None:
    """Rewrite the derived rows of stored records (a rebuild from their stored XML): their
    `articles` columns, child rows and tags, leaving the run's columns as they are."""
    _write_article_rows(db, batch, [item.article for item in batch], [item.pmid for item in batch])


def save_tags(db: sqlite_utils.Database, tagged: list[rows.TagRows]) -> None:
    """Replace the tags of stored records, and their tag columns (a retag)."""
    _write_tag_rows(db, tagged, [t.pmid for t in tagged])
    db.conn.executemany(
        "update articles set study_design = ?, awaiting_indexing = ?, tags_version = ?, psychiatric = ? where pmid = ?",
        [
            (t.columns["study_design"], t.columns["awaiting_indexing"], t.columns["tags_version"])
            + (t.columns["psychiatric"], t.pmid)
            for t in tagged
        ],
    )


def stored_xml(db: sqlite_utils.Database, batch: int = 1000, *, tagged_not_by: str | None = None):
    """The original XML of every stored record (its current version), in batches of bytes;
    with `tagged_not_by`, only of those whose tags another rules version made."""
    sql = "select x.xml_zlib from article_xml x join articles a on a.pmid = x.pmid and a.pmid_version = x.pmid_version"
    params = []
    if tagged_not_by is not None:
        sql += " where a.tags_version is null or a.tags_version != ?"
        params = [tagged_not_by]
    cursor = db.conn.execute(sql, params)
    while blobs := cursor.fetchmany(batch):
        yield [zlib.decompress(blob) for (blob,) in blobs]


def any_tagged_not_by(db: sqlite_utils.Database, rules_version: str) -> bool:
    """Whether a stored record carries tags of other rules than `rules_version` (or none)."""
    return bool(
        db.execute(
            "select 1 from articles a join article_xml x on x.pmid = a.pmid and x.pmid_version = a.pmid_version "
            "where a.tags_version is null or a.tags_version != ? limit 1",
            [rules_version],
        ).fetchone()
    )


def any_unfilled_rows(db: sqlite_utils.Database) -> bool:
    """Whether a stored record has the bare rows of the first catalog (migration 0001): every
    row model since fills `author_count`, which migration 0002 added empty."""
    return bool(
        db.execute(
            "select 1 from articles a join article_xml x on x.pmid = a.pmid and x.pmid_version = a.pmid_version "
            "where a.author_count is null limit 1"
        ).fetchone()
    )


# -- what the derived rows were built with ---------------------------------------------


def derived_versions(db: sqlite_utils.Database) -> dict[str, str]:
    """part -> version of what built the catalog's derived rows ('rows', 'rules')."""
    return dict(db.execute("select part, version from derived_versions").fetchall())


def record_derived_versions(db: sqlite_utils.Database, versions: dict[str, str]) -> None:
    db.conn.executemany(
        "insert into derived_versions (part, version, built_at) values (?, ?, ?) "
        "on conflict(part) do update set version = excluded.version, built_at = excluded.built_at",
        [(part, version, now_utc()) for part, version in versions.items()],
    )


def summaries_never_counted(db: sqlite_utils.Database) -> bool:
    """Whether the summary tables have not been counted since a migration changed them."""
    row = db.execute("select refreshed_at from summary_state where id = 1").fetchone()
    return row is None or row[0] is None


def apply_deletions(db: sqlite_utils.Database, deletions: Iterable[dict], run_id: int) -> int:
    """NLM deleted these citations (DeleteCitation): keep the rows, flag and date them."""
    pmids = list(dict.fromkeys(d["pmid"] for d in deletions))
    today = clock.today().isoformat()
    changed = 0
    with db.atomic():
        for chunk in _in_chunks(pmids):
            marks = _placeholders(len(chunk))
            hit = [
                row[0]
                for row in db.execute(f"select pmid from articles where is_deleted = 0 and pmid in ({marks})", chunk)
            ]
            if not hit:
                continue
            hit_marks = _placeholders(len(hit))
            db.execute(
                f"update articles set is_deleted = 1, deleted_date = ?, deleted_run = ?, last_changed_run = ? "
                f"where pmid in ({hit_marks})",
                [today, run_id, run_id, *hit],
            )
            db.conn.executemany(
                "insert into article_events (pmid, run_id, event, detail, recorded_at) values (?, ?, 'deleted', ?, ?)",
                [(p, run_id, "DeleteCitation", now_utc()) for p in hit],
            )
            changed += len(hit)
    return changed


def mark_unmatched(db: sqlite_utils.Database, matching: set[int], run_id: int) -> int:
    """After a full sweep: records the query no longer returns stay, marked matches_query = 0."""
    db.execute("create temp table if not exists _sweep (pmid integer primary key)")
    with db.atomic():
        db.execute("delete from _sweep")
        db.conn.executemany("insert into _sweep values (?)", ((p,) for p in matching))
        cursor = db.execute(
            "update articles set matches_query = 0, unmatched_run = ?, last_changed_run = ? "
            "where matches_query = 1 and pmid not in (select pmid from _sweep)",
            [run_id, run_id],
        )
        db.execute(
            "update articles set matches_query = 1, unmatched_run = null "
            "where matches_query = 0 and pmid in (select pmid from _sweep)"
        )
        db.execute("delete from _sweep")
    return cursor.rowcount


def refresh_summaries(db: sqlite_utils.Database) -> None:
    """Recount the catalog's facet and front-page summaries after a write (harvest, import,
    retag). A failure is logged, not raised: the rows are stored, and until a later refresh
    succeeds the catalog counts them live (slower, never wrong)."""
    from . import summaries

    if not db.table("facet_sources").exists():
        return  # an earlier migration writing: migration 0007 counts once it has made the tables
    try:
        seconds = summaries.refresh(db)
    except Exception as exc:  # noqa: BLE001 - e.g. the full disk that failed the run
        log.warning("facet counts not refreshed (the catalog counts live until the next run): %s", exc)
    else:
        log.info("facet counts refreshed in %.1f s", seconds)


# -- ClinicalTrials.gov ------------------------------------------------------------
# The trials harvest's writes. Like articles: idempotent upserts keyed by NCT id, one
# transaction a batch; a study whose stored JSON is byte-identical is 'unchanged'.

NCT_GLOB = "NCT[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]"


def start_source_run(
    db: sqlite_utils.Database, *, source: str, mode: str, query_version: str, query_text: str, window_from: str | None
) -> int:
    """A run of one source in the run log."""
    with db.atomic():
        table = db.table("harvest_runs")
        table.insert(
            {
                "source": source,
                "started_at": now_utc(),
                "mode": mode,
                "query_version": query_version,
                "query_text": query_text,
                "window_from": window_from,
                "status": "running",
                "pid": os.getpid(),
                "host": socket.gethostname(),
            }
        )
        return _inserted_id(table)


def last_successful_source_run(db: sqlite_utils.Database, source: str) -> dict | None:
    rows = list(
        db.query(
            "select * from harvest_runs where status = 'success' and coalesce(source, 'pubmed') = ? "
            "and mode not in (?, ?) order by id desc limit 1",
            [source, *PARTIAL_MODES],
        )
    )
    return rows[0] if rows else None


def cited_nct_ids(db: sqlite_utils.Database) -> set[str]:
    """Every ClinicalTrials.gov id a catalog record cites (its DataBankList, title or abstract)."""
    return {
        row[0]
        for row in db.execute(
            "select distinct trial_id from trial_registrations where trial_id glob ? "
            "and coalesce(source, '') not like 'registry_reference:%'",
            [NCT_GLOB],
        )
    }


def stored_trials(db: sqlite_utils.Database) -> dict[str, int]:
    """nct_id -> in_topic of every stored study."""
    return {nct: in_topic for nct, in_topic in db.execute("select nct_id, in_topic from trials")}


def not_in_registry_ids(db: sqlite_utils.Database) -> set[str]:
    return {row[0] for row in db.execute("select nct_id from trials_not_in_registry")}


@dataclass
class TrialSaveCounts:
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    events: int = 0
    stored_ids: set[str] = field(default_factory=set)


_TRIAL_EVENT_COLUMNS = (
    "overall_status",
    "has_results",
    "results_first_posted",
    "primary_completion_date",
    "completion_date",
    "enrollment_count",
    "enrollment_type",
)


def save_trials(db: sqlite_utils.Database, records: list, run_id: int, *, in_topic: bool) -> TrialSaveCounts:
    """Upsert parsed studies (ctgov.TrialRecord) in one transaction; count what changed.

    `in_topic`: the topic query listed them (a study stored because a paper cites it keeps
    whatever it had, 0 when new). A changed study's parts and registry links are replaced,
    and what changed lands in trial_events."""
    from . import ctgov

    counts = TrialSaveCounts()
    latest = {r.nct_id: r for r in records}
    if not latest:
        return counts
    ids = list(latest)
    old: dict[str, dict] = {}
    for chunk in _in_chunks(ids):
        cols = ", ".join(("nct_id", "raw_sha1", "in_topic") + _TRIAL_EVENT_COLUMNS)
        for row in db.query(f"select {cols} from trials where nct_id in ({_placeholders(len(chunk))})", chunk):
            old[row["nct_id"]] = row
    now = now_utc()
    with db.atomic():
        for nct, record in latest.items():
            counts.stored_ids.add(nct)
            row = ctgov.trial_row(record)
            previous = old.get(nct)
            topic = int(in_topic or bool(previous and previous["in_topic"]))
            if previous is not None and previous["raw_sha1"] == row["raw_sha1"]:
                counts.unchanged += 1
                db.execute("update trials set last_seen_run = ?, in_topic = ? where nct_id = ?", [run_id, topic, nct])
                continue
            row.update(in_topic=topic, last_seen_run=run_id, last_changed_run=run_id)
            if previous is None:
                row["first_seen_run"] = run_id
                counts.new += 1
                db.table("trials").insert(row)
            else:
                counts.updated += 1
                db.table("trials").update(nct, row)
                events = ctgov.change_events(previous, row)
                db.conn.executemany(
                    "insert into trial_events (nct_id, run_id, event, detail, recorded_at) values (?, ?, ?, ?, ?)",
                    [(nct, run_id, event, detail, now) for event, detail in events],
                )
                counts.events += len(events)
            for table, rows in ctgov.child_rows(record).items():
                db.execute(f"delete from [{table}] where nct_id = ?", [nct])
                if rows:
                    db.conn.executemany(f"insert into [{table}] values ({_placeholders(len(rows[0]))})", rows)
            db.execute(
                "delete from trial_registrations where trial_id = ? and source like 'registry_reference:%'", [nct]
            )
            db.conn.executemany(
                "insert or ignore into trial_registrations (pmid, registry, trial_id, source) values (?, ?, ?, ?)",
                ctgov.reference_links(record),
            )
        for chunk in _in_chunks(ids):
            db.execute(f"delete from trials_not_in_registry where nct_id in ({_placeholders(len(chunk))})", chunk)
    return counts


def mark_not_in_registry(db: sqlite_utils.Database, nct_ids: Iterable[str], run_id: int) -> int:
    """Cited ids the registry did not return when asked for them: recorded, not an error."""
    rows = [(nct, run_id, run_id) for nct in sorted(set(nct_ids))]
    with db.atomic():
        db.conn.executemany(
            "insert into trials_not_in_registry (nct_id, first_checked_run, last_checked_run) values (?, ?, ?) "
            "on conflict(nct_id) do update set last_checked_run = excluded.last_checked_run",
            rows,
        )
    return len(rows)


def mark_trials_out_of_topic(db: sqlite_utils.Database, listed: set[str], run_id: int) -> int:
    """After a full sweep: stored studies the topic query no longer lists stay, with in_topic = 0."""
    stale = [nct for nct, topic in stored_trials(db).items() if topic and nct not in listed]
    with db.atomic():
        for chunk in _in_chunks(stale):
            db.execute(
                f"update trials set in_topic = 0, last_changed_run = ? where nct_id in ({_placeholders(len(chunk))})",
                [run_id, *chunk],
            )
    return len(stale)


# -- citations (OpenAlex) ---------------------------------------------------------------

# The schedule: a record never read, or read this many days ago or more, is due; a record that
# entered PubMed in the last NEWEST_DAYS days is due once a day (its first citations come fast).
CITATIONS_STALE_DAYS = 7
CITATIONS_NEWEST_DAYS = 90


@dataclass
class CitationsDue:
    never_read: list[int] = field(default_factory=list)
    stale: list[int] = field(default_factory=list)
    newest: list[int] = field(default_factory=list)

    @property
    def pmids(self) -> list[int]:
        return sorted(self.never_read + self.stale + self.newest)


def citations_due(db: sqlite_utils.Database, today, *, full: bool = False) -> CitationsDue:
    """The records whose citation counts a run reads (every stored record NLM has not deleted,
    with `full`), by why they are due; `today` is the harvester's clock (harvest/clock.py)."""
    import datetime as dt

    stale_on = (today - dt.timedelta(days=CITATIONS_STALE_DAYS)).isoformat()
    newest_since = (today - dt.timedelta(days=CITATIONS_NEWEST_DAYS)).isoformat()
    due = CitationsDue()
    rows = db.execute(
        """
        select a.pmid,
               case when c.pmid is null then 'never_read'
                    when substr(c.read_at, 1, 10) <= :stale_on then 'stale'
                    when coalesce(a.entrez_date, a.pub_date) >= :newest_since
                         and substr(c.read_at, 1, 10) < :today then 'newest'
                    when :full then 'stale' end as why
        from articles a left join citations c on c.pmid = a.pmid
        where a.is_deleted = 0
        order by a.pmid""",
        {"stale_on": stale_on, "newest_since": newest_since, "today": today.isoformat(), "full": int(full)},
    )
    for pmid, why in rows:
        if why:
            getattr(due, why).append(pmid)
    return due


def preprint_citations_due(db: sqlite_utils.Database, today, *, full: bool = False) -> list[tuple[str, str]]:
    """The in-topic preprints whose citation counts a run reads, by the records' schedule (never
    read; read CITATIONS_STALE_DAYS ago or more; first posted in the last CITATIONS_NEWEST_DAYS
    and not read today; all with `full`): (PPR id, DOI) pairs. OpenAlex finds a preprint by its
    DOI: one without a DOI an OR filter can hold is never asked for."""
    import datetime as dt

    from .openalex import askable_doi

    rows = db.execute(
        """
        select p.ppr_id, p.doi
        from preprints p left join preprint_citations c on c.ppr_id = p.ppr_id
        where p.in_topic = 1 and p.doi is not null
          and (c.ppr_id is null or :full
               or substr(c.read_at, 1, 10) <= :stale_on
               or (p.first_publication_date >= :newest_since and substr(c.read_at, 1, 10) < :today))
        order by p.ppr_id""",
        {
            "stale_on": (today - dt.timedelta(days=CITATIONS_STALE_DAYS)).isoformat(),
            "newest_since": (today - dt.timedelta(days=CITATIONS_NEWEST_DAYS)).isoformat(),
            "today": today.isoformat(),
            "full": int(full),
        },
    )
    return [(ppr, doi) for ppr, doi in rows if askable_doi(doi)]


@dataclass
class CitationSaveCounts:
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    not_found: int = 0


def save_citations(
    db: sqlite_utils.Database, asked: Iterable[int], found: dict, run_id: int, read_at: str
) -> CitationSaveCounts:
    """Store what OpenAlex answered for the PMIDs `asked` (`found`: PMID -> openalex.Citation) in
    one transaction. A PMID without a work keeps a row with `found` 0 and no count. Counts move
    only when OpenAlex's changed; `read_at` and `read_run` always do.

    `articles.cited_by_count` (the lists' sort) is kept equal to the count. No summary counts it,
    so a write that changes nothing else leaves `summary_state` as it found it."""
    return _save_counts(db, _RECORD_COUNTS, {pmid: {} for pmid in asked}, lambda pmid: found.get(pmid), run_id, read_at)


def save_preprint_citations(
    db: sqlite_utils.Database, asked: Iterable[tuple[str, str]], found: dict, run_id: int, read_at: str
) -> CitationSaveCounts:
    """Store what OpenAlex answered for the preprints `asked` ((PPR id, DOI) pairs; `found`:
    openalex.doi_key(DOI) -> Citation), as `save_citations` stores the records' (the count again
    in `preprints.cited_by_count`)."""
    from .openalex import doi_key

    dois = dict(asked)
    return _save_counts(
        db,
        _PREPRINT_COUNTS,
        {ppr: {"doi": doi} for ppr, doi in dois.items()},
        lambda ppr: found.get(doi_key(dois[ppr])),
        run_id,
        read_at,
    )


@dataclass(frozen=True)
class _CountTables:
    key: str  # pmid, ppr_id
    counts: str  # citations, preprint_citations
    by_year: str  # citations_by_year, preprint_citations_by_year
    owner: str  # articles, preprints: where cited_by_count is kept for sorting


_RECORD_COUNTS = _CountTables("pmid", "citations", "citations_by_year", "articles")
_PREPRINT_COUNTS = _CountTables("ppr_id", "preprint_citations", "preprint_citations_by_year", "preprints")


def _save_counts(
    db: sqlite_utils.Database, t: _CountTables, asked: dict, citation_of, run_id: int, read_at: str
) -> CitationSaveCounts:
    """The writer of both kinds' counts: `asked` maps each key to the columns it adds (a
    preprint's DOI), `citation_of(key)` gives OpenAlex's Citation or None (no work)."""
    counts = CitationSaveCounts()
    keys = sorted(asked)
    if not keys:
        return counts
    old: dict = {}
    old_years: dict = {}
    for chunk in _in_chunks(keys):
        marks = _placeholders(len(chunk))
        for row in db.query(f"select * from {t.counts} where {t.key} in ({marks})", chunk):
            old[row[t.key]] = row
        for key, year, count in db.execute(
            f"select {t.key}, year, count from {t.by_year} where {t.key} in ({marks}) order by {t.key}, year", chunk
        ):
            old_years.setdefault(key, []).append((year, count))
    with db.atomic():
        (stale_before,) = db.execute("select stale from summary_state where id = 1").fetchone() or (1,)
        for key in keys:
            citation = citation_of(key)
            values = {
                **asked[key],
                "openalex_id": citation.openalex_id if citation else None,
                "cited_by_count": citation.cited_by_count if citation else None,
                "found": int(citation is not None),
                "openalex_updated": citation.updated_date if citation else None,
            }
            years = list(citation.counts_by_year) if citation else []
            previous = old.get(key)
            if citation is None:
                counts.not_found += 1
            if previous is None:
                counts.new += citation is not None
            elif {k: previous[k] for k in values} == values and old_years.get(key, []) == years:
                counts.unchanged += citation is not None
            else:
                counts.updated += citation is not None
            row = {**values, t.key: key, "read_at": read_at, "read_run": run_id}
            columns = ", ".join(row)
            db.execute(
                f"insert into {t.counts} ({columns}) values ({', '.join(':' + c for c in row)}) "
                f"on conflict({t.key}) do update set " + ", ".join(f"{c} = excluded.{c}" for c in row if c != t.key),
                row,
            )
            if old_years.get(key, []) != years:
                db.execute(f"delete from {t.by_year} where {t.key} = ?", [key])
                db.conn.executemany(
                    f"insert into {t.by_year} ({t.key}, year, count) values (?, ?, ?)",
                    [(key, year, n) for year, n in years],
                )
            db.execute(
                f"update {t.owner} set cited_by_count = ? where {t.key} = ? and cited_by_count is not ?",
                [values["cited_by_count"], key, values["cited_by_count"]],
            )
        if not stale_before:
            db.execute("update summary_state set stale = 0 where id = 1")
    return counts


def _similar_documents(db: sqlite_utils.Database):
    """What `similar` compares: every stored record's text, MeSH, keywords and tags (records
    NLM deleted left out), streamed in PMID order (never all in memory)."""
    cursor = db.conn.execute("""
        select a.pmid, a.title, a.abstract, a.keywords, a.mesh_terms,
               (select group_concat(t.facet || '=' || t.value, char(31)) from article_tags t
                 where t.pmid = a.pmid) as tags
        from articles a
        where coalesce(a.is_deleted, 0) = 0
        order by a.pmid""")
    while rows := cursor.fetchmany(1000):
        for pmid, title, abstract, keywords, mesh, tags in rows:
            yield {
                "pmid": pmid,
                "title": title,
                "abstract": abstract,
                "keywords": (keywords or "").split("; ") if keywords else [],
                "mesh": mesh.split("; ") if mesh else [],
                "tags": sorted(tuple(t.split("=", 1)) for t in tags.split("\x1f")) if tags else [],
            }


def refresh_similar(db: sqlite_utils.Database) -> int:
    """Recompute `similar_articles` for records whose compared terms changed since the last
    refresh (new, revised, re-tagged, deleted by NLM) and for their neighbours: records
    that listed them, and records they now list. Returns how many records got new lists.
    Runs at the end of every harvest, import and retag. A failure is logged, not raised:
    the records are stored, and the next refresh redoes what this one could not (nothing
    of it is written until all of it is computed)."""
    if not db.table("similar_articles").exists():
        return 0  # an earlier migration writing: the first refresh after 0012 fills it
    try:
        return _refresh_similar(db)
    except Exception as exc:  # noqa: BLE001 - e.g. the full disk that failed the run
        log.warning("similar articles not refreshed (the next run retries): %s", exc)
        return 0


def _refresh_similar(db: sqlite_utils.Database) -> int:
    from . import similar

    started = time.perf_counter()
    stored = dict(db.execute("select pmid, terms_fingerprint from similar_sources").fetchall())
    index = similar.build_index(_similar_documents(db))
    changed = {p for p, f in index.fingerprints.items() if stored.get(p) != f}
    removed = set(stored) - set(index.fingerprints)
    if not changed and not removed:
        return 0
    rows = list(similar.neighbour_rows(index, changed))
    touched = sorted(changed | removed)
    neighbours = {r["similar_pmid"] for r in rows}
    for chunk in _in_chunks(touched):
        neighbours.update(
            p
            for (p,) in db.execute(
                f"select distinct pmid from similar_articles where similar_pmid in ({_placeholders(len(chunk))})", chunk
            )
        )
    neighbours -= changed | removed
    rows.extend(similar.neighbour_rows(index, neighbours))
    redone = sorted(changed | removed | neighbours)
    with db.atomic():
        for chunk in _in_chunks(redone):
            db.execute(f"delete from similar_articles where pmid in ({_placeholders(len(chunk))})", chunk)
        for chunk in _in_chunks(sorted(removed)):
            db.execute(f"delete from similar_sources where pmid in ({_placeholders(len(chunk))})", chunk)
        db.conn.executemany(
            "insert into similar_articles (pmid, rank, similar_pmid, score, shared_terms) values (?, ?, ?, ?, ?)",
            [(r["pmid"], r["rank"], r["similar_pmid"], r["score"], r["shared_terms"]) for r in rows],
        )
        db.conn.executemany(
            "insert or replace into similar_sources (pmid, terms_fingerprint) values (?, ?)",
            [(p, index.fingerprints[p]) for p in sorted(changed)],
        )
    log.info(
        "similar articles: %d records changed, %d lists recomputed in %.1f s",
        len(changed) + len(removed),
        len(changed) + len(neighbours),
        time.perf_counter() - started,
    )
    return len(changed) + len(neighbours)


# -- Europe PMC preprints ------------------------------------------------------------------


@dataclass
class PreprintSaveCounts:
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    stored_ids: set[str] = field(default_factory=set)


def save_preprints(db: sqlite_utils.Database, records: list, run_id: int) -> PreprintSaveCounts:
    """Upsert parsed preprints (europepmc.PreprintRecord) the topic query listed, in one
    transaction; a changed record's tags are replaced. Links are `link_preprints`'s."""
    from . import europepmc

    counts = PreprintSaveCounts()
    latest = {r.ppr_id: r for r in records}
    if not latest:
        return counts
    ids = list(latest)
    old: dict[str, str] = {}
    for chunk in _in_chunks(ids):
        for ppr, sha1 in db.execute(
            f"select ppr_id, raw_sha1 from preprints where ppr_id in ({_placeholders(len(chunk))})", chunk
        ):
            old[ppr] = sha1
    with db.atomic():
        for ppr, record in latest.items():
            counts.stored_ids.add(ppr)
            row = europepmc.preprint_row(record)
            if old.get(ppr) == row["raw_sha1"]:
                counts.unchanged += 1
                db.execute("update preprints set last_seen_run = ?, in_topic = 1 where ppr_id = ?", [run_id, ppr])
                continue
            row.update(in_topic=1, last_seen_run=run_id, last_changed_run=run_id)
            if ppr not in old:
                row["first_seen_run"] = run_id
                counts.new += 1
                db.table("preprints").insert(row)
            else:
                counts.updated += 1
                db.table("preprints").update(ppr, row)
            db.execute("delete from preprint_tags where ppr_id = ?", [ppr])
            tags = europepmc.preprint_tags(record)
            if tags:
                db.conn.executemany(
                    "insert or ignore into preprint_tags (ppr_id, facet, value, method, evidence, confidence) "
                    "values (?, ?, ?, ?, ?, ?)",
                    [(ppr, t["facet"], t["value"], t["method"], t["evidence"], t["confidence"]) for t in tags],
                )
    return counts


def mark_preprints_out_of_topic(db: sqlite_utils.Database, listed: set[str], run_id: int) -> int:
    """After a full sweep: stored preprints the topic query no longer lists stay, with in_topic = 0."""
    stale = [p for (p,) in db.execute("select ppr_id from preprints where in_topic = 1") if p not in listed]
    with db.atomic():
        for chunk in _in_chunks(stale):
            db.execute(
                f"update preprints set in_topic = 0, last_changed_run = ? where ppr_id in ({_placeholders(len(chunk))})",
                [run_id, *chunk],
            )
    return len(stale)


def pmids_for_preprint_lookup(db: sqlite_utils.Database, after_run: int | None) -> list[int]:
    """The catalog records whose Europe PMC core record may name a preprint: every current one,
    or (incrementally) those first stored or changed after run `after_run`."""
    sql = "select pmid from articles where matches_query = 1 and is_deleted = 0"
    params: list = []
    if after_run is not None:
        sql += " and (first_seen_run > ? or last_changed_run > ?)"
        params = [after_run, after_run]
    return [pmid for (pmid,) in db.execute(sql + " order by pmid", params)]


def save_europepmc_links(db: sqlite_utils.Database, asked: list[int], links: list[tuple[str, int]], run_id: int) -> int:
    """Europe PMC's own preprint links of the PMIDs `asked` (those it no longer gives are dropped)."""
    with db.atomic():
        for chunk in _in_chunks(asked):
            db.execute(
                f"delete from preprint_links where method = 'europepmc' and pmid in ({_placeholders(len(chunk))})",
                chunk,
            )
        db.conn.executemany(
            "insert or ignore into preprint_links (ppr_id, pmid, method, score, detail, run_id) "
            "values (?, ?, 'europepmc', 1.0, ?, ?)",
            [(ppr, pmid, "the published record's commentCorrectionList: Preprint in", run_id) for ppr, pmid in links],
        )
    return len(links)


LINK_STRENGTH = {"europepmc": 0, "doi": 1, "title_author_year": 2}


# The records a preprint may be the preprint of, by title: its first author's surname ("Smith %",
# any case, as LIKE compares), a year from one before to three after; with their authors'
# surnames in order. "+" keeps SQLite on the (first_author collate nocase, pub_year) index of
# migration 0018, never is_deleted's (a scan of every current record: 1.7 s a preprint at a
# million articles); tests/test_preprints_harvest.py checks the plan.
PREPRINT_CANDIDATES_SQL = (
    "select a.pmid, coalesce(nullif(a.title, ''), a.vernacular_title) as title, a.first_author, a.abstract, "
    "a.pub_year, a.doi, (select group_concat(coalesce(au.last_name, au.collective_name), char(31)) "
    "from (select * from article_authors aa where aa.pmid = a.pmid and aa.role = 'author' "
    "order by aa.position) aa join authors au on au.id = aa.author_id) as surnames "
    "from articles a where +a.is_deleted = 0 and a.first_author like ? and a.pub_year between ? and ?"
)


def link_preprints(db: sqlite_utils.Database, run_id: int) -> dict[str, int]:
    """Link every stored preprint to its published version among the catalog's records: Europe
    PMC's links (stored by `save_europepmc_links`), else the same DOI, else title + first author +
    year (harvest/preprint_links.py). DOI and title links are made again from scratch each time;
    each preprint's strongest link is copied to its row. Returns preprints linked, by method."""
    from .europepmc import surname_of
    from .preprint_links import Candidate, best_title_match, normal_doi

    preprints = list(db.query("select ppr_id, title, abstract, authors, first_author, pub_year, doi from preprints"))
    by_doi: dict[str, list[int]] = {}
    for pmid, doi in db.execute("select pmid, doi from articles where doi is not null and is_deleted = 0"):
        key = normal_doi(doi)
        if key:
            by_doi.setdefault(key, []).append(pmid)
    rows = []
    for p in preprints:
        key = normal_doi(p["doi"])
        doi_pmids = by_doi.get(key or "", [])
        if len(doi_pmids) == 1:
            rows.append((p["ppr_id"], doi_pmids[0], "doi", 1.0, f"the same DOI {p['doi']}", run_id))
            continue
        surname = surname_of(p["first_author"])
        if not surname or p["pub_year"] is None:
            continue
        candidates = [
            Candidate(
                r["pmid"],
                r["title"],
                surname_of(r["first_author"]),
                r["pub_year"],
                r["doi"],
                tuple((r["surnames"] or "").split("\x1f")),
                r["abstract"],
            )
            for r in db.query(
                PREPRINT_CANDIDATES_SQL,
                [surname.replace("%", "").replace("_", "") + " %", p["pub_year"] - 1, p["pub_year"] + 3],
            )
        ]
        surnames = tuple(surname_of(a) or "" for a in (p["authors"] or "").split("; "))
        match = best_title_match(p["title"], surname, p["pub_year"], candidates, surnames, p["abstract"])
        if match is not None:
            rows.append((p["ppr_id"], match.pmid, match.method, match.score, match.detail, run_id))
    with db.atomic():
        db.execute("delete from preprint_links where method != 'europepmc'")
        db.conn.executemany(
            "insert or ignore into preprint_links (ppr_id, pmid, method, score, detail, run_id) values (?, ?, ?, ?, ?, ?)",
            rows,
        )
        # Each preprint's strongest link to a record the catalog holds; rows that already say so
        # are left alone (a rerun writes nothing).
        best: dict[str, tuple] = {}
        for ppr, pmid, method, score in db.execute(
            "select l.ppr_id, l.pmid, l.method, l.score from preprint_links l "
            "join articles a on a.pmid = l.pmid join preprints p on p.ppr_id = l.ppr_id"
        ):
            rank = (LINK_STRENGTH.get(method, 9), -(score or 0), pmid)
            if ppr not in best or rank < best[ppr][0]:
                best[ppr] = (rank, pmid, method, score)
        want = {ppr: (pmid, method, score, 1) for ppr, (_, pmid, method, score) in best.items()}
        changes = [
            (*want.get(ppr, (None, None, None, 0)), ppr)
            for ppr, *now in db.execute(
                "select ppr_id, published_pmid, link_method, link_score, has_published_version from preprints"
            )
            if tuple(now) != want.get(ppr, (None, None, None, 0))
        ]
        db.conn.executemany(
            "update preprints set published_pmid = ?, link_method = ?, link_score = ?, has_published_version = ? "
            "where ppr_id = ?",
            changes,
        )
    linked: dict[str, int] = {}
    for _, _, method, _ in best.values():
        linked[method] = linked.get(method, 0) + 1
    return linked
