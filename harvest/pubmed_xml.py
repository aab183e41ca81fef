"""Streaming parser for PubMed XML: bytes in, one declared record (ArticleRecord) per record out.

What this module owns
    Turning one PubMed XML document into dicts, in document order. Accepted
    documents: ``PubmedArticleSet`` (EFetch answers, annual baseline and daily
    update files), ``MedlineCitationSet`` (the old MEDLINE format, no
    ``PubmedData``), ``PubmedBookArticleSet``, and a bare ``PubmedArticle``,
    ``PubmedBookArticle`` or ``MedlineCitation`` -- which is what an article's
    own ``xml`` bytes are, so a stored record can be parsed again on its own.
    It yields

    * ``{"type": "delete", "pmid": int, "pmid_version": int}`` for every PMID of
      a ``DeleteCitation`` block;
    * ``{"type": "article", ...}`` for every ``PubmedArticle``,
      ``PubmedBookArticle`` and bare ``MedlineCitation``, with every key of
      ``_empty_article`` always present (lists empty and scalars None when the
      record has nothing for them). Identifiers (doi, pii, pmcid, article_ids)
      come only from the article's own ArticleIdList and ELocationID, never
      from its reference list. Book chapters list their authors with
      ``role="author"`` and the book's editors with ``role="editor"``,
      positions counted within each role.

    It also owns deciding which documents are not PubMed article documents
    (eSummary/eLink results, NCBI ``<ERROR>`` answers, HTML pages) and which
    are unsafe (entity declarations), and saying so with ``PubmedXMLError``.

What it must never do
    No I/O beyond reading ``source``: no files opened, no network, no DTD
    loading, no entity expansion, no database, no logging. It never keeps
    records after yielding them: each finished record is cleared from the tree
    with everything before it, so memory does not grow with the document.

Errors are raised lazily, while iterating: the records before a fault have
already been yielded when the error arrives, so a caller that must treat a
document as all-or-nothing collects (or stages) its records and commits only
once iteration has finished without an exception.
"""

from __future__ import annotations

import calendar
import gzip
import io
import re
import zlib
from collections.abc import Iterator
from typing import Literal, TypedDict

from lxml import etree

__all__ = ["ArticleRecord", "Deletion", "PubmedXMLError", "parse_articles", "parse_pubmed_xml"]


class PubmedXMLError(ValueError):
    """The document is not safe, well-formed PubMed XML; the message says why."""


# --------------------------------------------------------------------------
# What the parser yields: the record shape every later stage reads
# --------------------------------------------------------------------------


class Deletion(TypedDict):
    """One PMID of a DeleteCitation block."""

    type: Literal["delete"]
    pmid: int
    pmid_version: int


class AbstractSection(TypedDict):
    label: str | None
    nlm_category: str | None
    text: str


class OtherAbstract(TypedDict):
    type: str | None
    language: str | None
    text: str


class ArticleId(TypedDict):
    id_type: str | None
    value: str
    source: Literal["ArticleIdList", "ELocationID"]


class PublicationType(TypedDict):
    ui: str | None
    name: str | None


class Author(TypedDict):
    position: int  # 1-based, counted within the role
    role: str  # "author" or "editor"
    last_name: str | None
    fore_name: str | None
    initials: str | None
    suffix: str | None
    collective_name: str | None
    affiliations: list[str]
    orcid: str | None
    equal_contrib: bool
    valid: bool


class MeshQualifier(TypedDict):
    ui: str | None
    name: str | None
    major: bool


class MeshHeading(TypedDict):
    descriptor_ui: str | None
    descriptor_name: str | None
    major: bool
    qualifiers: list[MeshQualifier]


class SupplementaryConcept(TypedDict):
    ui: str | None
    name: str | None
    type: str | None


class Chemical(TypedDict):
    registry_number: str | None
    ui: str | None
    name: str | None


class Keyword(TypedDict):
    keyword: str
    owner: str | None
    major: bool


class Grant(TypedDict):
    grant_id: str | None
    acronym: str | None
    agency: str | None
    country: str | None


class Databank(TypedDict):
    databank: str | None
    accession: str | None


class TrialRegistration(TypedDict):
    registry: str  # e.g. "ClinicalTrials.gov", "EudraCT"
    trial_id: str  # canonical form
    source: Literal["databank", "abstract"]


class CommentCorrection(TypedDict):
    ref_type: str | None
    ref_pmid: int | None
    ref_source: str | None


class ArticleRecord(TypedDict):
    """One PubmedArticle, PubmedBookArticle or bare MedlineCitation. Every key is always
    present (lists empty and scalars None when the record has nothing for them); each list
    holds one declared part (above) per element. The tag stage (`tags.tag_record`)
    and the rows stage (`rows.article_rows`) read it and never change it."""

    type: Literal["article"]
    pmid: int
    pmid_version: int
    is_book: bool
    title: str | None
    vernacular_title: str | None
    abstract: str | None
    abstract_sections: list[AbstractSection]
    other_abstracts: list[OtherAbstract]
    journal: str | None
    journal_iso: str | None
    issn_print: str | None
    issn_electronic: str | None
    issn_linking: str | None
    nlm_unique_id: str | None
    journal_country: str | None
    volume: str | None
    issue: str | None
    pages: str | None
    pub_date: str | None  # ISO, as precise as the record says
    pub_year: int | None
    pub_date_raw: str | None
    article_date: str | None
    history: dict[str, str]  # PubMed pub status -> ISO date
    date_created: str | None
    date_completed: str | None
    date_revised: str | None
    entrez_date: str | None
    doi: str | None
    pii: str | None
    pmcid: str | None
    article_ids: list[ArticleId]
    languages: list[str]
    publication_types: list[PublicationType]
    authors: list[Author]
    mesh: list[MeshHeading]
    supplementary_concepts: list[SupplementaryConcept]
    chemicals: list[Chemical]
    keywords: list[Keyword]
    grants: list[Grant]
    databanks: list[Databank]
    trial_registrations: list[TrialRegistration]
    comments_corrections: list[CommentCorrection]
    publication_status: str | None
    citation_status: str | None
    indexing_method: str | None
    references_count: int
    coi_statement: str | None
    xml: bytes  # the record's own element, as NLM sent it: what the catalog keeps


PubmedItem = ArticleRecord | Deletion


# Roots that hold PubMed records: the sets of the PubMed and MEDLINE DTDs, and a
# bare record -- what EFetch-like tools save, and what an article's "xml" bytes
# are, so that a stored record can be parsed again on its own.
ACCEPTED_ROOTS = frozenset(
    {
        "PubmedArticleSet",
        "MedlineCitationSet",
        "PubmedBookArticleSet",
        "PubmedArticle",
        "PubmedBookArticle",
        "MedlineCitation",
    }
)
_RECORD_TAGS = frozenset({"PubmedArticle", "PubmedBookArticle"})
_WATCHED_TAGS = _RECORD_TAGS | {"MedlineCitation", "DeleteCitation", "ERROR"}
_MAX_EVENTS_AFTER_REFUSED_ROOT = 20_000  # enough to find an <ERROR> in any real NCBI answer
_HEAD_BYTES = 4096
_FIRST_TAG = re.compile(rb"<([A-Za-z_][\w.:-]*)")


# --------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------


def parse_pubmed_xml(source, *, source_name: str = "document") -> Iterator[PubmedItem]:
    """Yield delete and article dicts from a PubMed XML document, in order.

    ``source`` is ``bytes`` (or ``bytearray``/``memoryview``) or a binary
    file-like object with ``read(n)`` (``gzip.open(path, "rb")``, an HTTP body).
    ``source_name`` labels the document in error messages.

    Raises ``PubmedXMLError`` (while iterating) for entity declarations,
    malformed or truncated XML, invalid UTF-8, oversized text nodes, and roots
    that are not PubMed article documents; ``TypeError`` at once if ``source``
    is not bytes or a binary stream.
    """
    reader = _BinaryReader(source, source_name)
    return _iter_documents_records(reader, source_name)


def parse_articles(source, *, source_name: str = "document") -> Iterator[ArticleRecord]:
    """The article records of a document, in order (its deletions left out)."""
    for item in parse_pubmed_xml(source, source_name=source_name):
        if item["type"] == "article":
            yield item


# --------------------------------------------------------------------------
# Streaming and safety
# --------------------------------------------------------------------------


# What a document may hold between two complete records (or before the first): the bytes,
# and the markup that becomes nodes in libxml2's tree ("<" starts an element, a comment,
# CDATA or a processing instruction; "=" an attribute). libxml2 keeps all of it until the
# next record is finished and cleared, and buffers a comment, CDATA section or start tag
# whole before parsing it, so these bounds are what keep memory independent of the input.
# The largest real record in the shared data (a 2021 update file) is 172 KB with 3,510
# "<"; a 500-record efetch answer is under 8 MB.
MAX_BYTES_WITHOUT_RECORD = 32 * 1024 * 1024
MAX_MARKUP_WITHOUT_RECORD = 500_000


class _BinaryReader:
    """Binary ``read(n)`` over bytes or a stream; turns decompression faults
    (a cut-off or corrupt gzip body) into PubmedXMLError, and refuses a document that
    goes on for more than MAX_BYTES_WITHOUT_RECORD bytes (or MAX_MARKUP_WITHOUT_RECORD
    markup characters) without a complete record: `record_finished` resets the count."""

    def __init__(self, source, source_name: str):
        if isinstance(source, (bytes, bytearray, memoryview)):
            self._stream = io.BytesIO(bytes(source))
        elif isinstance(source, str):
            raise TypeError(
                "parse_pubmed_xml needs bytes or a binary file-like object, not str "
                "(pass the raw bytes, or a file opened in 'rb' mode)"
            )
        elif hasattr(source, "read"):
            self._stream = source
        else:
            raise TypeError(f"parse_pubmed_xml needs bytes or a binary file-like object, not {type(source).__name__}")
        self._name = source_name
        self._pending = b""  # bytes peeked at and not yet read
        self.head = b""  # the first bytes read, to name the root of a document that fails early
        self.offset = 0  # bytes handed to the parser
        self._bytes_without_record = 0
        self._markup_without_record = 0

    def record_finished(self) -> None:
        self._bytes_without_record = 0
        self._markup_without_record = 0

    def _count(self, chunk: bytes) -> bytes:
        self.offset += len(chunk)
        self._bytes_without_record += len(chunk)
        self._markup_without_record += chunk.count(b"<") + chunk.count(b"=")
        if self._bytes_without_record > MAX_BYTES_WITHOUT_RECORD:
            over = f"over {MAX_BYTES_WITHOUT_RECORD // (1024 * 1024)} MB"
        elif self._markup_without_record > MAX_MARKUP_WITHOUT_RECORD:
            over = f"over {MAX_MARKUP_WITHOUT_RECORD:,} tags and attributes"
        else:
            return chunk
        raise PubmedXMLError(
            f"refusing {self._name}: {over} without a complete record (by byte {self.offset:,} of "
            "the uncompressed document), far beyond any real PubMed record: content that is not "
            "records (empty elements, comments, CDATA, attributes, text) is bounded to keep memory bounded"
        )

    def peek(self, size: int) -> bytes:
        """The next `size` bytes (fewer at the end), without consuming them."""
        while len(self._pending) < size:
            chunk = self._read(size - len(self._pending))
            if not chunk:
                break
            self._pending += chunk
        return self._pending[:size]

    def read(self, size: int = -1) -> bytes:
        if self._pending:
            if size is None or size < 0:
                chunk, self._pending = self._pending + self._read(-1), b""
            else:
                chunk, self._pending = self._pending[:size], self._pending[size:]
            return self._count(chunk)
        return self._count(self._read(size))

    def _read(self, size: int = -1) -> bytes:
        try:
            chunk = self._stream.read(size)
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
            raise PubmedXMLError(
                f"truncated or malformed XML in {self._name}: the compressed stream is cut off or corrupt ({exc})"
            ) from exc
        if isinstance(chunk, str):
            raise TypeError(f"{self._name} was opened in text mode; parse_pubmed_xml needs a binary stream ('rb')")
        chunk = bytes(chunk) if chunk is not None else b""
        if len(self.head) < _HEAD_BYTES:
            self.head += chunk[: _HEAD_BYTES - len(self.head)]
        return chunk


class _RefuseAllResolver(etree.Resolver):
    """Belt and braces: even if libxml2 asked for an external resource, refuse."""

    def resolve(self, system_url, public_id, context):
        raise PubmedXMLError(f"refusing to load external resource {system_url!r}")


def _new_iterparse(reader: _BinaryReader, tags=None):
    etree.clear_error_log()  # the thread's log then holds this parse's errors only (see _syntax_error)
    context = etree.iterparse(
        reader,
        events=("end",),
        tag=tags,
        load_dtd=False,
        dtd_validation=False,
        attribute_defaults=False,
        no_network=True,
        resolve_entities=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
        recover=False,
    )
    context.resolvers.add(_RefuseAllResolver())
    return context


def _iter_documents_records(reader: _BinaryReader, source_name: str) -> Iterator[PubmedItem]:
    # Records are what matter, and a baseline file has ~150 elements per record: when the
    # first bytes name an accepted root, libxml2 reports only the elements we act on
    # (records, DeleteCitation, ERROR, the root) instead of calling back for every one.
    sniffed = _sniffed_root(reader.peek(_HEAD_BYTES))
    watched = _WATCHED_TAGS | {sniffed} if sniffed in ACCEPTED_ROOTS else None
    context = _new_iterparse(reader, watched)
    root = None
    try:
        for _event, element in context:
            if root is None:  # the first reported element: the root and DOCTYPE are known
                root = element.getroottree().getroot()
                _refuse_entity_declarations(root, source_name)
                if root.tag not in ACCEPTED_ROOTS:
                    _refuse_root(context, root, element, source_name)
            tag = element.tag
            if tag not in _WATCHED_TAGS:
                continue
            top_level = element is root or element.getparent() is root
            if not top_level:
                continue
            if tag in _RECORD_TAGS or (
                tag == "MedlineCitation" and root.tag in ("MedlineCitationSet", "MedlineCitation")
            ):
                yield _article(element, source_name)
                _forget(element)
                reader.record_finished()
            elif tag == "DeleteCitation":
                yield from _deletes(element, source_name)
                _forget(element)
                reader.record_finished()
            elif tag == "ERROR":
                raise PubmedXMLError(
                    f"NCBI returned an error inside {source_name}: {_text(element) or '(empty <ERROR>)'}"
                )
    except etree.XMLSyntaxError as exc:
        root_tag = root.tag if root is not None else _sniffed_root(reader.head)
        raise _syntax_error(exc, context, source_name, root_tag) from exc


def _forget(element) -> None:
    """Drop a finished record and everything before it, so memory stays flat."""
    element.clear(keep_tail=False)
    parent = element.getparent()
    if parent is not None:
        while element.getprevious() is not None:
            del parent[0]


def _refuse_entity_declarations(root, source_name: str) -> None:
    internal = root.getroottree().docinfo.internalDTD
    if internal is None:
        return
    names = [entity.name for entity in internal.entities()]
    if names:
        shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
        raise PubmedXMLError(
            f"refusing XML with entity declarations in its DOCTYPE ({shown}) in {source_name}: "
            "PubMed never declares entities, and expanding them is how XXE and entity-bomb attacks work"
        )


def _refuse_root(context, root, first_finished, source_name: str) -> None:
    """Raise for a document whose root is not a PubMed article document,
    naming the root and any NCBI <ERROR> text it carries."""
    errors = _error_texts_until_end(context, first_finished)
    name = _local(root.tag)
    if errors:
        raise PubmedXMLError(
            f"NCBI returned an error instead of PubMed records in {source_name} "
            f"(root element <{name}>): " + " | ".join(errors)
        )
    expected = ", ".join(sorted(ACCEPTED_ROOTS))
    raise PubmedXMLError(
        f"not a PubMed article document: {source_name} has root element <{name}> (expected one of {expected})"
    )


def _error_texts_until_end(context, first_finished) -> list[str]:
    """Texts of the <ERROR> elements (a bare <ERROR> root included) in a refused
    document, from its first finished element on; stops early on a syntax
    error or a long document."""
    errors: list[str] = []

    def note(element) -> None:
        if element.tag == "ERROR":
            errors.append(_text(element) or "(empty <ERROR>)")

    note(first_finished)
    try:
        for count, (_event, element) in enumerate(context):
            note(element)
            if count > _MAX_EVENTS_AFTER_REFUSED_ROOT or len(errors) >= 5:
                break
    except etree.XMLSyntaxError:
        pass  # an HTML page need not be well-formed; the root is the clearer message
    return errors


def _sniffed_root(head: bytes) -> str | None:
    """The first element name in the document's first bytes, skipping the XML
    declaration, DOCTYPE and comments (for documents that fail before any
    element is finished, such as an HTML page with an &nbsp; up front)."""
    head = re.sub(rb"<!--.*?-->|<!DOCTYPE[^\[>]*(\[.*?\])?\s*>|<\?.*?\?>", b"", head, flags=re.S | re.I)
    match = _FIRST_TAG.search(head)
    return match.group(1).decode("ascii", "replace") if match else None


def _local(tag) -> str:
    return etree.QName(tag).localname if isinstance(tag, str) else str(tag)


def _syntax_error(exc: etree.XMLSyntaxError, context, source_name: str, root_tag) -> PubmedXMLError:
    """A PubmedXMLError that says which kind of fault libxml2 found, and where."""
    last = context.error_log.last_error  # this parse's own log, not the thread-global one
    if last is not None and last.type_name == "ERR_DOCUMENT_EMPTY" and root_tag is not None:
        # libxml2's push parser follows some fatal errors (an undefined entity early in the
        # document) with a spurious "Start tag expected" at line 1, and only that reaches the
        # parse's own log: the error that stopped it is the one before it in the thread's log.
        earlier = [e for e in exc.error_log if e.type_name != "ERR_DOCUMENT_EMPTY"]
        last = earlier[-1] if earlier else last
    if last is not None:
        message, line, column = last.message, last.line, last.column
    else:
        message, line, column = exc.msg or str(exc), exc.lineno, (exc.position or (0, 0))[1]
    if root_tag is None and "no element found" in message:
        return PubmedXMLError(f"truncated or malformed XML in {source_name}: empty document, no root element")
    where = f"{source_name} (line {line}, column {column})"
    if root_tag is not None and _local(root_tag) not in ACCEPTED_ROOTS:
        return PubmedXMLError(
            f"not a PubMed article document: {source_name} has root element <{_local(root_tag)}>, "
            f"and it is not even well-formed XML (line {line}, column {column}): {message}"
        )
    lowered = message.lower()
    if "entity" in lowered and "not defined" in lowered:
        return PubmedXMLError(
            f"undefined entity reference in {where}: {message} (PubMed XML uses only XML's five "
            "predefined entities and numeric character references)"
        )
    if "entity" in lowered:
        return PubmedXMLError(
            f"refusing XML with entity declarations or undefined entity references in {where}: {message}"
        )
    if "text node too long" in lowered or "huge text node" in lowered:
        return PubmedXMLError(
            f"text node too large in {where}: over libxml2's 10,000,000-byte safety limit "
            f"(huge_tree is deliberately off): {message}"
        )
    if "excessive depth" in lowered:
        return PubmedXMLError(
            f"elements nested too deeply in {where}: over libxml2's safety limit "
            f"(huge_tree is deliberately off): {message}"
        )
    if "xml_parse_huge" in lowered or "resource limit" in lowered:
        return PubmedXMLError(f"over a libxml2 safety limit in {where} (huge_tree is deliberately off): {message}")
    if "encoding" in lowered or "utf-8" in lowered or "char 0x" in lowered or "invalid char" in lowered:
        return PubmedXMLError(f"invalid UTF-8 (or character encoding error) in {where}: {message}")
    root = f" (root <{_local(root_tag)}>)" if root_tag is not None else ""
    return PubmedXMLError(f"truncated or malformed XML in {where}{root}: {message}")


# --------------------------------------------------------------------------
# Text helpers
# --------------------------------------------------------------------------


def _text(element) -> str | None:
    """All text of an element including inline markup (<i>, <sup>, MathML),
    whitespace-collapsed; None when empty or absent."""
    if element is None:
        return None
    raw = "".join(element.itertext()) if len(element) else element.text
    return " ".join(raw.split()) or None if raw else None


def _plain(element) -> str | None:
    """Stripped text of a simple (#PCDATA) element; None when empty or absent."""
    if element is None or element.text is None:
        return None
    return element.text.strip() or None


def _findtext(parent, path: str) -> str | None:
    """Stripped text of the first element at ``path`` under ``parent``; None when empty or absent."""
    if parent is None:
        return None
    text = parent.findtext(path)
    return (text.strip() or None) if text else None


def _child_texts(element) -> dict[str, str]:
    """{tag: stripped text} of an element's simple children, first occurrence wins."""
    texts: dict[str, str] = {}
    for child in element:
        if child.tag not in texts and child.text:
            texts[child.tag] = child.text.strip()
    return texts


def _yes(value) -> bool:
    return value == "Y"


# --------------------------------------------------------------------------
# Dates
# --------------------------------------------------------------------------

_MONTHS = {name.lower(): number for number, name in enumerate(calendar.month_abbr) if name}
_SEASONS = {"spring": 3, "summer": 6, "fall": 9, "autumn": 9, "winter": 12}
_TOKENS = re.compile(r"[A-Za-z]+|\d+")


def _month_number(token: str | None) -> int | None:
    """'Dec', 'December', '12', '06' -> 12/6; seasons -> first month; else None."""
    if not token:
        return None
    token = token.strip()
    if token.isdecimal():
        number = int(token)
        return number if 1 <= number <= 12 else None
    lowered = token.lower()
    if lowered in _SEASONS:
        return _SEASONS[lowered]
    return _MONTHS.get(lowered[:3])


def _iso(year: int | None, month: int | None = None, day: int | None = None) -> str | None:
    """ISO date, month/day defaulting to 01; an impossible day falls back to 01."""
    if year is None or not 1 <= year <= 9999:
        return None
    month = month or 1
    if day is None or day < 1 or (day > 28 and day > calendar.monthrange(year, month)[1]):
        day = 1
    return f"{year:04d}-{month:02d}-{day:02d}"


def _int_or_none(text: str | None) -> int | None:
    if text is None:
        return None
    text = text.strip()
    return int(text) if text.isdecimal() else None


def _ymd_date(element) -> str | None:
    """ISO date from an element with Year/Month/Day children (DateRevised, ArticleDate, PubMedPubDate)."""
    if element is None:
        return None
    parts = _child_texts(element)
    year = _int_or_none(parts.get("Year"))
    if year is None:
        return None
    month = _month_number(parts.get("Month"))
    if month is None:
        month = _month_number(_first_token(parts.get("Season")))
    return _iso(year, month, _int_or_none(parts.get("Day")))


def _first_token(text: str | None) -> str | None:
    if not text:
        return None
    match = _TOKENS.search(text)
    return match.group(0) if match else None


def _pub_date(pub_date) -> tuple[str | None, int | None, str | None]:
    """(ISO date, year, raw string) from a PubDate element.

    Year/Month/Day -> "2023 Dec 05"; Year/Season -> "2000 Spring";
    MedlineDate -> as written, e.g. "1998 Dec-1999 Jan" -> 1998-12-01.
    """
    if pub_date is None:
        return None, None, None
    medline_date = _plain(pub_date.find("MedlineDate"))
    if medline_date is not None:
        return _medline_date(medline_date) + (medline_date,)
    parts = [_findtext(pub_date, name) for name in ("Year", "Month", "Day", "Season")]
    raw = " ".join(part for part in parts if part) or None
    year = _int_or_none(parts[0])
    if year is None:
        return None, None, raw
    month = _month_number(parts[1]) or _month_number(_first_token(parts[3]))
    return _iso(year, month, _int_or_none(parts[2])), year, raw


def _medline_date(text: str) -> tuple[str | None, int | None]:
    """'1998 Dec-1999 Jan' -> ('1998-12-01', 1998); '2000 Apr 12-18' -> 2000-04-12;
    '1979-1980 Fall-Winter' -> 1979-09-01; '1977-1978' -> 1977-01-01.
    (PubMed writes the year first; 'Summer 2019' is read as 2019-06-01 too.)"""
    tokens = _TOKENS.findall(text)
    year_index = next((i for i, token in enumerate(tokens) if len(token) == 4 and token.isdecimal()), None)
    if year_index is None:
        return None, None
    year = int(tokens[year_index])
    before = tokens[year_index - 1] if year_index and tokens[year_index - 1].isalpha() else None
    if before and _month_number(before):
        return _iso(year, _month_number(before)), year
    month = day = None
    rest = tokens[year_index + 1 :]
    for i, token in enumerate(rest):
        if token.isdecimal() and len(token) == 4:
            continue  # a year range: "1977-1978 ..."
        if token.isalpha():
            month = _month_number(token)
            if month is not None and i + 1 < len(rest) and rest[i + 1].isdecimal() and len(rest[i + 1]) <= 2:
                day = int(rest[i + 1])
        break
    return _iso(year, month, day), year


def _history(pubmed_data) -> dict[str, str]:
    history: dict[str, str] = {}
    if pubmed_data is None:
        return history
    for pub_date in pubmed_data.iterfind("History/PubMedPubDate"):
        status = pub_date.get("PubStatus")
        date = _ymd_date(pub_date)
        if status and date and status not in history:
            history[status] = date
    return history


# --------------------------------------------------------------------------
# Identifiers
# --------------------------------------------------------------------------

_ORCID_DIGITS = re.compile(r"(\d{4})[\s-]?(\d{4})[\s-]?(\d{4})[\s-]?(\d{3}[\dXx])")


def _orcid(text: str | None) -> str | None:
    """'https://orcid.org/0000-0002-1825-0097', '0000000218250097', ... ->
    '0000-0002-1825-0097'; None unless it is 16 characters with a valid
    ISO 7064 11,2 check digit (PubMed has truncated 15-digit ORCIDs)."""
    if not text:
        return None
    match = _ORCID_DIGITS.search(text.strip())
    if not match:
        return None
    digits = "".join(match.groups()).upper()
    total = 0
    for char in digits[:-1]:
        total = (total + int(char)) * 2
    check = (12 - total % 11) % 11
    if digits[-1] != ("X" if check == 10 else str(check)):
        return None
    return "-".join(digits[i : i + 4] for i in range(0, 16, 4))


def _pmid_and_version(pmid_element, source_name: str, what: str) -> tuple[int, int]:
    text = _plain(pmid_element)
    if text is None or not text.isdecimal():
        raise PubmedXMLError(f"{what} in {source_name} has no valid PMID (found {text!r})")
    version = _int_or_none(pmid_element.get("Version")) or 1
    return int(text), version


def _pmcid(value: str) -> str:
    value = value.strip()
    return value.upper() if value.upper().startswith("PMC") else f"PMC{value}"


def _article_ids(id_lists, elocations) -> list[ArticleId]:
    ids: list[ArticleId] = []
    for id_list in id_lists:
        if id_list is None:
            continue
        for article_id in id_list.iterfind("ArticleId"):
            value = _plain(article_id)
            if value:
                ids.append({"id_type": article_id.get("IdType", "pubmed"), "value": value, "source": "ArticleIdList"})
    for elocation in elocations:
        value = _plain(elocation)
        if value and elocation.get("ValidYN", "Y") != "N":
            ids.append({"id_type": elocation.get("EIdType"), "value": value, "source": "ELocationID"})
    return ids


def _first_id(article_ids: list[ArticleId], *id_types: str) -> str | None:
    """First value of the given types, ArticleIdList before ELocationID."""
    for source in ("ArticleIdList", "ELocationID"):
        for item in article_ids:
            if item["source"] == source and item["id_type"] in id_types:
                return item["value"]
    return None


# --------------------------------------------------------------------------
# Clinical trial registrations
# --------------------------------------------------------------------------

# (registry, compiled pattern, canonicaliser). Ids are written without spaces,
# registry prefixes in their canonical spelling, the rest upper case.
_TRIAL_PATTERNS = [
    # (registry, hint, pattern, canonical id). The regex runs only when the hint
    # (lower case) occurs in the lower-cased text: most abstracts name no trial.
    ("ClinicalTrials.gov", "nct", re.compile(r"\bNCT\s?(\d{8})\b", re.I), lambda m: "NCT" + m.group(1)),
    ("ISRCTN", "isrctn", re.compile(r"\bISRCTN\s?(\d{8})\b", re.I), lambda m: "ISRCTN" + m.group(1)),
    ("ANZCTR", "actrn", re.compile(r"\bACTRN\s?(\d{14})\b", re.I), lambda m: "ACTRN" + m.group(1)),
    (
        "EudraCT",
        "eudra",
        re.compile(r"\bEudra\s?CT\b[^0-9]{0,40}?(\d{4}-\d{6}-\d{2})\b", re.I),
        lambda m: m.group(1),
    ),
    (
        "ChiCTR",
        "chictr",
        re.compile(r"\bChiCTR(-?[A-Z]{2,4}-)?(\d{8,10})\b", re.I),
        lambda m: "ChiCTR" + (m.group(1) or "").upper() + m.group(2),
    ),
    ("DRKS", "drks", re.compile(r"\bDRKS\s?(\d{8})\b", re.I), lambda m: "DRKS" + m.group(1)),
    (
        "CTRI",
        "ctri",
        re.compile(r"\bCTRI\s?/\s?(\d{4})\s?/\s?(\d{2,3})\s?/\s?(\d{3}),?(\d{3})\b", re.I),
        lambda m: f"CTRI/{m.group(1)}/{m.group(2)}/{m.group(3)}{m.group(4)}",
    ),
    ("UMIN-CTR", "umin", re.compile(r"(?<![A-Za-z-])UMIN\s?(\d{9})\b", re.I), lambda m: "UMIN" + m.group(1)),
    ("JPRN", "jprn", re.compile(r"\bJPRN-([A-Za-z]+\d+)\b", re.I), lambda m: "JPRN-" + m.group(1).upper()),
    ("IRCT", "irct", re.compile(r"\bIRCT\s?(\d+N\d+)\b", re.I), lambda m: "IRCT" + m.group(1).upper()),
    ("NTR", "ntr", re.compile(r"\bNTR\s?(\d{3,5})\b"), lambda m: "NTR" + m.group(1)),
    ("NTR", "nl", re.compile(r"\bNL\s?(\d{4,5})\b"), lambda m: "NL" + m.group(1)),
    ("PACTR", "pactr", re.compile(r"\bPACTR\s?(\d{15})\b", re.I), lambda m: "PACTR" + m.group(1)),
    ("CRiS", "kct", re.compile(r"\bKCT\s?(\d{7})\b", re.I), lambda m: "KCT" + m.group(1)),
]

# Hints that common words contain ("distinct", "albumin", "electric"): ask for the
# digits or slash that every id has right after the prefix before running the pattern.
_HINT_DIGITS = {
    "nct": re.compile(r"nct\s?\d"),
    "umin": re.compile(r"umin\s?\d"),
    "ctri": re.compile(r"ctri\s?/"),
}

# DataBankName values NLM uses for trial registries.
_TRIAL_DATABANKS = {
    "clinicaltrials.gov": "ClinicalTrials.gov",
    "isrctn": "ISRCTN",
    "anzctr": "ANZCTR",
    "eudract": "EudraCT",
    "chictr": "ChiCTR",
    "drks": "DRKS",
    "ctri": "CTRI",
    "umin-ctr": "UMIN-CTR",
    "umin ctr": "UMIN-CTR",
    "jprn": "JPRN",
    "irct": "IRCT",
    "ntr": "NTR",
    "pactr": "PACTR",
    "cris": "CRiS",
    "rebec": "ReBec",
    "rpcec": "RPCEC",
    "slctr": "SLCTR",
    "tctr": "TCTR",
}


def _trial_ids_in_text(text: str | None) -> list[tuple[str, str]]:
    """(registry, trial id) for every registration id written in the text, in text order."""
    if not text:
        return []
    found: list[tuple[int, str, str]] = []
    lowered = text.lower()
    for registry, hint, pattern, canonical in _TRIAL_PATTERNS:
        if pattern.flags & re.I:
            hinted = _HINT_DIGITS[hint].search(lowered) if hint in _HINT_DIGITS else hint in lowered
        else:
            hinted = hint.upper() in text  # a case-sensitive pattern: its prefix as written
        if hinted:
            found.extend((match.start(), registry, canonical(match)) for match in pattern.finditer(text))
    return [(registry, trial_id) for _, registry, trial_id in sorted(found)]


def _canonical_accession(registry: str, accession: str) -> str:
    """A databank accession in the same spelling the text patterns produce."""
    compact = re.sub(r"\s+", "", accession)
    for _, _, pattern, canonical in _TRIAL_PATTERNS:
        match = pattern.fullmatch(compact) or pattern.fullmatch(accession.strip())
        if match:
            return canonical(match)
    return compact.upper() if registry != "EudraCT" else compact


def _trial_registrations(databanks: list[Databank], texts: list[str | None]) -> list[TrialRegistration]:
    registrations: list[TrialRegistration] = []
    seen: set[str] = set()
    for bank in databanks:
        registry = _TRIAL_DATABANKS.get((bank["databank"] or "").strip().lower())
        if registry is None or not bank["accession"]:
            continue
        trial_id = _canonical_accession(registry, bank["accession"])
        if trial_id not in seen:
            seen.add(trial_id)
            registrations.append({"registry": registry, "trial_id": trial_id, "source": "databank"})
    for registry, trial_id in _trial_ids_in_text("\n".join(text for text in texts if text)):
        if trial_id not in seen:
            seen.add(trial_id)
            registrations.append({"registry": registry, "trial_id": trial_id, "source": "abstract"})
    return registrations


# --------------------------------------------------------------------------
# Record parts
# --------------------------------------------------------------------------


def _abstract_sections(abstract) -> list[AbstractSection]:
    if abstract is None:
        return []
    sections: list[AbstractSection] = []
    for section in abstract.iterfind("AbstractText"):
        label = (section.get("Label") or "").strip() or None
        text = _text(section) or ""
        if label is None and not text:
            continue
        sections.append({"label": label, "nlm_category": section.get("NlmCategory"), "text": text})
    return sections


def _joined_abstract(sections: list[AbstractSection]) -> str | None:
    """Sections joined with a blank line; a labelled section reads 'LABEL: text'."""
    parts = []
    for section in sections:
        if section["label"] and section["text"]:
            parts.append(f"{section['label']}: {section['text']}")
        else:
            parts.append(section["label"] or section["text"])
    return "\n\n".join(parts) or None


def _other_abstracts(citation) -> list[OtherAbstract]:
    return [
        {
            "type": other.get("Type"),
            "language": other.get("Language"),
            "text": _joined_abstract(_abstract_sections(other)) or "",
        }
        for other in citation.iterfind("OtherAbstract")
    ]


def _author(author, position: int, role: str) -> Author:
    names: dict[str, str | None] = {}
    affiliations: list[str] = []
    orcid = None
    for child in author:  # one pass over the children: authors are the bulk of a record
        tag = child.tag
        if tag == "AffiliationInfo":
            text = _text(child.find("Affiliation"))
            if text:
                affiliations.append(text)
        elif tag == "Identifier":
            if orcid is None and (child.get("Source") or "").upper() == "ORCID":
                orcid = _orcid(child.text)
        elif tag not in names:
            names[tag] = _text(child)
    return {
        "position": position,
        "role": role,
        "last_name": names.get("LastName"),
        "fore_name": names.get("ForeName"),
        "initials": names.get("Initials"),
        "suffix": names.get("Suffix"),
        "collective_name": names.get("CollectiveName"),
        "affiliations": affiliations,
        "orcid": orcid,
        "equal_contrib": _yes(author.get("EqualContrib")),
        "valid": author.get("ValidYN", "Y") != "N",
    }


def _authors(author_lists, default_role: str) -> list[Author]:
    """Authors of the given AuthorList elements; positions count within a role."""
    authors: list[Author] = []
    for author_list in author_lists:
        list_type = author_list.get("Type")
        role = {"authors": "author", "editors": "editor"}.get(list_type, default_role)
        start = sum(1 for a in authors if a["role"] == role)
        for offset, author in enumerate(author_list.iterfind("Author"), start=1):
            authors.append(_author(author, start + offset, role))
    return authors


def _mesh(citation) -> list[MeshHeading]:
    headings: list[MeshHeading] = []
    for heading in citation.iterfind("MeshHeadingList/MeshHeading"):
        descriptor = heading.find("DescriptorName")
        if descriptor is None:
            continue
        headings.append(
            {
                "descriptor_ui": descriptor.get("UI"),
                "descriptor_name": _text(descriptor),
                "major": _yes(descriptor.get("MajorTopicYN")),
                "qualifiers": [
                    {"ui": q.get("UI"), "name": _text(q), "major": _yes(q.get("MajorTopicYN"))}
                    for q in heading.iterfind("QualifierName")
                ],
            }
        )
    return headings


def _supplementary_concepts(citation) -> list[SupplementaryConcept]:
    return [
        {"ui": concept.get("UI"), "name": _text(concept), "type": concept.get("Type")}
        for concept in citation.iterfind("SupplMeshList/SupplMeshName")
    ]


def _chemicals(citation) -> list[Chemical]:
    return [
        {
            "registry_number": _findtext(chemical, "RegistryNumber"),
            "ui": chemical.find("NameOfSubstance").get("UI") if chemical.find("NameOfSubstance") is not None else None,
            "name": _text(chemical.find("NameOfSubstance")),
        }
        for chemical in citation.iterfind("ChemicalList/Chemical")
    ]


def _keywords(parent) -> list[Keyword]:
    keywords: list[Keyword] = []
    for keyword_list in parent.iterfind("KeywordList"):
        owner = keyword_list.get("Owner")
        for keyword in keyword_list.iterfind("Keyword"):
            text = _text(keyword)
            if text:
                keywords.append({"keyword": text, "owner": owner, "major": _yes(keyword.get("MajorTopicYN"))})
    return keywords


def _grants(parent) -> list[Grant]:
    return [
        {
            "grant_id": _findtext(grant, "GrantID"),
            "acronym": _findtext(grant, "Acronym"),
            "agency": _findtext(grant, "Agency"),
            "country": _findtext(grant, "Country"),
        }
        for grant in parent.iterfind("GrantList/Grant")
    ]


def _databanks(article) -> list[Databank]:
    banks: list[Databank] = []
    if article is None:
        return banks
    for bank in article.iterfind("DataBankList/DataBank"):
        name = _findtext(bank, "DataBankName")
        accessions = [_plain(a) for a in bank.iterfind("AccessionNumberList/AccessionNumber")]
        accessions = [a for a in accessions if a]
        for accession in accessions or [None]:
            banks.append({"databank": name, "accession": accession})
    return banks


def _comments_corrections(citation) -> list[CommentCorrection]:
    return [
        {
            "ref_type": item.get("RefType"),
            "ref_pmid": _int_or_none(_findtext(item, "PMID")),
            "ref_source": _text(item.find("RefSource")),
        }
        for item in citation.iterfind("CommentsCorrectionsList/CommentsCorrections")
    ]


def _references_count(parent) -> int:
    if parent is None:
        return 0
    return sum(1 for reference_list in parent.iterfind("ReferenceList") for _ in reference_list.iter("Reference"))


def _publication_types(elements) -> list[PublicationType]:
    return [{"ui": pt.get("UI"), "name": _text(pt)} for pt in elements if _text(pt)]


def _pages(pagination) -> str | None:
    if pagination is None:
        return None
    medline = _findtext(pagination, "MedlinePgn")
    if medline:
        return medline
    start, end = _findtext(pagination, "StartPage"), _findtext(pagination, "EndPage")
    if start and end:
        return f"{start}-{end}"
    return start or end


def _issn(journal, issn_type: str) -> str | None:
    if journal is None:
        return None
    for issn in journal.iterfind("ISSN"):
        if issn.get("IssnType") == issn_type:
            return _plain(issn)
    return None


# --------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------


def _deletes(delete_citation, source_name: str) -> Iterator[Deletion]:
    for pmid_element in delete_citation.iterfind("PMID"):
        pmid, version = _pmid_and_version(pmid_element, source_name, "a DeleteCitation entry")
        yield {"type": "delete", "pmid": pmid, "pmid_version": version}


def _empty_article(pmid: int, pmid_version: int) -> ArticleRecord:
    return {
        "type": "article",
        "pmid": pmid,
        "pmid_version": pmid_version,
        "is_book": False,
        "title": None,
        "vernacular_title": None,
        "abstract": None,
        "abstract_sections": [],
        "other_abstracts": [],
        "journal": None,
        "journal_iso": None,
        "issn_print": None,
        "issn_electronic": None,
        "issn_linking": None,
        "nlm_unique_id": None,
        "journal_country": None,
        "volume": None,
        "issue": None,
        "pages": None,
        "pub_date": None,
        "pub_year": None,
        "pub_date_raw": None,
        "article_date": None,
        "history": {},
        "date_created": None,
        "date_completed": None,
        "date_revised": None,
        "entrez_date": None,
        "doi": None,
        "pii": None,
        "pmcid": None,
        "article_ids": [],
        "languages": [],
        "publication_types": [],
        "authors": [],
        "mesh": [],
        "supplementary_concepts": [],
        "chemicals": [],
        "keywords": [],
        "grants": [],
        "databanks": [],
        "trial_registrations": [],
        "comments_corrections": [],
        "publication_status": None,
        "citation_status": None,
        "indexing_method": None,
        "references_count": 0,
        "coi_statement": None,
        "xml": b"",
    }


def _article(element, source_name: str) -> ArticleRecord:
    """The article dict for a PubmedArticle, PubmedBookArticle or bare MedlineCitation."""
    if element.tag == "PubmedBookArticle":
        record = _book_article(element, source_name)
    elif element.tag == "PubmedArticle":
        citation = element.find("MedlineCitation")
        if citation is None:
            raise PubmedXMLError(f"a PubmedArticle in {source_name} has no MedlineCitation")
        record = _journal_article(citation, element.find("PubmedData"), source_name)
    else:  # MedlineCitation in a MedlineCitationSet: no PubmedData
        record = _journal_article(element, None, source_name)
    record["xml"] = etree.tostring(element, encoding="UTF-8", xml_declaration=False, with_tail=False)
    return record


def _journal_article(citation, pubmed_data, source_name: str) -> ArticleRecord:
    record = _empty_article(*_pmid_and_version(citation.find("PMID"), source_name, "a MedlineCitation"))
    record["citation_status"] = citation.get("Status")
    record["indexing_method"] = citation.get("IndexingMethod")

    article = citation.find("Article")
    if article is not None:
        journal = article.find("Journal")
        issue = journal.find("JournalIssue") if journal is not None else None
        record["title"] = _text(article.find("ArticleTitle"))
        record["vernacular_title"] = _text(article.find("VernacularTitle"))
        record["journal"] = _text(journal.find("Title")) if journal is not None else None
        record["journal_iso"] = _findtext(journal, "ISOAbbreviation")
        record["issn_print"] = _issn(journal, "Print")
        record["issn_electronic"] = _issn(journal, "Electronic")
        record["volume"] = _findtext(issue, "Volume")
        record["issue"] = _findtext(issue, "Issue")
        record["pages"] = _pages(article.find("Pagination"))
        record["article_date"] = _ymd_date(article.find("ArticleDate"))
        record["languages"] = [lang for lang in (_plain(e) for e in article.iterfind("Language")) if lang]
        record["publication_types"] = _publication_types(article.iterfind("PublicationTypeList/PublicationType"))
        record["authors"] = _authors(article.iterfind("AuthorList"), "author")
        record["grants"] = _grants(article)
        record["databanks"] = _databanks(article)
        record["pub_date"], record["pub_year"], record["pub_date_raw"] = _pub_date(
            issue.find("PubDate") if issue is not None else None
        )
        record["abstract_sections"] = _abstract_sections(article.find("Abstract"))
        record["abstract"] = _joined_abstract(record["abstract_sections"])

    journal_info = citation.find("MedlineJournalInfo")
    record["issn_linking"] = _findtext(journal_info, "ISSNLinking")
    record["nlm_unique_id"] = _findtext(journal_info, "NlmUniqueID")
    record["journal_country"] = _findtext(journal_info, "Country")
    record["date_created"] = _ymd_date(citation.find("DateCreated"))
    record["date_completed"] = _ymd_date(citation.find("DateCompleted"))
    record["date_revised"] = _ymd_date(citation.find("DateRevised"))
    record["other_abstracts"] = _other_abstracts(citation)
    record["mesh"] = _mesh(citation)
    record["supplementary_concepts"] = _supplementary_concepts(citation)
    record["chemicals"] = _chemicals(citation)
    record["keywords"] = _keywords(citation)
    record["comments_corrections"] = _comments_corrections(citation)
    record["coi_statement"] = _text(citation.find("CoiStatement"))

    id_list = pubmed_data.find("ArticleIdList") if pubmed_data is not None else None
    elocations = article.iterfind("ELocationID") if article is not None else []
    _fill_ids(record, _article_ids([id_list], elocations))
    if pubmed_data is not None:
        record["history"] = _history(pubmed_data)
        record["publication_status"] = _findtext(pubmed_data, "PublicationStatus")
        record["references_count"] = _references_count(pubmed_data)
    record["entrez_date"] = record["history"].get("entrez")
    record["trial_registrations"] = _trial_registrations(record["databanks"], [record["title"], record["abstract"]])
    return record


def _book_article(element, source_name: str) -> ArticleRecord:
    document = element.find("BookDocument")
    if document is None:
        raise PubmedXMLError(f"a PubmedBookArticle in {source_name} has no BookDocument")
    book_data = element.find("PubmedBookData")
    book = document.find("Book")
    record = _empty_article(*_pmid_and_version(document.find("PMID"), source_name, "a BookDocument"))
    record["is_book"] = True

    title = _text(document.find("ArticleTitle"))
    if title is None and book is not None:
        title = _text(book.find("BookTitle"))
    record["title"] = title
    record["vernacular_title"] = _text(document.find("VernacularTitle"))
    record["volume"] = _findtext(book, "Volume")
    record["pages"] = _pages(document.find("Pagination"))
    record["languages"] = [lang for lang in (_plain(e) for e in document.iterfind("Language")) if lang]
    record["publication_types"] = _publication_types(document.iterfind("PublicationType"))
    record["authors"] = _authors(document.iterfind("AuthorList"), "author") + (
        _authors(book.iterfind("AuthorList"), "editor") if book is not None else []
    )
    record["keywords"] = _keywords(document)
    record["grants"] = _grants(document)
    record["date_revised"] = _ymd_date(document.find("DateRevised"))
    record["references_count"] = _references_count(document)
    _renumber_roles(record["authors"])
    record["pub_date"], record["pub_year"], record["pub_date_raw"] = _pub_date(
        book.find("PubDate") if book is not None else None
    )
    record["abstract_sections"] = _abstract_sections(document.find("Abstract"))
    record["abstract"] = _joined_abstract(record["abstract_sections"])

    elocations = book.iterfind("ELocationID") if book is not None else []
    data_ids = book_data.find("ArticleIdList") if book_data is not None else None
    _fill_ids(record, _article_ids([document.find("ArticleIdList"), data_ids], elocations))
    if book_data is not None:
        record["history"] = _history(book_data)
        record["publication_status"] = _findtext(book_data, "PublicationStatus")
    record["entrez_date"] = record["history"].get("entrez")
    record["trial_registrations"] = _trial_registrations([], [record["title"], record["abstract"]])
    return record


def _renumber_roles(authors: list[Author]) -> None:
    counts: dict[str, int] = {}
    for author in authors:
        counts[author["role"]] = counts.get(author["role"], 0) + 1
        author["position"] = counts[author["role"]]


def _fill_ids(record: ArticleRecord, article_ids: list[ArticleId]) -> None:
    record["article_ids"] = article_ids
    record["doi"] = _first_id(article_ids, "doi")
    record["pii"] = _first_id(article_ids, "pii")
    pmc = _first_id(article_ids, "pmc", "pmcid")
    record["pmcid"] = _pmcid(pmc) if pmc else None
