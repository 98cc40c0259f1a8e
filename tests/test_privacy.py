"""Privacy: keyed pseudonyms (consistent, key-dependent, no raw id left) and small cells."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.errors import ParameterError
from analysis.privacy import (COMPLEMENTARY, KEY_ENV, PRIMARY, pseudonym_key, pseudonymise,
                              pseudonymise_quarantine, pseudonymise_tables, suppress_small_cells)
from analysis.sources import open_source
from analysis.validate import validate

COMPANY = Path(__file__).parent / "fixtures" / "company"
KEY = b"test-key-0123456789abcdef"
OTHER = b"another-key-0123456789ab"


@pytest.fixture(scope="module")
def validated():
    return validate(open_source(COMPANY).read(), date(2025, 12, 31))


# ---------------------------------------------------------------- the key
def test_key_comes_from_the_environment_only():
    assert pseudonym_key({KEY_ENV: KEY.decode()}) == KEY
    for env in ({}, {KEY_ENV: ""}, {KEY_ENV: "   "}):
        with pytest.raises(ParameterError, match=KEY_ENV):
            pseudonym_key(env)
    with pytest.raises(ParameterError, match="at least"):
        pseudonym_key({KEY_ENV: "short"})


def test_unset_key_is_a_parameter_error(monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(ParameterError, match="not set"):
        pseudonym_key()


# ---------------------------------------------------------------- pseudonyms
def test_same_id_same_pseudonym_other_key_other_pseudonym():
    a = pseudonymise("R1", KEY, prefix="r_")
    assert a == pseudonymise("R1", KEY, prefix="r_")
    assert a.startswith("r_") and len(a) == 2 + 16 and "R1" not in a
    assert a != pseudonymise("R2", KEY, prefix="r_")
    assert a != pseudonymise("R1", OTHER, prefix="r_")


def test_tables_are_mapped_consistently_and_no_raw_id_is_left(validated):
    tables = validated.tables
    before = {n: df.copy() for n, df in tables.items()}
    out = pseudonymise_tables(tables, KEY)
    for n, df in tables.items():  # inputs untouched
        pd.testing.assert_frame_equal(df, before[n])
    raw_reps = set(tables["reps"]["rep_id"])
    raw_customers = set(tables["customers"]["customer_id"])
    raw_customers |= set(tables["deals"]["customer_id"])  # prospects too
    for name, df in out.items():
        assert list(df.columns) == list(tables[name].columns)
        assert len(df) == len(tables[name])
        for col in ("rep_id", "acquiring_rep_id", "customer_id"):
            if col in df:
                values = set(df[col].dropna())
                assert not values & (raw_reps | raw_customers), (name, col)
                assert all(v.startswith("r_" if "rep" in col else "c_") for v in values)
                assert df[col].isna().sum() == tables[name][col].isna().sum()  # nulls stay
    # consistency: the joins still hold
    reps = set(out["reps"]["rep_id"])
    assert set(out["customers"]["acquiring_rep_id"]) <= reps
    assert set(out["contracts"]["rep_id"]) <= reps
    assert set(out["contracts"]["customer_id"]) <= set(out["customers"]["customer_id"])
    r1 = pseudonymise("R1", KEY, prefix="r_")
    assert (out["customers"]["acquiring_rep_id"] == r1).sum() == \
        (tables["customers"]["acquiring_rep_id"] == "R1").sum()
    # other columns untouched
    pd.testing.assert_series_equal(out["deals"]["amount"], tables["deals"]["amount"])
    assert pseudonymise_tables(tables, OTHER)["reps"]["rep_id"].tolist() != \
        out["reps"]["rep_id"].tolist()


def test_a_clash_between_tables_pseudonymised_one_at_a_time_is_an_error(monkeypatch):
    import analysis.privacy as privacy

    monkeypatch.setattr(privacy, "pseudonymise", lambda v, key, prefix="": prefix + "same")
    seen: dict[str, dict[str, str]] = {}
    pseudonymise_tables({"reps": pd.DataFrame({"rep_id": ["R1"]})}, KEY, seen=seen)
    with pytest.raises(ParameterError, match="share"):
        pseudonymise_tables({"deals": pd.DataFrame({"rep_id": ["R1", None]}),
                             "surveys": pd.DataFrame({"rep_id": ["R2"]})}, KEY, seen=seen)
    # R1 in a later table is the same id, not a clash
    seen = {}
    pseudonymise_tables({"reps": pd.DataFrame({"rep_id": ["R1"]})}, KEY, seen=seen)
    pseudonymise_tables({"deals": pd.DataFrame({"rep_id": ["R1"]})}, KEY, seen=seen)


def test_quarantine_ids_are_pseudonymised():
    q = pd.DataFrame({"table": ["reps", "deals", "customers"], "row": [1, 2, 3],
                      "id": ["R1", "D2", "C3"], "column": ["hire_date", "rep_id", "segment"],
                      "raw_value": ["x", "R9", ""], "reason": ["not a date"] * 3})
    out = pseudonymise_quarantine(q, KEY)
    assert out["id"].tolist() == [pseudonymise("R1", KEY, prefix="r_"), "D2",
                                  pseudonymise("C3", KEY, prefix="c_")]
    assert out["raw_value"].tolist() == ["x", pseudonymise("R9", KEY, prefix="r_"), ""]


# ---------------------------------------------------------------- small cells
def test_small_cell_and_its_complement_are_suppressed():
    df = pd.DataFrame({"quarter": ["Q1"] * 4 + ["Q2"] * 3,
                       "team_id": list("ABCD") + list("ABC"),
                       "n": [3, 40, 12, 9, 20, 30, 40],
                       "nps": [50.0, 10.0, 20.0, 30.0, 1.0, 2.0, 3.0]})
    out = suppress_small_cells(df, "n", ["nps"], 5, group_cols=["quarter"])
    q1 = out[out["quarter"] == "Q1"].set_index("team_id")
    assert q1.loc["A", "suppressed_reason"] == PRIMARY
    assert q1.loc["D", "suppressed_reason"] == COMPLEMENTARY  # next smallest count
    assert q1["nps"].isna().tolist() == [True, False, False, True]
    assert not out.loc[out["quarter"] == "Q2", "suppressed"].any()
    assert out["n"].tolist() == df["n"].tolist()  # counts stay visible
    assert "suppressed" not in df  # input untouched


def test_no_complement_without_a_total_or_with_two_small_cells():
    df = pd.DataFrame({"n": [3, 40, 12], "v": [1.0, 2.0, 3.0]})
    alone = suppress_small_cells(df, "n", ["v"], 5, total_shown=False)
    assert alone["suppressed"].tolist() == [True, False, False]
    two = suppress_small_cells(df.assign(n=[3, 4, 12]), "n", ["v"], 5)
    assert two["suppressed"].tolist() == [True, True, False]


def test_existing_suppression_and_unknown_counts_count_as_small():
    df = pd.DataFrame({"n": [50, None, 40, 30], "v": ["a", "b", "c", "d"],
                       "suppressed": [True, False, False, False]})
    out = suppress_small_cells(df, "n", ["v"], 5)
    assert out["suppressed"].tolist() == [True, True, False, False]
    assert out["v"].tolist() == [None, None, "c", "d"]


def test_complementary_suppression_property():
    """No group ever has exactly one hidden cell when it has more than one cell, and a
    hidden value can never be recovered as total minus the shown cells."""
    rng = np.random.default_rng(20251231)
    for _ in range(200):
        n = int(rng.integers(1, 9))
        df = pd.DataFrame({"g": rng.integers(0, 3, n), "n": rng.integers(0, 30, n),
                           "sum": rng.normal(size=n)})
        out = suppress_small_cells(df, "n", ["sum"], 5, group_cols=["g"])
        assert (out.loc[df["n"] < 5, "suppressed"]).all()
        assert out.loc[~out["suppressed"], "sum"].equals(df.loc[~out["suppressed"], "sum"])
        for _, grp in out.groupby("g"):
            hidden = int(grp["suppressed"].sum())
            assert hidden != 1 or len(grp) == 1
            if hidden >= 2:  # total minus the shown cells leaves a sum of >= 2 unknowns
                assert grp["sum"].isna().sum() >= 2
            comp = grp[grp["suppressed_reason"] == COMPLEMENTARY]
            if len(comp):  # the complement is the smallest cell that was shown
                shown = grp[grp["suppressed_reason"] != PRIMARY]
                assert comp["n"].iloc[0] == shown["n"].min()


def test_unknown_column_is_a_parameter_error():
    with pytest.raises(ParameterError, match="nps"):
        suppress_small_cells(pd.DataFrame({"n": [1]}), "n", ["nps"])


def test_prepare_pseudonymises_every_prepared_table(monkeypatch, tmp_path):
    from analysis.prepare import prepare

    monkeypatch.setenv("KPISAT_PREPARED_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv(KEY_ENV, "a-test-key-of-enough-length")
    company = Path(__file__).parent / "fixtures" / "company"
    raw_reps = set(pd.read_csv(company / "reps.csv", dtype=str)["rep_id"])
    raw_customers = set(pd.read_csv(company / "customers.csv", dtype=str)["customer_id"])
    p = prepare(str(company), "2025Q3", None, fresh=True, pseudonymise=True)
    frames = {**p.tables, **p.derived}
    seen = set()
    for df in frames.values():
        for col in ("rep_id", "customer_id", "acquiring_rep_id"):
            if col in df:
                seen |= set(df[col].dropna().astype(str))
    assert seen and not seen & (raw_reps | raw_customers)
    plain = prepare(str(company), "2025Q3", None, fresh=True)
    assert set(plain.tables["reps"]["rep_id"]) == raw_reps  # the plain cache is separate
