"""Europe PMC: the pure parse on real recorded records, and the client against the stand-in
(cursorMark paging to the end, the empty answer, and the faults it rides out)."""

from __future__ import annotations

import pytest

from harvest import europepmc
from harvest.config import EuropepmcSettings
from harvest.europepmc import EuropepmcClient, EuropepmcError, parse_preprint, parse_search_page, preprint_links_in
from harvest.query import preprints_query, published_versions_query
from tests.europepmc_stand_in import CORE, EMPTY, EuropepmcStandIn, World, recorded


def client_for(server: EuropepmcStandIn, **kw) -> tuple[EuropepmcClient, list[float]]:
    slept: list[float] = []
    settings = EuropepmcSettings(
        base_url=server.url, requests_per_second=50, backoff_base=0.01, backoff_cap=0.05, max_tries=4, **kw
    )
    return EuropepmcClient(settings, sleep=slept.append), slept


# -- the pure parse ------------------------------------------------------------------


def test_a_research_square_preprint_reads_as_europe_pmc_lists_it():
    record = parse_preprint(World().find("PPR1037166"))
    row = europepmc.preprint_row(record)
    assert (row["ppr_id"], row["server"], row["version"], row["pub_year"]) == (
        "PPR1037166",
        "Research Square",
        1,
        2025,
    )
    assert row["doi"] == "10.21203/rs.3.rs-6664819/v1"
    assert row["title"].startswith("Association of Red Blood Cell Distribution Width to Albumin Ratio (RAR)")
    assert (row["first_author"], record.first_author_surname) == ("Li W", "Li")
    assert row["authors"].split("; ")[-1] == "Yang T"  # the list's final period is not part of a name
    assert (row["first_publication_date"], row["first_index_date"]) == ("2025-06-16", "2025-06-18")
    assert row["abstract"] is None  # lite records carry no abstract (core records do)


def test_a_medrxiv_preprint_without_a_version_number_keeps_its_version_empty():
    record = parse_preprint(World().find("PPR1036674"))
    assert (record.server, record.version, record.doi) == ("medRxiv", None, "10.1101/2025.06.13.25329599")
    assert record.authors[7] == "Obón-Santacana M"


def test_the_recorded_page_holds_24_preprints_of_four_servers():
    servers = {parse_preprint(r).server for r in World().preprints()}
    assert len(World().preprints()) == 24
    assert servers == {"medRxiv", "bioRxiv", "Research Square", "Preprints.org"}


def test_a_record_of_another_source_is_not_a_preprint():
    med = recorded(CORE)["resultList"]["result"][0]
    with pytest.raises(ValueError, match="not a preprint"):
        parse_preprint(med)


def test_the_empty_answer_is_a_page_without_records():
    page = parse_search_page(EMPTY.read_bytes())
    assert (page.hit_count, page.results, page.next_cursor) == (0, [], None)


def test_a_published_record_names_its_preprint_only_by_a_preprint_in_link():
    world = World()
    # Real core records: two carry a commentCorrectionList, "Erratum for" a MED record: no preprint.
    assert all(preprint_links_in(r) == [] for r in world.core.values())
    derived = world.add_published("39709209", 38011560, ["PPR1036674"])
    assert preprint_links_in(derived) == [("PPR1036674", 38011560)]


def test_the_topic_query_is_preprints_only_and_incremental_by_first_index_date():
    query = preprints_query("2025-06-01", "2025-06-20")
    assert "TITLE_ABS:ketamin*" in query and "TITLE_ABS:suicid*" in query and 'KW:"S-ketamine"' in query
    assert query.endswith(" AND SRC:PPR AND FIRST_IDATE:[2025-06-01 TO 2025-06-20]")
    assert published_versions_query([1, 22]) == "SRC:MED AND (EXT_ID:1 OR EXT_ID:22)"


# -- the client against the stand-in ---------------------------------------------------


@pytest.mark.parametrize(("page_size", "requests"), [(1000, 2), (100, 11)])
def test_cursor_paging_follows_next_cursor_mark_to_the_end(page_size, requests):
    with EuropepmcStandIn() as server:
        client, _ = client_for(server, page_size=page_size)
        pages = list(client.iter_pages(preprints_query()))
        ids = [r["id"] for p in pages for r in p.results]
        assert len(ids) == len(set(ids)) == 1000
        assert sum(r["source"] == "PPR" for p in pages for r in p.results) == 24
        assert server.count("/search") == requests
        asked = [p["cursorMark"] for p in server.searches()]
        assert asked[0] == "*" and asked[1:] == [p.next_cursor for p in pages[:-1]]
        assert all("page" not in p and p["format"] == "json" for p in server.searches())  # never page numbers


def test_an_empty_answer_is_one_request_and_no_records():
    with EuropepmcStandIn(World(empty=True)) as server:
        client, _ = client_for(server)
        pages = list(client.iter_pages(preprints_query()))
        assert [(p.hit_count, p.results) for p in pages] == [(0, [])]
        assert server.count("/search") == 1


@pytest.mark.parametrize("kind", ["429", "500", "503", "truncated", "malformed"])
def test_each_fault_is_ridden_out_and_the_answer_is_the_same(kind):
    with EuropepmcStandIn() as server:
        server.faults.add(kind, times=1, path="/search", after=1)
        client, slept = client_for(server, page_size=100)
        ids = [r["id"] for p in client.iter_pages(preprints_query()) for r in p.results]
        assert len(set(ids)) == 1000
        assert server.count("/search") == 12 and client.stats.retries == 1
        if kind == "429":
            assert slept and slept[0] >= 1  # Retry-After: 1


def test_a_fault_that_persists_fails_loudly_naming_the_service():
    with EuropepmcStandIn() as server:
        server.faults.add("503", times=None, path="/search")
        client, _ = client_for(server)
        with pytest.raises(EuropepmcError, match="gave up after 4 tries; last problem: HTTP 503"):
            list(client.iter_pages(preprints_query()))


def test_fields_of_another_json_type_are_left_empty_not_a_failed_run():
    import json

    real = World().find("PPR1037166")
    crafted = json.loads(json.dumps(real))
    crafted.update(doi=10.21203, bookOrReportDetails="Research Square", versionNumber=1e30, firstIndexDate=20250618)
    crafted["authorList"] = "Li W, Yang T"
    record = parse_preprint(crafted)
    expected = parse_preprint(real)
    assert (record.ppr_id, record.title, record.pub_year) == (expected.ppr_id, expected.title, expected.pub_year)
    assert (record.doi, record.server, record.version, record.first_index_date) == ("10.21203", None, None, None)
    assert record.authors == expected.authors  # from authorString, as when the list is missing
    assert europepmc.preprint_row(record)["first_author"] == "Li W"
    crafted["id"] = 1037166
    with pytest.raises(ValueError, match=r"not a preprint record \(source 'PPR', id '1037166'\)"):
        parse_preprint(crafted)
    assert preprint_links_in({"pmid": "1" * 5000, "commentCorrectionList": []}) == []
    assert parse_search_page(json.dumps({"hitCount": 0, "resultList": ["x"]}).encode()).results == []


@pytest.mark.parametrize("written", ["²⁰²⁵-06-18", "2025-06-31", "18/06/2025", "2025-06-18<script>"])
def test_dates_that_name_no_day_are_left_empty_and_the_preprint_is_kept(written):
    import json
    import zlib

    real = World().find("PPR1037166")
    crafted = json.loads(json.dumps(real))
    crafted.update(firstPublicationDate=written, firstIndexDate=written)
    expected = europepmc.preprint_row(parse_preprint(real))
    del expected["raw_json_zlib"]
    assert expected["first_publication_date"] and expected["first_index_date"]
    row = europepmc.preprint_row(parse_preprint(crafted))
    assert json.loads(zlib.decompress(row.pop("raw_json_zlib")))["firstIndexDate"] == written  # kept as sent
    assert row == {**expected, "first_publication_date": None, "first_index_date": None, "raw_sha1": row["raw_sha1"]}
