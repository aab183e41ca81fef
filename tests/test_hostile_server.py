"""A server that one record or one query cannot stall: the catalog served over crafted records
(tests/hostile_records.py: a 1 MB abstract, bidi controls in a title) and asked crafted SQL.

The catalog is records/ plus the crafted copies, loaded with `python -m harvest import`.
"""

from __future__ import annotations

import asyncio
import importlib.util
import sqlite3
from pathlib import Path

import pytest

from tests.conftest import RECORDS, run_cli
from tests.hostile_records import BIDI, BIDI_CONTROLS, BIG, RLI, RLO, SOURCE_PMID, crafted_records
from tests.test_catalog import CONFIG, Client, copy_config


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    site = copy_config(tmp_path_factory.mktemp("hostile-site"))
    crafted = site.parent / "crafted.xml"
    crafted.write_bytes(crafted_records())
    result = run_cli("import", *sorted(RECORDS.glob("*.xml")), crafted, "--db", site / "catalog.db")
    assert result.returncode == 0, result.stderr[-2000:]
    return site


@pytest.fixture(scope="module")
def client(site):
    c = Client(site)
    yield c
    c.close()


def catalog_plugin():
    spec = importlib.util.spec_from_file_location("catalog_plugin_under_test", CONFIG / "plugins" / "catalog.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- one long record --------------------------------------------------------------------------


def test_a_one_megabyte_abstract_does_not_stall_the_search(client, site):
    with sqlite3.connect(site / "catalog.db") as conn:
        assert conn.execute("select length(abstract) from articles where pmid = ?", [BIG]).fetchone()[0] == 1_000_000
    response = client.get("/catalog/search.json", params={"q": "ketamine", "_shape": "array"})
    assert response.status_code == 200, response.text[:300]  # within the 3 s limit, not interrupted
    rows = {row["pmid"]: row for row in response.json()}
    assert {BIG, SOURCE_PMID} <= set(rows)
    # The big record's snippet is a snippet, hits marked; the real record's too.
    assert "**ketamine**" in rows[BIG]["search_snippet"] and len(rows[BIG]["search_snippet"]) < 1000
    assert "**ketamine**" in rows[SOURCE_PMID]["search_snippet"]
    page = client.get("/catalog/search", params={"q": "ketamine depression"})
    assert page.status_code == 200 and f"/catalog/articles/{BIG}" in page.text
    assert client.get(f"/catalog/articles/{BIG}").status_code == 200


def test_search_snippets_mark_what_fts5_matched_from_each_fields_head():
    plugin = catalog_plugin()
    title = "Ketamine and the neurobiology of depression: Toward rapid-acting antidepressant treatments."
    abstract = (
        "Background text without the words. " * 20 + "Esketamine nasal spray reduced suicidal ideation "
        "in treatment-resistant depression. " + "More text follows here. " * 20
    )
    snippet = lambda q: plugin.search_snippet(q, title, abstract, "ketamine; stress", "Ketamine")  # noqa: E731
    assert snippet('"nasal spray"').count("**nasal spray**") == 1
    assert "**antidepressant**" in snippet("antidepress*")  # a prefix, found in the title
    assert "**treatment-resistant**" in snippet('"treatment resistant"')
    assert snippet("title:ketamine").startswith("**Ketamine** and the neurobiology")
    assert "**suicidal**" in snippet("suicide")  # the porter stemmer, as the catalog's index
    assert snippet("esketamine").startswith(" … ") and snippet("esketamine").endswith(" … ")
    # A hit past the head of a field: the snippet is the start of the abstract, unmarked.
    far = "Background text. " * 2000 + "Zanubrutinib."
    assert plugin.search_snippet("zanubrutinib", title, far, None, None).startswith("Background text.")


# -- what one query may build -----------------------------------------------------------------


def sql(client, query: str):
    return client.get("/catalog.json", params={"sql": query, "_shape": "array"})


def test_functions_no_reader_needs_are_refused(client):
    for call in (
        "randomblob(999999999)",
        "zeroblob(999999999)",
        "fts3_tokenizer('simple')",
        "load_extension('/tmp/owned')",
        "hex(randomblob(16))",
    ):
        response = sql(client, f"select {call}")
        assert response.status_code == 400, call
        name = call.split("(")[0] if not call.startswith("hex") else "randomblob"
        assert f"not authorized to use function: {name}" in response.text, call


# Datasette turns on sqlite3's callback tracebacks, so the refusal raised inside printf() also
# reaches sys.unraisablehook (the server's stderr); here that is the expected path, not a leak.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_printf_refuses_huge_widths_and_still_formats(client):
    for query in (
        "select length(printf('%.*c', 20000000, 'x'))",
        "select length(printf('%20000000c', 'x'))",
        "select length(format('%.*c', -20000000, 'x'))",
        "select length(printf('%!.20000000f', 1.5))",
    ):
        response = sql(client, query)
        assert response.status_code == 400 and "user-defined function raised exception" in response.text, query
    response = sql(
        client,
        "select printf('%5.2f|%-4d|%s|%%|%q|%.*c', 3.14159, 7, 'a', 'it''s', 3, 'x') as p, "
        "length(printf('%.*c', 10000, 'x')) as n, format('%03d', 7) as f",
    )
    assert response.status_code == 200
    assert response.json() == [{"p": " 3.14|7   |a|%|it''s|xxx", "n": 10000, "f": "007"}]


def test_a_query_cannot_build_a_value_past_the_length_limit(client):
    doubling = (
        f"with recursive r(s) as (select abstract from articles where pmid = {BIG} "
        "union all select s || s from r where length(s) < 20000000) select max(length(s)) as n from r"
    )
    response = sql(client, doubling)
    assert response.status_code == 400 and "string or blob too big" in response.text
    # The largest value the catalog holds is still read whole.
    assert sql(client, f"select length(abstract) as n from articles where pmid = {BIG}").json() == [{"n": 1_000_000}]


def test_an_answer_too_large_is_refused_in_one_line(client):
    seventy = (
        "with recursive n(i) as (select 1 union all select i + 1 from n where i < 70) "
        f"select i, abstract from n, articles where pmid = {BIG}"
    )
    response = sql(client, seventy)
    assert response.status_code == 400 and "this answer is larger than 64 MB" in response.text
    # The same rows, fewer columns: fine.
    assert len(sql(client, seventy.replace("i, abstract", "i, length(abstract)")).json()) == 70


def test_sql_typed_by_hand_runs_one_at_a_time_while_pages_go_ahead(monkeypatch):
    plugin = catalog_plugin()
    running, most, release = set(), [0], asyncio.Event()

    async def app(scope, receive, send):
        running.add(scope["path"] + "?" + scope["query_string"].decode())
        most[0] = max(most[0], len(running))
        await release.wait()
        running.discard(scope["path"] + "?" + scope["query_string"].decode())
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    wrapped = plugin.user_sql_one_at_a_time(None)(app)

    async def call(path, query=b""):
        sent = []

        async def send(event):
            sent.append(event)

        await wrapped({"type": "http", "path": path, "query_string": query}, None, send)
        return sent[0]["status"]

    async def scenario():
        users = [asyncio.create_task(call("/catalog.json", f"sql=select+{i}".encode())) for i in range(3)]
        where = asyncio.create_task(call("/catalog/articles", b"_where=pmid%3E1"))
        pages = [asyncio.create_task(call(p)) for p in ("/", "/catalog/articles", "/catalog/search")]
        for _ in range(20):
            await asyncio.sleep(0)  # let every task start
        assert len([r for r in running if "sql=" in r or "_where=" in r]) == 1
        assert {"/?", "/catalog/articles?", "/catalog/search?"} <= running  # pages are not held back
        monkeypatch.setattr(plugin, "USER_SQL_WAIT_SECONDS", 0.05)
        busy = await call("/catalog.json", b"sql=select+1")  # the slot stays taken while it waits
        release.set()
        return busy, await asyncio.gather(*users, where, *pages)

    busy, statuses = asyncio.run(scenario())
    assert busy == 503
    assert statuses == [200] * 7


# -- bidirectional controls -------------------------------------------------------------------


def test_bidi_controls_in_a_title_are_not_rendered_but_are_kept(client):
    stored = client.json(f"/catalog/articles/{BIDI}.json?_shape=array")[0]["title"]
    assert RLO in stored and RLI in stored  # the data as published
    shown = stored.translate(dict.fromkeys(map(ord, BIDI_CONTROLS)))
    for path in (
        f"/catalog/articles/{BIDI}",
        "/catalog/search?q=neurobiology",
        f"/catalog/articles?pmid={BIDI}",
        "/catalog/articles?_search=neurobiology&_view=table",
    ):
        page = client.get(path)
        assert page.status_code == 200, path
        assert not BIDI_CONTROLS & set(page.text), path
        assert shown.split(":")[0] in page.text, path


# -- a burst of readers -----------------------------------------------------------------------


def test_a_page_asked_for_many_times_at_once_is_made_once_per_catalog_state():
    plugin = catalog_plugin()
    made, release = [], asyncio.Event()

    class NoCatalog:
        databases: dict = {}

    async def app(scope, receive, send):
        made.append(scope["path"])
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/html")]})
        await send({"type": "http.response.body", "body": b"<p>front page</p>"})

    wrapped = plugin.pages_made_once_per_harvest(NoCatalog())(app)

    async def call(path, query=b"", headers=()):
        sent = []

        async def send(event):
            sent.append(event)

        await wrapped(
            {"type": "http", "method": "GET", "path": path, "query_string": query, "headers": list(headers)}, None, send
        )
        return sent[0]["status"], dict(sent[0]["headers"]), sent[-1].get("body", b"")

    async def scenario():
        burst = [asyncio.create_task(call("/")) for _ in range(30)]
        user_sql = [asyncio.create_task(call("/catalog.json", b"sql=select+1")) for _ in range(2)]
        for _ in range(20):
            await asyncio.sleep(0)
        release.set()
        answers = await asyncio.gather(*burst)
        await asyncio.gather(*user_sql)
        etag = answers[0][1][b"etag"]
        again = await call("/", headers=[(b"if-none-match", etag)])
        return answers, again

    answers, again = asyncio.run(scenario())
    assert made.count("/") == 1 and made.count("/catalog.json") == 2  # SQL typed by hand is never kept
    assert {(status, body) for status, _, body in answers} == {(200, b"<p>front page</p>")}
    assert answers[0][1][b"cache-control"] == b"no-cache"
    assert again[0] == 304 and made.count("/") == 1


# -- a hostile reader's requests --------------------------------------------------------------


def test_a_page_made_for_a_forged_host_is_never_served_to_another(client):
    """Datasette writes absolute URLs from the request's Host: a page kept for one host and
    replayed to others would send every reader to the forger's site."""
    forged = client.get("/catalog/articles.json?_size=3", headers={"host": "evil.example"})
    assert forged.json()["next_url"].startswith("http://evil.example/")  # what Datasette makes of it
    for path in ("/catalog/articles.json?_size=3", "/catalog/feed_new.atom", "/catalog/articles?_size=3"):
        client.get(path, headers={"host": "evil.example"})
        honest = client.get(path)
        assert honest.status_code == 200 and "evil.example" not in honest.text, path


def test_a_csv_stream_reads_whole_pages_and_every_row_once(client, site):
    import io

    import pandas as pd

    answer = client.get("/catalog/articles.csv?_stream=on&_size=1&_col=title")
    assert answer.status_code == 200
    rows = pd.read_csv(io.StringIO(answer.text))
    with sqlite3.connect(site / "catalog.db") as conn:
        stored = {pmid for (pmid,) in conn.execute("select pmid from articles")}
    assert sorted(rows["pmid"]) == sorted(stored)


def test_a_csv_stream_asks_for_pages_of_the_most_rows_and_stops_when_its_reader_leaves():
    plugin = catalog_plugin()
    asked, written = [], [0]

    async def app(scope, receive, send):  # a stream that would go on for ever
        asked.append(scope["query_string"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        while True:
            await send({"type": "http.response.body", "body": b"row\r\n", "more_body": True})
            written[0] += 1
            await asyncio.sleep(0)

    wrapped = plugin.csv_streams_in_whole_pages(None)(app)

    async def scenario():
        left = asyncio.Event()

        async def receive():
            await left.wait()
            return {"type": "http.disconnect"}

        async def send(event):
            pass

        scope = {"type": "http", "path": "/catalog/articles.csv", "query_string": b"_stream=on&_size=1&_col=title"}
        streaming = asyncio.ensure_future(wrapped(scope, receive, send))
        for _ in range(50):
            await asyncio.sleep(0)
        left.set()
        await asyncio.wait_for(streaming, 5)  # it ends: no write after the reader left
        return written[0]

    before = asyncio.run(scenario())
    assert 0 < before < 60
    assert asked == [b"_stream=on&_col=title&_size=max"]


@pytest.mark.parametrize("sql", ["select 'abc' as pmid", "select 9e999 as pmid", "select x'00' as pmid"])
@pytest.mark.parametrize("extension", ["ris", "bib", "csljson"])
def test_an_export_of_rows_whose_pmid_is_no_pmid_is_refused_in_one_line(client, sql, extension):
    answer = client.get(f"/catalog.{extension}", params={"sql": sql})
    assert answer.status_code == 400
    assert answer.text.count("\n") == 1 and "not a PubMed id" in answer.text


def test_a_feed_followed_with_characters_xml_cannot_hold_is_still_a_feed(client):
    import feedparser

    for path in ("/catalog/feed_search.atom?q=ketamine%01", "/catalog/feed_search.atom?q=%EF%BF%BE%02"):
        answer = client.get(path)
        assert answer.status_code == 200, path
        feed = feedparser.parse(answer.content)
        assert not feed.bozo, (path, feed.bozo_exception)
    feed = feedparser.parse(client.get("/catalog/feed_search.atom?q=keta%01mine").content)
    assert feed.feed.title == "Ketamine catalog search: ketamine"
    assert client.get("/catalog/feed_new.atom?x=%01").status_code == 200
    refused = client.get("/catalog/feed_search.atom?q=ketamine%00")  # NUL: refused as anywhere
    assert refused.status_code == 400 and refused.text == "'q': a NUL character is in the request.\n"


def test_the_articles_list_shows_whichever_columns_are_asked_for(client):
    for query in ("_col=title", "_col=pmid", "_nocol=cited_by_count", "_col=journal&_col=pub_year"):
        page = client.get(f"/catalog/articles?{query}")
        assert page.status_code == 200, (query, page.text[:300])
        assert page.text.count('class="record-item') == 50, query


def test_an_article_address_that_is_no_pmid_is_not_found(client, site):
    """SQLite reads 1e3 (and 1000.0, tilde-encoded) as PMID 1000, a record of records/: the
    catalog answers for the PMID written in digits only."""
    with sqlite3.connect(site / "catalog.db") as conn:
        assert conn.execute("select count(*) from articles where pmid = '1e3'").fetchone() == (1,)
    for path in ("/catalog/articles/1e3", "/catalog/articles/1000~2E0", "/catalog/articles/1e3.json"):
        assert client.get(path).status_code == 404, path
    assert client.get("/catalog/articles/1000").status_code == 200


@pytest.mark.parametrize(
    "query, message",
    [
        ("_timelimit=x", "_timelimit: 'x' is not a number of milliseconds."),
        ("_through=notjson", '_through: give JSON {"table": ..., "column": ..., "value": ...}.'),
        ('_through={"table":"nowhere","column":"y","value":"z"}', "_through: no table named 'nowhere'."),
        ('_through={"table":"article_tags","column":"y","value":"z"}', "_through: article_tags has no column 'y'."),
        ("pmid__in=[1", "pmid__in: '[1' is not a JSON list; or give the values comma-separated."),
        ("&".join(f"_mesh=Term{i}" for i in range(51)), "Choose at most 50 facet values at once (51 given)."),
        ("pub_year__gte=²⁰¹⁹", "pub_year__gte: '²⁰¹⁹' is not a number SQLite can compare."),
        (f"pmid__gt={10**22}", f"pmid__gt: '{10**22}' is not a number SQLite can compare."),
        ("_where=%00", "'_where': a NUL character is in the request."),
        ("_facet=%00", "'_facet': a NUL character is in the request."),
    ],
)
def test_arguments_datasette_would_answer_500_to_are_refused_in_one_line(client, query, message):
    answer = client.get(f"/catalog/articles.json?{query}")
    assert answer.status_code == 400 and answer.json()["error"] == message


def test_a_facet_value_asked_for_many_times_counts_once(client):
    one = client.json("/catalog/articles.json?_design=case_report_series&_size=max")["rows"]
    many = client.json("/catalog/articles.json?" + "&".join(["_design=case_report_series"] * 999) + "&_size=max")[
        "rows"
    ]
    assert one and many == one


@pytest.mark.parametrize(
    "path, message",
    [
        ("/catalog.csv", "A CSV of the database is the answer to a query: give ?sql=."),
        ("/catalog.csv?sql=", "A CSV of the database is the answer to a query: give ?sql=."),
        ("/catalog.json?sql=select+1&_timelimit=x", "_timelimit: 'x' is not a number of milliseconds."),
        ("/catalog/search.json?q=ketamine&_timelimit=x", "_timelimit: 'x' is not a number of milliseconds."),
        ("/catalog/catalog_records.json?_next=abc", "_next: 'abc' is not a row offset; follow the page's next link."),
        (
            f"/catalog/catalog_records.json?_next={10**22}",
            f"_next: '{10**22}' is not a row offset; follow the page's next link.",
        ),
        (
            "/catalog.atom?sql=select+1+as+atom_id,+2+as+atom_title,+'x'+as+atom_updated",
            "This answer cannot be written as an Atom feed: Unknown string format: x",
        ),
    ],
)
def test_requests_beyond_the_tables_datasette_would_answer_500_to_are_refused_in_one_line(client, path, message):
    answer = client.get(path)
    assert answer.status_code == 400, (path, answer.text[:200])
    error = answer.json()["error"] if path.split("?")[0].endswith(".json") else answer.text.strip()
    assert error == message


def test_odd_values_that_still_have_an_answer(client):
    assert client.get(f"/catalog/articles.json?pub_year={10**22}").json()["rows"] == []  # a year no record has
    assert client.get("/catalog/catalog_records.json?_next=2").status_code == 200
    feed = client.get("/catalog/preprints.atom?_feed_title=%01")  # no preprint here: the empty feed
    assert feed.status_code == 200 and b"<feed" in feed.content
