"""Decision support on degraded data: never an exception, never a number without data.

The fixture company (tests/fixtures/company: two teams, four reps, a handful of
deals, contracts and surveys) is prepared as ``kpisat run`` would, then degraded to
a single team or to no plan switch. Every decision-support function must return:
effect rows either estimable with finite numbers or ``estimable: false`` with null
numbers and a reason; a trade-off with ``reason`` set, no frontier rows and a
recommendation with ``range: null`` and a note; a what-if that refuses in one line.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import pandas as pd
import pytest

from analysis.config import OUTCOMES, TERMS
from analysis.decision import claims, event_study, gaming, heterogeneity, tradeoff, whatif
from analysis.errors import KpisatError
from analysis.prepare import prepare

matplotlib.use("Agg")

COMPANY = Path(__file__).parent / "fixtures" / "company"
NUMBERS = ("estimate", "std_error", "conf_low", "conf_high", "p_value")
PLAN = whatif.PLAN_EXAMPLE


def one_team(tmp_path: Path) -> Path:
    folder = Path(shutil.copytree(COMPANY, tmp_path / "one_team"))
    reps = pd.read_csv(folder / "reps.csv", dtype=str, keep_default_na=False)
    reps.assign(team_id="T1").to_csv(folder / "reps.csv", index=False)
    pa = pd.read_csv(folder / "plan_assignments.csv", dtype=str, keep_default_na=False)
    pa[pa["team_id"] == "T1"].to_csv(folder / "plan_assignments.csv", index=False)
    return folder


def no_switches(tmp_path: Path) -> Path:
    """Every team keeps its first plan: no switch at all."""
    folder = Path(shutil.copytree(COMPANY, tmp_path / "no_switch"))
    pa = pd.read_csv(folder / "plan_assignments.csv", dtype=str, keep_default_na=False)
    pa = pa.drop_duplicates("team_id").assign(valid_to="")
    pa.to_csv(folder / "plan_assignments.csv", index=False)
    return folder


def assert_no_number_without_data(effects: pd.DataFrame) -> None:
    assert len(effects), "every model reports its terms, estimable or not"
    for _, row in effects.iterrows():
        if row["estimable"]:
            assert all(math.isfinite(row[c]) for c in NUMBERS), row.to_dict()
        else:
            assert all(pd.isna(row[c]) for c in NUMBERS), row.to_dict()
            assert str(row["note"]).strip(), row.to_dict()


def assert_tradeoff_not_estimable(result: tradeoff.Tradeoff) -> None:
    assert not result.estimable and result.reason
    assert result.frontier.empty
    assert list(result.frontier.columns) == list(tradeoff.FRONTIER_COLUMNS)
    rec = result.recommendation
    assert rec["range"] is None and rec["note"].startswith("No recommendation: ")
    assert result.reason in rec["note"]
    assert result.current_plans[["objective", "bookings", "retention"]].isna().all().all()
    assert "No recommended satisfaction weight" in result.recommendation_markdown()
    assert "Insufficient data" in result.summary_markdown()
    ledger = claims.claims_ledger(pd.DataFrame(columns=["outcome", "term", "model", "estimate",
                                                        "conf_low", "conf_high", "estimable"]),
                                  recommendation=rec, tradeoff=result)
    assert all(c["verdict"] == claims.NOT_TESTABLE for c in ledger)
    ax = tradeoff.plot_frontier(result.frontier, current=result.current_plans)
    assert "insufficient data" in ax.texts[0].get_text()
    plt.close(ax.figure)


def check_event_studies(prepared, **kw) -> dict:
    results = event_study.event_studies(prepared.derived["rep_quarter_panel"], prepared.tables,
                                        **kw)
    effects = event_study.effects_of(results)
    assert_no_number_without_data(effects)
    tests = event_study.pretrend_tests(results)
    assert list(tests.columns) == list(event_study.PRETREND_COLUMNS)
    assert tests["note"].str.len().gt(0).all()
    for res in results.values():
        plt.close(event_study.plot_event_study(res).figure)
    return results


def check_heterogeneity(prepared, **kw) -> pd.DataFrame:
    table = heterogeneity.heterogeneity(prepared.derived, prepared.tables, prepared.as_of, **kw)
    assert_no_number_without_data(table)
    assert table.loc[~table["estimable"], "p_adjusted"].isna().all()
    return table


@pytest.fixture(scope="module")
def company():
    return prepare(str(COMPANY), "2025Q4", "2025-12-31")


def test_fixture_company_tradeoff_is_not_estimable(company):
    result = tradeoff.tradeoff_analysis(company)
    assert_tradeoff_not_estimable(result)
    assert "2 teams" in result.reason


def test_fixture_company_tradeoff_models_fail_gracefully(company):
    # with the team threshold lowered the models themselves meet too little data
    result = tradeoff.tradeoff_analysis(company, min_clusters=2, reps=9)
    assert_tradeoff_not_estimable(result)
    assert set(result.selection["form"]) <= {"linear", "curved", "not estimable"}
    bad = result.selection[result.selection["form"] == "not estimable"]
    assert bad["note"].str.startswith("not estimable").all()


@pytest.mark.parametrize("min_clusters", [None, 2])
def test_fixture_company_event_studies_and_subgroups(company, min_clusters):
    kw = {} if min_clusters is None else {"min_clusters": min_clusters}
    results = check_event_studies(company, **kw)
    table = check_heterogeneity(company, **kw)
    if min_clusters is None:  # two teams < MIN_CLUSTERS: nothing is estimable
        assert not event_study.effects_of(results)["estimable"].any()
        assert not table["estimable"].any()
        assert table["note"].str.contains("2 teams").all()


def test_fixture_company_gaming(company):
    per = gaming.survey_gaming(company.tables, company.quarter)
    summary = gaming.gaming_summary(per)
    assert summary["reps_scored"] + summary["reps_below_small_cell"] == len(per)
    for key in ("spearman_response_rate_csat", "median_response_rate"):
        assert summary[key] is None or math.isfinite(summary[key])


def test_single_team(tmp_path):
    prepared = prepare(str(one_team(tmp_path)), "2025Q4", "2025-12-31")
    assert prepared.derived["rep_quarter_panel"]["team_id"].nunique() == 1
    for kw in ({}, {"min_clusters": 1}):  # one team: never estimable, whatever the threshold
        result = tradeoff.tradeoff_analysis(prepared, **kw)
        assert_tradeoff_not_estimable(result)
        results = check_event_studies(prepared, **kw)
        assert not event_study.effects_of(results)["estimable"].any()
        assert not check_heterogeneity(prepared, **kw)["estimable"].any()


def test_no_plan_switches(tmp_path):
    prepared = prepare(str(no_switches(tmp_path)), "2025Q4", "2025-12-31")
    switches = event_study.plan_switches(prepared.tables)
    assert switches["cohort"].isna().all()
    assert event_study.cohorts(switches).empty
    for kw in ({}, {"min_clusters": 2}):
        results = check_event_studies(prepared, **kw)
        effects = event_study.effects_of(results)
        assert not effects["estimable"].any()
        lags = effects[effects["model"] == event_study.MODEL]
        if kw:
            assert lags["note"].str.contains("no treated").all()
        tests = event_study.pretrend_tests(results)
        assert tests["p_value"].isna().all() and tests["rejected_5pct"].isna().all()
        check_heterogeneity(prepared, **kw)
    assert_tradeoff_not_estimable(tradeoff.tradeoff_analysis(prepared))


def test_no_plan_assignments_at_all():
    tables = {"kpi_plans": pd.DataFrame(columns=["plan_id", "w_satisfaction", "w_complaints"]),
              "plan_assignments": pd.DataFrame(columns=["team_id", "plan_id", "valid_from",
                                                        "valid_to"])}
    assert event_study.plan_switches(tables).empty


def _non_estimable_effects() -> pd.DataFrame:
    return pd.DataFrame([{"outcome": o, "term": t, "model": whatif.HEADLINE_MODELS[o],
                          "scale": "s", "estimate": math.nan, "std_error": math.nan,
                          "n_clusters": 2, "estimable": False,
                          "note": "not estimable: 2 teams (< 10); cluster-robust errors are "
                                  "unreliable with so few clusters"}
                         for o in OUTCOMES for t in TERMS])


@pytest.mark.parametrize("effects", [_non_estimable_effects(), _non_estimable_effects().iloc[:0]])
def test_whatif_refuses_non_estimable_effects(company, effects):
    with pytest.raises(KpisatError, match="effects are not estimable") as err:
        whatif.whatif(PLAN, prepared=company, effects=effects, covariances={})
    assert "\n" not in str(err.value)


def test_whatif_refuses_on_the_fixture_company(company):
    with pytest.raises(KpisatError, match="effects are not estimable") as err:
        whatif.whatif(PLAN, prepared=company)
    assert "\n" not in str(err.value)
