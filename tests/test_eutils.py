"""E-utilities' esearch answers, parsed in-process: the real recorded answer, and variants of it
whose count or ids are no numbers (derived in code, never written out)."""

from __future__ import annotations

import pytest

from harvest.eutils import parse_esearch
from harvest.http import RetryableResponse
from tests.conftest import DATA

ESEARCH = DATA / "eutils" / "biopython" / "esearch7.xml"


def test_a_recorded_esearch_answer_reads_as_its_count_and_ids():
    body = ESEARCH.read_bytes()
    result = parse_esearch(body)
    assert result.count == int(body.split(b"<Count>")[1].split(b"</Count>")[0])
    assert result.ids[:2] == [3108048616, 3076096315] and len(result.ids) == body.count(b"<Id>")


@pytest.mark.parametrize(
    "old, new, problem",
    [
        (b"<Count>330</Count>", "<Count>-5</Count>", "esearch answer's <Count> is '-5', not a number of records"),
        (b"<Count>330</Count>", "<Count>³³⁰</Count>", "esearch answer's <Count> is '³³⁰', not a number of records"),
        (b"<Id>3108048616</Id>", "<Id>-5</Id>", "esearch answer lists '-5' as a PMID"),
        (b"<Id>3108048616</Id>", f"<Id>{'9' * 5000}</Id>", f"esearch answer lists '{'9' * 40}' as a PMID"),
    ],
)
def test_a_count_or_id_that_is_no_number_is_a_broken_answer_asked_again(old, new, problem):
    body = ESEARCH.read_bytes()
    assert old in body
    with pytest.raises(RetryableResponse) as caught:
        parse_esearch(body.replace(old, new.encode(), 1))
    assert str(caught.value) == problem
