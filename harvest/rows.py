"""Parsed, tagged records into the rows of every catalog table: pure, no database.

What this module owns
    The row model: what one article record (`pubmed_xml.ArticleRecord`) and its tags
    (`tags.Tagging`) become in the catalog -- its `articles` columns, the rows of every table
    keyed by its PMID (authors, MeSH, keywords, identifiers, ...), the vocabulary rows it
    names (authors, MeSH descriptors, publication types), its tag rows, its hash and its
    compressed original XML -- and what a revision of it changed (`change_events`).
    `ROW_MODEL_VERSION` dates the model: change what a row holds, bump it, and the next
    run, import or retag rebuilds the derived rows from the stored XML (`harvest.rebuild`).

What it must never do
    Import a database or network module, read the clock, or decide anything that depends on
    what is already stored: the run's own columns (first_seen_run, matches_query, ...) and
    whether a record is new, revised or unchanged are `store.save_articles`'s.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from .tags import Tagging

# Bump when article_row, child_rows, the tag rows or their tables change what they hold:
# catalogs whose derived rows another version built are rebuilt from their stored XML.
ROW_MODEL_VERSION = "rows-v1"

# zlib level for the stored original XML: level 1 is ~4x faster than the default 6 on
# PubMed records and the stored blobs grow by ~15%; zlib.decompress reads either.
XML_ZLIB_LEVEL = 1

RETRACTION_REFS = {"RetractionIn"}
CORRECTION_REFS = {"ErratumIn", "ExpressionOfConcernIn", "CorrectedandRepublishedIn", "UpdateIn"}

# The tables keyed by (pmid, ...) whose rows an article record owns (article_tags aside).
CHILD_TABLES = [
    "abstract_sections",
    "article_mesh",
    "article_mesh_qualifiers",
    "article_publication_types",
    "article_languages",
    "keywords",
    "article_ids",
    "grants",
    "trial_registrations",
    "databanks",
    "comments_corrections",
    "chemicals",
    "supplementary_concepts",
    "article_history",
    "article_author_affiliations",
    "article_authors",
]


class Fingerprint(NamedTuple):
    """What tells a stored record from a new, revised or unchanged copy."""

    pmid: int
    pmid_version: int
    sha1: str


@dataclass
class TagRows:
    """The tag stage's rows for one record: `article_tags` rows and the `articles` columns."""

    pmid: int
    columns: dict[str, Any]  # study_design, awaiting_indexing, tags_version, psychiatric
    tags: list[tuple]  # article_tags rows, in the table's column order


@dataclass
class ArticleRows:
    """Everything one article record becomes in the catalog, but the run's own columns."""

    fingerprint: Fingerprint
    article: dict[str, Any]  # the `articles` columns the record decides, tag columns included
    children: dict[str, list[tuple]]  # CHILD_TABLES but article_authors, in column order
    authorships: list[tuple]  # (pmid, role, position, author name_key, orcid, equal_contrib, valid)
    authors: dict[str, tuple]  # name_key -> `authors` row without its id, name_key first
    mesh_descriptors: dict[str, str]  # descriptor ui -> name
    publication_types: dict[str, str]  # publication type ui -> name
    tagged: TagRows
    xml_zlib: bytes
    # What the local evaluation of the topic query says (imports); None: not evaluated.
    topic_match: bool | None = None

    @property
    def pmid(self) -> int:
        return self.fingerprint.pmid


def record_sha1(record: Mapping) -> str:
    return hashlib.sha1(record["xml"]).hexdigest()


def fingerprint(record: Mapping) -> Fingerprint:
    return Fingerprint(record["pmid"], record.get("pmid_version") or 1, record_sha1(record))


def _joined(values) -> str | None:
    values = [v for v in values if v]
    return "; ".join(values) or None


def author_name(author: Mapping) -> str | None:
    if author.get("collective_name"):
        return author["collective_name"]
    if author.get("last_name"):
        return " ".join(
            filter(None, [author["last_name"], author.get("initials") or author.get("fore_name"), author.get("suffix")])
        )
    return None


def author_key(author: Mapping) -> str:
    if author.get("collective_name"):
        return "collective|" + author["collective_name"].strip().lower()
    return "|".join(
        (author.get(part) or "").strip().lower() for part in ("last_name", "fore_name", "initials", "suffix")
    )


def article_row(record: Mapping, sha1: str | None = None) -> dict[str, Any]:
    """The `articles` columns one parsed record decides (tags and run columns aside)."""
    authors = [a for a in record.get("authors") or [] if a.get("role", "author") == "author"]
    refs = {c["ref_type"] for c in record.get("comments_corrections") or []}
    pub_type_names = [pt["name"] for pt in record.get("publication_types") or []]
    return {
        "pmid": record["pmid"],
        "pmid_version": record.get("pmid_version") or 1,
        "title": record.get("title"),
        "vernacular_title": record.get("vernacular_title"),
        "abstract": record.get("abstract"),
        "journal": record.get("journal"),
        "journal_iso": record.get("journal_iso"),
        "issn_print": record.get("issn_print"),
        "issn_electronic": record.get("issn_electronic"),
        "issn_linking": record.get("issn_linking"),
        "nlm_unique_id": record.get("nlm_unique_id"),
        "journal_country": record.get("journal_country"),
        "volume": record.get("volume"),
        "issue": record.get("issue"),
        "pages": record.get("pages"),
        "pub_date": record.get("pub_date"),
        "pub_year": record.get("pub_year"),
        "pub_date_raw": record.get("pub_date_raw"),
        "article_date": record.get("article_date"),
        "entrez_date": record.get("entrez_date"),
        "date_created": record.get("date_created"),
        "date_completed": record.get("date_completed"),
        "date_revised": record.get("date_revised"),
        "doi": record.get("doi"),
        "pii": record.get("pii"),
        "pmcid": record.get("pmcid"),
        "language": _joined(record.get("languages") or []),
        "publication_types": _joined(pub_type_names),
        "mesh_terms": _joined(m["descriptor_name"] for m in record.get("mesh") or []),
        "keywords": _joined(k["keyword"] for k in record.get("keywords") or []),
        "trial_ids": _joined(t["trial_id"] for t in record.get("trial_registrations") or []),
        "first_author": author_name(authors[0]) if authors else None,
        "author_count": len(authors),
        "citation_status": record.get("citation_status"),
        "publication_status": record.get("publication_status"),
        "indexing_method": record.get("indexing_method"),
        "references_count": record.get("references_count") or 0,
        "coi_statement": record.get("coi_statement"),
        "is_book": int(bool(record.get("is_book"))),
        "is_retracted": int(bool(refs & RETRACTION_REFS) or "Retracted Publication" in pub_type_names),
        "is_retraction_notice": int("Retraction of Publication" in pub_type_names or "RetractionOf" in refs),
        "has_correction": int(bool(refs & CORRECTION_REFS)),
        "record_sha1": sha1 or record_sha1(record),
    }


def child_rows(record: Mapping) -> dict[str, list[tuple]]:
    """Rows for every table keyed by (pmid, ...) but article_authors (whose author ids the
    store assigns), as tuples in the tables' column order."""
    pmid = record["pmid"]
    rows: dict[str, list[tuple]] = {
        "abstract_sections": [
            (pmid, i, s.get("label"), s.get("nlm_category"), s.get("text"))
            for i, s in enumerate(record.get("abstract_sections") or [], 1)
        ],
        "article_mesh": [],
        "article_mesh_qualifiers": [],
        "article_publication_types": [],
        "article_languages": [(pmid, lang) for lang in dict.fromkeys(record.get("languages") or [])],
        "keywords": [
            (pmid, i, k["keyword"], k.get("owner"), int(bool(k.get("major"))))
            for i, k in enumerate(record.get("keywords") or [], 1)
        ],
        "article_ids": list(
            dict.fromkeys(
                (pmid, i["id_type"], i["value"], i.get("source")) for i in record.get("article_ids") or []
            ).keys()
        ),
        "grants": [
            (pmid, i, g.get("grant_id"), g.get("acronym"), g.get("agency"), g.get("country"))
            for i, g in enumerate(record.get("grants") or [], 1)
        ],
        "trial_registrations": [],
        "databanks": list(
            dict.fromkeys((pmid, d.get("databank"), d.get("accession")) for d in record.get("databanks") or []).keys()
        ),
        "comments_corrections": [
            (pmid, i, c.get("ref_type"), c.get("ref_pmid"), c.get("ref_source"))
            for i, c in enumerate(record.get("comments_corrections") or [], 1)
        ],
        "chemicals": [
            (pmid, i, c.get("registry_number"), c.get("ui"), c.get("name"))
            for i, c in enumerate(record.get("chemicals") or [], 1)
        ],
        "supplementary_concepts": list(
            {
                s.get("ui") or s.get("name"): (pmid, s.get("ui") or s.get("name"), s.get("name"), s.get("type"))
                for s in record.get("supplementary_concepts") or []
            }.values()
        ),
        "article_history": list(
            {status: (pmid, status, date) for status, date in (record.get("history") or {}).items()}.values()
        ),
        "article_author_affiliations": [],
    }
    seen_ids: set[str] = set()
    for t in record.get("trial_registrations") or []:
        # keys are (pmid, trial_id): the parser already prefers the databank source
        if t["trial_id"] not in seen_ids:
            seen_ids.add(t["trial_id"])
            rows["trial_registrations"].append((pmid, t.get("registry"), t["trial_id"], t.get("source")))
    seen_mesh: set[str] = set()
    for m in record.get("mesh") or []:
        ui = m.get("descriptor_ui") or m["descriptor_name"]
        if ui in seen_mesh:
            continue
        seen_mesh.add(ui)
        rows["article_mesh"].append((pmid, ui, int(bool(m.get("major")))))
        seen_q: set[str] = set()
        for q in m.get("qualifiers") or []:
            qui = q.get("ui") or q.get("name")
            if qui not in seen_q:
                seen_q.add(qui)
                rows["article_mesh_qualifiers"].append((pmid, ui, qui, q.get("name"), int(bool(q.get("major")))))
    for pt_ui in dict.fromkeys(pt.get("ui") or pt["name"] for pt in record.get("publication_types") or []):
        rows["article_publication_types"].append((pmid, pt_ui))
    for a in record.get("authors") or []:
        for seq, affiliation in enumerate(a.get("affiliations") or [], 1):
            rows["article_author_affiliations"].append((pmid, a.get("role", "author"), a["position"], seq, affiliation))
    return rows


def tag_rows(pmid: int, tagging: Tagging) -> TagRows:
    """The `article_tags` rows (one per facet and value) and the `articles` tag columns."""
    rows: list[tuple] = []
    seen: set[tuple[str, str]] = set()
    for t in tagging.tags:
        key = (t["facet"], t["value"])
        if key not in seen:
            seen.add(key)
            rows.append((pmid, t["facet"], t["value"], t["method"], t.get("evidence"), t.get("confidence")))
    columns = {
        "study_design": tagging.study_design,
        "awaiting_indexing": int(tagging.awaiting_indexing),
        "tags_version": tagging.rules_version,
        "psychiatric": int(tagging.psychiatric),
    }
    return TagRows(pmid=pmid, columns=columns, tags=rows)


def article_rows(record: Mapping, tagging: Tagging, *, topic_match: bool | None = None) -> ArticleRows:
    """The rows stage: one parsed record and its tags -> the rows of every table."""
    fp = fingerprint(record)
    tagged = tag_rows(fp.pmid, tagging)
    authorships: list[tuple] = []
    authors: dict[str, tuple] = {}
    slots: set[tuple] = set()
    for a in record.get("authors") or []:
        key = author_key(a)
        authors.setdefault(
            key,
            (
                key,
                a.get("last_name"),
                a.get("fore_name"),
                a.get("initials"),
                a.get("suffix"),
                a.get("collective_name"),
                author_name(a),
            ),
        )
        slot = (fp.pmid, a.get("role", "author"), a["position"])
        if slot not in slots:
            slots.add(slot)
            authorships.append(
                (*slot, key, a.get("orcid"), int(bool(a.get("equal_contrib"))), int(a.get("valid", True)))
            )
    return ArticleRows(
        fingerprint=fp,
        article={**article_row(record, fp.sha1), **tagged.columns},
        children=child_rows(record),
        authorships=authorships,
        authors=authors,
        mesh_descriptors={
            m.get("descriptor_ui") or m["descriptor_name"]: m["descriptor_name"] for m in record.get("mesh") or []
        },
        publication_types={pt.get("ui") or pt["name"]: pt["name"] for pt in record.get("publication_types") or []},
        tagged=tagged,
        xml_zlib=zlib.compress(record["xml"], XML_ZLIB_LEVEL),
        topic_match=topic_match,
    )


def change_events(old: Mapping, new: ArticleRows) -> list[tuple[str, str | None]]:
    """What a revision changed, as (event, detail) pairs a researcher can read.

    `old` is the stored record's state: its `articles` title, abstract, citation_status and
    is_retracted, and the sets `mesh` (descriptor names), `pub_types` (names) and `refs`
    ((ref_type, ref_pmid) pairs)."""
    events: list[tuple[str, str | None]] = []
    row = new.article
    new_mesh = set(new.mesh_descriptors.values())
    new_types = set(new.publication_types.values())
    new_refs = {(c[2], c[3]) for c in new.children["comments_corrections"]}
    if row["is_retracted"] and not old["is_retracted"]:
        events.append(("retracted", _joined(str(p) for t, p in new_refs if t in RETRACTION_REFS)))
    for ref_type, ref_pmid in sorted(new_refs - old["refs"], key=str):
        if ref_type in CORRECTION_REFS:
            events.append(("correction_added", f"{ref_type} {ref_pmid or ''}".strip()))
    if added := sorted(new_mesh - old["mesh"]):
        events.append(("mesh_added", "; ".join(added)))
    if removed := sorted(old["mesh"] - new_mesh):
        events.append(("mesh_removed", "; ".join(removed)))
    if added := sorted(new_types - old["pub_types"]):
        events.append(("publication_type_added", "; ".join(added)))
    if removed := sorted(old["pub_types"] - new_types):
        events.append(("publication_type_removed", "; ".join(removed)))
    if (old["title"] or "") != (row["title"] or ""):
        events.append(("title_changed", None))
    if (old["abstract"] or "") != (row["abstract"] or ""):
        events.append(("abstract_changed", None))
    if old["citation_status"] != row["citation_status"]:
        events.append(("citation_status_changed", f"{old['citation_status']} -> {row['citation_status']}"))
    return events
