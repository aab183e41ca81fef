"""Date windows and their slicing under the cap (`harvest/search.py`), in-process.

PubMed's answers come from the 215 real records of ../shared/data/pubmed/records through the
stand-in's own term and date reading (`Corpus.search(parse_term_dates(term))`), so a plan here
meets the very answers a harvest through `tests/eutils_stand_in.py` meets, without HTTP. A small
cap (PubMed's is 9,999) makes real records overflow it. "Today" is given, never read from the
clock. The runs over HTTP (`test_complete_current.py`) keep the real cap and the whole harvest.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable

import pytest

from harvest.eutils import SearchResult
from harvest.runner import ClockBehind, refuse_clock_behind
from harvest.search import (
    CAP,
    EARLIEST,
    DateRange,
    Plan,
    SliceError,
    full_window,
    plan_window,
    since_windows,
    term_for,
)
from tests.eutils_stand_in import HISTORY_CAP, Corpus, parse_term_dates

TOPIC = "ketamine[tiab] OR esketamine[tiab]"
TODAY = dt.date(2026, 12, 7)
# A PMID no real record has, for the clones of real records that "PubMed adds" mid-plan.
NEW_PMID = 90_000_001


class CorpusSearcher:
    """esearch answered in-process from a corpus of real records: the count and the PMIDs
    (newest first, at most `retmax` and never past the 9,999 cap) whose dates meet every date
    clause of the term. `before_search(self)` runs before each search is answered, so a test
    can change the corpus between two searches, as PubMed's indexing does."""

    def __init__(self, corpus: Corpus, before_search: Callable[[CorpusSearcher], None] | None = None):
        self.corpus = corpus
        self.before_search = before_search
        self.searches: list[tuple[str, int]] = []  # (term, retmax) in the order asked

    def esearch(self, term: str, *, retmax: int = 0, usehistory: bool = False) -> SearchResult:
        if self.before_search is not None:
            self.before_search(self)
        self.searches.append((term, retmax))
        ids = self.corpus.search(parse_term_dates(term))
        listed = ids[: min(retmax, HISTORY_CAP)]
        key = str(len(self.searches)) if usehistory else None
        return SearchResult(count=len(ids), ids=listed, webenv="in-process" if usehistory else None, query_key=key)


@pytest.fixture(scope="module")
def corpus(records_corpus) -> Corpus:
    return records_corpus.copy()


def in_window(corpus: Corpus, window: DateRange) -> set[int]:
    """The PMIDs PubMed holds in `window`, by the stand-in's reading of the window's own clause."""
    return set(corpus.search(parse_term_dates(window.clause())))


def assert_slices_list_the_window_once(plan: Plan, corpus: Corpus, cap: int) -> None:
    for piece in plan.slices:
        assert piece.count <= cap, f"{piece.label} holds {piece.count}, over the cap of {cap}"
        assert len(piece.ids) == piece.count, f"{piece.label} lists {len(piece.ids)} of its {piece.count}"
        assert piece.term == term_for(TOPIC, piece.ranges)
    listed = [pmid for piece in plan.slices for pmid in piece.ids]
    assert len(listed) == len(set(listed)), "a PMID listed by two slices"
    assert plan.ids == in_window(corpus, plan.window)
    assert plan.total == len(plan.ids) and plan.discrepancy is None


def plan_plain(corpus: Corpus, window: DateRange, cap: int) -> tuple[Plan, CorpusSearcher]:
    client = CorpusSearcher(corpus.copy())
    return plan_window(client, TOPIC, window, cap=cap), client


def test_full_window_runs_from_1800_to_the_day_after_today():
    # The day after: NCBI dates are US Eastern and may run ahead of UTC.
    assert full_window(TODAY) == DateRange("crdt", EARLIEST, dt.date(2026, 12, 8))
    assert full_window(dt.date(2024, 12, 31)).hi == dt.date(2025, 1, 1)


def test_since_windows_are_what_was_created_and_what_was_revised_since():
    since = dt.date(2025, 5, 1)
    assert since_windows(since, TODAY) == [
        DateRange("crdt", since, dt.date(2026, 12, 8)),
        DateRange("mdat", since, dt.date(2026, 12, 8)),
    ]


def test_term_for_ands_the_topic_with_each_range_as_pubmed_reads_it():
    ranges = (DateRange("crdt", dt.date(2020, 9, 17), dt.date(2020, 9, 17)), DateRange("dp", EARLIEST, TODAY))
    term = term_for(TOPIC, ranges)
    assert term == (
        f'({TOPIC}) AND ("2020/09/17"[crdt] : "2020/09/17"[crdt]) AND ("1800/01/01"[dp] : "2026/12/07"[dp])'
    )
    assert parse_term_dates(term) == [("crdt", 20200917, 20200917), ("pdat", 18000101, 20261207)]


def test_window_under_the_cap_is_one_slice_from_one_search(corpus):
    plan, client = plan_plain(corpus, full_window(TODAY), CAP)
    assert len(plan.slices) == 1 and len(client.searches) == 1
    assert plan.ids == set(corpus.pmids()) and len(plan.ids) == 215
    assert_slices_list_the_window_once(plan, corpus, CAP)


@pytest.mark.parametrize("cap", [50, 20, 8, 3])
def test_window_over_the_cap_is_sliced_under_it_listing_each_record_once(corpus, cap):
    # At 3, one create day (2020-09-17, four real records) is over the cap on its own.
    plan, _ = plan_plain(corpus, full_window(TODAY), cap)
    assert len(plan.slices) >= math.ceil(215 / cap)
    assert_slices_list_the_window_once(plan, corpus, cap)


def test_create_day_over_the_cap_is_crossed_with_publication_dates(corpus):
    day = dt.date(2020, 9, 17)  # four real records created that day, published on four dates
    window = DateRange("crdt", day, day)
    plan, _ = plan_plain(corpus, window, cap=1)
    assert len(plan.ids) == 4
    assert_slices_list_the_window_once(plan, corpus, 1)
    assert all([r.field for r in piece.ranges] == ["crdt", "dp"] for piece in plan.slices)


def test_incremental_windows_list_what_was_created_or_revised_since(corpus):
    # Ten real records share DateRevised 2025-05-30: that revision day alone is over a cap of 8.
    since = dt.date(2024, 1, 1)
    listed: set[int] = set()
    for window in since_windows(since, TODAY):
        plan, _ = plan_plain(corpus, window, cap=8)
        assert_slices_list_the_window_once(plan, corpus, 8)
        listed |= plan.ids
    expected = {p for p in corpus.pmids() if corpus[p].crdt >= 20240101 or corpus[p].mdat >= 20240101}
    assert listed == expected and 60 < len(expected) < 215


def test_one_day_over_the_cap_on_both_axes_is_refused_with_its_ranges(corpus):
    changed = corpus.copy()
    # A clone of a real record created and published on the same days as the original.
    original = changed[32935693]
    changed.add_clone(NEW_PMID, original.pmid)
    day = dt.date(2020, 9, 17)
    with pytest.raises(SliceError, match=r"crdt 2020-09-17\.\.2020-09-17 & dp .* still holds 2 records"):
        plan_window(CorpusSearcher(changed), TOPIC, DateRange("crdt", day, day), cap=1)


def test_searches_stay_near_the_fewest_that_could_list_the_window(corpus):
    """Requests are what a harvest is rationed in. At least one count and one list per cap's
    worth of records are needed: 6 for 215 records at a cap of 50 (plain halving from 1800 asks
    21 times)."""
    cap = 50
    plan, client = plan_plain(corpus, full_window(TODAY), cap)
    fewest = 1 + math.ceil(len(plan.ids) / cap)
    assert len(client.searches) <= 2 * fewest


def add_before_search(number: int, crdt: dt.date) -> Callable[[CorpusSearcher], None]:
    """PubMed adds a clone of a real ketamine record, created on `crdt`, just before the
    plan's search number `number` (0: before the first) is answered."""

    def hook(client: CorpusSearcher) -> None:
        if len(client.searches) == number:
            client.corpus.add_clone(NEW_PMID, 38011560, crdt=crdt)

    return hook


def searches_of_undisturbed_plan(corpus: Corpus, cap: int) -> int:
    return len(plan_plain(corpus, full_window(TODAY), cap)[1].searches)


@pytest.mark.parametrize("cap", [50, 20])
@pytest.mark.parametrize("created", [dt.date(2026, 12, 1), dt.date(2025, 1, 15), dt.date(2010, 5, 5)])
def test_a_record_added_mid_plan_is_listed_or_the_plan_says_counts_moved(corpus, cap, created):
    """At every moment of the plan: once a search the plan makes after the record arrived could
    see it, the record is listed (and counted), or the plan's discrepancy says the counts moved.
    A record that arrives after every search that could see it is the next run's (its window
    overlaps this one: test_complete_current's records growing between search and fetch)."""
    window = full_window(TODAY)
    before = in_window(corpus, window)
    for moment in range(searches_of_undisturbed_plan(corpus, cap)):
        client = CorpusSearcher(corpus.copy(), add_before_search(moment, created))
        plan = plan_window(client, TOPIC, window, cap=cap)
        assert NEW_PMID in client.corpus, "the clone was added"
        assert before <= plan.ids, f"added before search {moment}: records listed before were lost"
        assert all(piece.count <= cap for piece in plan.slices)
        if NEW_PMID in plan.ids:
            assert (plan.total, plan.discrepancy) == (216, None)
        elif plan.discrepancy is not None:
            assert plan.total == 216 and len(plan.ids) == 215
            assert "counts 216 records" in plan.discrepancy and "add up to 215" in plan.discrepancy
        else:
            added = client.corpus[NEW_PMID]
            could_see = [
                term
                for term, _ in client.searches[moment:]
                if all(lo <= added.date(field) <= hi for field, lo, hi in parse_term_dates(term))
            ]
            assert not could_see, f"added before search {moment}, {could_see[0]!r} saw it: not listed, not reported"


def uncovered_day(plan: Plan) -> dt.date | None:
    """A day of the plan's window inside no slice's create-date range, i.e. one the plan
    inferred empty and did not search for a list."""
    covered = sorted((piece.ranges[0].lo, piece.ranges[0].hi) for piece in plan.slices)
    day = plan.window.lo
    for lo, hi in covered:
        if day < lo:
            return day
        day = max(day, hi + dt.timedelta(days=1))
    return day if day <= plan.window.hi else None


def test_ranges_inferred_empty_are_searched_when_the_recount_differs(corpus):
    """A range left out because the counts said it held nothing is searched after all when
    the window's final count differs: a record PubMed adds there mid-plan is listed, at any
    moment after the first count."""
    cap = 20
    window = full_window(TODAY)
    undisturbed, client = plan_plain(corpus, window, cap)
    empty_day = uncovered_day(undisturbed)
    assert empty_day is not None, "the plan lists from every day of the window; nothing was inferred empty"
    assert not in_window(corpus, DateRange("crdt", empty_day, empty_day))
    for moment in range(1, len(client.searches)):
        disturbed = CorpusSearcher(corpus.copy(), add_before_search(moment, empty_day))
        plan = plan_window(disturbed, TOPIC, window, cap=cap)
        assert NEW_PMID in plan.ids, f"added on {empty_day} before search {moment}, not listed"
        assert plan.ids == in_window(disturbed.corpus, window)
        assert (plan.total, plan.discrepancy) == (216, None)


def test_only_an_incremental_run_with_the_clock_behind_the_watermark_is_refused():
    last = {"id": 7, "watermark": "2026-03-02"}
    for today in (dt.date(2026, 3, 2), dt.date(2026, 3, 3)):  # the same day again, or later: fine
        refuse_clock_behind("trials", last, "incremental", today)
    for mode in ("full", "since", "full (new catalog)"):  # these choose their own window
        refuse_clock_behind("trials", last, mode, dt.date(2026, 3, 1))
    refuse_clock_behind("trials", None, "incremental", dt.date(2026, 3, 1))
    with pytest.raises(ClockBehind, match=r"^today is 2026-03-01 .* before 2026-03-02, .* trials run \(7\)"):
        refuse_clock_behind("trials", last, "incremental", dt.date(2026, 3, 1))
