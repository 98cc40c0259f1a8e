"""Validation: typed output, one reason per quarantined row, cascades, fatal problems."""

from __future__ import annotations

import time
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.config import SAMPLE_DIR
from analysis.errors import InputError, ParameterError
from analysis.quarantine import QUARANTINE_COLUMNS, REASONS
from analysis.sources import RawData, open_source
from analysis.validate import validate

COMPANY = Path(__file__).parent / "fixtures" / "company"
AS_OF = date(2025, 12, 31)

#: A valid extra row per table, varied by each case below.
GOOD = {
    "reps": dict(rep_id="R9", team_id="T1", region="North", hire_date="2024-01-01", exit_date=""),
    "kpi_plans": dict(plan_id="P9", name="x", w_revenue="0.5", w_new_customers="0.1",
                      w_collection="0.1", w_satisfaction="0.1", w_complaints="0.1",
                      w_process="0.1", satisfaction_scope="team"),
    "plan_assignments": dict(team_id="T3", plan_id="P1", valid_from="2024-01-01", valid_to=""),
    "customers": dict(customer_id="C9", segment="SMB", region="", acquired_date="2024-01-01",
                      acquiring_rep_id="R1"),
    "deals": dict(deal_id="D9", customer_id="C1", rep_id="R1", created_date="2024-01-01",
                  close_date="2024-02-01", status="won", amount="10", is_new_business="false"),
    "contracts": dict(contract_id="K9", customer_id="C1", rep_id="R1", start_date="2024-01-01",
                      end_date="2024-12-31", annual_value="10", outcome="renewed", cancel_date=""),
    "surveys": dict(survey_id="S9", customer_id="C1", rep_id="R1", sent_date="2024-01-01",
                    responded_date="2024-01-02", csat="4", nps="9"),
    "complaints": dict(complaint_id="M9", customer_id="C1", rep_id="", created_date="2024-01-01",
                       category="billing", severity="2"),
    "invoices": dict(invoice_id="I9", customer_id="C1", rep_id="R1", due_date="2024-01-01",
                     amount="10", paid_date="2024-01-05", paid_amount="10"),
    "activities": dict(activity_id="A9", rep_id="R1", customer_id="", activity_date="2024-01-01",
                       type="visit"),
}

#: (table, changes to GOOD[table], expected reason, expected column)
CASES = [
    ("reps", dict(rep_id=""), "missing id", "rep_id"),
    ("reps", dict(rep_id="   "), "missing id", "rep_id"),
    ("reps", dict(team_id=""), "missing value", "team_id"),
    ("reps", dict(hire_date="2024/01/01"), "not a date", "hire_date"),
    ("reps", dict(hire_date="2024-02-30"), "not a date", "hire_date"),
    ("reps", dict(hire_date="1985-01-01"), "date before 1990-01-01", "hire_date"),
    ("reps", dict(hire_date="2026-01-01"), "future-dated", "hire_date"),
    ("reps", dict(exit_date="2023-01-01"), "exit_date before hire_date", "exit_date"),
    ("reps", dict(exit_date="9999-12-31"), "date out of range", "exit_date"),
    ("kpi_plans", dict(w_revenue="abc"), "not a number", "w_revenue"),
    ("kpi_plans", dict(w_revenue="1.5", w_process="-0.4"), "out of range", "w_revenue"),
    ("kpi_plans", dict(w_revenue="0.6"), "weights do not sum to 1", "w_revenue"),
    ("kpi_plans", dict(satisfaction_scope="company"), "not an allowed value", "satisfaction_scope"),
    ("plan_assignments", dict(plan_id="P7"), "unknown plan", "plan_id"),
    ("plan_assignments", dict(team_id="T7"), "unknown team", "team_id"),
    ("plan_assignments", dict(valid_to="2023-01-01"), "valid_to before valid_from", "valid_to"),
    ("customers", dict(acquiring_rep_id="R7"), "unknown rep", "acquiring_rep_id"),
    ("customers", dict(segment=""), "missing value", "segment"),
    ("deals", dict(status="Won"), "not an allowed value", "status"),
    ("deals", dict(amount="-1"), "out of range", "amount"),
    ("deals", dict(amount="1,000"), "not a number", "amount"),
    ("deals", dict(is_new_business="yes"), "not a boolean", "is_new_business"),
    ("deals", dict(close_date=""), "won deal without close_date", "close_date"),
    ("deals", dict(status="open"), "open deal with close_date", "close_date"),
    ("deals", dict(close_date="2023-12-31"), "close_date before created_date", "close_date"),
    ("deals", dict(close_date="2026-01-05"), "future-dated", "close_date"),
    ("deals", dict(customer_id="X1"), "unknown customer", "customer_id"),
    ("deals", dict(rep_id="R7", status="lost"), "unknown rep", "rep_id"),
    ("contracts", dict(outcome="lapsed"), "not an allowed value", "outcome"),
    ("contracts", dict(end_date="2023-06-01"), "end_date before start_date", "end_date"),
    ("contracts", dict(cancel_date="2023-06-01"), "cancel_date before start_date", "cancel_date"),
    ("contracts", dict(cancel_date="2026-02-01"), "future-dated", "cancel_date"),
    ("contracts", dict(customer_id="X1"), "unknown customer", "customer_id"),
    ("surveys", dict(csat="4.5"), "not an integer", "csat"),
    ("surveys", dict(csat="6"), "out of range", "csat"),
    ("surveys", dict(nps="11"), "out of range", "nps"),
    ("surveys", dict(responded_date=""), "csat/nps without responded_date", "responded_date"),
    ("surveys", dict(responded_date="2023-12-01"), "responded_date before sent_date", "responded_date"),
    ("complaints", dict(severity="0"), "out of range", "severity"),
    ("complaints", dict(severity=""), "missing value", "severity"),
    ("complaints", dict(rep_id="R7"), "unknown rep", "rep_id"),
    ("invoices", dict(paid_date=""), "paid_amount without paid_date", "paid_amount"),
    ("invoices", dict(paid_date="2026-03-01"), "future-dated", "paid_date"),
    ("activities", dict(type="lunch"), "not an allowed value", "type"),
    ("activities", dict(customer_id="X1"), "unknown customer", "customer_id"),
]


@pytest.fixture(scope="module")
def base() -> RawData:
    return open_source(COMPANY).read()


def with_rows(base: RawData, table: str, *rows: dict) -> RawData:
    """``base`` with ``rows`` appended to ``table`` (the original frames untouched)."""
    extra = pd.DataFrame([{**GOOD[table], **r} for r in rows], dtype=str)
    tables = dict(base.tables)
    tables[table] = pd.concat([base.tables[table], extra], ignore_index=True)
    return RawData(tables=tables, locations=base.locations, as_of=base.as_of)


def assert_counts_add_up(v) -> None:
    for t in v.rows_read:
        assert v.rows_read[t] == v.rows_used[t] + v.rows_quarantined[t]
        assert v.rows_used[t] == len(v.tables[t])
        assert v.rows_quarantined[t] == (v.quarantine["table"] == t).sum() == sum(v.by_reason[t].values())
    assert not v.quarantine.duplicated(["table", "row"]).any()
    assert set(v.quarantine["reason"]) <= set(REASONS)


# ---------------------------------------------------------------- the clean fixture
def test_fixture_is_clean_and_typed(base):
    v = validate(base, AS_OF)
    assert v.quarantine.empty and list(v.quarantine.columns) == list(QUARANTINE_COLUMNS)
    assert v.rows_used == v.rows_read and v.as_of == AS_OF
    deals = v.tables["deals"]
    assert deals["created_date"].dtype == "datetime64[ns]"
    assert deals["amount"].dtype == "float64" and deals["is_new_business"].dtype == bool
    assert deals["close_date"].isna().sum() == 1 and deals.loc[5, "close_date"] is pd.NaT
    assert deals["deal_id"].dtype == object and deals["deal_id"].map(type).eq(str).all()
    surveys = v.tables["surveys"]
    assert str(surveys["csat"].dtype) == "Int64" and surveys["csat"].isna().sum() == 1
    assert v.tables["complaints"].loc[1, "rep_id"] is None
    assert list(v.tables["reps"].columns) == ["rep_id", "team_id", "region", "hire_date", "exit_date"]
    assert v.data_quality()["quarantined"] == {}


def test_inputs_are_not_mutated(base):
    copies = {n: df.copy() for n, df in base.tables.items()}
    validate(with_rows(base, "deals", dict(amount="x")), AS_OF)
    validate(base, AS_OF)
    for n, df in base.tables.items():
        pd.testing.assert_frame_equal(df, copies[n])


# ---------------------------------------------------------------- one reason per bad row
@pytest.mark.parametrize("table, change, reason, column", CASES,
                         ids=[f"{c[0]}-{c[2]}" for c in CASES])
def test_bad_row_is_quarantined_with_its_reason(base, table, change, reason, column):
    raw = with_rows(base, table, change)
    v = validate(raw, AS_OF)
    assert_counts_add_up(v)
    q = v.quarantine
    assert len(q) == 1, q
    line = q.iloc[0]
    assert (line["table"], line["reason"], line["column"]) == (table, reason, column)
    assert line["row"] == len(base.tables[table]) + 1  # 1-based, header excluded
    assert v.rows_used[table] == len(base.tables[table])
    expected_raw = {**GOOD[table], **change}[column]
    assert line["raw_value"] == expected_raw  # as read, even when empty


def test_every_reason_has_a_test():
    tested = {c[2] for c in CASES} | {"duplicate row", "conflicting duplicate id", "rep quarantined",
                                      "customer quarantined", "plan quarantined",
                                      "overlapping plan assignment"}
    assert tested == set(REASONS)


def test_first_failing_check_wins(base):
    v = validate(with_rows(base, "deals", dict(amount="x", status="bogus", created_date="2030-01-01")),
                 AS_OF)
    assert v.quarantine["reason"].tolist() == ["not a number"]


def test_duplicates(base):
    raw = with_rows(base, "deals", {}, {}, {}, dict(deal_id="D10"), dict(deal_id="D10", amount="11"))
    v = validate(raw, AS_OF)
    assert_counts_add_up(v)
    got = v.quarantine[["id", "reason"]].values.tolist()
    assert got == [["D9", "duplicate row"], ["D9", "duplicate row"],
                   ["D10", "conflicting duplicate id"], ["D10", "conflicting duplicate id"]]
    assert (v.tables["deals"]["deal_id"] == "D9").sum() == 1


def test_conflict_with_an_existing_id_quarantines_all_copies(base):
    v = validate(with_rows(base, "reps", dict(rep_id="R4", region="West")), AS_OF)
    reps = v.quarantine.query("table == 'reps'")
    assert reps["id"].tolist() == ["R4", "R4"] and set(reps["reason"]) == {"conflicting duplicate id"}
    # R4's customers, deals, contracts, surveys, invoices, activities cascade
    cascade = v.quarantine.query("table != 'reps'")
    assert set(cascade["reason"]) == {"rep quarantined", "customer quarantined"}
    assert "C4" not in set(v.tables["customers"]["customer_id"])
    assert "D6" not in set(v.tables["deals"]["deal_id"])  # open deal of R4
    assert_counts_add_up(v)


def test_bad_plan_cascades_to_its_assignments(base):
    tables = dict(base.tables)
    plans = base.tables["kpi_plans"].copy()
    plans.loc[plans["plan_id"] == "P2", "w_process"] = "0.2"
    tables["kpi_plans"] = plans
    v = validate(RawData(tables=tables, locations=base.locations), AS_OF)
    assert_counts_add_up(v)
    assert v.by_reason["kpi_plans"] == {"weights do not sum to 1": 1}
    assert v.by_reason["plan_assignments"] == {"plan quarantined": 2}
    assert set(v.tables["plan_assignments"]["plan_id"]) == {"P1"}


def test_overlapping_assignments_are_all_quarantined(base):
    raw = with_rows(base, "plan_assignments",
                    dict(team_id="T3", plan_id="P1", valid_from="2024-01-01", valid_to="2024-06-30"),
                    dict(team_id="T3", plan_id="P2", valid_from="2024-06-30", valid_to="2024-12-31"),
                    dict(team_id="T3", plan_id="P1", valid_from="2025-01-01", valid_to=""))
    tables = dict(raw.tables)
    tables["reps"] = pd.concat([raw.tables["reps"], pd.DataFrame([{**GOOD["reps"], "team_id": "T3"}])],
                               ignore_index=True)
    v = validate(RawData(tables=tables, locations=raw.locations), AS_OF)
    assert_counts_add_up(v)
    q = v.quarantine
    assert q["reason"].tolist() == ["overlapping plan assignment"] * 2
    assert q["id"].tolist() == ["T3/P1/2024-01-01", "T3/P2/2024-06-30"]


def test_lost_and_open_deals_may_name_prospects(base):
    v = validate(with_rows(base, "deals", dict(customer_id="PROSPECT", status="lost"),
                           dict(deal_id="D10", customer_id="PROSPECT", status="open", close_date="")),
                 AS_OF)
    assert v.quarantine.empty


# ---------------------------------------------------------------- parsing
def test_lenient_but_exact_parsing(base):
    raw = with_rows(base, "deals", dict(is_new_business="TRUE"), dict(deal_id="D10", is_new_business="0"),
                    dict(deal_id="D11", amount=" 12.5 "))
    raw2 = with_rows(raw, "surveys", dict(csat="4.0", nps=""))
    v = validate(raw2, AS_OF)
    assert v.quarantine.empty
    d = v.tables["deals"].set_index("deal_id")
    assert d.loc["D9", "is_new_business"] and not d.loc["D10", "is_new_business"]
    assert d.loc["D11", "amount"] == 12.5
    s = v.tables["surveys"].set_index("survey_id")
    assert s.loc["S9", "csat"] == 4 and pd.isna(s.loc["S9", "nps"])


def test_typed_columns_are_accepted(base):
    v0 = validate(base, AS_OF)
    tables = dict(base.tables)
    tables["deals"] = v0.tables["deals"].assign(
        created_date=v0.tables["deals"]["created_date"].astype("datetime64[us]"))
    v = validate(RawData(tables=tables, locations=base.locations), AS_OF)
    assert v.quarantine.empty
    pd.testing.assert_frame_equal(v.tables["deals"], v0.tables["deals"])


# ---------------------------------------------------------------- fatal problems
def test_missing_column_names_file_and_column(base):
    tables = dict(base.tables)
    tables["deals"] = base.tables["deals"].drop(columns=["amount"])
    with pytest.raises(InputError) as e:
        validate(RawData(tables=tables, locations=base.locations), AS_OF)
    assert str(COMPANY / "deals.csv") in str(e.value) and "'amount'" in str(e.value)
    assert e.value.column == "amount"


def test_all_fatal_problems_at_once(base):
    tables = dict(base.tables)
    del tables["contracts"]
    tables["deals"] = base.tables["deals"].drop(columns=["amount", "status"])
    with pytest.raises(InputError) as e:
        validate(RawData(tables=tables, locations=base.locations), AS_OF)
    msg = str(e.value)
    assert "3 problems" in msg and "contracts" in msg and "'amount'" in msg and "'status'" in msg


def test_as_of_is_required(base):
    with pytest.raises(ParameterError, match="as_of"):
        validate(base, None)


def test_optional_column_may_be_absent(base):
    tables = dict(base.tables)
    tables["reps"] = base.tables["reps"].drop(columns=["region"])
    v = validate(RawData(tables=tables, locations=base.locations), AS_OF)
    assert "region" not in v.tables["reps"] and v.quarantine.empty


# ---------------------------------------------------------------- data_quality
def test_data_quality_lists_ids_up_to_ten(base):
    few = with_rows(base, "deals", *[dict(deal_id=f"F{i}", amount="x") for i in range(3)])
    many = with_rows(few, "complaints", *[dict(complaint_id=f"M{i}x", severity="9") for i in range(11)])
    dq = validate(many, AS_OF).data_quality()
    assert dq["quarantined"]["deals"]["not a number"] == {"count": 3, "ids": ["F0", "F1", "F2"]}
    assert dq["quarantined"]["complaints"]["out of range"] == {"count": 11}
    assert dq["rows_read"]["deals"] == dq["rows_used"]["deals"] + dq["rows_quarantined"]["deals"]
    assert dq["by_reason"]["complaints"] == {"out of range": 11}
    import json
    json.dumps(dq)  # plain JSON types


# ---------------------------------------------------------------- scale and the sample
def test_validation_is_vectorised(base):
    """100,000 deals validate in seconds (1,000,000 took about 6 s of CPU when written)."""
    n = 100_000
    rng = np.random.default_rng(0)
    created = pd.Timestamp("2022-01-01") + pd.to_timedelta(rng.integers(0, 900, n), unit="D")
    deals = pd.DataFrame({
        "deal_id": [f"D{i}" for i in range(n)], "customer_id": "C1", "rep_id": "R1",
        "created_date": created.strftime("%Y-%m-%d"),
        "close_date": (created + pd.Timedelta(days=30)).strftime("%Y-%m-%d"),
        "status": "won", "amount": "100", "is_new_business": "false"})
    tables = {**base.tables, "deals": deals}
    t0 = time.process_time()
    v = validate(RawData(tables=tables, locations=base.locations), AS_OF)
    assert v.rows_used["deals"] == n
    assert time.process_time() - t0 < 10


@pytest.mark.skipif(not any(SAMPLE_DIR.glob("*.csv")), reason="data/sample not generated yet")
def test_sample_company_validates_without_quarantine():
    raw = open_source(SAMPLE_DIR).read()
    v = validate(raw, raw.as_of or AS_OF)
    assert v.quarantine.empty, v.quarantine.groupby(["table", "reason"]).size()
