"""Settings from the environment. Owns names and defaults; never logs the API key."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

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
        return float(value)
    except ValueError:
        raise SystemExit(f"{name} must be a number, got {value!r}") from None


def _env_positive(name: str, default: float) -> float:
    value = _env_float(name, default)
    if not value > 0:
        raise SystemExit(f"{name} must be a number above 0, got {os.environ.get(name)!r}")
    return value


@dataclass(frozen=True)
class Settings:
    base_url: str = DEFAULT_EUTILS_URL
    api_key: str | None = field(default=None, repr=False)
    email: str | None = None
    tool: str = DEFAULT_TOOL
    # Seconds to wait for a connection / for a response body.
    connect_timeout: float = 10.0
    read_timeout: float = 120.0
    # Tries per request before the run fails loudly. With the backoff cap this
    # rides out a couple of minutes of NCBI trouble.
    max_tries: int = 8
    backoff_base: float = 1.0
    backoff_cap: float = 60.0
    # The most one answer may inflate to (decompressed), in MB. A 500-record efetch batch of
    # real modern records is under 8 MB; past the cap the request fails, and so the run.
    max_body_mb: float = 256.0

    @classmethod
    def from_env(cls) -> Settings:
        base_url = os.environ.get("NCBI_EUTILS_URL") or DEFAULT_EUTILS_URL
        if not base_url.endswith("/"):
            base_url += "/"
        return cls(
            base_url=base_url,
            api_key=os.environ.get("NCBI_API_KEY") or None,
            email=os.environ.get("NCBI_EMAIL") or None,
            tool=os.environ.get("NCBI_TOOL") or DEFAULT_TOOL,
            max_tries=int(_env_float("NCBI_MAX_TRIES", 8)),
            backoff_base=_env_float("NCBI_BACKOFF_BASE", 1.0),
            backoff_cap=_env_float("NCBI_BACKOFF_CAP", 60.0),
            read_timeout=_env_float("NCBI_TIMEOUT", 120.0),
            max_body_mb=_env_positive("NCBI_MAX_BODY_MB", 256.0),
        )

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 1024 * 1024)

    @property
    def requests_per_second(self) -> int:
        # NCBI's published limits: 3/s without a key, 10/s with one.
        return 10 if self.api_key else 3


DEFAULT_CTGOV_URL = "https://clinicaltrials.gov/api/v2/"


@dataclass(frozen=True)
class CtgovSettings:
    """ClinicalTrials.gov API v2. The registry publishes no numeric rate limit and sends no
    rate-limit headers; its robots.txt asks for one request a second, which is the default."""

    base_url: str = DEFAULT_CTGOV_URL
    tool: str = DEFAULT_TOOL
    requests_per_second: float = 1.0
    connect_timeout: float = 10.0
    read_timeout: float = 120.0
    max_tries: int = 8
    backoff_base: float = 1.0
    backoff_cap: float = 60.0
    max_body_mb: float = 256.0
    page_size: int = 100

    @classmethod
    def from_env(cls) -> CtgovSettings:
        base_url = os.environ.get("CTGOV_API_URL") or DEFAULT_CTGOV_URL
        if not base_url.endswith("/"):
            base_url += "/"
        return cls(
            base_url=base_url,
            tool=os.environ.get("NCBI_TOOL") or DEFAULT_TOOL,
            requests_per_second=_env_positive("CTGOV_REQUESTS_PER_SECOND", 1.0),
            max_tries=int(_env_positive("CTGOV_MAX_TRIES", 8)),
            backoff_base=_env_float("CTGOV_BACKOFF_BASE", 1.0),
            backoff_cap=_env_float("CTGOV_BACKOFF_CAP", 60.0),
            read_timeout=_env_positive("CTGOV_TIMEOUT", 120.0),
            max_body_mb=_env_positive("CTGOV_MAX_BODY_MB", 256.0),
            page_size=min(1000, int(_env_positive("CTGOV_PAGE_SIZE", 100))),
        )

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 1024 * 1024)


DEFAULT_EUROPEPMC_URL = "https://www.ebi.ac.uk/europepmc/webservices/rest/"


@dataclass(frozen=True)
class EuropepmcSettings:
    """Europe PMC REST. It publishes no numeric rate limit for `/search` and sends no rate-limit
    headers; 2 requests a second (the default) is well inside what its help pages call fair use."""

    base_url: str = DEFAULT_EUROPEPMC_URL
    tool: str = DEFAULT_TOOL
    email: str | None = None
    requests_per_second: float = 2.0
    connect_timeout: float = 10.0
    read_timeout: float = 120.0
    max_tries: int = 8
    backoff_base: float = 1.0
    backoff_cap: float = 60.0
    max_body_mb: float = 256.0
    # Records per search page: Europe PMC allows 1,000; a page of 1,000 core records is ~10 MB.
    page_size: int = 1000

    @classmethod
    def from_env(cls) -> EuropepmcSettings:
        base_url = os.environ.get("EUROPEPMC_API_URL") or DEFAULT_EUROPEPMC_URL
        if not base_url.endswith("/"):
            base_url += "/"
        return cls(
            base_url=base_url,
            tool=os.environ.get("NCBI_TOOL") or DEFAULT_TOOL,
            email=os.environ.get("NCBI_EMAIL") or None,
            requests_per_second=_env_positive("EUROPEPMC_REQUESTS_PER_SECOND", 2.0),
            max_tries=int(_env_positive("EUROPEPMC_MAX_TRIES", 8)),
            backoff_base=_env_float("EUROPEPMC_BACKOFF_BASE", 1.0),
            backoff_cap=_env_float("EUROPEPMC_BACKOFF_CAP", 60.0),
            read_timeout=_env_positive("EUROPEPMC_TIMEOUT", 120.0),
            max_body_mb=_env_positive("EUROPEPMC_MAX_BODY_MB", 256.0),
            page_size=min(1000, int(_env_positive("EUROPEPMC_PAGE_SIZE", 1000))),
        )

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 1024 * 1024)


DEFAULT_OPENALEX_URL = "https://api.openalex.org/"


@dataclass(frozen=True)
class OpenalexSettings:
    """OpenAlex. Its documented limits: at most 100 requests a second from anyone, and a daily
    budget (a list request such as `/works?filter=pmid:...` costs a credit: 100 a day without an
    API key, 100,000 with a free one; since February 2026 a key is expected). The default pace,
    10 a second, stays far under the first; batches of 50 PMIDs a request keep the second."""

    base_url: str = DEFAULT_OPENALEX_URL
    api_key: str | None = field(default=None, repr=False)
    email: str | None = None
    tool: str = DEFAULT_TOOL
    requests_per_second: float = 10.0
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    max_tries: int = 8
    backoff_base: float = 1.0
    backoff_cap: float = 60.0
    max_body_mb: float = 64.0

    @classmethod
    def from_env(cls) -> OpenalexSettings:
        base_url = os.environ.get("OPENALEX_API_URL") or DEFAULT_OPENALEX_URL
        if not base_url.endswith("/"):
            base_url += "/"
        return cls(
            base_url=base_url,
            api_key=os.environ.get("OPENALEX_API_KEY") or None,
            email=os.environ.get("NCBI_EMAIL") or None,
            tool=os.environ.get("NCBI_TOOL") or DEFAULT_TOOL,
            requests_per_second=_env_positive("OPENALEX_REQUESTS_PER_SECOND", 10.0),
            max_tries=int(_env_positive("OPENALEX_MAX_TRIES", 8)),
            backoff_base=_env_float("OPENALEX_BACKOFF_BASE", 1.0),
            backoff_cap=_env_float("OPENALEX_BACKOFF_CAP", 60.0),
            read_timeout=_env_positive("OPENALEX_TIMEOUT", 60.0),
            max_body_mb=_env_positive("OPENALEX_MAX_BODY_MB", 64.0),
        )

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 1024 * 1024)
