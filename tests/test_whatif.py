"""What-if: a hand-computed prediction, the extrapolation warning, the refusals."""

from __future__ import annotations

import argparse
import logging
import math

import numpy as np
import pandas as pd
import pytest

from analysis.config import OUTCOMES, TERMS
from analysis.decision import whatif as W
from analysis.errors import ParameterError
from analysis.prepare import prepare

PLAN = ("w_revenue=0.5,w_new_customers=0.1,w_collection=0.05,w_satisfaction=0.25,"
        "w_complaints=0.0,w_process=0.1")
BASE = {"w_revenue": 0.6, "w_new_customers": 0.1, "w_collection": 0.05,
        "w_satisfaction": 0.15, "w_complaints": 0.0, "w_process": 0.1}
BETA = dict(zip(TERMS, (0.12, 0.0, -0.15, -0.10, -0.04)))
SE = dict(zip(TERMS, (0.05, 0.05, 0.04, 0.05, 0.05)))


def _effects() -> pd.DataFrame:
    rows = [{"outcome": o, "term": t, "model": W.HEADLINE_MODELS[o], "scale": "s",
             "estimate": BETA[t], "std_error": SE[t], "n_clusters": 24, "estimable": True}
            for o in OUTCOMES for t in TERMS]
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def prepared():
    return prepare(None, "2025Q4", "2025-12-31")


def test_hand_computed_prediction():
    plan = W.parse_plan(PLAN)
    out = W.predict_changes(_effects(), plan, BASE).set_index("outcome")
    # by hand: only w_satisfaction moves, +0.10 = one unit: delta = -0.15 * 1
    assert out.loc["churn", "estimate"] == pytest.approx(-0.15)
    assert out.loc["churn", "std_error"] == pytest.approx(0.04)
    assert out.loc["churn", "percent"] == pytest.approx(100 * (math.exp(-0.15) - 1))
    # two weights move: delta = 0.12 * (-0.5) + (-0.15) * 1.5
    plan2 = dict(BASE, w_new_customers=0.05, w_satisfaction=0.30, w_revenue=0.50)
    out2 = W.predict_changes(_effects(), plan2, BASE).set_index("outcome")
    assert out2.loc["bookings", "estimate"] == pytest.approx(0.12 * -0.5 + -0.15 * 1.5)
    assert out2.loc["bookings", "std_error"] == pytest.approx(
        math.sqrt((0.05 * 0.5) ** 2 + (0.04 * 1.5) ** 2))
    assert "ignores covariances" in out2.loc["bookings", "note"]
    cov = pd.DataFrame(np.diag([s ** 2 for s in SE.values()]), index=TERMS, columns=TERMS)
    cov.loc["w_new_customers", "w_satisfaction"] = cov.loc["w_satisfaction",
                                                           "w_new_customers"] = 0.001
    out3 = W.predict_changes(_effects(), plan2, BASE, {"bookings": cov}).set_index("outcome")
    d = np.array([-0.5, 0, 1.5, 0, 0])
    assert out3.loc["bookings", "std_error"] == pytest.approx(math.sqrt(d @ cov.to_numpy() @ d))


def test_whatif_on_sample_and_extrapolation(prepared, caplog):
    with caplog.at_level(logging.WARNING):
        res = W.whatif(PLAN.replace("w_collection=0.05", "w_collection=0.0")
                       .replace("w_revenue=0.5", "w_revenue=0.55"), prepared=prepared,
                       effects=_effects(), covariances={})
    assert res.warnings and "extrapolation" in res.warnings[0]
    assert "extrapolation" in caplog.text
    assert "extrapolation" in res.to_text()
    base = W.current_weights(prepared.tables, prepared.quarter_end)
    expected = sum(BETA[t] * (res.plan[t] - base[t]) / 0.1 for t in TERMS)
    assert res.changes.set_index("outcome").loc["csat", "estimate"] == pytest.approx(expected)
    inside = W.whatif(PLAN, prepared=prepared, effects=_effects(), covariances={})
    assert inside.warnings == []


def test_team_baseline(prepared):
    team = W.plans_in_force(prepared.tables, prepared.quarter_end)["team_id"].iloc[0]
    res = W.whatif(PLAN, prepared=prepared, team=team, effects=_effects(), covariances={})
    assert team in res.baseline_label
    with pytest.raises(ParameterError, match="unknown team"):
        W.whatif(PLAN, prepared=prepared, team="NOPE", effects=_effects(), covariances={})


@pytest.mark.parametrize("plan, message", [
    ("w_revenue=0.5,w_new_customers=0.1", "missing"),
    (PLAN + ",w_bonus=0", "unknown"),
    (PLAN.replace("w_process=0.1", "w_process=-0.1").replace("w_revenue=0.5",
                                                             "w_revenue=0.7"), ">= 0"),
    (PLAN.replace("w_revenue=0.5", "w_revenue=0.6"), "sum to"),
    (PLAN.replace("w_revenue=0.5", "w_revenue=abc"), "not a number"),
    ("w_revenue", "NAME=VALUE"),
])
def test_refusals(plan, message):
    with pytest.raises(ParameterError, match=message) as err:
        W.parse_plan(plan)
    assert "\n" not in str(err.value)


def test_cli_parser():
    parser = argparse.ArgumentParser()
    W.add_whatif_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["whatif", "--plan", PLAN, "--team", "T01"])
    assert args.func is W.run_whatif_command and args.team == "T01" and args.source is None
