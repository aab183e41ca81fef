"""Shared fixtures: the real data, the E-utilities stand-in, and the harvester run as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.eutils_stand_in import Corpus, EutilsStandIn

ROOT = Path(__file__).resolve().parents[1]
# The harvester's processes import the checkout, and run without the test extra's packages
# (tests/runtime_only/sitecustomize.py).
HARVESTER_PYTHONPATH = os.pathsep.join([str(ROOT), str(ROOT / "tests" / "runtime_only")])
DATA = Path(os.environ.get("KETAMINE_SHARED_DATA") or ROOT.parent / "shared" / "data")
PUBMED = DATA / "pubmed"
RECORDS = PUBMED / "records"
LARGE_FILES = [PUBMED / "pubmed20n0014-part1.xml.gz", PUBMED / "pubmed21n1298-part1.xml.gz"]
# Real records on the topic (see ../shared/data/README.md).
KETAMINE_PMIDS = {33984391, 34034067, 38011560}


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith("harvest: error:")]


def harvest_env(
    server_url: str | None = None,
    *,
    ctgov_url: str | None = None,
    europepmc_url: str | None = None,
    openalex_url: str | None = None,
    **extra: str,
) -> dict:
    """The environment of a harvester run against the stand-ins. `run` harvests PubMed and the
    sources whose stand-in is given (HARVEST_SOURCES): ClinicalTrials.gov with `ctgov_url`, Europe
    PMC's preprints with `europepmc_url`, OpenAlex with `openalex_url`; no test reaches a real service."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(
            ("NCBI_", "CTGOV_", "EUROPEPMC_", "OPENALEX_", "CATALOG_DB", "HARVEST_TODAY", "HARVEST_SOURCES")
        )
    }
    if server_url:
        env["NCBI_EUTILS_URL"] = server_url
    sources = ["pubmed"]
    if ctgov_url:
        env["CTGOV_API_URL"] = ctgov_url
        # The stand-in keeps no rate window; retries back off in tens of milliseconds.
        env["CTGOV_REQUESTS_PER_SECOND"] = "50"
        env["CTGOV_BACKOFF_BASE"] = "0.05"
        env["CTGOV_BACKOFF_CAP"] = "1"
        sources.append("trials")
    if europepmc_url:
        env["EUROPEPMC_API_URL"] = europepmc_url
        env["EUROPEPMC_REQUESTS_PER_SECOND"] = "50"
        env["EUROPEPMC_BACKOFF_BASE"] = "0.05"
        env["EUROPEPMC_BACKOFF_CAP"] = "1"
        sources.append("preprints")
    if openalex_url:
        env["OPENALEX_API_URL"] = openalex_url
        env["OPENALEX_REQUESTS_PER_SECOND"] = "50"
        env["OPENALEX_BACKOFF_BASE"] = "0.05"
        env["OPENALEX_BACKOFF_CAP"] = "1"
        sources.append("citations")
    env["HARVEST_SOURCES"] = ",".join(sources)
    # Retries in tests back off in tens of milliseconds, not seconds.
    env["NCBI_BACKOFF_BASE"] = "0.05"
    env["NCBI_BACKOFF_CAP"] = "1"
    env["PYTHONPATH"] = HARVESTER_PYTHONPATH
    env.update(extra)
    return env


def run_cli(*args: object, env: dict | None = None, timeout: float = 600) -> CliResult:
    """`python -m harvest ARGS` in a subprocess, exactly as cron or a user runs it."""
    proc = subprocess.run(
        [sys.executable, "-m", "harvest", *map(str, args)],
        cwd=ROOT,
        env=env or harvest_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture(scope="session")
def records_corpus() -> Corpus:
    return Corpus.cached([RECORDS])


@pytest.fixture(scope="session")
def large_corpus() -> Corpus:
    return Corpus.cached(LARGE_FILES)


@pytest.fixture
def records_server(records_corpus):
    with EutilsStandIn(records_corpus.copy()) as server:
        yield server


@pytest.fixture
def large_server(large_corpus):
    with EutilsStandIn(large_corpus.copy()) as server:
        yield server


def pytest_report_header(config):
    """Say which day the suite believes it is: `make test`'s second pass runs 400 days ahead."""
    from harvest import clock

    shifted = " (shifted by libfaketime: FAKETIME=" + os.environ["FAKETIME"] + ")" if os.environ.get("FAKETIME") else ""
    return f"today, as the harvester sees it: {clock.today()}{shifted}"


# `make test` runs the suite on every core (pytest-xdist, `--dist loadfile`): each test file
# stays on one worker, so a session fixture a file builds is built once per worker that runs it.
# Files with the longest session builds go first, so that no worker is left running one of
# them alone at the end (most to least, as measured here; the rest follow in file order).
LONGEST_FIRST = [
    "test_hostile_exports",
    "test_pubmed_xml",
    "test_complete_current",
    "test_store",
    "test_evaluate",
    "test_cookbook",
    "test_tags",
    "test_notebooks",
    "test_chaos",
    "test_browser",
    "test_harvest",
]


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    module = lambda item: item.module.__name__.rsplit(".", 1)[-1]  # noqa: E731
    items.sort(key=lambda item: rank.get(module(item), len(rank)))  # stable: file order within a file
