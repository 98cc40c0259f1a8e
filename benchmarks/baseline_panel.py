"""BASELINE ONLY — the rep x quarter panel built by straightforward pandas.

Not used by the product (``analysis.derived`` builds the panel with DuckDB SQL). It
exists so the benchmark can state how the product's derived-table stage compares with
the obvious pandas implementation an analyst would write: merges and group-bys on the
loaded frames, a team x day calendar for the plan in force, one cross join of contracts
and quarters for exposure. It follows the rules of docs/architecture.md
("rep_quarter_panel") and ``analysis/sql/rep_quarter_panel.sql`` so that its result can
be checked equal to the product's (:func:`compare`).
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd

from analysis.config import WEIGHTS
from analysis.derived import analysed_quarters, quarters_frame
from analysis.quarters import quarter_end, quarter_start

KEY = ["rep_id", "quarter"]


def _q_key(dates: pd.Series) -> pd.Series:
    """4 * year + quarter - 1 (as the SQL computes it); NaN for NaT."""
    return dates.dt.year * 4 + (dates.dt.month - 1) // 3


def _by_quarter(df: pd.DataFrame, dates: pd.Series, quarters: pd.DataFrame) -> pd.DataFrame:
    """``df`` with the analysed quarter of ``dates`` (rows outside them dropped)."""
    out = df.assign(q_key=_q_key(dates))
    return out.merge(quarters[["q_key", "quarter"]], on="q_key", how="inner")


def _team_quarter_weights(tables, quarters: pd.DataFrame, first: date, last: date) -> pd.DataFrame:
    days = pd.DataFrame({"day": pd.date_range(first, last, freq="D")})
    days["q_key"] = _q_key(days["day"])
    days = days.merge(quarters[["q_key", "quarter"]], on="q_key")
    teams = pd.DataFrame({"team_id": pd.unique(pd.concat(
        [tables["reps"]["team_id"], tables["plan_assignments"]["team_id"]]).dropna())})
    grid = teams.merge(days[["day", "quarter"]], how="cross")
    pa = tables["plan_assignments"][["team_id", "plan_id", "valid_from", "valid_to"]].copy()
    pa["valid_to"] = pa["valid_to"].fillna(pd.Timestamp(last))
    hits = grid.merge(pa, on="team_id")
    hits = hits[(hits["valid_from"] <= hits["day"]) & (hits["day"] <= hits["valid_to"])]
    # latest valid_from wins, then the smallest plan_id
    hits = hits.sort_values(["team_id", "day", "valid_from", "plan_id"],
                            ascending=[True, True, False, True])
    hits = hits.drop_duplicates(["team_id", "day"])
    plans = tables["kpi_plans"][["plan_id", *WEIGHTS]]
    in_force = grid.merge(hits[["team_id", "day", "plan_id"]], on=["team_id", "day"], how="left")
    in_force = in_force.merge(plans, on="plan_id", how="left")
    g = in_force.groupby(["team_id", "quarter"], sort=False)
    out = g[list(WEIGHTS)].mean()
    out.insert(0, "plan_days", g["plan_id"].count())
    return out.reset_index()


def _deals(tables, quarters) -> pd.DataFrame:
    d = tables["deals"]
    won = d[(d["status"] == "won") & d["close_date"].notna()]
    won = _by_quarter(won[["rep_id", "amount", "is_new_business"]], won["close_date"], quarters)
    won["is_new_business"] = won["is_new_business"].astype(int)
    return won.groupby(KEY).agg(bookings=("amount", "sum"), won_deals=("amount", "size"),
                                new_customers=("is_new_business", "sum")).reset_index()


def _surveys(tables, quarters) -> pd.DataFrame:
    s = tables["surveys"]
    s = _by_quarter(s[["rep_id", "responded_date", "csat", "nps"]], s["sent_date"], quarters)
    answered = s["responded_date"].notna()
    csat = s["csat"].astype("float64").where(answered)
    nps = s["nps"].astype("float64").where(answered)
    s = pd.DataFrame({
        "rep_id": s["rep_id"], "quarter": s["quarter"], "responded": answered.astype(int),
        "csat": csat, "nps": nps, "promoter": (nps >= 9).astype(int),
        "detractor": (nps <= 6).astype(int)})
    out = s.groupby(KEY).agg(
        surveys_sent=("responded", "size"), responses=("responded", "sum"),
        csat_responses=("csat", "count"), csat_mean=("csat", "mean"),
        nps_responses=("nps", "count"), promoters=("promoter", "sum"),
        detractors=("detractor", "sum")).reset_index()
    return out


def _active_contracts(contracts: pd.DataFrame, cap: pd.Timestamp | None) -> pd.DataFrame:
    """first_active/last_active of each contract (LEAST ignores nulls, as in SQL)."""
    last = contracts["end_date"].where(
        contracts["cancel_date"].isna(),
        np.minimum(contracts["end_date"], contracts["cancel_date"] - pd.Timedelta(days=1)))
    last = last.fillna(contracts["cancel_date"] - pd.Timedelta(days=1))
    if cap is not None:
        last = last.where(last.isna() | (last <= cap), cap).fillna(cap)
    return contracts.assign(first_active=contracts["start_date"], last_active=last)


def _complaints(tables, quarters) -> pd.DataFrame:
    cp = tables["complaints"]
    recorded = cp[cp["rep_id"].notna()][["rep_id", "created_date"]]
    missing = cp[cp["rep_id"].isna()][["complaint_id", "customer_id", "created_date"]]
    con = _active_contracts(tables["contracts"], None)[
        ["contract_id", "customer_id", "rep_id", "first_active", "last_active"]]
    cand = missing.merge(con, on="customer_id")
    cand = cand[(cand["first_active"] <= cand["created_date"])
                & (cand["created_date"] <= cand["last_active"])]
    cand = cand.sort_values(["complaint_id", "first_active", "contract_id"],
                            ascending=[True, False, True]).drop_duplicates("complaint_id")
    owned = pd.concat([recorded, cand[["rep_id", "created_date"]]], ignore_index=True)
    owned = _by_quarter(owned[["rep_id"]], owned["created_date"], quarters)
    return owned.groupby(KEY).size().rename("complaints").reset_index()


def _exposure(tables, quarters, as_of: pd.Timestamp) -> pd.DataFrame:
    con = _active_contracts(tables["contracts"], as_of)[["rep_id", "first_active", "last_active"]]
    x = con.merge(quarters[["quarter", "q_start", "q_end", "n_days"]], how="cross")
    x = x[(x["first_active"] <= x["q_end"]) & (x["last_active"] >= x["q_start"])]
    days = (np.minimum(x["last_active"], x["q_end"])
            - np.maximum(x["first_active"], x["q_start"])).dt.days + 1
    x = x.assign(days=days)
    out = x.groupby(KEY).agg(days=("days", "sum"), n_days=("n_days", "max")).reset_index()
    out["exposure"] = out["days"] / out["n_days"]
    return out[[*KEY, "exposure"]]


def _renewals(tables, quarters, as_of: pd.Timestamp) -> pd.DataFrame:
    c = tables["contracts"]
    due = c[c["cancel_date"].isna() & (c["end_date"] <= as_of) & c["outcome"].notna()
            & (c["outcome"] != "pending")]
    due = _by_quarter(due[["rep_id", "outcome"]], due["end_date"], quarters)
    due["renewed"] = (due["outcome"] == "renewed").astype(int)
    return due.groupby(KEY).agg(renewals_due=("renewed", "size"),
                                renewals_renewed=("renewed", "sum")).reset_index()


def _churn(tables, quarters, as_of: pd.Timestamp) -> pd.DataFrame:
    c = tables["contracts"]
    c = c[c["start_date"] <= as_of]
    cancel = (c[c["cancel_date"].notna() & (c["cancel_date"] <= as_of)]
              .groupby("customer_id")["cancel_date"].min())
    last_start = c.groupby("customer_id")["start_date"].max()
    ended = c[(c["outcome"] == "churned") & (c["end_date"] <= as_of)]
    ended = ended[ended["end_date"] >= ended["customer_id"].map(last_start)]
    end_churn = ended.groupby("customer_id")["end_date"].min()
    cu = tables["customers"][["customer_id", "acquired_date"]].copy()
    cu["churn_date"] = cu["customer_id"].map(cancel).fillna(cu["customer_id"].map(end_churn))
    cu = cu[cu["churn_date"].notna()]
    cand = cu.merge(tables["contracts"][["contract_id", "customer_id", "rep_id", "start_date",
                                         "end_date", "cancel_date"]], on="customer_id")
    covers_from = np.maximum(cand["start_date"], cand["acquired_date"].fillna(cand["start_date"]))
    covers_to = cand["end_date"].where(cand["cancel_date"].isna(),
                                       np.minimum(cand["end_date"], cand["cancel_date"]))
    cand = cand[(covers_from <= cand["churn_date"]) & (cand["churn_date"] <= covers_to)]
    cand = cand.sort_values(["customer_id", "start_date", "contract_id"],
                            ascending=[True, False, True]).drop_duplicates("customer_id")
    owners = _by_quarter(cand[["rep_id"]], cand["churn_date"], quarters)
    return owners.groupby(KEY).size().rename("churned_customers").reset_index()


def rep_quarter_panel_pandas(tables: dict[str, pd.DataFrame], quarter: str) -> pd.DataFrame:
    """BASELINE: the rep x quarter panel by plain pandas merges and group-bys.

    Parameters
    ----------
    tables : typed tables of the as-of view of ``quarter``'s last day.
    quarter : the analysed quarter, e.g. ``"2025Q4"``.

    Returns
    -------
    DataFrame
        The columns of ``analysis.derived.rep_quarter_panel``, sorted by rep_id, quarter.
    """
    labels = analysed_quarters(tables, quarter)
    quarters = quarters_frame(labels)
    quarters["q_start"] = pd.to_datetime(quarters["q_start"])
    quarters["q_end"] = pd.to_datetime(quarters["q_end"])
    as_of = pd.Timestamp(quarter_end(quarter))
    reps = tables["reps"][["rep_id", "team_id", "hire_date", "exit_date"]]
    rq = reps.merge(quarters[["quarter", "q_start", "q_end"]], how="cross")
    rq = rq[(rq["hire_date"] <= rq["q_end"])
            & (rq["exit_date"].isna() | (rq["exit_date"] >= rq["q_start"]))]
    panel = rq[["rep_id", "team_id", "quarter"]]
    weights = _team_quarter_weights(tables, quarters, quarter_start(labels[0]), quarter_end(quarter))
    panel = panel.merge(weights, on=["team_id", "quarter"], how="left")
    for part in (_deals(tables, quarters), _surveys(tables, quarters),
                 _complaints(tables, quarters), _exposure(tables, quarters, as_of),
                 _renewals(tables, quarters, as_of), _churn(tables, quarters, as_of)):
        panel = panel.merge(part, on=KEY, how="left")
    counts = ["plan_days", "won_deals", "new_customers", "surveys_sent", "responses",
              "csat_responses", "nps_responses", "complaints", "renewals_due",
              "renewals_renewed", "churned_customers"]
    for col in counts:
        panel[col] = panel[col].fillna(0).astype("int64")
    panel["bookings"] = panel["bookings"].fillna(0.0).astype("float64")
    panel["exposure"] = panel["exposure"].fillna(0.0).astype("float64")
    panel["log_bookings"] = np.log1p(panel["bookings"])
    with np.errstate(divide="ignore", invalid="ignore"):
        panel["nps"] = (100.0 * (panel["promoters"] - panel["detractors"])
                        / panel["nps_responses"]).where(panel["nps_responses"] > 0)
        panel["response_rate"] = (panel["responses"] / panel["surveys_sent"]).where(
            panel["surveys_sent"] > 0)
    columns = ["rep_id", "team_id", "quarter", "plan_days", *WEIGHTS, "bookings",
               "log_bookings", "won_deals", "new_customers", "surveys_sent", "responses",
               "csat_responses", "csat_mean", "nps_responses", "nps", "response_rate",
               "complaints", "exposure", "renewals_due", "renewals_renewed",
               "churned_customers"]
    return panel[columns].sort_values(KEY, kind="stable").reset_index(drop=True)


def compare(baseline: pd.DataFrame, product: pd.DataFrame) -> dict:
    """Whether the baseline equals the product's panel (rtol 1e-9: float sums may be
    added in another order), with the first difference when not."""
    try:
        pd.testing.assert_frame_equal(baseline.reset_index(drop=True),
                                      product.reset_index(drop=True)[list(baseline.columns)],
                                      check_dtype=False, rtol=1e-9, atol=1e-9)
    except AssertionError as e:
        return {"equal": False, "difference": str(e).splitlines()[0][:300]}
    return {"equal": True, "difference": ""}
