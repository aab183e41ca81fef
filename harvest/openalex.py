"""OpenAlex: ask for the works of a batch of PMIDs (or of preprint DOIs), and parse a works
answer into citation rows.

Owns: OpenAlex's endpoint and parameters (`GET /works` with `filter=pmid:A|B|...` or
`filter=doi:A|B|...`, `per_page`,
`cursor`; `mailto` for the polite pool, `api_key` when one is set; `GET /works/pmid:N` for one
work), what makes an answer usable (JSON with a `results` list of works, or one work), and the
pure mapping work JSON -> Citation (OpenAlex id, PMID, cited_by_count, counts_by_year).
The HTTP itself (pace, retries, Retry-After, body cap) is harvest/http.py's.
Must never: write to the database (store.py does), or decide which PMIDs are due (store.py's
schedule and runner.py do).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import requests

from .config import OpenalexSettings
from .http import HttpClient, HttpError, RateLimiter, RetryableResponse, Service, decode_json, user_agent
from .json_shapes import iso_date, obj, objects, whole_number

SERVICE_NAME = "OpenAlex"
SOURCE_LABEL = "OpenAlex"
# PMIDs per request: OpenAlex takes up to 50 values in one OR filter (`pmid:A|B|...`) and 50
# results fit one page (`per_page` 50; more only when OpenAlex holds two works for one PMID).
PMIDS_PER_REQUEST = 50
DOIS_PER_REQUEST = 50  # the same OR-filter limit, for preprints' DOIs
PER_PAGE = 50

_WORK_ID = re.compile(r"^https://openalex\.org/(W\d+)$")
_PMID = re.compile(r"(?:pubmed\.ncbi\.nlm\.nih\.gov/|^)(\d{1,9})/?$")


class OpenalexError(HttpError):
    """A request to OpenAlex failed for good (after its retries)."""


@dataclass
class WorksPage:
    works: list[dict]
    count: int | None  # meta.count: how many works the filter matches in all
    next_cursor: str | None


@dataclass(frozen=True)
class Citation:
    """What the catalog keeps of one OpenAlex work, keyed by the PMID it carries (a record), or by
    its DOI (a preprint: `pmid` None)."""

    pmid: int | None
    openalex_id: str  # W123..., without the https://openalex.org/ prefix
    cited_by_count: int
    counts_by_year: tuple[tuple[int, int], ...] = field(default=())  # (year, cited_by_count), oldest first
    updated_date: str | None = None  # when OpenAlex last changed the work


def _check_work(work) -> None:
    if not isinstance(work, dict) or not isinstance(work.get("id"), str) or not _WORK_ID.match(work["id"]):
        raise RetryableResponse("a work in the answer has no OpenAlex id")


def parse_works_page(body: bytes) -> WorksPage:
    """A `/works` list answer (or a single work) to a WorksPage; anything else is a broken answer
    (retried). An empty `results` list is an answer: no work carries those PMIDs."""
    data = decode_json(body)
    if isinstance(data, dict) and "results" not in data and "id" in data:
        _check_work(data)
        return WorksPage([data], 1, None)
    if not isinstance(data, dict) or not isinstance(data.get("results"), list):
        raise RetryableResponse("the answer has no `results` list")
    for work in data["results"]:
        _check_work(work)
    meta = data.get("meta")
    if not isinstance(meta, dict):
        meta = {}
    cursor = meta.get("next_cursor")
    return WorksPage(
        data["results"], whole_number(meta.get("count")), cursor if isinstance(cursor, str) and cursor else None
    )


def work_pmid(work: dict) -> int | None:
    """The PMID a work carries (`ids.pmid`, a PubMed URL), or None."""
    value = obj(work.get("ids")).get("pmid")
    if not isinstance(value, str):
        return None
    match = _PMID.search(value.strip())
    return whole_number(match.group(1), low=1) if match else None


def doi_key(doi: str | None) -> str | None:
    """A DOI as OpenAlex's `doi` and the catalog's compare: no resolver prefix, lower case."""
    if not isinstance(doi, str):
        return None
    key = re.sub(r"^(https?://(dx\.)?doi\.org/|doi:)", "", doi.strip().lower())
    return key or None


def askable_doi(doi: str | None) -> bool:
    """Can this DOI stand in an OR filter? `|` and `,` are the filter's own separators."""
    key = doi_key(doi)
    return key is not None and key.startswith("10.") and not re.search(r"[|,\s]", key)


def parse_work(work: dict, *, by_doi: bool = False) -> Citation | None:
    """One work to a Citation; None for a work without a PMID (the catalog cannot key it), or
    with `by_doi` (a preprint's work) without a DOI. Pure."""
    pmid = work_pmid(work)
    if (doi_key(work.get("doi")) if by_doi else pmid) is None:
        return None
    work_id = work.get("id")
    match = _WORK_ID.match(work_id) if isinstance(work_id, str) else None
    if not match:
        raise ValueError(f"a work without an OpenAlex id ({str(work_id)[:40]!r})")
    by_year: dict[int, int] = {}
    for entry in objects(work.get("counts_by_year")):
        year, cited = whole_number(entry.get("year"), high=9999), whole_number(entry.get("cited_by_count"))
        if year is not None and cited is not None:
            by_year[year] = cited
    return Citation(
        pmid=pmid,
        openalex_id=match.group(1),
        cited_by_count=whole_number(work.get("cited_by_count")) or 0,
        counts_by_year=tuple(sorted(by_year.items())),
        updated_date=iso_date(work.get("updated_date")),
    )


def citations_of(works: Iterable[dict]) -> dict[int, Citation]:
    """The citations of a set of works, one per PMID. OpenAlex sometimes holds two works for one
    PMID (a duplicate it has not merged): the one cited most is kept (then the lower id), so the
    choice does not depend on the order of the answer."""
    return _most_cited((citation.pmid, citation) for work in works if (citation := parse_work(work)) is not None)


def citations_by_doi(works: Iterable[dict]) -> dict[str, Citation]:
    """The citations of a set of works, one per DOI (`doi_key`), chosen as `citations_of` does."""
    return _most_cited(
        (doi_key(work.get("doi")), citation)
        for work in works
        if (citation := parse_work(work, by_doi=True)) is not None
    )


def _most_cited(keyed) -> dict:
    chosen: dict = {}
    for key, citation in keyed:
        if key is None:
            continue
        old = chosen.get(key)
        if old is None or (citation.cited_by_count, -_number(citation.openalex_id)) > (
            old.cited_by_count,
            -_number(old.openalex_id),
        ):
            chosen[key] = citation
    return chosen


def _number(openalex_id: str) -> int:
    return whole_number(openalex_id[1:]) or 0


class OpenalexClient(HttpClient):
    """OpenAlex over the shared HTTP layer, at its own pace (10 requests/s by default)."""

    error_class = OpenalexError

    def __init__(
        self,
        settings: OpenalexSettings | None = None,
        *,
        limiter: RateLimiter | None = None,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.settings = s = settings or OpenalexSettings.from_env()
        service = Service.from_settings(
            s,
            name=SERVICE_NAME,
            requests_per_second=s.requests_per_second,
            user_agent=user_agent(s.tool, s.email),
            url_setting="OPENALEX_API_URL",
            body_cap_setting="OPENALEX_MAX_BODY_MB",
            body_cap_hint="a real page of 50 works is under 3 MB: raise OPENALEX_MAX_BODY_MB if this one is genuine",
            secrets=(s.api_key or "",),
        )
        super().__init__(service, limiter=limiter, session=session, sleep=sleep)

    def default_params(self) -> dict[str, str]:
        params = {}
        if self.settings.email:
            params["mailto"] = self.settings.email  # the polite pool
        if self.settings.api_key:
            params["api_key"] = self.settings.api_key
        return params

    def works_page(
        self, values: list, cursor: str = "*", *, describe: str | None = None, field: str = "pmid"
    ) -> WorksPage:
        query = {
            "filter": f"{field}:" + "|".join(str(v) for v in values),
            "per_page": str(PER_PAGE),
            "cursor": cursor,
        }
        return self.call("works", query, parse_works_page, describe=describe or f"works of {len(values)} PMIDs")

    def works_by_pmids(self, pmids: list[int]) -> list[dict]:
        """Every work OpenAlex holds for these PMIDs (at most 50), following `next_cursor` while
        the pages have not yet listed `meta.count` works."""
        if len(pmids) > PMIDS_PER_REQUEST:
            raise ValueError(f"at most {PMIDS_PER_REQUEST} PMIDs a request, got {len(pmids)}")
        return self._all_pages(pmids, "pmid", "PMIDs")

    def works_by_dois(self, dois: list[str]) -> list[dict]:
        """Every work OpenAlex holds for these DOIs (at most 50; each `askable_doi`), as
        `works_by_pmids` pages them."""
        if len(dois) > DOIS_PER_REQUEST:
            raise ValueError(f"at most {DOIS_PER_REQUEST} DOIs a request, got {len(dois)}")
        unaskable = [d for d in dois if not askable_doi(d)]
        if unaskable:
            raise ValueError(f"not a DOI an OR filter can hold: {unaskable[0]!r}")
        return self._all_pages([doi_key(d) for d in dois], "doi", "DOIs")

    def _all_pages(self, values: list, field: str, what: str) -> list[dict]:
        works: list[dict] = []
        cursor = "*"
        seen = {cursor}
        number = 0
        while True:
            number += 1
            page = self.works_page(
                values, cursor, describe=f"works of {len(values)} {what}, page {number}", field=field
            )
            works.extend(page.works)
            total = page.count if page.count is not None else len(works)
            if not page.works or not page.next_cursor or len(works) >= total:
                return works
            if page.next_cursor in seen:
                raise OpenalexError(
                    f"works of {len(values)} {what}, page {number}: OpenAlex gave the cursor "
                    f"{page.next_cursor[:40]!r} a second time, so following it would never end"
                )
            seen.add(page.next_cursor)
            cursor = page.next_cursor

    def work_by_pmid(self, pmid: int) -> dict | None:
        """One work by its PMID (`/works/pmid:N`), or None when OpenAlex answers 404."""
        missing = WorksPage([], 0, None)
        page = self.call(
            f"works/pmid:{pmid}",
            {},
            parse_works_page,
            describe=f"work of PMID {pmid}",
            accept=lambda status, body: missing if status == 404 else None,
        )
        return page.works[0] if page.works else None
