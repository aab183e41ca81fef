"""The harvest's stages after parsing, for tests that store parsed records in-process:
tag -> rows -> save, exactly as `runner` and `importer` call them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import sqlite_utils

from harvest import rows, store
from harvest.tags import tag_record


def save_records(db: sqlite_utils.Database, records: Iterable[Mapping], run_id: int, **options) -> store.SaveCounts:
    """Parsed records (deletions among them are left out) -> tag -> rows -> save."""
    articles = [r for r in records if r["type"] == "article"]
    seen = [rows.fingerprint(r) for r in articles]
    lacking = store.not_stored(db, seen)
    batch = [rows.article_rows(r, tag_record(r)) for r, fp in zip(articles, seen) if fp in lacking]
    return store.save_articles(db, seen, batch, run_id, **options)
