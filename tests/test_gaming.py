"""Survey gaming: the flag rule catches a planted gamer; small cells are never named."""

from __future__ import annotations

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
