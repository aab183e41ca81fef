"""OpenAlex: the pure parse over the real recorded answers, and the client against the stand-in
serving them (paging, single works, empty answers, faults), through the shared HTTP layer."""

from __future__ import annotations

import dataclasses
import json

import pytest

from harvest.config import OpenalexSettings
from harvest.http import RateLimiter
from harvest.openalex import (
    OpenalexClient,
    OpenalexError,
    citations_of,
    parse_work,
    parse_works_page,
    work_pmid,
)
from tests.openalex_stand_in import (
    EMPTY_FILE,
    LIST_FILES,
    OPENALEX,
    SINGLE_FILES,
    OpenalexStandIn,
    WorkStore,
    recorded_works,
)

CURSOR_PAGE, PAGED, BY_DOI, RESEARCHHUB = LIST_FILES
SINGLE, SINGLE_BY_DOI = SINGLE_FILES


def body(name: str) -> bytes:
    return (OPENALEX / name).read_bytes()


def client_for(server: OpenalexStandIn, **kw) -> OpenalexClient:
    settings = OpenalexSettings(
        base_url=server.url, email="tests@example.org", requests_per_second=50, backoff_base=0.01, backoff_cap=0.1, **kw
    )
    return OpenalexClient(settings, limiter=RateLimiter(50))


def test_a_recorded_cursor_page_parses_with_its_count_and_next_cursor():
    page = parse_works_page(body(CURSOR_PAGE))
    assert [w["id"] for w in page.works] == [
        "https://openalex.org/W3001118548",
        "https://openalex.org/W3008827533",
        "https://openalex.org/W3001897055",
    ]
    assert page.count == 11111537 and page.next_cursor and page.next_cursor.startswith("Ils")
    first = parse_work(page.works[0])
    assert first is not None
    assert (first.pmid, first.openalex_id, first.cited_by_count) == (31986264, "W3001118548", 50056)
    # counts_by_year, oldest first, as (year, count); the real work's own figures.
    raw = {e["year"]: e["cited_by_count"] for e in page.works[0]["counts_by_year"]}
    assert dict(first.counts_by_year) == raw and [y for y, _ in first.counts_by_year] == sorted(raw)
    assert first.updated_date == "2025-09-26T01:33:11.823080"


def test_an_empty_answer_is_an_answer_and_a_single_work_a_page_of_one():
    empty = parse_works_page(body(EMPTY_FILE))
    assert (empty.works, empty.count, empty.next_cursor) == ([], 0, None)
    single = parse_works_page(body(SINGLE))
    assert len(single.works) == 1 and single.next_cursor is None
    citation = parse_work(single.works[0])
    assert citation is not None
    assert (citation.pmid, citation.cited_by_count, citation.counts_by_year) == (38889132, 0, ())


def test_works_without_a_pmid_are_left_out_and_duplicates_keep_one_work_per_pmid():
    works = json.loads(body(RESEARCHHUB))["results"]
    without = [w for w in works if work_pmid(w) is None]
    assert len(without) == 6  # the recorded answer's works with no PMID
    assert set(citations_of(works)) == {work_pmid(w) for w in works} - {None}
    # The recorded page-paging answer holds the same work twice (edited by that project).
    paged = json.loads(body(PAGED))["results"]
    assert len(paged) == 3
    assert sorted(citations_of(paged)) == [10062328, 11846609]
    # A duplicate work for one PMID: the more cited is kept, whatever the order.
    twin = {**paged[2], "id": "https://openalex.org/W1", "ids": {"pmid": paged[0]["ids"]["pmid"]}}
    assert citations_of([paged[0], twin])[10062328].openalex_id == "W1981368803"
    assert citations_of([twin, paged[0]])[10062328].openalex_id == "W1981368803"


@pytest.mark.parametrize(
    "broken",
    [b'{"meta": {"count": 1}, "results": [', b"<html>busy</html>", b'{"meta": {}}', b'{"results": [{"id": "x"}]}'],
)
def test_a_broken_answer_is_refused_for_a_retry(broken):
    from harvest.http import RetryableResponse

    with pytest.raises(RetryableResponse):
        parse_works_page(broken)


def test_the_client_asks_for_fifty_pmids_in_one_request_with_mailto():
    store = WorkStore.recorded()
    pmids = [31986264, 32109013, 31978945, 38889132, 10062328, 11846609] + list(range(1, 45))
    with OpenalexStandIn(store) as server:
        client = client_for(server)
        works = client.works_by_pmids(pmids)
        assert len(server.requests) == 1
        path, params = server.requests[0]
        assert path == "/works" and params["per_page"] == "50" and params["cursor"] == "*"
        assert params["mailto"] == "tests@example.org"
        assert params["filter"] == "pmid:" + "|".join(map(str, pmids))
    assert sorted(citations_of(works)) == sorted(pmids[:6])
    with pytest.raises(ValueError):
        client.works_by_pmids(list(range(51)))


def test_the_client_follows_the_cursor_when_the_works_fill_more_than_a_page():
    store = WorkStore.recorded()
    # Clones of real works carrying the same PMIDs: 2 works for each of 30 PMIDs, 60 in all.
    sources = [w["id"] for w in recorded_works() if work_pmid(w)]
    pmids = list(range(70_000_001, 70_000_031))
    for i, pmid in enumerate(pmids):
        store.add_clone(pmid, sources[i % len(sources)])
        store.add_clone(pmid, sources[(i + 1) % len(sources)])
    with OpenalexStandIn(store) as server:
        works = client_for(server).works_by_pmids(pmids)
        assert [p["cursor"] for _, p in server.requests] == ["*", server.requests[1][1]["cursor"]]
    assert len(works) == 60 and len({w["id"] for w in works}) == 60
    assert sorted(citations_of(works)) == pmids


def test_an_unknown_pmid_is_no_error_and_a_single_work_is_asked_by_pmid():
    with OpenalexStandIn() as server:
        client = client_for(server)
        assert client.works_by_pmids([1, 2, 3]) == []
        assert client.work_by_pmid(1) is None
        work = client.work_by_pmid(38889132)
        assert work is not None and work["id"] == "https://openalex.org/W4399771148"


@pytest.mark.parametrize("fault", ["429", "500", "502", "503", "truncated", "malformed"])
def test_each_fault_is_retried_until_the_real_answer_comes(fault):
    with OpenalexStandIn() as server:
        server.faults.add(fault, times=2, path="/works")
        client = client_for(server)
        works = client.works_by_pmids([31986264, 38889132])
        assert sorted(citations_of(works)) == [31986264, 38889132]
        assert client.stats.retries == 2 and len(server.requests) == 3


def test_a_fault_that_lasts_fails_loudly_without_the_api_key():
    with OpenalexStandIn() as server:
        server.faults.add("503", times=None, path="/works")
        client = client_for(server, api_key="secret-key-123", max_tries=3)
        with pytest.raises(OpenalexError) as failed:
            client.works_by_pmids([31986264])
        assert "gave up after 3 tries" in str(failed.value) and "secret-key-123" not in str(failed.value)
        assert server.requests[0][1]["api_key"] == "secret-key-123"


def test_fields_of_another_json_type_are_left_empty_not_a_failed_run():
    real = next(w for w in recorded_works() if work_pmid(w) and w.get("counts_by_year"))
    expected = parse_work(real)
    assert expected is not None
    crafted = json.loads(json.dumps(real))
    crafted["cited_by_count"] = 10**30
    crafted["counts_by_year"] = [None, True, *real["counts_by_year"]]
    citation = parse_work(crafted)
    assert citation is not None and citation.pmid == expected.pmid
    assert citation.cited_by_count == 0 and citation.counts_by_year == expected.counts_by_year
    crafted["cited_by_count"] = True
    assert parse_work(crafted).cited_by_count == 0
    crafted["ids"] = "pmid"
    assert parse_work(crafted) is None  # no PMID to key it by: left out, as a work without one


def test_an_updated_date_that_names_no_time_is_left_empty():
    real = next(w for w in recorded_works() if work_pmid(w) and w.get("updated_date"))
    expected = parse_work(real)
    assert expected is not None and expected.updated_date == real["updated_date"]
    for written in ("2024-13-01T00:00:00", "²⁰²⁴-01-02T03:04:05", "yesterday", 1704164645, "2024-01-02T99:00"):
        crafted = {**real, "updated_date": written}
        assert parse_work(crafted) == dataclasses.replace(expected, updated_date=None), written


def test_a_cursor_given_twice_ends_the_paging_loudly():
    class RepeatingCursor(OpenalexStandIn):
        def answer(self, path, params):
            status, body = super().answer(path, params)
            data = json.loads(body)
            if isinstance(data.get("meta"), dict):
                data["meta"].update(next_cursor="MQ==", count=10**9)  # more works promised, one cursor (offset 1)
            return status, json.dumps(data).encode()

    pmids = [pmid for w in recorded_works() if (pmid := work_pmid(w))][:2]
    with RepeatingCursor() as server:
        with pytest.raises(OpenalexError, match=r"page 2: OpenAlex gave the cursor 'MQ==' a second time"):
            client_for(server).works_by_pmids(pmids)
        assert len(server.requests) == 2
