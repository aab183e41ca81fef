"""One HTTP layer for every service the catalog reads (E-utilities, ClinicalTrials.gov, ...).

Owns: how a request is sent and an answer is judged usable. A per-service limiter shared by
the whole process paces requests; 429, 5xx, timeouts, broken connections, truncated bodies and
bodies the caller's validator refuses are retried with exponential backoff and jitter,
honouring `Retry-After`, a bounded number of times; answers are streamed and read only up to a
cap counted after decompression; every request names the tool (User-Agent).
Must never: log, store or put into an exception message a secret (`Service.secrets`); parse
records (the caller's validator does); know any one service's endpoints.
"""

from __future__ import annotations

import collections
import json
import logging
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import requests

log = logging.getLogger("harvest.http")


# C0 and C1 control characters: what a hostile server's (or file name's) text may carry into a
# message an operator reads on a terminal (ESC starts an escape sequence that can retitle the
# window or clear the screen).
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """`text` on one line and safe to print: line breaks and tabs become spaces, every other
    control character its ``\\xNN`` code."""
    return _CONTROL_CHARS.sub(lambda m: " " if m.group() in "\t\n\r" else f"\\x{ord(m.group()):02x}", text)


T = TypeVar("T")


class HttpError(RuntimeError):
    """A request failed for good (after its retries, or with an answer not worth retrying)."""

    status: int | None = None


class ServiceUnreachable(HttpError):
    """No answer at all from the configured host."""


class BodyTooLarge(HttpError):
    """An answer that inflates past the cap: not retried (it would come again)."""


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
        services count per client, and that process's requests are not in our slots."""
        with self._cond:
            now = time.monotonic()
            self._slots = [[now, now] for _ in range(self.limit)]


def limiter_for_rate(per_second: float) -> tuple[int, float]:
    """(requests, window seconds) for a rate: 3/s is 3 in 1 s, 0.5/s is 1 in 2 s."""
    if per_second >= 1:
        return int(per_second), 1.0
    return 1, 1.0 / per_second


_limiters: dict[tuple[str, float], RateLimiter] = {}
_limiters_lock = threading.Lock()


def shared_rate_limiter(service: str, per_second: float) -> RateLimiter:
    """The process-wide limiter of one service at one rate: every client of it shares it."""
    with _limiters_lock:
        key = (service, per_second)
        if key not in _limiters:
            limit, window = limiter_for_rate(per_second)
            _limiters[key] = RateLimiter(limit, window)
        return _limiters[key]


@dataclass
class RequestStats:
    requests: int = 0
    retries: int = 0
    faults: collections.Counter = field(default_factory=collections.Counter)


class TransportSettings(Protocol):
    """The part of a service's settings (harvest/config.py) the HTTP layer reads."""

    @property
    def base_url(self) -> str: ...
    @property
    def connect_timeout(self) -> float: ...
    @property
    def read_timeout(self) -> float: ...
    @property
    def max_tries(self) -> int: ...
    @property
    def backoff_base(self) -> float: ...
    @property
    def backoff_cap(self) -> float: ...
    @property
    def max_body_bytes(self) -> int: ...


def user_agent(tool: str, email: str | None = None) -> str:
    """`tool (python-requests)`, with `; mailto:EMAIL` for services that want a contact."""
    return f"{tool} (python-requests{'; mailto:' + email if email else ''})"


def decode_json(body: bytes) -> Any:
    """A JSON answer's value; a body that is not JSON is a broken answer (retried)."""
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RetryableResponse(f"the answer is not JSON ({exc})") from None


@dataclass(frozen=True)
class Service:
    """What the HTTP layer needs to know about one service: where, how fast, how patient."""

    name: str  # "E-utilities", "ClinicalTrials.gov": used in messages
    base_url: str
    requests_per_second: float
    user_agent: str
    url_setting: str  # the environment variable that points at another host
    body_cap_setting: str  # the environment variable of the body cap
    body_cap_hint: str = ""  # what a genuine answer's size is, for the cap's message
    connect_timeout: float = 10.0
    read_timeout: float = 120.0
    max_tries: int = 8
    backoff_base: float = 1.0
    backoff_cap: float = 60.0
    max_body_bytes: int = 256 * 1024 * 1024
    # A 429 without Retry-After: wait at least this long (the service's counting window).
    min_429_wait: float = 1.0
    secrets: tuple[str, ...] = field(default=(), repr=False)

    @classmethod
    def from_settings(
        cls,
        settings: TransportSettings,
        *,
        name: str,
        requests_per_second: float,
        user_agent: str,
        url_setting: str,
        body_cap_setting: str,
        body_cap_hint: str = "",
        secrets: tuple[str, ...] = (),
    ) -> Service:
        """A service whose host, timeouts, retries and body cap are its settings'."""
        return cls(
            name=name,
            base_url=settings.base_url,
            requests_per_second=requests_per_second,
            user_agent=user_agent,
            url_setting=url_setting,
            body_cap_setting=body_cap_setting,
            body_cap_hint=body_cap_hint,
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.read_timeout,
            max_tries=settings.max_tries,
            backoff_base=settings.backoff_base,
            backoff_cap=settings.backoff_cap,
            max_body_bytes=settings.max_body_bytes,
            secrets=secrets,
        )


class HttpClient:
    """Requests to one service, through its shared limiter, retried until usable or hopeless.

    Subclasses (one per service) add the service's endpoints, its fixed parameters
    (`default_params`) and, if they want their own names, the exception classes.
    """

    error_class: type[HttpError] = HttpError
    unreachable_class: type[HttpError] = ServiceUnreachable
    too_large_class: type[HttpError] = BodyTooLarge

    def __init__(
        self,
        service: Service,
        *,
        limiter: RateLimiter | None = None,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.service = service
        self.limiter = limiter or shared_rate_limiter(service.name, service.requests_per_second)
        self.session = session or requests.Session()
        self.session.headers["User-Agent"] = service.user_agent
        self.stats = RequestStats()
        self._sleep = sleep
        self._ever_answered = False

    def default_params(self) -> dict[str, str]:
        """Parameters every request to the service carries (tool name, key...)."""
        return {}

    def redact(self, text: str) -> str:
        """A message quoting a server's words: the secrets taken out, on one printable line."""
        for secret in self.service.secrets:
            if secret:
                text = text.replace(secret, "***")
        return printable(text)

    def unreachable_message(self, problem: str) -> str:
        return (
            f"{self.service.name} could not be reached at {self.service.base_url} ({problem}). "
            f"Check the network, or point the harvester at another server with "
            f"{self.service.url_setting}."
        )

    def call(
        self,
        path: str,
        params: dict,
        validate: Callable[[bytes], T],
        *,
        post: bool = False,
        describe: str | None = None,
        accept: Callable[[int, bytes], T | None] | None = None,
    ) -> T:
        """Send one request, retrying until `validate(body)` accepts a 200 answer.

        `validate` returns the parsed result or raises RetryableResponse (or any
        ValueError) for a body that cannot be used. `accept(status, body)` may turn a
        non-200, non-retryable answer (a 404 that means "no such record") into a result;
        when it returns None, the answer fails the request.
        """
        service = self.service
        url = service.base_url + path
        data = {**params, **self.default_params()}
        what = describe or f"{path} {_short(params)}"
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
                    timeout = (service.connect_timeout, service.read_timeout)
                    # Streamed, so that a body is read only up to the cap (and a gzip bomb is
                    # inflated only that far), never whole into memory first.
                    if post:
                        response = self.session.post(url, data=data, timeout=timeout, stream=True)
                    else:
                        response = self.session.get(url, params=data, timeout=timeout, stream=True)
                    with response:
                        body = self.read_body(response, what)
                finally:
                    self.limiter.release(slot)
            except (requests.ConnectionError, requests.Timeout) as exc:
                problem = f"{type(exc).__name__}: {_root_cause(exc)}"
                kind = "connection"
                if not self._ever_answered and attempt >= tries_unreached:
                    raise self.unreachable_class(self.unreachable_message(self.redact(problem))) from None
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
                        if accept is not None:
                            accepted = accept(status, body)
                            if accepted is not None:
                                return accepted
                        error = self.error_class(
                            f"{what}: HTTP {status} from {service.name}: "
                            f"{self.redact(body[:200].decode('utf-8', 'replace'))}"
                        )
                        error.status = status
                        raise error
            self.stats.faults[kind] += 1
            if attempt >= service.max_tries:
                raise self.error_class(f"{what}: gave up after {attempt} tries; last problem: {self.redact(problem)}")
            delay = min(service.backoff_cap, service.backoff_base * 2 ** (attempt - 1))
            delay = delay * (0.5 + random.random() / 2)  # jitter: spread out retries
            if retry_after is not None:
                delay = max(delay, retry_after)
            elif kind == "http 429":
                # The service counts per client, not per process: let its window pass.
                delay = max(delay, service.min_429_wait)
            self.stats.retries += 1
            log.warning(
                "%s: %s; retry %d/%d in %.1fs",
                what,
                self.redact(problem)[:200],
                attempt,
                service.max_tries - 1,
                delay,
            )
            self._sleep(delay)

    def read_body(self, response: requests.Response, what: str) -> bytes:
        """The response body, decompressed, or the too-large error as soon as it passes the
        cap (counted after Content-Encoding is undone: a small gzip body can inflate to
        gigabytes)."""
        cap = self.service.max_body_bytes

        def too_large(size: str) -> HttpError:
            hint = f"; {self.service.body_cap_hint}" if self.service.body_cap_hint else ""
            return self.too_large_class(
                f"{what}: the answer is larger than {self.service.body_cap_setting}="
                f"{cap / (1024 * 1024):g} MB ({size}){hint}"
            )

        declared = response.headers.get("Content-Length", "")
        if declared.isdecimal() and int(declared) > cap:
            raise too_large(f"Content-Length {int(declared):,} bytes")
        body = bytearray()
        for chunk in response.iter_content(chunk_size=BODY_CHUNK):
            body += chunk
            if len(body) > cap:
                encoding = response.headers.get("Content-Encoding")
                raise too_large(f"over {cap:,} bytes read" + (f" after {encoding} decoding" if encoding else ""))
        return bytes(body)


BODY_CHUNK = 64 * 1024


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return min(float(value), 300.0)
    except ValueError:
        return None


def _root_cause(exc: BaseException) -> str:
    while (parent := exc.__cause__ or exc.__context__) is not None:
        exc = parent
    text = str(exc)
    return text[:200]


def _short(params: dict) -> str:
    return " ".join(f"{k}={str(v)[:40]}" for k, v in params.items() if k not in ("api_key", "email"))
