"""The as-of view: rows that begin later are invisible, later facts are unknown."""

from __future__ import annotations

from datetime import date

import pandas as pd

from analysis.asof import as_of_view

DAY = date(2025, 9, 30)
NaT = pd.NaT


def dates(*values) -> pd.Series:
    return pd.Series(pd.to_datetime(list(values)), dtype="datetime64[ns]")


def view(name: str, df: pd.DataFrame) -> pd.DataFrame:
    before = df.copy()
    out = as_of_view({name: df}, DAY)[name]
    pd.testing.assert_frame_equal(df, before)  # pure
    assert list(out.columns) == list(df.columns)
    assert (out.dtypes == df.dtypes).all()
    return out


def test_reps_hired_later_vanish_and_later_exits_are_unknown():
    df = pd.DataFrame({"rep_id": ["a", "b", "c", "d"], "team_id": "T",
                       "hire_date": dates("2020-01-01", "2025-09-30", "2025-10-01", "2021-01-01"),
                       "exit_date": dates(None, "2025-12-01", None, "2025-09-30")})
    out = view("reps", df)
    assert out["rep_id"].tolist() == ["a", "b", "d"]
    assert out["exit_date"].isna().tolist() == [True, True, False]


def test_customers_acquired_later_vanish():
    df = pd.DataFrame({"customer_id": ["a", "b"], "acquired_date": dates("2025-09-30", "2025-10-01")})
    assert view("customers", df)["customer_id"].tolist() == ["a"]


def test_deals_closed_later_read_as_open():
    df = pd.DataFrame({"deal_id": ["won", "late", "future", "lost_late", "open"],
                       "created_date": dates("2025-01-01", "2025-09-01", "2025-10-02", "2025-08-01", "2025-09-01"),
                       "close_date": dates("2025-09-30", "2025-10-15", "2025-10-20", "2025-12-01", None),
                       "status": ["won", "won", "won", "lost", "open"],
                       "amount": [1.0, 2.0, 3.0, 4.0, 5.0]})
    out = view("deals", df).set_index("deal_id")
    assert out.index.tolist() == ["won", "late", "lost_late", "open"]
    assert out["status"].tolist() == ["won", "open", "open", "open"]
    assert out["close_date"].notna().tolist() == [True, False, False, False]


def test_contracts_later_cancel_and_outcome_are_unknown():
    df = pd.DataFrame({"contract_id": ["ended", "running", "cancel_late", "cancel_known", "future"],
                       "start_date": dates("2024-01-01", "2025-01-01", "2025-01-01", "2025-01-01", "2025-10-01"),
                       "end_date": dates("2025-09-30", "2025-12-31", "2026-06-30", "2026-06-30", "2026-09-30"),
                       "outcome": ["renewed", "churned", "churned", "churned", "pending"],
                       "cancel_date": dates(None, None, "2025-11-01", "2025-09-15", None)})
    out = view("contracts", df).set_index("contract_id")
    assert out.index.tolist() == ["ended", "running", "cancel_late", "cancel_known"]
    assert out["outcome"].tolist() == ["renewed", "pending", "pending", "pending"]
    assert out["cancel_date"].isna().tolist() == [True, True, True, False]


def test_surveys_answered_later_read_as_unanswered():
    df = pd.DataFrame({"survey_id": ["on_time", "late", "future"],
                       "sent_date": dates("2025-09-01", "2025-09-25", "2025-10-01"),
                       "responded_date": dates("2025-09-30", "2025-10-02", "2025-10-03"),
                       "csat": pd.array([5, 4, 3], dtype="Int64"),
                       "nps": pd.array([9, 8, 7], dtype="Int64")})
    out = view("surveys", df)
    assert out["survey_id"].tolist() == ["on_time", "late"]
    assert out["responded_date"].isna().tolist() == [False, True]
    assert out["csat"].isna().tolist() == [False, True] and out["nps"].isna().tolist() == [False, True]


def test_complaints_activities_and_assignments_after_the_day_vanish():
    tables = {
        "complaints": pd.DataFrame({"complaint_id": ["a", "b"], "created_date": dates("2025-09-30", "2025-10-01")}),
        "activities": pd.DataFrame({"activity_id": ["a", "b"], "activity_date": dates("2025-07-01", "2026-01-01")}),
        "plan_assignments": pd.DataFrame({"team_id": ["T", "T"], "plan_id": ["P1", "P2"],
                                          "valid_from": dates("2025-01-01", "2025-10-01"),
                                          "valid_to": dates("2025-09-30", None)}),
    }
    out = as_of_view(tables, DAY)
    assert out["complaints"]["complaint_id"].tolist() == ["a"]
    assert out["activities"]["activity_id"].tolist() == ["a"]
    assert out["plan_assignments"]["plan_id"].tolist() == ["P1"]
    assert out["plan_assignments"]["valid_to"].tolist() == [pd.Timestamp("2025-09-30")]  # scheduled


def test_invoices_due_later_vanish_and_later_payments_are_unknown():
    df = pd.DataFrame({"invoice_id": ["paid", "paid_late", "not_due"],
                       "due_date": dates("2025-08-01", "2025-09-01", "2025-10-15"),
                       "amount": [10.0, 20.0, 30.0],
                       "paid_date": dates("2025-08-02", "2025-10-05", None),
                       "paid_amount": [10.0, 20.0, None]})
    out = view("invoices", df)
    assert out["invoice_id"].tolist() == ["paid", "paid_late"]
    assert out["paid_date"].isna().tolist() == [False, True]
    assert out["paid_amount"].isna().tolist() == [False, True]


def test_tables_without_rules_are_copied_and_index_is_fresh():
    plans = pd.DataFrame({"plan_id": ["P1"], "w_revenue": [1.0]}, index=[7])
    out = as_of_view({"kpi_plans": plans}, DAY)["kpi_plans"]
    assert out is not plans and out.index.tolist() == [0]
    out.loc[0, "w_revenue"] = 0.5
    assert plans.loc[7, "w_revenue"] == 1.0


def test_view_of_validated_fixture_keeps_dtypes():
    from pathlib import Path

    from analysis.sources import open_source
    from analysis.validate import validate

    raw = open_source(Path(__file__).parent / "fixtures" / "company").read()
    tables = validate(raw, raw.as_of).tables
    out = as_of_view(tables, DAY)
    for name, df in tables.items():
        assert (out[name].dtypes == df.dtypes).all(), name
    deals = out["deals"].set_index("deal_id")
    assert "D6" not in deals.index  # created 2025-11-01
    assert deals.loc["D8", "status"] == "open"  # closed 2025-11-20
    assert out["surveys"].set_index("survey_id").loc["S4"].isna()[["responded_date", "csat", "nps"]].all()
