"""The catalog's registered trials as a reader meets them: the trial page, the trials table and
its facets, the trials questions, the feed of what changed, the front page and article pages.

One catalog per session (tests/trials_catalog.py): the session's real PubMed catalog, then two
trials runs against the ClinicalTrials.gov stand-in serving real recorded studies and clones of
them under ids that real records cite. Read in-process through Datasette's client. Every
expected answer is worked out here from the base tables (trials, trial_registrations, articles,
...) or from the recorded study JSON, never through the trial_papers view or the query under test.
"""

from __future__ import annotations

import datetime as dt
import html
import re
import sqlite3
from collections import Counter

import feedparser
import lxml.html
import pytest
from lxml import etree
from markupsafe import escape

from tests.ctgov_stand_in import StudyStore
from tests.test_catalog import ATOM, Client
from tests.trials_catalog import (
    HOSTILE,
    HOSTILE_INTERVENTION,
    HOSTILE_SPONSOR,
    HOSTILE_STATUS,
    HOSTILE_TITLE,
    KETAMINE_PAPER,
    REVISED,
    build_trials_site,
)

# Designs whose papers report no results of the trial they cite (what "results paper" leaves out).
NOT_A_REPORT = {
    "trial_protocol",
    "systematic_review",
    "meta_analysis",
    "narrative_review",
    "guideline_consensus",
    "commentary_letter",
    "preclinical_animal",
    "in_vitro",
}
ONGOING = {"RECRUITING", "NOT_YET_RECRUITING", "ACTIVE_NOT_RECRUITING", "ENROLLING_BY_INVITATION"}


@pytest.fixture(scope="session")
def trials_site(tmp_path_factory):
    return build_trials_site(tmp_path_factory)


@pytest.fixture(scope="session")
def tdb(trials_site):
    conn = sqlite3.connect(f"file:{trials_site.path / 'catalog.db'}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    yield conn
    conn.close()


@pytest.fixture(scope="session")
def tclient(trials_site):
    c = Client(trials_site.path)
    yield c
    c.close()


class Base:
    """The trials and their links, from the base tables, as plain Python."""

    def __init__(self, conn):
        self.trials = {r["nct_id"]: dict(r) for r in conn.execute("select * from trials")}
        self.articles = {r["pmid"]: dict(r) for r in conn.execute("select pmid, title, study_design from articles")}
        self.links = [
            dict(r)
            for r in conn.execute(
                "select pmid, trial_id, source from trial_registrations where trial_id glob 'NCT[0-9]*'"
            )
        ]
        self.interventions = [dict(r) for r in conn.execute("select * from trial_interventions")]
        self.events = [dict(r) for r in conn.execute("select * from trial_events order by id")]

    def reports(self, nct: str, *, in_catalog_only: bool = False) -> set[int]:
        """PMIDs of the papers reporting a trial (not background, not protocols or reviews)."""
        out = set()
        for link in self.links:
            if link["trial_id"] != nct or link["source"] == "registry_reference:BACKGROUND":
                continue
            article = self.articles.get(link["pmid"])
            if article is None and in_catalog_only:
                continue
            if article is None or article["study_design"] not in NOT_A_REPORT:
                out.add(link["pmid"])
        return out

    def tags(self, nct: str, column: str) -> set[str]:
        return {
            v.strip()
            for i in self.interventions
            if i["nct_id"] == nct
            for v in (i[column] or "").split(",")
            if v.strip()
        }


@pytest.fixture(scope="session")
def base(tdb):
    return Base(tdb)


def end_of(date: str) -> dt.date:
    """The last day a registry date (YYYY, YYYY-MM or YYYY-MM-DD) can mean."""
    parts = [int(p) for p in date.split("-")]
    if len(parts) == 3:
        return dt.date(*parts)
    if len(parts) == 1:
        return dt.date(parts[0], 12, 31)
    first_of_next = dt.date(parts[0] + parts[1] // 12, parts[1] % 12 + 1, 1)
    return first_of_next - dt.timedelta(days=1)


def months_ago(today: dt.date, months: int) -> dt.date:
    """`date('now', '-N months')` as SQLite computes it (the day overflows into the next month)."""
    year, month = divmod(today.year * 12 + today.month - 1 - months, 12)
    first = dt.date(year, month + 1, 1)
    return first + dt.timedelta(days=today.day - 1)


def html_links(fragment: str) -> list[str]:
    """The href of every link an HTML fragment really holds (not text that looks like one)."""
    return [a.get("href") for a in lxml.html.fragment_fromstring(fragment, create_parent="div").iter("a")]


def html_text(fragment: str) -> str:
    return lxml.html.fragment_fromstring(fragment, create_parent="div").text_content()


def question(client, name: str, **params) -> list[dict]:
    return client.json(f"/catalog/{name}.json?_shape=array&" + "&".join(f"{k}={v}" for k, v in params.items()))


# -- the trial page ---------------------------------------------------------------------------


def test_trial_page_shows_status_design_outcomes_arms_and_the_registry_link(tclient, tdb, trials_site):
    nct = trials_site.clones["two_papers"]  # a clone of the real NCT04267848
    trial = dict(tdb.execute("select * from trials where nct_id = ?", [nct]).fetchone())
    page = tclient.get(f"/catalog/trials/{nct}")
    assert page.status_code == 200
    text = page.text
    assert f'<h1 class="record-title">{escape(trial["title"])}</h1>' in text
    assert f'href="https://clinicaltrials.gov/study/{nct}"' in text
    assert '<span class="badge badge-status status-recruiting">Recruiting</span>' in text
    assert "Phase 3" in text and trial["phases"] == "PHASE3"
    # Dates with their kind: the registry's ESTIMATED reads "anticipated".
    assert f'{trial["primary_completion_date"]} <span class="muted">(anticipated)</span>' in text
    assert f'{trial["start_date"]} <span class="muted">(actual)</span>' in text
    assert f'{trial["enrollment_count"]:,} <span class="muted">(estimated)</span>' in text
    assert "randomized" in text and trial["allocation"] == "RANDOMIZED"
    assert html.escape(trial["lead_sponsor"]) in text and "(NIH)" in text
    assert "Not posted" in text
    primary = [
        r["measure"]
        for r in tdb.execute(
            "select measure from trial_outcomes where nct_id = ? and kind = 'primary' order by position", [nct]
        )
    ]
    assert primary and all(html.escape(m, quote=False) in text for m in primary)
    # The arms come from the study JSON as the registry sent it.
    study = StudyStore.recorded().studies["NCT04267848"]
    arms = [a["label"] for a in study["protocolSection"]["armsInterventionsModule"]["armGroups"]]
    assert arms and all(f"<strong>{html.escape(a, quote=False)}</strong>" in text for a in arms)


def test_trial_page_lists_every_linked_paper_and_says_how_and_which_are_gaps(tclient, base, trials_site):
    nct = trials_site.clones["two_papers"]
    text = tclient.get(f"/catalog/trials/{nct}").text
    papers = {link["pmid"] for link in base.links if link["trial_id"] == nct}
    assert len(papers) == 2
    for pmid in papers:
        if pmid in base.articles:
            assert f'href="/catalog/articles/{pmid}"' in text
            assert "How linked: the paper cites it (NLM&#39;s databank list)." in text
        else:  # the registry's DERIVED reference that the topic query did not find
            item = re.search(rf'<li class="linked-paper gap" data-pmid="{pmid}">(.*?)</li>', text, re.S).group(1)
            assert f'href="https://pubmed.ncbi.nlm.nih.gov/{pmid}/"' in item and "Not in the catalog" in item
            assert "derived" in item
    assert "2 linked papers, 2 of them reporting this trial; 1 not in the catalog." in text

    # Both directions for one paper: it cites the trial, and the registry lists it as a result.
    both = trials_site.clones["results_reported"]
    (pmid,) = {link["pmid"] for link in base.links if link["trial_id"] == both}
    item = re.search(
        rf'<li class="linked-paper" data-pmid="{pmid}">(.*?)</li>', tclient.get(f"/catalog/trials/{both}").text, re.S
    )
    assert "the paper cites it" in item.group(1) and "the registry lists it as a results publication" in item.group(1)
    # A background reference is listed, and said not to report the trial.
    assert (
        "the registry cites it as background (not a report of this trial)"
        in tclient.get("/catalog/trials/NCT03630471").text
    )


def test_trial_page_of_a_trial_without_papers_says_so(tclient, base):
    lonely = sorted(n for n in base.trials if not any(link["trial_id"] == n for link in base.links))
    assert lonely
    text = tclient.get(f"/catalog/trials/{lonely[0]}").text
    assert "No paper is linked to this trial" in text


def test_trial_page_shows_what_changed(tclient, base):
    text = tclient.get(f"/catalog/trials/{REVISED}").text
    (event,) = [e for e in base.events if e["nct_id"] == REVISED]
    assert f"Status changed: {escape(event['detail'])}" in text
    assert "Recruiting" in text


def test_an_unknown_trial_is_not_found(tclient):
    assert tclient.get("/catalog/trials/NCT00000000").status_code == 404


# -- the article page -------------------------------------------------------------------------


def test_article_page_lists_its_trials_with_status_and_phase(tclient, base, trials_site):
    nct = trials_site.clones["ketamine"]
    text = tclient.get(f"/catalog/articles/{KETAMINE_PAPER}").text
    item = re.search(rf'<li data-trial-id="{nct}">(.*?)</li>', text, re.S).group(1)
    assert f'href="/catalog/trials/{nct}"' in item
    assert "Active, not recruiting" in item and "Phase 2" in item
    assert "this record cites it (in its title or abstract)" in item
    # A cited id the registry does not know is said to be so, linked to the registry.
    missing = next(link for link in base.links if link["trial_id"] not in base.trials and link["pmid"] in base.articles)
    text = tclient.get(f"/catalog/articles/{missing['pmid']}").text
    item = re.search(rf'<li data-trial-id="{missing["trial_id"]}">(.*?)</li>', text, re.S).group(1)
    assert "ClinicalTrials.gov does not know this id" in item
    assert f'href="https://clinicaltrials.gov/study/{missing["trial_id"]}"' in item
    # One link out per trial, though the record and the registry link them both ways.
    both = trials_site.clones["results_reported"]
    (pmid,) = {link["pmid"] for link in base.links if link["trial_id"] == both}
    text = tclient.get(f"/catalog/articles/{pmid}").text
    assert text.count(f'class="link-trial" href="https://clinicaltrials.gov/study/{both}"') == 1
    assert "the registry lists this record as a results publication" in text


# -- the trials table -------------------------------------------------------------------------


def expected_facets(base: Base) -> dict[str, Counter]:
    out: dict[str, Counter] = {
        name: Counter()
        for name in (
            "status",
            "phase",
            "molecule",
            "route",
            "has_results",
            "results_paper",
            "sponsor_class",
            "in_topic",
        )
    }
    for nct, t in base.trials.items():
        out["status"][t["overall_status"]] += 1
        out["has_results"][t["has_results"]] += 1
        out["sponsor_class"][t["lead_sponsor_class"]] += 1
        out["in_topic"][t["in_topic"]] += 1
        for phase in {p.strip() for p in (t["phases"] or "").split(",") if p.strip()}:
            out["phase"][phase] += 1
        for value in base.tags(nct, "molecules"):
            out["molecule"][value] += 1
        for value in base.tags(nct, "routes"):
            out["route"][value] += 1
        out["results_paper"]["yes" if base.reports(nct) else "no"] += 1
    return {k: Counter({v: n for v, n in c.items() if v is not None}) for k, c in out.items()}


def test_trials_table_facets_count_what_the_tables_hold(tclient, base):
    data = tclient.json("/catalog/trials.json")
    assert data["filtered_table_rows_count"] == len(base.trials)
    facets = data["facet_results"]
    expected = expected_facets(base)
    assert list(facets) == list(expected)
    for name, counts in expected.items():
        got = Counter({r["value"]: r["count"] for r in facets[name]["results"]})
        assert got == counts, name
    # The facets the recorded studies exercise are there, not empty.
    assert expected["molecule"] and expected["route"] and len(expected["results_paper"]) == 2
    labels = {r["value"]: r["label"] for r in facets["status"]["results"]}
    assert labels["ACTIVE_NOT_RECRUITING"] == "Active, not recruiting"


@pytest.mark.parametrize(
    "filter_, pick",
    [
        ("_molecule", lambda b, n: b.tags(n, "molecules")),
        ("_route", lambda b, n: b.tags(n, "routes")),
        ("_phase", lambda b, n: {p.strip() for p in (b.trials[n]["phases"] or "").split(",") if p.strip()}),
        ("_results_paper", lambda b, n: {"yes" if b.reports(n) else "no"}),
        ("overall_status", lambda b, n: {b.trials[n]["overall_status"]}),
    ],
)
def test_a_facet_value_filters_the_trials_to_those_that_have_it(tclient, base, filter_, pick):
    values = Counter(v for n in base.trials for v in pick(base, n))
    value = sorted(values, key=lambda v: (-values[v], v))[0]
    rows = tclient.json(f"/catalog/trials.json?_shape=array&_size=max&{filter_}={value}")
    assert {r["nct_id"] for r in rows} == {n for n in base.trials if value in pick(base, n)}
    page = tclient.get(f"/catalog/trials?{filter_}={value}")
    assert page.status_code == 200 and 'class="record-list trial-list"' in page.text
    assert len(re.findall(r'<li class="record-item" data-nct-id=', page.text)) == len(rows)


def test_trials_table_lists_trials_linking_each_to_its_page(tclient, base):
    text = tclient.get("/catalog/trials").text
    listed = re.findall(r'<li class="record-item" data-nct-id="(NCT\d+)">', text)
    assert sorted(listed) == sorted(base.trials)
    assert all(f'href="/catalog/trials/{n}"' in text for n in listed)
    assert 'href="/catalog/trials?_view=table"' in text


# -- the questions ----------------------------------------------------------------------------


@pytest.mark.dated
@pytest.mark.parametrize("months", ["", "0", "12", "60", "1200"])
def test_publication_bias_watch_lists_completed_trials_no_paper_reports(tclient, base, months):
    today = dt.datetime.now(dt.timezone.utc).date()
    cutoff = months_ago(today, int(months or 12))
    expected = sorted(
        (end_of(t["primary_completion_date"]), n)
        for n, t in base.trials.items()
        if t["overall_status"] == "COMPLETED"
        and t["primary_completion_date"]
        and end_of(t["primary_completion_date"]) <= cutoff
        and not base.reports(n)
    )
    rows = question(tclient, "trials_completed_without_paper", months=months)
    assert [r["nct_id"] for r in rows] == [n for _, n in expected]
    if months in ("", "12"):
        assert rows, "no trial to watch: the test proves nothing"
        # The recorded study with results but no paper, and the clone whose only paper is a protocol.
        assert {"NCT05594173"} < {r["nct_id"] for r in rows}
    if months == "1200":
        assert rows == []


def test_the_watch_refuses_months_it_cannot_read(tclient):
    for bad in ("twelve", "-3", "99999", "²"):  # a superscript two is a digit to str.isdigit, not to int()
        response = tclient.get(f"/catalog/trials_completed_without_paper.json?months={bad}")
        assert response.status_code == 400 and "parameter months:" in response.json()["error"]


def test_the_trials_list_shows_whichever_columns_are_asked_for(tclient, base):
    for query in ("_col=title", "_nocol=enrollment_count", "_col=overall_status&_col=phases"):
        page = tclient.get(f"/catalog/trials?{query}")
        assert page.status_code == 200, (query, page.text[:300])
        shown = set(re.findall(r"/catalog/trials/(NCT\d{8})", page.text))
        assert shown <= set(base.trials) and len(shown) == min(len(base.trials), 50), query  # a page of them


def test_results_on_the_registry_without_a_results_paper_in_the_catalog(tclient, base, trials_site):
    expected = {n for n, t in base.trials.items() if t["has_results"] and not base.reports(n, in_catalog_only=True)}
    rows = question(tclient, "trials_results_without_paper")
    assert {r["nct_id"] for r in rows} == expected
    assert "NCT05594173" in expected and trials_site.clones["results_reported"] not in expected
    dates = [r["results_first_posted"] for r in rows]
    assert dates == sorted(dates, reverse=True)


def test_ongoing_trials_by_molecule_and_route(tclient, base, trials_site):
    rows = question(tclient, "trials_ongoing_by_molecule")
    ongoing = {n for n, t in base.trials.items() if t["overall_status"] in ONGOING}
    assert {r["nct_id"] for r in rows} == ongoing
    tagged = [r for r in rows if r["molecules"]]
    assert rows[: len(tagged)] == tagged  # trials with a tagged molecule first
    ketamine = trials_site.clones["ketamine"]
    (molecule,) = base.tags(ketamine, "molecules")
    (route,) = base.tags(ketamine, "routes")
    only = question(tclient, "trials_ongoing_by_molecule", molecule=molecule, route=route)
    assert [(r["nct_id"], r["molecules"], r["routes"]) for r in only] == [(ketamine, molecule, route)]
    # Written as people write it: spaces for underscores, any case.
    assert question(tclient, "trials_ongoing_by_molecule", molecule=molecule.replace("_", "+").upper()) == question(
        tclient, "trials_ongoing_by_molecule", molecule=molecule
    )
    refused = tclient.get("/catalog/trials_ongoing_by_molecule.json?molecule=aspirinx")
    assert refused.status_code == 400 and "parameter molecule:" in refused.json()["error"]


def test_trials_reported_in_more_than_one_paper(tclient, base, trials_site):
    expected = {n: len(base.reports(n)) for n in base.trials if len(base.reports(n)) > 1}
    rows = question(tclient, "trials_reported_in_several_papers")
    assert {r["nct_id"]: r["papers"] for r in rows} == expected
    assert trials_site.clones["two_papers"] in expected
    two = next(r for r in rows if r["nct_id"] == trials_site.clones["two_papers"])
    assert two["in_catalog"] == 1 and "(not in the catalog)" in two["reports"]


def test_status_changes_this_month(tclient, base):
    month = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m")
    expected = [
        e for e in reversed(base.events) if e["event"] == "status_changed" and e["recorded_at"].startswith(month)
    ]
    rows = question(tclient, "trial_status_changes")
    assert [(r["nct_id"], r["status_change"]) for r in rows] == [(e["nct_id"], e["detail"]) for e in expected]
    assert {REVISED, HOSTILE} <= {r["nct_id"] for r in rows}
    assert question(tclient, "trial_status_changes", month="1999-01") == []
    assert question(tclient, "trial_status_changes", month=month.replace("-", "/")) == rows
    assert tclient.get("/catalog/trial_status_changes.json?month=2026-13").status_code == 400


def test_question_rows_link_nct_ids_to_trial_pages(tclient):
    text = tclient.get("/catalog/trials_results_without_paper").text
    assert '<a href="/catalog/trials/NCT05594173">NCT05594173</a>' in text


# -- the feed ---------------------------------------------------------------------------------


def test_feed_of_trial_events_parses_as_atom_newest_first_with_absolute_links(tclient, base):
    response = tclient.get("/catalog/feed_trial_events.atom")
    assert response.status_code == 200 and "xml" in response.headers["content-type"]
    feed = feedparser.parse(response.content)
    assert not feed.bozo, feed.get("bozo_exception")
    assert feed.feed.title == "What changed in the registered trials (Atom feed)"
    assert [e.link for e in feed.entries] == [
        f"http://localhost/catalog/trials/{e['nct_id']}" for e in reversed(base.events)
    ]
    assert len({e.id for e in feed.entries}) == len(base.events)
    for entry, event in zip(feed.entries, reversed(base.events)):
        assert entry.title.startswith(f"{event['nct_id']}: status changed")
        assert entry.updated_parsed is not None
        assert html_links(entry.content[0].value) == [
            f"http://localhost/catalog/trials/{event['nct_id']}",
            f"https://clinicaltrials.gov/study/{event['nct_id']}",
        ]


def test_feed_entries_carry_the_registrys_markup_as_text(tclient):
    body = tclient.get("/catalog/feed_trial_events.atom").content
    feed = etree.fromstring(body)
    entry = next(e for e in feed.iter(f"{ATOM}entry") if e.find(f"{ATOM}link").get("href").endswith(HOSTILE))
    content = entry.findtext(f"{ATOM}content")  # the entry's HTML, as a feed reader renders it
    tree = lxml.html.fragment_fromstring(content, create_parent="div")
    assert {el.tag for el in tree.iter()} <= {"div", "p", "strong", "a"}  # no <img>, <script>, <b> of theirs
    assert html_links(content) == [
        f"http://localhost/catalog/trials/{HOSTILE}",
        f"https://clinicaltrials.gov/study/{HOSTILE}",
    ]
    shown = html_text(content)
    assert HOSTILE_STATUS in shown and HOSTILE_TITLE in shown and HOSTILE_SPONSOR in shown
    assert entry.findtext(f"{ATOM}title").endswith(HOSTILE_TITLE)  # a text title: shown, never run
    parsed = feedparser.parse(body)
    hostile = next(e for e in parsed.entries if e.link.endswith(HOSTILE))
    assert "evil.example" not in " ".join(html_links(hostile.content[0].value))
    assert HOSTILE_STATUS in html_text(hostile.content[0].value)


# -- hostile text on the pages ----------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        f"/catalog/trials/{HOSTILE}",
        "/catalog/trials",
        "/catalog/trial_status_changes",
        "/catalog/trials?_facet_size=max",
        "/catalog/trials?_view=table",
    ],
)
def test_registry_markup_is_shown_as_text_on_every_page(tclient, path):
    text = tclient.get(path).text
    for raw in (HOSTILE_TITLE, HOSTILE_INTERVENTION, HOSTILE_SPONSOR, HOSTILE_STATUS):
        assert raw not in text
    assert "onerror=alert" not in text.replace("onerror=alert(&#34;", "").replace("onerror=alert(&quot;", "")
    assert 'evil.example/">' not in text


# -- the front page ---------------------------------------------------------------------------


def test_front_page_counts_trials_and_those_completed_without_a_paper(tclient, base):
    text = tclient.get("/").text
    watch = question(tclient, "trials_completed_without_paper")
    assert f"<strong>{len(base.trials):,}</strong> registered trials from ClinicalTrials.gov" in text
    in_topic = sum(t["in_topic"] for t in base.trials.values())
    assert f'<a href="/catalog/trials?in_topic=1">{in_topic:,} found by the topic search</a>' in text
    assert (
        f'<a class="without-paper" href="/catalog/trials_completed_without_paper"><strong>{len(watch):,}</strong> '
        "completed without a linked publication</a> 12 months or more"
    ) in text
    assert 'href="/catalog/feed_trial_events.atom"' in text
    # The last harvest the page reports is still PubMed's, though trials runs came after it.
    assert "query version" in text and "ketamin*[Title/Abstract]" in text
    section = text[text.index('<h3 class="question-group">Registered trials and their papers</h3>') :]
    section = section[: section.index("</ul>")]
    assert re.findall(r'<a href="/catalog/(\w+)"', section) == [
        "trials_completed_without_paper",
        "trials_results_without_paper",
        "trials_ongoing_by_molecule",
        "trials_reported_in_several_papers",
        "trial_status_changes",
    ]


def test_what_the_last_harvest_added_is_still_pubmeds(tclient, tdb):
    """Trials runs follow PubMed's in harvest_runs: the front page's "N new" and the questions'
    "since the last harvest" still mean PubMed's last run, not the trials run after it."""
    last = dict(
        tdb.execute(
            "select * from harvest_runs where source = 'pubmed' and status = 'success' order by id desc limit 1"
        ).fetchone()
    )
    assert tdb.execute("select max(id) from harvest_runs").fetchone()[0] > last["id"]  # trials runs came after
    assert last["new"] and f"{last['new']:,} new</a>" in tclient.get("/").text
    added = Counter(
        r[0] or "other" for r in tdb.execute("select study_design from articles where first_seen_run = ?", [last["id"]])
    )
    rows = question(tclient, "new_records_by_design")
    assert {r["study_design"]: r["new_records"] for r in rows} == added
