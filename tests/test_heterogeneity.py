"""Subgroup effects of the satisfaction weight and the multiple-testing adjustment.

Truth: the sample company's effects are the same for every customer, segment and
plan scope (docs/sample-company.md), so every subgroup interval must cover the
common true effect (exact for CSAT and NPS, the true model for renewal) and every
difference interval must cover 0.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from statsmodels.stats.multitest import multipletests

from analysis.config import SAMPLE_DIR
from analysis.decision import heterogeneity as het
from analysis.decision.multiple_testing import adjust_pvalues
from analysis.errors import ParameterError
from analysis.models.tidy import EFFECT_COLUMNS


@pytest.fixture(scope="module")
def prepared():
    from analysis.prepare import prepare

    return prepare("", "2025Q4", "")


@pytest.fixture(scope="module")
def table(prepared):
    return het.heterogeneity(prepared.derived, prepared.tables, prepared.as_of)


def test_holm_matches_statsmodels_and_skips_missing_rows():
    rows = pd.DataFrame({"p_value": [0.01, 0.04, np.nan, 0.03], "note": ["a", "", "x", ""]})
    out = adjust_pvalues(rows, family="test")
    expected = multipletests([0.01, 0.04, 0.03], method="holm")[1]
    np.testing.assert_allclose(out["p_adjusted"].dropna(), expected)
    assert np.isnan(out["p_adjusted"].iloc[2]) and out["note"].iloc[2] == "x"
    assert "Holm" in out["note"].iloc[0] and "3 tests" in out["note"].iloc[0]
    assert rows.columns.tolist() == ["p_value", "note"]  # input not modified
    with pytest.raises(ParameterError, match="holm"):
        adjust_pvalues(rows, method="sidak")


def test_newton_logit_matches_statsmodels():
    rng = np.random.default_rng(3)
    x = np.column_stack([np.ones(400), rng.normal(size=(400, 3))])
    y = (rng.random(400) < 1 / (1 + np.exp(-x @ [0.2, 1.0, -0.5, 0.0]))).astype(float)
    beta, info = het.logit_newton(x, y)
    ref = sm.GLM(y, x, family=sm.families.Binomial()).fit(tol=1e-12)
    np.testing.assert_allclose(beta, ref.params, rtol=1e-8)
    np.testing.assert_allclose(np.linalg.inv(info), ref.cov_params(), rtol=1e-6)


def test_scope_split_adds_up_to_the_panel_weight(prepared):
    scopes = het.scope_weights(prepared.tables, prepared.as_of)
    panel = prepared.derived["rep_quarter_panel"].merge(scopes, on=["team_id", "quarter"])
    total = panel["w_sat_team"] + panel["w_sat_individual"]
    np.testing.assert_allclose(total, panel["w_satisfaction"], atol=1e-12)


def test_table_shape_and_adjustment(table):
    assert set(EFFECT_COLUMNS) | {"p_adjusted"} == set(table.columns)
    assert set(table["model"]) == {"logit_fe_by_tenure", "logit_fe_by_segment",
                                   "logit_fe_by_scope", "ols_fe_by_scope"}
    ok = table["estimable"]
    assert ok.all()
    assert (table["p_adjusted"] >= table["p_value"] - 1e-15).all()
    assert table["note"].str.contains(f"Holm step-down .* over the {len(table)} tests",
                                      regex=True).all()


def test_subgroups_cover_the_common_truth(table):
    truth = json.loads((SAMPLE_DIR / "ground_truth.json").read_text())
    beta = {e["outcome"]: e["estimate"] for e in truth["effects"]
            if e["term"] == "w_satisfaction"}
    for row in table.itertuples(index=False):
        target = 0.0 if row.note.startswith("difference") else beta[row.outcome]
        assert row.conf_low <= target <= row.conf_high, (row.outcome, row.term)
