"""Paging gives every row exactly once: for every table, in its default order and in every
order it offers, both "stream all rows" (CSV) and following `next_url` (JSON).

Datasette 0.65 orders a table's first page by the sort column alone and the later pages by
the sort column and the primary key, so rows that tie on the sort column were skipped and
repeated at page boundaries (on 18,002 real records: 567 missing, 396 twice). The catalog's
plugin orders every page the same way (db/plugins/catalog.py, "complete paging").

The catalog: the session's catalog of real records (tests/test_catalog.py), thinned to every
16th article and what belongs to it, so that pages of 5 rows cross many boundaries in little
time; the ties are real (dozens of records share a publication date, most columns repeat).
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import shutil
import sqlite3
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.test_catalog import CONFIG, build_catalog_site

PAGE = 5


class SmallPages:
    """Datasette over the thinned catalog, at most PAGE rows per request (so streaming CSV
    pages by PAGE rows too)."""

    larger: SmallPages  # set by the fixture: the same site with larger pages, for next_url

    def __init__(self, site: Path, max_rows: int = PAGE):
        from datasette.app import Datasette

        settings = json.loads((CONFIG / "settings.json").read_text())
        settings.update(max_returned_rows=max_rows, sql_time_limit_ms=20000, facet_time_limit_ms=20000)
        self.loop = asyncio.new_event_loop()
        self.ds = Datasette(config_dir=site, settings=settings)
        self.loop.run_until_complete(self.ds.invoke_startup())

    def get(self, path: str):
        return self.loop.run_until_complete(self.ds.client.get(path))


@pytest.fixture(scope="module")
def thinned(tmp_path_factory):
    site = build_catalog_site(tmp_path_factory)
    copy = tmp_path_factory.mktemp("paging-site")
    shutil.copytree(site, copy, dirs_exist_ok=True, ignore=shutil.ignore_patterns("inspect-data.json"))
    with sqlite3.connect(copy / "catalog.db") as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "select name from sqlite_master where type = 'table' "
                "and name not like 'articles_fts%' and name not like 'sqlite_%'"
            )
        ]
        for table in tables:
            columns = {c[1] for c in conn.execute(f"pragma table_info([{table}])")}
            if "pmid" in columns:
                conn.execute(f"delete from [{table}] where pmid % 16 != 0")
            elif table in ("facet_counts", "facet_pair_counts"):  # counts of all the rest: keep 1 in ~8
                conn.execute(f"delete from [{table}] where (count + length(cast(value as text))) % 8 != 0")
        conn.execute("delete from authors where id not in (select author_id from article_authors)")
        # The newest records as if published on one day (a field changed): a tie across the
        # first page boundaries of the default order, where Datasette's first page differed.
        conn.execute(
            "update articles set pub_date = (select max(pub_date) from articles) where pmid in "
            f"(select pmid from articles order by pub_date desc, pmid limit {3 * PAGE})"
        )
        conn.execute("delete from mesh_descriptors where descriptor_ui not in (select descriptor_ui from article_mesh)")
    conn.close()
    client = SmallPages(copy)
    client.larger = SmallPages(copy, max_rows=1000)  # for next_url pages larger than PAGE
    yield client, copy / "catalog.db"
    client.loop.close()
    client.larger.loop.close()


def keys_and_orders(db: Path):
    """(table, primary key columns, row count, [sort arguments]) for every table Datasette lists."""
    conn = sqlite3.connect(db)
    out = []
    for (table,) in conn.execute(
        "select name from sqlite_master where type = 'table' and name not like "
        "'articles_fts%' and name not like 'sqlite_%' order by name"
    ):
        info = conn.execute(f"pragma table_xinfo([{table}])").fetchall()
        pks = [c[1] for c in sorted(info, key=lambda c: c[5]) if c[5]] or ["rowid"]
        count = conn.execute(f"select count(*) from [{table}]").fetchone()[0]
        # Every column is offered as a sort, but a binary one (refused: tested below).
        out.append((table, pks, count, [c[1] for c in info if (c[2] or "").upper() != "BLOB"]))
    conn.close()
    return out


def expected_keys(db: Path, table: str, pks: list[str]) -> Counter:
    conn = sqlite3.connect(db)
    rows = conn.execute(f"select {', '.join(f'[{k}]' for k in pks)} from [{table}]").fetchall()
    conn.close()
    return Counter(tuple(str(v) for v in row) for row in rows)


def walk_json(client, table, pks, order: str, size: int = PAGE) -> Counter:
    seen: Counter = Counter()
    url = f"/catalog/{table}.json?_size={size}&_nocount=1&_nofacet=1&_shape=objects{order}"
    pages = 0
    while url:
        response = client.get(url)
        assert response.status_code == 200, (url, response.text[:300])
        data = response.json()
        seen.update(tuple(str(row[k]) for k in pks) for row in data["rows"])
        url = data.get("next_url")
        if url:
            parts = urlsplit(url)
            url = parts.path + "?" + parts.query
        pages += 1
        assert pages < 10_000
    return seen


def stream_csv(client, table, pks, order: str) -> Counter:
    response = client.get(f"/catalog/{table}.csv?_stream=on&_size=max{order}")
    assert response.status_code == 200, response.text[:300]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    return Counter(tuple(row[k] for k in pks) for row in rows)


def orders(columns: list[str]) -> list[str]:
    """The table's default order, and a sort by every column, ascending and descending."""
    return [""] + [f"&_sort={c}" for c in columns] + [f"&_sort_desc={c}" for c in columns]


def test_the_thinned_catalog_has_ties_across_page_boundaries(thinned):
    client, db = thinned
    conn = sqlite3.connect(db)
    articles = conn.execute("select count(*) from articles").fetchone()[0]
    ties = conn.execute("select count(*) from articles group by pub_date order by pub_date desc limit 1").fetchone()[0]
    conn.close()
    assert articles > 40 and ties > 2 * PAGE  # the first page boundaries of the default order fall in a tie


def test_every_table_pages_every_row_exactly_once_in_every_order(thinned):
    client, db = thinned
    failures = []
    tables = keys_and_orders(db)
    assert {"articles", "article_authors", "article_tags", "harvest_runs"} <= {t for t, *_ in tables}
    for table, pks, count, columns in tables:
        expected = expected_keys(db, table, pks)
        for order in orders(columns):
            # Streaming pages by PAGE rows; next_url by PAGE in the default order, and in the
            # others by pages that cross at least 10 boundaries (a large table in pages of 5,
            # in every order of every column, would take minutes).
            size = PAGE if not order else max(PAGE, -(-count // 11))
            json_client = client if size == PAGE else client.larger
            walks = (
                (
                    "json next_url",
                    lambda _client, table, pks, order, c=json_client, s=size: walk_json(c, table, pks, order, size=s),
                ),
                ("csv stream", stream_csv),
            )
            for how, walk in walks:
                seen = walk(client, table, pks, order)
                if seen != expected:
                    missing = sum((expected - seen).values())
                    twice = sum((seen - expected).values())
                    failures.append(
                        f"{table}{order or ' (default order)'} by {how}: {missing} missing, {twice} extra of {count}"
                    )
    assert failures == []


@pytest.mark.parametrize(
    "filters, where",
    [
        (
            "&_pubtype=Journal+Article",
            "pmid in (select apt.pmid from article_publication_types apt join publication_types t "
            "on t.ui = apt.publication_type_ui where t.name = 'Journal Article')",
        ),
        ("&pub_year__gte=2010&_sort=journal", "pub_year >= 2010"),
        (
            "&_search=patients&_sort_desc=pub_year",
            "pmid in (select rowid from articles_fts where articles_fts match 'patients')",
        ),
    ],
)
def test_filtered_lists_page_every_row_exactly_once(thinned, filters, where):
    """The facet filters' subqueries, a column filter and a search keep the order complete too."""
    client, db = thinned
    conn = sqlite3.connect(db)
    expected = Counter((str(r[0]),) for r in conn.execute(f"select pmid from articles where {where}"))
    conn.close()
    assert len(expected) > 2 * PAGE
    assert walk_json(client, "articles", ["pmid"], filters) == expected
    assert stream_csv(client, "articles", ["pmid"], filters) == expected
