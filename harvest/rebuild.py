"""Derived rows again from the stored XML: the catalog's columns, child rows, tags and counts.

Owns deciding when a catalog's derived rows are out of date, and rebuilding them, as one
step: stored XML -> parse -> tag -> rows -> save -> summarise, the same stages as a
harvest, with `article_xml` as the source. What says a rebuild is due:

* `rows`: the row model (`rows.ROW_MODEL_VERSION`) differs from the one recorded in
  `derived_versions` (a catalog from before that table: rows migration 0002 left empty);
* `tags`: a stored record carries tags of other rules than `tags.RULES_VERSION`;
* `summaries`: a migration changed the summary tables and nothing has counted them since.

`open_for_writing` (what every run, import and retag opens the catalog with) rebuilds what
is due; `python -m harvest rebuild` rebuilds everything; `python -m harvest retag` re-tags
every record. Must never: talk to the network, or run inside a migration (migrations change
the schema only).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import sqlite_utils

from . import store
from .pubmed_xml import ArticleRecord, parse_articles
from .rows import ROW_MODEL_VERSION, TagRows, article_rows, tag_rows
from .tags import RULES_VERSION, tag_record

log = logging.getLogger("harvest.rebuild")

BATCH = 500


@dataclass
class RebuildOutcome:
    parts: set[str] = field(default_factory=set)  # what was due: rows, tags, summaries
    rebuilt: int = 0  # records whose rows were rebuilt
    retagged: int = 0  # records re-tagged


def current_versions() -> dict[str, str]:
    return {"rows": ROW_MODEL_VERSION, "rules": RULES_VERSION}


def stale_parts(db: sqlite_utils.Database) -> set[str]:
    """What of the catalog's derived rows the code would build differently (see the module)."""
    parts: set[str] = set()
    built = store.derived_versions(db).get("rows")
    if (built is None and store.any_unfilled_rows(db)) or (built is not None and built != ROW_MODEL_VERSION):
        parts.add("rows")
    elif store.any_tagged_not_by(db, RULES_VERSION):
        parts.add("tags")
    if store.summaries_never_counted(db):
        parts.add("summaries")
    return parts


def open_for_writing(db_path: Path | str) -> sqlite_utils.Database:
    """The catalog, its schema up to date (`store.open_db`) and its derived rows rebuilt where
    the code's versions say they are out of date. Callers hold the harvest lock."""
    db = store.open_db(db_path)
    bring_up_to_date(db)
    return db


def bring_up_to_date(db: sqlite_utils.Database) -> RebuildOutcome:
    """Rebuild what `stale_parts` says is due (nothing, most times); record the versions."""
    parts = stale_parts(db)
    if not parts:
        if store.derived_versions(db) != current_versions():
            with db.atomic():  # a catalog from before the versions were recorded: now they are
                store.record_derived_versions(db, current_versions())
        return RebuildOutcome()
    return rebuild(db, parts)


def rebuild(
    db: sqlite_utils.Database, parts: set[str] | None = None, progress: Callable[[int], None] | None = None
) -> RebuildOutcome:
    """Rebuild `parts` (default: everything) from the stored XML in one transaction, then
    recount the summaries and the similar articles."""
    parts = {"rows", "summaries"} if parts is None else set(parts)
    outcome = RebuildOutcome(parts=parts)
    with db.atomic():
        if "rows" in parts:
            for records in stored_records(db):  # stored XML -> parse
                batch = [article_rows(r, tag_record(r)) for r in records]  # -> tag -> rows
                store.rewrite_articles(db, batch)  # -> save
                outcome.rebuilt += len(batch)
                if progress:
                    progress(len(batch))
            log.info("rebuilt the rows of %d records from their stored XML (%s)", outcome.rebuilt, ROW_MODEL_VERSION)
        elif "tags" in parts:
            outcome.retagged = _retag(db, only_outdated=True, progress=progress)
            log.info("re-tagged %d records tagged by older rules", outcome.retagged)
        store.record_derived_versions(db, current_versions())
    store.refresh_summaries(db)  # -> summarise
    if outcome.rebuilt or outcome.retagged:
        store.refresh_similar(db)
    return outcome


def retag(db: sqlite_utils.Database, progress: Callable[[int], None] | None = None) -> int:
    """Re-tag every stored record with the current rules (one transaction), then summarise."""
    with db.atomic():
        count = _retag(db, only_outdated=False, progress=progress)
        store.record_derived_versions(db, {"rules": RULES_VERSION})
    store.refresh_summaries(db)
    store.refresh_similar(db)  # records whose tags changed, and their neighbours
    return count


def _retag(db: sqlite_utils.Database, *, only_outdated: bool, progress: Callable[[int], None] | None) -> int:
    count = 0
    for records in stored_records(db, tagged_not_by=RULES_VERSION if only_outdated else None):
        tagged: list[TagRows] = [tag_rows(r["pmid"], tag_record(r)) for r in records]  # parse -> tag -> rows
        store.save_tags(db, tagged)  # -> save
        count += len(tagged)
        if progress:
            progress(len(tagged))
    return count


def stored_records(db: sqlite_utils.Database, *, tagged_not_by: str | None = None) -> Iterator[list[ArticleRecord]]:
    """Every stored record (its current version) parsed again from its stored XML, in batches."""
    for blobs in store.stored_xml(db, BATCH, tagged_not_by=tagged_not_by):
        yield [r for blob in blobs for r in parse_articles(blob, source_name="stored record")]
