"""Plan switches that raise the satisfaction weight, and the event-time panel.

Treatment
    The first switch of a team to a plan whose satisfaction-related weight
    (``w_satisfaction + w_complaints``) exceeds that of the plan it replaces by at
    least ``threshold`` (default 0.10). Teams without such a switch are never
    treated (controls throughout).
Event time
    Quarters relative to the quarter in which the new plan took effect, i.e. the
    quarter containing its ``valid_from``. A mid-quarter switch therefore makes that
    quarter event time 0 although only part of it ran under the new plan (the panel
    weights are time-weighted, so event time 0 carries a partial dose, reported in
    :func:`cohorts` as ``dose_share``).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from analysis.errors import ParameterError
from analysis.quarters import parse_quarter, quarter_of

SATISFACTION_WEIGHTS = ("w_satisfaction", "w_complaints")
SWITCH_COLUMNS = ("team_id", "switch_date", "plan_before", "plan_after", "sat_before",
                  "sat_after", "cohort", "dose_share")
#: Weight differences are multiples of 0.05: compare with this tolerance.
_TOL = 1e-9


def quarter_key(label: str) -> int:
    """Integer index of a quarter label (``4·year + quarter − 1``)."""
    year, q = parse_quarter(label)
    return 4 * year + q - 1


def event_term(e: int) -> str:
    """Term name of event time ``e``: ``event_time_-2``, ``event_time_+0``."""
    return f"event_time_{e:+d}"


def plan_switches(tables: dict[str, pd.DataFrame], *, threshold: float = 0.10) -> pd.DataFrame:
    """Each team's first switch raising the satisfaction-related weight by ``threshold``.

    Parameters
    ----------
    tables : typed tables (``plan_assignments``, ``kpi_plans``) of the as-of view.
    threshold : minimum rise of ``w_satisfaction + w_complaints`` over the plan replaced.

    Returns
    -------
    DataFrame
        One row per team with a plan: ``team_id, switch_date, plan_before, plan_after,
        sat_before, sat_after, cohort`` (quarter label of ``switch_date``; None for teams
        never treated), ``dose_share`` (share of the cohort quarter under the new plan).
    """
    if not 0 < threshold <= 1:
        raise ParameterError(f"threshold must be in (0, 1], got {threshold!r}")
    plans = tables["kpi_plans"].set_index("plan_id")
    sat = plans[list(SATISFACTION_WEIGHTS)].sum(axis=1)
    pa = tables["plan_assignments"].sort_values(["team_id", "valid_from", "plan_id"])
    pa = pa.assign(sat=pa["plan_id"].map(sat).to_numpy())
    pa["sat_before"] = pa.groupby("team_id")["sat"].shift()
    pa["plan_before"] = pa.groupby("team_id")["plan_id"].shift()
    rises = pa[(pa["sat"] - pa["sat_before"]) >= threshold - _TOL]
    first = rises.groupby("team_id", sort=True).head(1).set_index("team_id")
    out = pd.DataFrame({"team_id": sorted(pa["team_id"].unique())})
    if out.empty:  # no plan assignments: no team, no switch
        return pd.DataFrame(columns=list(SWITCH_COLUMNS))
    hit = out["team_id"].isin(first.index)
    row = first.reindex(out["team_id"])
    out["switch_date"] = row["valid_from"].to_numpy()
    out["plan_before"] = row["plan_before"].to_numpy()
    out["plan_after"] = row["plan_id"].to_numpy()
    out["sat_before"] = row["sat_before"].to_numpy(float)
    out["sat_after"] = row["sat"].to_numpy(float)
    # once per distinct switch date, not per team
    days = {d: (quarter_of(d.date()), _dose_share(d)) for d in out.loc[hit, "switch_date"]}
    out["cohort"] = [days[d][0] if h else None for d, h in zip(out["switch_date"], hit)]
    out["dose_share"] = [days[d][1] if h else math.nan for d, h in zip(out["switch_date"], hit)]
    return out


def _dose_share(day: pd.Timestamp) -> float:
    start = pd.Timestamp(day.year, 3 * ((day.month - 1) // 3) + 1, 1)
    end = start + pd.DateOffset(months=3)
    return float((end - day).days / (end - start).days)


def event_panel(panel: pd.DataFrame, switches: pd.DataFrame) -> pd.DataFrame:
    """The panel with outcome rates, ``cohort``, ``event_time`` and ``treated`` added.

    ``event_time`` is NaN for never-treated teams; ``treated`` is event_time >= 0.
    Rates are NaN where exposure is 0. The input is not modified.
    """
    out = panel.copy()
    exposure = out["exposure"].where(out["exposure"] > 0)
    out["churn_rate"] = out["churned_customers"] / exposure
    out["complaint_rate"] = out["complaints"] / exposure
    cohort = out["team_id"].map(switches.set_index("team_id")["cohort"])
    out["cohort"] = cohort
    # keys once per distinct label, not per row
    qk = out["quarter"].map({q: quarter_key(q) for q in out["quarter"].unique()})
    gk = cohort.map({c: quarter_key(c) for c in cohort.unique() if isinstance(c, str)})
    out["event_time"] = (qk - gk).astype(float)
    out["treated"] = out["event_time"] >= 0
    return out



def cohorts(switches: pd.DataFrame) -> pd.DataFrame:
    """Switches grouped by cohort quarter: teams, mean rise in weight, mean dose at e=0."""
    s = switches.dropna(subset=["cohort"])
    return (s.assign(rise=s["sat_after"] - s["sat_before"])
            .groupby("cohort", sort=True)
            .agg(teams=("team_id", "size"), mean_rise=("rise", "mean"),
                 dose_share=("dose_share", "mean"))
            .reset_index())

