"""Crafted records for the server's hostile-input tests and the chaos catalog scenario: copies
of the real record 38011560 (a ketamine review, records/) under PMIDs from 99000001, each with
one field changed. Built in code from the real record; nothing here is invented data.

  99000001  its abstract replaced by its own keywords "ketamine; depression." repeated to 1 MB
            (FTS5's snippet() took 11 s over it, past the 3 s limit, so the search page failed);
  99000002  its title with bidirectional controls (a right-to-left override and isolates) in it.
"""

from __future__ import annotations

import copy

from lxml import etree

from tests.conftest import RECORDS

SOURCE_PMID = 38011560
BIG = 99000001
BIDI = 99000002
BIG_FILLER = "ketamine; depression."  # two of 38011560's own keywords
RLO, PDF, RLI, PDI = "\u202e", "\u202c", "\u2067", "\u2069"
BIDI_CONTROLS = {chr(c) for c in [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]}


def crafted_records() -> bytes:
    """A PubmedArticleSet of copies of a real record, each with one field changed."""
    source = etree.parse(str(RECORDS / f"{SOURCE_PMID}.xml")).find(".//PubmedArticle")
    out = etree.Element("PubmedArticleSet")

    def clone(pmid: int):
        record = copy.deepcopy(source)
        record.find("MedlineCitation/PMID").text = str(pmid)
        for article_id in record.iter("ArticleId"):
            if article_id.get("IdType") == "pubmed" and article_id.getparent().getparent().tag == "PubmedData":
                article_id.text = str(pmid)
        out.append(record)
        return record

    big = clone(BIG)
    filler = (BIG_FILLER + " ") * (1_000_000 // (len(BIG_FILLER) + 1) + 1)
    big.find(".//AbstractText").text = filler[:1_000_000]
    bidi = clone(BIDI)
    title = bidi.find(".//ArticleTitle")
    words = title.text.split(" ")
    title.text = f"{' '.join(words[:2])} {RLO}{' '.join(words[2:5])}{PDF} {RLI}{' '.join(words[5:])}{PDI}"
    return etree.tostring(out, xml_declaration=True, encoding="UTF-8")
