"""Reading the JSON of ClinicalTrials.gov, Europe PMC and OpenAlex (and the numbers in
E-utilities' XML) as it may come, not as it should: a module that is a string, a count that is `true`, `Infinity` or 10**30, a list that is
a number. Each helper answers the shape asked for, or nothing (an empty dict or list, None), so
a field of the wrong type is left empty instead of ending a run with `'str' object has no
attribute 'get'`. Pure."""

from __future__ import annotations

import datetime as dt
import math
import re
from typing import Any

SQLITE_MAX_INTEGER = 2**63 - 1


def obj(value: Any) -> dict:
    """`value` when it is a JSON object, else {}."""
    return value if isinstance(value, dict) else {}


def items(value: Any) -> list:
    """`value` when it is a JSON array, else []."""
    return value if isinstance(value, list) else []


def objects(value: Any) -> list[dict]:
    """The JSON objects of an array (anything else in it, or a non-array, left out)."""
    return [v for v in items(value) if isinstance(v, dict)]


def text(value: Any) -> str | None:
    """A string (or a number written as one) stripped, else None: a list, object or boolean is
    not text."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (str, int, float)):
        return str(value).strip() or None
    return None


# How the APIs write dates: a year, a month or a day (ClinicalTrials.gov's "2019-05"), or a day
# and a time (OpenAlex's updated_date "2024-01-02T03:04:05.123456"); ASCII digits only.
_ISO_DATE = re.compile(r"(\d{4})(?:-(\d{2})(?:-(\d{2})(T[0-9:.]+(?:Z|[+-]\d{2}:\d{2})?)?)?)?", re.ASCII)


def iso_date(value: Any) -> str | None:
    """A date as the APIs write them (YYYY, YYYY-MM, YYYY-MM-DD, or a day and a time after T)
    that names a real day, stripped, else None: the catalog documents these columns as ISO
    dates, sorts them as text and compares them with today's, so "2019-13-45", "²⁰¹⁹-05" or
    "soon" is not one, nor a JSON number."""
    written = value.strip() if isinstance(value, str) else ""
    match = _ISO_DATE.fullmatch(written)
    if match is None:
        return None
    year, month, day, time = match.groups()
    try:
        if time:
            dt.datetime.fromisoformat(written.replace("Z", "+00:00"))
        else:
            dt.date(int(year), int(month or 1), int(day or 1))
    except ValueError:
        return None
    return written


def whole_number(value: Any, *, low: int = 0, high: int = SQLITE_MAX_INTEGER) -> int | None:
    """A whole number from low to high (an int, an integral finite float, or decimal digits), else
    None: a boolean is not a count, and SQLite cannot store past 2**63 - 1."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            return None
        value = int(value)
    elif isinstance(value, str):
        digits = value.strip()
        if not (digits.isdecimal() and len(digits) <= 19):
            return None
        value = int(digits)
    if not isinstance(value, int):
        return None
    return value if low <= value <= high else None
