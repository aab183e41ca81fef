"""The NCBI E-utilities client: HTTP, the shared rate limit, retries.

Owns: every byte sent to or received from NCBI. Every request carries `tool`
(and `email` when set, `api_key` when set); one rate limiter per process paces
them; 429, 5xx, timeouts, broken connections, truncated bodies and `<ERROR>`
inside an HTTP 200 are retried with exponential backoff and jitter, honouring
`Retry-After`, a bounded number of times. Must never: log, store or put into an
exception message the API key; invent a contact address; parse records (it
hands the bytes to a validator the caller chooses, so that a body that fails
to parse is retried like any other broken answer).
"""

from __future__ import annotations

import collections
import logging
import random
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, TypeVar

import requests
from lxml import etree

from .config import Settings

log = logging.getLogger("harvest.eutils")

T = TypeVar("T")


class EutilsError(RuntimeError):
    """A request to E-utilities failed for good (after its retries)."""


class PubMedUnreachable(EutilsError):
    """No answer at all from the configured E-utilities host."""


class BodyTooLarge(EutilsError):
    """An answer that inflates past NCBI_MAX_BODY_MB: not retried (it would come again)."""


class RetryableResponse(Exception):
    """A response that arrived but cannot be used; worth asking again."""


class RateLimiter:
    """At most `limit` requests in any `window`-second span, as the server counts them.

    The server counts a request when it arrives, which is somewhere between our send
    and the end of its answer. So a request holds its place in the window from
    `acquire` until `window` (+ `margin`) after `release`, called when its answer has
    arrived (or failed): counting from the send time alone let a request that was slow
    to reach the server (a busy machine, a new connection) land in one server-side
    window with `limit` later ones. Bursts of `limit` are allowed. Thread-safe: one
    instance is shared by everything in the process.
    """

    def __init__(self, limit: int, window: float = 1.0, margin: float = 0.05):
        self.limit = limit
        self.window = window
        self.margin = margin
        self._slots: list[list] = []  # [sent, answered or None while in flight]
        self._cond = threading.Condition()

    def acquire(self) -> list:
        """Wait for a place in the window; returns the slot to `release`."""
        with self._cond:
            while True:
                now = time.monotonic()
                hold = self.window + self.margin
                self._slots = [s for s in self._slots if s[1] is None or now - s[1] <= hold]
                if len(self._slots) < self.limit:
                    slot = [now, None]
                    self._slots.append(slot)
                    return slot
                answered = [s[1] for s in self._slots if s[1] is not None]
                self._cond.wait(min(answered) + hold - now + 0.001 if answered else None)

    def release(self, slot: list) -> None:
        """The request of `slot` is over (answered, failed or timed out)."""
        with self._cond:
            slot[1] = time.monotonic()
            self._cond.notify_all()

    def assume_full(self) -> None:
        """Count the window as used up just now, e.g. by a process that has just died:
        NCBI counts per client, and that process's requests are not in our slots."""
        with self._cond:
            now = time.monotonic()
            self._slots = [[now, now] for _ in range(self.limit)]


_limiters: dict[int, RateLimiter] = {}
_limiters_lock = threading.Lock()


def shared_rate_limiter(per_second: int) -> RateLimiter:
    """The process-wide limiter for a given rate: every client shares it."""
    with _limiters_lock:
        if per_second not in _limiters:
            _limiters[per_second] = RateLimiter(per_second)
        return _limiters[per_second]


@dataclass
class SearchResult:
    count: int
    ids: list[int]
    webenv: str | None = None
    query_key: str | None = None
    query_translation: str | None = None


@dataclass
class RequestStats:
    requests: int = 0
    retries: int = 0
    faults: collections.Counter = field(default_factory=collections.Counter)


_ERROR_RE = re.compile(rb"<ERROR>(.*?)</ERROR>", re.S)
_email_warned = False


def error_in_body(body: bytes) -> str | None:
    """The text of an `<ERROR>` element NCBI put inside an otherwise normal 200."""
    match = _ERROR_RE.search(body[:4096]) or (
        _ERROR_RE.search(body[-4096:]) if len(body) > 4096 else None
    )
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
    count = root.findtext("Count")
    if count is None:
        raise RetryableResponse("esearch answer has no <Count>")
    return SearchResult(
        count=int(count),
        ids=[int(i) for i in root.xpath("IdList/Id/text()")],
        webenv=root.findtext("WebEnv"),
        query_key=root.findtext("QueryKey"),
        query_translation=root.findtext("QueryTranslation"),
    )


class EutilsClient:
    def __init__(
        self,
        settings: Settings | None = None,
        *,
        limiter: RateLimiter | None = None,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.settings = settings or Settings.from_env()
        self.limiter = limiter or shared_rate_limiter(self.settings.requests_per_second)
        self.session = session or requests.Session()
        self.session.headers["User-Agent"] = f"{self.settings.tool} (python-requests)"
        self.stats = RequestStats()
        self._sleep = sleep
        self._ever_answered = False
        global _email_warned
        if not self.settings.email and not _email_warned:
            _email_warned = True
            log.warning(
                "NCBI_EMAIL is not set: requests go without a contact address. "
                "NCBI asks for one so they can reach you before blocking a tool; "
                "set NCBI_EMAIL=you@example.org."
            )

    # -- the one place requests are made -------------------------------------

    def _common_params(self) -> dict[str, str]:
        params = {"tool": self.settings.tool}
        if self.settings.email:
            params["email"] = self.settings.email
        if self.settings.api_key:
            params["api_key"] = self.settings.api_key
        return params

    def redact(self, text: str) -> str:
        if self.settings.api_key:
            text = text.replace(self.settings.api_key, "***")
        return text

    def call(
        self,
        endpoint: str,
        params: dict,
        validate: Callable[[bytes], T],
        *,
        post: bool = False,
        describe: str | None = None,
    ) -> T:
        """Send one E-utilities request, retrying until `validate(body)` accepts it.

        `validate` returns the parsed result or raises RetryableResponse (or any
        ValueError) for a body that cannot be used.
        """
        url = self.settings.base_url + endpoint
        data = {**params, **self._common_params()}
        what = describe or f"{endpoint} {_short(params)}"
        settings = self.settings
        # A host that has never answered is probably misconfigured or offline:
        # give up after a few quick tries so `make run` fails within a minute.
        tries_unreached = 3
        attempt = 0
        while True:
            attempt += 1
            retry_after: float | None = None
            slot = self.limiter.acquire()
            self.stats.requests += 1
            try:
                try:
                    timeout = (settings.connect_timeout, settings.read_timeout)
                    # Streamed, so that a body is read only up to the cap (and a gzip bomb is
                    # inflated only that far), never whole into memory first.
                    if post:
                        response = self.session.post(url, data=data, timeout=timeout, stream=True)
                    else:
                        response = self.session.get(url, params=data, timeout=timeout, stream=True)
                    with response:
                        body = read_body(response, settings.max_body_bytes, what)
                finally:
                    self.limiter.release(slot)
            except (requests.ConnectionError, requests.Timeout) as exc:
                problem = f"{type(exc).__name__}: {_root_cause(exc)}"
                kind = "connection"
                if not self._ever_answered and attempt >= tries_unreached:
                    raise PubMedUnreachable(
                        f"PubMed could not be reached at {settings.base_url} ({self.redact(problem)}). "
                        "Check the network, or point the harvester at another E-utilities "
                        "server with NCBI_EUTILS_URL."
                    ) from None
            except requests.RequestException as exc:  # e.g. ChunkedEncodingError: body cut short
                problem = f"{type(exc).__name__}: {_root_cause(exc)}"
                kind = "broken body"
                self._ever_answered = True
            else:
                self._ever_answered = True
                status = response.status_code
                if status == 200:
                    try:
                        return validate(body)
                    except (RetryableResponse, ValueError) as exc:
                        problem = str(exc)
                        kind = "bad body"
                else:
                    problem = f"HTTP {status}"
                    kind = f"http {status}"
                    if status == 429 or status >= 500:
                        retry_after = _retry_after(response.headers.get("Retry-After"))
                    else:
                        raise EutilsError(
                            f"{what}: HTTP {status} from E-utilities: "
                            f"{self.redact(body[:200].decode('utf-8', 'replace'))}"
                        )
            self.stats.faults[kind] += 1
            if attempt >= settings.max_tries:
                raise EutilsError(
                    f"{what}: gave up after {attempt} tries; last problem: {self.redact(problem)}"
                )
            delay = min(settings.backoff_cap, settings.backoff_base * 2 ** (attempt - 1))
            delay = delay * (0.5 + random.random() / 2)  # jitter: spread out retries
            if retry_after is not None:
                delay = max(delay, retry_after)
            elif kind == "http 429":
                # NCBI counts per client, not per process: let its 1-second window pass.
                delay = max(delay, 1.0)
            self.stats.retries += 1
            log.warning(
                "%s: %s; retry %d/%d in %.1fs",
                what,
                self.redact(problem)[:200],
                attempt,
                settings.max_tries - 1,
                delay,
            )
            self._sleep(delay)

    # -- the E-utilities we use ----------------------------------------------

    def esearch(self, term: str, *, retmax: int = 0, retstart: int = 0, usehistory: bool = False) -> SearchResult:
        params = {"db": "pubmed", "term": term, "retmax": str(retmax), "retstart": str(retstart)}
        if usehistory:
            params["usehistory"] = "y"
        # POST: the topic query with date clauses is long, and POST keeps it out of URLs.
        return self.call("esearch.fcgi", params, parse_esearch, post=True, describe=f"esearch {_short_term(term)}")

    def efetch_ids(self, ids: list[int], validate: Callable[[bytes], T]) -> T:
        params = {"db": "pubmed", "retmode": "xml", "id": ",".join(str(i) for i in ids)}
        return self.call(
            "efetch.fcgi", params, validate, post=True, describe=f"efetch of {len(ids)} ids"
        )

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


BODY_CHUNK = 64 * 1024


def read_body(response: requests.Response, cap: int, what: str) -> bytes:
    """The response body, decompressed, or BodyTooLarge as soon as it passes `cap` bytes
    (counted after Content-Encoding is undone: a small gzip body can inflate to gigabytes)."""
    def too_large(size: str) -> BodyTooLarge:
        return BodyTooLarge(
            f"{what}: the answer is larger than NCBI_MAX_BODY_MB={cap / (1024 * 1024):g} MB ({size}); "
            "a real efetch batch of 500 records is under 8 MB: raise NCBI_MAX_BODY_MB or lower "
            "--batch-size if this answer is genuine"
        )

    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > cap:
        raise too_large(f"Content-Length {int(declared):,} bytes")
    body = bytearray()
    for chunk in response.iter_content(chunk_size=BODY_CHUNK):
        body += chunk
        if len(body) > cap:
            encoding = response.headers.get("Content-Encoding")
            raise too_large(f"over {cap:,} bytes read" + (f" after {encoding} decoding" if encoding else ""))
    return bytes(body)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return min(float(value), 300.0)
    except ValueError:
        return None


def _root_cause(exc: BaseException) -> str:
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__
    text = str(exc)
    return text[:200]


def _short(params: dict) -> str:
    return " ".join(f"{k}={str(v)[:40]}" for k, v in params.items() if k not in ("api_key", "email"))


def _short_term(term: str) -> str:
    dates = re.findall(r'"[^"]+"\[(?:crdt|edat|mdat|dp)\](?: : "[^"]+"\[\w+\])?', term)
    return " AND ".join(dates) if dates else "(topic query)"
