"""Turning the topic query into searches PubMed will answer in full.

Owns: date windows (a full sweep, or an incremental run's created-since and
revised-since windows) and slicing them until every slice is under PubMed's
9,999-record cap. The primary axis of a full sweep is the create date
`[crdt]`; a single day still over the cap is crossed with a second date axis
(`[dp]` for create-date slices, `[crdt]` for modification-date slices), which
PubMed accepts in the same term. Must never: fetch or store records.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Protocol

from . import clock
from .eutils import SearchResult

log = logging.getLogger("harvest.search")

# PubMed's esearch and history-server efetch refuse positions past 9,999.
CAP = 9999
EARLIEST = dt.date(1800, 1, 1)
# The second axis each primary axis is crossed with when one day is over the cap.
SECOND_AXIS = {"crdt": "dp", "edat": "dp", "mdat": "crdt", "dp": "crdt"}


class SliceError(RuntimeError):
    pass


class Searcher(Protocol):
    """What planning needs of a client: PubMed's esearch (`eutils.EutilsClient` is the one
    the harvest uses; the tests answer from real records in-process)."""

    def esearch(self, term: str, *, retmax: int = 0, usehistory: bool = False) -> SearchResult: ...


@dataclass(frozen=True)
class DateRange:
    field: str
    lo: dt.date
    hi: dt.date

    def clause(self) -> str:
        return f'("{self.lo:%Y/%m/%d}"[{self.field}] : "{self.hi:%Y/%m/%d}"[{self.field}])'

    def halves(self) -> tuple[DateRange, DateRange]:
        middle = self.lo + (self.hi - self.lo) // 2
        return (
            DateRange(self.field, self.lo, middle),
            DateRange(self.field, middle + dt.timedelta(days=1), self.hi),
        )

    def cut_newest(self, share: float) -> tuple[DateRange, DateRange]:
        """(older, newer): the newer part holds the last `share` of the days (at least one,
        at most half); for a range of two days or more."""
        days = (self.hi - self.lo).days + 1
        newer_days = min(days // 2, max(1, round(days * share)))
        cut = self.hi - dt.timedelta(days=newer_days - 1)
        return DateRange(self.field, self.lo, cut - dt.timedelta(days=1)), DateRange(self.field, cut, self.hi)

    @property
    def single_day(self) -> bool:
        return self.lo >= self.hi

    def __str__(self) -> str:
        return f"{self.field} {self.lo:%Y-%m-%d}..{self.hi:%Y-%m-%d}"


@dataclass
class Slice:
    ranges: tuple[DateRange, ...]
    term: str
    count: int
    ids: list[int]
    webenv: str | None = None
    query_key: str | None = None

    @property
    def label(self) -> str:
        return " & ".join(str(r) for r in self.ranges)


@dataclass
class Plan:
    """The slices of one window, with the check that their counts add up."""

    window: DateRange
    total: int
    slices: list[Slice] = field(default_factory=list)
    discrepancy: str | None = None

    @property
    def ids(self) -> set[int]:
        return {pmid for s in self.slices for pmid in s.ids}

    @property
    def requests(self) -> int:
        return len(self.slices)


def term_for(topic: str, ranges: tuple[DateRange, ...]) -> str:
    return " AND ".join([f"({topic})", *(r.clause() for r in ranges)])


def today_utc() -> dt.date:
    return clock.today()


def full_window(today: dt.date | None = None) -> DateRange:
    # +1 day: NCBI dates are US Eastern and may run behind or ahead of UTC.
    return DateRange("crdt", EARLIEST, (today or today_utc()) + dt.timedelta(days=1))


def since_windows(since: dt.date, today: dt.date | None = None) -> list[DateRange]:
    """An incremental run: what was created, and what was revised, since `since`."""
    hi = (today or today_utc()) + dt.timedelta(days=1)
    return [DateRange("crdt", since, hi), DateRange("mdat", since, hi)]


def plan_window(client: Searcher, topic: str, window: DateRange, cap: int = CAP) -> Plan:
    """Slice `window` until every slice is under the cap, and check the counts add up.

    Counts can shift while we slice (PubMed indexes continuously). If the
    slices' counts do not add up to the window's count we count again; a
    difference that persists is kept on the plan (and so on the run) and the
    union of the slices' PMIDs is what the run promises to store. Ranges that
    slicing inferred to be empty (see `_explore`) are searched after all when
    that second count differs, so a record indexed mid-plan is never skipped.
    """
    slices: list[Slice] = []
    skipped: list[tuple[DateRange, ...]] = []
    root = _search(client, topic, (window,), cap)
    _explore(client, topic, (window,), root, cap, slices, skipped)
    plan = Plan(window=window, total=root.count, slices=slices)
    summed = sum(s.count for s in slices)
    if summed != root.count or skipped:
        recount = client.esearch(term_for(topic, (window,)), retmax=0).count
        if recount != summed and skipped:
            log.info("%s: counts moved while slicing; searching the %d ranges inferred empty", window, len(skipped))
            for ranges in skipped:
                _explore(client, topic, ranges, _search(client, topic, ranges, cap), cap, slices, None)
            summed = sum(s.count for s in slices)
        if recount != summed:
            plan.discrepancy = (
                f"{window}: the window counts {recount} records (earlier {root.count}) "
                f"but its slices add up to {summed}; storing the {len(plan.ids)} PMIDs the slices list"
            )
            log.warning(plan.discrepancy)
        plan.total = recount
    return plan


def _search(client: Searcher, topic: str, ranges: tuple[DateRange, ...], cap: int) -> SearchResult:
    return client.esearch(term_for(topic, ranges), retmax=cap, usehistory=True)


# Slices are cut to hold about this share of the cap: close to full (fewer searches and
# fewer part-filled efetch batches) with room for the estimate to be off.
FILL = 0.7


def _explore(
    client: Searcher,
    topic: str,
    ranges: tuple[DateRange, ...],
    result: SearchResult | None,
    cap: int,
    out: list[Slice],
    skipped: list | None,
    estimate: int | None = None,
) -> None:
    """Slice `ranges`, whose search `result` is known (or, with result None, whose count is
    `estimate`: the parent's count less its searched part, not yet asked).

    A range over the cap is cut where its newest part should hold FILL x cap records if
    its records were spread evenly (at most half of it), and the newest part is searched
    first: the older rest's count is then known by subtraction, so it is searched only
    when it is under the cap (its list is needed) and split further without a search when
    it is over. A rest of zero is left out and noted in `skipped` (plan_window's final
    count decides whether it really was empty); with `skipped` None every part is searched.
    Every request is an esearch, and requests are what a harvest is rationed in.
    """
    if result is not None:
        count = result.count
    else:
        assert estimate is not None, "a range not yet searched comes with its estimate"
        count = estimate
    if count <= cap:
        if result is None:
            result = _search(client, topic, ranges, cap)
            if result.count > cap:
                return _explore(client, topic, ranges, result, cap, out, skipped)
        if len(result.ids) != result.count:
            # The count moved between counting and listing: ask once more.
            result = _search(client, topic, ranges, cap)
        if result.count > cap:
            return _explore(client, topic, ranges, result, cap, out, skipped)
        out.append(
            Slice(
                ranges=ranges,
                term=term_for(topic, ranges),
                count=result.count,
                ids=result.ids,
                webenv=result.webenv,
                query_key=result.query_key,
            )
        )
        log.info("slice %s: %d records", " & ".join(map(str, ranges)), result.count)
        return
    last = ranges[-1]
    if not last.single_day:
        older, newer = last.cut_newest(FILL * cap / count)
        newer_ranges, older_ranges = ranges[:-1] + (newer,), ranges[:-1] + (older,)
        newer_result = _search(client, topic, newer_ranges, cap)
        _explore(client, topic, newer_ranges, newer_result, cap, out, skipped)
        rest = count - newer_result.count
        if rest <= 0 and skipped is not None:
            log.info("%s: the newer part holds all %d records; no search", " & ".join(map(str, older_ranges)), count)
            skipped.append(older_ranges)
        elif rest > cap:
            _explore(client, topic, older_ranges, None, cap, out, skipped, estimate=rest)
        else:
            _explore(client, topic, older_ranges, _search(client, topic, older_ranges, cap), cap, out, skipped)
        return
    if result is None:  # one day over the cap by estimate: ask before crossing it with a second axis
        return _explore(client, topic, ranges, _search(client, topic, ranges, cap), cap, out, skipped)
    if len(ranges) == 1:
        # Publication dates can run years ahead of the create date (print after epub).
        second = DateRange(SECOND_AXIS[last.field], EARLIEST, last.hi + dt.timedelta(days=3 * 366))
        children = [ranges + (half,) for half in second.halves()]
    else:
        raise SliceError(
            f"{' & '.join(map(str, ranges))} still holds {count} records, "
            f"more than PubMed's cap of {cap}, and cannot be split further"
        )
    for child in children:
        _explore(client, topic, child, _search(client, topic, child, cap), cap, out, skipped)
