"""The trade-off's objective: its measured inputs and the customer-value formula.

**Objective** (:func:`customer_value`), per rep, over a horizon of H years (default 3):

    V(w) = 4·H·B₀·exp(Δη_b(w)) + N₀·A₀·(1 − exp(−h(w)·H)) / h(w),   h(w) = h₀·exp(Δη_c(w))

B₀ bookings per rep-quarter, N₀ customers owned per rep, A₀ mean annual contract
value (contracts active on the quarter's last day), h₀ the annual churn hazard
(churns per customer-year at risk), all measured over the last four quarters under
the current plans (:func:`objective_inputs`); Δη_b, Δη_c the bookings and churn
models' predicted change (log scale) from the company-average current plan. The
first part is bookings over the horizon, the second the contract value the current
book keeps paying while it stays (expected years retained × value). Using
exp(Δη_b) for the bookings ratio treats log(1 + B) ≈ log B (bookings are thousands)
and keeps the residual distribution fixed, so its retransformation factor cancels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from analysis.columns import read_batches, read_columns
from analysis.quarters import shift_quarter

#: Quarters (ending with the analysed one) over which the objective's inputs are measured.
WINDOW_QUARTERS = 4


@dataclass(frozen=True)
class ObjectiveInputs:
    """The measured inputs of the objective (per rep, current plans).

    Attributes
    ----------
    bookings : B₀, mean won amount per rep-quarter.
    customers : N₀, mean customers owned per rep (customer-quarters per rep-quarter).
    annual_value : A₀, mean annual value of contracts active on the quarter's last day.
    churn_hazard : h₀, churns per customer-year at risk.
    renewal_rate, complaint_rate (per customer-quarter), csat, nps : current levels,
        for the frontier's outcome columns.
    horizon : H in years.

    Inputs without data are NaN (see :meth:`missing`).
    """

    bookings: float
    customers: float
    annual_value: float
    churn_hazard: float
    renewal_rate: float
    complaint_rate: float
    csat: float
    nps: float
    horizon: float = 3.0

    def missing(self) -> list[str]:
        """Names of the objective's inputs (B₀, N₀, A₀, h₀) the data cannot supply."""
        return [name for name in ("bookings", "customers", "annual_value", "churn_hazard")
                if not (math.isfinite(getattr(self, name)) and getattr(self, name) > 0)]


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den > 0 else math.nan


def _mean(values: pd.Series) -> float:
    return float(values.mean()) if len(values) else math.nan


def objective_inputs(prepared, *, horizon: float = 3.0,
                     window: int = WINDOW_QUARTERS) -> ObjectiveInputs:
    """Measure B₀, N₀, A₀, h₀ (and current outcome levels) over the last ``window`` quarters."""
    quarters = {shift_quarter(prepared.quarter, -k) for k in range(window)}
    panel = prepared.derived["rep_quarter_panel"]
    pw = panel[panel["quarter"].isin(quarters)]
    # only the columns used are read from the (large) episode, renewal and contract tables
    events = days = 0  # whole numbers: summed part by part, exactly
    for ep in read_batches(prepared, "derived", "survival_episodes",
                           ["quarter", "start", "stop", "event"]):
        in_window = ep["quarter"].isin(quarters)
        events += ep.loc[in_window, "event"].sum()
        days += (ep.loc[in_window, "stop"] - ep.loc[in_window, "start"]).sum()
    rn = read_columns(prepared, "derived", "renewal_table", ["end_quarter", "renewed"])
    renewed = rn.loc[rn["end_quarter"].isin(quarters), "renewed"]
    day = pd.Timestamp(prepared.quarter_end)
    c = read_columns(prepared, "tables", "contracts",
                     ["start_date", "end_date", "cancel_date", "annual_value"])
    active_value = c.loc[(c["start_date"] <= day) & (c["end_date"] >= day)
                         & (c["cancel_date"].isna() | (c["cancel_date"] > day)), "annual_value"]
    years = float(days) / 365.25
    csat_w = pw["csat_responses"].to_numpy(float)
    nps_w = pw["nps_responses"].to_numpy(float)
    return ObjectiveInputs(
        bookings=_mean(pw["bookings"]),
        customers=_mean(pw["exposure"]),
        annual_value=_mean(active_value),
        churn_hazard=_ratio(events, years),
        renewal_rate=_mean(renewed.astype(float)),
        complaint_rate=_ratio(pw["complaints"].sum(), pw["exposure"].sum()),
        csat=_ratio(np.nansum(pw["csat_mean"].fillna(0) * csat_w), csat_w.sum()),
        nps=_ratio(np.nansum(pw["nps"].fillna(0) * nps_w), nps_w.sum()),
        horizon=float(horizon))


def customer_value(d_log_bookings, d_log_hazard, inputs: ObjectiveInputs) -> dict[str, Any]:
    """Expected customer value per rep over the horizon (see the module docstring).

    Parameters
    ----------
    d_log_bookings, d_log_hazard : predicted changes (arrays or floats) from the current plan.
    inputs : :class:`ObjectiveInputs`.

    Returns
    -------
    dict with ``objective``, ``bookings`` (per rep-quarter), ``retention`` (share of
    the current book still customers after H years), ``churn`` (annual churn
    probability).
    """
    h_years = inputs.horizon
    bq = inputs.bookings * np.exp(d_log_bookings)
    h = inputs.churn_hazard * np.exp(d_log_hazard)
    retained_years = -np.expm1(-h * h_years) / h
    value = 4 * h_years * bq + inputs.customers * inputs.annual_value * retained_years
    return {"objective": value, "bookings": bq, "retention": np.exp(-h * h_years),
            "churn": -np.expm1(-h)}
