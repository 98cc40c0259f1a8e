"""Quarantine bookkeeping: one reason per rejected row, and the data-quality summary.

Validation marks rows through a ``RowVerdicts`` per table, calling its checks in a
fixed order; the first reason given to a row is the one it keeps, so every row read
is either used or quarantined exactly once and the counts add up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import numpy as np
import pandas as pd

#: Every quarantine reason, in the order the checks run (the first failing one is kept).
#: Some reasons are built from column names: "<later> before <earlier>".
REASONS = (
    "missing id",
    "conflicting duplicate id",
    "duplicate row",
    "date out of range",
    "not a date",
    "not a number",
    "not an integer",
    "not a boolean",
    "missing value",
    "not an allowed value",
    "out of range",
    "date before 1990-01-01",
    "future-dated",
    "exit_date before hire_date",
    "valid_to before valid_from",
    "close_date before created_date",
    "end_date before start_date",
    "cancel_date before start_date",
    "responded_date before sent_date",
    "won deal without close_date",
    "open deal with close_date",
    "csat/nps without responded_date",
    "paid_amount without paid_date",
    "weights do not sum to 1",
    "unknown rep",
    "rep quarantined",
    "unknown customer",
    "customer quarantined",
    "unknown plan",
    "plan quarantined",
    "unknown team",
    "overlapping plan assignment",
)

QUARANTINE_COLUMNS = ("table", "row", "id", "column", "raw_value", "reason")
#: Quarantined ids are listed in ``data_quality()`` when a reason has at most this many.
LIST_IDS_UP_TO = 10


class RowVerdicts:
    """The first failing check of each row of one table.

    Parameters
    ----------
    n : int
        Number of rows read.
    """

    def __init__(self, n: int):
        self.reason = np.full(n, None, dtype=object)
        self.column = np.full(n, None, dtype=object)
        self._alive = np.ones(n, dtype=bool)  # rows ``mark`` has not quarantined yet

    @property
    def alive(self) -> np.ndarray:
        """Rows without a reason so far."""
        return pd.isna(self.reason)

    def mark(self, mask, reason: str, column: str | None) -> None:
        """Quarantine the rows of ``mask`` that have no reason yet."""
        new = np.asarray(mask, dtype=bool) & self._alive
        if new.any():
            self.reason[new] = reason
            self.column[new] = column
            self._alive[new] = False


def quarantine_rows(table: str, verdicts: RowVerdicts, ids: pd.Series,
                    raw: pd.DataFrame) -> pd.DataFrame:
    """One quarantine line per rejected row of ``table``.

    Parameters
    ----------
    table : str
        Table name.
    verdicts : RowVerdicts
        Reasons per row.
    ids : Series
        Each row's identifier (str or None), positionally aligned with ``raw``.
    raw : DataFrame
        The rows as read, for the offending raw value.

    Returns
    -------
    DataFrame
        Columns ``QUARANTINE_COLUMNS``; ``row`` is the 1-based data row (header excluded).
    """
    pos = np.flatnonzero(~verdicts.alive)
    cols = verdicts.column[pos]
    raw_values = np.full(len(pos), None, dtype=object)
    for c in pd.unique(cols[pd.notna(cols)]):  # one vectorised take per column
        if c in raw.columns:
            at = np.flatnonzero(cols == c)
            cells = raw[c].iloc[pos[at]].to_numpy(dtype=object)
            raw_values[at] = [_raw_text(v) for v in cells]
    return pd.DataFrame({
        "table": table,
        "row": (pos + 1).astype("int64"),
        "id": ids.iloc[pos].to_numpy(dtype=object),
        "column": cols,
        "raw_value": raw_values,
        "reason": verdicts.reason[pos],
    }, columns=list(QUARANTINE_COLUMNS))


def _raw_text(v) -> str | None:
    """The cell as read, as text ("" stays ""; a missing cell is None)."""
    if v is None or (not isinstance(v, str) and pd.isna(v)):
        return None
    if isinstance(v, pd.Timestamp):
        return v.strftime("%Y-%m-%d") if v == v.normalize() else v.isoformat()
    return str(v)


@dataclass
class ValidatedData:
    """Clean typed tables and the account of every row left out.

    Attributes
    ----------
    tables : dict of str to DataFrame
        Typed tables (docs/architecture.md "Typed tables"), rows used only, row order
        as read, fresh RangeIndex.
    quarantine : DataFrame
        One line per quarantined row: ``table, row, id, column, raw_value, reason``.
    rows_read, rows_used, rows_quarantined : dict of str to int
        Per table; ``rows_read == rows_used + rows_quarantined``.
    by_reason : dict of str to dict of str to int
        Per table, quarantined rows per reason (tables without any are empty dicts).
    as_of : date
        The as-of date the data was validated against.
    """

    tables: dict[str, pd.DataFrame]
    quarantine: pd.DataFrame
    rows_read: dict[str, int]
    rows_used: dict[str, int]
    rows_quarantined: dict[str, int]
    by_reason: dict[str, dict[str, int]]
    as_of: date
    fingerprint: str = ""
    locations: dict[str, str] = field(default_factory=dict)

    def data_quality(self) -> dict:
        """The ``data_quality`` section of findings.json.

        Returns
        -------
        dict
            ``rows_read``, ``rows_used``, ``rows_quarantined`` (table to count) and
            ``quarantined``: table to reason to ``{"count": n}``, with ``"ids"`` (in
            row order) when ``n <= 10``; ``by_reason``: table to reason to count (the
            same counts, flat). Plain JSON types only.
        """
        quarantined: dict[str, dict[str, dict]] = {}
        for (table, reason), group in self.quarantine.groupby(["table", "reason"], sort=False):
            entry: dict = {"count": int(len(group))}
            if len(group) <= LIST_IDS_UP_TO:
                entry["ids"] = [None if pd.isna(i) else str(i) for i in group["id"]]
            quarantined.setdefault(str(table), {})[str(reason)] = entry
        return {
            "rows_read": {k: int(v) for k, v in self.rows_read.items()},
            "rows_used": {k: int(v) for k, v in self.rows_used.items()},
            "rows_quarantined": {k: int(v) for k, v in self.rows_quarantined.items()},
            "quarantined": quarantined,
            "by_reason": {t: {r: e["count"] for r, e in by.items()} for t, by in quarantined.items()},
        }
