"""Counts the catalog's pages show, kept as tables so they stay fast at a million articles.

Counting a facet means reading every article (or every tag) the page shows: 0.1 s for a
column at 1,000,000 articles, 0.3-10 s for a one-to-many facet (tags, MeSH). The articles
page, opened with no filter or with one facet value clicked, and the front page ask the same
questions every time, so their answers are computed once per harvest:

* `facet_counts(facet, value, count)`: articles per value of every facet in `FACETS`, over
  all stored articles (what the unfiltered articles page counts);
* `facet_pair_counts(facet, value, other_facet, other_value, count)`: articles carrying both
  values, for the facets in `PAIRED` (the page's default facets), so a page filtered by one
  value of one of them reads its other facets' counts instead of counting;
* `catalog_counts` and `current_year_design`: the front page's figures over current records
  (those the topic query returns, NLM has not deleted, and that concern depression in the
  psychiatric sense; `catalog_counts.set_aside` counts the rest of what the query returns);
* `article_run_counts`: articles per run that first stored them, design and the flags that
  decide whether a record is current (the questions about what a run added);
* `facet_sources`: each facet's label, kind and SQL, which the plugin filters and counts with;
* `evidence_map_counts` and `evidence_map_definition`: the evidence map's (harvest/evidence_map.py);
* `summary_state`: `stale` is set to 1 by triggers on every table the counts read, by any
  write whatsoever, and back to 0 by `refresh`. The Datasette plugin reads the tables only
  while `stale` is 0 and counts live otherwise, so a count shown is never out of date.

`refresh(db)` runs at the end of every harvest, import and retag. Must never: be the only
place a count exists (the rows are the truth; these tables are a cache of them).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass

import sqlite_utils

from . import evidence_map


@dataclass(frozen=True)
class FacetSource:
    name: str
    label: str
    # "column": a column of articles, filtered with ?column=value (Datasette's own filter);
    # "multi": a one-to-many relation, filtered with ?_name=value (the plugin's filter).
    kind: str
    pairs: str  # SQL giving (pmid, value) rows
    # SQL giving (value, articles) for every value, when a faster way than counting distinct
    # PMIDs over `pairs` exists (the relation's primary key already makes pairs distinct).
    counts: str | None = None

    def count_sql(self) -> str:
        return self.counts or (
            f"select value, count(distinct pmid) from ({self.pairs}) where value is not null group by value"
        )


def _tags(facet: str) -> str:
    return f"select pmid, value from article_tags where facet = '{facet}'"


def _tag_counts(facet: str) -> str:  # article_tags' key is (pmid, facet, value)
    return f"select value, count(*) from article_tags where facet = '{facet}' group by value"


def _named(link: str, key: str, vocabulary: str, vocabulary_key: str) -> tuple[str, str]:
    """(pairs, counts) for a relation to a vocabulary of names (MeSH, publication types):
    counts by identifier over the link table's index, then named."""
    pairs = f"select l.pmid, v.name as value from {link} l join {vocabulary} v on v.{vocabulary_key} = l.{key}"
    counts = (
        f"select v.name, sum(n) from (select {key}, count(*) as n from {link} group by {key}) c "
        f"join {vocabulary} v on v.{vocabulary_key} = c.{key} group by v.name"
    )
    return pairs, counts


def _column_counts(column: str) -> str:
    return f"select {column}, count(*) from articles where {column} is not null group by {column}"


NOTICE_PAIRS = """
    select pmid, 'Retracted' as value from articles where is_retracted = 1
    union all select pmid, 'Retraction notice' from articles where is_retraction_notice = 1
    union all select distinct pmid, case ref_type
        when 'ErratumIn' then 'Erratum published'
        when 'ExpressionOfConcernIn' then 'Expression of concern'
        when 'UpdateIn' then 'Updated version published'
        else 'Corrected and republished' end
      from comments_corrections
      where ref_type in ('ErratumIn', 'ExpressionOfConcernIn', 'UpdateIn', 'CorrectedandRepublishedIn')
    union all select pmid, 'Deleted by NLM' from articles where is_deleted = 1
    union all select pmid, 'No longer matches the query' from articles where matches_query = 0
"""

FACETS: dict[str, FacetSource] = {
    f.name: f
    for f in (
        FacetSource(
            "pub_year", "Year", "column", "select pmid, pub_year as value from articles", _column_counts("pub_year")
        ),
        FacetSource(
            "study_design",
            "Study design (primary)",
            "column",
            "select pmid, study_design as value from articles",
            _column_counts("study_design"),
        ),
        FacetSource(
            "journal", "Journal", "column", "select pmid, journal as value from articles", _column_counts("journal")
        ),
        FacetSource(
            "citation_status",
            "Citation status",
            "column",
            "select pmid, citation_status as value from articles",
            _column_counts("citation_status"),
        ),
        FacetSource("molecule", "Molecule", "multi", _tags("molecule"), _tag_counts("molecule")),
        FacetSource("route", "Route", "multi", _tags("route"), _tag_counts("route")),
        FacetSource("population", "Population", "multi", _tags("population"), _tag_counts("population")),
        FacetSource("comparator", "Comparator", "multi", _tags("comparator"), _tag_counts("comparator")),
        FacetSource("outcome", "Outcome", "multi", _tags("outcome"), _tag_counts("outcome")),
        FacetSource("theme", "Theme", "multi", _tags("theme"), _tag_counts("theme")),
        FacetSource("depression", "Depression (which sense)", "multi", _tags("depression"), _tag_counts("depression")),
        FacetSource("design", "Design (any tag)", "multi", _tags("design"), _tag_counts("design")),
        FacetSource(
            "pubtype",
            "Publication type",
            "multi",
            *_named("article_publication_types", "publication_type_ui", "publication_types", "ui"),
        ),
        FacetSource(
            "mesh",
            "MeSH heading",
            "multi",
            *_named("article_mesh", "descriptor_ui", "mesh_descriptors", "descriptor_ui"),
        ),
        FacetSource(
            "lang",
            "Language",
            "multi",
            "select pmid, language as value from article_languages",
            "select language, count(*) from article_languages group by language",
        ),
        FacetSource("notice", "Retractions and corrections", "multi", NOTICE_PAIRS),
        FacetSource(
            "registry",
            "Trial registry",
            "multi",
            # What the paper cites: the registry's own links to papers (trials harvest) are
            # not a paper's registration, and may name papers outside the catalog.
            "select distinct pmid, registry as value from trial_registrations "
            "where coalesce(source, '') not like 'registry_reference:%'",
        ),
    )
}

# The articles page's default facets: pairs of their values are counted, so that a page
# filtered by one value of one of them needs no counting at all. (Pairs of every facet with
# every other would be ~100 rows per article; these are ~15.) `depression` too: left out, it
# was counted live on every such page (0.4 s for one design at a million articles).
PAIRED = (
    "pub_year",
    "study_design",
    "journal",
    "citation_status",
    "molecule",
    "route",
    "population",
    "notice",
    "depression",
)

# Every table a count above reads: a write to any of them marks the summaries stale.
WATCHED = (
    "articles",
    "article_tags",
    "article_publication_types",
    "publication_types",
    "article_mesh",
    "mesh_descriptors",
    "article_languages",
    "comments_corrections",
    "trial_registrations",
)

SCHEMA = """
create table if not exists summary_state (
    id integer primary key check (id = 1),
    stale integer not null,
    refreshed_at text,
    seconds real
);
insert or ignore into summary_state (id, stale) values (1, 1);
-- value has no declared type: years stay integers, names stay text.
create table if not exists facet_counts (
    facet text not null, value, count integer not null, primary key (facet, value)
) without rowid;
create table if not exists facet_pair_counts (
    facet text not null, value, other_facet text not null, other_value, count integer not null,
    primary key (facet, value, other_facet, other_value)
) without rowid;
-- The facets' definitions, so that the served catalog (the Datasette plugin, or a published
-- copy without this package) filters and counts with exactly the SQL that was summarised.
create table if not exists facet_sources (
    name text primary key, position integer, label text, kind text, pairs text, paired integer
);
create table if not exists catalog_counts (
    stored integer, current integer, retracted integer, with_trials integer,
    first_year integer, last_year integer
);
create table if not exists current_year_design (
    pub_year integer, study_design text, records integer not null
);
-- Articles per run that first stored them and per flag that the questions about new records
-- divide them by (new_records_by_design and prisma_flow in db/queries.sql): a few hundred rows
-- whatever the catalog's size, where counting them reads every article.
create table if not exists article_run_counts (
    first_seen_run integer, study_design text, matches_query integer, is_deleted integer,
    psychiatric integer, is_retracted integer, is_retraction_notice integer, records integer not null,
    outside_topic integer
);
"""


def install(db: sqlite_utils.Database) -> None:
    """The summary tables and the triggers that mark them stale (a migration calls this)."""
    # One statement at a time: executescript() would commit the migration's transaction.
    for statement in SCHEMA.split(";"):
        if statement.strip():
            db.execute(statement)
    for table in WATCHED:
        for event in ("insert", "update", "delete"):
            db.execute(f"drop trigger if exists [{table}_summary_stale_{event}]")
            # `where stale = 0`: after the first write of a run the update matches nothing.
            db.execute(f"""
                create trigger [{table}_summary_stale_{event}] after {event} on [{table}]
                begin update summary_state set stale = 1 where stale = 0; end""")


def refresh(db: sqlite_utils.Database) -> float:
    """Recount everything in one transaction; returns the seconds it took."""
    start = time.perf_counter()
    conn = db.conn
    with db.atomic():
        conn.execute("delete from facet_sources")
        conn.executemany(
            "insert into facet_sources values (?, ?, ?, ?, ?, ?)",
            [
                (f.name, i, f.label, f.kind, " ".join(f.pairs.split()), int(f.name in PAIRED))
                for i, f in enumerate(FACETS.values())
            ],
        )
        conn.execute("delete from facet_counts")
        for f in FACETS.values():
            conn.execute(f"insert into facet_counts (facet, value, count) select ?, * from ({f.count_sql()})", [f.name])
        conn.execute("delete from facet_pair_counts")
        conn.executemany(
            "insert into facet_pair_counts values (?, ?, ?, ?, ?)", ((*key, n) for key, n in _pair_counts(conn).items())
        )
        # Current: what the topic query returns, NLM has not deleted, and concerns depression in
        # the psychiatric sense (migration 0010); the rest of what the query returns is set aside.
        sensed = "psychiatric" in db["articles"].columns_dict  # not yet while migration 0007 runs
        current = CURRENT_SQL if sensed else "matches_query = 1 and is_deleted = 0"
        conn.execute("delete from catalog_counts")
        conn.execute(f"""
            insert into catalog_counts (stored, current, retracted, with_trials, first_year, last_year
                                        {", set_aside" if sensed else ""})
            select count(*), coalesce(sum({current}), 0),
                   coalesce(sum(is_retracted = 1), 0), coalesce(sum(trial_ids is not null and trial_ids != ''), 0),
                   min(case when {current} then pub_year end),
                   max(case when {current} then pub_year end)
                   {
            ", coalesce(sum(matches_query = 1 and is_deleted = 0 and coalesce(psychiatric, 0) = 0), 0)"
            if sensed
            else ""
        }
            from articles""")
        conn.execute("delete from current_year_design")
        conn.execute(f"""
            insert into current_year_design
            select pub_year, study_design, count(*) from articles
            where {current} group by pub_year, study_design""")
        conn.execute("delete from article_run_counts")
        # outside_topic: stored by an import although the topic does not match it (never
        # identified by the query, so not in prisma_flow), apart from what a sweep unmatched.
        outside = OUTSIDE_TOPIC_SQL if "unmatched_run" in db["articles"].columns_dict else "0"
        conn.execute(f"""
            insert into article_run_counts (first_seen_run, study_design, matches_query, is_deleted, psychiatric,
                                            is_retracted, is_retraction_notice, outside_topic, records)
            select first_seen_run, study_design, matches_query, is_deleted, {"psychiatric" if sensed else "null"},
                   is_retracted, is_retraction_notice, {outside}, count(*)
            from articles group by 1, 2, 3, 4, 5, 6, 7, 8""")
        evidence_map.refresh(db)
        seconds = time.perf_counter() - start
        # Last: the triggers fired by the deletes and inserts above do not touch summary_state.
        conn.execute(
            "update summary_state set stale = 0, refreshed_at = strftime('%Y-%m-%dT%H:%M:%SZ', 'now'), "
            "seconds = ? where id = 1",
            [round(seconds, 2)],
        )
    return seconds


# The records the catalog's front page, default list, feeds and questions show.
CURRENT_SQL = "matches_query = 1 and is_deleted = 0 and psychiatric = 1"
# A record the topic never matched: an import without --match-topic stored it (a full sweep
# that no longer finds a record notes its run in unmatched_run).
OUTSIDE_TOPIC_SQL = "(matches_query = 0 and unmatched_run is null)"


def _pair_counts(conn) -> Counter:
    """Articles per pair of values of the PAIRED facets, from one grouped scan of `articles`
    (the column facets) and one join per multi-valued facet, not from a join of every value
    with every other (4 million values at 1,000,000 articles: 50 s; this: a few seconds)."""
    columns = [n for n in PAIRED if FACETS[n].kind == "column"]
    multis = [n for n in PAIRED if FACETS[n].kind == "multi"]
    pairs: Counter = Counter()
    cols = ", ".join(columns)
    for *values, n in conn.execute(f"select {cols}, count(*) from articles group by {cols}"):
        for a, va in zip(columns, values):
            if va is None:
                continue
            for b, vb in zip(columns, values):
                if vb is not None:
                    pairs[(a, va, b, vb)] += n
    for m in multis:
        conn.execute(
            f"create temp table [summary_{m}] as select distinct pmid, value "
            f"from ({FACETS[m].pairs}) where value is not null"
        )
        conn.execute(f"create index temp.[summary_{m}_pmid] on [summary_{m}] (pmid)")
    try:
        for m in multis:
            a_cols = ", ".join(f"a.{c}" for c in columns)
            for value, *values, n in conn.execute(
                f"select m.value, {a_cols}, count(*) from temp.[summary_{m}] m "
                f"join articles a on a.pmid = m.pmid group by m.value, {a_cols}"
            ):
                for b, vb in zip(columns, values):
                    if vb is not None:
                        pairs[(m, value, b, vb)] += n
                        pairs[(b, vb, m, value)] += n
            for m2 in multis:
                for value, value2, n in conn.execute(
                    f"select x.value, y.value, count(*) from temp.[summary_{m}] x "
                    f"join temp.[summary_{m2}] y on y.pmid = x.pmid group by x.value, y.value"
                ):
                    pairs[(m, value, m2, value2)] += n
    finally:
        for m in multis:
            conn.execute(f"drop table if exists temp.[summary_{m}]")
    return pairs
