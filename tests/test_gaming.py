"""Survey gaming: the flag rule catches a planted gamer; small cells are never named."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.config import SMALL_CELL
from analysis.decision import gaming as G
from analysis.prepare import prepare


@pytest.fixture(scope="module")
def prepared():
    return prepare(None, "2025Q4", "2025-12-31")


def test_planted_gamer_is_flagged(prepared):
    tables = dict(prepared.tables)
    s = tables["surveys"].copy()
    rep = s["rep_id"].value_counts().index[0]
    mine = s["rep_id"] == rep
    s.loc[mine, "responded_date"] = s.loc[mine, "sent_date"]
    s.loc[mine, "csat"] = 5
    tables["surveys"] = s
    per = G.survey_gaming(tables, prepared.quarter)
    assert per.set_index("rep_id").loc[rep, "flagged"]
    summary = G.gaming_summary(per)
    assert rep in [f["rep_id"] for f in summary["flagged"]]


def test_small_cells_not_named(prepared):
    per = G.survey_gaming(prepared.tables, prepared.quarter)
    assert not per.loc[per["csat_responses"] < SMALL_CELL, "flagged"].any()
    summary = G.gaming_summary(per)
    small = set(per.loc[~per["eligible"], "rep_id"])
    assert not small & {f["rep_id"] for f in summary["flagged"]}
    assert summary["reps_scored"] + summary["reps_below_small_cell"] == len(per)
    assert {"tenure_std_diff", "segment_std_diff", "response_rate"} <= set(per.columns)


def test_same_diagnostics_from_the_derived_survey_tables(prepared):
    """With Prepared.derived's survey tables (the warehouse path) no survey row is read,
    and the diagnostics equal those built from the rows."""
    without_rows = {n: df for n, df in prepared.tables.items() if n != "surveys"}
    for quarters in (4, 8):
        given = G.survey_gaming(without_rows, prepared.quarter, quarters=quarters,
                                surveys=prepared.derived)
        from_rows = G.survey_gaming(prepared.tables, prepared.quarter, quarters=quarters)
        pd.testing.assert_frame_equal(given, from_rows)
        assert given["surveys_sent"].sum() > 0


def _selection_per_rep(tables, answered, first, last) -> pd.DataFrame:
    """The selection statistics by their definition, one pandas pass per rep."""
    c = tables["contracts"]
    owned = c[(c["start_date"] <= last) & (c["end_date"] >= first)
              & (c["cancel_date"].isna() | (c["cancel_date"] > first))]
    cust = tables["customers"].set_index("customer_id")
    tenure = (last - cust["acquired_date"]).dt.days / 365.25
    resp = answered[["rep_id", "customer_id"]].drop_duplicates()
    rows = {}
    for rep, grp in owned[["rep_id", "customer_id"]].drop_duplicates().groupby("rep_id"):
        r = resp.loc[resp["rep_id"] == rep, "customer_id"]
        if r.empty:
            continue
        t_all, t_resp = tenure.reindex(grp["customer_id"]), tenure.reindex(r)
        sd = float(t_all.std())
        p_all = cust["segment"].reindex(grp["customer_id"]).value_counts(normalize=True)
        p_resp = (cust["segment"].reindex(r).value_counts(normalize=True)
                  .reindex(p_all.index).fillna(0))
        denom = np.sqrt(p_all * (1 - p_all))
        diffs = ((p_resp - p_all).abs() / denom)[denom > 0]
        rows[rep] = {"tenure_std_diff": (float(t_resp.mean()) - float(t_all.mean())) / sd
                     if sd > 0 else np.nan,
                     "segment_std_diff": float(diffs.max()) if len(diffs) else np.nan}
    return pd.DataFrame.from_dict(rows, orient="index",
                                  columns=["tenure_std_diff", "segment_std_diff"])


def test_selection_matches_per_rep_definition_on_awkward_data(prepared):
    """Unknown customers, missing segments and dates, one-customer reps, respondents
    outside the owned book and rep-less rows: the vectorised statistics equal the
    per-rep pandas computation bit for bit."""
    from analysis.quarters import quarter_end, quarter_start

    first = pd.Timestamp(quarter_start("2025Q1"))
    last = pd.Timestamp(quarter_end(prepared.quarter))
    tables = dict(prepared.tables)
    cust = tables["customers"].copy()
    cust.loc[cust.index[::7], "segment"] = None
    cust.loc[cust.index[::11], "acquired_date"] = pd.NaT
    tables["customers"] = cust.iloc[5:]  # the first five customers are unknown
    contracts = tables["contracts"].copy()
    contracts.loc[contracts.index[::13], "rep_id"] = None
    solo = contracts.index[(contracts["start_date"] <= last) & (contracts["end_date"] >= first)
                           & contracts["cancel_date"].isna()][1]
    contracts.loc[solo, "rep_id"] = "solo-rep"  # one customer: no tenure SD
    tables["contracts"] = contracts
    answered = prepared.derived["survey_respondents"]
    stray = pd.DataFrame({"rep_id": [answered["rep_id"].iloc[0], None, "no-such-rep",
                                     "solo-rep"],
                          "customer_id": ["no-such-customer", cust["customer_id"].iloc[9],
                                          cust["customer_id"].iloc[9],
                                          contracts.loc[solo, "customer_id"]]})
    answered = pd.concat([answered, stray], ignore_index=True)
    got = G._selection(tables, answered, first, last)
    want = _selection_per_rep(tables, answered, first, last)
    assert len(got) > 100 and np.isnan(got.loc["solo-rep", "tenure_std_diff"])
    pd.testing.assert_frame_equal(got, want, check_exact=True)
