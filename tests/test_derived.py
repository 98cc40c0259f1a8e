"""Derived tables on a tiny hand-built company whose every number is worked out below.

The company (analysed quarter 2024Q2, as-of D = 2024-06-30; 2024Q1 has 91 days as
2024 is a leap year, 2024Q2 has 91 days):

teams  T1: plan P1 (revenue 1.0) 2024-01-01..2024-02-14, then P2 (revenue .5,
           satisfaction .5) from 2024-02-15, open-ended.
       T2: plan P3 (revenue .7, complaints .3) from 2024-01-11 (no plan Jan 1-10).
reps   R1 (T1, hired 2023-06-01), R2 (T1, hired 2024-02-15),
       R3 (T2, hired 2023-01-01, left 2024-03-31).
customers / contracts
       C1 acquired 01-10: K1 R1 01-10..03-31 renewed -> K2 R2 04-01..09-30 pending.
       C2 acquired 01-20: K3 R3 01-20..12-31 cancelled 03-15 (churn on 03-15).
       C3 acquired 02-01: K4 R1 02-01..05-15 churned (churn on 05-15), overlapped by
          K7 R2 03-01..03-31 renewed (later start -> R2 owns C3 in March).
       C4 acquired 02-20: K5 R2 02-20..03-10 churned, but K6 R2 04-15..06-30 renewed
          starts after it -> not a churn; not at risk 03-11..04-14.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pandas as pd
import pytest

from analysis import derived
from analysis.config import WEIGHTS

TOL = 1e-12  # weights are means of at most 91 doubles: exact to rounding


def _d(s):
    return pd.Timestamp(s) if s else pd.NaT


def _frame(rows, columns, dates=(), ints=(), bools=()):
    df = pd.DataFrame(rows, columns=columns)
    for c in dates:
        df[c] = pd.to_datetime(df[c]).astype("datetime64[ns]")
    for c in ints:
        df[c] = df[c].astype("Int64")
    for c in bools:
        df[c] = df[c].astype(bool)
    for c in df.columns:
        if df[c].dtype == object:
            df[c] = df[c].astype(object).where(df[c].notna(), None)
    return df


def tiny_tables() -> dict[str, pd.DataFrame]:
    """The hand-built company of the module docstring, as typed tables."""
    reps = _frame([
        ("R1", "T1", "2023-06-01", None),
        ("R2", "T1", "2024-02-15", None),
        ("R3", "T2", "2023-01-01", "2024-03-31"),
    ], ["rep_id", "team_id", "hire_date", "exit_date"], dates=("hire_date", "exit_date"))
    plans = _frame([
        ("P1", "revenue only", 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, "individual"),
        ("P2", "balanced", 0.5, 0.0, 0.0, 0.5, 0.0, 0.0, "individual"),
        ("P3", "complaints", 0.7, 0.0, 0.0, 0.0, 0.3, 0.0, "team"),
    ], ["plan_id", "name", *WEIGHTS, "satisfaction_scope"])
    assignments = _frame([
        ("T1", "P1", "2024-01-01", "2024-02-14"),
        ("T1", "P2", "2024-02-15", None),
        ("T2", "P3", "2024-01-11", None),
    ], ["team_id", "plan_id", "valid_from", "valid_to"], dates=("valid_from", "valid_to"))
    customers = _frame([
        ("C1", "SMB", "2024-01-10", "R1"),
        ("C2", "Mid-market", "2024-01-20", "R3"),
        ("C3", "Enterprise", "2024-02-01", "R1"),
        ("C4", "SMB", "2024-02-20", "R2"),
    ], ["customer_id", "segment", "acquired_date", "acquiring_rep_id"],
        dates=("acquired_date",))
    deals = _frame([
        ("D1", "C1", "R1", "2024-01-02", "2024-01-10", "won", 1000.0, True),
        ("D2", "C3", "R1", "2024-01-15", "2024-02-01", "won", 500.0, True),
        ("D3", "C2", "R3", "2024-01-05", "2024-01-20", "won", 2000.0, True),
        ("D4", "C1", "R2", "2024-03-15", "2024-04-01", "won", 1200.0, False),
        ("D5", "X9", "R2", "2024-02-20", "2024-03-01", "lost", 300.0, True),
        ("D6", "C4", "R2", "2024-02-01", "2024-02-20", "won", 400.0, True),
        ("D7", "C4", "R2", "2024-04-01", "2024-04-15", "won", 450.0, False),
        ("D8", "X8", "R1", "2024-06-01", None, "open", 999.0, True),
    ], ["deal_id", "customer_id", "rep_id", "created_date", "close_date", "status",
        "amount", "is_new_business"], dates=("created_date", "close_date"),
        bools=("is_new_business",))
    contracts = _frame([
        ("K1", "C1", "R1", "2024-01-10", "2024-03-31", 1200.0, "renewed", None),
        ("K2", "C1", "R2", "2024-04-01", "2024-09-30", 1300.0, "pending", None),
        ("K3", "C2", "R3", "2024-01-20", "2024-12-31", 5000.0, "pending", "2024-03-15"),
        ("K4", "C3", "R1", "2024-02-01", "2024-05-15", 9000.0, "churned", None),
        ("K5", "C4", "R2", "2024-02-20", "2024-03-10", 100.0, "churned", None),
        ("K6", "C4", "R2", "2024-04-15", "2024-06-30", 150.0, "renewed", None),
        ("K7", "C3", "R2", "2024-03-01", "2024-03-31", 800.0, "renewed", None),
    ], ["contract_id", "customer_id", "rep_id", "start_date", "end_date", "annual_value",
        "outcome", "cancel_date"], dates=("start_date", "end_date", "cancel_date"))
    surveys = _frame([
        ("S1", "C1", "R1", "2024-02-01", "2024-02-03", 5, 10),
        ("S2", "C3", "R1", "2024-03-01", None, None, None),
        ("S3", "C2", "R3", "2024-03-01", "2024-03-02", 2, 3),
        ("S4", "C1", "R2", "2024-04-10", "2024-04-11", 4, 8),
        ("S5", "C4", "R2", "2024-05-01", "2024-05-02", 3, None),
        ("S6", "C4", "R2", "2024-06-01", "2024-06-03", None, 9),
    ], ["survey_id", "customer_id", "rep_id", "sent_date", "responded_date", "csat", "nps"],
        dates=("sent_date", "responded_date"), ints=("csat", "nps"))
    complaints = _frame([
        ("X1", "C1", None, "2024-02-10", "billing", 1),        # owner K1 -> R1
        ("X2", "C2", "R3", "2024-03-01", "over-promising", 2),  # recorded R3
        ("X3", "C4", None, "2024-03-20", "after-sales", 1),     # gap: unattributed
        ("X4", "C1", None, "2024-04-01", "billing", 3),         # K1 ended 03-31: K2 -> R2
        ("X5", "C3", None, "2024-03-05", "after-sales", 2),     # K4 and K7: later K7 -> R2
    ], ["complaint_id", "customer_id", "rep_id", "created_date", "category", "severity"],
        dates=("created_date",), ints=("severity",))
    return {"reps": reps, "kpi_plans": plans, "plan_assignments": assignments,
            "customers": customers, "deals": deals, "contracts": contracts,
            "surveys": surveys, "complaints": complaints}


@pytest.fixture(scope="module")
def built():
    return derived.build_all(tiny_tables(), "2024Q2")


@pytest.fixture(scope="module")
def panel(built):
    return built["rep_quarter_panel"].set_index(["rep_id", "quarter"])


PANEL_COLUMNS = [
    "rep_id", "team_id", "quarter", "plan_days", *WEIGHTS, "bookings", "log_bookings",
    "won_deals", "new_customers", "surveys_sent", "responses", "csat_responses",
    "csat_mean", "nps_responses", "nps", "response_rate", "complaints", "exposure",
    "renewals_due", "renewals_renewed", "churned_customers"]
EPISODE_COLUMNS = [
    "customer_id", "rep_id", "team_id", "start", "stop", "event", "quarter", "plan_id",
    *WEIGHTS, "segment", "first_day", "last_day"]
RENEWAL_COLUMNS = [
    "contract_id", "customer_id", "rep_id", "team_id", "end_date", "end_quarter",
    "renewed", "plan_id", *WEIGHTS, "segment", "annual_value", "tenure_days"]


def test_columns_as_documented(built):
    assert list(built["rep_quarter_panel"].columns) == PANEL_COLUMNS
    assert list(built["survival_episodes"].columns) == EPISODE_COLUMNS
    assert list(built["renewal_table"].columns) == RENEWAL_COLUMNS


def test_panel_rows_cover_employment_from_first_data_quarter(built):
    # R1 was hired in 2023 but the data start in 2024Q1; R3 left on 2024-03-31.
    keys = list(zip(built["rep_quarter_panel"].rep_id, built["rep_quarter_panel"].quarter))
    assert keys == [("R1", "2024Q1"), ("R1", "2024Q2"), ("R2", "2024Q1"),
                    ("R2", "2024Q2"), ("R3", "2024Q1")]


def test_time_weighted_weights(panel):
    # T1 in 2024Q1: P1 on Jan 1..Feb 14 = 31 + 14 = 45 days, P2 on Feb 15..Mar 31 =
    # 15 + 31 = 46 days. w_revenue = (45*1.0 + 46*0.5)/91 = 68/91; w_satisfaction = 23/91.
    row = panel.loc[("R1", "2024Q1")]
    assert row.plan_days == 91
    assert abs(row.w_revenue - 68 / 91) < TOL
    assert abs(row.w_satisfaction - 23 / 91) < TOL
    assert row.w_complaints == 0.0
    # R2 joined on Feb 15 but the weights are the team's over the whole quarter.
    assert abs(panel.loc[("R2", "2024Q1")].w_revenue - 68 / 91) < TOL
    assert abs(panel.loc[("R1", "2024Q2")].w_revenue - 0.5) < TOL
    # T2: plan only from Jan 11: 21 + 29 + 31 = 81 days, weights constant.
    row = panel.loc[("R3", "2024Q1")]
    assert row.plan_days == 81
    assert abs(row.w_revenue - 0.7) < TOL and abs(row.w_complaints - 0.3) < TOL


def test_no_plan_days_give_nan_weights():
    tables = tiny_tables()
    tables["plan_assignments"] = tables["plan_assignments"].iloc[:2]  # T2 loses P3
    panel = derived.rep_quarter_panel(tables, "2024Q2").set_index(["rep_id", "quarter"])
    assert panel.loc[("R3", "2024Q1")].plan_days == 0
    assert math.isnan(panel.loc[("R3", "2024Q1")].w_revenue)


def test_bookings_and_deals(panel):
    # Q1: R1 won D1 1000 + D2 500; R2 D6 400 (D5 lost); R3 D3 2000.
    # Q2: R2 D4 1200 + D7 450, neither new business; D8 is open.
    assert panel.loc[("R1", "2024Q1")].bookings == 1500.0
    assert panel.loc[("R1", "2024Q1")].won_deals == 2
    assert panel.loc[("R1", "2024Q1")].new_customers == 2
    assert panel.loc[("R1", "2024Q2")].bookings == 0.0
    assert panel.loc[("R1", "2024Q2")].log_bookings == 0.0
    assert panel.loc[("R2", "2024Q2")].bookings == 1650.0
    assert panel.loc[("R2", "2024Q2")].new_customers == 0
    assert abs(panel.loc[("R2", "2024Q2")].log_bookings - math.log(1651.0)) < TOL


def test_survey_columns(panel):
    r1 = panel.loc[("R1", "2024Q1")]  # S1 answered (5, 10), S2 unanswered
    assert (r1.surveys_sent, r1.responses, r1.csat_responses, r1.nps_responses) == (2, 1, 1, 1)
    assert r1.csat_mean == 5.0 and r1.nps == 100.0 and r1.response_rate == 0.5
    assert panel.loc[("R3", "2024Q1")].nps == -100.0  # S3 nps 3: one detractor
    r2 = panel.loc[("R2", "2024Q2")]  # S4 (4, 8), S5 (3, -), S6 (-, 9)
    assert (r2.surveys_sent, r2.responses, r2.csat_responses, r2.nps_responses) == (3, 3, 2, 2)
    assert r2.csat_mean == 3.5
    assert r2.nps == 50.0  # (1 promoter - 0 detractors) / 2 responses
    assert r2.response_rate == 1.0
    r2q1 = panel.loc[("R2", "2024Q1")]
    assert r2q1.surveys_sent == 0 and math.isnan(r2q1.response_rate)
    assert math.isnan(r2q1.nps) and math.isnan(r2q1.csat_mean)


def test_survey_counts(built):
    """Counts per rep and quarter sent; answers per score, responded surveys only."""
    counts = built["survey_counts"].set_index(["rep_id", "quarter"])
    assert list(counts.index) == [("R1", "2024Q1"), ("R2", "2024Q2"), ("R3", "2024Q1")]
    r1 = counts.loc[("R1", "2024Q1")]  # S1 answered (5, 10), S2 unanswered
    assert (r1.surveys_sent, r1.responses, r1.csat_5, r1.nps_10) == (2, 1, 1, 1)
    r2 = counts.loc[("R2", "2024Q2")]  # S4 (4, 8), S5 (3, -), S6 (-, 9)
    assert (r2.surveys_sent, r2.responses) == (3, 3)
    assert [r2[f"csat_{k}"] for k in derived.CSAT_SCORES] == [0, 0, 1, 1, 0]
    assert [r2[f"nps_{k}"] for k in derived.NPS_SCORES] == [0] * 8 + [1, 1, 0]
    assert str(counts["csat_1"].dtype) == "int64"


def test_survey_respondents(built):
    """Distinct customers who answered, per rep and quarter sent (S2 was not answered)."""
    resp = built["survey_respondents"]
    assert list(resp.itertuples(index=False, name=None)) == [
        ("R1", "C1", "2024Q1"), ("R2", "C1", "2024Q2"), ("R2", "C4", "2024Q2"),
        ("R3", "C2", "2024Q1")]


def test_survey_tables_need_only_surveys(built):
    """survey_tables reads only ``surveys`` and gives build_all's tables."""
    alone = derived.survey_tables({"surveys": tiny_tables()["surveys"]}, "2024Q2")
    for name in derived.SURVEY_TABLES:
        pd.testing.assert_frame_equal(alone[name], built[name], obj=name)


def test_exposure(panel):
    # Active days (d < cancel_date), 91-day quarters:
    # Q1 R1: K1 Jan 10..Mar 31 = 82, K4 Feb 1..Mar 31 = 60 -> 142/91
    # Q1 R2: K5 Feb 20..Mar 10 = 20, K7 Mar 1..31 = 31 -> 51/91
    # Q1 R3: K3 Jan 20..Mar 14 = 12 + 29 + 14 = 55 -> 55/91
    # Q2 R1: K4 Apr 1..May 15 = 45 -> 45/91
    # Q2 R2: K2 Apr 1..Jun 30 = 91, K6 Apr 15..Jun 30 = 77 -> 168/91
    expected = {("R1", "2024Q1"): 142, ("R2", "2024Q1"): 51, ("R3", "2024Q1"): 55,
                ("R1", "2024Q2"): 45, ("R2", "2024Q2"): 168}
    for key, days in expected.items():
        assert abs(panel.loc[key].exposure - days / 91) < TOL, key


def test_complaint_attribution(panel, built, caplog):
    # X1 -> R1 (owner), X2 -> R3 (recorded), X5 -> R2 (K7 started after K4), X4 -> R2
    # (K2 active on Apr 1, K1 ended Mar 31); X3 falls in C4's gap: unattributed.
    assert panel.loc[("R1", "2024Q1")].complaints == 1
    assert panel.loc[("R2", "2024Q1")].complaints == 1
    assert panel.loc[("R3", "2024Q1")].complaints == 1
    assert panel.loc[("R2", "2024Q2")].complaints == 1
    assert panel.complaints.sum() == 4
    diag = built["diagnostics"].set_index("check_name").n
    assert diag["unattributed_complaints"] == 1
    assert diag["complaints_attributed_to_owner"] == 3
    with caplog.at_level("WARNING", logger="analysis.derived"):
        derived.rep_quarter_panel(tiny_tables(), "2024Q2")
    assert "1 unattributed_complaints" in caplog.text


def test_renewals_and_churn_in_panel(panel):
    # Q1 renewal decisions: K1 (R1, renewed), K5 (R2, churned), K7 (R2, renewed);
    # K3 was cancelled. Q2: K4 (R1, churned), K6 (R2, renewed); K2 ends after D.
    assert (panel.loc[("R1", "2024Q1")].renewals_due, panel.loc[("R1", "2024Q1")].renewals_renewed) == (1, 1)
    assert (panel.loc[("R2", "2024Q1")].renewals_due, panel.loc[("R2", "2024Q1")].renewals_renewed) == (2, 1)
    assert (panel.loc[("R1", "2024Q2")].renewals_due, panel.loc[("R1", "2024Q2")].renewals_renewed) == (1, 0)
    assert (panel.loc[("R2", "2024Q2")].renewals_due, panel.loc[("R2", "2024Q2")].renewals_renewed) == (1, 1)
    # C2 churns Mar 15 (cancel) under R3; C3 churns May 15 (K4 end) under R1.
    assert panel.loc[("R3", "2024Q1")].churned_customers == 1
    assert panel.loc[("R1", "2024Q2")].churned_customers == 1
    assert panel.churned_customers.sum() == 2


def _episodes(built):
    ep = built["survival_episodes"]
    return [tuple(r) for r in ep[["customer_id", "rep_id", "quarter", "plan_id", "start",
                                   "stop", "event"]].itertuples(index=False)]


def test_episode_splits_and_churn_rules(built):
    # Day d occupies tenure (d - acquired, d - acquired + 1].
    assert _episodes(built) == [
        # C1 (acquired Jan 10): P1 until Feb 14 (day 35), P2 to Mar 31 (day 81), then
        # the renewal to R2 and 2024Q2 to D = Jun 30 (day 172): censored.
        ("C1", "R1", "2024Q1", "P1", 0, 36, 0),
        ("C1", "R1", "2024Q1", "P2", 36, 82, 0),
        ("C1", "R2", "2024Q2", "P2", 82, 173, 0),
        # C2 (Jan 20): cancelled Mar 15 = day 55, at risk through it: event at 56.
        ("C2", "R3", "2024Q1", "P3", 0, 56, 1),
        # C3 (Feb 1): P2 from Feb 15 (day 14); K7 makes R2 owner Mar 1..31 (days 29..59);
        # back to R1 in Q2 until the churned K4 ends May 15 = day 104: event at 105.
        ("C3", "R1", "2024Q1", "P1", 0, 14, 0),
        ("C3", "R1", "2024Q1", "P2", 14, 29, 0),
        ("C3", "R2", "2024Q1", "P2", 29, 60, 0),
        ("C3", "R1", "2024Q2", "P2", 60, 105, 1),
        # C4 (Feb 20): K5 to Mar 10 (day 19) is "churned" but K6 starts after it, so no
        # churn; not at risk Mar 11..Apr 14; K6 from Apr 15 (day 55) to Jun 30 (day 131).
        ("C4", "R2", "2024Q1", "P2", 0, 20, 0),
        ("C4", "R2", "2024Q2", "P2", 55, 132, 0),
    ]
    ep = built["survival_episodes"]
    assert (ep.start < ep.stop).all()
    assert ep.groupby("customer_id").event.sum().to_dict() == {"C1": 0, "C2": 1, "C3": 1, "C4": 0}
    c2 = ep[ep.customer_id == "C2"].iloc[0]
    assert c2.team_id == "T2" and c2.segment == "Mid-market"
    assert c2.w_complaints == 0.3
    assert c2.last_day == pd.Timestamp("2024-03-15")


def test_episode_without_plan_carries_null_plan():
    tables = tiny_tables()
    c = tables["contracts"]
    c.loc[c.contract_id == "K3", "start_date"] = pd.Timestamp("2024-01-05")
    tables["customers"].loc[tables["customers"].customer_id == "C2", "acquired_date"] = \
        pd.Timestamp("2024-01-05")
    ep = derived.survival_episodes(tables, "2024Q2")
    c2 = ep[ep.customer_id == "C2"]
    # Jan 5..10 without a plan (days 0..5), P3 from Jan 11: split at tenure 6.
    assert list(zip(c2.plan_id, c2.start, c2.stop)) == [(None, 0, 6), ("P3", 6, 71)]
    assert math.isnan(c2.iloc[0].w_revenue)


def test_cancel_on_start_day_is_one_day_episode():
    tables = tiny_tables()
    c = tables["contracts"]
    c.loc[c.contract_id == "K3", "cancel_date"] = pd.Timestamp("2024-01-20")
    ep = derived.survival_episodes(tables, "2024Q2")
    assert list(ep[ep.customer_id == "C2"][["start", "stop", "event"]].itertuples(
        index=False, name=None)) == [(0, 1, 1)]


def test_earliest_cancel_wins_over_later_churned_end():
    tables = tiny_tables()
    c = tables["contracts"]
    c.loc[c.contract_id == "K4", "cancel_date"] = pd.Timestamp("2024-04-10")
    ep = derived.survival_episodes(tables, "2024Q2")
    last = ep[ep.customer_id == "C3"].iloc[-1]
    # Apr 10 = day 69 after Feb 1: event at 70.
    assert (last.stop, last.event, last.quarter) == (70, 1, "2024Q2")


def test_earlier_quarter_sees_its_own_as_of(built):
    # Analysed as 2024Q1 (D = Mar 31) the tables stop there; C1 is censored at day 82.
    tables = tiny_tables()
    ep = derived.survival_episodes(tables, "2024Q1")
    assert ep.last_day.max() == pd.Timestamp("2024-03-31")
    assert set(ep.quarter) == {"2024Q1"}


def test_renewal_table(built):
    rt = built["renewal_table"]
    assert list(rt.contract_id) == ["K5", "K1", "K7", "K4", "K6"]  # by end_date, id
    by_id = rt.set_index("contract_id")
    assert by_id.renewed.to_dict() == {"K5": 0, "K1": 1, "K7": 1, "K4": 0, "K6": 1}
    assert by_id.end_quarter.to_dict() == {"K5": "2024Q1", "K1": "2024Q1", "K7": "2024Q1",
                                           "K4": "2024Q2", "K6": "2024Q2"}
    # tenure: Mar 10 - Feb 20 = 19; Mar 31 - Jan 10 = 81; Mar 31 - Feb 1 = 59;
    # May 15 - Feb 1 = 104; Jun 30 - Feb 20 = 131.
    assert by_id.tenure_days.to_dict() == {"K5": 19, "K1": 81, "K7": 59, "K4": 104, "K6": 131}
    assert (by_id.plan_id == "P2").all()  # every end_date is after T1's Feb 15 switch
    assert by_id.loc["K7", "rep_id"] == "R2" and by_id.loc["K7", "team_id"] == "T1"
    assert by_id.loc["K4", "segment"] == "Enterprise"
    assert by_id.loc["K4", "annual_value"] == 9000.0


def test_renewal_plan_on_end_date():
    tables = tiny_tables()
    c = tables["contracts"]
    c.loc[c.contract_id == "K1", "end_date"] = pd.Timestamp("2024-02-14")  # last P1 day
    rt = derived.renewal_table(tables, "2024Q2").set_index("contract_id")
    assert rt.loc["K1", "plan_id"] == "P1" and rt.loc["K1", "w_revenue"] == 1.0


def test_outputs_deterministic_and_inputs_untouched():
    tables = tiny_tables()
    before = {k: v.copy() for k, v in tables.items()}
    a = derived.build_all(tables, "2024Q2")
    b = derived.build_all(tables, "2024Q2")
    for name in a:
        pd.testing.assert_frame_equal(a[name], b[name])
    for k in tables:
        pd.testing.assert_frame_equal(tables[k], before[k])


def test_dtypes(built):
    p = built["rep_quarter_panel"]
    assert p.plan_days.dtype == np.int64 and p.exposure.dtype == np.float64
    ep = built["survival_episodes"]
    assert ep.start.dtype == np.int64 and ep.first_day.dtype == "datetime64[ns]"
    assert built["renewal_table"].end_date.dtype == "datetime64[ns]"


def test_same_owner_runs_merge_across_contract_boundary():
    # K1 ends Feb 29 and K2 (now also R1's) starts Mar 1: no split on Mar 1.
    tables = tiny_tables()
    c = tables["contracts"]
    c.loc[c.contract_id == "K1", "end_date"] = pd.Timestamp("2024-02-29")
    c.loc[c.contract_id == "K2", ["start_date", "rep_id"]] = [pd.Timestamp("2024-03-01"), "R1"]
    ep = derived.survival_episodes(tables, "2024Q2")
    c1 = ep[ep.customer_id == "C1"]
    assert list(zip(c1.rep_id, c1.plan_id, c1.start, c1.stop)) == [
        ("R1", "P1", 0, 36), ("R1", "P2", 36, 82), ("R1", "P2", 82, 173)]


# --- the same SQL in PostgreSQL -------------------------------------------------------

_PG_TYPES = {"id": "VARCHAR", "str": "VARCHAR", "enum": "VARCHAR", "date": "DATE",
             "float": "DOUBLE PRECISION", "int": "BIGINT", "bool": "BOOLEAN"}


def _pg_value(v):
    if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)) or v is pd.NaT:
        return None
    if isinstance(v, pd.Timestamp):
        return v.date()
    return v.item() if hasattr(v, "item") else v


def _run_in_postgres(url: str, tables: dict, quarter: str) -> dict[str, pd.DataFrame]:
    """Load the typed tables into temporary PostgreSQL tables and run the SQL files."""
    import psycopg

    from analysis.contract import TABLES
    from analysis.quarters import quarter_end, quarter_start

    quarters = derived.analysed_quarters(tables, quarter)
    as_of, first_day = quarter_end(quarter), quarter_start(quarters[0])
    inputs = {**{n: tables[n][list(c)] for n, c in derived.INPUT_COLUMNS.items()},
              "quarters": derived.quarters_frame(quarters)}
    types = {n: {c: _PG_TYPES[TABLES[n].column(c).kind] for c in cols}
             for n, cols in derived.INPUT_COLUMNS.items()}
    types["quarters"] = {"quarter": "VARCHAR", "q_start": "DATE", "q_end": "DATE",
                         "n_days": "BIGINT", "q_key": "INTEGER"}
    out = {}
    with psycopg.connect(url) as con:
        for name, df in inputs.items():
            cols = ", ".join(f'"{c}" {t}' for c, t in types[name].items())
            con.execute(f'CREATE TEMP TABLE "{name}" ({cols})')
            marks = ", ".join(["%s"] * len(df.columns))
            with con.cursor() as cur:
                cur.executemany(f'INSERT INTO "{name}" VALUES ({marks})',
                                [tuple(_pg_value(v) for v in row)
                                 for row in df.astype(object).itertuples(index=False)])
        for name in ("rep_quarter_panel", "survival_episodes", "renewal_table",
                     *derived.SURVEY_TABLES):
            for block in derived.block_order(name):
                exists = con.execute("SELECT to_regclass(%s)", (f"pg_temp.{block}",)).fetchone()[0]
                if exists is None:
                    sql = derived.read_sql(block)
                    con.execute(f"CREATE TEMP TABLE {block} AS " + derived.pyformat_params(sql),
                                derived.sql_params(sql, as_of, first_day))
            sql = derived.read_sql(name)
            cur = con.execute(derived.pyformat_params(sql), derived.sql_params(sql, as_of, first_day))
            df = pd.DataFrame(cur.fetchall(), columns=[d.name for d in cur.description])
            for c in df.columns:  # numeric (from SUM/AVG in PostgreSQL) -> float
                if df[c].map(lambda v: type(v).__name__ == "Decimal").any():
                    df[c] = df[c].astype(float)
            out[name] = derived.tidy_result(name, df)
        con.rollback()
    return out


@pytest.mark.postgres
def test_same_results_in_postgres(built, monkeypatch):
    url = os.environ.get("KPISAT_TEST_PG_URL")
    if not url:
        pytest.skip("set KPISAT_TEST_PG_URL to a PostgreSQL database to run this test")
    if os.environ.get("KPISAT_TEST_PG_PASSWORD"):  # CI's throwaway server (.ci/postgres.sh)
        monkeypatch.setenv("PGPASSWORD", os.environ["KPISAT_TEST_PG_PASSWORD"])
    pg = _run_in_postgres(url, tiny_tables(), "2024Q2")
    keys = {"rep_quarter_panel": ["rep_id", "quarter"],
            "survival_episodes": ["customer_id", "start"],
            "renewal_table": ["contract_id"],
            "survey_counts": ["rep_id", "quarter"],
            "survey_respondents": ["rep_id", "customer_id", "quarter"]}
    for name, df in pg.items():
        ddb = built[name]
        assert len(ddb) > 0
        key = keys[name]  # re-sort: string collations differ between the engines
        pd.testing.assert_frame_equal(
            df.sort_values(key).reset_index(drop=True)[list(ddb.columns)],
            ddb.sort_values(key).reset_index(drop=True),
            check_dtype=False, check_exact=False, rtol=1e-12)


def test_empty_event_tables():
    tables = tiny_tables()
    for name in ("complaints", "surveys", "deals"):
        tables[name] = tables[name].iloc[:0]
    out = derived.build_all(tables, "2024Q2")
    p = out["rep_quarter_panel"]
    assert len(p) == 5 and p.complaints.sum() == 0 and p.surveys_sent.sum() == 0
    assert (p.bookings == 0).all()
    assert len(out["survival_episodes"]) == 10
