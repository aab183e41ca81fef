"""The NCBI E-utilities client: what is particular to NCBI, over the shared HTTP layer.

Owns: every E-utilities request's parameters. Every request carries `tool` (and `email` when
set, `api_key` when set); NCBI's rate is 3 requests/s, 10 with a key; an `<ERROR>` inside an
HTTP 200 is a broken answer to retry. Pacing, retries, backoff, Retry-After, streamed bodies
with their cap and redaction are harvest/http.py's, shared with every other service.
Must never: log, store or put into an exception message the API key; invent a contact
address; parse records (it hands the bytes to a validator the caller chooses, so that a body
that fails to parse is retried like any other broken answer).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import requests
from lxml import etree

from . import http
from .config import Settings
from .http import HttpClient, HttpError, RateLimiter, RetryableResponse, Service, ServiceUnreachable, user_agent
from .json_shapes import whole_number

log = logging.getLogger("harvest.eutils")

SERVICE_NAME = "E-utilities"

T = TypeVar("T")


class EutilsError(HttpError):
    """A request to E-utilities failed for good (after its retries)."""


class PubMedUnreachable(EutilsError, ServiceUnreachable):
    """No answer at all from the configured E-utilities host."""


class BodyTooLarge(EutilsError, http.BodyTooLarge):
    """An answer that inflates past NCBI_MAX_BODY_MB: not retried (it would come again)."""


def shared_rate_limiter(per_second: int) -> RateLimiter:
    """The process-wide E-utilities limiter for a given rate: every client shares it."""
    return http.shared_rate_limiter(SERVICE_NAME, per_second)


@dataclass
class SearchResult:
    count: int
    ids: list[int]
    webenv: str | None = None
    query_key: str | None = None
    query_translation: str | None = None


_ERROR_RE = re.compile(rb"<ERROR>(.*?)</ERROR>", re.S)
_email_warned = False


def error_in_body(body: bytes) -> str | None:
    """The text of an `<ERROR>` element NCBI put inside an otherwise normal 200."""
    match = _ERROR_RE.search(body[:4096]) or (_ERROR_RE.search(body[-4096:]) if len(body) > 4096 else None)
    if match:
        return match.group(1).decode("utf-8", "replace").strip()
    return None


def parse_esearch(body: bytes) -> SearchResult:
    """An eSearchResult document to a SearchResult; anything else is retryable."""
    message = error_in_body(body)
    if message:
        raise RetryableResponse(f"E-utilities reported an error: {message[:300]}")
    if b"<!ENTITY" in body:
        # Not expanded (resolve_entities=False), but not to be trusted either.
        raise RetryableResponse(
            "refusing an esearch answer with entity declarations: E-utilities never declares "
            "entities, and declaring them is how XXE and entity-bomb attacks work"
        )
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    try:
        root = etree.fromstring(body, parser)
    except etree.XMLSyntaxError as exc:
        raise RetryableResponse(f"esearch answer is not well-formed XML ({exc})") from None
    if root.tag != "eSearchResult":
        raise RetryableResponse(f"esearch answered with a <{root.tag}> document, not eSearchResult")
    count_text = root.findtext("Count")
    if count_text is None:
        raise RetryableResponse("esearch answer has no <Count>")
    count = whole_number(count_text)
    if count is None:
        raise RetryableResponse(f"esearch answer's <Count> is {count_text[:40]!r}, not a number of records")
    ids = []
    for text in root.xpath("IdList/Id/text()"):
        pmid = whole_number(text, low=1)
        if pmid is None:
            raise RetryableResponse(f"esearch answer lists {str(text)[:40]!r} as a PMID")
        ids.append(pmid)
    return SearchResult(
        count=count,
        ids=ids,
        webenv=root.findtext("WebEnv"),
        query_key=root.findtext("QueryKey"),
        query_translation=root.findtext("QueryTranslation"),
    )


class EutilsClient(HttpClient):
    """E-utilities over the shared HTTP layer: `tool`/`email`/`api_key` on every request,
    NCBI's rate (3/s, 10/s with a key), the API key never shown."""

    error_class = EutilsError
    unreachable_class = PubMedUnreachable
    too_large_class = BodyTooLarge

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        limiter: RateLimiter | None = None,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.settings = settings or Settings.from_env()
        s = self.settings
        service = Service.from_settings(
            s,
            name=SERVICE_NAME,
            requests_per_second=s.requests_per_second,
            user_agent=user_agent(s.tool),
            url_setting="NCBI_EUTILS_URL",
            body_cap_setting="NCBI_MAX_BODY_MB",
            body_cap_hint=(
                "a real efetch batch of 500 records is under 8 MB: raise NCBI_MAX_BODY_MB or lower "
                "--batch-size if this answer is genuine"
            ),
            secrets=(s.api_key,) if s.api_key else (),
        )
        super().__init__(
            service, limiter=limiter or shared_rate_limiter(s.requests_per_second), session=session, sleep=sleep
        )
        global _email_warned
        if not s.email and not _email_warned:
            _email_warned = True
            log.warning(
                "NCBI_EMAIL is not set: requests go without a contact address. "
                "NCBI asks for one so they can reach you before blocking a tool; "
                "set NCBI_EMAIL=you@example.org."
            )

    def default_params(self) -> dict[str, str]:
        params = {"tool": self.settings.tool}
        if self.settings.email:
            params["email"] = self.settings.email
        if self.settings.api_key:
            params["api_key"] = self.settings.api_key
        return params

    def unreachable_message(self, problem: str) -> str:
        return (
            f"PubMed could not be reached at {self.settings.base_url} ({problem}). "
            "Check the network, or point the harvester at another E-utilities "
            "server with NCBI_EUTILS_URL."
        )

    # -- the E-utilities we use ----------------------------------------------

    def esearch(self, term: str, *, retmax: int = 0, retstart: int = 0, usehistory: bool = False) -> SearchResult:
        params = {"db": "pubmed", "term": term, "retmax": str(retmax), "retstart": str(retstart)}
        if usehistory:
            params["usehistory"] = "y"
        # POST: the topic query with date clauses is long, and POST keeps it out of URLs.
        return self.call("esearch.fcgi", params, parse_esearch, post=True, describe=f"esearch {_short_term(term)}")

    def efetch_ids(self, ids: list[int], validate: Callable[[bytes], T]) -> T:
        params = {"db": "pubmed", "retmode": "xml", "id": ",".join(str(i) for i in ids)}
        return self.call("efetch.fcgi", params, validate, post=True, describe=f"efetch of {len(ids)} ids")

    def efetch_history(
        self, webenv: str, query_key: str, retstart: int, retmax: int, validate: Callable[[bytes], T]
    ) -> T:
        params = {
            "db": "pubmed",
            "retmode": "xml",
            "WebEnv": webenv,
            "query_key": query_key,
            "retstart": str(retstart),
            "retmax": str(retmax),
        }
        return self.call(
            "efetch.fcgi",
            params,
            validate,
            post=True,
            describe=f"efetch records {retstart + 1}-{retstart + retmax} of a search",
        )


def _short_term(term: str) -> str:
    dates = re.findall(r'"[^"]+"\[(?:crdt|edat|mdat|dp)\](?: : "[^"]+"\[\w+\])?', term)
    return " AND ".join(dates) if dates else "(topic query)"
