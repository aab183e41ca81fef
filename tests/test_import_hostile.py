"""Hostile XML files on import: whatever a file holds besides records, the importer's memory stays
bounded, and a file over the bound is refused in one line with a failed run.

Each attack file is a real record (38011560) with generated filler, streamed into gzip: a few
hundred KB on disk, 100-200 MB inflated."""

from __future__ import annotations

import gzip
import itertools

import pytest
import sqlite_utils

from tests.conftest import RECORDS, harvest_env
from tests.memory import run_cli_peak

MB = 1 << 20
PEAK_LIMIT_MB = 500

REAL = (RECORDS / "38011560.xml").read_bytes()
_START, _END = REAL.index(b"<PubmedArticle>"), REAL.index(b"</PubmedArticleSet>")
HEAD, RECORD, TAIL = REAL[:_START], REAL[_START:_END], REAL[_END:]
_IN_RECORD = RECORD.rindex(b"</PubmedArticle>")


def _repeat(unit: bytes, mb: int):
    block = unit * (MB // len(unit))
    return itertools.repeat(block, mb)


def _distinct_attributes(mb: int):
    """One start tag with attributes a0, a1, ... (distinct names, as XML requires)."""
    yield b"<a "
    written, names = 0, itertools.count()
    while written < mb * MB:
        block = b"".join(b'a%x="" ' % next(names) for _ in range(50_000))
        written += len(block)
        yield block
    yield b"/>"


ATTACKS = {
    # name: (the parts of the document, in order; what the refusal says)
    "empty elements between records": (
        lambda: [HEAD, RECORD, *_repeat(b"<a/>", 200), RECORD, TAIL],
        "without a complete record",
    ),
    "empty elements inside a record": (
        lambda: [HEAD, RECORD[:_IN_RECORD], *_repeat(b"<a/>", 200), RECORD[_IN_RECORD:], TAIL],
        "without a complete record",
    ),
    "a comment": (
        lambda: [HEAD, RECORD, b"<!--", *_repeat(b"x", 200), b"-->", RECORD, TAIL],
        "without a complete record",
    ),
    "a CDATA section": (
        lambda: [HEAD, RECORD, b"<![CDATA[", *_repeat(b"x", 200), b"]]>", RECORD, TAIL],
        "without a complete record",
    ),
    "an attribute value": (
        lambda: [
            HEAD.replace(b"<PubmedArticleSet>", b'<PubmedArticleSet junk="'),
            *_repeat(b"x", 200),
            b'">',
            RECORD,
            TAIL,
        ],
        "without a complete record",
    ),
    "many attributes": (lambda: [HEAD, RECORD, *_distinct_attributes(20), RECORD, TAIL], "without a complete record"),
    "a processing instruction": (
        lambda: [HEAD, RECORD, b"<?junk ", *_repeat(b"x", 200), b"?>", RECORD, TAIL],
        "without a complete record",
    ),
    "text outside records": (lambda: [HEAD, RECORD, *_repeat(b"x", 200), RECORD, TAIL], "text node too large"),
}


def write_gzip(path, parts) -> None:
    with gzip.open(path, "wb", compresslevel=1) as out:
        for part in parts:
            out.write(part)


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_hostile_filler_is_refused_in_bounded_memory_with_a_failed_run(attack, tmp_path):
    parts, refusal = ATTACKS[attack]
    path = tmp_path / "hostile.xml.gz"
    write_gzip(path, parts())
    db_path = tmp_path / "c.db"

    result, peak_mb = run_cli_peak("import", "--db", db_path, path, env=harvest_env())

    assert result.returncode == 1, (result.stdout, result.stderr)
    assert len(result.error_lines) == 1 and refusal in result.error_lines[0], result.stderr
    assert "Traceback" not in result.stderr and "records read" not in result.stdout
    (run,) = sqlite_utils.Database(db_path).query("select * from harvest_runs")
    assert run["status"] == "failed" and refusal in run["error"]
    assert peak_mb < PEAK_LIMIT_MB, f"{attack}: peak {peak_mb:.0f} MB"
