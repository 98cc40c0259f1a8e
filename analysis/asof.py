"""The world as it looked on one day: what had happened by then, and nothing later.

A quarter's run sees the data as of the quarter's last day (data-contract.md): rows
that begin after that day are not yet visible, and a visible row's later facts are
not yet known. Scheduled dates (``end_date``, ``valid_to``, ``due_date``) are known in
advance and stay as they are.

Rules, per table (``D`` = the day):

==================  ===============================  ==========================================
table               visible when                     facts after D read as
==================  ===============================  ==========================================
reps                hire_date <= D                   exit_date -> null
customers           acquired_date <= D
deals               created_date <= D                closed after D -> status "open", close_date null
contracts           start_date <= D                  cancel_date -> null; end_date > D -> outcome "pending"
surveys             sent_date <= D                   responded after D -> responded_date, csat, nps null
complaints          created_date <= D
invoices            due_date <= D                    paid after D -> paid_date, paid_amount null
activities          activity_date <= D
plan_assignments    valid_from <= D
kpi_plans           always
==================  ===============================  ==========================================

Rows are filtered, not re-checked: references to rows that became invisible are left to
the joins downstream (in valid data they cannot arise: children begin after parents).
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd

#: Table -> the date column a row must not begin after.
VISIBLE_FROM = {
    "reps": "hire_date",
    "customers": "acquired_date",
    "deals": "created_date",
    "contracts": "start_date",
    "surveys": "sent_date",
    "complaints": "created_date",
    "invoices": "due_date",
    "activities": "activity_date",
    "plan_assignments": "valid_from",
}


def as_of_view(tables: dict[str, pd.DataFrame], day: date) -> dict[str, pd.DataFrame]:
    """The typed tables as they would have looked on ``day``.

    Parameters
    ----------
    tables : dict of str to DataFrame
        Typed tables (the output of ``analysis.validate.validate``); not modified.
    day : date
        The last day visible, usually the analysed quarter's last day.

    Returns
    -------
    dict of str to DataFrame
        New frames with the same columns and dtypes, rows in their original order and a
        fresh RangeIndex; tables without date rules are copied unchanged.
    """
    d = pd.Timestamp(day).normalize()
    out = {}
    for name, df in tables.items():
        visible = None
        if name in VISIBLE_FROM and VISIBLE_FROM[name] in df:
            visible = ~(df[VISIBLE_FROM[name]] > d).to_numpy()
        # one private copy: every row, or the visible rows only
        if visible is None or visible.all():
            view = df.copy()
        else:
            view = df.take(np.flatnonzero(visible))
        view.index = pd.RangeIndex(len(view))
        _forget_later_facts(name, view, d)
        out[name] = view
    return out


def _forget_later_facts(name: str, df: pd.DataFrame, d: pd.Timestamp) -> None:
    """Blank out, in place on a private copy, what was not yet known on ``d``."""
    def after(col: str) -> pd.Series:
        return df[col] > d  # NaT compares False

    if name == "reps":
        df.loc[after("exit_date"), "exit_date"] = pd.NaT
    elif name == "deals":
        late = after("close_date")
        df.loc[late, "status"] = "open"
        df.loc[late, "close_date"] = pd.NaT
    elif name == "contracts":
        df.loc[after("cancel_date"), "cancel_date"] = pd.NaT
        df.loc[after("end_date"), "outcome"] = "pending"
    elif name == "surveys":
        late = after("responded_date")
        df.loc[late, "responded_date"] = pd.NaT
        df.loc[late, ["csat", "nps"]] = pd.NA
    elif name == "invoices" and "paid_date" in df:
        late = after("paid_date")
        df.loc[late, "paid_date"] = pd.NaT
        if "paid_amount" in df:
            df.loc[late, "paid_amount"] = float("nan")
