"""A local stand-in for NCBI E-utilities (PubMed) that serves real PubMed records.

Nothing here is invented: every response is derived in code from a real recorded response
in ``../shared/data/eutils/`` or built from the raw bytes of real records in
``../shared/data/pubmed/``:

* esearch  -- ``eutils-cassettes/decoded/test_esearchresult.0.body`` (prolog and element
  layout; ``TranslationStack`` dropped as in the 2025 ``biopython/esearch1.xml``)
* efetch   -- XML declaration, DOCTYPE and ``<PubmedArticleSet>`` wrapper of the 2025 empty
  set ``pubmed/records/37909814.xml`` around the records' raw bytes
* errors   -- ``biopython/esummary8.xml`` (``<ERROR>`` inside a result root, message swapped)
* 429      -- ``biomcp-pubmed-json/25d28782...json`` (``count``/``limit``/``api-key`` set)
* einfo    -- ``biopython/einfo1.xml`` (db list) and ``biopython/einfo2.xml`` (pubmed, Count set)

Loading: ``.xml``/``.xml.gz`` files and folders (sorted walk).  PubmedArticleSet documents
(one or many records, incl. PubmedBookArticle) and bare PubmedArticle roots are loaded; other
documents (eSummaryResult, eLinkResult, and the old MedlineCitationSet format, whose records
have no PubmedData) are skipped with a warning (``Corpus.warnings``).  Per PMID the highest
``<PMID Version>`` is kept (PubMed serves the latest); of two different documents with the same
PMID and version the first loaded wins (warning).  DeleteCitation blocks are not applied.

Dates per record (ints YYYYMMDD): crdt = History PubStatus "pubmed", else "entrez" (else
DateCreated, else DateRevised, else pdat); edat = "entrez", else crdt; mdat = DateRevised, else
crdt; pdat = JournalIssue/PubDate (Book/PubDate for books) with a missing month/day taken as 1,
MedlineDate -> Jan 1 of its first year.

Search semantics: every term matches the whole corpus ("the files stand for the topic's
results") except date clauses, which filter (see :func:`parse_term_dates`), plus the
``mindate``+``maxdate`` (both needed, as in PubMed) / ``reldate`` parameters with ``datetype``
(default pdat).  IdList is PMIDs descending; ``sort`` and ``retmode=json`` are ignored (XML).

Fault kinds (``server.faults.add(kind, ...)``): 429 (real JSON body, ``Retry-After: 1``),
500/502/503 (small HTML page), truncated (body cut, matching Content-Length), short_read (full
Content-Length, half the body, connection closed), error_in_200 (``<ERROR>Search Backend
failed: ...</ERROR>`` in eSearchResult/eFetchResult, HTTP 200), html_200, webenv_expired
(expires the request's WebEnv and answers ``Unable to obtain query #N``), timeout (sleep
``seconds`` then close without answering), slow (sleep then answer), reset (TCP RST, no
answer), outage (every request 503 for ``seconds``), hostile (the real answer turned hostile,
option ``variant``: see :func:`hostile_body`).

Typical use in tests::

    corpus = Corpus.cached([DATA / "pubmed/records"])       # parsed once per process
    with EutilsStandIn(corpus.copy(), enforce_rate_limit=False) as server:
        requests.get(server.url + "esearch.fcgi", params={...})
        server.faults.add("502", path="efetch")
        assert server.count("efetch") == 1

Command line: ``python -m tests.eutils_stand_in PATH... --port 8765 [--host 127.0.0.1]``.
"""

from __future__ import annotations

import argparse
import calendar
import datetime as _dt
import gc
import gzip
import html
import io
import json
import logging
import os
import random
import re
import socket
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from lxml import etree

from harvest import clock

log = logging.getLogger("eutils_stand_in")

#: ``../shared/data`` relative to the project root; override with ``KETAMINE_SHARED_DATA``.
DATA_DIR = Path(
    os.environ.get("KETAMINE_SHARED_DATA") or Path(__file__).resolve().parent.parent.parent / "shared" / "data"
)
EUTILS_DATA = DATA_DIR / "eutils"
PUBMED_DATA = DATA_DIR / "pubmed"

BASE_PATH = "/entrez/eutils/"
HISTORY_CAP = 9999  # ESearch/EFetch-by-history can reach only the first 9,999 UIDs
RETMAX_CAP = 10000
CAP_MESSAGE = (
    "Search Backend failed: Exception:\n'retstart' cannot be larger than 9998. For PubMed, "
    "ESearch can only retrieve the first 9,999 records matching the query. To obtain more "
    "than 9,999 PubMed records, consider using EDirect that contains additional logic to "
    "batch PubMed search results automatically so that an arbitrary number can be retrieved. "
    "For details see https://www.ncbi.nlm.nih.gov/books/NBK25499/"
)
NO_ID_MESSAGE = "Neither query_key nor id specified"  # verbatim from biopython/esummary8.xml

FAULT_KINDS = (
    "429",
    "500",
    "502",
    "503",
    "truncated",
    "short_read",
    "error_in_200",
    "html_200",
    "webenv_expired",
    "timeout",
    "slow",
    "reset",
    "outage",
    "hostile",
    "gzip_bomb",
)
#: kinds used by ``random_faults``/``every`` when none are given (the quick ones)
DEFAULT_RANDOM_KINDS = (
    "429",
    "500",
    "502",
    "503",
    "truncated",
    "short_read",
    "error_in_200",
    "html_200",
    "reset",
)


# --------------------------------------------------------------------------------------
# Templates derived from real recorded responses
# --------------------------------------------------------------------------------------


class _Templates:
    """Lazily read real response files and expose what the server derives from them."""

    def __init__(self, eutils_dir: Path = EUTILS_DATA, pubmed_dir: Path = PUBMED_DATA):
        self.eutils_dir = Path(eutils_dir)
        self.pubmed_dir = Path(pubmed_dir)
        self._lock = threading.Lock()
        self._cache: dict[str, object] = {}

    def _get(self, key, build):
        with self._lock:
            if key not in self._cache:
                self._cache[key] = build()
            return self._cache[key]

    # esearch ---------------------------------------------------------------------------
    @property
    def esearch_prolog(self) -> bytes:
        """XML declaration + DOCTYPE line(s) of the real esearch response, up to the root."""

        def build():
            raw = (self.eutils_dir / "eutils-cassettes/decoded/test_esearchresult.0.body").read_bytes()
            i = raw.index(b"<eSearchResult>")
            # every element name we emit must be in the real template
            for tag in (
                b"Count",
                b"RetMax",
                b"RetStart",
                b"QueryKey",
                b"WebEnv",
                b"IdList",
                b"Id",
                b"TranslationSet/",
                b"QueryTranslation",
            ):
                assert b"<" + tag + b">" in raw, tag
            return raw[:i]

        return self._get("esearch_prolog", build)

    # efetch ----------------------------------------------------------------------------
    @property
    def efetch_wrapper(self) -> tuple[bytes, bytes]:
        """(header, trailer) of the real 2025 empty PubmedArticleSet (records/37909814.xml)."""

        def build():
            raw = (self.pubmed_dir / "records/37909814.xml").read_bytes()
            open_tag = b"<PubmedArticleSet>"
            i = raw.index(open_tag) + len(open_tag)
            head = raw[:i]
            rest = raw[i:]
            if rest.startswith(b"\n"):
                head += b"\n"
                rest = rest[1:]
            assert rest.strip() == b"</PubmedArticleSet>", rest
            return head, rest.strip()

        return self._get("efetch_wrapper", build)

    # generic <ERROR> document ------------------------------------------------------------
    @property
    def _error_parts(self) -> tuple[bytes, bytes, bytes, bytes]:
        """(xml declaration line, text before <ERROR>, text after </ERROR>) of esummary8.xml."""

        def build():
            raw = (self.eutils_dir / "biopython/esummary8.xml").read_bytes()
            decl_end = raw.index(b"?>") + 2
            decl = raw[:decl_end]
            root_open = raw.index(b"<eSummaryResult>")
            e_open = raw.index(b"<ERROR>")
            e_close = raw.index(b"</ERROR>") + len(b"</ERROR>")
            root_close = raw.index(b"</eSummaryResult>")
            before = raw[root_open + len(b"<eSummaryResult>") : e_open]  # "\n\t"
            between = raw[e_close:root_close]  # "\n"
            tail = raw[root_close + len(b"</eSummaryResult>") :]
            return decl, before, between, tail

        return self._get("error_parts", build)

    def error_document(self, root: str, messages: Sequence[str] | str) -> bytes:
        """An ``<ERROR>`` document shaped like the real biopython/esummary8.xml.

        ``root="eSearchResult"`` uses the real esearch prolog and the compact
        ``<eSearchResult><ERROR>..</ERROR></eSearchResult>`` form PubMed uses for the
        9,999 cap; other roots keep esummary8's layout with the root renamed (no DOCTYPE,
        since no real DTD id for them is recorded here)."""
        if isinstance(messages, str):
            messages = [messages]
        errs = b"".join(b"<ERROR>" + _xml_text(m) + b"</ERROR>" for m in messages)
        if root == "eSearchResult":
            return self.esearch_prolog + b"<eSearchResult>" + errs + b"</eSearchResult>\n"
        decl, before, between, tail = self._error_parts
        r = root.encode()
        body = b"".join(before + b"<ERROR>" + _xml_text(m) + b"</ERROR>" for m in messages)
        return decl + b"\n<" + r + b">" + body + between + b"</" + r + b">" + (tail or b"\n")

    # 429 ---------------------------------------------------------------------------------
    @property
    def rate_limit_template(self) -> dict:
        def build():
            for p in sorted((self.eutils_dir / "biomcp-pubmed-json").glob("*.json")):
                d = json.loads(p.read_text())
                if d.get("error") == "API rate limit exceeded":
                    return d
            raise FileNotFoundError("no real 429 body in biomcp-pubmed-json/")

        return self._get("rate_limit", build)

    def rate_limit_body(self, count: int, limit: int, key: str) -> bytes:
        d = dict(self.rate_limit_template)
        d["api-key"] = key
        d["count"] = str(count)
        d["limit"] = str(limit)
        return json.dumps(d, separators=(",", ":")).encode()

    # einfo -------------------------------------------------------------------------------
    def einfo(self, db: str | None, count: int) -> bytes | None:
        if not db:
            return self._get("einfo1", lambda: (self.eutils_dir / "biopython/einfo1.xml").read_bytes())
        if db == "pubmed":
            raw = self._get("einfo2", lambda: (self.eutils_dir / "biopython/einfo2.xml").read_bytes())
            return re.sub(rb"<Count>\d+</Count>", b"<Count>%d</Count>" % count, raw, count=1)
        return None


TEMPLATES = _Templates()


def _xml_text(s: str) -> bytes:
    return html.escape(str(s), quote=False).encode("utf-8")


def _html_page(status: int | None, reason: str, detail: str = "") -> bytes:
    detail_html = f"<p>{html.escape(detail)}</p>" if detail else ""
    title = f"{status} {reason}" if status else reason
    return (
        f"<html><head><title>{html.escape(title)}</title></head><body>"
        f"<h1>{html.escape(reason)}</h1>{detail_html}</body></html>\n"
    ).encode()


# --------------------------------------------------------------------------------------
# Hostile answers, derived in code from the real answer (or served from a real file)
# --------------------------------------------------------------------------------------

HOSTILE_VARIANTS = ("xxe", "entity_bomb", "huge_text", "invalid_utf8", "esummary", "elink")
#: libxml2 refuses a single text node longer than this unless huge_tree is on
HUGE_TEXT = 10_000_000
_TEXT_TARGETS = (b"ArticleTitle", b"BookTitle", b"QueryTranslation", b"Count")


def _first_text(body: bytes) -> tuple[int, int]:
    """(start, end) of the text of the first element in ``_TEXT_TARGETS`` (title first)."""
    for tag in _TEXT_TARGETS:
        m = re.search(rb"<" + tag + rb"(?:\s[^>]*)?>([^<]*)</" + tag + rb">", body)
        if m:
            return m.start(1), m.end(1)
    raise ValueError("no text element to make hostile in this answer")


def _with_internal_subset(body: bytes, subset: bytes) -> bytes:
    """Add ``[subset]`` to the answer's DOCTYPE (or a DOCTYPE for its root when it has none)."""
    m = re.search(rb"<!DOCTYPE\s+([\w:.-]+)([^>\[]*)>", body)
    if m:
        return body[: m.end() - 1] + b" [" + subset + b"]" + body[m.end() - 1 :]
    decl_end = body.find(b"?>") + 2 if body.startswith(b"<?") else 0
    root = re.compile(rb"<([A-Za-z][\w:.-]*)").search(body, decl_end)
    return body[:decl_end] + b"\n<!DOCTYPE " + root.group(1) + b" [" + subset + b"]>" + body[decl_end:]


def hostile_body(body: bytes, variant: str) -> bytes:
    """The real answer ``body`` made hostile.  ``variant``:

    * ``xxe`` -- an external entity (``file:///etc/passwd``) declared in the DOCTYPE and used
      in the first title;
    * ``entity_bomb`` -- "billion laughs": ten levels of ten-fold entity references, the last
      used in the first title;
    * ``huge_text`` -- the first title's own text repeated past ``HUGE_TEXT`` bytes;
    * ``invalid_utf8`` -- two bytes that are not UTF-8 put in front of the first title's text;
    * ``esummary`` / ``elink`` -- not the answer at all but a real document with another root
      (``pubmed/records-pubmedpy/esummary.xml`` / ``records-metapub-repo-extra/
      sample_related_pmids_result.xml``), as if the server mixed up its answers.
    """
    if variant == "esummary":
        return (PUBMED_DATA / "records-pubmedpy/esummary.xml").read_bytes()
    if variant == "elink":
        return (PUBMED_DATA / "records-metapub-repo-extra/sample_related_pmids_result.xml").read_bytes()
    start, end = _first_text(body)
    if variant == "xxe":
        body = body[:start] + b"&xxe;" + body[start:]
        return _with_internal_subset(body, b'<!ENTITY xxe SYSTEM "file:///etc/passwd">')
    if variant == "entity_bomb":
        levels = [b'<!ENTITY lol0 "lol">'] + [
            b'<!ENTITY lol%d "%s">' % (i, b"".join(b"&lol%d;" % (i - 1) for _ in range(10))) for i in range(1, 10)
        ]
        body = body[:start] + b"&lol9;" + body[start:]
        return _with_internal_subset(body, b"".join(levels))
    if variant == "huge_text":
        text = body[start:end] or b"lol "
        return body[:start] + text * (HUGE_TEXT // len(text) + 1) + body[end:]
    if variant == "invalid_utf8":
        return body[:start] + b"\xff\xfe" + body[start:]
    raise ValueError(f"unknown hostile variant {variant!r}; known: {HOSTILE_VARIANTS}")


def gzip_bomb(body: bytes, inflated_mb: int) -> bytes:
    """The real answer ``body``, gzip-encoded, with ``inflated_mb`` MB of spaces before its
    closing root tag (still the same well-formed document once inflated): gzip members, one
    per MB of padding, so that a gigabyte costs about a megabyte and no time to build."""
    close = body.rindex(b"</")
    padding = gzip.compress(b" " * (1 << 20), compresslevel=9)
    return b"".join([gzip.compress(body[:close]), padding * inflated_mb, gzip.compress(body[close:])])


# --------------------------------------------------------------------------------------
# Dates: stored as ints YYYYMMDD
# --------------------------------------------------------------------------------------

_MONTHS = {m.lower(): i for i, m in enumerate(calendar.month_abbr) if m}
_DATE_ARG = re.compile(r"^\s*(\d{4})(?:[/-](\d{1,2})(?:[/-](\d{1,2}))?)?\s*$")


def to_ymd(value, *, upper: bool = False) -> int:
    """``date``/``datetime``/int YYYYMMDD/str YYYY[/MM[/DD]] (or with '-') -> int YYYYMMDD.

    With ``upper=True`` a missing month/day means the end of that year/month."""
    if isinstance(value, _dt.datetime):
        value = value.date()
    if isinstance(value, _dt.date):
        return value.year * 10000 + value.month * 100 + value.day
    if isinstance(value, int):
        return value
    m = _DATE_ARG.match(str(value))
    if not m:
        raise ValueError(f"not a date: {value!r}")
    y = int(m.group(1))
    mo = int(m.group(2)) if m.group(2) else (12 if upper else 1)
    if m.group(3):
        d = int(m.group(3))
    else:
        d = calendar.monthrange(y, min(max(mo, 1), 12))[1] if upper else 1
    return y * 10000 + mo * 100 + d


def ymd_to_date(v: int) -> _dt.date:
    return _dt.date(v // 10000, (v // 100) % 100, v % 100)


def _month_num(text: str | None) -> int | None:
    if not text:
        return None
    t = text.strip()
    if t.isdigit():
        return int(t)
    return _MONTHS.get(t[:3].lower())


def _ymd_from_el(el) -> int | None:
    """Year/Month/Day children -> YYYYMMDD (missing month/day -> 1)."""
    if el is None:
        return None
    y = el.findtext("Year")
    if not y or not y.strip().isdigit():
        return None
    m = _month_num(el.findtext("Month")) or 1
    d = el.findtext("Day")
    d = int(d) if d and d.strip().isdigit() else 1
    return int(y) * 10000 + m * 100 + d


def _pubdate_ymd(el) -> int | None:
    if el is None:
        return None
    v = _ymd_from_el(el)
    if v is not None:
        return v
    md = el.findtext("MedlineDate")
    if md:
        m = re.search(r"\d{4}", md)
        if m:
            return int(m.group()) * 10000 + 101
    return None


# --------------------------------------------------------------------------------------
# Records and corpus
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Record:
    """One PubMed record: raw bytes as published plus the dates esearch filters on."""

    pmid: int
    version: int
    raw: bytes
    crdt: int  # History PubStatus="pubmed", else "entrez" (else DateCreated, else mdat/pdat)
    edat: int  # History PubStatus="entrez", else crdt
    mdat: int  # DateRevised, else crdt
    pdat: int  # JournalIssue/PubDate (Book/PubDate); MedlineDate -> its first year; else crdt
    source: str = ""

    def date(self, datetype: str) -> int:
        return getattr(self, datetype)


def record_from_element(el, raw: bytes, source: str = "") -> Record:
    """Build a :class:`Record` from a parsed PubmedArticle/PubmedBookArticle element."""
    if el.tag == "PubmedBookArticle":
        doc = el.find("BookDocument")
        history = el.find("PubmedBookData/History")
        pubdate = doc.find("Book/PubDate") if doc is not None else None
    else:
        doc = el.find("MedlineCitation")
        history = el.find("PubmedData/History")
        pubdate = doc.find("Article/Journal/JournalIssue/PubDate") if doc is not None else None
    if doc is None:
        raise ValueError(f"{el.tag} without MedlineCitation/BookDocument")
    pmid_el = doc.find("PMID")
    if pmid_el is None or not (pmid_el.text or "").strip().isdigit():
        raise ValueError("record without a numeric PMID")
    pmid = int(pmid_el.text.strip())
    version = int(pmid_el.get("Version") or 1)
    statuses: dict[str, int] = {}
    if history is not None:
        for pd in history.iterchildren("PubMedPubDate"):
            status = pd.get("PubStatus")
            if status in ("pubmed", "entrez") and status not in statuses:
                v = _ymd_from_el(pd)
                if v is not None:
                    statuses[status] = v
    revised = _ymd_from_el(doc.find("DateRevised"))
    pdat = _pubdate_ymd(pubdate)
    crdt = statuses.get("pubmed") or statuses.get("entrez")
    if crdt is None:
        crdt = _ymd_from_el(doc.find("DateCreated")) or revised or pdat
    if crdt is None:
        raise ValueError(f"PMID {pmid}: no date at all")
    edat = statuses.get("entrez") or crdt
    mdat = revised or crdt
    return Record(pmid, version, raw, crdt, edat, mdat, pdat or crdt, source)


def parse_record_bytes(raw: bytes, source: str = "") -> Record:
    el = etree.fromstring(raw, parser=etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True))
    return record_from_element(el, raw, source)


_REC_START = re.compile(rb"<(PubmedArticle|PubmedBookArticle)[\s>]")
_FIRST_PMID = re.compile(rb"<PMID[^>]*>\s*(\d+)\s*</PMID>")


def _read_bytes(path: Path) -> bytes:
    if path.name.endswith(".gz"):
        with gzip.open(path, "rb") as f:
            return f.read()
    return path.read_bytes()


def _root_tag(data: bytes) -> str | None:
    try:
        for _, el in etree.iterparse(
            io.BytesIO(data), events=("start",), resolve_entities=False, load_dtd=False, no_network=True, huge_tree=True
        ):
            return el.tag
    except etree.XMLSyntaxError:
        return None
    return None


def _spans(data: bytes) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    pos = 0
    while True:
        m = _REC_START.search(data, pos)
        if not m:
            return out
        close = b"</" + m.group(1) + b">"
        end = data.find(close, m.end())
        if end < 0:
            return out
        end += len(close)
        out.append((m.start(), end))
        pos = end


def load_records_file(path: Path, warnings: list[str] | None = None) -> list[Record]:
    """All records of one .xml/.xml.gz file, each with its raw bytes exactly as published.

    PubmedArticleSet documents (one or many records) and bare PubmedArticle/PubmedBookArticle
    documents are loaded; anything else (eSummaryResult, eLinkResult, MedlineCitationSet, ...)
    is skipped with a warning.  The file is split with lxml iterparse (dates) and the
    record boundaries located in the byte stream (raw bytes), checked against each other."""
    warnings = warnings if warnings is not None else []
    path = Path(path)
    data = _read_bytes(path)
    root = _root_tag(data)
    if root not in ("PubmedArticleSet", "PubmedArticle", "PubmedBookArticle"):
        msg = f"{path}: skipped, root element is {root!r}, not PubmedArticleSet"
        log.warning(msg)
        warnings.append(msg)
        return []
    spans = _spans(data)
    records: list[Record] = []
    i = 0
    src = str(path)
    for _, el in etree.iterparse(
        io.BytesIO(data),
        events=("end",),
        tag=("PubmedArticle", "PubmedBookArticle"),
        resolve_entities=False,
        load_dtd=False,
        no_network=True,
        huge_tree=True,
    ):
        raw = None
        if i < len(spans):
            s, e = spans[i]
            m = _FIRST_PMID.search(data, s, e)
            pm = el.findtext("MedlineCitation/PMID") or el.findtext("BookDocument/PMID")
            if m and pm and m.group(1).decode() == pm.strip():
                raw = data[s:e]
        if raw is None:
            msg = f"{path}: record #{i} boundary mismatch; serving re-serialised bytes"
            log.warning(msg)
            warnings.append(msg)
            raw = etree.tostring(el, encoding="utf-8").split(b"?>", 1)[-1].lstrip()
        i += 1
        try:
            records.append(record_from_element(el, raw, src))
        except ValueError as exc:
            msg = f"{path}: record #{i} skipped: {exc}"
            log.warning(msg)
            warnings.append(msg)
        el.clear()
        parent = el.getparent()
        if parent is not None:
            while el.getprevious() is not None:
                del parent[0]
    return records


def _iter_files(paths: Iterable[str | os.PathLike]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            for dirpath, dirnames, filenames in os.walk(p):
                dirnames.sort()
                for name in sorted(filenames):
                    if name.endswith((".xml", ".xml.gz")):
                        out.append(Path(dirpath) / name)
        elif p.exists():
            out.append(p)
        else:
            raise FileNotFoundError(p)
    return out


class Corpus:
    """PMID -> :class:`Record` (the latest version of each PMID).

    Records are immutable, so :meth:`copy` is a cheap dict copy: parse big files once
    (:meth:`cached`) and give each server its own copy to mutate."""

    def __init__(self, records: Iterable[Record] = (), *, warnings: list[str] | None = None):
        self._records: dict[int, Record] = {}
        self._sorted: list[int] | None = None
        self._lock = threading.RLock()
        self.warnings: list[str] = list(warnings or [])
        for r in records:
            self._add_loaded(r)

    _CACHE: dict[tuple, Corpus] = {}
    _CACHE_LOCK = threading.Lock()

    @classmethod
    def from_paths(cls, paths: Iterable[str | os.PathLike]) -> Corpus:
        """Load files/folders (sorted walk; later files never replace an equal version)."""
        corpus = cls()
        gc_was_on = gc.isenabled()
        gc.disable()  # tens of thousands of long-lived objects: GC passes only cost time
        try:
            for f in _iter_files(paths):  # sorted walk: "first loaded wins" is deterministic
                for r in load_records_file(f, corpus.warnings):
                    corpus._add_loaded(r)
        finally:
            if gc_was_on:
                gc.enable()
        return corpus

    @classmethod
    def cached(cls, paths: Iterable[str | os.PathLike]) -> Corpus:
        """A process-wide shared parse of ``paths``: do not mutate it, use ``.copy()``."""
        key = tuple(str(Path(p).resolve()) for p in paths)
        with cls._CACHE_LOCK:
            if key not in cls._CACHE:
                cls._CACHE[key] = cls.from_paths(key)
            return cls._CACHE[key]

    def _add_loaded(self, r: Record) -> None:
        old = self._records.get(r.pmid)
        if old is not None:
            if r.version < old.version:
                return
            if r.version == old.version:
                if r.raw != old.raw:
                    msg = (
                        f"PMID {r.pmid} v{r.version} in {r.source} differs from the copy in "
                        f"{old.source}; keeping the first one loaded"
                    )
                    log.warning(msg)
                    self.warnings.append(msg)
                return
        self._records[r.pmid] = r
        self._sorted = None

    def copy(self) -> Corpus:
        c = Corpus()
        with self._lock:
            c._records = dict(self._records)
            c._sorted = self._sorted
        c.warnings = list(self.warnings)
        return c

    # read --------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, pmid) -> bool:
        return int(pmid) in self._records

    def __getitem__(self, pmid) -> Record:
        return self._records[int(pmid)]

    def get(self, pmid) -> Record | None:
        try:
            return self._records.get(int(pmid))
        except (TypeError, ValueError):
            return None

    def pmids(self) -> list[int]:
        """All PMIDs, descending (PubMed's default order here)."""
        with self._lock:
            if self._sorted is None:
                self._sorted = sorted(self._records, reverse=True)
            return self._sorted

    def max_pmid(self) -> int:
        p = self.pmids()
        return p[0] if p else 0

    def search(self, filters: Sequence[tuple[str, int, int]] = ()) -> list[int]:
        """PMIDs (descending) whose dates lie in every (datetype, lo, hi) range."""
        ids = self.pmids()
        if not filters:
            return list(ids)
        recs = self._records
        out = []
        for pmid in ids:
            r = recs[pmid]
            for dt, lo, hi in filters:
                v = getattr(r, dt)
                if v < lo or v > hi:
                    break
            else:
                out.append(pmid)
        return out

    # mutate ------------------------------------------------------------------------------
    def put(self, record: Record) -> None:
        with self._lock:
            self._records[record.pmid] = record
            self._sorted = None

    def remove(self, pmid) -> Record:
        with self._lock:
            r = self._records.pop(int(pmid))
            self._sorted = None
            return r

    def add_clone(self, new_pmid, from_pmid, *, crdt=None, edat=None, mdat=None) -> Record:
        """Copy a real record under ``new_pmid``; rewrite its PMID (MedlineCitation/PMID and
        ArticleId IdType="pubmed") and, if given, its dates in the bytes: ``crdt`` ->
        History "pubmed" date, ``edat`` (defaults to ``crdt`` when only crdt is given, as the
        two coincide in real records) -> History "entrez", ``mdat`` -> DateRevised."""
        src = self[from_pmid]
        new_pmid = int(new_pmid)
        if new_pmid in self:
            raise ValueError(f"PMID {new_pmid} already in the corpus")
        raw = _rewrite_pmid(src.raw, src.pmid, new_pmid)
        if crdt is not None and edat is None:
            edat = crdt
        if crdt is not None:
            status = "pubmed" if _has_status(raw, "pubmed") else "entrez"
            raw = _set_history_date(raw, status, crdt)
        if edat is not None:
            raw = _set_history_date(raw, "entrez", edat)
        if mdat is not None:
            raw = _set_date_revised(raw, mdat)
        rec = parse_record_bytes(raw, f"clone of {src.pmid}")
        assert rec.pmid == new_pmid
        self.put(rec)
        return rec

    def revise(self, pmid, mdat=None, change: Callable[[bytes], bytes] | None = None, *, today=None) -> Record:
        """Bump DateRevised to ``mdat`` (default ``today``/date.today()) and optionally change
        the bytes with ``change(raw) -> raw`` (e.g. edit the abstract)."""
        old = self[pmid]
        raw = change(old.raw) if change is not None else old.raw
        raw = _set_date_revised(raw, mdat if mdat is not None else (today or clock.today()))
        rec = parse_record_bytes(raw, old.source)
        if rec.pmid != old.pmid:
            raise ValueError("change() must not alter the PMID")
        self.put(rec)
        return rec


def _has_status(raw: bytes, status: str) -> bool:
    return f'<PubMedPubDate PubStatus="{status}">'.encode() in raw


def _rewrite_pmid(raw: bytes, old: int, new: int) -> bytes:
    o, n = str(old).encode(), str(new).encode()
    raw, k = re.subn(rb"(<PMID[^>]*>\s*)" + o + rb"(\s*</PMID>)", rb"\g<1>" + n + rb"\g<2>", raw, count=1)
    if not k:
        raise ValueError(f"PMID {old} not found in its record")
    return re.sub(rb'(<ArticleId IdType="pubmed">\s*)' + o + rb"(\s*</ArticleId>)", rb"\g<1>" + n + rb"\g<2>", raw)


def _set_ymd(block: bytes, v: int, pad: bool) -> bytes:
    d = ymd_to_date(v)
    fmt = (lambda x: b"%02d" % x) if pad else (lambda x: b"%d" % x)
    block = re.sub(rb"<Year>[^<]*</Year>", b"<Year>%d</Year>" % d.year, block, count=1)
    block = re.sub(rb"<Month>[^<]*</Month>", b"<Month>" + fmt(d.month) + b"</Month>", block, count=1)
    block = re.sub(rb"<Day>[^<]*</Day>", b"<Day>" + fmt(d.day) + b"</Day>", block, count=1)
    return block


def _set_history_date(raw: bytes, status: str, value) -> bytes:
    v = to_ymd(value)
    pat = re.compile(rb'<PubMedPubDate PubStatus="' + status.encode() + rb'">.*?</PubMedPubDate>', re.S)
    m = pat.search(raw)
    if not m:
        raise ValueError(f'record has no PubMedPubDate PubStatus="{status}"')
    return raw[: m.start()] + _set_ymd(m.group(), v, pad=False) + raw[m.end() :]


def _set_date_revised(raw: bytes, value) -> bytes:
    v = to_ymd(value)
    m = re.search(rb"<DateRevised>.*?</DateRevised>", raw, re.S)
    if not m:
        raise ValueError("record has no DateRevised")
    return raw[: m.start()] + _set_ymd(m.group(), v, pad=True) + raw[m.end() :]


# --------------------------------------------------------------------------------------
# Term parsing (only date clauses matter)
# --------------------------------------------------------------------------------------

_FIELD_ALIASES = {
    "crdt": "crdt",
    "create date": "crdt",
    "date - create": "crdt",
    "edat": "edat",
    "entrez date": "edat",
    "date - entrez": "edat",
    "mdat": "mdat",
    "modification date": "mdat",
    "date - modification": "mdat",
    "dp": "pdat",
    "pdat": "pdat",
    "publication date": "pdat",
    "date - publication": "pdat",
}
_D = r'"?(\d{4}(?:[/-]\d{1,2}(?:[/-]\d{1,2})?)?)"?'
_F = r"\[\s*([A-Za-z -]+?)\s*\]"
_RANGE = re.compile(_D + r"\s*(?:" + _F + r")?\s*:\s*" + _D + r"\s*" + _F)
_SINGLE = re.compile(_D + r"\s*" + _F)


def parse_term_dates(term: str) -> list[tuple[str, int, int]]:
    """Date clauses of a term as (datetype, lo, hi) filters; all are ANDed.

    ``"2020/01/01"[crdt] : "2020/12/31"[crdt]``, ``2020:2021[dp]``, ``"2020/03"[edat]``
    (that whole month), ``"3000"[dp]`` open ends; fields crdt/edat/mdat/dp/pdat and their
    long names.  Everything else in the term is ignored."""
    filters = []
    rest = term or ""

    def rng(m):
        f1, f2 = m.group(2), m.group(4)
        field = _FIELD_ALIASES.get(f2.strip().lower())
        if field is None or (f1 and _FIELD_ALIASES.get(f1.strip().lower()) not in (None, field)):
            return m.group(0)
        filters.append((field, to_ymd(m.group(1)), to_ymd(m.group(3), upper=True)))
        return " "

    rest = _RANGE.sub(rng, rest)

    def single(m):
        field = _FIELD_ALIASES.get(m.group(2).strip().lower())
        if field is None:
            return m.group(0)
        filters.append((field, to_ymd(m.group(1)), to_ymd(m.group(1), upper=True)))
        return " "

    _SINGLE.sub(single, rest)
    return filters


# --------------------------------------------------------------------------------------
# Faults
# --------------------------------------------------------------------------------------


@dataclass
class Fault:
    """One fault rule.  Matching requests (``path`` substring of the URL path, e.g.
    "efetch") are counted; the first ``after`` are let through; then it fires on every
    matching request (or every ``every``-th one) until it has fired ``times`` times
    (``None`` = forever).  With several kinds they are used in turn (or drawn by ``rng``
    for random rules)."""

    kinds: tuple[str, ...]
    times: int | None = 1
    every: int | None = None
    path: str | None = None
    after: int = 0
    probability: float | None = None
    options: dict = field(default_factory=dict)
    seed: int | None = None
    seen: int = 0
    fired: int = 0
    history: list[str] = field(default_factory=list)

    def __post_init__(self):
        self._rng = random.Random(self.seed) if self.probability is not None else None

    def decide(self, path: str) -> str | None:
        if self.path and self.path not in path:
            return None
        self.seen += 1
        if self.seen <= self.after:
            return None
        if self.times is not None and self.fired >= self.times:
            return None
        k = self.seen - self.after
        if self.every and k % self.every:
            return None
        if self._rng is not None:
            assert self.probability is not None  # the generator exists only with a probability
            if self._rng.random() >= self.probability:
                return None
            kind = self._rng.choice(self.kinds)
        else:
            kind = self.kinds[self.fired % len(self.kinds)]
        self.fired += 1
        self.history.append(kind)
        return kind


class FaultPlan:
    """Ordered fault rules; the first rule that fires decides (all rules count requests)."""

    def __init__(self):
        self.rules: list[Fault] = []
        self._lock = threading.Lock()

    @staticmethod
    def _kinds(kind) -> tuple[str, ...]:
        kinds = (kind,) if isinstance(kind, (str, int)) else tuple(kind)
        kinds = tuple(str(k) for k in kinds)
        for k in kinds:
            if k not in FAULT_KINDS:
                raise ValueError(f"unknown fault kind {k!r}; known: {FAULT_KINDS}")
        if not kinds:
            raise ValueError("no fault kinds")
        return kinds

    def add(
        self,
        kind,
        *,
        times: int | None = 1,
        every: int | None = None,
        path: str | None = None,
        after: int = 0,
        **options,
    ) -> Fault:
        """Add a rule.  ``kind`` is one kind or a sequence (used in turn).  Options:
        ``seconds`` (timeout/slow/outage), ``fraction`` (truncated/short_read, default 0.5),
        ``message`` (error_in_200), ``retry_after`` (429, default "1"), ``variant`` (hostile,
        one of ``HOSTILE_VARIANTS``, default "xxe"), ``inflated_mb`` (gzip_bomb: the real answer
        gzip-encoded with that many MB of padding, default 1024)."""
        rule = Fault(self._kinds(kind), times=times, every=every, path=path, after=after, options=options)
        with self._lock:
            self.rules.append(rule)
        return rule

    def every(
        self,
        n: int,
        kinds: Sequence[str] = DEFAULT_RANDOM_KINDS,
        *,
        path: str | None = None,
        times: int | None = None,
        **options,
    ) -> Fault:
        """Every ``n``-th matching request fails, cycling through ``kinds``."""
        return self.add(kinds, every=n, path=path, times=times, **options)

    def random(
        self,
        seed: int,
        probability: float,
        kinds: Sequence[str] = DEFAULT_RANDOM_KINDS,
        *,
        path: str | None = None,
        times: int | None = None,
        after: int = 0,
        **options,
    ) -> Fault:
        """Each matching request fails with ``probability``; kind drawn from ``kinds``;
        deterministic for a given seed and request sequence."""
        rule = Fault(
            self._kinds(kinds), times=times, path=path, after=after, probability=probability, options=options, seed=seed
        )
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()

    def pick(self, path: str) -> tuple[str, dict] | None:
        with self._lock:
            chosen = None
            for rule in self.rules:
                if chosen is None:
                    kind = rule.decide(path)
                    if kind is not None:
                        chosen = (kind, rule.options)
                else:  # later rules still count the request, without firing
                    if not rule.path or rule.path in path:
                        rule.seen += 1
            return chosen


# --------------------------------------------------------------------------------------
# Request log
# --------------------------------------------------------------------------------------


@dataclass
class LoggedRequest:
    t: float  # the stand-in's clock (time.monotonic() unless a test sets it) at arrival
    wall: float  # time.time() at arrival
    method: str
    path: str  # URL path, e.g. /entrez/eutils/efetch.fcgi
    params: dict  # query string and form body merged (repeated keys joined with ",")
    client: str
    status: int | None = None  # None when no response was sent (reset/timeout)
    fault: str | None = None  # injected fault kind, "rate_limit" or "outage"

    @property
    def endpoint(self) -> str:
        return self.path.rsplit("/", 1)[-1].replace(".fcgi", "")

    def astuple(self):
        return (self.t, self.wall, self.path, self.params, self.status, self.fault)


@dataclass
class _Reply:
    status: int
    body: bytes
    ctype: str = "text/xml; charset=UTF-8"
    headers: dict = field(default_factory=dict)


# --------------------------------------------------------------------------------------
# Server
# --------------------------------------------------------------------------------------


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    stand_in: EutilsStandIn


class EutilsStandIn:
    """E-utilities stand-in serving ``corpus`` at ``http://HOST:PORT/entrez/eutils/``."""

    def __init__(
        self,
        corpus: Corpus,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        enforce_rate_limit: bool = True,
        rate_limit_window: float = 1.0,
        today: _dt.date | str | None = None,
        seed: int = 0,
        verbose: bool = False,
        webenv_ttl: float | None = None,
        templates: _Templates = TEMPLATES,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.corpus = corpus
        self.host = host
        self.port = port
        self.enforce_rate_limit = enforce_rate_limit
        self.rate_limit_window = rate_limit_window
        self.today = today  # property
        self.verbose = verbose
        self.webenv_ttl = webenv_ttl
        self.templates = templates
        # Seconds on the stand-in's clock: when a request arrived (its rate window, the log's
        # `t`), an outage's end, a WebEnv's age. A test that asserts the rate window passes a
        # clock it advances itself, so that a slow machine cannot spread a burst over a window.
        self.clock = clock
        self.faults = FaultPlan()
        self.requests_log: list[LoggedRequest] = []
        self.on_request: list[Callable[[EutilsStandIn, LoggedRequest], None]] = []
        self.on_handled: list[Callable[[EutilsStandIn, LoggedRequest], None]] = []
        self.history: dict[str, dict] = {}  # WebEnv -> {"created": t, "queries": {qk: [pmids]}}
        self.expired: set[str] = set()
        self.outage_until = 0.0
        self.grown: list[int] = []
        self._rng = random.Random(seed)
        self._lock = threading.RLock()
        self._arrivals: dict[str, deque] = {}
        self._stop = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    @classmethod
    def from_paths(cls, paths: Iterable[str | os.PathLike], **kw) -> EutilsStandIn:
        """Server over a private copy of the (process-wide cached) parse of ``paths``."""
        return cls(Corpus.cached(list(paths)).copy(), **kw)

    # lifecycle ---------------------------------------------------------------------------
    def start(self) -> EutilsStandIn:
        httpd = _HTTPServer((self.host, self.port), _Handler)
        httpd.stand_in = self
        self._httpd = httpd
        self.port = httpd.server_address[1]
        self._stop.clear()
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name=f"eutils-stand-in:{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> EutilsStandIn:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{BASE_PATH}"

    @property
    def today(self) -> _dt.date:
        return self._today or clock.today()

    @today.setter
    def today(self, value) -> None:
        if value is None or isinstance(value, _dt.date):
            self._today = value
        else:
            self._today = ymd_to_date(to_ymd(value))

    # log helpers -------------------------------------------------------------------------
    def _entries(self, path: str | None) -> list[LoggedRequest]:
        with self._lock:
            entries = list(self.requests_log)
        return [e for e in entries if path is None or path in e.path]

    def count(self, path: str | None = None, *, status: int | None = None, fault: str | None = None) -> int:
        """Requests whose URL path contains ``path`` (e.g. "efetch"), optionally filtered."""
        return sum(
            1
            for e in self._entries(path)
            if (status is None or e.status == status) and (fault is None or e.fault == fault)
        )

    def rate_violations(self, limit: int = 3, window: float = 1.0, path: str | None = None) -> int:
        """How many requests arrived as the (limit+1)-th or later within ``window`` seconds."""
        times = sorted(e.t for e in self._entries(path))
        n = 0
        lo = 0
        for i, t in enumerate(times):
            while times[lo] <= t - window:
                lo += 1
            if i - lo + 1 > limit:
                n += 1
        return n

    def params_seen(self, name: str | None = None, path: str | None = None):
        """With ``name``: the values that parameter had, in request order (requests without
        it are skipped).  Without: the set of all parameter names seen."""
        entries = self._entries(path)
        if name is None:
            return {k for e in entries for k in e.params}
        return [e.params[name] for e in entries if name in e.params]

    def faults_seen(self, path: str | None = None) -> list[str]:
        return [e.fault for e in self._entries(path) if e.fault]

    def clear_log(self) -> None:
        with self._lock:
            self.requests_log.clear()

    # history -----------------------------------------------------------------------------
    def _new_webenv(self) -> str:
        with self._lock:
            return "MCID_" + "".join(self._rng.choice("0123456789abcdef") for _ in range(24))

    def _history_get(self, webenv: str | None, query_key) -> list[int] | None:
        with self._lock:
            h = self.history.get(webenv or "")
            if h is None or webenv in self.expired:
                return None
            if self.webenv_ttl is not None and self.clock() - h["created"] > self.webenv_ttl:
                return None
            try:
                return h["queries"].get(int(query_key))
            except (TypeError, ValueError):
                return None

    def expire_webenv(self, webenv: str | None = None) -> None:
        """Forget one WebEnv (or all of them): history fetches then get an <ERROR> document."""
        with self._lock:
            self.expired.update([webenv] if webenv else list(self.history))

    def start_outage(self, seconds: float) -> None:
        """Every request answers 503 for the next ``seconds``."""
        self.outage_until = self.clock() + seconds

    def end_outage(self) -> None:
        """NCBI is back: what a test does instead of sleeping out an outage."""
        self.outage_until = 0.0

    # corpus mutation ---------------------------------------------------------------------
    def add_clone(self, new_pmid, from_pmid, *, crdt=None, edat=None, mdat=None) -> Record:
        return self.corpus.add_clone(new_pmid, from_pmid, crdt=crdt, edat=edat, mdat=mdat)

    def revise(self, pmid, mdat=None, change=None) -> Record:
        return self.corpus.revise(pmid, mdat, change, today=self.today)

    def remove(self, pmid) -> Record:
        return self.corpus.remove(pmid)

    def grow_after_esearch(self, n: int, *, from_pmid=None, crdt=None, times: int = 1) -> None:
        """After the next ``times`` esearch responses are built (before they are sent), add
        ``n`` clones of ``from_pmid`` (default: the newest PMID) with fresh PMIDs above the
        current maximum and crdt/edat ``crdt`` (default: today).  New PMIDs go to ``grown``."""
        remaining = [times]

        def hook(server, entry):
            if entry.endpoint != "esearch" or remaining[0] <= 0 or entry.status != 200:
                return
            remaining[0] -= 1
            src = from_pmid or server.corpus.max_pmid()
            for _ in range(n):
                new = server.corpus.max_pmid() + 1
                server.add_clone(new, src, crdt=crdt or server.today)
                server.grown.append(new)

        self.on_handled.append(hook)

    # request handling --------------------------------------------------------------------
    def _print(self, entry: LoggedRequest) -> None:
        if self.verbose:
            print(_print_entry(entry), file=sys.stderr, flush=True)

    def _log_arrival(self, method, path, params, client) -> LoggedRequest:
        e = LoggedRequest(self.clock(), time.time(), method, path, params, client)
        with self._lock:
            self.requests_log.append(e)
        return e

    def _rate_check(self, entry: LoggedRequest) -> _Reply | None:
        api_key = entry.params.get("api_key")
        key = api_key or entry.client
        limit = 10 if api_key else 3
        with self._lock:
            dq = self._arrivals.setdefault(key, deque())
            while dq and dq[0] <= entry.t - self.rate_limit_window:
                dq.popleft()
            dq.append(entry.t)
            n = len(dq)
        headers = {"X-RateLimit-Limit": str(limit), "X-RateLimit-Remaining": str(max(limit - n, 0))}
        if n > limit and self.enforce_rate_limit:
            body = self.templates.rate_limit_body(n, limit, key)
            return _Reply(429, body, "application/json", headers)
        entry._rate_headers = headers  # type: ignore[attr-defined]
        return None

    def handle(self, entry: LoggedRequest) -> tuple[_Reply | None, str | None, dict]:
        """Decide the reply: (reply or None for no-reply kinds, fault kind, options)."""
        for hook in list(self.on_request):
            hook(self, entry)
        limited = self._rate_check(entry)
        if limited is not None:
            return limited, "rate_limit", {}
        if self.clock() < self.outage_until:
            return _Reply(503, _html_page(503, "Service Unavailable"), "text/html"), "outage", {}
        picked = self.faults.pick(entry.path)
        kind, opts = picked if picked else (None, {})
        if kind == "outage":
            self.start_outage(float(opts.get("seconds", 2.0)))
            return _Reply(503, _html_page(503, "Service Unavailable"), "text/html"), kind, opts
        if kind in ("429", "500", "502", "503"):
            code = int(kind)
            if code == 429:
                body = self.templates.rate_limit_body(4, 3, entry.params.get("api_key") or entry.client)
                return (
                    _Reply(429, body, "application/json", {"Retry-After": str(opts.get("retry_after", "1"))}),
                    kind,
                    opts,
                )
            reason = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}[code]
            return _Reply(code, _html_page(code, reason), "text/html"), kind, opts
        if kind == "hostile":
            reply = self._dispatch(entry)
            if reply.status == 200:
                reply = _Reply(200, hostile_body(reply.body, opts.get("variant", "xxe")), reply.ctype)
            return reply, kind, opts
        if kind == "gzip_bomb":
            reply = self._dispatch(entry)
            if reply.status == 200:
                reply = _Reply(
                    200,
                    gzip_bomb(reply.body, int(opts.get("inflated_mb", 1024))),
                    reply.ctype,
                    {**reply.headers, "Content-Encoding": "gzip"},
                )
            return reply, kind, opts
        if kind == "html_200":
            page = _html_page(None, "Service unavailable", "The server is temporarily unable to service your request.")
            return _Reply(200, page, "text/html; charset=UTF-8"), kind, opts
        if kind == "error_in_200":
            msg = opts.get("message", "Search Backend failed: Exception:\nquery backend unavailable")
            return _Reply(200, self.templates.error_document(self._root_for(entry), msg)), kind, opts
        if kind == "webenv_expired":
            we = entry.params.get("WebEnv")
            if we:
                self.expire_webenv(we)
            qk = entry.params.get("query_key", "1")
            return (
                _Reply(200, self.templates.error_document(self._root_for(entry), f"Unable to obtain query #{qk}")),
                kind,
                opts,
            )
        reply = self._dispatch(entry)
        return reply, kind, opts

    @staticmethod
    def _root_for(entry: LoggedRequest) -> str:
        return {
            "esearch": "eSearchResult",
            "efetch": "eFetchResult",
            "einfo": "eInfoResult",
            "esummary": "eSummaryResult",
            "epost": "ePostResult",
        }.get(entry.endpoint, "eFetchResult")

    def _dispatch(self, entry: LoggedRequest) -> _Reply:
        if not entry.path.startswith(BASE_PATH):
            return _Reply(404, _html_page(404, "Not Found"), "text/html")
        ep = entry.endpoint
        p = entry.params
        db = p.get("db", "pubmed" if ep != "einfo" else "")
        if ep in ("esearch", "efetch") and db != "pubmed":
            return _Reply(200, self.templates.error_document(self._root_for(entry), f"Invalid db name specified: {db}"))
        if ep == "esearch":
            return self._esearch(p)
        if ep == "efetch":
            return self._efetch(p)
        if ep == "einfo":
            body = self.templates.einfo(db, len(self.corpus))
            if body is None:
                return _Reply(200, self.templates.error_document("eInfoResult", f"Invalid db name specified: {db}"))
            return _Reply(200, body)
        return _Reply(404, _html_page(404, "Not Found"), "text/html")

    @staticmethod
    def _int(p: dict, name: str, default: int) -> int:
        try:
            return int(p.get(name, default))
        except (TypeError, ValueError):
            return default

    def date_filters(self, p: dict) -> list[tuple[str, int, int]]:
        """Filters from the term and from mindate/maxdate/datetype/reldate."""
        filters = parse_term_dates(p.get("term", ""))
        datetype = (p.get("datetype") or "pdat").lower()
        if datetype not in ("crdt", "edat", "mdat", "pdat"):
            datetype = "pdat"
        if p.get("reldate"):
            try:
                days = int(p["reldate"])
                lo = self.today - _dt.timedelta(days=days)
                filters.append((datetype, to_ymd(lo), to_ymd(self.today)))
            except ValueError:
                pass
        elif p.get("mindate") and p.get("maxdate"):  # PubMed needs both
            filters.append((datetype, to_ymd(p["mindate"]), to_ymd(p["maxdate"], upper=True)))
        return filters

    def _esearch(self, p: dict) -> _Reply:
        tpl = self.templates
        try:
            filters = self.date_filters(p)
        except ValueError as exc:
            return _Reply(200, tpl.error_document("eSearchResult", f"Invalid date: {exc}"))
        ids = self.corpus.search(filters)
        count = len(ids)
        if p.get("rettype") == "count":
            return _Reply(200, tpl.esearch_prolog + b"<eSearchResult><Count>%d</Count></eSearchResult>\n" % count)
        retstart = max(self._int(p, "retstart", 0), 0)
        retmax = min(max(self._int(p, "retmax", 20), 0), RETMAX_CAP)
        if retstart > HISTORY_CAP - 1:
            return _Reply(200, tpl.error_document("eSearchResult", CAP_MESSAGE))
        end = min(retstart + retmax, HISTORY_CAP, count)
        page = ids[retstart:end] if end > retstart else []
        parts = [
            b"<eSearchResult><Count>%d</Count><RetMax>%d</RetMax><RetStart>%d</RetStart>" % (count, len(page), retstart)
        ]
        if (p.get("usehistory") or "").lower() == "y":
            webenv = p.get("WebEnv")
            with self._lock:
                if not webenv or webenv not in self.history or webenv in self.expired:
                    webenv = self._new_webenv()
                    self.history[webenv] = {"created": self.clock(), "queries": {}}
                queries = self.history[webenv]["queries"]
                qk = len(queries) + 1
                queries[qk] = list(ids)
            parts.append(b"<QueryKey>%d</QueryKey><WebEnv>%s</WebEnv>" % (qk, webenv.encode()))
        if page:
            parts.append(b"<IdList>\n" + b"".join(b"<Id>%d</Id>\n" % i for i in page) + b"</IdList>")
        else:
            parts.append(b"<IdList/>")
        parts.append(
            b"<TranslationSet/><QueryTranslation>"
            + _xml_text(p.get("term", ""))
            + b"</QueryTranslation></eSearchResult>\n"
        )
        return _Reply(200, tpl.esearch_prolog + b"".join(parts))

    def _efetch(self, p: dict) -> _Reply:
        tpl = self.templates
        if p.get("id"):
            seen = set()
            ids = []
            for tok in re.split(r"[\s,+]+", p["id"]):
                tok = tok.split(".", 1)[0]
                if tok.isdigit() and int(tok) not in seen:
                    seen.add(int(tok))
                    ids.append(int(tok))
        elif p.get("WebEnv") and p.get("query_key"):
            hist = self._history_get(p["WebEnv"], p["query_key"])
            if hist is None:
                return _Reply(200, tpl.error_document("eFetchResult", f"Unable to obtain query #{p['query_key']}"))
            retstart = max(self._int(p, "retstart", 0), 0)
            retmax = min(max(self._int(p, "retmax", 20), 0), RETMAX_CAP)
            if retstart > HISTORY_CAP - 1:
                return _Reply(200, tpl.error_document("eFetchResult", CAP_MESSAGE))
            end = min(retstart + retmax, HISTORY_CAP, len(hist))
            ids = hist[retstart:end]
        else:
            return _Reply(200, tpl.error_document("eFetchResult", NO_ID_MESSAGE))
        return _Reply(200, self.efetch_body(ids))

    def efetch_body(self, pmids: Iterable[int]) -> bytes:
        """The efetch XML for ``pmids`` (unknown ones silently omitted, as PubMed does)."""
        head, tail = self.templates.efetch_wrapper
        raws = [r.raw for r in (self.corpus.get(i) for i in pmids) if r is not None]
        return head + b"\n".join(raws) + tail


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer  # the only server it is given
    protocol_version = "HTTP/1.1"
    server_version = "Apache"
    sys_version = ""

    def log_message(self, fmt, *args):  # the stand-in keeps its own log
        pass

    def version_string(self) -> str:
        return self.server_version

    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")

    def _params(self, method: str) -> tuple[str, dict]:
        parts = urlsplit(self.path)
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        if method == "POST":
            n = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(n) if n else b""
            ctype = self.headers.get("Content-Type", "")
            if body and "multipart" not in ctype:
                pairs += parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
        params: dict[str, str] = {}
        for k, v in pairs:
            params[k] = f"{params[k]},{v}" if k in params else v
        return parts.path, params

    def _handle(self, method: str):
        si: EutilsStandIn = self.server.stand_in
        path, params = self._params(method)
        entry = si._log_arrival(method, path, params, self.client_address[0])
        try:
            reply, kind, opts = si.handle(entry)
        except Exception as exc:  # a bug in the stand-in: answer 500 and say so
            log.exception("stand-in failure")
            reply, kind, opts = _Reply(500, _html_page(500, "Internal Server Error", repr(exc)), "text/html"), None, {}
        entry.fault = kind
        if kind in ("timeout", "slow"):
            si._stop.wait(float(opts.get("seconds", 5.0 if kind == "timeout" else 1.0)))
            if kind == "timeout":
                return self._drop(entry, si, rst=False)
        if kind == "reset":
            return self._drop(entry, si, rst=True)
        entry.status = reply.status
        for hook in list(si.on_handled):
            try:
                hook(si, entry)
            except Exception:
                log.exception("on_handled hook failed")
        body = reply.body
        headers = dict(getattr(entry, "_rate_headers", {}))
        headers.update(reply.headers)
        length = len(body)
        # Log before the reply goes out: a client that acts on the answer (or stops the
        # server) must find the line already written.
        si._print(entry)
        if kind in ("truncated", "short_read"):
            cut = max(1, int(len(body) * float(opts.get("fraction", 0.5))))
            body = body[:cut]
            if kind == "truncated":
                length = cut
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.ctype)
        self.send_header("Content-Length", str(length))
        for k, v in headers.items():
            self.send_header(k, v)
        if kind == "short_read":
            self.send_header("Connection", "close")
        self.end_headers()
        try:
            self.wfile.write(body)
            self.wfile.flush()
        except OSError:
            pass
        if kind == "short_read":
            self.close_connection = True

    def _drop(self, entry, si, rst: bool):
        self.close_connection = True
        si._print(entry)
        if rst:
            try:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()
            except OSError:
                pass


def _print_entry(entry: LoggedRequest) -> str:
    shown = {k: (v if len(v) <= 80 else v[:77] + "...") for k, v in entry.params.items()}
    ts = _dt.datetime.fromtimestamp(entry.wall).strftime("%H:%M:%S.%f")[:-3]
    return f"{ts} {entry.method} {entry.path} {entry.status} {entry.fault or '-'} {shown}"


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m tests.eutils_stand_in",
        description="Serve real PubMed records through a local E-utilities stand-in.",
    )
    ap.add_argument("paths", nargs="+", help="record files (.xml, .xml.gz) or folders")
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--no-rate-limit", action="store_true", help="do not answer 429 above 3 (10) req/s")
    ap.add_argument(
        "--today", help="YYYY-MM-DD used by reldate (default: the harvester's today, HARVEST_TODAY or the clock)"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--random-faults", type=float, metavar="P", help="fail each request with probability P")
    ap.add_argument("--fail-every", type=int, metavar="N", help="every N-th request fails (mixed kinds)")
    ap.add_argument("--fault-kinds", default=",".join(DEFAULT_RANDOM_KINDS))
    ap.add_argument("--quiet", action="store_true", help="no request log on stderr")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(message)s")
    t0 = time.monotonic()
    corpus = Corpus.from_paths(a.paths)
    print(f"loaded {len(corpus)} records in {time.monotonic() - t0:.1f}s", file=sys.stderr)
    server = EutilsStandIn(
        corpus,
        host=a.host,
        port=a.port,
        enforce_rate_limit=not a.no_rate_limit,
        today=a.today,
        seed=a.seed,
        verbose=not a.quiet,
    )
    kinds = [k for k in a.fault_kinds.split(",") if k]
    if a.random_faults:
        server.faults.random(a.seed, a.random_faults, kinds)
    if a.fail_every:
        server.faults.every(a.fail_every, kinds)
    server.start()
    print(server.url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
