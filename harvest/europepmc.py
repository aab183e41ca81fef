"""Europe PMC REST: fetch pages of search results, and parse a preprint into a declared record.

Owns: the service's endpoint and parameters (`GET search` with `query`, `format=json`,
`resultType`, `pageSize`, `cursorMark`), what makes an answer usable (JSON with an integer
`hitCount` and a `resultList.result` list), cursor paging to the end (never page numbers), and
the pure mappings result JSON -> PreprintRecord -> rows, and core MED record -> its preprint links.
The HTTP itself (pace, retries, Retry-After, body cap) is harvest/http.py's.
Must never: write to the database (store.py does), or decide what a run asks for (runner.py).
"""

from __future__ import annotations

import hashlib
import html
import json
import re
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import requests

from . import json_shapes
from .config import EuropepmcSettings
from .export import split_short_name
from .http import HttpClient, HttpError, RateLimiter, RetryableResponse, Service, decode_json, user_agent
from .json_shapes import items, obj, objects, whole_number
from .query import is_ppr_id

SERVICE_NAME = "Europe PMC"
# PubMed ids per look-up of their published records (`EXT_ID:a OR EXT_ID:b ...`): 100 keeps the
# URL near 2 KB and a page of core records near 1 MB.
PMIDS_PER_REQUEST = 100
# How a preprint -> published-record link was made (`preprint_links.method`).
LINK_EUROPEPMC = "europepmc"  # the published record's commentCorrectionList: "Preprint in"
LINK_DOI = "doi"  # the same DOI (after the version suffix)
LINK_TITLE = "title_author_year"  # title similarity, the same first author, a year close by


class EuropepmcError(HttpError):
    """A request to Europe PMC failed for good (after its retries)."""


@dataclass
class SearchPage:
    results: list[dict]
    hit_count: int
    next_cursor: str | None


def parse_search_page(body: bytes) -> SearchPage:
    """A `search` answer (format=json) to a SearchPage; anything else is a broken answer (retried).
    `hitCount` 0 with no results is a valid, empty answer."""
    data = decode_json(body)
    if not isinstance(data, dict) or not isinstance(data.get("hitCount"), int):
        raise RetryableResponse("the answer has no `hitCount`")
    results = obj(data.get("resultList")).get("result")
    if results is None and data["hitCount"] == 0:
        results = []
    if not isinstance(results, list) or not all(isinstance(r, dict) and r.get("id") for r in results):
        raise RetryableResponse("the answer has no `resultList.result` list of records with ids")
    cursor = data.get("nextCursorMark")
    return SearchPage(results, data["hitCount"], cursor if isinstance(cursor, str) and cursor else None)


class EuropepmcClient(HttpClient):
    """Europe PMC REST over the shared HTTP layer, at its own pace."""

    error_class = EuropepmcError

    def __init__(
        self,
        settings: EuropepmcSettings | None = None,
        *,
        limiter: RateLimiter | None = None,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.settings = s = settings or EuropepmcSettings.from_env()
        service = Service.from_settings(
            s,
            name=SERVICE_NAME,
            requests_per_second=s.requests_per_second,
            user_agent=user_agent(s.tool, s.email),
            url_setting="EUROPEPMC_API_URL",
            body_cap_setting="EUROPEPMC_MAX_BODY_MB",
            body_cap_hint="a real page of 1,000 core records is about 10 MB: raise EUROPEPMC_MAX_BODY_MB if this one is genuine",
        )
        super().__init__(service, limiter=limiter, session=session, sleep=sleep)

    def search_page(
        self,
        query: str,
        *,
        cursor: str = "*",
        page_size: int | None = None,
        result_type: str = "core",
        describe: str = "search",
    ) -> SearchPage:
        params = {
            "query": query,
            "format": "json",
            "resultType": result_type,
            "pageSize": str(page_size or self.settings.page_size),
            "cursorMark": cursor,
        }
        return self.call("search", params, parse_search_page, describe=describe)

    def iter_pages(
        self, query: str, *, page_size: int | None = None, result_type: str = "core", describe: str = "search"
    ) -> Iterator[SearchPage]:
        """Every page of a search, following `nextCursorMark` until it stops moving (Europe PMC
        answers the last cursor with itself) or a page is empty; a page that fails ends it loudly."""
        cursor = "*"
        seen = {cursor}
        number = 0
        while True:
            number += 1
            page = self.search_page(
                query,
                cursor=cursor,
                page_size=page_size,
                result_type=result_type,
                describe=f"{describe}, page {number}",
            )
            yield page
            if not page.results or page.next_cursor is None or page.next_cursor in seen:
                return
            cursor = page.next_cursor
            seen.add(cursor)


# -- the pure half: result JSON -> PreprintRecord -> rows -----------------------------------


@dataclass
class PreprintRecord:
    ppr_id: str
    title: str | None
    abstract: str | None
    authors: list[str]
    first_author_surname: str | None
    server: str | None
    version: int | None
    doi: str | None
    pub_year: int | None
    first_publication_date: str | None
    first_index_date: str | None
    keywords: list[str] = field(default_factory=list)
    raw: dict = field(default_factory=dict, repr=False)


_TAG = re.compile(r"<[^>]+>")


def plain_text(value: Any) -> str | None:
    """Text without the inline markup Europe PMC keeps (<i>, <sup>, ...), entities decoded."""
    value = json_shapes.text(value)
    if value is None:
        return None
    text = html.unescape(_TAG.sub("", value))
    text = " ".join(text.split())
    return text or None


def _year(value: Any) -> int | None:
    return whole_number((json_shapes.text(value) or "")[:4], low=1)


def surname_of(name: str | None) -> str | None:
    """The surname of "Mendez JS", "van Duijnhoven FJ" (Europe PMC's and PubMed's short form)."""
    return split_short_name(name)[0]


def _version(value: Any) -> int | None:
    return whole_number(value)


def parse_preprint(result: dict) -> PreprintRecord:
    """One Europe PMC result (lite or core) of source PPR to a PreprintRecord. Pure."""
    ppr_id = result.get("id")
    if result.get("source") != "PPR" or not is_ppr_id(ppr_id):
        raise ValueError(f"not a preprint record (source {str(result.get('source'))[:40]!r}, id {str(ppr_id)[:40]!r})")
    listed = items(obj(result.get("authorList")).get("author"))
    authors = [name for a in listed if isinstance(a, dict) and (name := json_shapes.text(a.get("fullName")))]
    author_string = json_shapes.text(result.get("authorString"))
    if not authors and author_string:
        authors = [a.strip() for a in author_string.rstrip(".").split(", ") if a.strip()]
    first = listed[0] if listed and isinstance(listed[0], dict) else {}
    surname = json_shapes.text(first.get("lastName")) or surname_of(authors[0] if authors else None)
    version = result.get("versionNumber")
    keywords = [k for k in items(obj(result.get("keywordList")).get("keyword")) if isinstance(k, str) and k.strip()]
    doi = (json_shapes.text(result.get("doi")) or "").lower() or None
    return PreprintRecord(
        ppr_id=ppr_id,
        title=plain_text(result.get("title")),
        abstract=plain_text(result.get("abstractText")),
        authors=authors,
        first_author_surname=surname or None,
        server=plain_text(obj(result.get("bookOrReportDetails")).get("publisher")),
        version=_version(version),
        doi=doi,
        pub_year=_year(result.get("pubYear")),
        first_publication_date=json_shapes.iso_date(result.get("firstPublicationDate")),
        first_index_date=json_shapes.iso_date(result.get("firstIndexDate")),
        keywords=keywords,
        raw=result,
    )


def raw_json(record: PreprintRecord) -> bytes:
    """The record as Europe PMC sent it, in a stable spelling (sorted keys): equal bytes, same record."""
    return json.dumps(record.raw, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def preprint_row(record: PreprintRecord) -> dict:
    """The `preprints` columns of a record (run bookkeeping and links are the store's)."""
    raw = raw_json(record)
    return {
        "ppr_id": record.ppr_id,
        "title": record.title,
        "abstract": record.abstract,
        "authors": "; ".join(record.authors) or None,
        "first_author": record.authors[0] if record.authors else None,
        "server": record.server,
        "version": record.version,
        "doi": record.doi,
        "pub_year": record.pub_year,
        "first_publication_date": record.first_publication_date,
        "first_index_date": record.first_index_date,
        "keywords": "; ".join(record.keywords) or None,
        "raw_sha1": hashlib.sha1(raw).hexdigest(),
        "raw_json_zlib": zlib.compress(raw, 6),
    }


def preprint_tags(record: PreprintRecord) -> list[dict]:
    """The tags (design, molecule, route, ...) the papers' tagger gives the preprint's text. A
    preprint has no indexing: the tagger reads its title, abstract and keywords alone."""
    from .tags import tag_article

    mapping = {
        "title": record.title or "",
        "abstract": record.abstract or "",
        "keywords": [{"keyword": k, "owner": "Author"} for k in record.keywords],
    }
    return tag_article(mapping, use_indexing=False)


def preprint_links_in(result: dict) -> list[tuple[str, int]]:
    """(PPR id, PMID) for every preprint a core MED record names in its commentCorrectionList
    (`source` "PPR", `type` "Preprint in"): Europe PMC's own link from a paper to its preprint."""
    pmid = whole_number(result.get("pmid") or (result.get("id") if result.get("source") == "MED" else None), low=1)
    if pmid is None:
        return []
    links = []
    for entry in objects(obj(result.get("commentCorrectionList")).get("commentCorrection")):
        kind = " ".join(str(entry.get("type") or "").split()).lower()
        if entry.get("source") == "PPR" and kind == "preprint in" and is_ppr_id(entry.get("id")):
            links.append((entry["id"], pmid))
    return list(dict.fromkeys(links))
