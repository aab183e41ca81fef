"""Reading the JSON of ClinicalTrials.gov, Europe PMC and OpenAlex (and the numbers in
E-utilities' XML) as it may come, not as it should: a module that is a string, a count that is `true`, `Infinity` or 10**30, a list that is
a number. Each helper answers the shape asked for, or nothing (an empty dict or list, None), so
a field of the wrong type is left empty instead of ending a run with `'str' object has no
attribute 'get'`. Pure."""

from __future__ import annotations

import math
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
