"""`make run` as the README tells a new user: a port in use stops it before the harvest, and what
it prints when it stops is what the README shows."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, harvest_env

README = (ROOT / "README.md").read_text(encoding="utf-8")


@pytest.fixture
def taken_port():
    """A port a server holds on 127.0.0.1 (bound and listening, as Datasette would be)."""
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server.getsockname()[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def port_check(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "harvest.port", *args],
        cwd=ROOT,
        env=harvest_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def make_run(tmp_path, port: int, env: dict) -> subprocess.CompletedProcess:
    """`make run` with this checkout's interpreter (no venv is built: `-o` marks it done)."""
    return subprocess.run(
        [
            "make",
            "--no-print-directory",
            "-o",
            ".venv/.installed",
            "run",
            f"BIN={Path(sys.executable).parent}",
            f"PORT={port}",
            f"DB={tmp_path / 'catalog.db'}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        # As a user types it: not a sub-make of `make test` (which would print make[1]: ...).
        env={k: v for k, v in env.items() if k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")},
    )


def readme_block_after(words: str) -> list[str]:
    """The lines of the first fenced block after `words` in the README."""
    rest = README[README.index(words) :]
    return rest.split("```\n", 2)[1].strip().splitlines()


def as_pattern(line: str) -> re.Pattern:
    """A README line as a pattern for what is printed: the address, the URL, the elided part
    and make's line number are the run's own."""
    pattern = re.escape(line)
    pattern = pattern.replace(re.escape("127.0.0.1:8001"), r"127\.0\.0\.1:\d+")
    pattern = pattern.replace(re.escape("https://eutils.ncbi.nlm.nih.gov/entrez/eutils/"), r"\S+")
    pattern = pattern.replace(re.escape("https://clinicaltrials.gov/api/v2/"), r"\S+")
    pattern = pattern.replace(re.escape("https://www.ebi.ac.uk/europepmc/webservices/rest/"), r"\S+")
    pattern = pattern.replace(re.escape("(...)"), r"\(.*\)")
    pattern = re.sub(r"Makefile:\d+", r"Makefile:\\d+", pattern)
    return re.compile(pattern)


def test_the_port_check_names_the_address_and_suggests_another_port(taken_port):
    taken = port_check("127.0.0.1", str(taken_port))
    assert taken.returncode == 1
    (line,) = taken.stderr.splitlines()
    assert f"127.0.0.1:{taken_port}" in line and "Address already in use" in line
    assert "make run PORT=8002" in line

    free = port_check("127.0.0.1", str(free_port()))
    assert (free.returncode, free.stderr) == (0, "")

    nowhere = port_check("nosuchhost.invalid", "8001")
    assert nowhere.returncode == 1 and len(nowhere.stderr.splitlines()) == 1
    assert "nosuchhost.invalid:8001" in nowhere.stderr and "HOST=" in nowhere.stderr
    assert port_check("127.0.0.1", "notaport").returncode == 2


def test_make_run_on_a_taken_port_stops_before_harvesting_as_the_readme_shows(records_server, tmp_path, taken_port):
    result = make_run(tmp_path, taken_port, harvest_env(records_server.url))
    assert result.returncode != 0
    printed = result.stderr.strip().splitlines()
    shown = readme_block_after("when another server holds the port")
    assert len(printed) == len(shown) == 2, result.stderr
    for line, expected in zip(printed, shown):
        assert as_pattern(expected).fullmatch(line), (line, expected)
    assert records_server.count() == 0  # nothing was harvested
    assert not (tmp_path / "catalog.db").exists()


def test_make_run_without_a_network_ends_as_the_readme_shows(tmp_path):
    unreachable = f"http://127.0.0.1:{free_port()}/entrez/eutils/"
    registry = f"http://127.0.0.1:{free_port()}/api/v2/"  # every source, none reachable
    epmc = f"http://127.0.0.1:{free_port()}/europepmc/webservices/rest/"
    result = make_run(tmp_path, free_port(), harvest_env(unreachable, ctgov_url=registry, europepmc_url=epmc))
    assert result.returncode != 0
    shown = readme_block_after("Without a network it stops within a minute")
    printed = result.stderr.strip().splitlines()[-len(shown) :]
    for line, expected in zip(printed, shown, strict=True):
        assert as_pattern(expected).fullmatch(line), (line, expected)
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower() and "WARNING" not in line]
    assert len(errors) == 4  # the harvester's one line per source, and make's
