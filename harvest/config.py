"""Settings from the environment. Owns names and defaults; never logs the API key."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict

DEFAULT_EUTILS_URL = "https://eutils.ncbi.nlm.nih.gov/entrez/eutils/"
DEFAULT_TOOL = "ketamine-catalog"
DEFAULT_DB = Path("db") / "catalog.db"


def default_db_path() -> Path:
    return Path(os.environ.get("CATALOG_DB") or DEFAULT_DB)


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    if not value:
        return default
    try:
        number = float(value)
    except ValueError:
        raise SystemExit(f"harvest: error: {name} must be a number, got {value!r}") from None
    if not math.isfinite(number) or abs(number) > 1e9:  # inf, nan, 1e309: no count, rate or wait
        raise SystemExit(f"harvest: error: {name} must be a finite number up to 1e9, got {value!r}")
    return number


def _env_positive(name: str, default: float) -> float:
    value = _env_float(name, default)
    if not value > 0:
        raise SystemExit(f"harvest: error: {name} must be a number above 0, got {os.environ.get(name)!r}")
    return value


class _Transport(TypedDict):
    max_tries: int
    backoff_base: float
    backoff_cap: float
    read_timeout: float
    max_body_mb: float


def _env_text(name: str, default: str | None) -> str | None:
    """A value sent in a header or a query (NCBI_TOOL, NCBI_EMAIL): one line of printable text."""
    value = os.environ.get(name) or default
    if value is not None and not value.isprintable():
        raise SystemExit(f"harvest: error: {name} must be one line of printable text, got {value[:80]!r}")
    return value


def _env_url(name: str, default: str) -> str:
    from urllib.parse import urlsplit

    url = os.environ.get(name) or default
    try:
        parts = urlsplit(url)
        scheme, host = parts.scheme, parts.hostname
    except ValueError:  # http://[::1
        scheme, host = "", None
    if scheme not in ("http", "https") or not host or any(c.isspace() for c in url):
        # Otherwise requests' MissingSchema/InvalidURL would be retried as a network fault, for minutes.
        raise SystemExit(f"harvest: error: {name} must be an http:// or https:// address, got {url!r}")
    return url if url.endswith("/") else url + "/"


@dataclass(frozen=True)
class _ServiceSettings:
    """What every HTTP source shares: where it is, how long to wait, how often to retry, how
    big an answer may be. Each source names its own env vars with its own prefix."""

    base_url: str = ""
    tool: str = DEFAULT_TOOL
    # Seconds to wait for a connection / for a response body.
    connect_timeout: float = 10.0
    read_timeout: float = 120.0
    # Tries per request before the run fails loudly. With the backoff cap this
    # rides out a couple of minutes of trouble.
    max_tries: int = 8
    backoff_base: float = 1.0
    backoff_cap: float = 60.0
    # The most one answer may inflate to (decompressed), in MB. A 500-record efetch batch of
    # real modern records is under 8 MB; past the cap the request fails, and so the run.
    max_body_mb: float = 256.0

    @classmethod
    def _transport_env(cls, prefix: str, *, positive: bool = True) -> _Transport:
        """PREFIX_MAX_TRIES, PREFIX_BACKOFF_BASE, PREFIX_BACKOFF_CAP, PREFIX_TIMEOUT and
        PREFIX_MAX_BODY_MB, defaulting to the class's own defaults. `positive` also refuses 0 or
        less for the tries and the timeout (the E-utilities settings never did)."""
        number = _env_positive if positive else _env_float
        return _Transport(
            max_tries=int(number(f"{prefix}_MAX_TRIES", cls.max_tries)),
            backoff_base=_env_float(f"{prefix}_BACKOFF_BASE", cls.backoff_base),
            backoff_cap=_env_float(f"{prefix}_BACKOFF_CAP", cls.backoff_cap),
            read_timeout=number(f"{prefix}_TIMEOUT", cls.read_timeout),
            max_body_mb=_env_positive(f"{prefix}_MAX_BODY_MB", cls.max_body_mb),
        )

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 1024 * 1024)


@dataclass(frozen=True)
class Settings(_ServiceSettings):
    base_url: str = DEFAULT_EUTILS_URL
    api_key: str | None = field(default=None, repr=False)
    email: str | None = None

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            base_url=_env_url("NCBI_EUTILS_URL", DEFAULT_EUTILS_URL),
            api_key=os.environ.get("NCBI_API_KEY") or None,
            email=_env_text("NCBI_EMAIL", None),
            tool=_env_text("NCBI_TOOL", DEFAULT_TOOL) or DEFAULT_TOOL,
            **cls._transport_env("NCBI", positive=False),
        )

    @property
    def requests_per_second(self) -> int:
        # NCBI's published limits: 3/s without a key, 10/s with one.
        return 10 if self.api_key else 3


DEFAULT_CTGOV_URL = "https://clinicaltrials.gov/api/v2/"


@dataclass(frozen=True)
class CtgovSettings(_ServiceSettings):
    """ClinicalTrials.gov API v2. The registry publishes no numeric rate limit and sends no
    rate-limit headers; its robots.txt asks for one request a second, which is the default."""

    base_url: str = DEFAULT_CTGOV_URL
    requests_per_second: float = 1.0
    page_size: int = 100

    @classmethod
    def from_env(cls) -> CtgovSettings:
        return cls(
            base_url=_env_url("CTGOV_API_URL", DEFAULT_CTGOV_URL),
            tool=_env_text("NCBI_TOOL", DEFAULT_TOOL) or DEFAULT_TOOL,
            requests_per_second=_env_positive("CTGOV_REQUESTS_PER_SECOND", 1.0),
            page_size=min(1000, int(_env_positive("CTGOV_PAGE_SIZE", 100))),
            **cls._transport_env("CTGOV"),
        )


DEFAULT_EUROPEPMC_URL = "https://www.ebi.ac.uk/europepmc/webservices/rest/"


@dataclass(frozen=True)
class EuropepmcSettings(_ServiceSettings):
    """Europe PMC REST. It publishes no numeric rate limit for `/search` and sends no rate-limit
    headers; 2 requests a second (the default) is well inside what its help pages call fair use."""

    base_url: str = DEFAULT_EUROPEPMC_URL
    email: str | None = None
    requests_per_second: float = 2.0
    # Records per search page: Europe PMC allows 1,000; a page of 1,000 core records is ~10 MB.
    page_size: int = 1000

    @classmethod
    def from_env(cls) -> EuropepmcSettings:
        return cls(
            base_url=_env_url("EUROPEPMC_API_URL", DEFAULT_EUROPEPMC_URL),
            tool=_env_text("NCBI_TOOL", DEFAULT_TOOL) or DEFAULT_TOOL,
            email=_env_text("NCBI_EMAIL", None),
            requests_per_second=_env_positive("EUROPEPMC_REQUESTS_PER_SECOND", 2.0),
            page_size=min(1000, int(_env_positive("EUROPEPMC_PAGE_SIZE", 1000))),
            **cls._transport_env("EUROPEPMC"),
        )


DEFAULT_OPENALEX_URL = "https://api.openalex.org/"


@dataclass(frozen=True)
class OpenalexSettings(_ServiceSettings):
    """OpenAlex. Its documented limits: at most 100 requests a second from anyone, and a daily
    budget (a list request such as `/works?filter=pmid:...` costs a credit: 100 a day without an
    API key, 100,000 with a free one; since February 2026 a key is expected). The default pace,
    10 a second, stays far under the first; batches of 50 PMIDs a request keep the second."""

    base_url: str = DEFAULT_OPENALEX_URL
    api_key: str | None = field(default=None, repr=False)
    email: str | None = None
    requests_per_second: float = 10.0
    read_timeout: float = 60.0
    max_body_mb: float = 64.0

    @classmethod
    def from_env(cls) -> OpenalexSettings:
        return cls(
            base_url=_env_url("OPENALEX_API_URL", DEFAULT_OPENALEX_URL),
            api_key=os.environ.get("OPENALEX_API_KEY") or None,
            email=_env_text("NCBI_EMAIL", None),
            tool=_env_text("NCBI_TOOL", DEFAULT_TOOL) or DEFAULT_TOOL,
            requests_per_second=_env_positive("OPENALEX_REQUESTS_PER_SECOND", 10.0),
            **cls._transport_env("OPENALEX"),
        )
