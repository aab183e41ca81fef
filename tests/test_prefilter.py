"""The byte-level topic prefilter of `import --match-topic` never drops a record the full matcher
keeps: over every shared PubMed file, and over clones of a real record that carry a ketamine
word in each field and in every form the parser would read as one."""

from __future__ import annotations

import gzip
import re
import sys
from pathlib import Path

import pytest

from harvest import prefilter
from harvest.importer import record_matches_topic
from harvest.pubmed_xml import PubmedXMLError, parse_pubmed_xml
from harvest.query import _TEXT_PATTERNS, CONCEPTS, DEPRESSION_OR_SUICIDALITY
from tests.conftest import DATA, RECORDS


def shared_pubmed_files() -> list[Path]:
    files = [p for p in sorted((DATA / "pubmed").rglob("*")) if p.name.endswith((".xml", ".xml.gz"))]
    files += [p for p in sorted((DATA / "eutils").rglob("*")) if p.name.endswith((".xml", ".xml.gz"))]
    return files


def read_bytes(path: Path) -> bytes:
    raw = path.read_bytes()
    return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw


def articles(document: bytes, name: str = "document") -> list:
    return [r for r in parse_pubmed_xml(document, source_name=name) if r["type"] != "delete"]


def prefiltered(document: bytes) -> tuple[bytes, int]:
    import io

    stream = prefilter.TopicPrefilter(io.BytesIO(document))
    stream.CHUNK = 4096  # small reads: records cut across reads, as in a real file
    out = stream.read()
    return out, stream.dropped


def test_the_stems_cover_every_term_and_heading_of_the_ketamine_concept():
    ketamine = CONCEPTS[0]
    for word in ketamine.text + ketamine.mesh:
        assert any(stem.decode() in word.lower() for stem in prefilter.STEMS), word


def test_the_look_alike_letters_are_every_one_unicode_has():
    letters = sorted({chr(c) for stem in prefilter.STEMS for c in stem})
    everything = "".join(chr(cp) for cp in range(128, sys.maxunicode + 1) if not 0xD800 <= cp <= 0xDFFF)
    found = set()
    for letter in letters:
        for match in re.finditer(re.escape(letter), everything, re.I):
            found.add((match.group().encode(), letter.encode()))
        found |= {(c.encode(), letter.encode()) for c in everything if c.lower() == letter}
    assert found == set(prefilter.LOOKALIKES)


@pytest.fixture(scope="module")
def files_checked():
    """Every shared file the parser reads: (name, PMIDs the matcher keeps, PMIDs after the
    prefilter, records, records dropped)."""
    checked = []
    for path in shared_pubmed_files():
        document = read_bytes(path)
        try:
            records = articles(document, str(path))
        except PubmedXMLError:
            continue  # not a PubMed article document (an eSummary, an ELink answer...)
        kept_by_matcher = {r["pmid"] for r in records if record_matches_topic(r)}
        out, dropped = prefiltered(document)
        after = {r["pmid"] for r in articles(out, str(path))}
        checked.append((path.name, kept_by_matcher, after, len(records), dropped))
    return checked


def test_no_shared_record_the_matcher_keeps_is_dropped(files_checked):
    assert len(files_checked) >= 30
    for name, kept, after, _records, _dropped in files_checked:
        assert kept <= after, f"{name}: the prefilter dropped {sorted(kept - after)[:10]}"
    assert sum(len(kept) for _, kept, *_ in files_checked) >= 3  # the real ketamine records are there


def test_the_prefilter_drops_most_off_topic_records(files_checked):
    records = sum(r for *_, r, _ in files_checked)
    dropped = sum(d for *_, d in files_checked)
    assert records > 30_000 and dropped / records > 0.95, (records, dropped)
    for name, _kept, after, count, dropped in files_checked:
        assert len(after) + dropped >= count, name  # nothing vanishes uncounted


# -- clones carrying the topic words in each field and form ------------------------------------

FORMS = [
    "ketamine",
    "KETAMINE",
    "Esketamine",
    "arketamine",
    "S-ketamine",
    "R-Ketamine",
    "Spravato",
    "&#x4b;etamine",
    "&#x4B;ETAMINE",
    "&#75;etamine",
    "&#107;etamine",
    "&#x0000006b;etamine",
    "keta<i>mine</i>",
    "<i>keta</i>mine",
    "<i>keta</i><b>mine</b>",
    "<b><i>keta</i></b>mine",
    "keta<sup/>mine",
    "keta<!-- a comment -->mine",
    "keta<?pi x?>mine",
    "<![CDATA[ketamine]]>",
    "\u212aetamine",
    "&#8490;etamine",
    "&#x212A;ETAMINE",
    "ketam\u0131ne",
    "KETAM\u0130NE",
    "ketam&#305;ne",
    "\u017fpravato",
    "&#383;pravato",
    "spr&#x61;vato",
    "Ketamin-induced",
]


def _off_topic_source() -> tuple[bytes, dict]:
    """A real record the matcher rejects only for want of a ketamine word."""
    for path in sorted(RECORDS.glob("*.xml")):
        document = path.read_bytes()
        if any(stem in document.lower() for stem in prefilter.STEMS):
            continue
        [record] = articles(document, path.name)
        text = " ".join(filter(None, [record.get("title"), record.get("abstract")]))
        if (
            record.get("title")
            and record.get("abstract")
            and _TEXT_PATTERNS[DEPRESSION_OR_SUICIDALITY.name].search(text)
        ):
            return document, record
    raise AssertionError("no real record with a depression word and no ketamine word in records/")


FIELDS = {
    "title": (rb"<ArticleTitle>", lambda f: b"<ArticleTitle>" + f + b" "),
    "abstract": (rb"<AbstractText[^>]*>", lambda f: b"<AbstractText>" + f + b" "),
    "keyword": (
        rb"</MedlineCitation>",
        lambda f: (
            b'<KeywordList Owner="NOTNLM"><Keyword MajorTopicYN="N">'
            + f
            + b"</Keyword></KeywordList></MedlineCitation>"
        ),
    ),
    "mesh": (
        rb"</MedlineCitation>",
        lambda f: (
            b'<MeshHeadingList><MeshHeading><DescriptorName UI="D007649" MajorTopicYN="N">'
            + f
            + b"</DescriptorName></MeshHeading></MeshHeadingList></MedlineCitation>"
        ),
    ),
    "chemical": (
        rb"</MedlineCitation>",
        lambda f: (
            b'<ChemicalList><Chemical><RegistryNumber>0</RegistryNumber><NameOfSubstance UI="D007649">'
            + f
            + b"</NameOfSubstance></Chemical></ChemicalList></MedlineCitation>"
        ),
    ),
    "other abstract": (
        rb"</MedlineCitation>",
        lambda f: (
            b'<OtherAbstract Type="Publisher" Language="eng"><AbstractText>'
            + f
            + b"</AbstractText></OtherAbstract></MedlineCitation>"
        ),
    ),
}


def _clone(document: bytes, pmid: int, new_pmid: int, field: str, form: str, compact: bool) -> bytes:
    pattern, replacement = FIELDS[field]
    raw = form.encode("utf-8")
    if field in ("keyword", "mesh"):  # a field that already exists is replaced, not repeated
        tag = b"KeywordList" if field == "keyword" else b"MeshHeadingList"
        document = re.sub(rb"<" + tag + rb"[^>]*>.*?</" + tag + rb">", b"", document, flags=re.S)
    cloned, count = re.subn(pattern, lambda _: replacement(raw), document, count=1)
    assert count == 1, field
    cloned = cloned.replace(
        f'<PMID Version="1">{pmid}</PMID>'.encode(), f'<PMID Version="1">{new_pmid}</PMID>'.encode()
    )
    if compact:
        cloned = re.sub(rb">\s+<", b"><", cloned)
    return cloned


@pytest.mark.parametrize("compact", [False, True], ids=["pubmed-layout", "compact"])
def test_clones_with_the_topic_words_in_each_field_and_form_are_never_dropped(compact):
    source, record = _off_topic_source()
    assert not record_matches_topic(record)
    assert prefiltered(source)[1] == 1  # the source itself is dropped: the clones are what is kept
    kept_by_matcher = 0
    for i, (field, form) in enumerate((f, form) for f in FIELDS for form in FORMS):
        clone = _clone(source, record["pmid"], 99_000_001 + i, field, form, compact)
        [parsed] = articles(clone, f"clone {field} {form!r}")
        if not record_matches_topic(parsed):
            continue  # a field or form the matcher does not read as ketamine
        kept_by_matcher += 1
        out, dropped = prefiltered(clone)
        assert dropped == 0 and [r["pmid"] for r in articles(out)] == [parsed["pmid"]], (field, form)
    # Title, abstract and keywords take every form; MeSH the plain heading.
    assert kept_by_matcher >= 3 * len(FORMS)
