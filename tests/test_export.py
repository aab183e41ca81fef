"""Exports for reference managers: RIS, BibTeX and CSL-JSON from real stored records,
read back by real parsers (rispy, bibtexparser)."""

from __future__ import annotations

import json
import re

import bibtexparser
import pytest
import rispy

from harvest import export, store
from harvest.pubmed_xml import parse_pubmed_xml
from tests.conftest import RECORDS
from tests.pipeline import save_records

REVIEW = 38011560  # Krystal et al. 2023, PNAS: the ketamine-and-depression review in records/
BOOK = 20301546  # a PubmedBookArticle (GeneReviews) with editors
COLLECTIVE = 34843274  # a byline with a group author


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    """Every record of records/, stored through the real save path."""
    db = store.open_db(tmp_path_factory.mktemp("export") / "catalog.db")
    run_id = store.start_run(db, mode="import", query_version="test", query_text="records/", window_from=None)
    records = [
        r for path in sorted(RECORDS.glob("*.xml")) for r in parse_pubmed_xml(path.read_bytes(), source_name=path.name)
    ]
    save_records(db, records, run_id)
    return db


@pytest.fixture(scope="module")
def everything(catalog):
    pmids = [row[0] for row in catalog.execute("select pmid from articles order by pmid")]
    return pmids, export.load_records(catalog, pmids)


def test_every_record_reads_back_from_ris(everything):
    pmids, records = everything
    entries = rispy.loads(export.to_ris(records))
    assert len(entries) == len(pmids) == 215
    assert [int(e["accession_number"]) for e in entries] == pmids
    assert all(e["title"] for e in entries)
    review = next(e for e in entries if e["accession_number"] == str(REVIEW))
    assert review["type_of_reference"] == "JOUR"
    assert review["authors"][:2] == ["Krystal, John H", "Kaye, Alfred P"]
    assert review["title"].startswith("Ketamine and the neurobiology of depression")
    assert (
        review["secondary_title"] == "Proceedings of the National Academy of Sciences of the United States of America"
    )
    assert review["year"] == "2023"
    assert review["doi"] == "10.1073/pnas.2305772120"
    assert review["volume"] == "120" and review["number"] == "49"
    assert review["start_page"] == "e2305772120"
    assert f"https://pubmed.ncbi.nlm.nih.gov/{REVIEW}/" in review["urls"]
    assert "ketamine" in review["keywords"]


def test_every_record_reads_back_from_bibtex(everything):
    pmids, records = everything
    library = bibtexparser.parse_string(export.to_bibtex(records))
    assert library.failed_blocks == []
    assert [e.key for e in library.entries] == [f"pmid{p}" for p in pmids]
    review = library.entries_dict[f"pmid{REVIEW}"]
    assert review.entry_type == "article"
    assert review["author"].startswith("Krystal, John H and Kaye, Alfred P and ")
    assert (
        review["title"]
        == "{Ketamine and the neurobiology of depression: Toward next-generation rapid-acting antidepressant treatments}"
    )
    assert review["journal"] == "Proceedings of the National Academy of Sciences of the United States of America"
    assert (review["year"], review["month"], review["volume"], review["number"]) == ("2023", "dec", "120", "49")
    assert review["doi"] == "10.1073/pnas.2305772120"
    assert review["pmid"] == str(REVIEW) and review["pmcid"] == "PMC10710048"


def test_bibtex_escapes_what_latex_would_read_as_commands(everything, catalog):
    _, records = everything
    with_percent = [r for r in records if r["abstract"] and "%" in r["abstract"]]
    assert with_percent, "records/ has abstracts with percentages"
    library = bibtexparser.parse_string(export.to_bibtex(with_percent))
    assert library.failed_blocks == []
    for record, entry in zip(with_percent, library.entries):
        assert entry["abstract"] == export.bibtex_escape(record["abstract"])
        assert re.search(r"(?<!\\)%", entry["abstract"]) is None


def test_a_book_exports_as_a_book_with_its_editors(catalog):
    [book] = export.load_records(catalog, [BOOK])
    [ris] = rispy.loads(export.to_ris([book]))
    assert ris["type_of_reference"] == "BOOK"
    assert ris["secondary_authors"]  # A2: the editors
    [entry] = bibtexparser.parse_string(export.to_bibtex([book])).entries
    assert entry.entry_type == "book" and " and " in entry["editor"]
    [item] = export.csl_items([book])
    assert item["type"] == "book" and item["editor"]


def test_a_group_author_stays_one_name(catalog):
    [record] = export.load_records(catalog, [COLLECTIVE])
    groups = [a["literal"] for a in record["authors"] if "literal" in a]
    assert groups
    [entry] = bibtexparser.parse_string(export.to_bibtex([record])).entries
    assert "{" + export.bibtex_escape(groups[0]) + "}" in entry["author"]
    [ris] = rispy.loads(export.to_ris([record]))
    assert groups[0] in ris["authors"]


def test_csl_json_items_carry_what_citeproc_needs(everything):
    pmids, records = everything
    items = json.loads(export.to_csl_json(records))
    assert [item["PMID"] for item in items] == [str(p) for p in pmids]
    assert len({item["id"] for item in items}) == len(items)
    review = next(item for item in items if item["PMID"] == str(REVIEW))
    assert review["type"] == "article-journal"
    assert review["issued"] == {"date-parts": [[2023, 12, 5]]}
    assert review["author"][0] == {"family": "Krystal", "given": "John H"}
    assert review["container-title-short"] == "Proc Natl Acad Sci U S A"
    assert review["DOI"] == "10.1073/pnas.2305772120" and review["PMCID"] == "PMC10710048"


def test_dates_keep_pubmeds_precision_and_pages_expand():
    assert export.date_parts("2021-05-11", "2021 May 11", 2021) == [2021, 5, 11]
    assert export.date_parts("1975-09-01", "1975 Sep", 1975) == [1975, 9]
    assert export.date_parts("2021-01-01", "2021 Jan-Feb", 2021) == [2021, 1]
    assert export.date_parts("2020-01-01", "2020 Spring", 2020) == [2020]
    assert export.split_pages("739-48") == ("739", "748")
    assert export.split_pages("20-1") == ("20", "21")
    assert export.split_pages("e2305772120") == ("e2305772120", None)
    assert export.split_pages("S12-S14") == ("S12", "S14")
    assert export.split_pages(None) == (None, None)


def test_export_catalog_picks_records_by_search(catalog):
    ris = export.export_catalog(catalog, "ris", search="ketamine")
    pmids = {int(e["accession_number"]) for e in rispy.loads(ris)}
    assert REVIEW in pmids
    expected = {row[0] for row in catalog.execute("select rowid from articles_fts where articles_fts match 'ketamine'")}
    assert pmids == expected
    with pytest.raises(ValueError):
        export.export_catalog(catalog, "endnote")
