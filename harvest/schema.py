"""The catalog's schema, as versioned migrations (sqlite-utils 4 `Migrations`).

Owns every CREATE and ALTER. `store.open_db` applies whatever is pending, so an
existing catalog upgrades in place. Migrations change the schema only: the rows derived
from the stored original XML (`article_xml`: columns, child rows, tags) and the summaries
are filled by `harvest.rebuild`, which every run, import and retag starts with when the
catalog needs it (never a re-harvest). A migration that changes what the summaries hold
marks them uncounted, so that the rebuild counts them.
Must never: import the writer (`store`) or the rebuild; be edited once released (add a new
migration instead; the data steps once in 0002, 0003, 0007, 0009 and 0010 moved to the rebuild).
"""

from __future__ import annotations

import sqlite_utils
from sqlite_utils import Migrations

migrations = Migrations("ketamine-catalog")


@migrations(name="0001_first_catalog")
def _first_catalog(db: sqlite_utils.Database) -> None:
    db.table("articles").create(
        {
            "pmid": int,
            "pmid_version": int,
            "title": str,
            "abstract": str,
            "journal": str,
            "pub_year": int,
            "doi": str,
            "language": str,
            "publication_types": str,
            "is_book": int,
            "is_deleted": int,
            "matches_query": int,
            "unmatched_run": int,
            "date_revised": str,
            "first_seen_run": int,
            "last_changed_run": int,
            "last_fetched_run": int,
            "record_sha1": str,
        },
        pk="pmid",
        defaults={"is_book": 0, "is_deleted": 0, "matches_query": 1},
        not_null={"pmid"},
    )
    db.table("articles").enable_fts(["title", "abstract"], create_triggers=True, tokenize="porter")
    # The record as NLM sent it, compressed: later migrations re-parse it to
    # fill new fields instead of re-harvesting. Every version is kept.
    db.table("article_xml").create(
        {"pmid": int, "pmid_version": int, "sha1": str, "xml_zlib": bytes, "run_id": int},
        pk=("pmid", "pmid_version"),
        foreign_keys=[("pmid", "articles", "pmid")],
    )
    db.table("harvest_runs").create(
        {
            "id": int,
            "started_at": str,
            "finished_at": str,
            "mode": str,
            "query_version": str,
            "query_text": str,
            "window_from": str,
            "watermark": str,
            "records_promised": int,
            "records_stored": int,
            "new": int,
            "updated": int,
            "unchanged": int,
            "unmatched": int,
            "deleted": int,
            "requests": int,
            "retries": int,
            "status": str,
            "error": str,
            "count_discrepancy": str,
            "pid": int,
            "host": str,
        },
        pk="id",
    )
    db.table("articles").create_index(["pub_year"])
    db.table("articles").create_index(["journal"])
    db.table("articles").create_index(["last_fetched_run"])
    db.table("harvest_runs").create_index(["status", "id"])


# Columns migration 2 adds to `articles`, filled from the stored XML.
ARTICLE_COLUMNS_V2 = {
    "vernacular_title": str,
    "journal_iso": str,
    "issn_print": str,
    "issn_electronic": str,
    "issn_linking": str,
    "nlm_unique_id": str,
    "journal_country": str,
    "volume": str,
    "issue": str,
    "pages": str,
    "pub_date": str,
    "pub_date_raw": str,
    "article_date": str,
    "entrez_date": str,
    "date_created": str,
    "date_completed": str,
    "pmcid": str,
    "pii": str,
    "citation_status": str,
    "publication_status": str,
    "indexing_method": str,
    "references_count": int,
    "first_author": str,
    "author_count": int,
    "mesh_terms": str,
    "keywords": str,
    "trial_ids": str,
    "coi_statement": str,
    "is_retracted": int,
    "is_retraction_notice": int,
    "has_correction": int,
    "deleted_date": str,
    "deleted_run": int,
}

FTS_COLUMNS = ["title", "abstract", "keywords", "mesh_terms"]


def _child(db, name, columns, pk, foreign_keys=(), index=()):
    db.table(name).create(
        columns,
        pk=pk,
        foreign_keys=[("pmid", "articles", "pmid"), *foreign_keys],
    )
    for cols in index:
        db.table(name).create_index(list(cols))


@migrations(name="0002_full_record_model")
def _full_record_model(db: sqlite_utils.Database) -> None:
    articles = db.table("articles")
    for name, kind in ARTICLE_COLUMNS_V2.items():
        articles.add_column(name, kind)
    db.execute("update articles set is_retracted = 0, is_retraction_notice = 0, has_correction = 0")
    # The search index now covers keywords and MeSH names too.
    articles.disable_fts()
    articles.enable_fts(FTS_COLUMNS, create_triggers=True, tokenize="porter")

    db.table("authors").create(
        {
            "id": int,
            "name_key": str,
            "last_name": str,
            "fore_name": str,
            "initials": str,
            "suffix": str,
            "collective_name": str,
            "display_name": str,
        },
        pk="id",
    )
    db.table("authors").create_index(["name_key"], unique=True)
    _child(
        db,
        "article_authors",
        {"pmid": int, "role": str, "position": int, "author_id": int, "orcid": str, "equal_contrib": int, "valid": int},
        ("pmid", "role", "position"),
        [("author_id", "authors", "id")],
        index=[("author_id",), ("orcid",)],
    )
    _child(
        db,
        "article_author_affiliations",
        {"pmid": int, "role": str, "position": int, "seq": int, "affiliation": str},
        ("pmid", "role", "position", "seq"),
    )
    _child(
        db,
        "abstract_sections",
        {"pmid": int, "position": int, "label": str, "nlm_category": str, "text": str},
        ("pmid", "position"),
    )
    db.table("mesh_descriptors").create({"descriptor_ui": str, "name": str}, pk="descriptor_ui")
    _child(
        db,
        "article_mesh",
        {"pmid": int, "descriptor_ui": str, "major": int},
        ("pmid", "descriptor_ui"),
        [("descriptor_ui", "mesh_descriptors", "descriptor_ui")],
        index=[("descriptor_ui",)],
    )
    _child(
        db,
        "article_mesh_qualifiers",
        {"pmid": int, "descriptor_ui": str, "qualifier_ui": str, "qualifier_name": str, "major": int},
        ("pmid", "descriptor_ui", "qualifier_ui"),
    )
    db.table("publication_types").create({"ui": str, "name": str}, pk="ui")
    _child(
        db,
        "article_publication_types",
        {"pmid": int, "publication_type_ui": str},
        ("pmid", "publication_type_ui"),
        [("publication_type_ui", "publication_types", "ui")],
        index=[("publication_type_ui",)],
    )
    _child(db, "article_languages", {"pmid": int, "language": str}, ("pmid", "language"), index=[("language",)])
    _child(
        db,
        "keywords",
        {"pmid": int, "position": int, "keyword": str, "owner": str, "major": int},
        ("pmid", "position"),
        index=[("keyword",)],
    )
    _child(
        db,
        "article_ids",
        {"pmid": int, "id_type": str, "value": str, "source": str},
        ("pmid", "id_type", "value"),
        index=[("id_type", "value")],
    )
    _child(
        db,
        "grants",
        {"pmid": int, "position": int, "grant_id": str, "acronym": str, "agency": str, "country": str},
        ("pmid", "position"),
        index=[("agency",)],
    )
    _child(
        db,
        "trial_registrations",
        {"pmid": int, "registry": str, "trial_id": str, "source": str},
        ("pmid", "trial_id"),
        index=[("trial_id",), ("registry",)],
    )
    _child(db, "databanks", {"pmid": int, "databank": str, "accession": str}, ("pmid", "databank", "accession"))
    _child(
        db,
        "comments_corrections",
        {"pmid": int, "position": int, "ref_type": str, "ref_pmid": int, "ref_source": str},
        ("pmid", "position"),
        index=[("ref_type",), ("ref_pmid",)],
    )
    _child(
        db,
        "chemicals",
        {"pmid": int, "position": int, "registry_number": str, "ui": str, "name": str},
        ("pmid", "position"),
        index=[("name",)],
    )
    _child(db, "supplementary_concepts", {"pmid": int, "ui": str, "name": str, "type": str}, ("pmid", "ui"))
    _child(db, "article_history", {"pmid": int, "pub_status": str, "date": str}, ("pmid", "pub_status"))
    db.table("article_events").create(
        {"id": int, "pmid": int, "run_id": int, "event": str, "detail": str, "recorded_at": str},
        pk="id",
        foreign_keys=[("pmid", "articles", "pmid")],
    )
    db.table("article_events").create_index(["pmid"])
    db.table("article_events").create_index(["event", "run_id"])
    for column in ("citation_status", "is_retracted", "pub_date", "language", "matches_query", "is_deleted"):
        articles.create_index([column])
    # The new columns and tables are filled from the stored XML by the rebuild (rows model).


@migrations(name="0003_evidence_tags")
def _evidence_tags(db: sqlite_utils.Database) -> None:
    articles = db.table("articles")
    articles.add_column("study_design", str)
    articles.add_column("awaiting_indexing", int)
    articles.add_column("tags_version", str)
    articles.create_index(["study_design"])
    articles.create_index(["awaiting_indexing"])
    _child(
        db,
        "article_tags",
        {"pmid": int, "facet": str, "value": str, "method": str, "evidence": str, "confidence": float},
        ("pmid", "facet", "value"),
        index=[("facet", "value")],
    )
    # What is already stored is tagged by the rebuild (its tags_version is null).


# Views for the joins SQL users would otherwise write by hand (the SQL cookbook,
# db/queries.sql, and the notebooks read through them). Plain views: they cost
# nothing to store and always show the current rows. A later migration that
# rebuilds `articles` (sqlite-utils `transform`) must drop them first and
# create them again afterwards, since SQLite checks views when a table is renamed.
COOKBOOK_VIEWS = {
    # One row per article: first author (and ORCID), journal, primary design, the
    # evidence tags most filters need, and whether the record is current.
    "article_overview": """
        select a.pmid, a.title, a.first_author,
               (select aa.orcid from article_authors aa
                 where aa.pmid = a.pmid and aa.role = 'author' order by aa.position limit 1)
                 as first_author_orcid,
               a.author_count, a.journal, a.journal_iso, a.pub_year, a.pub_date,
               coalesce(a.study_design, 'other') as study_design,
               (select group_concat(value, '; ') from (select t.value from article_tags t
                 where t.pmid = a.pmid and t.facet = 'molecule' order by t.value)) as molecules,
               (select group_concat(value, '; ') from (select t.value from article_tags t
                 where t.pmid = a.pmid and t.facet = 'route' order by t.value)) as routes,
               (select group_concat(value, '; ') from (select t.value from article_tags t
                 where t.pmid = a.pmid and t.facet = 'population' order by t.value)) as populations,
               a.publication_types, a.trial_ids, a.doi, a.pmcid, a.language, a.citation_status,
               a.awaiting_indexing, a.is_retracted, a.is_retraction_notice, a.has_correction,
               a.matches_query, a.is_deleted,
               (coalesce(a.matches_query, 1) = 1 and coalesce(a.is_deleted, 0) = 0) as is_current,
               a.entrez_date, a.first_seen_run, a.last_changed_run,
               'https://pubmed.ncbi.nlm.nih.gov/' || a.pmid || '/' as pubmed_url
        from articles a
    """,
    # One row per (article, MeSH descriptor), with the descriptor's name.
    "article_mesh_named": """
        select am.pmid, am.descriptor_ui, d.name as descriptor_name, am.major
        from article_mesh am join mesh_descriptors d on d.descriptor_ui = am.descriptor_ui
    """,
    # One row per indexed article: all its MeSH names, and the major topics alone.
    "article_mesh_names": """
        select a.pmid, a.title, a.pub_year, coalesce(a.study_design, 'other') as study_design,
               count(*) as mesh_count,
               group_concat(m.name, '; ') as mesh_names,
               group_concat(case when m.major then m.name end, '; ') as major_mesh_names
        from articles a
        join (select am.pmid, d.name, am.major from article_mesh am
              join mesh_descriptors d on d.descriptor_ui = am.descriptor_ui
              order by am.pmid, d.name) m on m.pmid = a.pmid
        group by a.pmid
    """,
    # One row per author position, with the person's name (or the group's) and ORCID.
    "article_authors_named": """
        select aa.pmid, aa.role, aa.position, aa.author_id,
               coalesce(au.collective_name, au.display_name) as author_name,
               au.last_name, au.fore_name, au.initials, au.collective_name,
               aa.orcid, aa.equal_contrib, coalesce(aa.valid, 1) as valid
        from article_authors aa join authors au on au.id = aa.author_id
    """,
    # One row: the last successful harvest and the last failed or aborted run (what the
    # front page and `harvest status` report). Imports are not harvests: they are left out,
    # as `harvest status --max-age` leaves them out.
    "harvest_health": """
        select s.id as last_success_run, s.mode as last_success_mode,
               s.started_at as last_success_started_at, s.finished_at as last_success_finished_at,
               s.new as last_success_new, s.updated as last_success_updated,
               s.unmatched as last_success_unmatched,
               f.id as last_failure_run, f.status as last_failure_status,
               f.started_at as last_failure_started_at, f.finished_at as last_failure_finished_at,
               f.error as last_failure_error,
               (f.id is not null and (s.id is null or f.id > s.id)) as failing_since_last_success,
               r.id as running_run, r.started_at as running_since, r.host as running_host, r.pid as running_pid
        from (select 1) as one
        left join (select * from harvest_runs where status = 'success' and mode != 'import'
                   order by id desc limit 1) s
        left join (select * from harvest_runs where status in ('failed', 'aborted') and mode != 'import'
                   order by id desc limit 1) f
        left join (select * from harvest_runs where status = 'running' order by id desc limit 1) r
    """,
}


@migrations(name="0004_cookbook_views")
def _cookbook_views(db: sqlite_utils.Database) -> None:
    for name, sql in COOKBOOK_VIEWS.items():
        db.execute(f"drop view if exists [{name}]")
        db.execute(f"create view [{name}] as {sql.strip()}")


# The search index follows the text it indexes, not every write to `articles`. The
# trigger sqlite-utils made for migration 2 fires on any UPDATE, so setting a flag
# (last_fetched_run, matches_query, study_design, is_deleted) deleted and re-inserted the
# row's whole text in articles_fts: a new record was tokenized five times on import, and
# a re-fetch of an unchanged record rewrote its index entries. Fired only when title,
# abstract, keywords or MeSH names really change, the index stays in step with the
# table in the same transaction (a killed import leaves both at the last whole batch).
FTS_UPDATE_TRIGGER = """
create trigger [articles_au] after update of [title], [abstract], [keywords], [mesh_terms] on [articles]
when old.[title] is not new.[title] or old.[abstract] is not new.[abstract]
  or old.[keywords] is not new.[keywords] or old.[mesh_terms] is not new.[mesh_terms]
begin
  insert into [articles_fts] ([articles_fts], rowid, [title], [abstract], [keywords], [mesh_terms])
    values ('delete', old.rowid, old.[title], old.[abstract], old.[keywords], old.[mesh_terms]);
  insert into [articles_fts] (rowid, [title], [abstract], [keywords], [mesh_terms])
    values (new.rowid, new.[title], new.[abstract], new.[keywords], new.[mesh_terms]);
end
"""


@migrations(name="0005_fts_follows_text_only")
def _fts_follows_text_only(db: sqlite_utils.Database) -> None:
    db.execute("drop trigger if exists [articles_au]")
    db.execute(FTS_UPDATE_TRIGGER.strip())


@migrations(name="0006_indexes_for_counts_and_new_records")
def _indexes_for_counts_and_new_records(db: sqlite_utils.Database) -> None:
    # The front page's counts and per-year chart, and "records per year by design", read only
    # these columns of current records: with them in one index SQLite reads the index, not
    # the 1.5 KB rows (1,000,000 articles: 2.2 s -> 0.2 s for the front page's queries).
    db.table("articles").create_index(
        ["matches_query", "is_deleted", "pub_year", "study_design", "is_retracted", "trial_ids"],
        index_name="idx_articles_current_year_design",
        if_not_exists=True,
    )
    # What a run added (front page, new_since, the Atom feed of new records).
    db.table("articles").create_index(["first_seen_run"], if_not_exists=True)


@migrations(name="0007_facet_summaries_and_sorted_filters")
def _facet_summaries_and_sorted_filters(db: sqlite_utils.Database) -> None:
    from . import summaries

    # A page filtered on one of these columns lists its rows newest first: with the sort
    # column in the index SQLite walks it and stops after a page, where it sorted every
    # matching row before (232,000 rows of one design at 1,000,000 articles: 1.3 s -> ms).
    # The journal index also carries what "journals with the most records" counts, so that
    # query reads the index alone (1,000,000 articles: 8-17 s -> 0.45 s).
    extra = {"journal": ["matches_query", "is_deleted", "study_design", "pub_year"]}
    for column in ("study_design", "pub_year", "journal", "citation_status"):
        db.execute(f"drop index if exists [idx_articles_{column}]")
        db.table("articles").create_index(
            [column, "pub_date", *extra.get(column, [])],
            index_name=f"idx_articles_{column}_pub_date",
            if_not_exists=True,
        )
    # What runs added, newest first (new_since, the feed of new records) without a sort.
    db.execute("drop index if exists [idx_articles_first_seen_run]")
    db.table("articles").create_index(
        ["first_seen_run", "entrez_date", "pmid"],
        index_name="idx_articles_first_seen_run_entrez_date",
        if_not_exists=True,
    )
    # Retraction notices are a few per thousand records (retracted_or_corrected, prisma_flow).
    db.table("articles").create_index(["is_retraction_notice"], if_not_exists=True)
    summaries.install(db)  # uncounted until the rebuild (or the next harvest) counts them


@migrations(name="0009_evidence_map")
def _evidence_map(db: sqlite_utils.Database) -> None:
    # The evidence map's counts (harvest/evidence_map.py) are counted with the other summaries
    # at the end of every harvest, import and retag; a catalog from before them gets them from
    # the rebuild that the next harvest, import or retag starts with.
    # Its rows are tag values and their PMIDs: with the PMID in the (facet, value) index, SQLite
    # reads the index alone, not the tag rows with their evidence text (126,000 tagged records:
    # 0.8 s -> 0.2 s per axis). It replaces the (facet, value) index, which it covers.
    from . import evidence_map

    db.table("article_tags").create_index(
        ["facet", "value", "pmid"], index_name="idx_article_tags_facet_value_pmid", if_not_exists=True
    )
    db.execute("drop index if exists [idx_article_tags_facet_value]")
    evidence_map.install(db)
    _summaries_uncounted(db)


# article_overview (migration 0004) with the record's sense of depression beside is_current.
# Its title falls back to the original-language title where PubMed gives no English one.
ARTICLE_OVERVIEW_0010 = (
    COOKBOOK_VIEWS["article_overview"]
    .replace("a.matches_query, a.is_deleted,", "a.matches_query, a.is_deleted, a.psychiatric,")
    .replace("select a.pmid, a.title,", "select a.pmid, coalesce(nullif(a.title, ''), a.vernacular_title) as title,")
)
assert "a.psychiatric" in ARTICLE_OVERVIEW_0010 and "a.vernacular_title" in ARTICLE_OVERVIEW_0010


@migrations(name="0010_depression_in_the_psychiatric_sense")
def _depression_in_the_psychiatric_sense(db: sqlite_utils.Database) -> None:
    # The topic query is broad on purpose ("depression" also finds respiratory, myocardial,
    # cortical spreading, ST-segment and synaptic long-term depression). The tagger decides
    # per record whether it concerns depression or suicidality in the psychiatric sense (tag
    # facet `depression`, with its evidence); this column carries the verdict, so the front
    # page, the default lists, the feeds and the questions add one condition: psychiatric = 1.
    articles = db.table("articles")
    articles.add_column("psychiatric", int)
    articles.create_index(
        ["matches_query", "is_deleted", "psychiatric", "pub_year", "study_design"],
        index_name="idx_articles_current_psychiatric",
        if_not_exists=True,
    )
    if "set_aside" not in db.table("catalog_counts").columns_dict:
        db.execute("alter table catalog_counts add column set_aside integer")
    db.execute("drop view if exists [article_overview]")
    db.execute(f"create view [article_overview] as {ARTICLE_OVERVIEW_0010.strip()}")
    # The column is filled by the rebuild: rules-v5 brought the sense of depression, so records
    # tagged by older rules are re-tagged; the counts gain set_aside.
    _summaries_uncounted(db)


@migrations(name="0011_clinicaltrials_gov")
def _clinicaltrials_gov(db: sqlite_utils.Database) -> None:
    """ClinicalTrials.gov beside PubMed: its studies, their parts, what changed, and runs per source."""
    # Every run says which source it harvested; the runs before this one were PubMed's.
    db.table("harvest_runs").add_column("source", str, not_null_default="pubmed")
    db.table("harvest_runs").create_index(["source", "status", "id"])
    db.table("trials").create(
        {
            "nct_id": str,
            "title": str,
            "official_title": str,
            "acronym": str,
            "overall_status": str,
            "why_stopped": str,
            "phases": str,
            "study_type": str,
            "allocation": str,
            "masking": str,
            "enrollment_count": int,
            "enrollment_type": str,  # ACTUAL or ESTIMATED
            "start_date": str,
            "start_date_type": str,  # ACTUAL or ESTIMATED (anticipated)
            "primary_completion_date": str,
            "primary_completion_date_type": str,
            "completion_date": str,
            "completion_date_type": str,
            "first_posted": str,
            "results_first_posted": str,
            "last_update_posted": str,
            "lead_sponsor": str,
            "lead_sponsor_class": str,
            "has_results": int,
            # 1: the topic query found it; 0: stored only because a catalog record cites it.
            "in_topic": int,
            "raw_sha1": str,
            # The study as the registry sent it (JSON, sorted keys), zlib-compressed: later
            # migrations re-parse it to fill new fields instead of re-harvesting.
            "raw_json_zlib": bytes,
            "first_seen_run": int,
            "last_seen_run": int,
            "last_changed_run": int,
        },
        pk="nct_id",
        not_null={"nct_id"},
        defaults={"has_results": 0, "in_topic": 0},
    )
    for column in (
        "overall_status",
        "phases",
        "lead_sponsor_class",
        "has_results",
        "in_topic",
        "last_update_posted",
        "first_seen_run",
    ):
        db.table("trials").create_index([column])

    def child(name, columns, pk):
        db.table(name).create(columns, pk=pk, foreign_keys=[("nct_id", "trials", "nct_id")])

    child(
        "trial_interventions",
        {"nct_id": str, "position": int, "type": str, "name": str, "molecules": str, "routes": str},
        ("nct_id", "position"),
    )
    child("trial_conditions", {"nct_id": str, "position": int, "condition": str}, ("nct_id", "position"))
    child(
        "trial_outcomes",
        {"nct_id": str, "position": int, "kind": str, "measure": str, "time_frame": str},
        ("nct_id", "position"),
    )
    db.table("trial_conditions").create_index(["condition"])
    db.table("trial_interventions").create_index(["molecules"])
    db.table("trial_events").create(
        {"id": int, "nct_id": str, "run_id": int, "event": str, "detail": str, "recorded_at": str},
        pk="id",
        foreign_keys=[("nct_id", "trials", "nct_id")],
    )
    db.table("trial_events").create_index(["nct_id"])
    db.table("trial_events").create_index(["event", "run_id"])
    # NCT ids a catalog record cites that the registry does not know (a typo in an abstract,
    # a withdrawn registration): kept so that every cited id is accounted for, and rechecked.
    db.table("trials_not_in_registry").create(
        {"nct_id": str, "first_checked_run": int, "last_checked_run": int}, pk="nct_id"
    )
    # The links between papers and trials stay in one table, in both directions: a row per
    # (paper, trial, how it was linked). The paper's own citations (`databank`, `abstract`)
    # and the registry's referencesModule (`registry_reference:RESULT|DERIVED|BACKGROUND`).
    # The registry may point at a paper the topic query did not find (a gap to list): such a
    # PMID is not in `articles`, so the key on pmid is no longer a foreign key.
    db.table("trial_registrations").transform(pk=("pmid", "trial_id", "source"), drop_foreign_keys=["pmid"])
    db.execute("update trial_registrations set source = 'abstract' where source is null")
    db.table("trial_registrations").create_index(["source"], if_not_exists=True)
    from . import summaries

    summaries.install(db)  # the transform dropped the triggers that mark the counts stale
    # The front page's harvest health is PubMed's: a trials run that succeeds must not hide a
    # PubMed run that failed (each source's own health is in harvest_runs.source).
    health = COOKBOOK_VIEWS["harvest_health"]
    for clause in (
        "where status = 'success' and mode != 'import'",
        "where status in ('failed', 'aborted') and mode != 'import'",
    ):
        assert clause in health
        health = health.replace(clause, clause + " and source = 'pubmed'")
    db.execute("drop view if exists [harvest_health]")
    db.execute(f"create view [harvest_health] as {health.strip()}")


@migrations(name="0012_similar_articles")
def _similar_articles(db: sqlite_utils.Database) -> None:
    # Each article's most similar stored articles (harvest/similar.py), best first, with the
    # shared terms that made them similar; `similar_sources` remembers what each record was
    # compared on, so a refresh recomputes only records whose text, MeSH or tags changed (and
    # their neighbours). Schema only: the first harvest, import or retag fills both.
    db.table("similar_articles").create(
        {"pmid": int, "rank": int, "similar_pmid": int, "score": float, "shared_terms": str},
        pk=("pmid", "rank"),
        foreign_keys=[("pmid", "articles", "pmid"), ("similar_pmid", "articles", "pmid")],
    )
    db.table("similar_articles").create_index(["similar_pmid"])
    db.table("similar_sources").create(
        {"pmid": int, "terms_fingerprint": str},
        pk="pmid",
        foreign_keys=[("pmid", "articles", "pmid")],
    )


# The papers linked to each registered trial, one row per way a paper is linked (both
# directions of trial_registrations), with what the catalog knows of the paper. The trial page,
# the trials table's facets and the trials questions read it; so can anyone's own SQL.
# `results_paper` is 1 for a link that reports the trial's results: not a registry BACKGROUND
# reference (a paper the trial cites), and not — by the catalog's design tag — a protocol,
# review, guideline, commentary or preclinical paper. A PMID the registry cites that is not in
# `articles` (the topic query did not find it: a gap) counts when the registry types it RESULT
# or DERIVED, as the registry is all the catalog knows of it.
NOT_A_TRIAL_REPORT = (
    "trial_protocol",
    "systematic_review",
    "meta_analysis",
    "narrative_review",
    "guideline_consensus",
    "commentary_letter",
    "preclinical_animal",
    "in_vitro",
)
TRIAL_PAPERS_VIEW = f"""
    select tr.trial_id as nct_id, tr.pmid, tr.source,
           case when tr.source like 'registry_reference:%' then 'registry' else 'paper' end as cited_by,
           case when tr.source like 'registry_reference:%' then substr(tr.source, 20) end as reference_type,
           a.pmid is not null as in_catalog,
           coalesce(nullif(a.title, ''), a.vernacular_title) as title, a.first_author, a.journal,
           a.pub_year, a.pub_date, a.study_design,
           (coalesce(tr.source, '') != 'registry_reference:BACKGROUND'
            and coalesce(a.study_design, '') not in ({", ".join(f"'{d}'" for d in NOT_A_TRIAL_REPORT)})) as results_paper
    from trial_registrations tr
    left join articles a on a.pmid = tr.pmid
    where tr.trial_id glob 'NCT[0-9]*'
"""


@migrations(name="0013_trial_papers")
def _trial_papers(db: sqlite_utils.Database) -> None:
    # A trial's papers are looked up by NCT id (the key starts with the PMID).
    db.table("trial_registrations").create_index(["trial_id", "source"], if_not_exists=True)
    db.table("trial_events").create_index(["recorded_at"], if_not_exists=True)
    db.execute("drop view if exists [trial_papers]")
    db.execute(f"create view [trial_papers] as {TRIAL_PAPERS_VIEW.strip()}")


# Every record of the catalog, peer-reviewed (PubMed) or preprint (Europe PMC), one row each:
# `kind` is the facet "peer-reviewed / preprint". `counts_as_work` is 0 for a preprint whose
# published version is a catalog record, so that sum(counts_as_work) counts works (a preprint
# and its paper once) where count(*) counts records.
CATALOG_RECORDS_VIEW = """
    select cast(a.pmid as text) as record_id, 'peer-reviewed' as kind,
           coalesce(nullif(a.title, ''), a.vernacular_title) as title, a.first_author, a.pub_year,
           a.journal as journal_or_server, a.doi, null as published_pmid, 1 as counts_as_work
    from articles a
    where a.matches_query = 1 and a.is_deleted = 0
    union all
    select p.ppr_id, 'preprint', p.title, p.first_author, p.pub_year, p.server, p.doi, p.published_pmid,
           (p.published_pmid is null
            or not exists (select 1 from articles a where a.pmid = p.published_pmid
                           and a.matches_query = 1 and a.is_deleted = 0)) as counts_as_work
    from preprints p
    where p.in_topic = 1
"""


PREPRINTS_FTS_UPDATE_TRIGGER = """
create trigger [preprints_au] after update of [title], [abstract], [authors], [keywords] on [preprints]
when old.[title] is not new.[title] or old.[abstract] is not new.[abstract]
  or old.[authors] is not new.[authors] or old.[keywords] is not new.[keywords]
begin
  insert into [preprints_fts] ([preprints_fts], rowid, [title], [abstract], [authors], [keywords])
    values ('delete', old.rowid, old.[title], old.[abstract], old.[authors], old.[keywords]);
  insert into [preprints_fts] (rowid, [title], [abstract], [authors], [keywords])
    values (new.rowid, new.[title], new.[abstract], new.[authors], new.[keywords]);
end
"""


@migrations(name="0014_preprints")
def _preprints(db: sqlite_utils.Database) -> None:
    """Europe PMC's preprints beside the PubMed articles: records of their own kind (PPR ids, never
    in `articles`), their tags, how each is linked to its published version, and one view of both."""
    db.table("preprints").create(
        {
            "ppr_id": str,
            "title": str,
            "abstract": str,
            "authors": str,  # "Surname Initials; ..." as Europe PMC writes them
            "first_author": str,
            "server": str,  # medRxiv, bioRxiv, Research Square, Preprints.org, SSRN, ...
            "version": int,
            "doi": str,
            "pub_year": int,
            "first_publication_date": str,
            "first_index_date": str,  # when Europe PMC first indexed it: incremental runs follow it
            "keywords": str,
            # 1: the topic query lists it; 0: a full sweep no longer does (kept, never deleted).
            "in_topic": int,
            # Its published version in the catalog, the strongest of its preprint_links.
            "published_pmid": int,
            "link_method": str,
            "link_score": float,
            "has_published_version": int,
            "raw_sha1": str,
            # The record as Europe PMC sent it (JSON, sorted keys), zlib-compressed: later
            # migrations re-parse it instead of re-harvesting.
            "raw_json_zlib": bytes,
            "first_seen_run": int,
            "last_seen_run": int,
            "last_changed_run": int,
        },
        pk="ppr_id",
        not_null={"ppr_id"},
        defaults={"in_topic": 1, "has_published_version": 0},
    )
    for column in ("server", "pub_year", "has_published_version", "published_pmid", "in_topic", "first_index_date"):
        db.table("preprints").create_index([column])
    db.table("preprints").enable_fts(
        ["title", "abstract", "authors", "keywords"], create_triggers=True, tokenize="porter"
    )
    # The index follows the text only (as articles_fts does since 0005): setting a run number or a
    # link must not rewrite a preprint's index entries.
    db.execute("drop trigger if exists [preprints_au]")
    db.execute(PREPRINTS_FTS_UPDATE_TRIGGER.strip())
    db.table("preprint_tags").create(
        {"ppr_id": str, "facet": str, "value": str, "method": str, "evidence": str, "confidence": float},
        pk=("ppr_id", "facet", "value"),
        foreign_keys=[("ppr_id", "preprints", "ppr_id")],
    )
    db.table("preprint_tags").create_index(["facet", "value"])
    # A preprint and a PubMed record that is its published version, one row per way it was found:
    # `europepmc` (the published record's commentCorrectionList says "Preprint in"; the preprint
    # may be one the topic query did not list), `doi` (the same DOI) or `title_author_year` (score
    # = title similarity, over the threshold of harvest/preprint_links.py). No foreign keys: either
    # side may be missing from the catalog.
    db.table("preprint_links").create(
        {"ppr_id": str, "pmid": int, "method": str, "score": float, "detail": str, "run_id": int},
        pk=("ppr_id", "pmid", "method"),
    )
    db.table("preprint_links").create_index(["pmid"])
    db.execute("drop view if exists [catalog_records]")
    db.execute(f"create view [catalog_records] as {CATALOG_RECORDS_VIEW.strip()}")


@migrations(name="0015_citations")
def _citations(db: sqlite_utils.Database) -> None:
    # Citation counts from OpenAlex, one row per catalog record read (harvest/openalex.py): the
    # work's id, its count, OpenAlex's last change to it, when the catalog read it and by which
    # run. A record OpenAlex holds no work for keeps a row too (`found` 0, no count), so that the
    # schedule asks for it again only when it is due, not on every run.
    db.table("citations").create(
        {
            "pmid": int,
            "openalex_id": str,
            "cited_by_count": int,
            "found": int,
            "openalex_updated": str,
            "read_at": str,
            "read_run": int,
        },
        pk="pmid",
        foreign_keys=[("pmid", "articles", "pmid")],
    )
    db.table("citations").create_index(["read_at"])
    # Citations per calendar year (OpenAlex's counts_by_year: the last ten years or so), for the
    # article page's chart and the "rising" question (a year's index reads the two last full years).
    db.table("citations_by_year").create(
        {"pmid": int, "year": int, "count": int},
        pk=("pmid", "year"),
        foreign_keys=[("pmid", "articles", "pmid")],
    )
    db.table("citations_by_year").create_index(["year", "pmid"])
    # The count again on the article itself, so that every list of articles (the table with its
    # facets and filters, `_sort_desc=cited_by_count`) sorts by it through its own index. NULL:
    # not read yet, or OpenAlex holds no work for the record.
    db.table("articles").add_column("cited_by_count", int)
    db.table("articles").create_index(["cited_by_count"])


def _summaries_uncounted(db: sqlite_utils.Database) -> None:
    """The summary tables no longer match the schema: mark them uncounted (the plugin counts
    live meanwhile), so that the rebuild counts them. A flag, not a count."""
    if db.table("summary_state").exists():
        db.execute("update summary_state set stale = 1, refreshed_at = null")


@migrations(name="0016_derived_versions")
def _derived_versions(db: sqlite_utils.Database) -> None:
    # What built the catalog's derived rows: part ('rows': harvest.rows.ROW_MODEL_VERSION,
    # 'rules': harvest.tags.RULES_VERSION) -> version. `harvest.rebuild` compares it with the
    # code's and rebuilds from the stored XML when they differ; empty until the first rebuild
    # or save decides (a catalog from before it: see rebuild.stale_parts).
    db.table("derived_versions").create({"part": str, "version": str, "built_at": str}, pk="part")


@migrations(name="0017_counts_for_a_million_articles")
def _counts_for_a_million_articles(db: sqlite_utils.Database) -> None:
    from . import summaries

    # "Journals that publish the most records" counts current records per journal: with the
    # current-record flags first and the columns it counts after them, SQLite reads this index
    # alone, in journal order (1,000,000 articles: 1.4 s of row reads for psychiatric -> ms).
    db.table("articles").create_index(
        ["matches_query", "is_deleted", "psychiatric", "journal", "study_design", "pub_year"],
        index_name="idx_articles_current_journal",
        if_not_exists=True,
    )
    # A page of articles with a design and a year chosen (no summary answers two values) counts
    # its rows and its column facets from this index alone, not by reading each of its rows
    # (129,000 of them in the bench's million-article catalog).
    db.table("articles").create_index(
        ["study_design", "pub_year", "citation_status", "journal"],
        index_name="idx_articles_study_design_pub_year",
        if_not_exists=True,
    )
    # What runs added, newest first (new_since, the feed of new records), with the flags those
    # lists filter on: SQLite tests them in the index and reads only the rows it lists, where it
    # read every row walked (a run that added a million records, 2% of them on depression:
    # 50,000 rows read for a page of 1,000).
    db.execute("drop index if exists [idx_articles_first_seen_run_entrez_date]")
    db.table("articles").create_index(
        ["first_seen_run", "entrez_date", "pmid", "psychiatric", "is_deleted"],
        index_name="idx_articles_first_seen_run_entrez_date_flags",
        if_not_exists=True,
    )
    # "Randomised trials not yet indexed" looks each trial up here: awaiting indexing and on
    # depression, without reading the record (replaces the index on awaiting_indexing alone).
    db.table("articles").create_index(
        ["awaiting_indexing", "psychiatric"],
        index_name="idx_articles_awaiting_indexing_psychiatric",
        if_not_exists=True,
    )
    db.execute("drop index if exists [idx_articles_awaiting_indexing]")
    # article_run_counts (what each run added, by design and current-record flags): counted
    # with the other summaries from the next harvest, import or retag on.
    summaries.install(db)
    _summaries_uncounted(db)


@migrations(name="0018_preprint_link_candidates")
def _preprint_link_candidates(db: sqlite_utils.Database) -> None:
    # Linking a preprint by title looks up the records whose first author has its surname
    # ("Smith %", any case, as LIKE compares) and whose year fits: with this index SQLite reads
    # those records only, where it read every current record for each preprint (1.7 s each at
    # a million articles; a topic's 2,000 preprints: most of an hour at every run).
    db.execute(
        "create index if not exists [idx_articles_first_author_nocase_pub_year] "
        "on [articles] ([first_author] collate nocase, [pub_year])"
    )


@migrations(name="0019_preprint_citations")
def _preprint_citations(db: sqlite_utils.Database) -> None:
    # Citation counts of preprints, from OpenAlex by DOI (a preprint has no PMID), as `citations`
    # keeps the records': one row per preprint read (`found` 0: OpenAlex holds no work with its
    # DOI), the counts per year, and the count again on the preprint for sorting its lists.
    db.table("preprint_citations").create(
        {
            "ppr_id": str,
            "doi": str,
            "openalex_id": str,
            "cited_by_count": int,
            "found": int,
            "openalex_updated": str,
            "read_at": str,
            "read_run": int,
        },
        pk="ppr_id",
        foreign_keys=[("ppr_id", "preprints", "ppr_id")],
    )
    db.table("preprint_citations").create_index(["read_at"])
    db.table("preprint_citations_by_year").create(
        {"ppr_id": str, "year": int, "count": int},
        pk=("ppr_id", "year"),
        foreign_keys=[("ppr_id", "preprints", "ppr_id")],
    )
    db.table("preprints").add_column("cited_by_count", int)
    db.table("preprints").create_index(["cited_by_count"])


@migrations(name="0020_records_outside_the_topic")
def _records_outside_the_topic(db: sqlite_utils.Database) -> None:
    # prisma_flow counts the records the topic query identified; an import without
    # --match-topic also stores records the topic never matched (matches_query = 0 without an
    # unmatched_run), which the per-run counts now keep apart. (Catalogs whose summaries were
    # first made after this change already have the column.)
    if "outside_topic" not in db["article_run_counts"].columns_dict:
        db.execute("alter table article_run_counts add column outside_topic integer")
    _summaries_uncounted(db)
