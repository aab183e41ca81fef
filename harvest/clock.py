"""The harvester's one source of "today" and "now".

Every date a run reasons with (the full window's end, an incremental window, the watermark,
run timestamps, the age that `status --max-age` checks) comes from here, so that a test or an
operator replaying a day can set it in one place: ``HARVEST_TODAY=YYYY-MM-DD`` shifts the clock
by whole days so that today (UTC) is that date; the time of day stays real. Unset, it is the
system clock, in UTC, as NCBI's dates are read.
"""

from __future__ import annotations

import datetime as dt
import os

ENV = "HARVEST_TODAY"


def pinned_today() -> dt.date | None:
    """The date ``HARVEST_TODAY`` names, or None when it is unset; a malformed value stops the
    command with one line naming the variable (a harvest on a wrong date is worse than none)."""
    value = os.environ.get(ENV, "").strip()
    if not value:
        return None
    try:
        day = dt.date.fromisoformat(value)
    except ValueError:
        raise SystemExit(f"harvest: error: {ENV} must be a date as YYYY-MM-DD, got {value!r}") from None
    if not 1900 <= day.year <= 2999:  # windows reach back and ahead of it: year 1 or 9999 overflows
        raise SystemExit(f"harvest: error: {ENV} must be a date from 1900 to 2999, got {value!r}")
    return day


def now() -> dt.datetime:
    """The current UTC time, shifted by whole days when ``HARVEST_TODAY`` is set."""
    real = dt.datetime.now(dt.timezone.utc)
    pinned = pinned_today()
    return real if pinned is None else real + (pinned - real.date())


def today() -> dt.date:
    return now().date()


def now_iso() -> str:
    return now().isoformat(timespec="seconds")
