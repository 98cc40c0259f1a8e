"""Claims ledger: verdicts follow the effects and the recommendation."""

from __future__ import annotations

import math

import pandas as pd

from analysis.decision import claims as C


def _effects(churn_sat=(-0.15, -0.25, -0.05), churn_new=(0.2, 0.05, 0.35),
             comp=(-0.1, -0.3, 0.1)):
    rows = []
    for (o, t, m), (e, lo, hi) in {("churn", "w_satisfaction", "cox_stratified_tv"): churn_sat,
                                   ("churn", "w_new_customers", "cox_stratified_tv"): churn_new,
                                   ("complaints", "w_complaints", "poisson_fe"): comp}.items():
        rows.append({"outcome": o, "term": t, "model": m, "estimate": e, "conf_low": lo,
                     "conf_high": hi, "estimable": True})
    return pd.DataFrame(rows)


RANGES = pd.DataFrame({"weight": ["w_revenue", "w_new_customers", "w_collection",
                                  "w_satisfaction", "w_complaints", "w_process"],
                       "min": [0.2, 0.05, 0.05, 0.0, 0.0, 0.05],
                       "max": [0.7, 0.4, 0.35, 0.45, 0.35, 0.35]})


def test_verdicts():
    rec = {"term": "w_satisfaction", "range": [0.0, 0.2], "objective": "x"}
    out = {c["claim"]: c for c in C.claims_ledger(_effects(), recommendation=rec, ranges=RANGES)}
    assert all(set(c) == {"claim", "verdict", "evidence"} for c in out.values())
    assert out["Give satisfaction at least 30% of the plan weight."]["verdict"] == C.CONTRADICTED
    assert out["A 60/20/20 revenue/satisfaction/process plan is a good default."][
        "verdict"] == C.NOT_TESTABLE  # w_new_customers = 0 lies outside the observed weights
    assert out["Putting satisfaction in the plan cuts churn by 15%."]["verdict"] == C.SUPPORTED
    assert out["Paying for new logos raises churn."]["verdict"] == C.SUPPORTED
    assert out["Rewarding a low complaint rate reduces complaints."]["verdict"] == C.NOT_TESTABLE


def test_contradictions():
    rec = {"term": "w_satisfaction", "range": [0.3, 0.45], "objective": "x"}
    eff = _effects(churn_sat=(-0.02, -0.04, -0.01), churn_new=(-0.2, -0.3, -0.1))
    out = C.claims_ledger(eff, recommendation=rec, ranges=RANGES)
    assert out[0]["verdict"] == C.SUPPORTED
    assert out[2]["verdict"] == C.CONTRADICTED
    assert f"{100 * -math.expm1(-0.02):.0f}" in out[2]["evidence"].replace("-", "")
    assert out[3]["verdict"] == C.CONTRADICTED
