"""Calendar quarters written ``2025Q3``."""

from __future__ import annotations

import re
from datetime import date, timedelta

from .errors import ParameterError

_LABEL = re.compile(r"^(\d{4})Q([1-4])$")


def parse_quarter(label: str) -> tuple[int, int]:
    """Return ``(year, q)`` of a label like ``2025Q3``; raise ParameterError otherwise."""
    m = _LABEL.match(str(label).strip())
    if not m:
        raise ParameterError(f"quarter {label!r} is not a quarter label; write it like 2025Q3")
    return int(m.group(1)), int(m.group(2))


def quarter_start(label: str) -> date:
    """First day of the quarter."""
    y, q = parse_quarter(label)
    return date(y, 3 * q - 2, 1)


def quarter_end(label: str) -> date:
    """Last day of the quarter."""
    y, q = parse_quarter(label)
    return (date(y + 1, 1, 1) if q == 4 else date(y, 3 * q + 1, 1)) - timedelta(days=1)


def quarter_of(day: date) -> str:
    """Label of the quarter containing ``day``."""
    return f"{day.year}Q{(day.month - 1) // 3 + 1}"


def shift_quarter(label: str, n: int) -> str:
    """The quarter ``n`` quarters after ``label`` (negative: before)."""
    y, q = parse_quarter(label)
    k = y * 4 + (q - 1) + n
    return f"{k // 4}Q{k % 4 + 1}"


def quarter_range(first: str, last: str) -> list[str]:
    """All labels from ``first`` to ``last`` inclusive."""
    out, cur = [], first
    while quarter_start(cur) <= quarter_start(last):
        out.append(cur)
        cur = shift_quarter(cur, 1)
    return out


def latest_complete_quarter(as_of: date) -> str:
    """The last quarter that ends on or before ``as_of``."""
    q = quarter_of(as_of)
    return q if quarter_end(q) == as_of else shift_quarter(q, -1)
