"""Tests of the E-utilities stand-in itself, through HTTP with ``requests``."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from lxml import etree

from tests.eutils_stand_in import (
    CAP_MESSAGE,
    EUTILS_DATA,
    HUGE_TEXT,
    PUBMED_DATA,
    Corpus,
    EutilsStandIn,
    load_records_file,
    parse_term_dates,
)

RECORDS = PUBMED_DATA / "records"
BIG = [PUBMED_DATA / "pubmed20n0014-part1.xml.gz", PUBMED_DATA / "pubmed21n1298-part1.xml.gz"]
PROJECT_ROOT = Path(__file__).resolve().parent.parent
EMPTY_SET = (RECORDS / "37909814.xml").read_bytes()
# records/<PMID>.xml: the file names give the expected PMIDs independently of the loader
FILE_PMIDS = sorted((int(p.stem) for p in RECORDS.glob("*.xml") if p.stem != "37909814"), reverse=True)


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def records_corpus() -> Corpus:
    return Corpus.cached([RECORDS])


@pytest.fixture(scope="session")
def big_corpus() -> Corpus:
    return Corpus.cached(BIG)  # ~5 s, once per session


@pytest.fixture
def server(records_corpus):
    with EutilsStandIn(records_corpus.copy(), enforce_rate_limit=False) as s:
        yield s


@pytest.fixture
def big_server(big_corpus):
    with EutilsStandIn(big_corpus.copy(), enforce_rate_limit=False) as s:
        yield s


def esearch(server, method="GET", **params):
    params.setdefault("db", "pubmed")
    params.setdefault("term", "ketamine")
    if method == "POST":
        r = requests.post(server.url + "esearch.fcgi", data=params, timeout=10)
    else:
        r = requests.get(server.url + "esearch.fcgi", params=params, timeout=10)
    assert r.status_code == 200, r.text
    return etree.fromstring(r.content)


def ids_of(root) -> list[int]:
    return [int(x) for x in root.xpath("IdList/Id/text()")]


def efetch(server, method="POST", **params):
    params.setdefault("db", "pubmed")
    params.setdefault("retmode", "xml")
    if method == "POST":
        return requests.post(server.url + "efetch.fcgi", data=params, timeout=10)
    return requests.get(server.url + "efetch.fcgi", params=params, timeout=10)


def fetched_pmids(body: bytes) -> list[int]:
    root = etree.fromstring(body)
    return [int(p) for p in root.xpath("(PubmedArticle/MedlineCitation|PubmedBookArticle/BookDocument)/PMID/text()")]


def file_record_bytes(pmid: int) -> bytes:
    """The record bytes inside records/<pmid>.xml, cut independently of the stand-in."""
    raw = (RECORDS / f"{pmid}.xml").read_bytes()
    inner = raw.split(b"<PubmedArticleSet>", 1)[1].rsplit(b"</PubmedArticleSet>", 1)[0]
    return inner.strip()


def independent_dates(path: Path) -> dict:
    """crdt/edat/mdat of one single-record file, read with XPath (not the stand-in's code)."""
    root = etree.parse(str(path)).getroot()
    art = root[0]

    def ymd(el):
        return dt.date(int(el.findtext("Year")), int(el.findtext("Month")), int(el.findtext("Day")))

    hist = {e.get("PubStatus"): ymd(e) for e in art.iter("PubMedPubDate")}
    rev = art.find(".//DateRevised")
    crdt = hist.get("pubmed", hist.get("entrez"))
    return {"crdt": crdt, "edat": hist.get("entrez", crdt), "mdat": ymd(rev) if rev is not None else crdt}


# ----------------------------------------------------------------------------- loading


def test_records_folder_loads_215_records_book_included(records_corpus):
    assert len(records_corpus) == 215  # 216 files, one of them the empty set
    assert 20301546 in records_corpus  # the PubmedBookArticle
    assert 37909814 not in records_corpus
    assert records_corpus.warnings == []
    book = records_corpus[20301546]
    assert book.raw.startswith(b"<PubmedBookArticle>") and book.raw.endswith(b"</PubmedBookArticle>")
    # PubmedBookData/History (2020-09-17) and Book/PubDate (1993, year only)
    assert (book.crdt, book.edat, book.pdat) == (20200917, 20200917, 19930101)


def test_raw_bytes_are_the_published_bytes(records_corpus, big_corpus):
    for pmid in (38011560, 20301546, 1000, 23435529):
        assert records_corpus[pmid].raw == file_record_bytes(pmid)
    with gzip.open(BIG[1], "rb") as f:
        data = f.read()
    for pmid in (33984391, 34034067, 34023336):
        raw = big_corpus[pmid].raw
        assert raw.startswith(b"<PubmedArticle>") and raw.endswith(b"</PubmedArticle>")
        assert raw in data


def test_big_files_keep_latest_version(big_corpus):
    # 33,000 PubmedArticle elements; PMID 30271887 appears as Version 1, 2 and 3
    assert len(big_corpus) == 32998
    rec = big_corpus[30271887]
    assert rec.version == 3
    assert re.search(rb'<PMID Version="3">30271887</PMID>', rec.raw)
    assert big_corpus.warnings == []  # different versions are not a conflict


def test_loader_skips_non_pubmedarticleset_and_survives_duplicates(tmp_path):
    warnings: list[str] = []
    assert load_records_file(PUBMED_DATA / "records-pubmedpy/esummary.xml", warnings) == []
    assert "eSummaryResult" in warnings[0]
    assert len(load_records_file(PUBMED_DATA / "records-pubmedpy/efetch.xml")) == 6
    bare = load_records_file(PUBMED_DATA / "records-pymed/test_article.xml")  # bare <PubmedArticle>
    assert [r.pmid for r in bare] == [31253142]
    medline = load_records_file(PUBMED_DATA / "medline16n0902.xml.gz", warnings)
    assert medline == [] and "MedlineCitationSet" in warnings[-1]

    both = Corpus.from_paths([RECORDS / "23435529.xml", PUBMED_DATA / "records-metapub-repo-extra"])
    assert both[23435529].raw == file_record_bytes(23435529)  # records/ wins: loaded first
    assert any("23435529" in w for w in both.warnings)
    assert any("eLinkResult" in w for w in both.warnings)


def test_term_date_parser():
    assert parse_term_dates('ketamine AND ("2020/01/01"[crdt] : "2020/12/31"[crdt])') == [("crdt", 20200101, 20201231)]
    assert parse_term_dates('x AND ("2020"[dp] : "3000"[dp]) AND "2021/02"[edat]') == [
        ("pdat", 20200101, 30001231),
        ("edat", 20210201, 20210228),
    ]
    assert parse_term_dates("2019/05:2019/06[mdat]") == [("mdat", 20190501, 20190630)]
    assert parse_term_dates('depression[mh] AND "2020"[Title]') == []


# ----------------------------------------------------------------------------- esearch


def test_esearch_counts_the_records_folder_get_and_post(server, records_corpus):
    r = requests.get(
        server.url + "esearch.fcgi", params={"db": "pubmed", "term": "ketamine", "rettype": "count"}, timeout=10
    )
    assert r.headers["Content-Type"].startswith("text/xml")
    real = (EUTILS_DATA / "eutils-cassettes/decoded/test_esearchresult.0.body").read_bytes()
    assert r.content.startswith(real[: real.index(b"<eSearchResult>")])  # real prolog
    assert etree.fromstring(r.content).findtext("Count") == "215"

    root = esearch(server, "POST", term="esketamine depression")
    assert root.findtext("Count") == "215"
    assert root.findtext("RetMax") == "20" and root.findtext("RetStart") == "0"
    assert root.find("WebEnv") is None  # no usehistory
    assert ids_of(root) == FILE_PMIDS[:20]
    assert root.findtext("QueryTranslation") == "esketamine depression"


def test_history_paging_serves_real_bytes(server, records_corpus):
    root = esearch(server, usehistory="y", retmax=0)
    webenv, qk = root.findtext("WebEnv"), root.findtext("QueryKey")
    assert webenv.startswith("MCID_") and qk == "1"
    assert ids_of(root) == [] and root.findtext("Count") == "215"
    got: list[int] = []
    head = EMPTY_SET[: EMPTY_SET.index(b"<PubmedArticleSet>") + len(b"<PubmedArticleSet>\n")]
    for start in range(0, 215, 50):
        r = efetch(server, WebEnv=webenv, query_key=qk, retstart=start, retmax=50)
        assert r.status_code == 200
        assert r.content.startswith(head)
        assert b'"-//NLM//DTD PubMedArticle, 1st January 2025//EN"' in r.content
        pmids = fetched_pmids(r.content)
        assert len(pmids) == min(50, 215 - start)
        for pmid in pmids[:3]:
            assert records_corpus[pmid].raw in r.content
            if pmid != 20301546:
                assert file_record_bytes(pmid) in r.content
        got += pmids
    assert got == FILE_PMIDS
    default = efetch(server, method="GET", WebEnv=webenv, query_key=qk)  # retmax defaults to 20
    assert len(fetched_pmids(default.content)) == 20


def test_efetch_by_id_reproduces_the_real_response_files(server):
    for pmid in (38011560, 37909814):  # one record; the empty set for an unknown id
        r = efetch(server, method="GET", id=str(pmid))
        assert r.status_code == 200
        assert r.content == (RECORDS / f"{pmid}.xml").read_bytes()


def test_efetch_id_list_post_keeps_order_and_omits_unknown(server, records_corpus):
    wanted = sorted(FILE_PMIDS)  # ascending, all 215
    ids = wanted[:100] + [1, 37909814] + wanted[100:]
    r = efetch(server, id=",".join(map(str, ids)))
    assert r.status_code == 200
    assert fetched_pmids(r.content) == wanted
    assert server.requests_log[-1].method == "POST"
    assert server.params_seen("id")[-1].count(",") == 216


def test_efetch_without_id_or_history_is_an_error_document(server):
    r = efetch(server)
    assert r.status_code == 200
    assert etree.fromstring(r.content).findtext("ERROR") == "Neither query_key nor id specified"


# ----------------------------------------------------------------------------- the 9,999 cap


def test_cap_on_the_big_files(big_server):
    assert esearch(big_server, rettype="count").findtext("Count") == "32998"
    root = esearch(big_server, retstart=9990, retmax=20, usehistory="y")
    assert root.findtext("Count") == "32998"
    assert len(ids_of(root)) == 9 and root.findtext("RetMax") == "9"
    assert len(ids_of(esearch(big_server, retstart=0, retmax=10000))) == 9999
    assert len(ids_of(esearch(big_server, retstart=9998, retmax=5))) == 1

    r = requests.get(
        big_server.url + "esearch.fcgi", params={"db": "pubmed", "term": "x", "retstart": "10000"}, timeout=10
    )
    assert r.status_code == 200
    err = etree.fromstring(r.content)
    assert err.tag == "eSearchResult" and err.findtext("ERROR") == CAP_MESSAGE
    assert err.find("IdList") is None

    webenv, qk = root.findtext("WebEnv"), root.findtext("QueryKey")
    refused = efetch(big_server, WebEnv=webenv, query_key=qk, retstart=9999, retmax=10)
    assert etree.fromstring(refused.content).findtext("ERROR").startswith("Search Backend failed")
    last = efetch(big_server, WebEnv=webenv, query_key=qk, retstart=9995, retmax=10)
    assert len(fetched_pmids(last.content)) == 4


def test_big_files_one_revision_day_over_the_cap_split_by_crdt(big_server):
    def count(term):
        return int(esearch(big_server, term=term, rettype="count").findtext("Count"))

    day = '"2021/06/07"[mdat]'
    assert count(day) == 11461  # README: a mass re-indexing day
    halves = [
        count(f'{day} AND ("1000"[crdt] : "2020/12/31"[crdt])'),
        count(f'{day} AND ("2021/01/01"[crdt] : "3000"[crdt])'),
    ]
    assert sum(halves) == 11461 and max(halves) < 9999


# ----------------------------------------------------------------------------- dates


def test_date_ranges_filter_by_each_date_type(server):
    pmid = 38011560
    d = independent_dates(RECORDS / f"{pmid}.xml")
    for field in ("crdt", "edat", "mdat"):
        day = d[field]
        hit = ids_of(
            esearch(server, retmax=500, term=f'ketamine AND ("{day:%Y/%m/%d}"[{field}] : "{day:%Y/%m/%d}"[{field}])')
        )
        assert pmid in hit
        before = day - dt.timedelta(days=1)
        miss = ids_of(esearch(server, retmax=500, term=f'("1900"[{field}] : "{before:%Y/%m/%d}"[{field}])'))
        assert pmid not in miss
        assert len(hit) + len(miss) <= 215

    # an independent count of crdt in 2023 over all 215 files
    expected = sum(
        1 for p in RECORDS.glob("*.xml") if p.stem != "37909814" and independent_dates(p)["crdt"].year == 2023
    )
    assert expected > 0
    got = esearch(server, term='("2023"[crdt] : "2023"[crdt])', rettype="count").findtext("Count")
    assert int(got) == expected
    month = esearch(server, term='("2023/12"[crdt] : "2023/12"[crdt])', retmax=500)
    assert all(server.corpus[i].crdt // 100 == 202312 for i in ids_of(month))

    # publication date: 38011560 is Proc Natl Acad Sci 2023 Dec 05
    assert pmid in ids_of(esearch(server, retmax=500, term='("2023/12/05"[dp] : "3000"[dp])'))
    assert pmid not in ids_of(esearch(server, retmax=500, term='("2023/12/06"[dp] : "3000"[dp])'))


@pytest.mark.dated
def test_mindate_maxdate_and_reldate(server):
    pmid = 38011560
    crdt = independent_dates(RECORDS / f"{pmid}.xml")["crdt"]
    hit = esearch(server, datetype="crdt", mindate=f"{crdt:%Y/%m/%d}", maxdate=f"{crdt:%Y/%m/%d}", retmax=500)
    assert pmid in ids_of(hit) and int(hit.findtext("Count")) < 215
    miss = esearch(
        server, datetype="crdt", mindate="1800", maxdate=f"{crdt - dt.timedelta(days=1):%Y/%m/%d}", retmax=500
    )
    assert pmid not in ids_of(miss)
    # PubMed ignores mindate without maxdate
    assert esearch(server, datetype="crdt", mindate="2099", rettype="count").findtext("Count") == "215"

    server.today = crdt + dt.timedelta(days=10)
    assert pmid in ids_of(esearch(server, reldate=10, datetype="crdt", retmax=500))
    assert pmid not in ids_of(esearch(server, reldate=9, datetype="crdt", retmax=500))
    server.today = "2023-01-01"
    assert server.today == dt.date(2023, 1, 1)


# ----------------------------------------------------------------------------- faults


def test_fault_http_errors(server):
    tpl = json.loads(
        next(
            p for p in (EUTILS_DATA / "biomcp-pubmed-json").glob("*.json") if "rate limit" in p.read_text()
        ).read_text()
    )
    server.faults.add("429")
    r = requests.get(server.url + "esearch.fcgi", params={"db": "pubmed", "term": "x"}, timeout=10)
    assert r.status_code == 429 and r.headers["Retry-After"] == "1"
    assert set(r.json()) == set(tpl) and r.json()["error"] == tpl["error"]
    for kind, reason in (("500", b"Internal Server Error"), ("502", b"Bad Gateway"), ("503", b"Service Unavailable")):
        server.faults.add(kind)
        r = requests.get(server.url + "esearch.fcgi", params={"term": "x"}, timeout=10)
        assert r.status_code == int(kind) and reason in r.content
    assert requests.get(server.url + "esearch.fcgi", params={"term": "x"}, timeout=10).status_code == 200
    assert server.faults_seen() == ["429", "500", "502", "503"]
    assert [e.status for e in server.requests_log] == [429, 500, 502, 503, 200]


def test_fault_truncated_and_short_read(server):
    full = efetch(server, id="38011560").content
    server.faults.add("truncated", path="efetch")
    r = efetch(server, id="38011560")
    assert r.status_code == 200
    assert int(r.headers["Content-Length"]) == len(r.content) == len(full) // 2
    assert full.startswith(r.content)
    with pytest.raises(etree.XMLSyntaxError):
        etree.fromstring(r.content)

    server.faults.add("short_read", path="efetch")
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        efetch(server, id="38011560")
    assert efetch(server, id="38011560").content == full
    assert server.faults_seen() == ["truncated", "short_read"]


def test_fault_errors_inside_200(server):
    server.faults.add("error_in_200", path="esearch")
    r = requests.get(server.url + "esearch.fcgi", params={"term": "x"}, timeout=10)
    root = etree.fromstring(r.content)
    assert r.status_code == 200 and root.tag == "eSearchResult"
    assert root.findtext("ERROR").startswith("Search Backend failed:")
    assert root.find("Count") is None

    server.faults.add("html_200")
    r = requests.get(server.url + "esearch.fcgi", params={"term": "x"}, timeout=10)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/html")
    assert etree.fromstring(r.content).tag == "html"


def test_fault_webenv_expired(server):
    root = esearch(server, usehistory="y")
    webenv = root.findtext("WebEnv")
    assert fetched_pmids(efetch(server, WebEnv=webenv, query_key=1, retmax=3).content)
    server.faults.add("webenv_expired", path="efetch")
    for _ in range(2):  # the fault expires it for good
        r = efetch(server, WebEnv=webenv, query_key=1, retmax=3)
        assert r.status_code == 200
        assert etree.fromstring(r.content).findtext("ERROR") == "Unable to obtain query #1"
    fresh = esearch(server, usehistory="y").findtext("WebEnv")
    assert fresh != webenv
    server.expire_webenv(fresh)
    assert b"<ERROR>" in efetch(server, WebEnv=fresh, query_key=1).content


def test_fault_hostile_answers_are_the_real_answer_made_hostile(server):
    real = efetch(server, id="38011560").content
    title = re.search(rb"<ArticleTitle>([^<]*)</ArticleTitle>", real)
    assert title is not None

    def hostile(variant):
        server.faults.add("hostile", variant=variant, path="efetch")
        r = efetch(server, id="38011560")
        assert r.status_code == 200 and r.headers["Content-Type"] == "text/xml; charset=UTF-8"
        return r.content

    xxe = hostile("xxe")
    assert b'[<!ENTITY xxe SYSTEM "file:///etc/passwd">]>' in xxe and b"<ArticleTitle>&xxe;" in xxe
    assert xxe.replace(b' [<!ENTITY xxe SYSTEM "file:///etc/passwd">]', b"").replace(b"&xxe;", b"") == real
    bomb = hostile("entity_bomb")
    assert bomb.count(b"<!ENTITY lol") == 10 and b"<ArticleTitle>&lol9;" in bomb
    assert re.sub(rb" \[(<!ENTITY[^>]*>)+\]", b"", bomb).replace(b"&lol9;", b"") == real
    huge = hostile("huge_text")
    assert len(huge) > HUGE_TEXT
    assert huge.startswith(real[: title.start(1)]) and huge.endswith(real[title.end(1) :])
    assert huge[title.start(1) : title.start(1) + 3 * len(title.group(1))] == title.group(1) * 3
    bad = hostile("invalid_utf8")
    with pytest.raises(UnicodeDecodeError):
        bad.decode("utf-8")
    assert bad.replace(b"\xff\xfe", b"", 1) == real
    assert hostile("esummary") == (PUBMED_DATA / "records-pubmedpy/esummary.xml").read_bytes()
    assert etree.fromstring(hostile("elink")).tag == "eLinkResult"
    # Any other answer's first text element serves as well: esearch's QueryTranslation.
    server.faults.add("hostile", variant="xxe", path="esearch")
    r = requests.get(server.url + "esearch.fcgi", params={"term": "x"}, timeout=10)
    assert b"<!ENTITY xxe" in r.content and b"<QueryTranslation>&xxe;x</QueryTranslation>" in r.content
    assert efetch(server, id="38011560").content == real
    assert server.faults_seen() == ["hostile"] * 7


def test_fault_timeout_slow_reset(server):
    server.faults.add("timeout", seconds=1.0)
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.get(server.url + "esearch.fcgi", params={"term": "x"}, timeout=0.3)
    server.faults.add("slow", seconds=0.4)
    t0 = time.monotonic()
    r = requests.get(server.url + "esearch.fcgi", params={"term": "x"}, timeout=5)
    assert r.status_code == 200 and time.monotonic() - t0 >= 0.4
    server.faults.add("reset")
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(server.url + "esearch.fcgi", params={"term": "x"}, timeout=5)
    assert requests.get(server.url + "esearch.fcgi", params={"term": "x"}, timeout=5).status_code == 200
    assert [(e.fault, e.status) for e in server.requests_log] == [
        ("timeout", None),
        ("slow", 200),
        ("reset", None),
        (None, 200),
    ]


def test_fault_outage(server):
    # An outage far longer than three requests take on any machine, ended by the test rather
    # than slept out: no wall-clock race on a loaded CI machine.
    server.faults.add("outage", seconds=600)
    statuses = [requests.get(server.url + "einfo.fcgi", timeout=5).status_code for _ in range(3)]
    assert statuses == [503, 503, 503]
    server.end_outage()
    assert requests.get(server.url + "einfo.fcgi", timeout=5).status_code == 200
    assert server.count(fault="outage") == 3


def test_fault_rules_after_times_every_path(server):
    server.faults.add("500", path="efetch", after=1, times=2)
    statuses = [efetch(server, id="38011560").status_code for _ in range(4)]
    statuses.append(requests.get(server.url + "esearch.fcgi", params={"term": "x"}, timeout=5).status_code)
    assert statuses == [200, 500, 500, 200, 200]

    server.faults.clear()
    server.clear_log()
    rule = server.faults.every(3, ["502", "error_in_200", "truncated"])
    for _ in range(9):
        requests.get(server.url + "esearch.fcgi", params={"term": "x"}, timeout=5)
    assert [e.fault for e in server.requests_log] == [
        None,
        None,
        "502",
        None,
        None,
        "error_in_200",
        None,
        None,
        "truncated",
    ]
    assert rule.fired == 3


def test_random_faults_are_seeded(records_corpus):
    def run(seed):
        with EutilsStandIn(records_corpus.copy(), enforce_rate_limit=False) as s:
            s.faults.random(seed, 0.4, ["500", "502", "503", "error_in_200"])
            for _ in range(30):
                requests.get(s.url + "einfo.fcgi", timeout=5)
            return [e.fault for e in s.requests_log]

    a, b, c = run(7), run(7), run(8)
    assert a == b and a != c
    assert 4 <= sum(f is not None for f in a) <= 20


# ----------------------------------------------------------------------------- rate limit


class HandClock:
    """A clock that moves only when the test says: seconds, as time.monotonic() counts them."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_rate_limit_enforced_and_counted(records_corpus):
    """NCBI's window, on the stand-in's own clock: a burst is one instant however slowly this
    machine sends it, and a pause is exactly as long as the test says."""
    clock = HandClock()
    with EutilsStandIn(records_corpus.copy(), clock=clock) as s:
        statuses = [requests.get(s.url + "einfo.fcgi", timeout=5) for _ in range(5)]
        assert [r.status_code for r in statuses] == [200, 200, 200, 429, 429]
        body = statuses[3].json()
        assert body["error"] == "API rate limit exceeded" and body["limit"] == "3" and body["count"] == "4"
        assert s.rate_violations() == 2 and s.rate_violations(limit=4) == 1
        clock.now += 1.0  # the burst's window has passed: its arrivals no longer count
        for _ in range(3):  # well-paced: 3 per second
            assert requests.get(s.url + "einfo.fcgi", timeout=5).status_code == 200
            clock.now += 0.36
        assert s.rate_violations() == 2
        clock.now += 1.0
        keyed = [requests.get(s.url + "einfo.fcgi", params={"api_key": "k"}, timeout=5).status_code for _ in range(11)]
        assert keyed == [200] * 10 + [429]
        assert s.rate_violations(limit=10) == 1
        assert s.count("einfo", status=429) == 3
        clock.now += 0.99  # a window is a second: the 11 keyed arrivals still count ...
        assert requests.get(s.url + "einfo.fcgi", params={"api_key": "k"}, timeout=5).status_code == 429
        clock.now += 0.02  # ... and a second after them they do not
        assert requests.get(s.url + "einfo.fcgi", params={"api_key": "k"}, timeout=5).status_code == 200


# ----------------------------------------------------------------------------- corpus mutation


def test_clone_revise_remove(server, records_corpus):
    src = records_corpus[38011560]
    clone = server.add_clone(99000001, 38011560, crdt="2024/02/03", mdat="2024/03/04")
    assert clone.crdt == 20240203 and clone.edat == 20240203 and clone.mdat == 20240304
    root = esearch(server, term='("2024/02/03"[crdt] : "2024/02/03"[crdt])')
    assert 99000001 in ids_of(root)
    body = efetch(server, id="99000001").content
    art = etree.fromstring(body)[0]
    assert art.findtext("MedlineCitation/PMID") == "99000001"
    assert art.findtext('PubmedData/ArticleIdList/ArticleId[@IdType="pubmed"]') == "99000001"
    pd = art.find('PubmedData/History/PubMedPubDate[@PubStatus="pubmed"]')
    assert (pd.findtext("Year"), pd.findtext("Month"), pd.findtext("Day")) == ("2024", "2", "3")
    assert art.findtext("MedlineCitation/DateRevised/Month") == "03"

    def without_ids_and_dates(raw):
        raw = re.sub(rb"<PMID[^>]*>\d+</PMID>", b"", raw, count=1)
        raw = re.sub(rb'<ArticleId IdType="pubmed">\d+</ArticleId>', b"", raw)
        raw = re.sub(rb"<History>.*?</History>", b"", raw, flags=re.S)
        return re.sub(rb"<DateRevised>.*?</DateRevised>", b"", raw, flags=re.S)

    assert clone.raw != src.raw
    assert without_ids_and_dates(clone.raw) == without_ids_and_dates(src.raw)

    new_text = b"KETAMINE HAS EMERGED"
    term = '("2025/01/02"[mdat] : "2025/01/02"[mdat])'
    assert ids_of(esearch(server, term=term)) == []
    server.revise(38011560, mdat="2025/01/02", change=lambda b: b.replace(b"Ketamine has emerged", new_text))
    assert ids_of(esearch(server, term=term)) == [38011560]
    assert new_text in efetch(server, id="38011560").content
    assert records_corpus[38011560].raw == src.raw  # the shared parse is untouched

    server.remove(38011560)
    assert fetched_pmids(efetch(server, id="38011560,1000").content) == [1000]
    assert esearch(server, rettype="count").findtext("Count") == "215"  # 215 - 1 + clone


def test_grow_between_esearch_and_efetch(server):
    seen = []
    server.on_request.append(lambda s, e: seen.append(e.endpoint))
    server.grow_after_esearch(3, crdt="2030/01/01")
    first = esearch(server, usehistory="y", retmax=0)
    assert first.findtext("Count") == "215"  # grown after the answer was built
    assert len(server.grown) == 3 and min(server.grown) > 38011560
    assert esearch(server, rettype="count").findtext("Count") == "218"
    r = efetch(server, WebEnv=first.findtext("WebEnv"), query_key=1, retmax=500)
    assert len(fetched_pmids(r.content)) == 215  # history holds the PMIDs as searched
    new = ids_of(esearch(server, term='"2030"[crdt]'))
    assert sorted(new) == sorted(server.grown)
    assert seen == ["esearch", "esearch", "efetch", "esearch"]
    assert server.params_seen("usehistory") == ["y"]
    assert {"db", "term", "rettype"} <= server.params_seen()


# ----------------------------------------------------------------------------- CLI


def test_cli_serves_and_logs():
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.eutils_stand_in",
            str(PUBMED_DATA / "records-pubmedpy"),
            "--port",
            "0",
            "--host",
            "127.0.0.1",
        ],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = proc.stdout.readline().strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/entrez/eutils/", url)
        r = requests.get(url + "esearch.fcgi", params={"db": "pubmed", "term": "x", "rettype": "count"}, timeout=10)
        assert etree.fromstring(r.content).findtext("Count") == "6"
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert "eSummaryResult" in err  # the skipped file
    assert re.search(r"GET /entrez/eutils/esearch\.fcgi 200 - .*'rettype': 'count'", err)
