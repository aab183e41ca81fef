"""The catalog's schema, as versioned migrations (sqlite-utils 4 `Migrations`).

Owns every CREATE and ALTER. `open_db` applies whatever is pending, so an
existing catalog upgrades in place. A migration that adds fields re-parses the
stored original XML (`article_xml`) to fill them, never re-harvests.
Must never: be edited once released — add a new migration instead.
"""

from __future__ import annotations

import sqlite_utils
from sqlite_utils import Migrations

migrations = Migrations("ketamine-catalog")


@migrations(name="0001_first_catalog")
def _first_catalog(db: sqlite_utils.Database) -> None:
    db["articles"].create(
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
    db["articles"].enable_fts(["title", "abstract"], create_triggers=True, tokenize="porter")
    # The record as NLM sent it, compressed: later migrations re-parse it to
    # fill new fields instead of re-harvesting. Every version is kept.
    db["article_xml"].create(
        {"pmid": int, "pmid_version": int, "sha1": str, "xml_zlib": bytes, "run_id": int},
        pk=("pmid", "pmid_version"),
        foreign_keys=[("pmid", "articles", "pmid")],
    )
    db["harvest_runs"].create(
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
    db["articles"].create_index(["pub_year"])
    db["articles"].create_index(["journal"])
    db["articles"].create_index(["last_fetched_run"])
    db["harvest_runs"].create_index(["status", "id"])



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
    db[name].create(
        columns,
        pk=pk,
        foreign_keys=[("pmid", "articles", "pmid"), *foreign_keys],
    )
    for cols in index:
        db[name].create_index(list(cols))


@migrations(name="0002_full_record_model")
def _full_record_model(db: sqlite_utils.Database) -> None:
    articles = db["articles"]
    for name, kind in ARTICLE_COLUMNS_V2.items():
        articles.add_column(name, kind)
    db.execute("update articles set is_retracted = 0, is_retraction_notice = 0, has_correction = 0")
    # The search index now covers keywords and MeSH names too.
    articles.disable_fts()
    articles.enable_fts(FTS_COLUMNS, create_triggers=True, tokenize="porter")

    db["authors"].create(
        {"id": int, "name_key": str, "last_name": str, "fore_name": str, "initials": str,
         "suffix": str, "collective_name": str, "display_name": str},
        pk="id",
    )
    db["authors"].create_index(["name_key"], unique=True)
    _child(db, "article_authors",
           {"pmid": int, "role": str, "position": int, "author_id": int, "orcid": str,
            "equal_contrib": int, "valid": int},
           ("pmid", "role", "position"),
           [("author_id", "authors", "id")], index=[("author_id",), ("orcid",)])
    _child(db, "article_author_affiliations",
           {"pmid": int, "role": str, "position": int, "seq": int, "affiliation": str},
           ("pmid", "role", "position", "seq"))
    _child(db, "abstract_sections",
           {"pmid": int, "position": int, "label": str, "nlm_category": str, "text": str},
           ("pmid", "position"))
    db["mesh_descriptors"].create({"descriptor_ui": str, "name": str}, pk="descriptor_ui")
    _child(db, "article_mesh", {"pmid": int, "descriptor_ui": str, "major": int},
           ("pmid", "descriptor_ui"), [("descriptor_ui", "mesh_descriptors", "descriptor_ui")],
           index=[("descriptor_ui",)])
    _child(db, "article_mesh_qualifiers",
           {"pmid": int, "descriptor_ui": str, "qualifier_ui": str, "qualifier_name": str, "major": int},
           ("pmid", "descriptor_ui", "qualifier_ui"))
    db["publication_types"].create({"ui": str, "name": str}, pk="ui")
    _child(db, "article_publication_types", {"pmid": int, "publication_type_ui": str},
           ("pmid", "publication_type_ui"), [("publication_type_ui", "publication_types", "ui")],
           index=[("publication_type_ui",)])
    _child(db, "article_languages", {"pmid": int, "language": str}, ("pmid", "language"),
           index=[("language",)])
    _child(db, "keywords", {"pmid": int, "position": int, "keyword": str, "owner": str, "major": int},
           ("pmid", "position"), index=[("keyword",)])
    _child(db, "article_ids", {"pmid": int, "id_type": str, "value": str, "source": str},
           ("pmid", "id_type", "value"), index=[("id_type", "value")])
    _child(db, "grants", {"pmid": int, "position": int, "grant_id": str, "acronym": str,
                          "agency": str, "country": str}, ("pmid", "position"), index=[("agency",)])
    _child(db, "trial_registrations", {"pmid": int, "registry": str, "trial_id": str, "source": str},
           ("pmid", "trial_id"), index=[("trial_id",), ("registry",)])
    _child(db, "databanks", {"pmid": int, "databank": str, "accession": str},
           ("pmid", "databank", "accession"))
    _child(db, "comments_corrections", {"pmid": int, "position": int, "ref_type": str,
                                        "ref_pmid": int, "ref_source": str},
           ("pmid", "position"), index=[("ref_type",), ("ref_pmid",)])
    _child(db, "chemicals", {"pmid": int, "position": int, "registry_number": str, "ui": str, "name": str},
           ("pmid", "position"), index=[("name",)])
    _child(db, "supplementary_concepts", {"pmid": int, "ui": str, "name": str, "type": str},
           ("pmid", "ui"))
    _child(db, "article_history", {"pmid": int, "pub_status": str, "date": str}, ("pmid", "pub_status"))
    db["article_events"].create(
        {"id": int, "pmid": int, "run_id": int, "event": str, "detail": str, "recorded_at": str},
        pk="id",
        foreign_keys=[("pmid", "articles", "pmid")],
    )
    db["article_events"].create_index(["pmid"])
    db["article_events"].create_index(["event", "run_id"])
    for column in ("citation_status", "is_retracted", "pub_date", "language", "matches_query", "is_deleted"):
        articles.create_index([column])

    from .store import refill_from_xml  # the writer this schema version goes with

    refill_from_xml(db)


@migrations(name="0003_evidence_tags")
def _evidence_tags(db: sqlite_utils.Database) -> None:
    articles = db["articles"]
    articles.add_column("study_design", str)
    articles.add_column("awaiting_indexing", int)
    articles.add_column("tags_version", str)
    articles.create_index(["study_design"])
    articles.create_index(["awaiting_indexing"])
    _child(db, "article_tags",
           {"pmid": int, "facet": str, "value": str, "method": str, "evidence": str, "confidence": float},
           ("pmid", "facet", "value"), index=[("facet", "value")])

    from .store import retag_all  # tag what is already stored

    retag_all(db)
