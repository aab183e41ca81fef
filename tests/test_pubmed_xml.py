"""harvest.pubmed_xml against real PubMed XML: an independent reference
(Biopython), the oddities real records carry, hostile documents derived from
real files, and memory that stays flat however long the document.

All data is read from ../shared/data (relative to the project root); documents
a test needs that no real file shows (entity declarations, a cut-off body, a
record without its own DOI) are derived in code from a real file's bytes.
"""

from __future__ import annotations

import gzip
import io
import json
import multiprocessing
import os
import re
import socket
import subprocess
import sys
import time
import tracemalloc
import typing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
from lxml import etree

from harvest.pubmed_xml import ArticleRecord, MeshQualifier, PubmedXMLError, parse_articles, parse_pubmed_xml

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
PUBMED = DATA / "pubmed"
RECORDS = PUBMED / "records"
OLD_BASELINE = "pubmed20n0014-part1.xml.gz"  # 20,000 records from 1978-79
DAILY_UPDATE = "pubmed21n1298-part1.xml.gz"  # 13,000 modern records + DeleteCitation of 20
BIG_FILES = (OLD_BASELINE, DAILY_UPDATE)

ARTICLE_KEYS = {
    "type",
    "pmid",
    "pmid_version",
    "is_book",
    "title",
    "vernacular_title",
    "abstract",
    "abstract_sections",
    "other_abstracts",
    "journal",
    "journal_iso",
    "issn_print",
    "issn_electronic",
    "issn_linking",
    "nlm_unique_id",
    "journal_country",
    "volume",
    "issue",
    "pages",
    "pub_date",
    "pub_year",
    "pub_date_raw",
    "article_date",
    "history",
    "date_created",
    "date_completed",
    "date_revised",
    "entrez_date",
    "doi",
    "pii",
    "pmcid",
    "article_ids",
    "languages",
    "publication_types",
    "authors",
    "mesh",
    "supplementary_concepts",
    "chemicals",
    "keywords",
    "grants",
    "databanks",
    "trial_registrations",
    "comments_corrections",
    "publication_status",
    "citation_status",
    "indexing_method",
    "references_count",
    "coi_statement",
    "xml",
}
AUTHOR_KEYS = {
    "position",
    "role",
    "last_name",
    "fore_name",
    "initials",
    "suffix",
    "collective_name",
    "affiliations",
    "orcid",
    "equal_contrib",
    "valid",
}

# The record's lists and the declared part each element must match, key for key.
LIST_PARTS = {
    key: typing.get_args(hint)[0]
    for key, hint in typing.get_type_hints(ArticleRecord).items()
    if typing.get_origin(hint) is list and typing.is_typeddict(typing.get_args(hint)[0])
}


def read_bytes(path: Path) -> bytes:
    if path.suffix == ".gz":
        with gzip.open(path, "rb") as fh:
            return fh.read()
    return path.read_bytes()


def parse_path(path: Path) -> list:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        return list(parse_pubmed_xml(fh, source_name=path.name))


def articles(records: list[dict]) -> list[dict]:
    return [r for r in records if r["type"] == "article"]


def article(records: list[dict], pmid: int, version: int | None = None) -> dict:
    found = [r for r in articles(records) if r["pmid"] == pmid and version in (None, r["pmid_version"])]
    assert len(found) == 1, f"expected one record for PMID {pmid} v{version}, found {len(found)}"
    return found[0]


def only_article(path: Path) -> dict:
    records = parse_path(path)
    assert len(records) == 1
    return records[0]


@pytest.fixture(scope="session")
def big_records() -> dict[str, list[dict]]:
    """Both large files, parsed once per session by the parser under test."""
    return {name: parse_path(PUBMED / name) for name in BIG_FILES}


@pytest.fixture(scope="session")
def old_baseline(big_records) -> list[dict]:
    return big_records[OLD_BASELINE]


@pytest.fixture(scope="session")
def daily_update(big_records) -> list[dict]:
    return big_records[DAILY_UPDATE]


# ===========================================================================
# 1. Independent reference: Biopython's Bio.Entrez.read on 33,000 records
# ===========================================================================
#
# Normalisation applied to every string on both sides before comparing:
#   * inline markup is stripped: Biopython keeps <i>, <b>, <u>, <sup>, <sub>
#     as literal tags inside its strings and re-serialises MathML as tags
#     (<math xmlns=...><msub><mi>T</mi> ...); we keep only the text;
#   * whitespace is collapsed and stripped: Biopython keeps the source's
#     leading/trailing spaces (GrantID "BB/I002243 ", Agency " CIHR"); we strip.
# The reference abstract is the test's own join of Biopython's AbstractText
# sections, "LABEL: text" for each labelled section, so the sections' labels
# and texts (and their order) are what is compared.
#
# Disagreement categories that remain, each asserted below:
#   * label_only_section: Biopython gives an empty AbstractText for a section
#     that is only a label ("LEVEL OF EVIDENCE: 4"); the reference join writes
#     "LEVEL OF EVIDENCE: 4:", we write the label alone.
#   * empty_keyword: an empty <Keyword/> is None in Biopython's list; we drop it.

_MARKUP = re.compile(r"</?(?:[A-Za-z]+:)?(?:i|b|u|sup|sub|math|m[a-z]+)(?:\s[^<>]*)?/?>")
COMPARED_FIELDS = (
    "title",
    "abstract",
    "journal",
    "journal_iso",
    "volume",
    "issue",
    "pages",
    "pub_year",
    "doi",
    "pmcid",
    "languages",
    "publication_types",
    "mesh",
    "authors",
    "keywords",
    "grants",
    "chemicals",
    "databank_accessions",
    "comments_corrections",
)


def norm(value):
    """Strip inline markup and collapse whitespace in every string of a value."""
    if isinstance(value, str):
        return " ".join(_MARKUP.sub("", value).split()) or None
    if isinstance(value, (list, tuple)):
        return type(value)(norm(item) for item in value)
    return value


def _biopython_fields(entry) -> dict:
    citation, article_ = entry["MedlineCitation"], entry["MedlineCitation"]["Article"]
    pubmed_data = entry.get("PubmedData", {})
    journal = article_.get("Journal", {})
    issue = journal.get("JournalIssue", {})
    pub_date = issue.get("PubDate", {})
    pagination = article_.get("Pagination", {})
    pages = pagination.get("MedlinePgn") or "-".join(
        p for p in (pagination.get("StartPage"), pagination.get("EndPage")) if p
    )
    year = pub_date.get("Year") or re.search(r"\d{4}", pub_date.get("MedlineDate", "")).group(0)
    ids = [(i.attributes.get("IdType"), str(i)) for i in pubmed_data.get("ArticleIdList", [])]
    elocations = [(e.attributes.get("EIdType"), str(e)) for e in article_.get("ELocationID", [])]
    sections = article_.get("Abstract", {}).get("AbstractText", [])
    abstract = " ".join(f"{s.attributes['Label']}: {s}" if s.attributes.get("Label") else str(s) for s in sections)
    fields = {
        "title": article_.get("ArticleTitle"),
        "abstract": abstract,
        "journal": journal.get("Title"),
        "journal_iso": journal.get("ISOAbbreviation"),
        "volume": issue.get("Volume"),
        "issue": issue.get("Issue"),
        "pages": pages,
        "pub_year": int(year),
        "doi": next((v for t, v in ids if t == "doi"), None) or next((v for t, v in elocations if t == "doi"), None),
        "pmcid": next((v for t, v in ids if t == "pmc"), None),
        "languages": [str(x) for x in article_.get("Language", [])],
        "publication_types": [str(x) for x in article_.get("PublicationTypeList", [])],
        "mesh": [
            (str(h["DescriptorName"]), h["DescriptorName"].attributes.get("MajorTopicYN") == "Y")
            for h in citation.get("MeshHeadingList", [])
        ],
        "authors": [a.get("LastName") or a.get("CollectiveName") for a in article_.get("AuthorList", [])],
        "keywords": [k for keyword_list in citation.get("KeywordList", []) for k in keyword_list],
        "grants": [(g.get("GrantID"), g.get("Agency")) for g in article_.get("GrantList", [])],
        "chemicals": [(c.get("RegistryNumber"), c.get("NameOfSubstance")) for c in citation.get("ChemicalList", [])],
        "databank_accessions": [
            (d.get("DataBankName"), a)
            for d in article_.get("DataBankList", [])
            for a in d.get("AccessionNumberList", [])
        ],
        "comments_corrections": [c.attributes.get("RefType") for c in citation.get("CommentsCorrectionsList", [])],
        # not compared: lets a disagreement be put in its category
        "label_only_sections": [s.attributes["Label"] for s in sections if s.attributes.get("Label") and not norm(s)],
    }
    return {name: norm(value) for name, value in fields.items()}


def _our_fields(record: dict) -> dict:
    fields = {
        "title": record["title"],
        "abstract": record["abstract"],
        "journal": record["journal"],
        "journal_iso": record["journal_iso"],
        "volume": record["volume"],
        "issue": record["issue"],
        "pages": record["pages"],
        "pub_year": record["pub_year"],
        "doi": record["doi"],
        "pmcid": record["pmcid"],
        "languages": record["languages"],
        "publication_types": [p["name"] for p in record["publication_types"]],
        "mesh": [(m["descriptor_name"], m["major"]) for m in record["mesh"]],
        "authors": [a["last_name"] or a["collective_name"] for a in record["authors"]],
        "keywords": [k["keyword"] for k in record["keywords"]],
        "grants": [(g["grant_id"], g["agency"]) for g in record["grants"]],
        "chemicals": [(c["registry_number"], c["name"]) for c in record["chemicals"]],
        "databank_accessions": [(d["databank"], d["accession"]) for d in record["databanks"] if d["accession"]],
        "comments_corrections": [c["ref_type"] for c in record["comments_corrections"]],
    }
    return {name: norm(value) for name, value in fields.items()}


def biopython_reference(path: str) -> dict[tuple[int, int], dict]:
    """Bio.Entrez.read on one large file -> {(pmid, version): normalised fields}.

    Runs in a worker process (about 17-19 s and 2 GB per file). Entrez.read
    refuses the http:// DTD URL of the 2020 file as insecure, so it gets the
    bytes with that URL rewritten to https://; Biopython ships the DTD itself.
    """
    from Bio import Entrez

    data = read_bytes(Path(path)).replace(b'"http://dtd.nlm.nih.gov/', b'"https://dtd.nlm.nih.gov/', 1)
    parsed = Entrez.read(io.BytesIO(data), validate=True)
    assert not parsed.get("PubmedBookArticle")
    reference = {}
    for entry in parsed["PubmedArticle"]:
        pmid = entry["MedlineCitation"]["PMID"]
        reference[(int(pmid), int(pmid.attributes.get("Version", 1)))] = _biopython_fields(entry)
    return reference


def _disagreement_category(field: str, theirs, ours, theirs_fields: dict) -> str | None:
    if field == "abstract" and theirs_fields["label_only_sections"]:
        for label in theirs_fields["label_only_sections"]:
            theirs = re.sub(re.escape(label) + r":(?= |$)", label, theirs, count=1)
        if theirs == ours:
            return "label_only_section"
    if field == "keywords" and None in theirs and [k for k in theirs if k is not None] == ours:
        return "empty_keyword"
    return None


@pytest.fixture(scope="session")
def biopython_comparison(request) -> dict:
    """Biopython reads both files in two worker processes while the parser
    under test reads them here; then every record is compared field by field."""
    context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    with ProcessPoolExecutor(max_workers=2, mp_context=context) as pool:
        futures = {name: pool.submit(biopython_reference, str(PUBMED / name)) for name in BIG_FILES}
        ours_by_file = request.getfixturevalue("big_records")
        reference = {name: future.result() for name, future in futures.items()}

    agree = dict.fromkeys(COMPARED_FIELDS, 0)
    disagreements: list[tuple] = []
    keys: dict[str, set[tuple[str, tuple]]] = {"ours": set(), "theirs": set()}  # (file, (pmid, version))
    for name in BIG_FILES:
        ours = {(r["pmid"], r["pmid_version"]): _our_fields(r) for r in articles(ours_by_file[name])}
        keys["ours"] |= {(name, k) for k in ours}
        keys["theirs"] |= {(name, k) for k in reference[name]}
        for key, theirs_fields in reference[name].items():
            for field in COMPARED_FIELDS:
                theirs, mine = theirs_fields[field], ours[key][field]
                if theirs == mine:
                    agree[field] += 1
                else:
                    category = _disagreement_category(field, theirs, mine, theirs_fields)
                    disagreements.append((name, key, field, category, theirs, mine))
    compared = len(keys["theirs"])
    return {"agree": agree, "compared": compared, "disagreements": disagreements, "keys": keys}


def test_biopython_agrees_on_every_record_and_almost_every_field(biopython_comparison):
    comparison = biopython_comparison
    compared, agree = comparison["compared"], comparison["agree"]
    assert compared == 33_000
    # pmid and version: the same 33,000 (PMID, version) pairs, 30271887 three times.
    assert comparison["keys"]["ours"] == comparison["keys"]["theirs"]

    print(f"\nBiopython agreement on {compared:,} records:")
    print(f"  {'field':22} {'agree':>7} {'share':>9}")
    for field in COMPARED_FIELDS:
        print(f"  {field:22} {agree[field]:7,} {agree[field] / compared:9.4%}")
    total = sum(agree.values())
    print(f"  {'all fields':22} {total:7,} {total / (compared * len(COMPARED_FIELDS)):9.4%}")
    categories: dict[str, int] = {}
    for *_, category, _theirs, _ours in comparison["disagreements"]:
        categories[category] = categories.get(category, 0) + 1
    print(f"  disagreements by category: {categories}")

    assert total / (compared * len(COMPARED_FIELDS)) >= 0.995
    for field in COMPARED_FIELDS:
        assert agree[field] / compared >= 0.995, field


def test_biopython_disagreements_are_only_the_explained_categories(biopython_comparison):
    unexplained = [d for d in biopython_comparison["disagreements"] if d[3] is None]
    assert unexplained == [], unexplained[:5]
    by_category: dict[str, set] = {}
    for _name, _key, field, category, *_ in biopython_comparison["disagreements"]:
        by_category.setdefault(category, set()).add(field)
    # Both categories do occur in these files, and only in their own field.
    assert by_category == {"label_only_section": {"abstract"}, "empty_keyword": {"keywords"}}


# ===========================================================================
# 2. Oddities, each on a real record
# ===========================================================================


def test_every_record_has_every_key(big_records):
    paths = [PUBMED / "medline16n0902.xml.gz", *sorted(RECORDS.glob("*.xml"))]
    records = [r for name in BIG_FILES for r in big_records[name]]
    for path in paths:
        records.extend(parse_path(path))
    assert len(articles(records)) > 33_800
    for record in records:
        if record["type"] == "delete":
            assert set(record) == {"type", "pmid", "pmid_version"}
            continue
        assert set(record) == ARTICLE_KEYS, record["pmid"]
        assert isinstance(record["pmid"], int) and isinstance(record["xml"], bytes)
        for author in record["authors"]:
            assert set(author) == AUTHOR_KEYS
        for key, part in LIST_PARTS.items():
            for element in record[key]:
                assert set(element) == set(typing.get_type_hints(part)), (record["pmid"], key, element)
        for heading in record["mesh"]:
            for qualifier in heading["qualifiers"]:
                assert set(qualifier) == set(typing.get_type_hints(MeshQualifier))


def test_the_declared_record_shape_is_what_the_parser_yields():
    """ArticleRecord (what every later stage reads) declares every key the parser yields,
    and each list's element type is a declared part, not a plain dict."""
    declared = typing.get_type_hints(ArticleRecord)
    assert set(declared) == ARTICLE_KEYS
    assert set(typing.get_type_hints(LIST_PARTS["authors"])) == AUTHOR_KEYS
    for key, hint in declared.items():
        if typing.get_origin(hint) is list:
            (element,) = typing.get_args(hint)
            assert element is str or typing.is_typeddict(element), (key, hint)


def test_title_keeps_text_inside_inline_markup():
    # <ArticleTitle>... at the<i>TERT</i>gene region and risk of pancreatic cancer.</ArticleTitle>
    record = only_article(DATA / "eutils" / "biopython" / "title_with_html_tags.xml")
    assert record["title"] == (
        "Leucocyte telomere length, genetic variants at theTERTgene region and risk of pancreatic cancer."
    )
    # p<sub>trend</sub>=0.048 and r<sup>2</sup>&lt;0.25 in the abstract
    assert "ptrend=0.048" in record["abstract"] and "r2<0.25" in record["abstract"]


def test_titles_with_italics_superscripts_and_mathml(daily_update):
    italic = article(daily_update, 31266900)  # ... Immunity in <i>Nicotiana benthamiana</i>.
    assert italic["title"] == "An EDS1-SAG101 Complex Is Essential for TNL-Mediated Immunity in Nicotiana benthamiana."
    sup = article(daily_update, 31974114)  # Vav2 lacks Ca<sup>2+</sup> entry-promoting ...
    assert sup["title"].startswith("Vav2 lacks Ca2+ entry-promoting scaffolding functions")
    assert sup["title"].endswith("via Cdc42.")
    mathml = article(daily_update, 33780037)  # <mml:math> T<sub>1</sub> ... inside the title
    assert mathml["title"].startswith("Free-breathing simultaneous T")
    assert mathml["title"].endswith("quantification in the myocardium.")
    assert "mml" not in mathml["title"] and "<" not in mathml["title"]


def test_structured_abstract_keeps_labels_and_categories(daily_update):
    record = article(daily_update, 10704411)
    assert [(s["label"], s["nlm_category"]) for s in record["abstract_sections"]] == [
        ("BACKGROUND", "BACKGROUND"),
        ("RESULTS", "RESULTS"),
        ("CONCLUSIONS", "CONCLUSIONS"),
    ]
    assert record["abstract"].startswith("BACKGROUND: Drugs of abuse have a common property in mammals")
    assert "\n\nRESULTS: We present evidence that dopamine" in record["abstract"]
    assert record["abstract"].count("\n\n") == 2


def test_label_only_section_is_kept_as_its_label(daily_update):
    record = article(daily_update, 31617889)  # <AbstractText Label="LEVEL OF EVIDENCE: 4"/>
    assert record["abstract_sections"][-1] == {"label": "LEVEL OF EVIDENCE: 4", "nlm_category": None, "text": ""}
    assert record["abstract"].endswith("\n\nLEVEL OF EVIDENCE: 4")


@pytest.mark.parametrize(
    "pmid, raw, iso, year",
    [
        (399696, "1979 Nov-1980 May", "1979-11-01", 1979),  # MedlineDate across years
        (411114, "1977 Aug 27-Sep 3", "1977-08-27", 1977),  # MedlineDate with days
        (399488, "1979 Jan-Feb", "1979-01-01", 1979),
        (399820, "1977-1978", "1977-01-01", 1977),  # years only
        (399974, "1979-1980 Fall-Winter", "1979-09-01", 1979),
        (399332, "1979 Spring", "1979-03-01", 1979),  # Season
        (399333, "1979 Summer", "1979-06-01", 1979),
        (399336, "1979 Autumn", "1979-09-01", 1979),
        (399484, "1979 Fall", "1979-09-01", 1979),
        (399338, "1979 Winter", "1979-12-01", 1979),
    ],
)
def test_medline_dates_and_seasons_normalise_to_iso(old_baseline, pmid, raw, iso, year):
    record = article(old_baseline, pmid)
    assert (record["pub_date_raw"], record["pub_date"], record["pub_year"]) == (raw, iso, year)


def test_year_month_day_dates_and_history(daily_update):
    record = article(daily_update, 10704411)  # <Year>2000</Year><Month>Feb</Month><Day>24</Day>
    assert (record["pub_date_raw"], record["pub_date"], record["pub_year"]) == ("2000 Feb 24", "2000-02-24", 2000)
    assert record["date_completed"] == "2000-04-25" and record["date_revised"] == "2021-06-07"
    last = article(daily_update, 34088158)
    assert last["history"] == {
        "received": "2021-02-18",
        "revised": "2021-03-18",
        "accepted": "2021-04-05",
        "entrez": "2021-06-05",
        "pubmed": "2021-06-06",
        "medline": "2021-06-06",
    }
    assert last["entrez_date"] == "2021-06-05"
    numeric = only_article(DATA / "eutils" / "biopython" / "title_with_html_tags.xml")
    assert (numeric["pub_date_raw"], numeric["pub_date"]) == ("2017 06", "2017-06-01")


def test_collective_name_author(daily_update):
    record = article(daily_update, 31719001)
    collective = [a for a in record["authors"] if a["collective_name"]]
    assert collective and all(a["last_name"] is None for a in collective)
    assert [a["position"] for a in record["authors"]] == list(range(1, len(record["authors"]) + 1))


def test_orcid_normalised_from_every_form_and_refused_when_broken(daily_update):
    url = article(daily_update, 29744390)  # https://orcid.org/0000-0002-9557-268X
    assert url["authors"][0]["orcid"] == "0000-0002-9557-268X"
    bare = article(daily_update, 33480729)  # 0000000284046596
    assert "0000-0002-8404-6596" in [a["orcid"] for a in bare["authors"]]
    truncated = article(daily_update, 32910605)  # 0000-0001-9206-317: 15 characters, no check digit
    assert truncated["authors"][0]["orcid"] is None
    assert b"0000-0001-9206-317<" in truncated["xml"]
    bad_check = article(daily_update, 33990139)  # https://orcid.org/0000-0002-6314-3269: wrong check digit
    assert b"https://orcid.org/0000-0002-6314-3269" in bad_check["xml"]
    assert "0000-0002-6314-3269" not in [a["orcid"] for a in bad_check["authors"]]
    pattern = re.compile(r"\d{4}-\d{4}-\d{4}-\d{3}[\dX]")
    orcids = [a["orcid"] for r in articles(daily_update) for a in r["authors"] if a["orcid"]]
    assert len(orcids) > 8000 and all(pattern.fullmatch(o) for o in orcids)


def test_equal_contribution_flags():
    record = only_article(RECORDS / "30386702.xml")
    assert [(a["last_name"], a["equal_contrib"]) for a in record["authors"]][:3] == [
        ("Liu", True),
        ("Wang", True),
        (record["authors"][2]["last_name"], False),
    ]


def test_databank_nct_id_stays_once_when_the_abstract_repeats_it(daily_update):
    record = article(daily_update, 31719001)
    assert ("ClinicalTrials.gov", "NCT03935542") in [(d["databank"], d["accession"]) for d in record["databanks"]]
    assert "NCT03935542" in record["abstract"]
    assert record["trial_registrations"] == [
        {"registry": "ClinicalTrials.gov", "trial_id": "NCT03935542", "source": "databank"}
    ]


def test_trial_ids_found_in_abstract_text(daily_update):
    ketamine = article(daily_update, 34034067)
    assert {"registry": "ClinicalTrials.gov", "trial_id": "NCT04209296", "source": "abstract"} in ketamine[
        "trial_registrations"
    ]
    assert not ketamine["databanks"]
    dutch = article(daily_update, 33515500)  # "Netherlands Trial Registry, NTR4132/NL3847."
    assert [(t["registry"], t["trial_id"]) for t in dutch["trial_registrations"]] == [
        ("NTR", "NTR4132"),
        ("NTR", "NL3847"),
    ]
    india = article(daily_update, 32737577)  # written "CTRI/2018/02/011,664"
    assert [t["trial_id"] for t in india["trial_registrations"]] == ["CTRI/2018/02/011664"]
    spaced = article(daily_update, 34052569)  # written "ACTRN 12617000863336"
    assert [t["trial_id"] for t in spaced["trial_registrations"]] == ["ACTRN12617000863336"]
    eudract = article(daily_update, 33545658)
    assert {"registry": "EudraCT", "trial_id": "2007-005674-31", "source": "abstract"} in eudract["trial_registrations"]


def test_non_nct_databanks_are_trial_registrations_too():
    records = parse_path(PUBMED / "medline16n0902.xml.gz")
    found = {(t["registry"], t["trial_id"], t["source"]) for r in articles(records) for t in r["trial_registrations"]}
    assert ("ISRCTN", "ISRCTN69423238", "databank") in found
    assert ("EudraCT", "2010-019469-26", "databank") in found


def test_retraction_and_erratum_links(old_baseline, daily_update):
    retracted = article(daily_update, 27602157)
    assert {"ref_type": "RetractionIn", "ref_pmid": 34093767} in [
        {k: c[k] for k in ("ref_type", "ref_pmid")} for c in retracted["comments_corrections"]
    ]
    assert all(c["ref_source"] for c in retracted["comments_corrections"])
    erratum = article(daily_update, 21388667)
    assert ("ErratumIn", 34092359) in [(c["ref_type"], c["ref_pmid"]) for c in erratum["comments_corrections"]]
    retraction = article(old_baseline, 400955)
    assert ("RetractionOf", 778343) in [(c["ref_type"], c["ref_pmid"]) for c in retraction["comments_corrections"]]


def test_in_process_and_publisher_records_have_no_mesh_yet(daily_update):
    in_process = article(daily_update, 30951498)
    publisher = article(daily_update, 29426732)
    assert (in_process["citation_status"], in_process["mesh"]) == ("In-Process", [])
    assert (publisher["citation_status"], publisher["mesh"]) == ("Publisher", [])
    statuses = {r["citation_status"] for r in articles(daily_update) if not r["mesh"]}
    assert {"In-Process", "Publisher", "In-Data-Review"} <= statuses
    assert article(daily_update, 25185776)["indexing_method"] == "Curated"


def test_versioned_pmid_yields_each_version(daily_update):
    versions = [r for r in articles(daily_update) if r["pmid"] == 30271887]
    assert [r["pmid_version"] for r in versions] == [1, 2, 3]
    assert [r["doi"] for r in versions] == [f"10.12688/wellcomeopenres.14677.{v}" for v in (1, 2, 3)]


def test_delete_citation_block_yields_deletes_in_document_order(daily_update):
    deletes = [r for r in daily_update if r["type"] == "delete"]
    assert len(deletes) == 20 and len(articles(daily_update)) == 13_000
    assert deletes[0] == {"type": "delete", "pmid": 31688362, "pmid_version": 1}
    assert deletes[-1] == {"type": "delete", "pmid": 34096142, "pmid_version": 1}
    assert all(r["type"] == "delete" for r in daily_update[-20:])  # after the last article, as in the file


def test_book_article():
    record = only_article(RECORDS / "20301546.xml")
    assert record["is_book"] and record["pmid"] == 20301546 and record["citation_status"] is None
    assert record["title"] == "Hereditary Motor and Sensory Neuropathy with Agenesis of the Corpus Callosum"
    authors = [(a["role"], a["position"], a["last_name"]) for a in record["authors"]]
    assert authors[:3] == [("author", 1, "Gauvreau"), ("author", 2, "Brisson"), ("author", 3, "Dupré")]
    assert [a for a in authors if a[0] == "editor"][0] == ("editor", 1, "Adam")
    assert len(authors) == 3 + 6
    assert (record["pub_date"], record["pub_year"]) == ("1993-01-01", 1993)
    assert {"id_type": "bookaccession", "value": "NBK1372", "source": "ArticleIdList"} in record["article_ids"]
    assert record["abstract_sections"][0]["label"] == "CLINICAL CHARACTERISTICS"
    assert "biallelic pathogenic variants in SLC12A6 identified" in record["abstract"]
    assert record["references_count"] == record["xml"].count(b"<Reference>") > 10
    assert record["entrez_date"] == "2020-09-17" and record["publication_types"] == [
        {"ui": "D016454", "name": "Review"}
    ]
    assert record["journal"] is None and record["doi"] is None


def test_medline_citation_set_file():
    records = parse_path(PUBMED / "medline16n0902.xml.gz")
    assert len(articles(records)) == 604
    assert records[-1] == {"type": "delete", "pmid": 26432306, "pmid_version": 1}
    first = records[0]
    assert first["pmid"] == 17942999 and first["date_created"] == "2007-10-18"
    assert first["history"] == {} and first["publication_status"] is None  # no PubmedData in this format
    assert (first["abstract_sections"][0]["label"], first["abstract_sections"][0]["nlm_category"]) == (
        "PURPOSE",
        "OBJECTIVE",
    )
    # without PubmedData the DOI can only come from ELocationID
    with_doi = [r for r in articles(records) if r["doi"]]
    assert with_doi and all(any(i["source"] == "ELocationID" for i in r["article_ids"]) for r in with_doi)


def test_bare_pubmed_article_root():
    record = only_article(PUBMED / "records-pymed" / "test_article.xml")
    assert (record["pmid"], record["citation_status"], record["doi"]) == (
        31253142,
        "In-Process",
        "10.1186/s12891-019-2685-y",
    )


def test_empty_article_set_yields_nothing():
    assert parse_path(RECORDS / "37909814.xml") == []


def _own_and_reference_dois(xml: bytes) -> tuple[list[str], list[str]]:
    tree = etree.fromstring(xml)
    own = tree.xpath("PubmedData/ArticleIdList/ArticleId[@IdType='doi']/text()")
    cited = tree.xpath("PubmedData/ReferenceList//Reference/ArticleIdList/ArticleId[@IdType='doi']/text()")
    return own, cited


def test_doi_is_the_articles_own_never_a_references(daily_update):
    record = article(daily_update, 30310913)
    own, cited = _own_and_reference_dois(record["xml"])
    assert len(cited) > 5 and own == [record["doi"]]
    assert record["doi"] not in cited

    # The same real record with its own DOI removed (ArticleIdList and ELocationID):
    # the reference list's DOIs are still there, and none may become the article's.
    head, references = record["xml"].split(b"<ReferenceList", 1)
    head = re.sub(rb"\s*<ELocationID EIdType=\"doi\"[^>]*>[^<]*</ELocationID>", b"", head)
    head = re.sub(rb"\s*<ArticleId IdType=\"doi\">[^<]*</ArticleId>", b"", head)
    stripped = head + b"<ReferenceList" + references
    assert _own_and_reference_dois(stripped) == ([], cited)
    reparsed = next(parse_articles(stripped))
    assert reparsed["doi"] is None
    assert not [i for i in reparsed["article_ids"] if i["id_type"] == "doi"]
    assert reparsed["references_count"] == record["references_count"]


def test_references_count_includes_nested_reference_lists(old_baseline):
    record = article(old_baseline, 400850)
    assert record["xml"].count(b"<ReferenceList>") > 1
    assert record["references_count"] == record["xml"].count(b"<Reference>") == 16


def test_known_ketamine_records(daily_update):
    for pmid in (33984391, 34034067):
        record = article(daily_update, pmid)
        assert "ketamine" in record["title"].lower()
    review = only_article(RECORDS / "38011560.xml")
    assert review["title"].startswith("Ketamine and the neurobiology of depression")
    assert review["pmcid"] == "PMC10710048" and review["doi"] == "10.1073/pnas.2305772120"


def test_other_fields_of_a_modern_record(daily_update):
    record = article(daily_update, 34088158)
    assert record["coi_statement"].startswith("Declaration of competing interest The authors declare")
    assert (record["doi"], record["pii"], record["publication_status"]) == (
        "10.1016/j.scitotenv.2021.147038",
        "S0048-9697(21)02108-2",
        "ppublish",
    )
    assert {k["owner"] for k in record["keywords"]} == {"NOTNLM"}
    assert (record["nlm_unique_id"], record["issn_linking"]) == ("0330500", "0048-9697")
    first = article(daily_update, 10704411)
    assert (first["journal"], first["journal_iso"], first["issn_print"], first["journal_country"]) == (
        "Current biology : CB",
        "Curr Biol",
        "0960-9822",
        "England",
    )
    assert first["chemicals"][0] == {"registry_number": "3K9958V90M", "ui": "D000431", "name": "Ethanol"}
    assert first["grants"][0] == {
        "grant_id": "T32 GM007618",
        "acronym": "GM",
        "agency": "NIGMS NIH HHS",
        "country": "United States",
    }


def test_mesh_qualifiers_supplementary_concepts_and_other_abstracts(old_baseline):
    pineal = [m for m in article(old_baseline, 399297)["mesh"] if m["descriptor_name"] == "Pineal Gland"][0]
    assert pineal["descriptor_ui"] == "D010870" and pineal["major"] is False
    assert {"ui": "Q000502", "name": "physiology", "major": True} in pineal["qualifiers"]
    assert article(old_baseline, 400771)["supplementary_concepts"] == [
        {"ui": "C010306", "name": "VAC protocol", "type": "Protocol"}
    ]
    other = article(old_baseline, 399315)["other_abstracts"]
    assert other[0]["type"] == "PIP" and other[0]["language"] == "eng"
    assert other[0]["text"].startswith("This study investigated the influence of hormone therapy")


def test_pages_from_start_and_end_page_when_medline_pagination_is_missing():
    data = (RECORDS / "1000.xml").read_bytes()
    assert b"<MedlinePgn>739-48</MedlinePgn>" in data
    assert next(parse_articles(data))["pages"] == "739-48"
    without = re.sub(rb"\s*<MedlinePgn>739-48</MedlinePgn>", b"", data)
    assert next(parse_articles(without))["pages"] == "739-748"


def test_record_xml_parses_again_to_the_same_record(daily_update):
    originals = [
        article(daily_update, 10704411),
        article(daily_update, 33780037),
        article(daily_update, 30271887, 2),
        only_article(RECORDS / "20301546.xml"),
        parse_path(PUBMED / "medline16n0902.xml.gz")[0],
    ]
    for original in originals:
        assert original["xml"].startswith((b"<PubmedArticle>", b"<PubmedBookArticle>", b"<MedlineCitation "))
        again = list(parse_pubmed_xml(original["xml"], source_name="stored record"))
        assert again == [original]


def test_file_like_and_bytes_give_the_same_records():
    path = RECORDS / "38011560.xml"
    assert list(parse_pubmed_xml(path.read_bytes())) == list(parse_pubmed_xml(io.BytesIO(path.read_bytes())))
    with pytest.raises(TypeError, match="not str"):
        parse_pubmed_xml(path.read_text())
    with pytest.raises(TypeError, match="binary"), open(path, encoding="utf-8") as text_mode:
        list(parse_pubmed_xml(text_mode))


# ===========================================================================
# 3. Hostile input, derived in code from real files
# ===========================================================================


def _real_record_document() -> bytes:
    return (RECORDS / "38011560.xml").read_bytes()


def _with_internal_subset(data: bytes, subset: bytes, title_replacement: bytes) -> bytes:
    doctype_end = data.index(b'pubmed_250101.dtd">') + len(b'pubmed_250101.dtd"')
    data = data[:doctype_end] + b" [" + subset + b"]" + data[doctype_end:]
    return re.sub(
        rb"<ArticleTitle>[^<]*</ArticleTitle>",
        b"<ArticleTitle>" + title_replacement + b"</ArticleTitle>",
        data,
        count=1,
    )


def _collect_until_error(data, name="hostile.xml") -> tuple[list[dict], PubmedXMLError]:
    seen: list = []
    with pytest.raises(PubmedXMLError) as caught:
        for record in parse_pubmed_xml(data, source_name=name):
            seen.append(record)
    assert name in str(caught.value)
    return seen, caught.value


def test_xxe_entity_is_refused_before_any_record():
    data = _with_internal_subset(_real_record_document(), b'<!ENTITY xxe SYSTEM "file:///etc/passwd">', b"&xxe;")
    seen, error = _collect_until_error(data)
    assert seen == []
    assert str(error).startswith("refusing XML with entity declarations") and "xxe" in str(error)
    assert "root:" not in str(error)


def test_external_parameter_entity_is_refused():
    data = _with_internal_subset(
        _real_record_document(), b'<!ENTITY % remote SYSTEM "http://127.0.0.1:9/evil.dtd"> %remote;', b"title"
    )
    seen, error = _collect_until_error(data)
    assert seen == [] and "refusing XML with entity declarations" in str(error)


FETCH_PROBE = r"""
import sys
from harvest.pubmed_xml import PubmedXMLError, parse_pubmed_xml

try:
    records = list(parse_pubmed_xml(sys.stdin.buffer.read(), source_name="probe"))
except PubmedXMLError as exc:
    print("refused:", exc)
else:
    print("parsed:", len(records))
"""


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs a named pipe")
def test_entities_and_dtds_pointing_at_files_or_servers_are_never_fetched(tmp_path):
    """Each document points at a named pipe (opening it for reading would block
    the parser until the timeout) or at a local server that notes any
    connection. The parse runs in a subprocess, so a fetch shows as a timeout
    or as a connection, never as a hung test run."""
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    url = f"http://127.0.0.1:{server.getsockname()[1]}".encode()
    data = _real_record_document()
    documents = {
        "general entity, file": _with_internal_subset(data, b'<!ENTITY x SYSTEM "file://%s">' % bytes(pipe), b"&x;"),
        "general entity, http": _with_internal_subset(data, b'<!ENTITY x SYSTEM "%s/x">' % url, b"&x;"),
        "parameter entity, file": _with_internal_subset(
            data, b'<!ENTITY %% p SYSTEM "file://%s"> %%p;' % bytes(pipe), b"t"
        ),
        "parameter entity, http": _with_internal_subset(data, b'<!ENTITY %% p SYSTEM "%s/p"> %%p;' % url, b"t"),
        # No internal subset, only the DOCTYPE's DTD URL, as NLM's own files have:
        "external DTD, http": data.replace(
            b"https://dtd.nlm.nih.gov/ncbi/pubmed/out/pubmed_250101.dtd", url + b"/pubmed.dtd"
        ),
    }
    outcomes = {}
    try:
        for name, document in documents.items():
            probe = subprocess.run(
                [sys.executable, "-c", FETCH_PROBE],
                input=document,
                capture_output=True,
                timeout=60,
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
            )
            assert probe.returncode == 0, probe.stderr.decode()
            outcomes[name] = probe.stdout.decode().split(":")[0]
        server.setblocking(False)
        with pytest.raises(BlockingIOError):
            server.accept()  # nobody connected
    finally:
        server.close()
    assert outcomes == {
        "general entity, file": "refused",
        "general entity, http": "refused",
        "parameter entity, file": "refused",
        "parameter entity, http": "refused",
        "external DTD, http": "parsed",
    }


def test_billion_laughs_is_refused_quickly():
    lol = [b'<!ENTITY lol0 "lol">'] + [
        b'<!ENTITY lol%d "%s">' % (i, b"".join(b"&lol%d;" % (i - 1) for _ in range(10))) for i in range(1, 10)
    ]
    data = _with_internal_subset(_real_record_document(), b"".join(lol), b"&lol9;")
    started = time.perf_counter()
    seen, error = _collect_until_error(data)
    assert time.perf_counter() - started < 2
    assert seen == [] and "refusing XML with entity declarations" in str(error)


def test_truncated_document_is_refused_after_the_complete_records():
    data = read_bytes(PUBMED / "medline16n0902.xml.gz")
    seen, error = _collect_until_error(data[: len(data) // 2], "half.xml")
    assert 200 < len(seen) < 604  # records before the cut were streamed out first
    assert "truncated or malformed XML in half.xml" in str(error)


def test_truncated_gzip_stream_is_refused():
    compressed = (PUBMED / "medline16n0902.xml.gz").read_bytes()
    stream = gzip.GzipFile(fileobj=io.BytesIO(compressed[: len(compressed) // 2]))
    seen, error = _collect_until_error(stream, "half.xml.gz")
    assert seen and "truncated or malformed XML in half.xml.gz" in str(error)


def test_invalid_utf8_is_refused():
    data = _real_record_document()
    assert data.count(b"Ketamine and the neurobiology") == 1
    corrupt = data.replace(b"Ketamine and the neurobiology", b"Ket\xc3\x28mine and the neurobiology")
    seen, error = _collect_until_error(corrupt)
    assert seen == [] and "invalid UTF-8" in str(error)


def test_html_error_pages_are_refused_naming_the_root():
    minimal = b"<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>"
    _, error = _collect_until_error(minimal, "gateway.html")
    assert "not a PubMed article document" in str(error) and "<html>" in str(error)
    _, error = _collect_until_error((DATA / "eutils" / "biopython" / "pubmed3.html").read_bytes(), "pubmed3.html")
    assert "<html>" in str(error)
    # HTML is rarely well-formed XML: an undefined &nbsp; before any element closes
    _, error = _collect_until_error(b"<!DOCTYPE html>\n<html><body>&nbsp;Service Unavailable</body></html>", "503.html")
    assert "not a PubMed article document" in str(error) and "<html>" in str(error)


def test_esummary_and_elink_results_are_refused_naming_the_root():
    _, error = _collect_until_error((PUBMED / "records-pubmedpy" / "esummary.xml").read_bytes(), "esummary.xml")
    assert "root element <eSummaryResult>" in str(error)
    elink = PUBMED / "records-metapub-repo-extra" / "medgen_elink_pubmed_0_entries.xml"
    _, error = _collect_until_error(elink.read_bytes(), "elink.xml")
    assert "root element <eLinkResult>" in str(error)


def test_ncbi_error_answers_are_refused_naming_the_error():
    esummary_error = (DATA / "eutils" / "biopython" / "esummary8.xml").read_bytes()
    _, error = _collect_until_error(esummary_error, "esummary8.xml")
    assert "NCBI returned an error" in str(error) and "Neither query_key nor id specified" in str(error)
    epost_errors = (DATA / "eutils" / "biopython" / "epost3.xml").read_bytes()
    _, error = _collect_until_error(epost_errors, "epost3.xml")
    assert "Empty ID list; Nothing to store" in str(error) and "Some IDs have invalid value" in str(error)
    # The same error text as a bare <ERROR> document, the shape EFetch answers with.
    bare = re.search(rb"<ERROR>.*?</ERROR>", esummary_error).group(0)
    _, error = _collect_until_error(bare, "efetch.xml")
    assert "Neither query_key nor id specified" in str(error)


def test_gigantic_text_node_is_refused():
    data = _real_record_document()
    match = re.search(rb"<AbstractText[^>]*>([^<]{200,})", data)
    text = match.group(1)
    gigantic = text * (10_500_000 // len(text) + 1)
    assert len(gigantic) > 10_000_000
    seen, error = _collect_until_error(data[: match.start(1)] + gigantic + data[match.end(1) :])
    assert seen == [] and "text node too large" in str(error)


def test_digits_int_cannot_read_leave_a_date_unread_not_the_record():
    """'²⁰²³' is digits to str.isdigit() but not to int(): a record whose PubDate carries such
    a year parses, without that date, instead of failing the file."""
    data = _real_record_document()
    pub_date = re.search(rb"<PubDate>\s*<Year>(\d{4})</Year>", data)
    assert pub_date is not None
    [real] = [r for r in parse_pubmed_xml(data) if r["type"] == "article"]
    for replacement in ("²⁰²³", "٢٠٢٣"):  # superscripts; Arabic-Indic digits, which int() reads
        crafted = data[: pub_date.start(1)] + replacement.encode() + data[pub_date.end(1) :]
        [record] = [r for r in parse_pubmed_xml(crafted) if r["type"] == "article"]
        assert record["pmid"] == real["pmid"] and record["title"] == real["title"]
        assert record["pub_year"] == (2023 if replacement == "٢٠٢٣" else None), replacement


def test_real_doctype_with_http_dtd_url_parses_without_fetching(old_baseline):
    with gzip.open(PUBMED / OLD_BASELINE, "rb") as fh:
        head = fh.read(400)
    assert b'"http://dtd.nlm.nih.gov/ncbi/pubmed/out/pubmed_190101.dtd">' in head
    assert len(articles(old_baseline)) == 20_000  # parsed offline: the DTD is never loaded


# ===========================================================================
# 4. Memory: streaming, so a document twice as long needs no more memory
# ===========================================================================
#
# Two measurements, because they see different things. Resident memory (VmRSS)
# sees libxml2's tree, where a parser that forgot to clear would spend its
# memory; tracemalloc sees only Python objects (records or element proxies kept
# by mistake) and slows parsing about sixfold, so it traces the 604-record file
# rather than the 20,000-record one.


def _medline_records_repeated(times: int) -> bytes:
    """medline16n0902.xml.gz with its records (and DeleteCitation) written `times` times."""
    data = read_bytes(PUBMED / "medline16n0902.xml.gz")
    opening, closing = b"<MedlineCitationSet>", b"</MedlineCitationSet>"
    start, end = data.index(opening) + len(opening), data.rindex(closing)
    return data[:start] + data[start:end] * times + data[end:]


def _traced_peak(document: bytes) -> tuple[int, int]:
    stream = io.BytesIO(document)
    tracemalloc.start()
    try:
        count = sum(1 for _ in parse_pubmed_xml(stream, source_name="repeated"))
        return count, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_traced_python_memory_does_not_grow_with_the_document():
    once, twice = _medline_records_repeated(1), _medline_records_repeated(2)
    list(parse_pubmed_xml(_real_record_document()))  # warm up: regex and lxml one-time allocations
    count_once, peak_once = _traced_peak(once)
    count_twice, peak_twice = _traced_peak(twice)
    print(f"\ntracemalloc peak: once {peak_once:,} B ({count_once} records), twice {peak_twice:,} B ({count_twice})")
    assert (count_once, count_twice) == (605, 1210)
    assert peak_twice < 1.5 * peak_once
    assert peak_once < len(once) / 4  # far below the 3.9 MB document: records are not kept


MEMORY_PROBE = r"""
import gzip, json, sys
from harvest.pubmed_xml import parse_pubmed_xml

path, per_copy = sys.argv[1], int(sys.argv[2])
OPEN, CLOSE = b"<PubmedArticleSet>", b"</PubmedArticleSet>"


def body(offset):
    # The records of the file, streamed in 1 MB pieces, without the closing tag.
    with gzip.open(path, "rb") as fh:
        fh.seek(offset)
        held = b""
        while chunk := fh.read(1 << 20):
            held += chunk
            yield held[:-64]
            held = held[-64:]
        yield held[: held.rindex(CLOSE)]


def document_twice():
    with gzip.open(path, "rb") as fh:
        head = fh.read(4096)
    start = head.index(OPEN) + len(OPEN)
    yield head[:start]
    yield from body(start)
    yield from body(start)
    yield CLOSE + b"\n"


class ChunkStream:
    # A binary file-like object over a generator: the document is never whole in memory.
    def __init__(self, chunks):
        self.chunks, self.buffer = chunks, b""

    def read(self, size=-1):
        while size < 0 or len(self.buffer) < size:
            try:
                self.buffer += next(self.chunks)
            except StopIteration:
                break
        size = len(self.buffer) if size < 0 else size
        out, self.buffer = self.buffer[:size], self.buffer[size:]
        return out


def rss_kib():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


rss, count = [0, 0], 0
for record in parse_pubmed_xml(ChunkStream(document_twice()), source_name="twice"):
    count += 1
    if count % 250 == 0:
        half = 0 if count <= per_copy else 1
        rss[half] = max(rss[half], rss_kib())
print(json.dumps({"count": count, "max_rss_kib_per_copy": rss}))
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmRSS from /proc")
def test_resident_memory_stays_flat_when_the_document_doubles():
    """The 20,000-record file's records twice in one 236 MB document, streamed
    from a generator: the most memory resident while parsing the second copy
    is within 1.5x of the most while parsing the first -- what parsing the file
    once costs. A parser that kept the tree would need about twice as much."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    probe = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE, str(PUBMED / OLD_BASELINE), "20000"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert probe.returncode == 0, probe.stderr
    result = json.loads(probe.stdout)
    print(f"\nresident memory, first copy vs second copy: {result}")
    first, second = result["max_rss_kib_per_copy"]
    assert result["count"] == 40_000
    assert second < 1.5 * first
    assert first < 200 * 1024  # the 118 MB of XML per copy never sit in memory


def _without_doctype(data: bytes) -> bytes:
    return re.sub(rb"<!DOCTYPE[^>]*>", b"", data, count=1)


def test_deep_nesting_is_reported_as_what_libxml2_said():
    data = _real_record_document()
    first = data.index(b"<PubmedArticle>")
    deep = data[:first] + b"<x>" * 300 + b"</x>" * 300 + data[first:]
    _, error = _collect_until_error(deep)
    assert "nested too deeply" in str(error) and "Excessive depth in document" in str(error)
    assert "text node" not in str(error)


@pytest.mark.parametrize("where", [b"<PubmedArticleSet>", b"<ArticleTitle>"])
def test_an_undefined_entity_early_in_a_file_is_reported_as_such(where):
    # Without a DOCTYPE an undefined entity is a fatal error; libxml2's push parser follows it
    # with a spurious "Start tag expected" at line 1 that must not be what the user reads.
    data = _without_doctype(_real_record_document()).replace(where, where + b"&nbsp;", 1)
    _, error = _collect_until_error(data)
    assert "undefined entity" in str(error) and "Entity 'nbsp' not defined" in str(error)
    assert "Start tag expected" not in str(error)


@pytest.mark.parametrize("filler", [b"<a/>", b"<!-- -->", b'<a x="1" y="2"/>', b"<![CDATA[x]]>"])
def test_a_document_that_goes_on_without_records_is_refused_after_the_records_before_it(filler):
    data = _real_record_document()
    end = data.index(b"</PubmedArticleSet>")
    record = data[data.index(b"<PubmedArticle>") : end]
    hostile = data[:end] + filler * (600_000 // filler.count(b"<") + 1) + record + data[end:]
    seen, error = _collect_until_error(hostile)
    assert [r["pmid"] for r in seen] == [38011560]  # the record before the filler is yielded
    assert "without a complete record" in str(error)
