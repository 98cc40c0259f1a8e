"""Models on degraded data: never an exception, never a number without data.

Each case degrades the fixture company (a quarter before any data, a single team,
too few churn events, perfect separation of renewals), builds the derived tables the
way ``prepare`` does and calls ``analysis.models.fit_effects``. Every effect row must
either be estimable with finite numbers, or be ``estimable: false`` with null numbers
and a note saying why (the report then says "insufficient data").
"""

from __future__ import annotations

import math
import shutil
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from analysis.asof import as_of_view
from analysis.derived import build_all
from analysis.models import fit_effects
from analysis.quarters import quarter_end
from analysis.sources import open_source
from analysis.validate import validate

COMPANY = Path(__file__).parent / "fixtures" / "company"
AS_OF = date(2025, 12, 31)
NUMBERS = ("estimate", "std_error", "conf_low", "conf_high", "p_value")


def derived_tables(folder: Path, quarter: str) -> dict[str, pd.DataFrame]:
    v = validate(open_source(folder).read(), AS_OF)
    return dict(build_all(as_of_view(v.tables, quarter_end(quarter)), quarter))


def one_team(tmp_path: Path) -> Path:
    folder = Path(shutil.copytree(COMPANY, tmp_path / "one_team"))
    reps = pd.read_csv(folder / "reps.csv", dtype=str, keep_default_na=False)
    reps.assign(team_id="T1").to_csv(folder / "reps.csv", index=False)
    pa = pd.read_csv(folder / "plan_assignments.csv", dtype=str, keep_default_na=False)
    pa[pa["team_id"] == "T1"].to_csv(folder / "plan_assignments.csv", index=False)
    return folder


def assert_no_number_without_data(effects: pd.DataFrame) -> None:
    assert len(effects), "every model reports its terms, estimable or not"
    for _, row in effects.iterrows():
        if row["estimable"]:
            assert all(math.isfinite(row[c]) for c in NUMBERS), row.to_dict()
            assert row["n_obs"] > 0
        else:
            assert all(pd.isna(row[c]) for c in NUMBERS), row.to_dict()
            assert row["note"].strip(), row.to_dict()


def test_a_quarter_with_no_data(tmp_path):
    d = derived_tables(COMPANY, "2021Q4")  # before the first plan, deal or contract
    assert all(len(d[k]) == 0 for k in ("rep_quarter_panel", "survival_episodes", "renewal_table"))
    r = fit_effects(d)
    assert not r.effects["estimable"].any()
    assert_no_number_without_data(r.effects)


def test_a_quarter_with_almost_no_data():
    d = derived_tables(COMPANY, "2022Q1")
    r = fit_effects({k: d[k] for k in ("rep_quarter_panel", "renewal_table")})
    assert not r.effects["estimable"].any()
    assert_no_number_without_data(r.effects)


def test_a_single_team_panel_and_renewals(tmp_path):
    d = derived_tables(one_team(tmp_path), "2025Q4")
    assert d["rep_quarter_panel"]["team_id"].nunique() == 1
    r = fit_effects({k: d[k] for k in ("rep_quarter_panel", "renewal_table")})
    assert not r.effects["estimable"].any()  # one cluster: nothing can be inferred
    assert_no_number_without_data(r.effects)


def test_perfect_separation_in_the_renewal_model():
    d = derived_tables(COMPANY, "2025Q4")
    rt = d["renewal_table"]
    rt = pd.concat([rt] * 4, ignore_index=True)
    rt["renewed"] = (rt["plan_id"] == "P2").astype(rt["renewed"].dtype)  # the plan decides
    r = fit_effects({"renewal_table": rt})
    assert_no_number_without_data(r.effects)


def test_too_few_churn_events_for_a_cox_fit():
    d = derived_tables(COMPANY, "2025Q4")
    n_events = int(d["survival_episodes"]["event"].sum())
    assert n_events <= 3
    r = fit_effects({"survival_episodes": d["survival_episodes"]})
    assert_no_number_without_data(r.effects)
    notes = r.effects["note"]  # terms the data cannot identify keep that reason
    assert notes.str.contains(f"insufficient data: {n_events} churn events").any()
    assert (notes.str.contains("insufficient data") | notes.str.contains("variation|collinear")).all()
    assert "km" in r.extras["churn"] and "logrank" in r.extras["churn"]


def test_a_single_team_churn(tmp_path):
    d = derived_tables(one_team(tmp_path), "2025Q4")
    r = fit_effects({"survival_episodes": d["survival_episodes"]})
    assert not r.effects["estimable"].any()
    assert_no_number_without_data(r.effects)
    km = r.extras["churn"]["km"]
    assert km.empty or set(km.columns) >= {"plan_id", "day", "survival"}


def test_empty_renewal_table_says_there_are_no_decisions():
    d = derived_tables(COMPANY, "2025Q4")
    r = fit_effects({"renewal_table": d["renewal_table"].iloc[:0]})
    assert_no_number_without_data(r.effects)
    assert (r.effects["note"] == "not estimable: no renewal decisions in the data").all()
