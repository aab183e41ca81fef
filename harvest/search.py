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

from .eutils import EutilsClient, SearchResult

log = logging.getLogger("harvest.search")

# PubMed's esearch and history-server efetch refuse positions past 9,999.
CAP = 9999
EARLIEST = dt.date(1800, 1, 1)
# The second axis each primary axis is crossed with when one day is over the cap.
SECOND_AXIS = {"crdt": "dp", "edat": "dp", "mdat": "crdt", "dp": "crdt"}


class SliceError(RuntimeError):
    pass


@dataclass(frozen=True)
class DateRange:
    field: str
    lo: dt.date
    hi: dt.date

    def clause(self) -> str:
        return f'("{self.lo:%Y/%m/%d}"[{self.field}] : "{self.hi:%Y/%m/%d}"[{self.field}])'

    def halves(self) -> tuple["DateRange", "DateRange"]:
        middle = self.lo + (self.hi - self.lo) // 2
        return (
            DateRange(self.field, self.lo, middle),
            DateRange(self.field, middle + dt.timedelta(days=1), self.hi),
        )

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
    return dt.datetime.now(dt.timezone.utc).date()


def full_window(today: dt.date | None = None) -> DateRange:
    # +1 day: NCBI dates are US Eastern and may run behind or ahead of UTC.
    return DateRange("crdt", EARLIEST, (today or today_utc()) + dt.timedelta(days=1))


def since_windows(since: dt.date, today: dt.date | None = None) -> list[DateRange]:
    """An incremental run: what was created, and what was revised, since `since`."""
    hi = (today or today_utc()) + dt.timedelta(days=1)
    return [DateRange("crdt", since, hi), DateRange("mdat", since, hi)]


def plan_window(client: EutilsClient, topic: str, window: DateRange, cap: int = CAP) -> Plan:
    """Slice `window` until every slice is under the cap, and check the counts add up.

    Counts can shift while we slice (PubMed indexes continuously). If the
    slices' counts do not add up to the window's count we count again; a
    difference that persists is kept on the plan (and so on the run) and the
    union of the slices' PMIDs is what the run promises to store.
    """
    slices: list[Slice] = []
    root = _search(client, topic, (window,), cap)
    _explore(client, topic, (window,), root, cap, slices)
    plan = Plan(window=window, total=root.count, slices=slices)
    summed = sum(s.count for s in slices)
    if summed != root.count:
        recount = client.esearch(term_for(topic, (window,)), retmax=0).count
        if recount != summed:
            plan.discrepancy = (
                f"{window}: the window counts {recount} records (earlier {root.count}) "
                f"but its slices add up to {summed}; storing the {len(plan.ids)} PMIDs the slices list"
            )
            log.warning(plan.discrepancy)
        plan.total = recount
    return plan


def _search(client: EutilsClient, topic: str, ranges: tuple[DateRange, ...], cap: int) -> SearchResult:
    return client.esearch(term_for(topic, ranges), retmax=cap, usehistory=True)


def _explore(
    client: EutilsClient,
    topic: str,
    ranges: tuple[DateRange, ...],
    result: SearchResult,
    cap: int,
    out: list[Slice],
) -> None:
    if result.count <= cap:
        if len(result.ids) != result.count:
            # The count moved between counting and listing: ask once more.
            result = _search(client, topic, ranges, cap)
        if result.count > cap:
            return _explore(client, topic, ranges, result, cap, out)
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
        children = [ranges[:-1] + (half,) for half in last.halves()]
    elif len(ranges) == 1:
        # Publication dates can run years ahead of the create date (print after epub).
        second = DateRange(SECOND_AXIS[last.field], EARLIEST, last.hi + dt.timedelta(days=3 * 366))
        children = [ranges + (half,) for half in second.halves()]
    else:
        raise SliceError(
            f"{' & '.join(map(str, ranges))} still holds {result.count} records, "
            f"more than PubMed's cap of {cap}, and cannot be split further"
        )
    for child in children:
        _explore(client, topic, child, _search(client, topic, child, cap), cap, out)
